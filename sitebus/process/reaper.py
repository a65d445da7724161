"""Reaper: what PID 1 owes its orphans (``engine.reaper``).

In a container the first process is PID 1 of its PID namespace: every process whose parent
dies is re-parented to it, and only it can collect their exit status. A site whose requests
shell out (``sh -c 'convert ... &'``) leaves such orphans behind; unreaped, each stays a zombie
in the process table until the container's PID limit is reached. Outside a container,
``engine.reaper.on = True`` makes the site a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``)
so its descendants' orphans come to it instead of the host's init. The site subscribes this
plugin by itself when it runs as PID 1; ``engine.reaper.on = False`` turns it off (say, with
tini in front).

The hard part is to reap only what nobody else will: the workers' supervisor waits for each
worker through its pidfd (``sitebus.workers.supervisor``), ``subprocess`` waits for its own children
(an app's ``subprocess.run()`` must still get the exit status), and so does
``multiprocessing``. ``waitpid(-1)`` would swallow those. So the reaper never waits for "any
child": it lists its zombie children in ``/proc`` and waits for each one by pid, and only for
a zombie that is

1. not a worker (the workers plugin answers the ``child_pids`` channel),
2. not the pid of a live ``subprocess.Popen`` (``returncode`` still None) or of a
   ``multiprocessing`` process (found among the live objects with ``gc``, as the referrers of
   those classes: the standard library keeps no registry of them), and
3. already a zombie at the previous look, ``interval`` seconds before (0.2). A child forked
   an instant ago may not carry its owner's mark yet (``Popen.pid`` is assigned after the fork
   returns, a worker is listed after ``fork()``); a zombie that nobody collected for a whole
   interval is an orphan, or the child of code that waits late, which item 2 recognises.

A zombie that has an owner is looked at again later, less and less often (up to once a
minute), in case its owner was dropped without waiting. What the reaper cannot know about:
a child forked with a bare ``os.fork()`` and waited for by pid more than ``interval`` after it
exited; turn the reaper off for such code and put tini in front instead.

Triggered by SIGCHLD, not by polling: the handler (in the main thread, which the bus's wake-up
pipe wakes) writes a byte to a pipe the reaper's thread waits on; the thread looks at most once
per ``interval`` and, while zombies are pending, at their due time. Idle, it sleeps on the
pipe. SIGCHLD is installed with SA_RESTART (``siginterrupt(False)``), so a system call of an
app's C library in the main thread is not cut short by a child's exit. The reaper runs in the
master only (it is one of ``workers.MASTER_PLUGINS``), from ``start`` (priority 78: after the
daemonizer's fork, 65, which neither a thread nor the subreaper mark survives, and before the
workers are forked, 80) until ``stop`` (priority 15: after the health endpoint's drain delay,
before the workers stop); a forked child gets SIGCHLD's default back.

Rejected: ``waitid(P_ALL, WNOWAIT)`` to peek (it shows one child only, and a worker's zombie
would hide the orphans behind it), a process of its own in front (tini's way: it makes a site
with no workers two processes, and signals would need forwarding), and a fixed polling period.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from sitebus.bus import Bus
from sitebus.errors import ConfigError
from sitebus.plugins import SimplePlugin

__all__ = ["Pending", "Reaper", "after_look", "owned_pids", "set_child_subreaper", "track",
           "zombie_children"]

PR_SET_CHILD_SUBREAPER = 36  # prctl(2), <linux/prctl.h>

RECHECK_LIMIT = 60.0
"""Longest wait, in seconds, between two looks at a zombie that has an owner."""


# -- decisions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A zombie child the reaper knows of: when it looks at it next, and how often it did."""

    due: float
    looks: int = 0


def track(zombies: Iterable[int], pending: dict[int, Pending], now: float,
          interval: float) -> tuple[dict[int, Pending], set[int]]:
    """Return the zombies to remember, and those due for a look (seen one interval ago)."""
    kept = {pid: pending.get(pid) or Pending(now + interval) for pid in zombies}
    return kept, {pid for pid, entry in kept.items() if entry.due <= now}


def after_look(pending: dict[int, Pending], due: set[int], owned: set[int], now: float,
               interval: float) -> tuple[dict[int, Pending], set[int]]:
    """Return what stays pending and what to reap: the due zombies that have no owner.

    A zombie with an owner is looked at again after a wait that doubles each time.
    """
    reap = due - owned
    kept = {}
    for pid, entry in pending.items():
        if pid in reap:
            continue
        if pid in due:
            wait = min(RECHECK_LIMIT, interval * 2 ** (entry.looks + 1))
            entry = Pending(now + wait, entry.looks + 1)
        kept[pid] = entry
    return kept, reap


def next_look(pending: dict[int, Pending], last: float, signalled: bool,
              interval: float) -> float | None:
    """Return when to look next (monotonic time), or None to wait for SIGCHLD alone."""
    wanted = [entry.due for entry in pending.values()]
    if signalled:
        wanted.append(last)
    if not wanted:
        return None
    return max(min(wanted), last + interval)


# -- the system -----------------------------------------------------------------------------


def zombie_children(parent: int, proc: str = "/proc") -> set[int]:
    """Return the pids of ``parent``'s children that have exited and wait to be reaped."""
    found: set[int] = set()
    try:
        names = os.listdir(proc)
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) S ppid ...": comm may hold spaces and parentheses, so split after the last.
        fields = text[text.rfind(b")") + 2:].split()
        if len(fields) > 1 and fields[0] == b"Z" and int(fields[1]) == parent:
            found.add(int(name))
    return found


def owned_pids() -> set[int]:
    """Return the pids that a live ``subprocess.Popen`` or ``multiprocessing`` process owns."""
    subprocess = sys.modules.get("subprocess")
    process = sys.modules.get("multiprocessing.process")
    kinds = tuple(kind for kind in (getattr(subprocess, "Popen", None),
                                    getattr(process, "BaseProcess", None)) if kind is not None)
    if not kinds:
        return set()
    pids = set()
    # An instance refers to its class: asking for the classes' referrers is several times
    # faster than testing every object (8 ms against 20-38 ms among 440,000 objects).
    for obj in gc.get_referrers(*_with_subclasses(kinds)):
        if isinstance(obj, kinds):
            try:
                pid = obj.pid
                done = getattr(obj, "returncode", None) is not None
            except Exception:
                continue
            if isinstance(pid, int) and not done:
                pids.add(pid)
    return pids


def _with_subclasses(kinds: tuple[type, ...]) -> list[type]:
    found: list[type] = []
    todo = list(kinds)
    while todo:
        kind = todo.pop()
        if kind not in found:
            found.append(kind)
            todo.extend(kind.__subclasses__())
    return found


def set_child_subreaper(on: bool) -> None:
    """Make this process a child subreaper (or not): orphaned descendants come to it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(code)}")


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"signal {-code}" if code < 0 else f"exit {code}"


# -- the plugin -----------------------------------------------------------------------------


class Reaper(SimplePlugin):
    """Reap the orphans that re-parent to this process (PID 1, or a child subreaper)."""

    interval: float = 0.2
    """Seconds between two looks, and how long a zombie waits for its owner before it is reaped."""

    reaped: int = 0
    """Orphans reaped since the site started."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.interval = 0.2
        self.reaped = 0
        self._thread: threading.Thread | None = None
        self._quit = threading.Event()
        self._pipe: tuple[int, int] | None = None
        self._previous: Any = None
        self._installed = False
        self._subreaper = False
        self._pid = 0

    def start(self) -> None:
        """Become a subreaper unless PID 1, handle SIGCHLD, and start looking for orphans."""
        if self._thread is not None:
            return
        if (isinstance(self.interval, bool) or not isinstance(self.interval, (int, float))
                or not 0 < self.interval <= 60):
            raise ConfigError(f"expected seconds between 0 and 60, got {self.interval!r}",
                              key="engine.reaper.interval", value=self.interval)
        self._pid = os.getpid()
        if self._pid != 1:
            set_child_subreaper(True)
            self._subreaper = True
        self._pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGCHLD, self._on_sigchld)
            self._installed = True
            signal.siginterrupt(signal.SIGCHLD, False)
        else:
            self.bus.log("Reaper: not started from the main thread, so SIGCHLD cannot be "
                         "handled; orphans are reaped only at start.", 30)
        self._quit.clear()
        self._thread = threading.Thread(target=self._run, name="sitebus reaper", daemon=True)
        self._thread.start()
        role = "PID 1" if self._pid == 1 else "a child subreaper"
        self.bus.log(f"Reaping orphaned processes, as {role}.")

    start.priority = 78  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Stop looking; give SIGCHLD its previous handler back."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._quit.set()
        self._wake()
        thread.join()
        if self._installed and threading.current_thread() is threading.main_thread():
            previous = signal.SIG_DFL if self._previous is None else self._previous
            signal.signal(signal.SIGCHLD, previous)
            self._installed, self._previous = False, None
        if self._subreaper:
            set_child_subreaper(False)
            self._subreaper = False
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None

    stop.priority = 15  # type: ignore[attr-defined]

    def _on_sigchld(self, signum: int, frame: FrameType | None = None) -> None:
        """Record and wake: the reaper's thread does the work."""
        if os.getpid() == self._pid:
            self._wake()

    def _wake(self) -> None:
        if self._pipe is not None:
            try:
                os.write(self._pipe[1], b"\0")
            except OSError:
                pass  # full: a wake-up is pending anyway

    def _run(self) -> None:
        assert self._pipe is not None
        wake_fd = self._pipe[0]
        pending: dict[int, Pending] = {}
        last = -float("inf")
        signalled = True  # look once at start: what an earlier image or the start left
        while not self._quit.is_set():
            when = next_look(pending, last, signalled, self.interval)
            timeout = None if when is None else max(0.0, when - time.monotonic())
            if timeout is None or timeout > 0:
                if _wait_readable(wake_fd, timeout):
                    _drain(wake_fd)
                    signalled = True
                    continue  # recompute: the look may have to wait for the interval
            if self._quit.is_set():
                return
            last = time.monotonic()
            signalled = False
            try:
                pending = self._look(pending, last)
            except Exception:
                self.bus.log("Reaper: a look failed.", 40, traceback=True)

    def _look(self, pending: dict[int, Pending], now: float) -> dict[int, Pending]:
        workers: set[int] = set()
        for pids in self.bus.publish("child_pids"):
            workers.update(pids or ())
        zombies = zombie_children(self._pid) - workers
        pending, due = track(zombies, pending, now, self.interval)
        if not due:
            return pending
        pending, reap = after_look(pending, due, owned_pids(), now, self.interval)
        for pid in sorted(reap):
            try:
                _pid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue  # its owner was quicker
            except OSError as error:
                if error.errno != errno.EINTR:
                    raise
                continue
            if _pid:
                self.reaped += 1
                self.bus.log(f"Reaped orphan {pid} ({_describe(status)}).", 10)
        return pending


def _wait_readable(fd: int, timeout: float | None) -> bool:
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else int(timeout * 1000) + 1))


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _default_in_forked_child() -> None:
    """A forked child (a worker) is no reaper: SIGCHLD gets its default action back."""
    handler = signal.getsignal(signal.SIGCHLD)
    if isinstance(getattr(handler, "__self__", None), Reaper):
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        except ValueError:
            pass  # forked from a thread Python does not count as main: the handler ignores it


os.register_at_fork(after_in_child=_default_in_forked_child)
