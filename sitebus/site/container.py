"""The site container: one bus, one config, one log manager, one tree and the servers.

A Site turns config into a running process: the ``engine``, ``server``, ``log`` and ``tree``
config namespaces set attributes on the bus's plugins, the servers, the log manager and the
tree, as the reference's global config does. ``site`` is the process-wide default; its parts
are also this module's ``bus``, ``config``, ``log`` and ``tree`` (and ``server``), and
``services.web`` re-exports them under the reference's names (``engine``...).

Engine plugins are created on first use from ``ENGINE_PLUGINS``, a registry of names to
factories (``engine.pidfile.on = True`` creates ``bus.pidfile``); ``engine.<name>.on``
subscribes or unsubscribes one, ``engine.<name>.<attr>`` sets an attribute it has, and
``engine.SIGHUP``/``engine.SIGTERM`` add a listener to those signals (None turns one off).
A key that names nothing known is a ConfigError that lists what was expected.

One start-up path: however the site starts (``sitebus run``, ``quickstart()``,
``engine.start()`` from a script, with ``block()`` or beside another main loop), the bus's
``start`` first runs ``Site.prepare`` once per process image: inherited sockets (a restart's
hand-over and systemd's LISTEN_FDS alike), status file, systemd, journal, workers, signals.
A restart re-executes the same command line, which comes back through the same path.
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sitebus.bus import Bus, states
from sitebus.errors import ConfigError
from sitebus.plugins import ThreadManager
from sitebus.process.signals import SignalHandler, has_terminal
from sitebus.process.status import StatusFile, status_path
from sitebus.servers.asgi import AsgiMounts
from sitebus.servers.asgiserver import TYPE as ASGI_SERVER_TYPE
from sitebus.servers.asgiserver import require_uvicorn
from sitebus.servers.registry import SETTINGS as SERVER_SETTINGS
from sitebus.servers.server import Server
from sitebus.site.accesslog import flush_access_logs
from sitebus.site.apps import (
    ASGI,
    SERVICES_WEB,
    WSGI,
    TreeEntry,
    app_kind,
    describe,
    load_app,
    parse_entry,
    refuse,
)
from sitebus.site.config import Config, attributes
from sitebus.site.health import Health
from sitebus.site.logs import LogManager
from sitebus.site.metrics import Metrics
from sitebus.site.proxyheaders import ProxyHeaders
from sitebus.site.tree import Tree
from sitebus.workers.forkbus import ForkableBus
from sitebus.workers.supervision import SETTINGS as WORKER_SETTINGS

if TYPE_CHECKING:
    from sitebus.workers.master import Workers

__all__ = ["Engine", "Site", "ENGINE_PLUGINS", "site", "bus", "config", "log", "tree", "server"]

OWNED_FDNAMES = "SITEBUS_OWNED_FDNAMES"
"""Names, among LISTEN_FDNAMES, of sockets a restart handed to the new image that the site
bound itself (so it closes them, and removes their socket files, when it finally stops)."""


def _factory(path: str, *args: Any) -> Callable[[Bus], Any]:
    """Return a factory that imports ``module:Class`` when first needed and builds it."""

    def build(bus: Bus) -> Any:
        module_name, _, class_name = path.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(bus, *args)

    build.__qualname__ = f"factory({path})"
    return build


ENGINE_PLUGINS: dict[str, Callable[[Bus], Any]] = {
    "autoreload": _factory("sitebus.reload.autoreload:Autoreloader"),
    "daemonizer": _factory("sitebus.process.daemon:Daemonizer"),
    "drop_privileges": _factory("sitebus.process.privileges:DropPrivileges"),
    "health": _factory("sitebus.site.health:Health"),
    "metrics": _factory("sitebus.site.metrics:Metrics"),
    "pidfile": _factory("sitebus.process.pidfile:PIDFile", None),
    "reaper": _factory("sitebus.process.reaper:Reaper"),
    "proxy": _factory("sitebus.site.proxyheaders:ProxyHeaders"),
    "signal_handler": _factory("sitebus.process.signals:SignalHandler"),
    "systemd": _factory("sitebus.systemd:SystemdNotifier"),
    "thread_manager": _factory("sitebus.plugins:ThreadManager"),
}
"""Engine plugins by config name: ``engine.<name>.*`` configures ``bus.<name>``."""


def load_object(spec: Any) -> Any:
    """Return the object a ``"package.module:attr"`` (or dotted) string names; others as given."""
    if not isinstance(spec, str):
        return spec
    module_name, colon, attr = spec.partition(":")
    if not colon:
        return attributes(spec)
    target = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; expected one of {', '.join(sorted(known))}"


class Engine(ForkableBus):
    """The site's bus, with its engine plugins as attributes (``engine.autoreload``...).

    A ForkableBus (``sitebus.workers.forkbus``): what pre-fork workers need beyond the Bus.
    """

    health: Health
    metrics: Metrics
    proxy: ProxyHeaders
    signal_handler: SignalHandler
    thread_manager: ThreadManager

    def __init__(self) -> None:
        super().__init__()
        self.preparation: Callable[[], None] | None = None
        """What ``start()`` runs first (the site's ``prepare``), before any start listener."""

    def start(self) -> None:
        """Start all services, after the site's preparation (which runs once per process).

        So every entry point (``sitebus run``, ``quickstart()``, ``engine.start()`` from a
        script of one's own) takes inherited sockets, handles signals and reports to systemd
        the same way. Preparing is not a start listener, because it subscribes some.
        """
        if self.preparation is not None and self.state is states.STOPPED:
            # Preparing installs the signal handlers: a stop signal from now on must wait for
            # the start to finish, as one during the start listeners does (Bus.exit).
            with self._requests_lock:
                self._starting_thread = threading.get_ident()
                self._exit_after_start = False
            try:
                self.preparation()
            except Exception as error:
                with self._requests_lock:
                    self._starting_thread = None
                self.log(f"Cannot start the site: {error}", 40,
                         traceback=not isinstance(getattr(error, "exit_code", None), int))
                raise
        super().start()

    @property
    def signals(self) -> SignalHandler:
        """The reference's name for the signal handler (``engine.signals.subscribe()``)."""
        return self.signal_handler


class Site:
    """A bus with its plugins, a config, a log manager and a tree of applications."""

    def __init__(self) -> None:
        self.bus = Engine()
        self.log = LogManager()
        self.log.screen = True
        self.bus.subscribe("graceful", self._reopen_logs)
        self.bus.subscribe("exit", flush_access_logs)  # in the process that served them
        self.bus.subscribe("graceful", flush_access_logs, priority=40)  # before the reopen
        self.tree = Tree(self.log)
        self.config = Config()
        self.config.namespaces["engine"] = self._engine_namespace
        self.config.namespaces["log"] = self._log_namespace
        self.config.namespaces["tree"] = self._tree_namespace
        # The reference's engine attributes: the signal handler is subscribed by prepare(), at
        # the first start; the thread manager is subscribed from the start.
        self.bus.signal_handler = SignalHandler(self.bus)
        if not has_terminal():  # on a terminal, every window resize sends SIGWINCH
            self.bus.signal_handler.handlers["SIGWINCH"] = self.reopen_logs
        self.bus.thread_manager = ThreadManager(self.bus)
        self.bus.thread_manager.subscribe()
        self.plugin("autoreload").subscribe()  # as the reference: on unless config says off
        self.bus.health = Health(self.bus, self.tree)  # off until engine.health.on = True
        self.bus.proxy = ProxyHeaders(self.bus, self.tree)  # off until engine.proxy.on = True
        self.bus.metrics = Metrics(self.bus, self.tree)  # off until engine.metrics.on = True
        self.asgi = AsgiMounts(self.log, self.tree)
        """The ASGI apps mounted, by prefix; a site with any is served by uvicorn."""
        self.server = Server(self.bus)
        self.server.wsgi_app = self.tree
        self.server.asgi = self.asgi  # type: ignore[attr-defined]
        self.server.subscribe()
        self.servers: dict[str, Server] = {}
        """The extra servers, by name (``server.<name>.*``)."""
        self.config.namespaces["server"] = self._server_namespace
        self.status: StatusFile | None = None
        self._workers: Workers | None = None
        self.deferred_mounts: list[TreeEntry] | None = None
        self.configured_apps: list[Any] = []
        """services.web apps mounted with a config of their own (``tree.<name> = {...}``)."""
        """``tree.*`` entries recorded, not loaded, while apps are left to the workers."""
        self._owned_fdnames: list[str] = []
        self.bus.subscribe("start", self._register_listeners, priority=76)
        self.bus.subscribe("stop", self._keep_listeners_for_restart, priority=10)
        self.bus.subscribe("execv", self._hand_over_listeners)
        self.prepared = False
        """True once ``prepare`` has run in this process image (a fork inherits it)."""
        self.handle_signals = True
        """Whether ``prepare`` subscribes the signal handler (``engine.signal_handler.on``)."""
        self.bus.preparation = self.prepare

    # -- engine plugins ------------------------------------------------------------------------

    def plugin(self, name: str) -> Any:
        """Return ``bus.<name>``, creating it from ENGINE_PLUGINS on first use."""
        existing = getattr(self.bus, name, None)
        if existing is not None:
            return existing
        factory = ENGINE_PLUGINS.get(name)
        if factory is None:
            raise ConfigError("unknown engine plugin" + _suggest(name, list(ENGINE_PLUGINS)),
                              key=f"engine.{name}")
        plugin = factory(self.bus)
        setattr(self.bus, name, plugin)
        return plugin

    def _engine_namespace(self, key: str, value: Any) -> None:
        if key in ("SIGHUP", "SIGTERM"):
            self.plugin("signal_handler").configure(key, value)
            return
        name, dot, attr = key.partition(".")
        if not dot:
            settable = not key.startswith("_") and not callable(getattr(self.bus, key, print))
            if not settable:
                known = ["SIGHUP", "SIGTERM", *ENGINE_PLUGINS]
                raise ConfigError("unknown setting" + _suggest(key, known), key=f"engine.{key}",
                                  value=value)
            setattr(self.bus, key, value)
            return
        plugin = self.plugin(name)
        if attr == "on":
            if not isinstance(value, bool):
                raise ConfigError(f"expected True or False, got {value!r}", key=f"engine.{key}",
                                  value=value)
            if name == "signal_handler":
                self.handle_signals = value
            (plugin.subscribe if value else plugin.unsubscribe)()
            return
        known = [a for a in dir(plugin)
                 if not a.startswith("_") and not callable(getattr(plugin, a))]
        if attr not in known:
            raise ConfigError("unknown setting" + _suggest(attr, known), key=f"engine.{key}",
                              value=value)
        setattr(plugin, attr, value)

    # -- servers -------------------------------------------------------------------------------

    @property
    def workers(self) -> Workers:
        """The pre-fork workers plugin (``server.workers``...), created on first use."""
        if self._workers is None:
            from sitebus.workers.master import Workers

            self._workers = Workers(self)
        return self._workers

    @property
    def has_workers(self) -> bool:
        """True when the site is to run as a master of pre-fork workers."""
        return self._workers is not None and self._workers.workers > 0

    def _server_namespace(self, key: str, value: Any) -> None:
        name, dot, setting = key.partition(".")
        if key in WORKER_SETTINGS:
            setattr(self.workers, key, value)
            return
        if dot and setting in WORKER_SETTINGS and name not in SERVER_SETTINGS:
            raise ConfigError(f"the worker settings are the site's, not a server's: use "
                              f"server.{setting}", key=f"server.{key}", value=value)
        if not dot and key not in SERVER_SETTINGS and key != "listener":
            raise ConfigError("unknown setting" + _suggest(key, [*SERVER_SETTINGS,
                                                                 *WORKER_SETTINGS]),
                              key=f"server.{key}", value=value)
        if not dot or name in SERVER_SETTINGS:
            self.server.configure(**{key: value})
            return
        server = self.servers.get(name)
        if server is None:
            server = self.servers[name] = Server(self.bus, name=name)
            server.wsgi_app = self.tree
            server.asgi = self.asgi  # type: ignore[attr-defined]
            if self.asgi:
                server.type = ASGI_SERVER_TYPE
            server.subscribe()
        server.configure(**{setting: value})

    def active_servers(self) -> list[Server]:
        """Return the servers subscribed to the bus, the default one first."""
        starting = self.bus.listeners.get("start", set())
        return [s for s in (self.server, *self.servers.values()) if s.start in starting]

    def descriptions(self) -> list[str]:
        """Return where the active servers serve (``http://127.0.0.1:8080``...)."""
        return [server.description for server in self.active_servers()]

    def check(self) -> None:
        """Raise ConfigError for a setting that would make the site fail to start."""
        seen: dict[Any, str] = {}
        for server in self.active_servers():
            server.validate()
            address = server.bind_addr
            if address is None or (isinstance(address, tuple) and address[1] == 0):
                continue
            key = server.key("socket_file" if isinstance(address, str) else "socket_port")
            if address in seen:
                raise ConfigError(f"{address!r} is also the address of {seen[address]}",
                                  key=key, value=address)
            seen[address] = key.rsplit(".", 1)[0]
        if self._workers is not None:
            self._workers.validate()
        for server in self.active_servers() if self.asgi else ():
            if server.type != ASGI_SERVER_TYPE:
                mount = self.asgi.mounts[0]
                raise ConfigError(f"{mount.name} is an ASGI app, which the {server.type!r} "
                                  f"server type cannot serve; expected {ASGI_SERVER_TYPE!r}",
                                  key=server.key("type"), value=server.type)
            require_uvicorn(self.asgi.mounts[0].name)

    # -- running -------------------------------------------------------------------------------

    def _reopen_logs(self) -> None:
        """Reopen the log files on graceful; a failure goes to the status file (``log_error``),
        so ``sitebus reload`` exits non-zero with it."""
        failures = self.log.reopen_files()
        if self.status is not None:
            self.status.update(log_error="; ".join(failures) or None)

    def use_pidfile(self, path: str) -> None:
        """Write the PID file at ``path`` (and the status file beside it)."""
        pidfile = self.plugin("pidfile")
        pidfile.pidfile = path
        pidfile.subscribe()

    def use_gateway(self, kind: str) -> None:
        """Serve FastCGI, SCGI or CGI instead of HTTP, as cherryd's -f, -s and -x do."""
        self.server.type = kind
        self.plugin("autoreload").unsubscribe()

    def prepare(self) -> None:
        """Make this process ready to run the site, once per process image, whatever started it.

        ``bus.start()`` calls it first (``Engine.start``): it checks the settings, takes the
        sockets systemd or this site's own restart passed in, sets up the status file,
        autoreload of the config files, systemd's notifications and journal, the workers'
        master, and the signal handler (last, so its messages go where the log now goes).
        """
        if self.prepared:
            return
        self.prepared = True
        self.check()
        pidfile = getattr(self.bus, "pidfile", None)
        if pidfile is not None and pidfile.start in self.bus.listeners["start"] and pidfile.pidfile:
            self.status = StatusFile(self.bus, status_path(os.fspath(pidfile.pidfile)),
                                     self._describe)
            self.status.subscribe()
        self.plugin("autoreload").files.update(self.config.files)
        self.take_passed_sockets()
        if os.environ.get("NOTIFY_SOCKET") and getattr(self.bus, "systemd", None) is None:
            self.plugin("systemd").subscribe()
        from sitebus.systemd import log_to_journal

        if log_to_journal(self.bus) is not None:
            # stderr is the journal: records go there with their fields instead of as lines
            # (one copy of each is enough), access lines too (their logger does not propagate).
            log_to_journal(self.bus, logger=self.log.access_log.name)
            self.log.screen = False
        if os.getpid() == 1 and getattr(self.bus, "reaper", None) is None:
            self.plugin("reaper").subscribe()  # PID 1 of a container: orphans come here
        if self.has_workers:
            self.workers.subscribe()
        if self.handle_signals:
            self.bus.signal_handler.subscribe()

    def take_passed_sockets(self) -> None:
        """Give the servers the sockets systemd (or this site's own restart) passed in.

        By name (``server.socket_fdname``, else the server's name), else in order; the
        variables are removed from the environment so child processes never take them.
        """
        from sitebus.systemd import Claim, assign_listeners, listen_fds

        owned = set(filter(None, os.environ.pop(OWNED_FDNAMES, "").split(":")))
        passed = listen_fds()
        if not passed:
            return
        servers = {server.fdname: server for server in self.active_servers()}
        claims = [Claim(name, server.socket_fdname, can_bind=server.bind_addr is not None)
                  for name, server in servers.items()]
        taken = assign_listeners([(sock.fileno(), name) for sock, name in passed], claims)
        by_fd = {sock.fileno(): (sock, name) for sock, name in passed}
        for server_name, fd in taken.items():
            sock, name = by_fd[fd]
            server = servers[server_name]
            server.listener = sock
            server.listener_owned = name in owned
            self.bus.log(f"Serving {server.key('socket_fdname').rsplit('.', 1)[0]} on the "
                         f"socket passed as {name!r} (fd {fd})")

    def _register_listeners(self) -> None:
        """Note every listening socket in ``bus.inherit_fds``, by its fd name."""
        for server in self.active_servers():
            sock = server.listening_socket
            if sock is not None:
                self.bus.inherit_fds[sock.fileno()] = server.fdname

    def _keep_listeners_for_restart(self) -> None:
        """On a restart, keep the listening sockets open for the next process image.

        Before the servers stop (priority 24), so they drain without closing the sockets:
        connections made meanwhile wait in the backlog and the new image serves them.
        """
        if not self.bus.execv:
            self.bus.inherit_fds.clear()
            return
        kept: dict[int, str] = {}
        self._owned_fdnames = []
        for server in self.active_servers():
            sock = server.detach_listener()  # sets listener_owned to whether it was ours
            if sock is not None:
                kept[sock.fileno()] = server.fdname
                if server.listener_owned:
                    self._owned_fdnames.append(server.fdname)
        self.bus.inherit_fds.clear()
        self.bus.inherit_fds.update(kept)

    def _hand_over_listeners(self) -> None:
        """Move the kept sockets to fd 3, 4... and describe them in LISTEN_* for the exec."""
        if not self.bus.inherit_fds:
            return
        from sitebus.systemd import hand_over_listeners

        moved = hand_over_listeners(self.bus.inherit_fds)
        self.bus.inherit_fds.clear()
        self.bus.inherit_fds.update(moved)
        os.environ[OWNED_FDNAMES] = ":".join(self._owned_fdnames)

    def reopen_logs(self) -> None:
        """Reopen the log files, here and in the workers (SIGWINCH: logrotate's postrotate).

        A reload (SIGUSR1) reopens them too, but replaces every worker; this costs nothing.
        A file that cannot be reopened is noted as on a reload (``sitebus status``: ``logs:``).
        """
        self._reopen_logs()
        self.bus.publish("reopen_logs")

    def _describe(self) -> dict[str, Any]:
        return {"serving": self.descriptions()}

    # -- log and tree --------------------------------------------------------------------------

    def _log_namespace(self, key: str, value: Any) -> None:
        if key not in LogManager.settings:
            raise ConfigError("unknown setting" + _suggest(key, list(LogManager.settings)),
                              key=f"log.{key}", value=value)
        setattr(self.log, key, value)

    def defer_apps(self) -> None:
        """Record ``tree.*`` entries from now on instead of loading them (see ``mount_deferred``).

        For the master of pre-fork workers: its workers import the apps, after the fork.
        """
        if self.deferred_mounts is None:
            self.deferred_mounts = []

    def mount_deferred(self) -> None:
        """Load and mount the ``tree.*`` entries recorded since ``defer_apps``, in order."""
        entries, self.deferred_mounts = self.deferred_mounts or [], None
        for entry in entries:
            self.mount_entry(entry)

    def _tree_namespace(self, key: str, value: Any) -> None:
        """``tree.<name> = ...``: mount an app by its kind (the forms: ``sitebus.site.apps``)."""
        self.add_entry(parse_entry(key, value))

    def add_entry(self, entry: TreeEntry) -> None:
        """Mount ``entry`` now, or record it while apps are left to the workers."""
        if self.deferred_mounts is not None:
            self.deferred_mounts.append(entry)
        else:
            self.mount_entry(entry)

    def mount_entry(self, entry: TreeEntry) -> Any:
        """Load an entry's app and mount it by kind: services.web apps take app config, any
        other WSGI callable is grafted as it is; anything else is a ConfigError."""
        app = load_app(entry)
        kind = app_kind(app, self.tree.app_class)
        if kind == SERVICES_WEB:
            config = entry.config
            if isinstance(config, (str, os.PathLike)):
                config = os.path.abspath(os.fspath(config))
                self.config.files.append(config)  # autoreload watches it
            is_application = hasattr(app, "script_name") and hasattr(app, "merge")
            script_name = "" if entry.own_path and is_application else entry.script_name
            mounted = self.tree.mount(app, script_name, config, host=entry.host)
            if config is not None:
                self.configured_apps.append(mounted)
            return mounted
        if kind == ASGI and entry.config is None:
            target = entry.target if isinstance(entry.target, str) else describe(app)
            name = entry.name if target in entry.name else f"{entry.name} ({target!r})"
            self.asgi.mount(entry.script_name, app, name, entry.host)
            for server in (self.server, *self.servers.values()):
                if server.type == "cheroot":
                    server.type = ASGI_SERVER_TYPE
            return app
        if kind != WSGI or entry.config is not None:
            raise refuse(entry, app, kind)
        self.tree.graft(app, entry.script_name, host=entry.host)
        return app

    def app_kinds(self) -> list[tuple[str, str]]:
        """Return (mount point, kind) for every app mounted, sorted: services.web, wsgi, asgi."""
        found = {(name or "/", app_kind(app, self.tree.app_class) or "?")
                 for table in (self.tree.apps, *self.tree.vhosts.values())
                 for name, app in table.items()}
        found |= {(mount.script_name or "/", ASGI) for mount in self.asgi.mounts}
        return sorted(found)

    def framework_apps(self) -> list[Any]:
        """Return the mounted services.web apps, every host's, each once."""
        app_class = self.tree.app_class
        if app_class is None:
            return []
        found: list[Any] = []
        for table in (self.tree.apps, *self.tree.vhosts.values()):
            found += [app for app in table.values()
                      if isinstance(app, app_class) and all(app is not f for f in found)]
        return found


site = Site()
"""The process-wide site."""

bus = site.bus
config = site.config
log = site.log
tree = site.tree
server = site.server
