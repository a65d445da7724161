"""Autoreloader: re-execute the process when one of its source or config files changes.

What is watched (``sitebus.reload.watchlist``): the files of the imported modules whose names match
``match`` (``sysfiles()``), and every file in ``files`` (the site adds its config files there,
frameworks their templates).

How: a watcher (``sitebus.reload.watchers``; inotify on Linux) watches the directories of those
files and reports every change in them; a change to any other entry costs one dictionary look-up.
Nothing polls: idle, the watcher's thread and this plugin's thread are blocked, and the process
makes no wake-ups. ``frequency`` is kept for compatibility: it paces only the polling fallback,
and 0 turns the plugin off, as it does the reference's Monitor.

One save, one reload: an editor's save is several events (write a temporary file and rename it
over the original, or truncate and write in pieces, then chmod). Changes are gathered until the
watched files have been quiet for ``quiet`` seconds (0.05), or 1 s after the first change if
they never go quiet, and then acted on once. 50 ms because the events of one save come within
a few milliseconds of each other, while the whole reload, from save to new text served, should
take under 0.3 s and the new process needs most of that.

A syntax error does not take the site down: before restarting, each changed ``.py`` file is
compiled (``compile(source, path, 'exec')``). One that fails is logged (level 40: file, line,
message) and the running code keeps serving; the file is compiled again before any later
restart, so saving another file cannot bring up a process that would fail to import it, and
the next save of it is tried again. Other files (config files) restart without a check.

Restart: ``Restarting because <path> changed.`` is logged, and the main thread is asked
(``bus.call_in_main_thread``) to call ``bus.restart()``; the exit listeners then run in the
thread that re-executes, so the exec cannot cut them short. Later events are ignored.

Pre-fork workers (``sitebus.workers.master``) set ``fast_reload``: it is offered the changed files
first, and when it takes them (only files that the workers, not this process, imported) it
replaces the workers with fresh ones and this process is not restarted. A forked child
(a worker) forgets the plugin's threads and import hook, which are the parent's.

Modules imported after start: an import hook (``ImportNotifier``) makes the plugin rescan
``sys.modules`` once imports have settled, so a module imported lazily, even from a directory
not watched yet, is watched too. Modules put into ``sys.modules`` by hand are found when an
event arrives in a watched directory while ``sys.modules`` has grown, and at ``graceful`` and
``run()``. Adding to ``files`` rescans as well. ``graceful`` restarts the watcher with the
settings as they are; a file changed meanwhile is acted on.

Before re-executing, the cached bytecode of each changed module is removed: a ``.pyc`` is
trusted while the source's size and whole-second mtime are unchanged, so two saves of the same
length within a second would otherwise bring the first one back.

Rejected: polling mtimes, as CherryPy does (a wake-up per second, up to a second late);
watchdog's InotifyObserver (see ``sitebus.reload.watchers``).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from sitebus.bus import Bus, states
from sitebus.errors import ConfigError, UnavailableError
from sitebus.plugins import SimplePlugin
from sitebus.reload.watchers import (
    AUTO,
    Watcher,
    choose_watcher,
    limit_hint,
    make_watcher,
    watchers,
)
from sitebus.reload.watchlist import (
    ImportNotifier,
    WatchedFiles,
    WatchList,
    check_file_name,
    module_file_base,
    module_files,
)

__all__ = ["Autoreloader", "settle_delay", "syntax_error", "check_settings"]

SETTING = "engine.autoreload"
LONGEST_WAIT = 1.0  # act this long after the first change even if changes never stop


# -- decisions ------------------------------------------------------------------------------


def settle_delay(first: float, last: float, now: float, quiet: float,
                 longest: float = LONGEST_WAIT) -> float:
    """Return how long to wait before acting on changes seen from ``first`` to ``last``.

    Act once nothing has changed for ``quiet`` seconds, or ``longest`` after the first change,
    so a file rewritten without pause still reloads. 0 means act now.
    """
    due = min(last + quiet, first + max(quiet, longest))
    return max(0.0, due - now)


def syntax_error(source: bytes, filename: str) -> str | None:
    """Return where and why ``source`` does not compile (``path, line N: message``), or None."""
    try:
        compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as error:
        line = f", line {error.lineno}" if error.lineno else ""
        return f"{error.filename or filename}{line}: {error.msg}"
    except ValueError as error:  # null bytes, before Python 3.12
        return f"{filename}: {error}"
    return None


def _seconds(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def check_settings(frequency: object, match: object, files: Iterable[object], quiet: object,
                   watcher: object) -> None:
    """Raise ConfigError naming the first setting that is wrong."""
    if not _seconds(frequency):
        raise ConfigError(
            f"expected a number of seconds, 0 or more (0 turns autoreload off), got {frequency!r}",
            key=f"{SETTING}.frequency", value=frequency)
    if not isinstance(match, str):
        raise ConfigError(f"expected a regular expression (a string), got {match!r}",
                          key=f"{SETTING}.match", value=match)
    try:
        re.compile(match)
    except re.error as error:
        raise ConfigError(f"expected a regular expression, got {match!r} ({error})",
                          key=f"{SETTING}.match", value=match) from None
    for item in files:
        check_file_name(item)
    if not _seconds(quiet):
        raise ConfigError(f"expected a number of seconds, 0 or more, got {quiet!r}",
                          key=f"{SETTING}.quiet", value=quiet)
    if watcher != AUTO and watcher not in watchers:
        names = ", ".join(repr(name) for name in (AUTO, *watchers))
        raise ConfigError(f"expected one of {names}, got {watcher!r}",
                          key=f"{SETTING}.watcher", value=watcher)


class Autoreloader(SimplePlugin):
    """Restarts the process (by re-exec) when a watched file changes or disappears."""

    frequency: float = 1
    """Seconds between looks of the polling watcher (the others wait for events); 0: off."""

    match: str = ".*"
    """A regular expression by which to match module names (with ``re.match``)."""

    quiet: float = 0.05
    """Seconds without further changes before acting on them (one save, one reload)."""

    watcher: str = AUTO
    """The watcher backend: 'auto', or a name from ``sitebus.reload.watchers.watchers``."""

    thread: threading.Thread | None = None
    """The thread that waits for changes and acts on them."""

    fast_reload: Callable[[list[str]], bool] | None = None
    """Offered the changed files before a restart; returns True when it reloaded them
    without one (pre-fork workers replaced)."""

    def __init__(self, bus: Bus, frequency: float = 1, match: str = ".*") -> None:
        super().__init__(bus)
        self.frequency = frequency
        self.match = match
        self.thread = None
        self._watcher: Watcher | None = None
        self._finder: ImportNotifier | None = None
        self._cond = threading.Condition()  # guards the list and what is pending
        self._work = threading.RLock()  # one scan or one decision at a time
        self._stopping = False
        self._restarting = False
        self._broken: set[str] = set()  # Python files that did not compile when last checked
        self._forget()
        self.files = set()
        self.fast_reload = None
        _live_reloaders.add(self)

    # -- settings ---------------------------------------------------------------------------

    @property
    def files(self) -> WatchedFiles:
        """The set of files to watch besides the modules' files (config files, templates)."""
        return self._files

    @files.setter
    def files(self, value: Iterable[Any]) -> None:
        if isinstance(value, (str, bytes, os.PathLike)) or not isinstance(value, Iterable):
            raise ConfigError(f"expected a set of file names, got {value!r}",
                              key=f"{SETTING}.files", value=value)
        self._files = WatchedFiles(value, on_add=self._files_added)

    @property
    def mtimes(self) -> dict[str, float]:
        """Modification times of the watched files when first seen, or last acted on."""
        return self._list.mtimes

    def _check(self) -> None:
        check_settings(self.frequency, self.match, self.files, self.quiet, self.watcher)

    def subscribe(self) -> None:
        """Check the settings, then register on the bus."""
        self._check()
        super().subscribe()

    # -- the reference's public methods -----------------------------------------------------

    def sysfiles(self) -> set[str]:
        """The source files of the loaded modules that `match` selects: what a change restarts."""
        return module_files(sys.modules, self.match, module_file_base)

    def run(self) -> None:
        """Look at the watched files once, now; restart if any changed since the last look."""
        with self._work:
            self._rescan()
            with self._cond:
                pending = list(self._changed)
                self._changed.clear()
            changed = list(dict.fromkeys(pending + self._list.modified()))
            if changed:
                self._reload(changed)

    def start(self) -> None:
        """Start our own background thread, which restarts the process when files change."""
        if self.thread is not None:
            self.bus.log("Monitor thread 'Autoreloader' already started.")
            return
        self._check()
        if self.frequency <= 0:
            self.bus.log("Autoreloader off: engine.autoreload.frequency is 0.", 10)
            return
        name = choose_watcher(self.watcher, setting=f"{SETTING}.watcher")
        self._forget()
        self._stopping = self._restarting = False
        watcher = make_watcher(name, self._on_change, self._on_overflow, float(self.frequency))
        self._watcher = watcher
        try:
            self._rescan(strict=True)
        except BaseException:
            self._watcher = None
            watcher.stop()
            raise
        self.thread = threading.Thread(target=self._loop, name="Autoreloader", daemon=True)
        self.thread.start()
        self._finder = ImportNotifier(self._imported)
        sys.meta_path.insert(0, self._finder)
        self.bus.log("Started monitor thread 'Autoreloader'.")
        self.bus.log(f"Autoreloader watching {len(self._list.names)} files in "
                     f"{len(self._watching)} directories ({name}).", 10)

    start.priority = 70  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Stop watching; the threads of the plugin and its watcher have ended on return."""
        if self.thread is None:
            self.bus.log("No thread running for Autoreloader.")
            return
        finder, self._finder = self._finder, None
        if finder is not None and finder in sys.meta_path:
            sys.meta_path.remove(finder)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread, self.thread = self.thread, None
        if thread is not threading.current_thread():
            thread.join()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        self.bus.log("Stopped thread 'Autoreloader'.")

    def graceful(self) -> None:
        """Stop and start again, with the settings as they are now.

        A file that changed while the watcher was down is acted on as if just changed.
        """
        before = dict(self.mtimes)
        self.stop()
        self.start()
        with self._cond:
            missed = [real for real, name in self._list.names.items()
                      if name in before and before[name] != self.mtimes[name]]
        for real in missed:
            self._on_change(real)

    def watch(self, names: Iterable[str]) -> int:
        """Add ``names`` to ``files`` and watch them before returning; return how many are new.

        For files that another process imported (pre-fork workers report theirs).
        """
        self.files.update(names)
        return len(self._rescan())

    # -- scanning ---------------------------------------------------------------------------

    def _forget(self) -> None:
        with self._cond:
            self._list = WatchList()
            self._watching: set[str] = set()  # directories handed to the watcher
            self._changed: dict[str, None] = {}  # real paths seen changing, in order
            self._unknown: set[str] = set()  # paths that may belong to modules not scanned yet
            self._first: float | None = None  # when the first pending change came
            self._last = 0.0
            self._rescan_due = False
            self._verify_due = False
            self._modules_seen = 0

    def _rescan(self, strict: bool = False) -> list[str]:
        """Watch the files not watched yet; return their names. ``strict``: failures raise."""
        with self._work:
            self._modules_seen = len(sys.modules)
            found = self._list.unseen(self.sysfiles() | self.files.names(module_file_base))
            directories = {os.path.dirname(real) for _, real, _ in found} - self._watching
            for directory in sorted(directories):
                self._watch(directory, strict)
            with self._cond:
                self._list.add(found)
            return [name for name, _, _ in found]

    def _watch(self, directory: str, strict: bool) -> None:
        if self._watcher is None:
            return  # run() before start(): mtimes only
        try:
            self._watcher.watch(directory)
        except OSError as error:
            if not os.path.isdir(directory):
                return  # gone meanwhile
            if strict:
                raise UnavailableError(f"{SETTING}: cannot watch {directory}: "
                                       f"{limit_hint(error)}") from error
            self.bus.log(f"Autoreloader cannot watch {directory}: {limit_hint(error)}", 40)
            return
        self._watching.add(directory)

    # -- events (called in the watcher's thread, the importing thread, any thread) ----------

    def _on_change(self, path: str) -> None:
        with self._cond:
            if self._stopping or self._restarting:
                return
            affected = self._list.affected(path)
            if affected:
                self._changed.update(dict.fromkeys(affected))
            elif len(sys.modules) != self._modules_seen:
                self._unknown.add(path)
                self._rescan_due = True
            else:
                return
            self._note()

    def _imported(self) -> None:
        with self._cond:
            if not (self._stopping or self._restarting):
                self._rescan_due = True
                self._note()

    def _files_added(self) -> None:
        if self.thread is not None:
            self._imported()

    def _on_overflow(self) -> None:
        with self._cond:
            self._verify_due = True
            self._note()

    def _note(self) -> None:
        """Record that something is pending now, and wake the plugin's thread (cond held)."""
        now = time.monotonic()
        if self._first is None:
            self._first = now
        self._last = now
        self._cond.notify()

    # -- acting -----------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    if self._first is None:
                        self._cond.wait()
                        continue
                    delay = settle_delay(self._first, self._last, time.monotonic(), self.quiet)
                    if delay > 0:
                        self._cond.wait(delay)
                        continue
                    break
                changed = list(self._changed)
                unknown = self._unknown
                rescan, verify = self._rescan_due, self._verify_due
                self._changed.clear()
                self._unknown = set()
                self._rescan_due = self._verify_due = False
                self._first = None
            try:
                self._settle(changed, unknown, rescan, verify)
            except Exception:
                self.bus.log("Error in the Autoreloader thread.", 40, traceback=True)

    def _settle(self, changed: list[str], unknown: set[str], rescan: bool, verify: bool) -> None:
        with self._work:
            if rescan:
                for name in self._rescan():
                    self.bus.log(f"Autoreloader watching {name}.", 10)
                with self._cond:
                    changed += sorted(path for path in unknown if path in self._list.names)
            if verify:
                self.bus.log("Autoreloader: the kernel dropped file events; "
                             "checking every watched file.", 30)
                changed += self._list.modified()
            if changed:
                self._reload(list(dict.fromkeys(changed)))

    def _reload(self, changed: list[str]) -> None:
        """Restart for ``changed`` unless a Python file, changed or broken before, won't compile."""
        errors = []
        broken = set()
        for real in dict.fromkeys([*changed, *sorted(self._broken)]):
            if real.endswith(".py"):
                problem = self._compile(real)
                if problem is not None:
                    errors.append(problem)
                    broken.add(real)
        self._broken = broken
        with self._cond:
            self._list.refresh(changed)
        if errors:
            for problem in errors:
                self.bus.log(f"Not restarting: syntax error in {problem}", 40)
            return
        with self._cond:
            if self._stopping or self._restarting:
                return
            self._restarting = True
        for real in changed:
            _drop_bytecode(real)
        name = self._list.names.get(changed[0], changed[0])
        if self.fast_reload is not None and self.fast_reload(changed):  # it logs why
            with self._cond:
                self._restarting = False
            return
        self.bus.log(f"Restarting because {name} changed.")
        self.bus.call_in_main_thread(self._restart)

    def _compile(self, real: str) -> str | None:
        try:
            with open(real, "rb") as source:
                text = source.read()
        except OSError:
            return None  # deleted: restart, as the reference does
        return syntax_error(text, self._list.names.get(real, real))

    def _restart(self) -> None:
        """Re-execute the process, from the main thread, if the bus is still running."""
        if self.bus.state is states.STARTED:
            self.bus.restart()
        else:
            with self._cond:
                self._restarting = False


def _drop_bytecode(path: str) -> None:
    """Remove the cached bytecode of a changed module, so the new process compiles the source."""
    if not path.endswith(".py"):
        return
    try:
        os.remove(importlib.util.cache_from_source(path))
    except (OSError, ValueError, NotImplementedError):
        pass


_live_reloaders: weakref.WeakSet[Autoreloader] = weakref.WeakSet()


def _forget_in_forked_child() -> None:
    """A forked child (a pre-fork worker) has none of its parent's threads: drop the hook."""
    for reloader in list(_live_reloaders):
        finder, reloader._finder = reloader._finder, None
        if finder is not None and finder in sys.meta_path:
            sys.meta_path.remove(finder)
        reloader.thread = None
        reloader._watcher = None


os.register_at_fork(after_in_child=_forget_in_forked_child)
