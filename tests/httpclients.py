"""HTTP clients and WSGI apps for server tests: TCP, IPv6, UNIX sockets, TLS, a gated app."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.validate import validator

TIMEOUT = 15.0


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection over a UNIX socket."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def connection(address: Any, tls: ssl.SSLContext | None = None,
               timeout: float = TIMEOUT) -> http.client.HTTPConnection:
    """Return an unconnected HTTP(S) connection to a (host, port) or a socket file path."""
    if isinstance(address, str):
        return UnixHTTPConnection(address, timeout)
    host, port = address[:2]
    if tls is not None:
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=tls)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def fetch(address: Any, path: str = "/", tls: ssl.SSLContext | None = None,
          timeout: float = TIMEOUT) -> tuple[int, bytes, http.client.HTTPResponse]:
    """GET ``path``; return (status, body, response)."""
    conn = connection(address, tls, timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def refuses(address: Any) -> bool:
    """Return True when a connection to ``address`` is refused."""
    family = socket.AF_UNIX if isinstance(address, str) else (
        socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(address if isinstance(address, str) else address[:2])
        except (ConnectionRefusedError, FileNotFoundError):
            return True
        except ConnectionResetError:
            return False  # queued just as the listener shut down: not refused (yet)
    return False


StartResponse = Callable[..., Any]


def call_wsgi(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Call ``app`` in this process through ``wsgiref.validate``; return status, headers, body."""
    captured: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        captured.append((status, headers))
        return lambda data: None

    result = validator(app)(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return captured[-1][0], captured[-1][1], body


def hello_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answer every request with 'Hello' and where it came in (scheme, path)."""
    body = f"Hello {environ['wsgi.url_scheme']} {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


class GatedApp:
    """A WSGI app whose /slow requests wait until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/slow":
            self.entered.set()
            if not self.gate.wait(TIMEOUT):
                raise AssertionError("the test never opened the gate")
            body = b"slow done"
        else:
            body = b"fast"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
