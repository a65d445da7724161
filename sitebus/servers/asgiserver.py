"""The ``uvicorn`` server type: a site with ASGI apps served by uvicorn on the site's sockets.

Installed with ``pip install sitebus[asgi]`` (uvicorn with httptools, uvloop and websockets).
Mounting an ASGI app (``tree.api = "/api", "main:app"``, ``sitebus run main:app``) makes the
site's servers this type; WSGI apps of the same site are then served through the bridge in
``sitebus.servers.asgi``, on the same socket.

The server is a ServerAdapter's ``httpserver`` like cheroot, so everything a Server does
around it holds: the socket is bound by sitebus (or inherited across a restart, from systemd,
or from the master by a pre-fork worker) and given to uvicorn through its public
``Server.serve(sockets=[...])``; ``start()`` runs in the adapter's server thread, with an
event loop of its own (uvloop when installed). Running outside the main thread is also what
keeps uvicorn's hands off signals: ``Server.serve`` installs its signal handlers only in the
main thread, and sitebus owns signals. uvicorn's own lifespan is off (``lifespan="off"``):
``AsgiSite`` runs each app's lifespan, so a startup failure is the bus's start failure, with
one line naming the app.

TLS comes from the ``server.ssl_*`` settings through the context cheroot's adapter builds
(``tls_context``), handed to uvicorn's loaded config: one reading of the settings for both
server types. ``stalled()`` reports a blocked event loop to a pre-fork worker's heartbeat.

``stop()`` drains in the bus's order: the listener stops accepting at once (uvicorn's asyncio
servers are closed), open websockets are closed with 1001, every response then says
``Connection: close`` for up to ``KEEP_ALIVE_GRACE`` (or until no connection is left), then
uvicorn's shutdown closes idle keep-alive connections and lets requests in flight finish
within ``server.shutdown_timeout``; the apps' lifespan shutdown runs last.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import threading
from typing import Any

from sitebus import __version__
from sitebus.errors import UnavailableError
from sitebus.servers.asgi import AsgiMounts, AsgiSite
from sitebus.servers.listeners import Listener
from sitebus.servers.settings import ServerSettings
from sitebus.servers.wsgiserver import make_ssl_adapter

__all__ = ["UvicornServer", "build", "require_uvicorn"]

TYPE = "uvicorn"

KEEP_ALIVE_GRACE = 1.0
"""Seconds a stopping server keeps answering (with ``Connection: close``) on keep-alive
connections before it closes those left idle: a client between two requests then leaves on
an answer instead of finding its connection closed under its next request."""


def require_uvicorn(what: str) -> Any:
    """Import uvicorn, or raise UnavailableError saying how to install it."""
    try:
        import uvicorn
    except ImportError:
        raise UnavailableError(f"{what} needs uvicorn, which is not installed: "
                               "pip install 'sitebus[asgi]'") from None
    return uvicorn


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _ToBus(logging.Handler):
    """uvicorn's warnings and errors (``uvicorn.error``), written to the bus's log."""

    def __init__(self, bus: Any) -> None:
        super().__init__(logging.WARNING)
        self.bus = bus
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.bus.log(self.format(record), record.levelno)
        except Exception:
            self.handleError(record)


def _log_to_bus(bus: Any) -> None:
    logger = logging.getLogger("uvicorn.error")
    for handler in list(logger.handlers):
        if isinstance(handler, _ToBus):
            handler.bus = bus
            return
    logger.addHandler(_ToBus(bus))
    logger.propagate = False


class UvicornServer:
    """uvicorn serving an AsgiSite on a Listener, with start/stop/ready for ServerAdapter."""

    ready = False
    ready_event: threading.Event | None = None
    scheme = "http"

    def __init__(self, listener: Listener, site: AsgiSite, timeout: float = 10,
                 shutdown_timeout: float = 5, max_header: int = 0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.uvicorn = require_uvicorn("an ASGI app")
        self.listener = listener
        self.socket = listener
        self.site = site
        self.timeout = timeout
        self.shutdown_timeout = shutdown_timeout
        self.max_header = max_header
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self.server: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._probe_sent: float | None = None
        self._lock = threading.Lock()
        self._stop_requested = False

    def start(self) -> None:
        """Serve until stopped (blocking: the adapter runs this in its server thread)."""
        loop = _new_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(loop))
        finally:
            loop.close()
            self.ready = False

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        await self.site.startup()
        # What is alive once the apps have started (modules, the apps, their pools) lives as
        # long as the process: frozen, it is left out of every collection, so a full one scans
        # only what requests allocate. Without this a worker's full collections over sitebus's
        # and the apps' objects put its p99 latency at 20-45 ms against 3-17 ms for the peers
        # (bench/bench_asgi.py).
        gc.freeze()
        config = self.uvicorn.Config(
            self.site, interface="asgi3", lifespan="off", access_log=False, log_config=None,
            proxy_headers=False,
            server_header=False, date_header=True, timeout_keep_alive=max(1, int(self.timeout)),
            timeout_graceful_shutdown=self.shutdown_timeout,
            headers=[("server", f"sitebus/{__version__} uvicorn/{self.uvicorn.__version__}")],
        )
        if self.max_header:
            config.h11_max_incomplete_event_size = self.max_header
        if self.ssl_context is not None:
            config.load()
            config.ssl = self.ssl_context  # uvicorn's own is built from files; ours is made
        self.server = self.uvicorn.Server(config)
        try:
            serving = asyncio.ensure_future(self.server.serve(sockets=[self.listener]))
            with self._lock:
                self.loop = loop
                stop_now = self._stop_requested
            if stop_now:
                self.server.should_exit = True
            while not self.server.started and not serving.done():
                await asyncio.sleep(0.005)
            if self.server.started:
                self.ready = True
                if self.ready_event is not None:
                    self.ready_event.set()
            await serving
        finally:
            await self.site.shutdown()

    def stalled(self, now: float) -> float | None:
        """Return for how long the event loop has not run, or None (``time.monotonic``).

        A pre-fork worker's heartbeat asks at every beat (``RequestTracker.oldest``): a probe
        still unanswered from the last ask means the loop is blocked (a handler computing, or
        calling blocking code), which is how an async worker hangs; one asked after the
        answer costs nothing while idle.
        """
        loop = self.loop
        if loop is None or not self.ready:
            return None
        sent = self._probe_sent
        if sent is not None:
            return now - sent
        self._probe_sent = now
        try:
            loop.call_soon_threadsafe(self._probe_answered)
        except RuntimeError:
            self._probe_sent = None  # the loop has closed: the server is stopping
        return None

    def _probe_answered(self) -> None:
        self._probe_sent = None

    def _begin_drain(self) -> None:
        """In the loop: stop accepting, close websockets with 1001, let keep-alive clients
        leave (every response says ``Connection: close``), then start uvicorn's shutdown."""
        self.listener.stop_accepting()
        for server in getattr(self.server, "servers", ()):
            server.close()
        self.site.draining = True
        asyncio.ensure_future(self.site.close_websockets(1001))
        asyncio.ensure_future(self._shut_down_after_grace())

    async def _shut_down_after_grace(self) -> None:
        """Wait up to KEEP_ALIVE_GRACE for the clients to leave, then shut down."""
        deadline = asyncio.get_running_loop().time() + min(KEEP_ALIVE_GRACE,
                                                           self.shutdown_timeout)
        state = getattr(self.server, "server_state", None)
        while asyncio.get_running_loop().time() < deadline:
            if state is not None and not state.connections:
                break
            await asyncio.sleep(0.01)
        self.server.should_exit = True

    def stop(self) -> None:
        """Begin the drain; the server thread ends once it is done."""
        with self._lock:
            self._stop_requested = True
            loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._begin_drain)
            except RuntimeError:
                pass  # the loop has just closed: nothing left to stop


def build(server: ServerSettings, listener: Listener | None) -> UvicornServer:
    """Build the uvicorn server of a Server (``server_types['uvicorn']``) on ``listener``."""
    assert listener is not None
    mounts = getattr(server, "asgi", None) or AsgiMounts()
    _log_to_bus(server.bus)
    site = AsgiSite(mounts, server.wsgi_app, threads=server.thread_pool,
                    max_body=server.max_request_body_size, log_error=server.bus.log,
                    tracker=getattr(server, "request_tracker", None))
    return UvicornServer(listener, site, timeout=server.socket_timeout,
                         shutdown_timeout=server.shutdown_timeout,
                         max_header=server.max_request_header_size,
                         ssl_context=tls_context(server))


def tls_context(server: ServerSettings) -> ssl.SSLContext | None:
    """Return the TLS context of the ``server.ssl_*`` settings, or None for plain HTTP.

    Built by the same code as cheroot's (``make_ssl_adapter``), so both server types read the
    settings alike. Raises ssl.SSLError for a bad certificate or key (the Server reports it
    naming ``ssl_certificate``).
    """
    adapter = make_ssl_adapter(server.ssl_certificate, server.ssl_private_key,
                               server.ssl_certificate_chain, server.ssl_ciphers,
                               server.ssl_context)
    return None if adapter is None else adapter.context

