"""The head reader: one thread reads request heads, so no worker thread waits on a client.

cheroot hands a connection to a worker thread as soon as it is accepted, or as soon as one
byte of the next request arrives on a kept-alive connection; the thread then blocks reading
the head, up to ``socket_timeout`` per read. Four clients that send a header line every few
seconds (slowloris), or that connect and send nothing, hold the four threads of a default
site, and every other request waits.

``HeadReader`` takes the place of cheroot's ``ConnectionManager`` (the object cheroot's
``serve()`` runs, and that worker threads give kept-alive connections back to). It owns every
connection that is not being served: newly accepted ones, kept-alive ones between requests,
and ones whose head is still arriving. One thread waits on all of them with a selector
(epoll); it reads what arrives into a buffer of the connection's own, finishes TLS handshakes
without blocking, and passes a connection to cheroot's thread pool only once a whole head is
buffered (and a small body declared by ``Content-Length``: up to ``SMALL_BODY`` bytes, unless
the client waits for ``100 Continue``). cheroot then parses the buffered bytes as if it read
them from the socket: the connection's reader serves the buffer first (``BufferedSocketIO``).
Before that, the head is checked by ``sitebus.servers.framing.read_head``: a refused head is
answered 400/413/431/501 from this thread, and the connection closed.

Bounds, so that slow clients cost a little memory and nothing else:

- time: a connection must start its head within ``timeout`` (``server.socket_timeout``) of
  being accepted or kept alive, read to read, and deliver the whole head within
  ``header_timeout`` of its first byte (of being accepted, for a new connection); a head still
  incomplete then is answered 408. A kept-alive connection idle for ``timeout`` is closed.
- size: a head larger than ``max_request_header_size`` is answered 431.
- number: at most ``max_waiting`` connections wait here; when one more arrives the one that
  has waited longest is closed (a slow client, or an idle kept-alive one), so that clients
  which send their request at once are still served however many slow ones there are.

Alternatives weighed: peeking at the kernel's buffer (MSG_PEEK) would leave cheroot reading
the socket unchanged, but cannot work under TLS (the bytes are encrypted) and re-reads a
growing head from the start at every wake-up; a thread per connection is what cheroot does;
an asyncio server core would replace cheroot rather than feed it.

Draining (for stop, restart and reload): ``begin_draining(deadline)`` stops accepting, makes
every later response carry ``Connection: close`` (``can_add_keepalive_connection`` is False),
serves the requests that still arrive on waiting connections, and closes whatever still waits
at ``deadline``. ``stop_accepting()`` alone unregisters the listener.

Health: ``stalled(now)`` returns how long the server has been unable to answer: the age of the
oldest connection handed to the thread pool and not yet taken by a thread, or of a wake-up
this thread has not answered. A worker's heartbeat reports it (see ``sitebus.workers.worker``).

The cheroot parts used are public names: ``HTTPConnection`` (subclassed, so a thread taking a
connection says so), ``makefile.StreamReader`` (subclassed, to serve the buffer first),
``server.process_conn`` and ``put_conn``. The one assumption about cheroot's insides is that
``StreamReader`` is a buffered reader over a raw socket reader, built in ``__init__``; it is
made in ``StreamReader`` alone, and tests/test_headreader.py fails if it stops holding.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import os
import resource
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cheroot import makefile

from sitebus.servers.connection import BufferedSocketIO, Connection, StreamReader
from sitebus.servers.framing import (
    HEADER_TOO_LARGE,
    Head,
    Refusal,
    find_head_end,
    read_head,
)

__all__ = ["HeadReader", "default_max_waiting"]

SMALL_BODY = 64 * 1024
"""A body declared up to this size is read before its request is handed to a thread."""

MAX_HEAD = 1024 * 1024
"""The largest head buffered when ``max_request_header_size`` is 0 (no limit)."""

LINGER = 2.0
"""Seconds a refused connection is read and discarded before it is closed, so the client
reads the answer instead of a reset (closing with unread data sends RST)."""

ACCEPT_BATCH = 1
"""Connections accepted per wake-up of the listener. One, as cheroot does: pre-fork workers
share the listener, and a worker that took a whole burst (wrk's 16 connections at once) would
serve it alone while the others idle (measured: -w 2 then served as one process)."""

TIMEOUT_REQUEST = Refusal("408 Request Timeout", "The request head took too long")
CUT_SHORT = Refusal("400 Bad Request", "The request ends before its head or body does")

_LISTENER = object()
_WAKE = object()


def default_max_waiting() -> int:
    """Return how many connections may wait for a head: half the descriptors, 64 to 4096."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(64, min(4096, soft // 2))


class _Waiting:
    """A connection the head reader holds, and what it knows of the head so far."""

    __slots__ = ("sock", "fd", "tls", "conn", "raw", "handshaking", "first_byte", "head_by",
                 "idle_by", "deadline", "scanned", "head", "needed", "lingering", "closed")

    def __init__(self, sock: socket.socket, conn: Connection | None, head_by: float,
                 idle_by: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.conn = conn
        self.raw: BufferedSocketIO | None = conn.rfile.raw if conn is not None else None
        self.handshaking = conn is None
        self.first_byte = False
        self.head_by = head_by
        self.idle_by = idle_by
        self.deadline = min(head_by, idle_by)
        self.scanned = 0
        self.head: Head | None = None
        self.needed = 0
        self.lingering = False
        self.closed = False


class HeadReader:
    """Holds the connections not being served; hands one to cheroot once its head is in."""

    def __init__(self, server: Any, header_timeout: float | None = None,
                 max_waiting: int | None = None) -> None:
        self.server = server
        self.listener = server.socket
        self.timeout = float(server.timeout)
        self.header_timeout = float(header_timeout if header_timeout is not None
                                    else server.timeout)
        self.max_waiting = max_waiting if max_waiting is not None else default_max_waiting()
        limit = getattr(server, "max_request_header_size", 0) or 0
        self.max_head = limit if limit > 0 else MAX_HEAD
        self.max_body = getattr(server, "max_request_body_size", 0) or 0
        adapter = getattr(server, "ssl_adapter", None)
        self.adapter = adapter
        self.tls_context: ssl.SSLContext | None = getattr(adapter, "context", None)
        self.draining = False
        self.drain_deadline: float | None = None
        self.hard_deadline: float | None = None
        self.end_idle: Callable[[Connection], None] | None = None
        self.evicted = 0
        """Connections closed to make room (``max_waiting``)."""
        self.queued: dict[Connection, float] = {}
        """Connections handed to the thread pool, not yet taken, with when they were handed."""
        self._selector = selectors.DefaultSelector()
        self._waiting: OrderedDict[int, _Waiting] = OrderedDict()
        self._deadlines: list[tuple[float, int, _Waiting]] = []
        self._order = itertools.count()
        self._inbox: list[Connection] = []
        """Kept-alive connections with bytes of a next request already read (pipelining)."""
        self._returned: list[_Waiting] = []
        """Kept-alive connections registered by the threads that served them, for the loop
        to account for (appending to a list and swapping it are atomic in Python)."""
        self._sleep_until = float("-inf")
        """When the sleeping loop will wake by itself (-inf while it is awake)."""
        self._ready: list[Connection] = []
        """Connections whose head is in, handed to the thread pool at the end of a loop turn."""
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._selector.register(self._wake_fd, selectors.EVENT_READ, _WAKE)
        self._listening = False
        if self.listener is not None:
            self._selector.register(self.listener, selectors.EVENT_READ, _LISTENER)
            self._listening = True
        self._probe_sent: float | None = None
        self._stop_requested = False
        self._serving = threading.Event()
        self._finished = threading.Event()
        self._finished.set()
        self._closed = False
        self._last_eviction_log = 0.0

    # -- what cheroot calls ----------------------------------------------------------------

    @property
    def can_add_keepalive_connection(self) -> bool:
        """False while draining or full, so cheroot closes the connection after its response."""
        return not self.draining and len(self._waiting) < self.max_waiting

    def put(self, conn: Connection) -> None:
        """Take back a kept-alive connection after its response (from a worker thread)."""
        if self._closed or self.draining and self.drain_deadline is not None \
                and time.monotonic() >= self.drain_deadline:
            end_idle = self.end_idle
            if end_idle is not None and not self._closed and not conn.rfile.has_data():
                end_idle(conn)  # its response was under way when the drain began
            else:
                conn.close()
            return
        rfile = conn.rfile
        try:
            if isinstance(rfile, StreamReader) and rfile.has_data():
                buffered = rfile.peek(1)  # no I/O: the reader's buffer holds data
                rfile.read1(len(buffered))
                raw: Any = rfile.raw
                raw.pending[0:0] = buffered  # the next head starts there
            if isinstance(conn.socket, ssl.SSLSocket):
                conn.socket.setblocking(False)  # TLS reads must not wait in the loop
        except Exception:  # noqa: BLE001 - never let a worker thread die here (cheroot
            conn.close()  # would stop the server): a connection that cannot go on closes
            return
        if isinstance(rfile, StreamReader) and getattr(rfile.raw, "pending", None):
            self._inbox.append(conn)  # pipelined: the next head may be in already
            self._wake()
            return
        # Registered here, by the thread that served it, as cheroot does: no wake-up of the
        # loop per request. The loop does the bookkeeping when it next runs (_take_returned).
        waiting = _Waiting(conn.socket, conn, float("inf"), time.monotonic() + self.timeout)
        try:
            self._selector.register(waiting.sock, selectors.EVENT_READ, waiting)
        except (OSError, ValueError, KeyError):
            conn.close()
            return
        self._returned.append(waiting)
        if waiting.deadline < self._sleep_until or self._closed:
            self._wake()

    def run(self, expiration_interval: float = 0.5) -> None:
        """Serve until ``stop()``: accept, read heads, hand over, expire."""
        self._finished.clear()
        self._serving.set()
        try:
            while not self._stop_requested:
                self._once()
        finally:
            self._serving.clear()
            self._finished.set()

    def stop(self) -> None:
        """End ``run()`` and wait for it."""
        self._stop_requested = True
        self._wake()
        self._finished.wait(5)

    def close(self) -> None:
        """Close every connection held and the selector."""
        self._closed = True
        inbox, self._inbox = self._inbox, []
        for conn in inbox:
            conn.close()
        returned, self._returned = self._returned, []
        for waiting in returned + list(self._waiting.values()):
            self._close(waiting)
        self._selector.close()
        try:
            os.close(self._wake_fd)
        except OSError:
            pass

    # -- what sitebus calls -----------------------------------------------------------------

    def stop_accepting(self) -> None:
        """Accept no more connections (the listener is unregistered at once)."""
        if self._listening:
            self._listening = False
            try:
                self._selector.unregister(self.listener)
            except (KeyError, ValueError, OSError):
                pass

    def begin_draining(self, deadline: float | None = None,
                       end_idle: Callable[[Connection], None] | None = None,
                       hard_deadline: float | None = None) -> None:
        """Stop accepting; close connections after their next response; end what still
        waits at ``deadline`` (``time.monotonic()``; None: at ``stop()``).

        With ``end_idle``, a connection that received nothing of a next request is given to
        it at ``deadline`` (a restart hands it to the next process image) instead of being
        closed, and one whose head is still arriving is kept until ``hard_deadline``.
        """
        self.stop_accepting()
        self.draining = True
        self.drain_deadline = deadline
        self.end_idle = end_idle
        self.hard_deadline = hard_deadline
        self._wake()

    def adopt(self, sock: socket.socket) -> None:
        """Hold a kept-alive connection the previous process image handed over (before
        ``run()``): it is served like one of ours between two requests."""
        address: Any = None
        if not isinstance(self.server.bind_addr, (str, bytes)):
            try:
                address = sock.getpeername()[:2]
            except OSError:
                sock.close()
                return
        sock.settimeout(self.server.timeout)
        conn = self._connection(sock, address, {})
        waiting = _Waiting(sock, conn, float("inf"), time.monotonic() + self.timeout)
        if self._hold(waiting):
            self._read(waiting)

    def stalled(self, now: float) -> float | None:
        """Return for how long the server has been unable to answer, or None (``monotonic``)."""
        if not self._serving.is_set():
            return None
        ages = []
        if self._probe_sent is not None:
            ages.append(now - self._probe_sent)
        else:
            self._probe_sent = now
            self._wake()
        queued = list(self.queued.values())
        if queued:
            ages.append(now - min(queued))
        return max(ages) if ages else None

    @property
    def waiting(self) -> int:
        """How many connections wait here for a request head (idle or partly received)."""
        return len(self._waiting)

    # -- the loop ---------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.eventfd_write(self._wake_fd, 1)
        except OSError:
            pass

    def _once(self) -> None:
        self._take_returned()
        now = time.monotonic()
        wake_at = self._deadlines[0][0] if self._deadlines else float("inf")
        if self.draining and (self._waiting or self._returned):
            for when in (self.drain_deadline, self.hard_deadline):
                if when is not None and when > now:  # a past one was dealt with by _expire
                    wake_at = min(wake_at, when)
        self._sleep_until = wake_at
        if self._returned or self._ready:  # given back, or a head already in (an adopted
            wake_at = now                    # connection's): deal with it before sleeping
        timeout = None if wake_at == float("inf") else max(0.0, wake_at - now)
        try:
            events = self._selector.select(timeout)
        except OSError:
            events = []
        self._sleep_until = float("-inf")
        self._probe_sent = None
        self._take_returned()
        for key, mask in events:
            if key.data is _LISTENER:
                self._accept()
            elif key.data is _WAKE:
                self._take_inbox()
            else:
                waiting = key.data
                if not waiting.closed:
                    self._on_ready(waiting, mask)
        self._expire(time.monotonic())
        ready, self._ready = self._ready, []
        for conn in ready:
            self.server.process_conn(conn)

    def _take_returned(self) -> None:
        if not self._returned:
            return
        returned, self._returned = self._returned, []
        for waiting in returned:
            if not waiting.closed:
                self._hold(waiting, registered=True)

    def _take_inbox(self) -> None:
        try:
            os.eventfd_read(self._wake_fd)
        except OSError:
            pass
        inbox, self._inbox = self._inbox, []
        now = time.monotonic()
        for conn in inbox:
            waiting = _Waiting(conn.socket, conn, float("inf"), now + self.timeout)
            if self._hold(waiting):
                self._check(waiting, now)

    def _hold(self, waiting: _Waiting, registered: bool = False) -> bool:
        """Start watching a connection; False when it could not be registered."""
        if len(self._waiting) >= self.max_waiting:
            self._evict_oldest()
        if not registered:
            try:
                self._selector.register(waiting.sock, selectors.EVENT_READ, waiting)
            except (OSError, ValueError, KeyError):
                self._discard(waiting)
                return False
        self._waiting[waiting.fd] = waiting
        heapq.heappush(self._deadlines, (waiting.deadline, next(self._order), waiting))
        return True

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                if not getattr(self.listener, "accepting", True):
                    self.stop_accepting()
                return
            except InterruptedError:
                continue
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if not self._evict_oldest():
                        return
                    continue
                if error.errno in (errno.EBADF, errno.EINVAL):
                    self.stop_accepting()
                return
            if self.server.stats["Enabled"]:
                self.server.stats["Accepts"] += 1
            self._welcome(sock, address)

    def _welcome(self, sock: socket.socket, address: Any) -> None:
        now = time.monotonic()
        if self.tls_context is not None:
            try:
                sock.setblocking(False)
                tls = self.tls_context.wrap_socket(sock, server_side=True,
                                                   do_handshake_on_connect=False)
            except OSError:
                sock.close()
                return
            waiting = _Waiting(tls, None, now + self.header_timeout, now + self.timeout)
            waiting.raw = None
            if self._hold(waiting):
                self._handshake(waiting)
            return
        # A plain socket stays in timeout mode (non-blocking underneath) all its life: the
        # loop reads it with os.read, which never waits, and cheroot's threads with a timeout.
        sock.settimeout(self.server.timeout)
        conn = self._connection(sock, address, {})
        waiting = _Waiting(sock, conn, now + self.header_timeout, now + self.timeout)
        if self._hold(waiting):
            self._read(waiting)

    def _connection(self, sock: socket.socket, address: Any, ssl_env: dict[str, Any]) -> Connection:
        adapter = self.adapter
        writer = adapter.makefile if adapter is not None else makefile.MakeFile

        def make(s: Any, mode: str = "r", bufsize: int = 8192) -> Any:
            if "r" in mode:
                return StreamReader(s, mode, bufsize)
            return writer(s, mode, bufsize)

        cls = getattr(self.server, "ConnectionClass", Connection)
        conn = (cls if isinstance(cls, type) and issubclass(cls, Connection) else Connection)(
            self.server, sock, make)
        conn.reader = self
        if not isinstance(self.server.bind_addr, (str, bytes)):
            if not address:
                address = ("0.0.0.0", 0) if sock.family == socket.AF_INET else ("::", 0)
            conn.remote_addr, conn.remote_port = address[0], address[1]
        conn.ssl_env = ssl_env
        return conn

    def _handshake(self, waiting: _Waiting) -> None:
        tls = waiting.sock
        assert isinstance(tls, ssl.SSLSocket)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(waiting, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(waiting, selectors.EVENT_WRITE)
            return
        except ssl.SSLError as error:
            if getattr(error, "reason", None) == "HTTP_REQUEST":
                self._answer_plain_http(waiting)
            else:
                self._close(waiting)
            return
        except OSError:
            self._close(waiting)
            return
        self._watch(waiting, selectors.EVENT_READ)
        try:
            address = tls.getpeername()
            ssl_env = self.adapter.get_environ(tls) if self.adapter is not None else {}
        except OSError:
            self._close(waiting)
            return
        waiting.conn = self._connection(tls, address, ssl_env)
        waiting.raw = waiting.conn.rfile.raw
        waiting.handshaking = False
        self._read(waiting)

    def _answer_plain_http(self, waiting: _Waiting) -> None:
        answer = Refusal("400 Bad Request", "The client sent a plain HTTP request, but this "
                         "server only speaks HTTPS on this port.").response()
        try:
            os.write(waiting.sock.fileno(), answer)  # plain text, under the TLS layer
        except OSError:
            pass
        self._close(waiting)

    def _watch(self, waiting: _Waiting, events: int) -> None:
        try:
            self._selector.modify(waiting.fd, events, waiting)
        except (OSError, ValueError, KeyError):
            self._close(waiting)

    def _on_ready(self, waiting: _Waiting, mask: int) -> None:
        if waiting.handshaking:
            self._handshake(waiting)
        elif waiting.lingering:
            self._linger(waiting)
        else:
            self._read(waiting)

    def _read(self, waiting: _Waiting) -> None:
        assert waiting.raw is not None
        pending = waiting.raw.pending
        now = time.monotonic()
        while True:
            try:
                data = waiting.sock.recv(65536) if waiting.tls else os.read(waiting.fd, 65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                break
            except OSError:
                self._close(waiting)
                return
            if not data:
                if pending:  # the client ended its side inside a request
                    self._refuse(waiting, CUT_SHORT)
                else:
                    self._close(waiting)
                return
            if not waiting.first_byte:
                waiting.first_byte = True
                if waiting.head_by == float("inf"):
                    waiting.head_by = now + self.header_timeout
            pending += data
            waiting.idle_by = now + self.timeout
            waiting.deadline = min(waiting.head_by, waiting.idle_by)
            if self._check(waiting, now) or waiting.closed:
                return
            if not waiting.tls:
                return  # epoll says when more arrives; TLS may hold decrypted bytes

    def _check(self, waiting: _Waiting, now: float) -> bool:
        """Hand the connection over if its head (and small body) is in; True if it left."""
        assert waiting.raw is not None
        pending = waiting.raw.pending
        if waiting.head is None:
            end = find_head_end(pending, waiting.scanned)
            if end < 0:
                waiting.scanned = len(pending)
                if len(pending) > self.max_head:
                    self._refuse(waiting, Refusal(HEADER_TOO_LARGE, "The request head is too "
                                                  f"large (more than {self.max_head} bytes)"))
                    return True
                return False
            if end > self.max_head:
                self._refuse(waiting, Refusal(HEADER_TOO_LARGE, "The request head is too large"))
                return True
            verdict = read_head(pending[:end], self.max_body)
            if isinstance(verdict, Refusal):
                self._refuse(waiting, verdict)
                return True
            waiting.head = verdict
            waiting.needed = end
            if 0 < verdict.content_length <= SMALL_BODY and not verdict.expect_continue:
                waiting.needed += verdict.content_length
        if len(pending) < waiting.needed:
            return False
        self._hand_over(waiting, now)
        return True

    def _hand_over(self, waiting: _Waiting, now: float) -> None:
        self._forget(waiting)
        conn = waiting.conn
        assert conn is not None
        if waiting.tls:
            try:
                waiting.sock.settimeout(self.server.timeout)
            except OSError:
                conn.close()
                return
        self.queued[conn] = now
        self._ready.append(conn)

    def _refuse(self, waiting: _Waiting, refusal: Refusal) -> None:
        try:
            if waiting.tls:
                waiting.sock.send(refusal.response())
            else:
                os.write(waiting.fd, refusal.response())
        except (OSError, ValueError):
            self._close(waiting)
            return
        try:
            if waiting.tls:
                self._close(waiting)
                return
            waiting.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(waiting)
            return
        waiting.lingering = True
        waiting.deadline = time.monotonic() + LINGER
        heapq.heappush(self._deadlines, (waiting.deadline, next(self._order), waiting))

    def _linger(self, waiting: _Waiting) -> None:
        try:
            while os.read(waiting.fd, 65536):
                pass
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._close(waiting)  # the client closed its side

    def _expire(self, now: float) -> None:
        if self.draining and self.drain_deadline is not None and now >= self.drain_deadline:
            self._end_drained(now)
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _when, _order, waiting = heapq.heappop(deadlines)
            if waiting.closed:
                continue
            if waiting.deadline > now:  # it read since: wait for its new deadline
                heapq.heappush(deadlines, (waiting.deadline, next(self._order), waiting))
                continue
            if waiting.first_byte and not waiting.lingering and waiting.head is None:
                self._refuse(waiting, TIMEOUT_REQUEST)
            else:
                self._close(waiting)

    def _end_drained(self, now: float) -> None:
        """The drain's idle grace is over: end what waits (see ``begin_draining``)."""
        hard = self.hard_deadline is None or now >= self.hard_deadline
        for waiting in list(self._waiting.values()):
            conn = waiting.conn
            idle = (conn is not None and not waiting.first_byte and not waiting.lingering
                    and not waiting.handshaking and not (waiting.raw and waiting.raw.pending))
            if idle and self.end_idle is not None and conn is not None:
                self._forget(waiting)
                self.end_idle(conn)
            elif idle or hard or self.end_idle is None:
                self._close(waiting)

    def _evict_oldest(self) -> bool:
        """Close the connection that has waited longest; False when none waits."""
        if not self._waiting:
            return False
        _fd, waiting = next(iter(self._waiting.items()))
        self._close(waiting)
        self.evicted += 1
        now = time.monotonic()
        if now - self._last_eviction_log > 60:
            self._last_eviction_log = now
            self.server.error_log(
                f"{self.max_waiting} connections wait for a request head: closing the oldest "
                f"to make room ({self.evicted} so far).", 30)
        return True

    def _forget(self, waiting: _Waiting) -> None:
        waiting.closed = True  # for the head reader: its deadline entries are dropped
        if self._waiting.get(waiting.fd) is waiting:
            self._waiting.pop(waiting.fd)
        try:
            self._selector.unregister(waiting.fd)  # by number: no search of the map
        except (KeyError, ValueError, OSError):
            pass

    def _close(self, waiting: _Waiting) -> None:
        if waiting.closed and waiting.sock.fileno() < 0:
            return  # already closed
        self._forget(waiting)
        self._discard(waiting)

    def _discard(self, waiting: _Waiting) -> None:
        waiting.closed = True
        try:
            if waiting.conn is not None:
                waiting.conn.close()
            else:
                waiting.sock.close()
        except OSError:
            pass
