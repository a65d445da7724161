"""Servers on the bus: ServerAdapter, the configurable Server, and the registry of server types.

A ServerAdapter runs any server object with ``start()`` (blocking until ``stop()``),
``stop()`` and ``ready`` as a bus plugin: ``start`` (priority 75) runs ``httpserver.start()``
in a thread named ``HTTPServer Thread-N`` and waits until the server is ready; an error in
that thread before then is re-raised into ``start``, so the bus's start fails and the bus
exits cleanly; afterwards it makes the bus exit. ``stop`` (priority 25, so servers stop
taking work before the services they use stop) stops the server and waits for its thread;
``begin_stop`` (24) starts that stop in the background, so that all the servers of a bus
refuse new connections at once and drain together rather than one after another.

A Server is one configurable server: the ``server.*`` keys of the site config set its
attributes (the reference's names), ``server.<name>.*`` those of an extra named server. Each
is a plugin of its own on the same bus, so IPv4, IPv6, UNIX socket and TLS listeners run
side by side. On ``start`` it checks its settings (ConfigError naming ``server.<key>``),
binds its listener (see ``sitebus.listeners``: an address in use is UnavailableError, exit
69, and nothing is left bound), builds the server its ``type`` names in ``server_types``, and
starts it. On ``stop`` it drains: no new connections, the requests in flight finish within
``shutdown_timeout``; then the socket is closed and its socket file removed.

Where sitebus differs from the reference:

- No wait for the port to be free before binding (the reference's ``Timeouts.free``): sockets
  are bound with SO_REUSEADDR, so TIME_WAIT never blocks a bind, and a restart keeps its
  sockets; a port in use means a live process holds it, which waiting rarely cures.
- No wait for the port to be occupied after starting: the listener is bound before the
  server thread starts. ``Timeouts.occupied`` bounds the wait for ``ready`` instead; the
  reference waited on ``ready`` with no deadline, polling every 0.1 s. Servers that offer a
  ``ready_event`` (all of sitebus's) are waited on without polling.
- Defaults chosen for production, from bench/bench_servers.py (2 CPUs, wrk, medians of 7
  interleaved rounds). ``thread_pool`` is 4, not 10: every thread adds GIL hand-offs, so a
  hello world costs the server 163 us of CPU with 1 thread, 281 with 4 and 341 with 10
  (6,500, 4,000 and 3,200 req/s through 16 keep-alive connections), while an app that
  waits (a 10 ms query) gains 94 req/s per thread and, with one thread, makes every request
  queue behind the slowest. 4 keeps 60% of the one-thread speed (10 keep 50%) and overlaps
  four waits; sites whose requests mostly wait should raise it, CPU-bound sites run more
  processes. ``socket_queue_size`` is 1024 capped by ``net.core.somaxconn``, not 5: with 64
  clients opening a connection per request, a backlog of 5 drops SYNs and the p99 latency
  is 2.8 s (cheroot; CherryPy 2.2 s), against 38 ms with 1024 (gunicorn: 20 ms).
- ``description`` puts IPv6 hosts in brackets (``http://[::1]:8080``), names the scheme of
  FastCGI and SCGI servers, and a server whose ``start()`` returns by itself (a CGI request
  answered) makes the bus exit.
"""

from __future__ import annotations

import itertools
import os
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from sitebus.bus import Bus
from sitebus.errors import ConfigError, UnavailableError
from sitebus.gateways import CGIServer, FlupCGIServer, FlupFCGIServer, FlupSCGIServer, require_flup
from sitebus.listeners import (
    Listener,
    bind_tcp,
    bind_unix,
    default_backlog,
    format_address,
    is_listening,
    listen_backlog,
    remove_socket_file,
    serve_on,
    somaxconn,
)
from sitebus.plugins import SimplePlugin
from sitebus.servertypes import SETTINGS, ServerType, server_types, setting_problems
from sitebus.wsgiserver import listener_address

__all__ = [
    "CGIServer",
    "FlupCGIServer",
    "FlupFCGIServer",
    "FlupSCGIServer",
    "Server",
    "ServerAdapter",
    "ServerType",
    "Timeouts",
    "describe",
    "server_types",
    "setting_problems",
]


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
        return "standard input and output" if scheme == "cgi" else "unknown interface (dynamic?)"
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
    """Adapter for an HTTP server.

    If you need to start more than one HTTP server (to serve on multiple ports, or protocols,
    etc.), you can manually register each one and then start them all with bus.start::

        s1 = ServerAdapter(bus, MyWSGIServer(host='0.0.0.0', port=80))
        s2 = ServerAdapter(bus, another.HTTPServer(host='127.0.0.1', SSL=True))
        s1.subscribe()
        s2.subscribe()
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
        """A description about where this server is bound."""
        return describe(self.bound_addr, self.scheme)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the HTTP server."""
        if self.running:
            self.bus.log(f"Already serving on {self.description}")
            return
        if not self.httpserver:
            raise ValueError("No HTTP server has been created.")
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
            self._server_ended(error, "<Ctrl-C> hit: shutting down HTTP server")
        except SystemExit as error:
            self._server_ended(error, "SystemExit raised: shutting down HTTP server")
        except Exception as error:
            self._server_ended(error, "Error in HTTP server: shutting down", 40)
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
        """Wait until the HTTP server is ready to receive requests.

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
        """Stop the HTTP server."""
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
        """Restart the HTTP server."""
        self.stop()
        self.start()


# -- the configurable server ------------------------------------------------------------------


class Server(ServerAdapter):
    """One configurable server: the ``server.*`` (or ``server.<name>.*``) keys set its attributes.

    ``Server(bus, name=None, **settings)``; the default server has no name.
    """

    type: str = "cheroot"
    """The kind of server, a key of ``server_types``."""

    socket_host: str = "127.0.0.1"
    """The interface to listen on: an IP address or host name; '0.0.0.0' or '::' for all."""

    socket_port: int = 8080
    """The TCP port to listen on; 0 binds an ephemeral port (see ``bound_addr``)."""

    socket_file: str | None = None
    """A UNIX socket file to listen on instead of a TCP port."""

    socket_file_mode: int = 0o666
    """The permissions of the socket file: who may connect (write permission is what counts)."""

    socket_queue_size: int
    """The listen backlog; by default 1024 capped by net.core.somaxconn (the reference: 5)."""

    socket_timeout: float = 10
    """Seconds a connection may wait for the client (reading a request, keep-alive)."""

    thread_pool: int = 4
    """Worker threads, each serving one request at a time (the reference: 10; see above)."""

    thread_pool_max: int = -1
    """The most worker threads the pool may grow to; -1 for no limit."""

    shutdown_timeout: float = 5
    """Seconds stop() lets requests in flight finish before shutting their connections."""

    accepted_queue_size: int = -1
    """Accepted connections waiting for a worker thread; -1 for no limit."""

    accepted_queue_timeout: float = 10
    """Seconds to wait for room in a full accepted queue before answering 503."""

    protocol_version: str = "HTTP/1.1"
    """The HTTP version the server speaks in its responses."""

    max_request_header_size: int = 500 * 1024
    """The most bytes of request line and headers; 0 for no limit."""

    max_request_body_size: int = 100 * 1024 * 1024
    """The most bytes of request body; 0 for no limit."""

    nodelay: bool = True
    """Set TCP_NODELAY on connections (no Nagle delay for small responses)."""

    statistics: bool = False
    """Keep cheroot's statistics (``httpserver.stats``)."""

    wsgi_version: tuple[Any, int] = (1, 0)
    """The WSGI version of the gateway: (1, 0) or ('u', 0)."""

    wsgi_app: Callable[..., Any] | None = None
    """The WSGI application served (the site sets it to its tree)."""

    ssl_module: str = "builtin"
    """The TLS implementation: Python's ssl module."""

    ssl_certificate: str | None = None
    """The certificate file (PEM); setting it turns TLS on."""

    ssl_private_key: str | None = None
    """The private key file (PEM), unless the certificate file holds the key."""

    ssl_certificate_chain: str | None = None
    """The file of CA certificates (PEM) used to verify client certificates."""

    ssl_context: ssl.SSLContext | None = None
    """A ready SSLContext, instead of or on top of the files."""

    ssl_ciphers: str | None = None
    """An OpenSSL cipher string restricting the TLS 1.2 ciphers."""

    listener: Any = None
    """A listening socket.socket to serve on instead of binding (systemd, a restart)."""

    def __init__(self, bus: Bus, name: str | None = None, **settings: Any) -> None:
        SimplePlugin.__init__(self, bus)
        self.httpserver = None
        self.name = name
        self.socket_queue_size = default_backlog()
        self._init_state()
        self._built = False
        self._listening: Any = None
        self._acceptor: Listener | None = None
        self._owned = False
        self._socket_file: tuple[str, tuple[int, int]] | None = None  # (path, identity)
        self._bound: Any = None
        self.configure(**settings)

    def key(self, setting: str) -> str:
        """Return the config key of a setting: ``server.<setting>`` or ``server.<name>.<...>``."""
        return f"server.{setting}" if self.name is None else f"server.{self.name}.{setting}"

    def configure(self, **settings: Any) -> None:
        """Set settings by name; an unknown name is a ConfigError."""
        for setting, value in settings.items():
            if setting not in SETTINGS and setting != "listener":
                raise ConfigError(
                    f"unknown setting (expected one of {', '.join(SETTINGS)})",
                    key=self.key(setting),
                    value=value,
                )
            setattr(self, setting, value)

    def settings(self) -> dict[str, Any]:
        """Return every setting's current value, by name."""
        values = {name: getattr(self, name) for name in SETTINGS}
        values["listener"] = self.listener
        return values

    def validate(self) -> None:
        """Raise ConfigError naming the first wrong setting, its value and what was expected."""
        values = self.settings()
        problems = setting_problems(values)
        if problems:
            setting, expected = problems[0]
            raise ConfigError(
                f"expected {expected}, got {values[setting]!r}",
                key=self.key(setting),
                value=values[setting],
            )
        for setting in ("ssl_certificate", "ssl_private_key", "ssl_certificate_chain"):
            path = values[setting]
            if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
                reason = "not readable" if os.path.exists(path) else "no such file"
                raise ConfigError(
                    f"expected a readable file, got {path!r} ({reason})",
                    key=self.key(setting), value=path,
                )
        if self.ssl_ciphers:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(self.ssl_ciphers)
            except ssl.SSLError as error:
                raise ConfigError(
                    f"expected an OpenSSL cipher string, got {self.ssl_ciphers!r} ({error})",
                    key=self.key("ssl_ciphers"), value=self.ssl_ciphers,
                ) from error
        if self.listener is not None and not is_listening(self.listener):
            raise ConfigError(
                f"expected a listening stream socket, got {self.listener!r}",
                key=self.key("listener"), value=self.listener,
            )
        requires = server_types[self.type].requires
        if requires == "flup":
            require_flup(f"{self.key('type')} = {self.type!r}")

    # -- where ----------------------------------------------------------------------------

    @property
    def bind_addr(self) -> Any:
        """(socket_host, socket_port), or socket_file, or where the given listener is bound."""
        kind = server_types.get(self.type)
        if kind is not None and not kind.listens:
            return None
        if self.listener is not None:
            return listener_address(self.listener)
        if self.socket_file:
            return os.fspath(self.socket_file)
        if self.socket_host is None and self.socket_port is None:
            return None
        return (self.socket_host, self.socket_port)

    @bind_addr.setter
    def bind_addr(self, value: Any) -> None:
        if value is None:
            self.socket_file = None
            self.socket_host = None  # type: ignore[assignment]
            self.socket_port = None  # type: ignore[assignment]
        elif isinstance(value, (str, bytes, os.PathLike)):
            self.socket_file = os.fsdecode(value)
        else:
            try:
                self.socket_host, self.socket_port = value
            except (TypeError, ValueError):
                raise ValueError(
                    "bind_addr must be a (host, port) tuple (for TCP sockets) or a string "
                    f"(for UNIX domain sockets), not {value!r}"
                ) from None
            self.socket_file = None

    @property
    def bound_addr(self) -> Any:
        """Where the server is bound, with the real port after binding port 0."""
        if self._bound is not None:
            return self._bound
        return self.bind_addr

    @property
    def scheme(self) -> str:
        if not self._built and self.httpserver is not None:
            return super().scheme
        kind = server_types.get(self.type)
        if kind is not None and kind.tls and (self.ssl_certificate or self.ssl_context):
            return "https"
        return kind.scheme if kind is not None else "http"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Check the settings, bind, build the server and start it."""
        if self.running:
            self.bus.log(f"Already serving on {self.description}")
            return
        if self.httpserver is None:
            self.validate()
            self._build()
        try:
            super().start()
        except BaseException:
            self._stopped()
            raise

    start.priority = 75  # type: ignore[attr-defined]

    def _build(self) -> None:
        kind = server_types[self.type]
        self._bound = None
        acceptor = self._listen() if kind.listens else None
        try:
            self.httpserver = kind.build(self, acceptor)
        except ssl.SSLError as error:
            self._stopped()
            raise ConfigError(
                f"cannot use the certificate and key ({error})",
                key=self.key("ssl_certificate"), value=self.ssl_certificate,
            ) from error
        except BaseException:
            self._stopped()
            raise
        self._built = True

    def _listen(self) -> Listener:
        limit = somaxconn()
        backlog = listen_backlog(self.socket_queue_size, limit)
        if backlog < self.socket_queue_size:
            self.bus.log(
                f"{self.key('socket_queue_size')} {self.socket_queue_size} is above "
                f"net.core.somaxconn ({limit}); the backlog is {backlog}",
                30,
            )
        if self.listener is not None:
            self._listening, self._owned = self.listener, False
        elif self.socket_file:
            path = os.fspath(self.socket_file)
            sock, identity, replaced = bind_unix(path, backlog, self.socket_file_mode)
            self._listening, self._owned, self._socket_file = sock, True, (path, identity)
            if replaced:
                self.bus.log(f"Replaced the stale socket file {path}")
        else:
            sock = bind_tcp(self.socket_host, self.socket_port, backlog, self.nodelay)
            self._listening, self._owned = sock, True
        self._bound = listener_address(self._listening)
        self._acceptor = serve_on(self._listening, self._owned)
        return self._acceptor

    def detach_listener(self) -> Any:
        """Hand the listening socket over (to the next process image, on a restart).

        ``stop()`` then leaves it open and listening, and its socket file in place: new
        connections wait in the backlog instead of being refused. The socket becomes
        ``listener``, so a later start in this process serves on it again.
        """
        if self._listening is None:
            return None
        self._owned = False
        if self._acceptor is not None:
            self._acceptor.owned = False
        self._socket_file = None
        self.listener = self._listening
        return self._listening

    def _stopped(self) -> None:
        """Close what this server owns; forget the server built for this run."""
        if self._built:
            self.httpserver = None
            self._built = False
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None
        if self._listening is not None and self._owned:
            self._listening.close()
            if self._socket_file is not None:
                remove_socket_file(*self._socket_file)
        self._listening = None
        self._socket_file = None
