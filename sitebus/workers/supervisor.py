"""Supervisor: the master's thread that forks the workers, listens to them and replaces them.

One thread, blocked in ``selectors`` on three kinds of descriptor, with the next deadline as
its timeout: a control pipe (commands from the bus's thread: reload, add or remove a worker,
stop), each worker's heartbeat pipe (its messages, see ``sitebus.workers.worker``) and each worker's
pidfd (``os.pidfd_open``), which becomes readable when the worker exits, so no SIGCHLD handler
and no polling ``waitpid`` are needed. Deadlines: a starting worker must be ready within
``worker_timeout``, a ready one must beat within ``worker_timeout``, a stopping one must be
gone within its servers' ``shutdown_timeout`` plus a grace; each is SIGKILLed otherwise. Idle,
the thread wakes for the workers' beats and nothing else.

After every event the table of workers goes through ``supervision.plan``, and the thread forks
and asks to stop (SIGTERM) what the plan says. Forking happens here, not in the main thread:
the child's only thread is this one, which becomes its main thread (``threading`` and the
signal machinery see to that), and it calls the worker's entry point, which never returns.
Signals are blocked in this thread around ``fork()``, so the child cannot run one of the
master's handlers before it has installed its own.

Forking a process that has other threads copies whatever they hold at that instant. The
master's other threads (the main one in ``block()``, autoreload's) are blocked in system calls
almost all the time; the child resets what it uses of their state (the bus; logging
reinitialises its handlers' locks at fork); and the one thing they do that takes a lock the
child needs, writing a log line (a stream's buffer lock, which nothing reinitialises), is
kept out of the way: this thread holds every logging handler's lock across ``fork()``, so no
line is half written. That is why forking from a threaded process is acceptable here, and
Python 3.12's warning about it is silenced for that call.
"""

from __future__ import annotations

import itertools
import logging
import os
import selectors
import signal
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from sitebus.errors import EX_SOFTWARE
from sitebus.workers.supervision import (
    Failure,
    WorkerView,
    crash_verdict,
    describe_exit,
    plan,
    should_recycle,
    spawn_delay,
)
from sitebus.workers.worker import BLOCKED_ACROSS_FORK, MessageReader, WorkerSpec

__all__ = ["Owner", "Supervisor"]


class Owner(Protocol):
    """What the supervisor needs of the plugin that owns it (``master.Workers``): its limits,
    the worker spec and the child's entry point, and where to report what happened."""

    max_rss: int
    worker_timeout: float

    def log(self, msg: str, level: int = 20) -> None: ...

    def stop_grace(self) -> float: ...

    def make_spec(self, pipe: int, generation: int, close_fds: tuple[int, ...]
                  ) -> WorkerSpec: ...

    def run_child(self, spec: WorkerSpec) -> None: ...

    def workers_changed(self, snapshot: list[dict[str, Any]], target: int) -> None: ...

    def files_reported(self, files: list[str]) -> None: ...

    def reload_finished(self, error: str | None) -> None: ...

    def gave_up(self, failure: Failure) -> None: ...


@dataclass(eq=False)
class Child:
    """The master's record of one worker."""

    pid: int
    pidfd: int
    pipe: int
    spec: WorkerSpec
    forked: float  # time.monotonic()
    forked_at: float  # time.time()
    state: str = "starting"  # then 'ready', then 'stopping'
    ready: bool = False  # it was ready once
    asked: bool = False  # the master asked it to stop (or killed it on purpose)
    killed: bool = False
    kill_at: float | None = None
    retiring: str | None = None  # why it is being replaced
    last_beat: float = 0.0
    requests: int = 0
    rss: int = 0
    oldest: float | None = None
    error: tuple[str, int] | None = None
    reader: MessageReader = field(default_factory=MessageReader)


class Supervisor:
    """Keep ``target`` workers running for ``owner``, from a thread of its own."""

    def __init__(self, owner: Owner, target: int) -> None:
        self.owner = owner
        self.target = target
        self.failure: Failure | None = None
        self.generation = 0
        self._children: list[Child] = []
        self._cond = threading.Condition()
        self._commands: deque[tuple[Any, ...]] = deque()
        self._tickets = itertools.count(1)
        self._results: dict[int, str | None] = {}
        self._pending: list[int] = []  # tickets of the reload in progress
        self._failures = 0  # workers that exited before they were ready, in a row
        self._retry_at = 0.0
        self._stopping = False
        self._serving = False
        self._ended = False
        self._dirty = True
        self._reported: list[str] = []  # module files the workers imported, for autoreload
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._thread = threading.Thread(target=self._run, name="Workers supervisor", daemon=True)

    # -- called from the bus's thread -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wait_until_serving(self) -> Failure | None:
        """Wait until a worker is ready (None) or the workers cannot start (the Failure)."""
        with self._cond:
            self._cond.wait_for(lambda: self._serving or self.failure is not None or self._ended)
            return self.failure

    def reload(self, wait: bool = True) -> str | None:
        """Replace every worker, one at a time; with ``wait``, return the error if it failed."""
        ticket = next(self._tickets) if wait else 0
        self._post("reload", ticket)
        if not wait:
            return None
        with self._cond:
            self._cond.wait_for(lambda: ticket in self._results or self._ended)
            return self._results.pop(ticket, "the workers stopped")

    def scale(self, delta: int) -> None:
        """Add (1) or remove (-1) a worker; there is always at least one."""
        self._post("scale", delta)

    def stop(self) -> None:
        """Stop every worker gracefully (SIGKILL after the grace) and end the thread."""
        if self._thread.is_alive():
            self._post("stop")
            self._thread.join()
        self._close()

    def snapshot(self) -> list[dict[str, Any]]:
        """The workers as ``sitebus status`` shows them."""
        with self._cond:
            return [{"pid": c.pid, "state": c.state, "generation": c.spec.generation,
                     "started_at": c.forked_at, "requests": c.requests, "rss": c.rss,
                     **({"reason": c.retiring} if c.retiring else {})}
                    for c in self._children]

    def _post(self, *command: Any) -> None:
        self._commands.append(command)
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # full (a wake-up is pending) or closed (the thread has ended)

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not (self._stopping and not self._children):
                now = time.monotonic()
                self._check_deadlines(now)
                self._act(now)
                self._publish()
                if self._reported:  # after acting: a reload waits for nothing here
                    reported, self._reported = self._reported, []
                    self.owner.files_reported(reported)
                for key, _events in self._selector.select(self._timeout(time.monotonic())):
                    kind, child = key.data
                    if kind == "wake":
                        self._take_commands()
                    elif kind == "pipe":
                        self._read(child)
                    else:
                        self._reap(child)
        except BaseException as error:
            self.owner.log("The workers' supervisor failed; killing the workers.", 40)
            for child in self._children:
                _kill(child.pid, signal.SIGKILL)
            self.failure = Failure(f"the workers' supervisor failed: {error!r}", EX_SOFTWARE)
            self.owner.gave_up(self.failure)
            raise
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _close(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._selector.close()

    def _take_commands(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self._commands:
            name, *args = self._commands.popleft()
            if name == "stop":
                self._stopping = True
                for child in self._children:
                    self._ask_to_stop(child, time.monotonic())
                self._finish_reload("the site is stopping")
            elif name == "scale":
                self.target = max(1, self.target + args[0])
                self.owner.log(f"Workers: {self.target}.")
                self._dirty = True
            elif name == "reload":
                if self._stopping:
                    self._settle(args[0], "the site is stopping")
                    continue
                self.generation += 1
                self._pending.append(args[0])
                self.owner.log(f"Replacing the workers, one at a time (generation "
                               f"{self.generation}).")

    def _timeout(self, now: float) -> float | None:
        timeout = self.owner.worker_timeout
        deadlines = [self._retry_at] if self._retry_at > now else []
        for child in self._children:
            if child.killed:
                continue
            if child.state == "stopping" and child.kill_at is not None:
                deadlines.append(child.kill_at)
            elif timeout > 0:
                since = child.last_beat if child.state == "ready" else child.forked
                deadlines.append(since + timeout)
        return max(0.0, min(deadlines) - now) if deadlines else None

    # -- decisions into actions ---------------------------------------------------------------

    def _act(self, now: float) -> None:
        if self._stopping:
            return
        views = [WorkerView(c.pid, c.spec.generation, c.state, c.retiring is not None, c.forked)
                 for c in self._children]
        may_spawn = now >= self._retry_at and self.failure is None
        todo = plan(views, self.target, self.generation, may_spawn)
        for pid in todo.stop:
            child = next(c for c in self._children if c.pid == pid)
            self._ask_to_stop(child, now)
        for _ in range(todo.spawn):
            self._fork(now)
        if self._pending and not any(
            c.state != "stopping" and (c.spec.generation != self.generation or c.state != "ready")
            for c in self._children
        ):
            self._finish_reload(None)

    def _ask_to_stop(self, child: Child, now: float) -> None:
        if child.asked:
            return
        child.asked = True
        child.state = "stopping"
        child.kill_at = now + self.owner.stop_grace()
        _kill(child.pid, signal.SIGTERM)
        self._dirty = True

    def _kill(self, child: Child, why: str, level: int = 40) -> None:
        self.owner.log(f"Worker {child.pid} {why}: killing it.", level)
        child.killed = True
        _kill(child.pid, signal.SIGKILL)

    def _check_deadlines(self, now: float) -> None:
        timeout = self.owner.worker_timeout
        for child in self._children:
            if child.killed:
                continue
            if child.state == "stopping":
                if child.kill_at is not None and now >= child.kill_at:
                    self._kill(child, "did not stop in time", 30)
            elif timeout <= 0:
                continue
            elif child.state == "starting" and now - child.forked >= timeout:
                child.error = (f"a worker was not ready within {timeout:g} s "
                               "(server.worker_timeout)", EX_SOFTWARE)
                self._kill(child, f"was not ready within {timeout:g} s")
            elif child.state == "ready" and now - child.last_beat >= timeout:
                child.asked = True
                child.state = "stopping"
                self._dirty = True
                self._kill(child, f"sent no heartbeat for {timeout:g} s (server.worker_timeout)")

    def _finish_reload(self, error: str | None) -> None:
        if not self._pending:
            return
        if error is None:
            self.owner.log(f"The workers of generation {self.generation} serve.")
        self.owner.reload_finished(error)  # in the status file before any waiter wakes
        for ticket in self._pending:
            self._settle(ticket, error)
        self._pending = []

    def _settle(self, ticket: int, error: str | None) -> None:
        if ticket == 0:
            return  # nobody waits for it
        with self._cond:
            self._results[ticket] = error
            self._cond.notify_all()

    def _publish(self) -> None:
        serving = any(c.state == "ready" for c in self._children)
        with self._cond:
            if serving and not self._serving:
                self._serving = True
                self._cond.notify_all()
        if self._dirty:
            self._dirty = False
            self.owner.workers_changed(self.snapshot(), self.target)

    # -- processes --------------------------------------------------------------------------

    def _fork(self, now: float) -> None:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        mine = [self._wake_r, self._wake_w, self._selector.fileno(), read_fd]
        for child in self._children:
            mine += [fd for fd in (child.pipe, child.pidfd) if fd >= 0]
        spec = self.owner.make_spec(write_fd, self.generation, tuple(mine))
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED_ACROSS_FORK)
        handlers = _hold_log_handlers()
        error: OSError | None = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # see the module docstring
                pid = os.fork()
        except OSError as failed:
            pid, error = -1, failed
        if pid == 0:  # the child: logging has new locks here, nothing to release
            self.owner.run_child(spec)  # never returns
            os._exit(EX_SOFTWARE)
        for handler in handlers:
            handler.release()
        os.close(write_fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if error is not None:
            os.close(read_fd)
            self._failures += 1
            self._retry_at = now + spawn_delay(self._failures)
            self.owner.log(f"Cannot fork a worker: {error}", 40)
            return
        os.set_blocking(read_fd, False)
        child = Child(pid, os.pidfd_open(pid), read_fd, spec, now, time.time())
        with self._cond:
            self._children.append(child)
        self._selector.register(read_fd, selectors.EVENT_READ, ("pipe", child))
        self._selector.register(child.pidfd, selectors.EVENT_READ, ("exit", child))
        self._dirty = True
        self.owner.log(f"Started worker {pid} (generation {spec.generation}).")

    def _read(self, child: Child) -> None:
        while child.pipe >= 0:
            try:
                data = os.read(child.pipe, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._selector.unregister(child.pipe)
                os.close(child.pipe)
                child.pipe = -1
                return
            for message in child.reader.feed(data):
                self._on_message(child, message, time.monotonic())

    def _on_message(self, child: Child, message: dict[str, Any], now: float) -> None:
        if "error" in message:
            child.error = (str(message["error"]), _code(message.get("code")))
        if message.get("files"):
            self._reported += [str(f) for f in message["files"]]
        if "ready" in message:
            child.ready = True
            child.last_beat = now
            self._failures = 0
            self._retry_at = 0.0
            if child.state == "starting":
                child.state = "ready"
                self.owner.log(f"Worker {child.pid} is ready.")
            self._dirty = True
        if "beat" in message:
            child.last_beat = now
            requests, rss = _count(message.get("requests")), _count(message.get("rss"))
            oldest = message.get("oldest")
            child.oldest = float(oldest) if isinstance(oldest, (int, float)) else None
            if (requests, rss) != (child.requests, child.rss):
                child.requests, child.rss = requests, rss
                self._dirty = True
            reason = should_recycle(requests, rss, child.oldest, child.spec.request_limit,
                                    self.owner.max_rss, self.owner.worker_timeout)
            if reason and child.retiring is None and child.state == "ready":
                child.retiring = reason
                self._dirty = True
                self.owner.log(f"Replacing worker {child.pid}: {reason}.")
        if "requests" in message and "beat" not in message:  # a count, not a beat
            requests = _count(message.get("requests"))
            if requests != child.requests:
                child.requests = requests
                self._dirty = True
        if "stopping" in message and child.state != "stopping":
            if not child.asked:
                self.owner.log(f"Worker {child.pid} is stopping by itself.", 30)
            child.state = "stopping"
            child.kill_at = now + self.owner.stop_grace()
            self._dirty = True

    def _reap(self, child: Child) -> None:
        self._read(child)
        try:
            _pid, status = os.waitpid(child.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = EX_SOFTWARE
        self._selector.unregister(child.pidfd)
        os.close(child.pidfd)
        if child.pipe >= 0:
            self._selector.unregister(child.pipe)
            os.close(child.pipe)
        with self._cond:
            self._children.remove(child)
        self._dirty = True
        now = time.monotonic()
        if child.ready or child.asked:
            level = 20 if child.asked and code == 0 else 40
            self.owner.log(f"Worker {child.pid} exited ({describe_exit(code)}).", level)
            return
        message, failed_code = child.error or (
            f"a worker exited ({describe_exit(code)}) before it was ready", EX_SOFTWARE)
        if code > 0 and child.error is None:
            failed_code = code
        self._failures += 1
        self.owner.log(f"Worker {child.pid} could not start: {message}", 40)
        if self._pending and child.spec.generation == self.generation:
            for other in self._children:  # the reload is off: the workers serving stay
                other.spec.generation = self.generation
            self._finish_reload(message)
        if crash_verdict(self._failures, any(c.state == "ready" for c in self._children)) \
                == "give up":
            self.failure = Failure(message, failed_code)
            with self._cond:
                self._cond.notify_all()
            self.owner.gave_up(self.failure)
            self._stopping = True
            for other in self._children:
                self._ask_to_stop(other, now)
        else:
            self._retry_at = now + spawn_delay(self._failures)


def _hold_log_handlers() -> list[logging.Handler]:
    """Take every logging handler's lock, so no other thread is writing a line; return them."""
    loggers = [logging.getLogger(), *(logger for logger in
                                      list(logging.Logger.manager.loggerDict.values())
                                      if isinstance(logger, logging.Logger))]
    handlers = sorted({h for logger in loggers for h in logger.handlers}, key=id)
    for handler in handlers:
        handler.acquire()
    return handlers


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _code(value: Any) -> int:
    return value if isinstance(value, int) and 0 < value < 256 else EX_SOFTWARE


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
