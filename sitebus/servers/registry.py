"""What a server can be: the registry of server types, and the checks of the ``server.*`` keys.

``server_types`` maps each name ``server.type`` accepts to how that server is built from a
Server's settings; the config checker, the CLI and the README read it too. ``CHECKS`` says,
for each setting, what a good value is; ``setting_problems`` applies it (a pure function of
the values) with the few checks that involve two settings, and ``Server.validate`` turns the
first problem into a ConfigError naming ``server.<key>``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sitebus.servers.gateways import CGIServer, FlupFCGIServer, FlupSCGIServer
from sitebus.servers.listeners import Listener
from sitebus.servers.settings import ServerSettings
from sitebus.servers.wsgiserver import CherootServer, listener_address, make_ssl_adapter

__all__ = ["CHECKS", "SETTINGS", "ServerType", "cheroot_arguments", "server_types",
           "setting_problems", "tune_cheroot"]


# -- the registry of server types -------------------------------------------------------------


@dataclass(frozen=True)
class ServerType:
    """A kind of server, named by the ``server.type`` setting."""

    name: str
    summary: str
    scheme: str
    listens: bool
    tls: bool
    build: Callable[[ServerSettings, Listener | None], Any]
    requires: str | None = None


def cheroot_arguments(server: ServerSettings) -> dict[str, Any]:
    """The keyword arguments of a cheroot WSGI server that come from the ``server.*`` settings
    (its threads, queue and timeouts); ``tune_cheroot`` sets the rest once it is built."""
    return {"numthreads": server.thread_pool, "max": server.thread_pool_max,
            "request_queue_size": server.socket_queue_size, "timeout": server.socket_timeout,
            "shutdown_timeout": server.shutdown_timeout,
            "accepted_queue_size": server.accepted_queue_size,
            "accepted_queue_timeout": server.accepted_queue_timeout}


def tune_cheroot(httpserver: Any, server: ServerSettings) -> None:
    """Set a built cheroot server's protocol, size limits and TCP_NODELAY from the settings."""
    httpserver.protocol = server.protocol_version
    httpserver.max_request_header_size = server.max_request_header_size
    httpserver.max_request_body_size = server.max_request_body_size
    httpserver.nodelay = server.nodelay


def _cheroot(server: ServerSettings, listener: Listener | None) -> CherootServer:
    assert listener is not None and server.wsgi_app is not None
    httpserver = CherootServer(listener, server.wsgi_app, wsgi_version=server.wsgi_version,
                               **cheroot_arguments(server))
    tune_cheroot(httpserver, server)
    httpserver.stats["Enabled"] = server.statistics
    httpserver.error_log = server.bus.log  # type: ignore[method-assign]
    httpserver.ssl_adapter = make_ssl_adapter(
        server.ssl_certificate,
        server.ssl_private_key,
        server.ssl_certificate_chain,
        server.ssl_ciphers,
        server.ssl_context,
    )
    return httpserver


def _fastcgi(server: ServerSettings, listener: Listener | None) -> FlupFCGIServer:
    assert listener is not None
    return FlupFCGIServer(
        application=server.wsgi_app, bindAddress=listener_address(listener), listener=listener
    )


def _scgi(server: ServerSettings, listener: Listener | None) -> FlupSCGIServer:
    assert listener is not None
    return FlupSCGIServer(
        application=server.wsgi_app,
        bindAddress=listener_address(listener),
        listener=listener,
    )


def _cgi(server: ServerSettings, listener: Listener | None) -> CGIServer:
    assert server.wsgi_app is not None
    return CGIServer(server.wsgi_app)


def _uvicorn(server: ServerSettings, listener: Listener | None) -> Any:
    from sitebus.servers.asgiserver import build  # imports uvicorn only for a site that serves ASGI

    return build(server, listener)


server_types: dict[str, ServerType] = {
    kind.name: kind
    for kind in (
        ServerType("cheroot", "HTTP/1.1 and HTTPS on cheroot's WSGI server (the default)",
                   "http", listens=True, tls=True, build=_cheroot),
        ServerType("fastcgi", "FastCGI behind a web server, on flup (cherryd -f)",
                   "fcgi", listens=True, tls=False, build=_fastcgi, requires="flup"),
        ServerType("scgi", "SCGI behind a web server, on flup (cherryd -s)",
                   "scgi", listens=True, tls=False, build=_scgi, requires="flup"),
        ServerType("cgi", "one CGI request from the environment, then exit (cherryd -x)",
                   "cgi", listens=False, tls=False, build=_cgi),
        ServerType("uvicorn", "HTTP/1.1, HTTPS and websockets for ASGI apps (and WSGI apps beside "
                   "them) on uvicorn (pip install 'sitebus[asgi]')",
                   "http", listens=True, tls=True, build=_uvicorn),
    )
}
"""The server types by name; ``server.type`` picks one. The CLI and README read this too."""


# -- settings ---------------------------------------------------------------------------------


def _is_int(value: Any, low: int | None = None, high: int | None = None) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (low is None or value >= low)
        and (high is None or value <= high)
    )


def _is_seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _is_fdname(value: Any) -> bool:
    return value is None or (
        isinstance(value, str) and 0 < len(value) <= 255
        and all(c.isascii() and (c.isalnum() or c in "_-.") for c in value)
    )


def _is_path(value: Any) -> bool:
    return value is None or (isinstance(value, (str, os.PathLike)) and bool(os.fspath(value)))


def _is_socket_file(value: Any) -> bool:
    return value is None or (_is_path(value) and len(os.fsencode(value)) <= 107)


CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "type": (lambda v: v in server_types, "one of " + ", ".join(map(repr, server_types))),
    "socket_host": (
        lambda v: isinstance(v, str) and v != "",
        "a host name or IP address (use '0.0.0.0' (IPv4) or '::' (IPv6) to listen on all "
        "active interfaces)",
    ),
    "socket_port": (lambda v: _is_int(v, 0, 65535), "an integer from 0 to 65535"),
    "socket_file": (_is_socket_file, "None or a socket file path of at most 107 bytes"),
    "socket_file_mode": (lambda v: _is_int(v, 0, 0o777), "a file mode from 0o000 to 0o777"),
    "socket_fdname": (_is_fdname, "None or the name of a socket systemd passes "
                                  "(FileDescriptorName=: letters, digits, '_', '-', '.')"),
    "socket_queue_size": (lambda v: _is_int(v, 1), "a positive integer"),
    "socket_timeout": (_is_seconds, "a number of seconds, 0 or more"),
    "thread_pool": (lambda v: _is_int(v, 1), "a positive integer"),
    "thread_pool_max": (lambda v: v == -1 or _is_int(v, 1), "-1 (no limit) or a positive integer"),
    "shutdown_timeout": (_is_seconds, "a number of seconds, 0 or more"),
    "accepted_queue_size": (
        lambda v: v == -1 or _is_int(v, 1), "-1 (no limit) or a positive integer"
    ),
    "accepted_queue_timeout": (_is_seconds, "a number of seconds, 0 or more"),
    "protocol_version": (lambda v: v in ("HTTP/1.0", "HTTP/1.1"), "'HTTP/1.1' or 'HTTP/1.0'"),
    "max_request_header_size": (lambda v: _is_int(v, 0), "a number of bytes (0: no limit)"),
    "max_request_body_size": (lambda v: _is_int(v, 0), "a number of bytes (0: no limit)"),
    "nodelay": (lambda v: isinstance(v, bool), "True or False"),
    "statistics": (lambda v: isinstance(v, bool), "True or False"),
    "wsgi_version": (lambda v: v in ((1, 0), ("u", 0)), "(1, 0) or ('u', 0)"),
    "wsgi_app": (callable, "a WSGI application (a callable)"),
    "ssl_module": (lambda v: v in ("builtin", "pyopenssl"),
                   "'builtin' or 'pyopenssl' (either is served by Python's ssl module)"),
    "ssl_certificate": (_is_path, "None or a certificate file"),
    "ssl_private_key": (_is_path, "None or a private key file"),
    "ssl_certificate_chain": (_is_path, "None or a certificate chain file"),
    "ssl_context": (lambda v: v is None or isinstance(v, ssl.SSLContext), "None or an SSLContext"),
    "ssl_ciphers": (lambda v: v is None or (isinstance(v, str) and v != ""),
                    "None or an OpenSSL cipher string"),
}

SETTINGS = tuple(CHECKS)
"""The names the ``server.*`` config keys set."""

TLS_SETTINGS = ("ssl_certificate", "ssl_private_key", "ssl_certificate_chain", "ssl_context",
                "ssl_ciphers")


def setting_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return (setting, what was expected) for each wrong value, in the order of SETTINGS.

    ``values`` maps every name in SETTINGS (plus ``listener``) to its value. Settings that
    do not apply (the host and port of a server on a socket file) are not checked.
    """
    kind = server_types.get(values["type"])
    skip: set[str] = set()
    if kind is None or not kind.listens or values.get("listener") is not None:
        skip |= {"socket_host", "socket_port", "socket_file", "socket_file_mode"}
    elif values["socket_file"]:
        skip |= {"socket_host", "socket_port"}
    problems = [
        (name, expected)
        for name, (check, expected) in CHECKS.items()
        if name not in skip and not check(values[name])
    ]
    wrong = {name for name, _ in problems}
    pool, pool_max = values["thread_pool"], values["thread_pool_max"]
    if not wrong & {"thread_pool", "thread_pool_max"} and pool_max != -1 and pool_max < pool:
        problems.append(("thread_pool_max", f"-1 (no limit) or at least thread_pool ({pool})"))
    tls = [name for name in TLS_SETTINGS if values[name] is not None]
    if kind is not None and not kind.tls and tls:
        problems.append((tls[0], f"None: the {kind.name!r} server type has no TLS"))
    elif values["ssl_private_key"] and not values["ssl_certificate"]:
        problems.append(("ssl_certificate", "a certificate file to go with ssl_private_key"))
    elif values["ssl_certificate_chain"] and not values["ssl_certificate"]:
        problems.append(("ssl_certificate", "a certificate file to go with the chain"))
    return problems
