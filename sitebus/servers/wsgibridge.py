"""The WSGI bridge: WSGI apps served from an ASGI server, each request on a pool thread.

A site with ASGI apps is served by uvicorn; its WSGI and services.web apps (and the health
endpoint) are reached through ``serve_wsgi``. The request body is read whole (up to the
server's ``max_request_body_size``: 413 beyond it), the environ is built as a WSGI server
builds it (``SCRIPT_NAME`` from ``root_path``, ``PATH_INFO`` as latin-1 native strings), the app
runs on the pool, and each chunk it yields is sent from the event loop before the next is
asked for, so a streaming WSGI response streams and a slow client holds back its producer.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import Executor
from typing import Any

from sitebus import __version__

__all__ = ["environ_of", "request_target", "serve_wsgi"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def serve_wsgi(app: Callable[..., Any], executor: Executor, scope: Scope,
                     receive: Receive, send: Send, max_body: int = 0,
                     log_error: Callable[..., Any] = print) -> None:
    """Answer one ASGI http request with the WSGI ``app``, run on ``executor``."""
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if max_body and len(body) > max_body:
            await _answer(send, 413, b"Request Entity Too Large\n")
            return
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(executor, _run_wsgi, app, environ_of(scope, bytes(body)), send,
                               loop, log_error)


def _run_wsgi(app: Callable[..., Any], environ: dict[str, Any], send: Send,
          loop: asyncio.AbstractEventLoop, log_error: Callable[..., Any]) -> None:
    """Run the WSGI app in a pool thread; each message goes to the loop and is awaited."""
    started: list[Any] = []
    headers_sent = [False]

    def deliver(message: Message) -> None:
        asyncio.run_coroutine_threadsafe(_awaited(send(message)), loop).result()

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info and headers_sent[0]:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return write

    def send_start() -> None:
        if not headers_sent[0]:
            status, headers = started
            deliver({"type": "http.response.start", "status": int(status[:3]),
                     "headers": [(name.lower().encode("latin-1"), value.encode("latin-1"))
                                 for name, value in headers]})
            headers_sent[0] = True

    def write(data: bytes) -> None:
        send_start()
        if data:
            deliver({"type": "http.response.body", "body": data, "more_body": True})

    try:
        result: Iterable[bytes] = app(environ, start_response)
    except Exception:
        log_error("Error in a WSGI app", 40, True)
        if not headers_sent[0]:
            _deliver_error(deliver)
        return
    try:
        for chunk in result:
            if chunk:
                write(chunk)
        if not started:
            raise RuntimeError("the WSGI app returned without calling start_response")
        send_start()
        deliver({"type": "http.response.body", "body": b"", "more_body": False})
    except Exception:
        log_error("Error in a WSGI app's response", 40, True)
        if not headers_sent[0]:
            _deliver_error(deliver)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


def _deliver_error(deliver: Callable[[Message], None]) -> None:
    body = b"Internal Server Error\n"
    deliver({"type": "http.response.start", "status": 500,
             "headers": [(b"content-type", b"text/plain"),
                         (b"content-length", str(len(body)).encode())]})
    deliver({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def environ_of(scope: Scope, body: bytes) -> dict[str, Any]:
    """Return the WSGI environ of an ASGI http scope (PEP 3333's native strings)."""
    root_path = scope.get("root_path", "")
    path = scope.get("path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path):]
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.get("method", "GET"),
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "REQUEST_URI": request_target(scope),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "SERVER_SOFTWARE": f"sitebus/{__version__} uvicorn",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE" or name == "CONTENT_LENGTH":
            environ[name] = value
            continue
        key = f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if body and "CONTENT_LENGTH" not in environ:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


def request_target(scope: Scope) -> str:
    """Return the request target as the client sent it (as cheroot's ``REQUEST_URI``)."""
    target = scope.get("raw_path") or scope.get("path", "").encode("utf-8")
    query = scope.get("query_string")
    return (target + b"?" + query if query else target).decode("latin-1")
