"""Workers: pre-fork worker processes, supervised by the master's bus (``server.workers``).

One Python process serves on one core. With ``server.workers = N`` (``sitebus run -w N``) the
site runs as a master and N workers. The parts: this plugin (the master's side on its bus),
``sitebus.workers.supervisor`` (the master's thread that forks and watches),
``sitebus.workers.worker`` (the child's side) and ``sitebus.workers.supervision`` (the decisions, as
pure functions).

The master is the process ``sitebus run`` started, running the site's bus as always: it owns
the PID file, the signals, the privileges, the daemonizing, autoreload, systemd's
notifications and the listening sockets, which its servers bind (or take from systemd, or from
the previous image on a restart) without serving them (``Server.listen_only``). Its ``start``
listener (priority 80: after the servers bound, 75, and privileges were dropped, 77) forks the
workers and returns once one of them is ready, so everything that reports readiness after the
start (systemd's READY=1, the status file, the daemonizer's exit status) waits for a worker;
if workers keep failing before they are ready, the start fails with the last worker's error
and exit code (78 for an app that does not import), as the site itself would have.

Apps are imported in the workers. The ``tree.*`` keys and ``-i`` modules import apps, so the
CLI has the site record them (``Site.defer_apps``) and gives this plugin ``load_apps``, which
each worker calls after the fork. So the master holds sitebus, cheroot and the config, not the
apps: a fresh worker costs a fork and the apps' own import, and memory an app allocates at
import is its worker's. ``server.preload = True`` imports them once in the master instead,
so workers share those pages until they write to them (and a reload then brings no new code:
``sitebus restart`` does).

A worker's bus is the site's bus object, inherited through the fork, so an app's plugins
(``DatabasePool(engine).subscribe()``) run in each worker as they run in a single process.
The master must not run them: when this plugin subscribes, it holds back every listener
that is neither the master's (its engine plugins, the site, the status file, the log
manager, this plugin: ``master_owned``) nor a server's, and each worker puts them back after
removing the master's. See ``sitebus.workers.worker`` for how a worker resets what it inherited.

Supervision (``sitebus.workers.supervisor``): a worker that exits is replaced at once; one that
exits before it is ready counts as a start-up failure, and ``supervision.CRASH_LIMIT`` of those in a
row with no worker ready make the master give up (log, exit with that worker's code) instead
of forking in a loop; while other workers serve, forking is retried with a growing delay. A
worker beats through its pipe every quarter of ``worker_timeout``; one that sends no beat for
``worker_timeout`` is killed, one whose oldest request in flight is older than that (a handler
stuck in a loop) is replaced, and so are workers past ``max_requests`` (plus up to
``max_requests_jitter``) or ``max_rss`` bytes. SIGTTIN and SIGTTOU add and remove a worker.

Replacing is rolling: a new worker is forked, and an outgoing one is asked to stop (SIGTERM:
it stops accepting and finishes its requests in flight) only once the new one is ready. That
is how a reload works (``graceful``: SIGUSR1, ``sitebus reload``, and autoreload, which forks
fresh workers instead of re-executing the master when only files the workers imported
changed). A reload whose new workers cannot start is called off: the workers that serve keep
serving, and the error goes to the log and to the status file (``reload_error``), where
``sitebus reload`` and ``sitebus status`` find it. A typo never becomes an outage.

Stopping: ``stop`` (priority 20, before the servers close the sockets) sends SIGTERM to every
worker and waits until all are gone; a worker still there after its servers'
``shutdown_timeout`` plus a grace is killed. Unlike a single process, the master does not
shut its sockets down first (that would fail the accept of a worker still serving): a
connection that arrives while the workers drain waits in the backlog and is reset when the
site exits. A restart stops the workers the same way, keeps the sockets (the site's restart
hooks), and the new image forks new workers, which serve what waited. No worker outlives
the master: each asks the kernel for SIGTERM when the master dies, even by SIGKILL
(``prctl(PR_SET_PDEATHSIG)``), a beat that finds the master gone stops it too, and a worker
that is still there ``shutdown_timeout`` plus the grace after it began to stop ends itself.

Rejected: a bus of its own for the master (apps hold the site's bus object:
``services.web.engine`` is ``sitebus.site.container.bus``, and the config sets the master's plugins
on it; so one object is the master's bus in the master and, reset, each worker's bus);
``multiprocessing`` (its processes are spawned, or forked without the site's sockets and bus
as they are); a SIGCHLD handler (pidfds need no handler and cannot miss an exit); heartbeats
through files (gunicorn's temporary-file heartbeat turns a slow disk into false timeouts);
importing the apps in the master by default (a reload could then only re-execute the
master, and a fresh worker would not be fresh).
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from typing import Any

from sitebus.bus import states
from sitebus.errors import ConfigError, SitebusError
from sitebus.plugins import SimplePlugin
from sitebus.servers.adapter import ServerAdapter
from sitebus.servers.registry import server_types
from sitebus.workers.forkbus import ForkableBus
from sitebus.workers.supervision import SETTINGS, Failure, check_settings, request_limit
from sitebus.workers.supervisor import Supervisor
from sitebus.workers.worker import WorkerSpec, prepare_to_fork, run_worker

__all__ = ["Workers", "WorkerStartError"]

STOP_GRACE = 2.0
"""Seconds past the servers' shutdown_timeout before a stopping worker is killed."""

BEATS_PER_TIMEOUT = 4
"""Heartbeats a worker sends per worker_timeout (without a timeout, per 30 s)."""

MASTER_PLUGINS = ("autoreload", "daemonizer", "drop_privileges", "health", "metrics",
                  "pidfile", "reaper", "signal_handler", "systemd")
"""The engine plugins that run in the master only; any other (the thread manager, the
framework's timeout monitor, an app's) runs in the workers."""


class WorkerStartError(SitebusError):
    """The workers cannot start: the last worker's error, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


class Workers(SimplePlugin):
    """The master's side of pre-fork workers: fork them, watch them, replace them, stop them."""

    bus: ForkableBus

    workers: int = 0
    """How many worker processes (0: none, the site serves in this process)."""

    worker_timeout: float = 30
    """Seconds a worker may go without a heartbeat, take to start, or spend on a request."""

    max_requests: int = 0
    """Requests a worker serves before it is replaced (0: no limit)."""

    max_requests_jitter: int = 0
    """Up to this many more requests, drawn per worker, so workers are not replaced together."""

    max_rss: int = 0
    """Bytes of resident memory past which a worker is replaced (0: no limit)."""

    preload: bool = False
    """Import the apps once in the master, before forking, instead of in each worker."""

    load_apps: Callable[[], None] | None = None
    """What each worker calls to import and mount the apps (set by the CLI), or None."""

    def __init__(self, site: Any) -> None:
        super().__init__(site.bus)
        self.site = site
        for name, (default, _check, _expected) in SETTINGS.items():
            setattr(self, name, default)
        self.load_apps = None
        self.failure: Failure | None = None
        self._supervisor: Supervisor | None = None
        self._held: list[tuple[str, Callable[..., Any], int]] = []
        self._masters: tuple[Any, ...] = ()
        self._files: set[str] = set()  # module files only the workers import (autoreload)
        self._subscribed = False

    # -- settings ---------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ConfigError naming the first wrong worker setting."""
        values = {name: getattr(self, name) for name in SETTINGS}
        problems = check_settings(values)
        if problems:
            name, expected = problems[0]
            raise ConfigError(f"expected {expected}, got {values[name]!r}", key=f"server.{name}",
                              value=values[name])
        if self.workers == 0:
            return
        servers = self.site.active_servers()
        if not servers:
            raise ConfigError("workers serve the site's servers, but none is on",
                              key="server.workers", value=self.workers)
        for server in servers:
            if not server_types[server.type].listens:
                raise ConfigError(f"expected a server type that listens with workers, got "
                                  f"{server.type!r} (it answers one request and exits)",
                                  key=server.key("type"), value=server.type)

    # -- the master's bus -------------------------------------------------------------------

    def subscribe(self) -> None:
        """Make this process the master: servers listen only, the workers' listeners wait."""
        if self._subscribed:
            return
        self.validate()
        bus = self.bus
        plugins = (getattr(bus, name, None) for name in MASTER_PLUGINS)
        self._masters = (self.site, bus, self.site.log, self.site.status, self,
                         *(plugin for plugin in plugins if plugin is not None))
        for server in self.site.active_servers():
            server.listen_only = True
        self._held = bus.take_listeners(
            lambda channel, callback: channel != "log" and not self.master_owned(callback)
            and not isinstance(getattr(callback, "__self__", None), ServerAdapter))
        bus.subscribe("start", self.start)
        bus.subscribe("stop", self.stop)
        bus.subscribe("graceful", self.graceful)
        bus.subscribe("draining", self.draining)
        bus.subscribe("child_pids", self.child_pids)
        bus.subscribe("reopen_logs", self.reopen_logs)
        bus.signal_handler.handlers.update(SIGTTIN=self.add_worker, SIGTTOU=self.remove_worker)
        autoreload = getattr(bus, "autoreload", None)
        if (autoreload is not None and self.load_apps is not None
                and autoreload.start in bus.listeners["start"]):
            autoreload.fast_reload = self.reload_for
        self._subscribed = True

    def unsubscribe(self) -> None:
        """Serve in this process again: the servers serve, the held listeners come back."""
        if not self._subscribed:
            return
        bus = self.bus
        for channel, method in (("start", self.start), ("stop", self.stop),
                                ("graceful", self.graceful), ("draining", self.draining),
                                ("child_pids", self.child_pids),
                                ("reopen_logs", self.reopen_logs)):
            bus.unsubscribe(channel, method)
        for server in self.site.active_servers():
            server.listen_only = False
        bus.put_listeners(self._held)
        self._held = []
        for name in ("SIGTTIN", "SIGTTOU"):
            bus.signal_handler.handlers.pop(name, None)
        autoreload = getattr(bus, "autoreload", None)
        if autoreload is not None and autoreload.fast_reload == self.reload_for:
            autoreload.fast_reload = None
        self._subscribed = False

    def master_owned(self, callback: Callable[..., Any]) -> bool:
        """Return True for a listener of the master's (which a worker removes)."""
        owner = getattr(callback, "__self__", None)
        return owner is not None and any(owner is master for master in self._masters)

    def start(self) -> None:
        """Fork the workers; return once one is ready, or raise the workers' error."""
        if self._supervisor is not None:
            return
        self.validate()
        prepare_to_fork()
        self.failure = None
        self._supervisor = Supervisor(self, self.workers)
        self._supervisor.start()
        failure = self._supervisor.wait_until_serving()
        if failure is not None:
            raise WorkerStartError(failure.message, failure.code)

    start.priority = 80  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Stop every worker gracefully and wait until all are gone."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.stop()

    stop.priority = 20  # type: ignore[attr-defined]

    def graceful(self) -> None:
        """Replace every worker, one at a time; wait until done (or called off)."""
        if self._supervisor is not None:
            self._supervisor.reload()

    def draining(self) -> None:
        """The site begins to drain: have every worker's health endpoint answer 503."""
        if self._supervisor is not None:
            for worker in self._supervisor.snapshot():
                try:
                    os.kill(worker["pid"], signal.SIGUSR2)
                except ProcessLookupError:
                    pass

    def child_pids(self) -> list[int]:
        """The workers' pids: the supervisor waits for them, the reaper must not."""
        supervisor = self._supervisor
        return [] if supervisor is None else [worker["pid"] for worker in supervisor.snapshot()]

    def reopen_logs(self) -> None:
        """The master reopened its log files: have every worker reopen its own (SIGWINCH)."""
        if self._supervisor is not None:
            for worker in self._supervisor.snapshot():
                try:
                    os.kill(worker["pid"], signal.SIGWINCH)
                except ProcessLookupError:
                    pass

    def reload_for(self, changed: list[str]) -> bool:
        """Autoreload: replace the workers if only files they imported changed (else False)."""
        if self._supervisor is None or not set(changed) <= self._files:
            return False
        self.bus.log(f"Reloading the workers because {changed[0]} changed.")
        self._supervisor.reload(wait=False)
        return True

    def add_worker(self) -> None:
        """One more worker (SIGTTIN)."""
        if self._supervisor is not None:
            self._supervisor.scale(1)

    def remove_worker(self) -> None:
        """One worker fewer, never none (SIGTTOU)."""
        if self._supervisor is not None:
            self._supervisor.scale(-1)

    # -- what the supervisor asks ------------------------------------------------------------

    def log(self, msg: str, level: int = 20) -> None:
        self.bus.log(msg, level)

    def stop_grace(self) -> float:
        timeouts = [server.shutdown_timeout for server in self.site.active_servers()]
        return max(timeouts, default=5) + STOP_GRACE

    def make_spec(self, pipe: int, generation: int, close_fds: tuple[int, ...]) -> WorkerSpec:
        autoreload = getattr(self.bus, "autoreload", None)
        fast = autoreload is not None and autoreload.fast_reload == self.reload_for
        return WorkerSpec(
            pipe=pipe,
            master_pid=os.getpid(),
            generation=generation,
            interval=max(0.05, (self.worker_timeout or 30) / BEATS_PER_TIMEOUT),
            request_limit=request_limit(self.max_requests, self.max_requests_jitter,
                                        random.randint),
            watch_match=autoreload.match if autoreload is not None and fast else None,
            stop_grace=self.stop_grace(),
            close_fds=close_fds,
            load_apps=self.load_apps,
            listeners=self._held,
            master_owned=self.master_owned,
        )

    def run_child(self, spec: WorkerSpec) -> None:
        run_worker(self.site, spec)

    def workers_changed(self, snapshot: list[dict[str, Any]], target: int) -> None:
        self.bus.publish("workers", snapshot, target)  # for the metrics (sitebus.site.metrics)
        status = self.site.status
        if status is not None:
            status.update(workers=snapshot, workers_target=target)

    def files_reported(self, files: list[str]) -> None:
        autoreload = getattr(self.bus, "autoreload", None)
        if autoreload is None or autoreload.fast_reload != self.reload_for:
            return
        new = set(files) - autoreload.sysfiles()
        new -= {name for name in new if os.path.realpath(name) in self._files}
        if new:
            self._files |= {os.path.realpath(name) for name in new}
            count = autoreload.watch(sorted(new))
            self.bus.log(f"Autoreloader watching {count} more files, imported by the workers.")

    def reload_finished(self, error: str | None) -> None:
        if error is not None:
            self.bus.log(f"Reload called off; the workers that served keep serving: {error}", 40)
        status = self.site.status
        if status is not None:
            status.update(reload_error=error)

    def gave_up(self, failure: Failure) -> None:
        self.failure = failure
        if self.bus.state is states.STARTED:
            self.bus.log(f"Workers keep failing to start; stopping the site: {failure.message}",
                         40)
            self.bus.call_in_main_thread(self.bus.exit)
