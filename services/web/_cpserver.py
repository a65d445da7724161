"""The default HTTP server of the site, under the reference's name (``services.web.server``).

The site container owns the servers (``sitebus.site.server``, a ServerAdapter on cheroot);
this module only finds it. Until the site provides one, ``default_server()`` returns a
minimal stand-in (``FallbackServer``): a bus plugin that serves the site tree with
cheroot's WSGI server on ``server.socket_host``/``server.socket_port`` of the site config
(default 127.0.0.1:8080, 10 threads), so quickstart and the tutorials run either way.
"""

from __future__ import annotations

import threading
from typing import Any

from sitebus.plugins import SimplePlugin

__all__ = ["FallbackServer", "default_base", "default_server"]

_fallback: list[Any] = []
_lock = threading.Lock()


def default_server() -> Any:
    """Return the site's default server (or the stand-in, created once, until there is one)."""
    from sitebus import site

    server = getattr(site, "server", None) or getattr(site.site, "server", None)
    if server is not None:
        return server
    with _lock:
        if not _fallback:
            _fallback.append(FallbackServer(site.bus))
        return _fallback[0]


def default_base() -> str:
    """Return the default server's base URL, e.g. 'http://127.0.0.1:8080'."""
    server = default_server()
    base = getattr(server, "base", None)
    if callable(base):
        return str(base())
    return "http://127.0.0.1:8080"


def __getattr__(name: str) -> Any:
    if name == "Server":
        try:
            from sitebus.servers import Server
        except ImportError as error:
            raise AttributeError(f"sitebus.servers has no Server yet: {error}") from None
        return Server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class FallbackServer(SimplePlugin):
    """Serve the site tree with cheroot on the configured host and port (a stand-in)."""

    socket_host = "127.0.0.1"
    socket_port = 8080
    thread_pool = 10

    def __init__(self, bus: Any) -> None:
        super().__init__(bus)
        self.httpserver: Any = None
        self._thread: threading.Thread | None = None

    def _settings(self) -> tuple[str, int, int]:
        from sitebus.site import config

        return (config.get("server.socket_host", self.socket_host),
                int(config.get("server.socket_port", self.socket_port)),
                int(config.get("server.thread_pool", self.thread_pool)))

    @property
    def bound_addr(self) -> Any:
        if self.httpserver is None:
            return None
        return self.httpserver.bind_addr

    def base(self) -> str:
        host, port, _ = self._settings()
        if self.httpserver is not None:
            host, port = self.httpserver.bind_addr[:2]
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.gethostname()
        return f"http://{host}" if port == 80 else f"http://{host}:{port}"

    def start(self) -> None:
        """Start serving in a thread; return once the socket listens."""
        if self.httpserver is not None:
            return
        from cheroot import wsgi

        from sitebus.site import tree

        host, port, threads = self._settings()
        self.httpserver = wsgi.Server((host, port), tree, numthreads=threads)
        self.httpserver.prepare()
        self._thread = threading.Thread(target=self.httpserver.serve, name="HTTPServer",
                                        daemon=True)
        self._thread.start()
        self.bus.log(f"Serving on {self.base()}")

    start.priority = 75  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Stop serving and wait for the server thread."""
        if self.httpserver is None:
            return
        self.httpserver.stop()
        if self._thread is not None:
            self._thread.join(10)
        self.bus.log(f"HTTP Server {self.base()} shut down")
        self.httpserver = None
        self._thread = None

    stop.priority = 25  # type: ignore[attr-defined]
