"""cheroot's WSGI server on a listener sitebus bound, with TLS, and a stop that drains.

cheroot's ``HTTPServer.prepare()`` binds the socket itself and, whenever ``LISTEN_PID`` is
set, takes fd 3 for every server in the process. CherootServer replaces ``prepare()`` so the
server serves on the :class:`~sitebus.servers.listeners.Listener` it is given, and does the rest of
cheroot's preparation (the worker threads, ``ready``), with sitebus's
:class:`~sitebus.servers.headreader.HeadReader` in place of cheroot's connection manager: request
heads are read by one thread, so slow clients hold no worker thread, and framing is checked
strictly (see ``sitebus.servers.framing``; bodies through ``sitebus.servers.strictgateway``).

``stop()`` drains, in this order:

1. when sitebus owns the listening socket, the connections already queued on it are accepted
   first (shutting a listening socket down resets them); then the head reader forgets the
   listener (before it is closed: epoll would go on reporting a closed duplicate of a socket
   that stays open elsewhere), and the listener stops accepting;
2. our duplicate of the listener is closed before cheroot's own ``stop()`` runs, because that
   connects to the server's socket to wake ``accept()``: on a socket systemd or the next
   process image keeps, that would queue a bogus connection (and re-activate the service);
3. the keep-alive drain (``sitebus.servers.drain``), run by the head reader, which keeps reading
   heads while it lasts: responses carry ``Connection: close``, idle connections are served their
   next request, silent ones are closed (or handed over, on a restart) after the idle grace,
   and requests in flight get until ``shutdown_timeout``; those still running then are cut
   and their threads abandoned (Python cannot end a thread from outside; the bus exits
   without them); the request that asked for the stop, if any, is neither waited for nor
   cut (``stop_caller``);
4. cheroot's ``stop()`` ends the head reader and its worker threads (in a helper thread that
   is given up on when a cut request's thread never returns).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from cheroot import __version__ as cheroot_version
from cheroot import wsgi
from cheroot.ssl import Adapter
from cheroot.ssl.builtin import BuiltinSSLAdapter
from cheroot.workers.threadpool import WorkerThread

from sitebus import __version__
from sitebus.servers import handover
from sitebus.servers.drain import (
    IDLE_GRACE,
    ConnectionTracker,
    TrackedConnection,
    wait_for_empty_backlog,
)
from sitebus.servers.headreader import HeadReader
from sitebus.servers.listeners import Listener
from sitebus.servers.strictgateway import strict_gateway

__all__ = ["CherootServer", "make_ssl_adapter"]


def listener_address(sock: Listener) -> Any:
    """Return cheroot's ``bind_addr`` for a bound socket: (host, port) or a path."""
    address = sock.getsockname()
    if isinstance(address, tuple):
        return address[:2]
    if isinstance(address, bytes):
        return address.decode("utf-8", "surrogateescape")
    return address


class CherootServer(wsgi.Server):
    """cheroot's WSGI server, serving on a Listener instead of binding by itself."""

    version = f"sitebus/{__version__} Cheroot/{cheroot_version}"
    """The Server header and SERVER_SOFTWARE, as the reference names both parts."""

    ready_event: threading.Event | None = None
    """Set when the server is ready, so ``ServerAdapter.wait()`` need not poll ``ready``."""

    ConnectionClass = TrackedConnection

    header_timeout: float | None = None
    """Seconds a request head may take from its first byte (None: ``timeout``)."""

    max_waiting: int | None = None
    """Connections that may wait for a request head (None: ``default_max_waiting()``)."""

    head_reader: HeadReader | None = None
    """What reads request heads and holds idle connections while the server runs."""

    idle_grace: float = IDLE_GRACE
    """Seconds a stopping server keeps a silent keep-alive connection open
    (``sitebus.servers.drain``)."""

    draining = False
    """True from the moment ``stop()`` begins: every response then carries Connection: close."""

    handover_name: str | None = None
    """Set for a restart: idle connections go to the next process image under this name
    (``sitebus.servers.handover``) instead of being closed."""

    adopted: list[socket.socket] = []
    """Idle connections the previous process image handed over, served from ``prepare()``."""

    def __init__(
        self,
        listener: Listener,
        wsgi_app: Callable[..., Any],
        wsgi_version: tuple[Any, int] = (1, 0),
        **kwargs: Any,
    ) -> None:
        # wsgi.Server.__init__ picks the gateway by wsgi_version from a map that (cheroot 11)
        # lacks ('u', 0), though its Gateway_u0 exists: build with 1.0, then put it in.
        self.wsgi_version = (1, 0)
        super().__init__(listener_address(listener), wsgi_app, **kwargs)
        if tuple(wsgi_version) == ("u", 0):
            self.gateway = wsgi.Gateway_u0
        self.wsgi_version = wsgi_version
        self.listener = listener
        self.gateway = strict_gateway(self.gateway)
        self.connection_tracker = ConnectionTracker()
        self.abandoned_threads: list[threading.Thread] = []
        """Threads of requests cut at ``shutdown_timeout``, still running (see ``stop()``)."""
        self._serving_thread: threading.Thread | None = None

    stop_caller: threading.Thread | None = None
    """The thread that asked for the next stop (``ServerAdapter.begin_stop`` sets it; else the
    thread running ``stop()``). When it serves a request of this server (a handler that
    called ``engine.exit()``), the stop neither waits for nor cuts that request: it cannot end
    before the stop it waits for, and writes its response (Connection: close) once it does."""

    def prepare(self) -> None:
        """Prepare to serve on our listener: head reader, worker threads, ready."""
        if self.software is None:
            self.software = f"{self.version} Server"
        self.socket = self.listener
        self.draining = False
        # cheroot's serve() runs self._connections, and put_conn() gives it kept-alive
        # connections: the head reader takes the place of its ConnectionManager.
        self.head_reader = HeadReader(self, self.header_timeout, self.max_waiting)
        self._connections = self.head_reader
        self.requests.start()
        self.ready = True
        self._start_time = time.time()
        adopted, self.adopted = self.adopted, []
        for sock in adopted:  # idle connections handed over by the previous process image
            self.head_reader.adopt(sock)
        if self.ready_event is not None:
            self.ready_event.set()

    def serve(self) -> None:
        self._serving_thread = threading.current_thread()
        super().serve()

    @property
    def can_add_keepalive_connection(self) -> bool:
        """False while draining, so that every response carries Connection: close."""
        return not self.draining and bool(super().can_add_keepalive_connection)

    def put_conn(self, conn: Any) -> None:
        """Give an idle connection back to the head reader for its next request."""
        self.connection_tracker.went_idle(conn)
        super().put_conn(conn)

    def process_conn(self, conn: Any) -> None:
        self.connection_tracker.dispatched(conn)
        super().process_conn(conn)

    def stop(self) -> None:
        """Refuse new connections at once; drain kept-alive connections; cut what overruns."""
        caller, self.stop_caller = self.stop_caller or threading.current_thread(), None
        if not self.ready or self.draining:
            return
        began = time.monotonic()
        deadline = began + max(0.0, self.shutdown_timeout)
        own = self.connection_tracker.served_by(caller)  # the request asking for this stop
        if self.listener.owned:  # shutting it down resets what waits to be accepted
            wait_for_empty_backlog(self.listener)
        reader = self.head_reader
        if reader is not None:
            reader.stop_accepting()  # unregistered before the listener closes
        self.listener.stop_accepting()
        self.listener.close()
        self.draining = True
        grace = 0.0 if self._can_hand_over() else self.idle_grace  # nothing to wait for
        if reader is not None:
            reader.begin_draining(min(deadline, began + grace), end_idle=self._end_idle,
                                  hard_deadline=deadline)
            self._wait_drained(reader, deadline, own)
        self._cut_overrunning(time.monotonic() - began, own)
        finisher = threading.Thread(target=super().stop, name=f"{self.software} stop",
                                    daemon=True)
        finisher.start()
        # cheroot's stop joins every worker thread; a worker's (a handler that stopped the bus,
        # a KeyboardInterrupt in a handler: cheroot's interrupt) ends only after this returns.
        if not (isinstance(caller, WorkerThread) and caller.server is self):
            finisher.join(None if not self.abandoned_threads else 0.25)

    def _wait_drained(self, reader: HeadReader, deadline: float, own: Any = None) -> None:
        """Return once no connection but ``own`` is open or waits in the head reader, or at
        ``deadline``."""
        tracker = self.connection_tracker
        with tracker.changed:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or tracker.open <= {own} and reader.waiting == 0:
                    return
                # A connection's close notifies; a TLS handshake the reader drops does not.
                tracker.changed.wait(min(remaining, 0.05 if not tracker.open else 1.0))

    def _can_hand_over(self) -> bool:
        return self.handover_name is not None and self.ssl_adapter is None

    def _end_idle(self, conn: Any) -> None:
        """Close a connection that stayed silent through the drain, or hand it over."""
        if self._can_hand_over() and not conn.rfile.has_data():
            assert self.handover_name is not None
            conn.linger = True  # cheroot's close() must not shut the connection down
            handover.give(conn.socket, self.handover_name)
            conn.close()
            return
        conn.close()

    def _cut_overrunning(self, waited: float, own: Any = None) -> None:
        """Shut the connections of requests still in flight (``own`` excepted); note their
        threads as abandoned."""
        with self.connection_tracker.changed:
            overrunning = [item for item in self.connection_tracker.busy.items()
                           if item[0] is not own]
        now = time.monotonic()
        for conn, (thread, started) in overrunning:
            self.error_log(
                f"Cut a request from {_peer(conn)} after {now - started:.1f} s in flight: still "
                f"running {waited:.1f} s after the stop began (server.shutdown_timeout "
                f"{self.shutdown_timeout:g}); its thread {thread.name} is abandoned", 30)
            try:
                conn.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.abandoned_threads.append(thread)

    def stalled(self, now: float) -> float | None:
        """Return for how long this server has been unable to answer (see HeadReader)."""
        reader = self.head_reader
        return reader.stalled(now) if reader is not None and self.ready else None


def _peer(conn: Any) -> str:
    if conn.remote_addr is None:
        return "a local client"
    return f"{conn.remote_addr}:{conn.remote_port}"


class _ContextSSLAdapter(BuiltinSSLAdapter):
    """The builtin adapter on an SSLContext the site built (certificates already loaded)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        Adapter.__init__(self, None, None)
        self.context = context
        self._server_env: dict[str, Any] = {}


def make_ssl_adapter(
    certificate: str | None,
    private_key: str | None,
    certificate_chain: str | None = None,
    ciphers: str | None = None,
    context: ssl.SSLContext | None = None,
) -> Adapter | None:
    """Return cheroot's builtin TLS adapter for these settings, or None for plain HTTP.

    Raises OSError (a file cannot be read) or ssl.SSLError (a bad certificate or key, a key
    that does not match, a cipher string that selects nothing).
    """
    if certificate:
        adapter = BuiltinSSLAdapter(certificate, private_key, certificate_chain, ciphers)
        if context is not None:
            adapter.context = context
        return adapter
    if context is not None:
        if ciphers:
            context.set_ciphers(ciphers)
        return _ContextSSLAdapter(context)
    return None
