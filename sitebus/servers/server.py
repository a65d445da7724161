"""Server: one configurable server on the bus, and the names of the server layer.

A Server is what the ``server.*`` keys of the site config set (the reference's names);
``server.<name>.*`` set those of an extra named server. Each is a plugin of its own on the
same bus (a ServerAdapter, see ``sitebus.servers.adapter``), so IPv4, IPv6, UNIX socket and TLS
listeners run side by side. On ``start`` it checks its settings (ConfigError naming
``server.<key>``), binds its listener (see ``sitebus.servers.listeners``: an address in use is
UnavailableError, exit 69, and nothing is left bound), builds the server its ``type`` names
in ``server_types``, and starts it. On ``stop`` it drains: no new connections, the requests
in flight finish within ``shutdown_timeout``; then the socket is closed and its socket file
removed. This module also re-exports the reference's names of ``process.servers``.

Defaults are chosen for production, from bench/bench_servers.py (2 CPUs, wrk, medians of 7
interleaved rounds):

- ``thread_pool`` is 4, not 10: every thread adds GIL hand-offs, so a hello world costs the
  server 163 us of CPU with 1 thread, 281 with 4 and 341 with 10 (6,500, 4,000 and 3,200
  req/s through 16 keep-alive connections), while an app that waits (a 10 ms query) gains
  94 req/s per thread and, with one thread, makes every request queue behind the slowest.
  4 keeps 60% of the one-thread speed (10 keep 50%) and overlaps four waits; sites whose
  requests mostly wait should raise it, CPU-bound sites run more processes.
- ``socket_queue_size`` is 1024 capped by ``net.core.somaxconn``, not 5: with 64 clients
  opening a connection per request, a backlog of 5 drops SYNs and the p99 latency is 2.8 s
  (cheroot; CherryPy 2.2 s), against 38 ms with 1024 (gunicorn: 20 ms).
- ``socket_file_mode`` (new) is 0o666: anyone on the host may connect, as with the
  reference's socket files; restrict it (0o660 and a shared group) where that matters.
"""

from __future__ import annotations

import difflib
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

from sitebus.bus import Bus
from sitebus.errors import ConfigError
from sitebus.plugins import SimplePlugin
from sitebus.servers import handover
from sitebus.servers.adapter import ServerAdapter, Timeouts, describe
from sitebus.servers.gateways import (
    CGIServer,
    FlupCGIServer,
    FlupFCGIServer,
    FlupSCGIServer,
    require_flup,
)
from sitebus.servers.listeners import (
    Listener,
    bind_tcp,
    bind_unix,
    default_backlog,
    file_identity,
    is_listening,
    listen_backlog,
    remove_socket_file,
    serve_on,
    somaxconn,
)
from sitebus.servers.registry import SETTINGS, ServerType, server_types, setting_problems
from sitebus.servers.wsgiserver import listener_address

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


class Server(ServerAdapter):
    """One configurable server: the ``server.*`` (or ``server.<name>.*``) keys set its attributes.

    ``Server(bus, name=None, **settings)``; the default server has no name.
    """

    using_wsgi = True
    """The reference's flag: this server speaks WSGI (every sitebus HTTP server does)."""

    using_apache = False
    """The reference's flag: served behind mod_python (never, here)."""

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
    """The TLS implementation: Python's ssl module. The reference's other choice,
    ``'pyopenssl'``, is taken and served by it too (OpenSSL either way; a start says so)."""

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

    socket_fdname: str | None = None
    """The name of the socket systemd passes this server (FileDescriptorName=); None: the
    server's own name, else the passed sockets in order."""

    listener: Any = None
    """A listening socket.socket to serve on instead of binding (systemd, a restart)."""

    listener_owned: bool = False
    """Whether ``listener`` is this site's own (handed over by its restart): then stop closes
    it and removes its socket file, as for a socket the server bound itself."""

    instance: Any = None
    """The reference's ``server.instance``: an HTTP server object to run instead of building
    one, or the dotted name of a class that is called with this adapter to make it."""

    listen_only: bool = False
    """Bind (or take) the listening socket on start, close it on stop, serve nothing: the
    master of pre-fork workers holds the sockets and its workers serve them (``take_over``)."""

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
        bus.subscribe("start", self._close_unclaimed_connections, priority=79)

    def key(self, setting: str) -> str:
        """Return the config key of a setting: ``server.<setting>`` or ``server.<name>.<...>``."""
        return f"server.{setting}" if self.name is None else f"server.{self.name}.{setting}"

    def configure(self, **settings: Any) -> None:
        """Set settings by name; an unknown name is a ConfigError."""
        for setting, value in settings.items():
            if setting not in SETTINGS and setting not in ("listener", "instance"):
                close = difflib.get_close_matches(setting, SETTINGS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"unknown setting{hint}; expected one of {', '.join(SETTINGS)}",
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
                    "bind_addr: expected (host, port) for TCP or a path for a UNIX socket, "
                    f"got {value!r}"
                ) from None
            self.socket_file = None

    @property
    def bound_addr(self) -> Any:
        """Where the server is bound, with the real port after binding port 0."""
        if self._bound is not None:
            return self._bound
        return self.bind_addr

    def base(self) -> str:
        """Return the URL this server is reached at, e.g. 'http://127.0.0.1:8080'.

        As the reference: a wildcard host gives the machine's name, and the scheme's
        default port is left out. A UNIX socket server gives its socket file's path.
        """
        address = self.bound_addr
        if not isinstance(address, tuple):
            return os.fspath(address) if address else ""
        host, port = address[0], address[1]
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        scheme = self.scheme
        default = {"http": 80, "https": 443}.get(scheme)
        return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"

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
        if self.listen_only:
            if self._listening is None:
                self.validate()
                self._bind()
                self.bus.log(f"Listening on {self.description} for the workers")
            return
        if self.httpserver is None and self.instance is not None:
            self.httpserver = self._from_instance()
        if self.httpserver is None:
            self.validate()
            self._build()
        try:
            super().start()
        except BaseException:
            self._stopped()
            raise

    start.priority = 75  # type: ignore[attr-defined]

    def _from_instance(self) -> Any:
        if not isinstance(self.instance, str):
            return self.instance
        from sitebus.names import attributes

        try:
            return attributes(self.instance)(self)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"cannot load the server class: {error}",
                              key=self.key("instance"), value=self.instance) from None

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
        if self.ssl_module == "pyopenssl" and (self.ssl_certificate or self.ssl_context):
            self.bus.log(f"{self.key('ssl_module')} 'pyopenssl': TLS is served by Python's "
                         "ssl module (OpenSSL as well); pyOpenSSL is not used")
        if hasattr(self.httpserver, "adopted"):
            self.httpserver.adopted = handover.take(self.fdname)

    def _listen(self) -> Listener:
        self._bind()
        self._acceptor = serve_on(self._listening, self._owned)
        return self._acceptor

    def _bind(self) -> None:
        """Bind the listening socket (or take ``listener``); nothing accepts from it yet."""
        limit = somaxconn()
        backlog = listen_backlog(self.socket_queue_size, limit)
        if backlog < self.socket_queue_size:
            self.bus.log(
                f"{self.key('socket_queue_size')} {self.socket_queue_size} is above "
                f"net.core.somaxconn ({limit}); the backlog is {backlog}",
                30,
            )
        if self.listener is not None:
            self._listening, self._owned = self.listener, self.listener_owned
            address = listener_address(self.listener)
            identity = file_identity(address) if isinstance(address, str) and address else None
            if self.listener_owned and identity is not None:
                self._socket_file = (address, identity)
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

    @property
    def listening_socket(self) -> Any:
        """The socket this server listens on while it runs, else None."""
        return self._listening

    @property
    def fdname(self) -> str:
        """The name its socket goes by in LISTEN_FDNAMES and systemd's fd store."""
        return self.socket_fdname or self.name or "default"

    def take_over(self) -> None:
        """In a pre-fork worker: serve the socket the master listens on, without owning it.

        Stopping then leaves the socket listening, and its socket file in place, for the
        master and the other workers.
        """
        sock = self._listening if self._listening is not None else self.listener
        self.listen_only = False
        self.listener = sock
        self.listener_owned = False
        self._listening = None
        self._owned = False
        self._socket_file = None
        self._bound = None

    def detach_listener(self) -> Any:
        """Hand the listening socket over (to the next process image, on a restart).

        ``stop()`` then leaves it open and listening, and its socket file in place: new
        connections wait in the backlog instead of being refused. The socket becomes
        ``listener``, so a later start in this process serves on it again.
        """
        if self._listening is None:
            return None
        self.listener_owned = self._owned
        self._owned = False
        if self._acceptor is not None:
            self._acceptor.owned = False
        self._socket_file = None
        self.listener = self._listening
        if hasattr(self.httpserver, "handover_name"):
            # Its idle keep-alive connections go to the next image too (sitebus.servers.handover).
            self.httpserver.handover_name = self.fdname
            self.bus.subscribe("execv", self._export_connections, priority=60)
        return self._listening

    def _export_connections(self) -> None:
        """After the site placed the listeners (priority 50), keep the connections too."""
        handover.export(self.bus.inherit_fds)

    def _close_unclaimed_connections(self) -> None:
        """Close the connections the previous image handed over that no server took."""
        closed = handover.close_unclaimed()
        if closed:
            self.bus.log(f"Closed {closed} kept-alive connections no server took over", 30)

    def stop(self) -> None:
        """Stop the HTTP server (a listen-only server closes its socket)."""
        if self.listen_only and not self.running:
            if self._listening is not None:
                owned = self._owned
                self._stopped()
                if owned:
                    self.bus.log(f"Stopped listening on {self.description}")
            return
        super().stop()

    stop.priority = 25  # type: ignore[attr-defined]

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
