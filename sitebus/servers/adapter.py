"""ServerAdapter: any server object with start(), stop() and ready, run as a bus plugin.

``start`` (priority 75) runs ``httpserver.start()`` in a thread named ``HTTPServer Thread-N``
and waits until the server is ready; an error in that thread before then is re-raised into
``start``, so the bus's start fails and the bus exits cleanly; afterwards it makes the bus
exit, and so does a ``start()`` that returns by itself (a CGI request answered). ``stop``
(priority 25, so servers stop taking work before the services they use stop) stops the
server and waits for its thread; ``begin_stop`` (24) starts that stop in the background, so
all the servers of a bus refuse new connections at once and drain together rather than one
after another. A server that cut requests still running at its shutdown timeout lists their
threads in ``abandoned_threads``; ``stop`` hands them to ``bus.abandon``, so the process
exits without them (Python cannot end a thread).

Where sitebus differs from the reference:

- No wait for the port to be free before binding (the reference's ``Timeouts.free``): the
  Server binds with SO_REUSEADDR, so TIME_WAIT never blocks a bind, and a restart keeps its
  sockets; a port in use means a live process holds it, which waiting rarely cures.
- No wait for the port to be occupied after starting: the Server binds its listener before
  the server thread starts. ``Timeouts.occupied`` bounds the wait for ``ready`` instead (the
  reference waited on ``ready`` with no deadline, polling every 0.1 s); servers that offer
  a ``ready_event`` (all of sitebus's) are waited on without polling.
- ``description`` puts IPv6 hosts in brackets (``http://[::1]:8080``) and names the scheme
  of FastCGI and SCGI servers.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from sitebus.bus import Bus
from sitebus.errors import UnavailableError
from sitebus.plugins import SimplePlugin
from sitebus.servers.listeners import format_address

__all__ = ["ServerAdapter", "Timeouts", "describe"]


class Timeouts:
    """Seconds of waiting around a server's start (the reference's names and values)."""

    free = 1
    """Unused: sitebus does not wait for a port to be free (see the module docstring)."""

    occupied = 5
    """How long ``start`` waits for the server to be ready."""


def describe(address: Any, scheme: str = "http") -> str:
    """Return where a server listens: ``http://127.0.0.1:8080``, ``socket file: /run/s.sock``.

    The port is left out when it is the scheme's default (80 for http, 443 for https).
    """
    if address is None:
        return "standard input and output" if scheme == "cgi" else "an address not known yet"
    if isinstance(address, (str, bytes)):
        return f"socket file: {format_address(address)}"
    host, port = address[:2]
    if port == {"http": 80, "https": 443}.get(scheme):
        netloc = f"[{host}]" if ":" in host else host
    else:
        netloc = format_address((host, port))
    return f"{scheme}://{netloc}"


_thread_numbers = itertools.count(1)


class ServerAdapter(SimplePlugin):
    """Runs one HTTP server in a thread of its own for as long as the bus is started.

    A site makes one per listening address. Several can share a bus: subscribe each, and
    ``bus.start()`` starts them all::

        for server in (public_server, admin_server):
            ServerAdapter(bus, server).subscribe()
        bus.start()
    """

    httpserver: Any
    bind_addr: Any

    def __init__(self, bus: Bus, httpserver: Any = None, bind_addr: Any = None) -> None:
        super().__init__(bus)
        self.httpserver = httpserver
        self.bind_addr = bind_addr
        self._init_state()

    def _init_state(self) -> None:
        self.interrupt: BaseException | None = None
        self.running = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._starting = False
        self._stopping = False
        self._stopper: threading.Thread | None = None
        self._stop_error: BaseException | None = None

    def subscribe(self) -> None:
        """Subscribe start and stop (and begin_stop) to the bus."""
        self.bus.subscribe("start", self.start)
        self.bus.subscribe("stop", self.begin_stop)
        self.bus.subscribe("stop", self.stop)

    def unsubscribe(self) -> None:
        """Unsubscribe start and stop (and begin_stop) from the bus."""
        self.bus.unsubscribe("start", self.start)
        self.bus.unsubscribe("stop", self.begin_stop)
        self.bus.unsubscribe("stop", self.stop)

    # -- where ----------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        """The URL scheme of the server: http, https, fcgi, scgi."""
        if getattr(self.httpserver, "ssl_adapter", None) is not None:
            return "https"
        return getattr(self.httpserver, "scheme", None) or "http"

    @property
    def bound_addr(self) -> Any:
        """The bind address, with the real port once an ephemeral port (0) has been bound."""
        address = self.bind_addr
        if isinstance(address, tuple) and len(address) >= 2 and address[1] == 0:
            sock = getattr(self.httpserver, "socket", None)
            if sock is not None:
                try:
                    return (address[0], sock.getsockname()[1])
                except OSError:
                    pass
        return address

    @property
    def description(self) -> str:
        """Where the server listens, as a URL or a socket file, for log lines."""
        return describe(self.bound_addr, self.scheme)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Serve from a new thread; return once the server accepts connections."""
        if self.running:
            self.bus.log(f"Already serving on {self.description}")
            return
        if not self.httpserver:
            raise ValueError("ServerAdapter.start: no httpserver to start (got None)")
        self.interrupt = None
        self._wake = threading.Event()
        if hasattr(self.httpserver, "ready_event"):
            self.httpserver.ready_event = self._wake
        self._stopping = False
        self._starting = True
        thread = threading.Thread(
            target=self._start_http_thread,
            args=(self._wake,),
            name=f"HTTPServer Thread-{next(_thread_numbers)}",
        )
        self._thread = thread
        thread.start()
        try:
            self.wait()
        except BaseException:
            with self._lock:
                self._starting = False
            self._abandon_server_thread()
            raise
        self.running = True
        self.bus.log(f"Serving on {self.description}")

    start.priority = 75  # type: ignore[attr-defined]

    def _start_http_thread(self, wake: threading.Event) -> None:
        """Run the server; report how it ended (into start(), or by exiting the bus)."""
        try:
            self.httpserver.start()
        except KeyboardInterrupt as error:
            self._server_ended(error, "HTTP server interrupted (KeyboardInterrupt): shutting down")
        except SystemExit as error:
            self._server_ended(error, "HTTP server asked to exit (SystemExit): shutting down")
        except Exception as error:
            self._server_ended(error, "HTTP server failed: shutting down", 40)
        else:
            if not self._stopping:
                self._server_ended(None, f"HTTP Server {self.description} ended: shutting down")
        finally:
            wake.set()

    def _server_ended(self, error: BaseException | None, message: str, level: int = 20) -> None:
        with self._lock:
            if error is not None:
                self.interrupt = error
            starting = self._starting
        if error is not None and starting:
            return  # wait() re-raises it into start(), whose failure exits the bus
        self.bus.log(message, level, traceback=level >= 40)
        if not self._stopping:
            # From another thread during the bus's start(), the bus exits once start() ends.
            self.bus.exit()

    def wait(self) -> None:
        """Block until the server accepts connections.

        Re-raises an error from the server thread; raises UnavailableError if the server is
        not ready within ``Timeouts.occupied`` seconds.
        """
        deadline = time.monotonic() + Timeouts.occupied
        event_driven = getattr(self.httpserver, "ready_event", None) is self._wake
        while True:
            with self._lock:
                if self.interrupt is not None:
                    self._starting = False
                    raise self.interrupt
                if getattr(self.httpserver, "ready", False):
                    self._starting = False
                    return
            thread = self._thread
            if thread is None or not thread.is_alive():
                with self._lock:  # it may have failed between the check above and its end
                    if self.interrupt is not None:
                        self._starting = False
                        raise self.interrupt
                raise RuntimeError(f"HTTP Server {self.description} ended before it was ready")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UnavailableError(
                    f"HTTP Server {self.description} was not ready within "
                    f"{Timeouts.occupied} s"
                )
            # Servers without a ready_event give no signal but their ``ready`` flag.
            self._wake.wait(remaining if event_driven else min(remaining, 0.1))

    def _abandon_server_thread(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._stopping = True
        try:
            self.httpserver.stop()
        except Exception:
            self.bus.log("Error stopping an HTTP server that failed to start", 40, traceback=True)
        if thread is not threading.current_thread():
            thread.join(Timeouts.occupied)

    def begin_stop(self) -> None:
        """Start stopping the HTTP server in the background; ``stop()`` waits for it.

        Subscribed to 'stop' just before ``stop`` (24 against 25), so that every server of
        the bus refuses new connections at once and all drain together: one after another,
        a server would still accept while the one before it drained.
        """
        if not self.running or self._stopper is not None:
            return
        self._stopping = True
        self._stop_error = None
        if hasattr(self.httpserver, "stop_caller"):
            # A request handler stopping the bus: its server must not wait for that request.
            self.httpserver.stop_caller = threading.current_thread()
        thread = self._thread
        self._stopper = threading.Thread(
            target=self._stop_httpserver, name=f"{thread.name if thread else 'HTTPServer'} stop"
        )
        self._stopper.start()

    begin_stop.priority = 24  # type: ignore[attr-defined]

    def _stop_httpserver(self) -> None:
        try:
            self.httpserver.stop()
        except Exception as error:
            self._stop_error = error

    def stop(self) -> None:
        """Ask the server to stop, and wait for its thread to end."""
        if not self.running:
            self.bus.log(f"HTTP Server {self.description} already shut down")
            return
        self._stopping = True
        stopper, self._stopper = self._stopper, None
        if stopper is None:
            self.httpserver.stop()
        else:
            stopper.join()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        abandon = getattr(self.bus, "abandon", None)
        for stuck in getattr(self.httpserver, "abandoned_threads", ()):
            if abandon is not None:
                abandon(stuck)
        self.running = False
        self._stopped()
        error, self._stop_error = self._stop_error, None
        if error is not None:
            raise error
        self.bus.log(f"HTTP Server {self.description} shut down")

    stop.priority = 25  # type: ignore[attr-defined]

    def _stopped(self) -> None:
        """Release what the server held once it has stopped (for subclasses)."""

    def restart(self) -> None:
        """Stop, then start again on the same address."""
        self.stop()
        self.start()
