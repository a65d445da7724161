"""Keep-alive drain: retire a cheroot server without losing a request of a kept-alive client.

A server that stops (a stop, a restart's hand-over, a worker retired by a reload) has
connections in three states: a request in flight, idle between two requests of a client that
keeps its connection, or just accepted. Closing an idle keep-alive connection races with the
client: a request it sends in the same instant meets a closed socket, and the client sees
``RemoteDisconnected`` or a reset (a proxy such as nginx answers 502 and marks the upstream
failed). HTTP/1.1 offers one race-free way to end a connection: a response carrying
``Connection: close``. So the drain, which :class:`~sitebus.servers.wsgiserver.CherootServer`'s
``stop()`` runs after its listener stopped accepting, goes:

1. every response from now on carries ``Connection: close`` (the server's
   ``can_add_keepalive_connection`` is False while ``draining``), and its connection is closed
   once the response is written, by the thread that wrote it;
2. the head reader (``sitebus.servers.headreader``), which holds the idle connections, goes on
   watching them: one that receives a request has its head read and is handed to a worker
   thread, served, and closed after that one response; one whose client closes it is closed;
3. the drain ends as soon as no connection is left. Connections that stay silent are closed
   after ``idle_grace`` seconds (``IDLE_GRACE``, within ``shutdown_timeout``); requests still
   in flight at ``shutdown_timeout`` are cut (see below).

The remaining window: a client that kept a connection silent for the whole idle grace and
sends a request in the very instant it is closed sees it closed, exactly as when the keep-alive
timeout (``server.socket_timeout``) closes an idle connection in normal operation; clients and
proxies retry such a request on a new connection or must time out idle connections first
(nginx: ``keepalive_timeout`` below ``socket_timeout``). A restart in place does better: its
idle connections are handed to the new process image with the listening sockets (see
``sitebus.servers.handover``), so none is closed at all; only TLS connections, whose session cannot
cross an exec, are closed at the end of the grace.

Rejected: closing idle connections at once (cheroot's own stop, what lost 22 of 26,000
requests of keep-alive clients across 4 rolling reloads); waiting for every connection to
end by itself (a browser keeps one for minutes); shutting the read side first (the response
to a request already on its way could not be written).

Before a stop shuts its own listening socket down, it lets the server accept what waits in
the kernel's queue (``wait_for_empty_backlog``, at most ``BACKLOG_WAIT`` seconds): shutting a
listening socket down resets the connections queued on it, and a client (nginx opening a new
connection to an instance) that already sent its request on one would see a reset. What
completes its handshake in the instant between the last check and the shutdown still is.
(A restart or a retiring worker leaves the socket open: the queue waits for the others.)

Bounded stop: requests still in flight when ``shutdown_timeout`` has passed are cut: their
connection is shut down, each is logged (peer, seconds running), and their threads are listed
in ``abandoned_threads``; Python cannot end a thread, so the bus no longer waits for them
at exit (``Bus.abandon``) and the process ends without them.

A stop asked for by a request (a handler calling ``engine.exit()``, a KeyboardInterrupt in a
handler) waits for every request but that one: it cannot end before the stop it waits for.
It is neither waited for nor cut; its response, written once the stop returns, carries
``Connection: close`` (``ConnectionTracker.served_by`` finds it by the asking thread).

cheroot hooks used (public attributes of cheroot's ``HTTPServer`` and ``HTTPConnection``;
``tests/test_drain.py`` fails first, naming the hook, if a cheroot release changes one):
``ConnectionClass`` (this module's :class:`TrackedConnection`, which notes each connection's
requests and its close), ``put_conn`` and ``process_conn`` (where idle connections go and
come back), ``can_add_keepalive_connection``, ``HTTPConnection.socket``, ``rfile.has_data()``,
``linger`` (a handed-over connection is not shut down) and ``close()``.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

from sitebus.servers.connection import Connection

__all__ = ["BACKLOG_WAIT", "IDLE_GRACE", "ConnectionTracker", "TrackedConnection",
           "wait_for_empty_backlog"]

IDLE_GRACE = 1.0
"""Seconds a draining server keeps a silent keep-alive connection open for its next request."""

BACKLOG_WAIT = 0.1
"""The longest a stop waits for the server to accept the connections queued in the kernel."""


def wait_for_empty_backlog(sock: socket.socket, timeout: float = BACKLOG_WAIT) -> bool:
    """Wait until nothing waits to be accepted on the listening ``sock``; False on timeout.

    A listening socket polls readable while its accept queue holds a connection; the server's
    own loop, still running, accepts them meanwhile.
    """
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    deadline = time.monotonic() + timeout
    while poller.poll(0):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)  # a few milliseconds at most, once per stop
    return True


class ConnectionTracker:
    """Which connections are open, which serve a request (by which thread, since when), which idle.

    Safe from any thread; ``changed`` is notified whenever a connection ends a request, goes
    idle or closes, so a drain sleeps until something happens.
    """

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.open: set[Any] = set()
        self.busy: dict[Any, tuple[threading.Thread, float]] = {}
        self.idle: set[Any] = set()

    def _notify(self) -> None:
        self.changed.notify_all()

    def opened(self, conn: Any) -> None:
        with self.changed:
            self.open.add(conn)

    def begin(self, conn: Any) -> None:
        with self.changed:
            self.idle.discard(conn)
            self.busy[conn] = (threading.current_thread(), time.monotonic())

    def served_by(self, thread: threading.Thread) -> Any:
        """Return the connection whose request ``thread`` is serving, or None."""
        with self.changed:
            for conn, (serving, _) in self.busy.items():
                if serving is thread:
                    return conn
        return None

    def end(self, conn: Any) -> None:
        with self.changed:
            self.busy.pop(conn, None)
            self._notify()

    def went_idle(self, conn: Any) -> None:
        with self.changed:
            self.idle.add(conn)
            self._notify()

    def dispatched(self, conn: Any) -> None:
        with self.changed:
            self.idle.discard(conn)

    def closed(self, conn: Any) -> None:
        with self.changed:
            self.open.discard(conn)
            self.idle.discard(conn)
            self.busy.pop(conn, None)
            self._notify()


class TrackedConnection(Connection):
    """cheroot's connection, reporting its requests and its close to the server's tracker."""

    def __init__(self, server: Any, sock: Any, makefile: Any = None) -> None:
        if makefile is None:
            super().__init__(server, sock)
        else:
            super().__init__(server, sock, makefile)
        self.tracker: ConnectionTracker = server.connection_tracker
        self.tracker.opened(self)

    def communicate(self) -> bool:
        self.tracker.begin(self)
        try:
            return bool(super().communicate())
        finally:
            self.tracker.end(self)

    closed = False

    def close(self) -> None:
        """Close once: a drained connection may also be in cheroot's selector, which closes
        what it holds when the server stops."""
        if self.closed:
            return
        self.closed = True
        try:
            super().close()
        finally:
            self.tracker.closed(self)
