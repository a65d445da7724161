"""A pre-fork worker: the child's life after the master forks it, and what it tells the master.

The child starts as a copy of the master, inside the master's supervisor thread (which is the
child's only thread, so its main thread). ``run_worker`` turns it into a worker and never
returns: it ends with ``os._exit``, so no code of the master's runs on in the copy.

1. It asks the kernel for SIGTERM when the master dies (``prctl(PR_SET_PDEATHSIG)``) and exits
   at once if the master died before that; it closes the master's descriptors (other workers'
   pipes, the supervisor's) and drops what systemd gave the master (NOTIFY_SOCKET, LISTEN_*).
2. The site's bus, inherited in whatever state the master's threads left it, is reset to
   STOPPED with fresh locks (``ForkableBus.reset_after_fork``). The master's listeners (PID file,
   signal handler, autoreload, systemd notifier, daemonizer, status file, the site's restart
   hooks, the Workers plugin) are removed, and the listeners the master held back for the
   workers (the apps' plugins, such as a database pool, when the apps were preloaded; the
   thread manager) are put back. Log lines say ``WORKER <pid>`` instead of ``ENGINE``.
3. Signals, which the master kept blocked across the fork so that none reaches a handler of
   the master's, get the worker's meaning: SIGTERM stops gracefully (the servers drain within
   ``shutdown_timeout``), SIGQUIT exits at once, SIGUSR2 (sent by the master as it begins to
   drain) makes the health endpoint answer 503; SIGINT, SIGHUP, SIGUSR1, SIGTTIN and SIGTTOU
   are ignored (they are the master's: on Ctrl-C the whole process group gets SIGINT, and the
   master stops its workers gracefully).
4. The servers take over the master's listening sockets without owning them: a worker that
   stops leaves them listening, and a UNIX socket's file in place, for the others.
5. The apps are loaded (when the master did not preload them) and the bus starts and blocks.

Heartbeat. Each worker has a pipe to the master and writes one JSON line per message:
``{"ready": 1, ...}`` once its bus is STARTED, ``{"beat": 1, "requests": n, "rss": bytes,
"oldest": seconds}`` every ``interval``, ``{"requests": n}`` within ``COUNT_DELAY`` of a request
(so ``sitebus status`` is fresh; not a beat), ``{"stopping": 1}`` when its bus stops, and
``{"error": text, "code": n}`` when it cannot start. A beat is written from the main thread
(a timer thread asks for it with ``bus.call_in_main_thread``), so a beat proves the main loop,
where signals are handled, still runs. It proves nothing about the threads that serve requests:
a handler stuck in an endless loop holds one of them while the rest of the process is fine. So
``RequestTracker`` (the WSGI app the servers call) notes when each request started, and every
beat carries the age of the oldest request in flight, or of the oldest request no server thread
has taken yet, or of a wake-up the server's head reader has not answered (``stalled()``, see
``sitebus.servers.headreader``): the time the worker has been unable to answer. The master retires a
worker whose figure is older than ``server.worker_timeout``, and kills one that sends no beat
at all for that long (its main thread, or the whole interpreter, is stuck). A pipe rather
than a file on disk: a slow disk must not look like a hung worker. A beat that finds the master gone
(another parent, or a broken pipe) stops the worker, in case SIGTERM from the kernel was lost.

Exiting for sure: once a worker stops, or its timer thread sees that the master is gone, it
has ``stop_grace`` seconds (its servers' ``shutdown_timeout`` plus a grace) to end; then it
ends with ``os._exit``. A handler that never returns holds a server thread that a graceful
stop waits for, and without a master nobody would kill the worker.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sitebus.bus import Bus, flush_and_exit, states
from sitebus.errors import EX_OK, EX_SOFTWARE, SitebusError, exit_code_of, root_causes
from sitebus.plugins import SimplePlugin
from sitebus.process.signals import SignalHandler
from sitebus.reload.watchlist import module_file_base, module_files

__all__ = ["Heartbeat", "MessageReader", "RequestTracker", "WorkerSpec", "encode",
           "prepare_to_fork", "run_worker", "set_parent_death_signal"]

PR_SET_PDEATHSIG = 1  # prctl(2), <linux/prctl.h>

MASTER_SIGNALS = ("SIGINT", "SIGHUP", "SIGUSR1", "SIGTTIN", "SIGTTOU")
"""Signals a worker ignores: they are meant for the master."""

BLOCKED_ACROSS_FORK = frozenset(
    getattr(signal, name) for name in ("SIGTERM", "SIGQUIT", "SIGUSR2", *MASTER_SIGNALS))
"""Signals the master blocks while it forks; the worker unblocks them once it handles them."""

NOT_FOR_WORKERS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                   "LISTEN_FDNAMES")
"""Environment variables meant for the master alone (systemd talks to one process)."""

COUNT_DELAY = 0.5
"""Seconds between a request and the message that carries the worker's new request count:
``sitebus status`` shows counts at most about a second old, in one message per half second
under load instead of one per request."""

MAX_ERROR = 3000
"""The longest error text sent to the master, in characters."""


# -- the protocol ---------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    """Return one message as the line a worker writes to its pipe."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class MessageReader:
    """The master's end of a worker's pipe: bytes in, whole messages out."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add what was read; return the messages it completes (garbled lines are skipped)."""
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        messages = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                messages.append(message)
        return messages


# -- requests in flight ---------------------------------------------------------------------


class RequestTracker:
    """Counts requests and notes when each one in flight started, for the heartbeat.

    ``wrap(app)`` returns the WSGI app to serve instead of ``app``. A request is in flight from
    the call until the call returns a list, or until the server closes the iterable returned;
    requests are keyed by thread, as a server thread serves one request at a time.
    """

    def __init__(self, limit: int = 0, on_limit: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.on_limit = on_limit
        self.requests = 0
        self.started: dict[int, float] = {}
        self.servers: list[Any] = []
        """Servers whose ``httpserver.stalled(now)`` counts too (see sitebus.servers.headreader)."""
        self.unreported = False
        """True once a request was counted since the count was last sent to the master."""
        self.on_count: Callable[[], None] | None = None
        """Called for the first request counted after a report (the heartbeat's wake-up)."""

    def oldest(self, now: float) -> float | None:
        """Return the age of the oldest request in flight or waiting for a thread, or None."""
        times = list(self.started.values())
        ages = [now - min(times)] if times else []
        for server in self.servers:
            stalled = getattr(getattr(server, "httpserver", None), "stalled", None)
            age = stalled(now) if stalled is not None else None
            if age is not None:
                ages.append(age)
        return max(ages) if ages else None

    def count(self) -> None:
        """Count a request of an async server (``sitebus.servers.asgiobserve``). Its time in flight
        is not noted: an awaiting request holds nothing up; the server's ``stalled`` reports a
        blocked event loop instead (``sitebus.servers.asgiserver``)."""
        self.requests = count = self.requests + 1
        if count == self.limit and self.on_limit is not None:
            self.on_limit()
        if not self.unreported and self.on_count is not None:
            self.unreported = True
            self.on_count()

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        started = self.started
        clock = time.monotonic
        ident = threading.get_ident
        count = self.count

        def tracked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            me = ident()
            started[me] = clock()
            count()
            try:
                result = app(environ, start_response)
            except BaseException:
                started.pop(me, None)
                raise
            if type(result) is list or type(result) is tuple:
                started.pop(me, None)
                return result
            return _InFlight(result, started, me)

        return tracked


class _InFlight:
    """A response iterable whose close() ends its request's time in flight."""

    __slots__ = ("_result", "_iterator", "_started", "_ident")

    def __init__(self, result: Iterable[bytes], started: dict[int, float], ident: int) -> None:
        self._result = result
        self._iterator = iter(result)
        self._started = started
        self._ident = ident

    def __iter__(self) -> Iterator[bytes]:
        return self._iterator  # the server steps the body's own iterator: no call per chunk

    def __next__(self) -> bytes:
        return next(self._iterator)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._started.pop(self._ident, None)


# -- the heartbeat --------------------------------------------------------------------------


class Heartbeat(SimplePlugin):
    """The worker's side of its pipe: ready, beats, stopping, errors."""

    def __init__(self, bus: Bus, pipe: int, master_pid: int, interval: float,
                 tracker: RequestTracker, watch_match: str | None = None,
                 stop_grace: float = 7.0) -> None:
        super().__init__(bus)
        self.pipe = pipe
        self.master_pid = master_pid
        self.interval = interval
        self.tracker = tracker
        self.watch_match = watch_match
        self.stop_grace = stop_grace
        self._deadline: threading.Timer | None = None
        self._lock = threading.Lock()
        self._timer: threading.Thread | None = None
        self._quit = threading.Event()
        self._wake = threading.Event()  # requests were counted (or the heartbeat stops)
        self._modules_seen = 0
        self._files_sent: set[str] = set()

    def send(self, **message: Any) -> bool:
        """Write one message to the master; False when the master is gone."""
        data = encode(message)
        with self._lock:
            try:
                while data:
                    data = data[os.write(self.pipe, data):]
            except OSError:
                return False
        return True

    def start(self) -> None:
        self.bus.call_in_main_thread(self._ready)

    start.priority = 100  # type: ignore[attr-defined]

    def _ready(self) -> None:
        if self.bus.state is not states.STARTED:
            return
        self.send(ready=1, files=self._new_files())
        self._quit.clear()
        self._timer = threading.Thread(target=self._tick, name="Heartbeat", daemon=True)
        self._timer.start()

    def counted(self) -> None:
        """A request was counted: send the count within COUNT_DELAY (for ``sitebus status``)."""
        self._wake.set()

    def _tick(self) -> None:
        next_beat = time.monotonic() + self.interval
        while not self._quit.is_set():
            self._wake.wait(max(0.0, next_beat - time.monotonic()))
            if self._quit.is_set():
                return
            if self._wake.is_set():
                self._quit.wait(COUNT_DELAY)  # a moment's requests in one message
                self._wake.clear()
                self.tracker.unreported = False  # before reading the count: see wrap()
                self.send(requests=self.tracker.requests)
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.interval
                if os.getppid() != self.master_pid:
                    self._exit_within_grace()  # the main thread may be too stuck to notice
                self.bus.call_in_main_thread(self.beat)

    def beat(self) -> None:
        """Tell the master how this worker is doing (from the main thread)."""
        if self.bus.state is not states.STARTED:
            return
        rss = _rss()
        sent = os.getppid() == self.master_pid and self.send(
            beat=1, requests=self.tracker.requests, rss=rss,
            oldest=self.tracker.oldest(time.monotonic()), files=self._new_files())
        if not sent:
            self.bus.log("The master is gone: stopping.", 30)
            self.bus.exit()

    def stop(self) -> None:
        self._quit.set()
        self._wake.set()
        self._exit_within_grace()
        self.send(stopping=1)

    stop.priority = 1  # type: ignore[attr-defined]

    def _exit_within_grace(self) -> None:
        with self._lock:
            if self._deadline is not None:
                return
            self._deadline = threading.Timer(self.stop_grace, self._exit_now)
        self._deadline.daemon = True
        self._deadline.start()

    def _exit_now(self) -> None:
        self.bus.log(f"Still running {self.stop_grace:g} s after stopping began: exiting now.", 30)
        os._exit(EX_SOFTWARE)

    def report_failure(self, error: BaseException) -> int:
        """Tell the master why this worker cannot start; return the exit code to end with."""
        code = exit_code_of(error)
        text = "; ".join(_describe(cause) for cause in root_causes(error))
        self.send(error=text[:MAX_ERROR], code=code)
        return code

    def _new_files(self) -> list[str]:
        """The source files of modules imported since the last report (for autoreload)."""
        if self.watch_match is None or len(sys.modules) == self._modules_seen:
            return []
        self._modules_seen = len(sys.modules)
        files = module_files(sys.modules, self.watch_match, module_file_base) - self._files_sent
        self._files_sent |= files
        return sorted(files)


def _describe(error: BaseException) -> str:
    return str(error) if isinstance(error, SitebusError) else f"{type(error).__name__}: {error}"


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# -- becoming a worker ----------------------------------------------------------------------


@functools.cache
def _prctl() -> Any:
    return ctypes.CDLL(None, use_errno=True).prctl


def prepare_to_fork() -> None:
    """In the master: load what every worker needs (libc's prctl) once, before forking."""
    _prctl()


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send ``signum`` to this process when its parent thread ends (prctl(2))."""
    if _prctl()(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")


@dataclass
class WorkerSpec:
    """What the master tells a worker it forks."""

    pipe: int
    master_pid: int
    generation: int = 0
    interval: float = 7.5
    stop_grace: float = 7.0
    request_limit: int = 0
    watch_match: str | None = None
    close_fds: tuple[int, ...] = ()
    load_apps: Callable[[], None] | None = None
    listeners: list[tuple[str, Callable[..., Any], int]] = field(default_factory=list)
    master_owned: Callable[[Callable[..., Any]], bool] = lambda callback: False


def run_worker(site: Any, spec: WorkerSpec) -> NoReturn:
    """Become a worker of ``site`` (in a child the master just forked); never return."""
    code = EX_SOFTWARE
    try:
        code = _serve(site, spec)
    except BaseException:
        try:
            site.bus.log("Worker failed.", 40, traceback=True)
        except BaseException:
            pass
    finally:
        flush_and_exit(code)


def _serve(site: Any, spec: WorkerSpec) -> int:
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != spec.master_pid:
        return EX_OK  # the master died before the kernel could be told
    for fd in spec.close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for name in NOT_FOR_WORKERS:
        os.environ.pop(name, None)

    bus = site.bus
    bus.reset_after_fork()
    bus.take_listeners(lambda channel, callback: spec.master_owned(callback))
    bus.put_listeners(spec.listeners)
    bus.log_as(f"WORKER {os.getpid()}")
    _handle_signals(bus, site.log.reopen_files)

    tracker = RequestTracker(spec.request_limit)
    heartbeat = Heartbeat(bus, spec.pipe, spec.master_pid, spec.interval, tracker,
                          spec.watch_match, spec.stop_grace)
    tracker.on_limit = functools.partial(bus.call_in_main_thread, heartbeat.beat)
    tracker.on_count = heartbeat.counted
    heartbeat.subscribe()
    try:
        importlib.invalidate_caches()  # modules written since the master started are found
        if spec.load_apps is not None:
            spec.load_apps()
        for server in site.active_servers():
            server.take_over()
            server.wsgi_app = tracker.wrap(server.wsgi_app)
            server.request_tracker = tracker  # for the requests of ASGI apps (uvicorn)
            tracker.servers.append(server)
        if bus.state is states.EXITING:
            return EX_OK  # SIGTERM while the apps loaded: the master stops it, nothing to start
        bus.start()
    except Exception as error:
        return heartbeat.report_failure(error)
    bus.block()
    return EX_OK


def _handle_signals(bus: Any, reopen_logs: Callable[[], None]) -> None:
    """Give signals their meaning in a worker, then let them in."""
    for name in MASTER_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    handler = SignalHandler(bus)
    handler.handlers = {"SIGTERM": bus.exit, "SIGQUIT": functools.partial(_quit_now, bus),
                        "SIGUSR2": functools.partial(_master_draining, bus),
                        "SIGWINCH": reopen_logs}
    bus.signal_handler = handler  # engine.signals.subscribe() in an app gets the worker's
    handler.subscribe()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, BLOCKED_ACROSS_FORK)


def _master_draining(bus: Any) -> None:
    """The master is stopping: report not-ready to the balancer while still serving."""
    health = getattr(bus, "health", None)
    if health is not None:
        health.draining = True


def _quit_now(bus: Any) -> None:
    bus.log("Quitting at once (SIGQUIT).")
    logging.shutdown()
    os._exit(EX_OK)
