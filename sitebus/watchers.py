"""File-system watchers for the Autoreloader, on watchdog: events from the kernel, no polling.

A watcher watches directories, not single files, so that a save which renames a new file over
the old one is seen. From a thread of its own it calls ``on_change(path)`` with the path of
every entry of a watched directory that is created, written, closed after writing, re-moded,
deleted or renamed (both names of a rename), and with the directory's own path when the
directory itself is deleted or moved. It reports no reads: IN_OPEN and IN_CLOSE_NOWRITE are not
even asked of the kernel, so an application that reads files next to its modules wakes nothing.
``on_overflow()`` is called when the kernel dropped events. ``start()``, then ``watch(dir)``
any number of times, then ``stop()``, which returns once the watcher's threads have ended.

The backends, by name in ``watchers``; ``engine.autoreload.watcher`` picks one, and ``'auto'``
takes the first available in this order:

- ``inotify`` (Linux, watchdog 7.1 or newer): a thin shell over watchdog's ``InotifyFD``, one
  thread blocked in poll(2) on the inotify descriptor and a wake-up pipe. Idle, it makes no
  wake-ups; ``stop()`` writes to the pipe. Chosen over watchdog's ``InotifyObserver``, which runs
  a dispatcher thread plus one emitter thread per watched directory, and holds each IN_MOVED_FROM
  up to 0.5 s to pair it with its IN_MOVED_TO: when its emitter sees the unpaired half first it
  sleeps the delay out, so a save-by-rename was reported 0.5 s late in one save out of five when
  threads contend (measured). The Autoreloader needs no pairing: each half names a path it
  looks up.
- ``observer``: watchdog's own ``Observer`` for the platform (FSEvents, kqueue, the Windows API;
  on Linux with an older watchdog, its InotifyObserver).
- ``polling``: watchdog's ``PollingObserver``, which lists and stats each watched directory
  every ``frequency`` seconds: for file systems that send no events (NFS, some container
  mounts). Only this one wakes up while idle.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import Any, Protocol

from sitebus.errors import ConfigError, UnavailableError

__all__ = [
    "Watcher",
    "InotifyWatcher",
    "ObserverWatcher",
    "PollingWatcher",
    "watchers",
    "AUTO",
    "choose_watcher",
    "unavailable_reason",
    "make_watcher",
]

AUTO = "auto"

OnChange = Callable[[str], None]
OnOverflow = Callable[[], None]


class Watcher(Protocol):
    """What the Autoreloader needs of a backend."""

    def start(self) -> None: ...

    def watch(self, directory: str) -> None: ...

    def stop(self) -> None: ...


class InotifyWatcher:
    """inotify(7) through watchdog's InotifyFD: one thread, blocked until something changes."""

    name = "inotify"

    def __init__(self, on_change: OnChange, on_overflow: OnOverflow, frequency: float) -> None:
        from watchdog.observers.inotify_c import CallbackId, InotifyFD, Mask
        from watchdog.observers.inotify_c import InotifyConstants as C

        self._on_change = on_change
        self._on_overflow = on_overflow
        self._mask = Mask(
            C.IN_MODIFY | C.IN_ATTRIB | C.IN_CLOSE_WRITE | C.IN_CREATE | C.IN_DELETE
            | C.IN_MOVED_FROM | C.IN_MOVED_TO | C.IN_DELETE_SELF | C.IN_MOVE_SELF | C.IN_ONLYDIR
        )
        self._id = CallbackId(id(self))
        self._self_events = C.IN_DELETE_SELF | C.IN_MOVE_SELF
        self._directories: dict[int, str] = {}
        self._fd = InotifyFD()  # a private instance: its thread and its watches are ours
        self._fd.name = "Autoreloader inotify"
        # inotify_init() (through ctypes) makes an inheritable descriptor; PEP 446 says none
        # should be. Best effort: the attribute is watchdog's.
        descriptor = getattr(self._fd, "_inotify_fd", None)
        if isinstance(descriptor, int):
            os.set_inheritable(descriptor, False)

    def start(self) -> None:
        self._fd.start()

    def watch(self, directory: str) -> None:
        wd = self._fd.add_callback(os.fsencode(directory), self._mask, self, self._id)
        self._directories[wd] = directory

    def stop(self) -> None:
        self._fd.stop()  # removes the watches and writes to the wake-up pipe
        if self._fd.is_alive():
            self._fd.join()

    # watchdog's WatchCallback protocol, called in the InotifyFD thread.

    def on_event(self, event: Any) -> None:
        directory = self._directories.get(event.wd)
        if directory is None:
            return
        if event.name:
            self._on_change(os.path.join(directory, os.fsdecode(event.name)))
        elif event.mask & self._self_events:
            self._on_change(directory)

    def on_watch_deleted(self, wd: int) -> None:
        self._directories.pop(wd, None)

    def on_queue_overflow(self) -> None:
        self._on_overflow()


class _Dispatch:
    """An event handler for watchdog observers that passes changed paths on."""

    ignored = frozenset({"opened", "closed_no_write"})
    directory_changes = frozenset({"deleted", "moved"})

    def __init__(self, on_change: OnChange) -> None:
        self.on_change = on_change

    def dispatch(self, event: Any) -> None:
        if event.event_type in self.ignored:
            return
        if event.is_directory and event.event_type not in self.directory_changes:
            return  # a directory's own 'modified' comes with every change of an entry
        self.on_change(os.fsdecode(event.src_path))
        dest = getattr(event, "dest_path", "")
        if dest:
            self.on_change(os.fsdecode(dest))


class ObserverWatcher:
    """watchdog's Observer for this platform: a dispatcher thread and one emitter per directory."""

    name = "observer"

    def __init__(self, on_change: OnChange, on_overflow: OnOverflow, frequency: float) -> None:
        import watchdog.events as events

        self._handler = _Dispatch(on_change)
        self._observer = self._make_observer(frequency)
        self._observer.name = f"Autoreloader {self.name}"
        # Without a filter watchdog asks inotify for opens and reads too, and every process
        # that reads a file in a watched directory (the standard library's) wakes us: 6475
        # context switches in 10 s of idling here, against 0 with it. Older watchdogs lack
        # some of these classes, or the filter itself (see watch()).
        wanted = ("FileModifiedEvent", "FileAttribEvent", "FileCreatedEvent", "FileDeletedEvent",
                  "FileMovedEvent", "FileClosedEvent", "DirDeletedEvent", "DirMovedEvent")
        self._filter = [getattr(events, name) for name in wanted if hasattr(events, name)]

    def _make_observer(self, frequency: float) -> Any:
        from watchdog.observers import Observer

        return Observer()

    def start(self) -> None:
        self._observer.start()

    def watch(self, directory: str) -> None:
        try:
            self._observer.schedule(self._handler, directory, recursive=False,
                                    event_filter=self._filter)
        except TypeError:  # watchdog older than 4
            self._observer.schedule(self._handler, directory, recursive=False)

    def stop(self) -> None:
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join()


class PollingWatcher(ObserverWatcher):
    """watchdog's PollingObserver: stats each watched directory every ``frequency`` seconds."""

    name = "polling"

    def _make_observer(self, frequency: float) -> Any:
        from watchdog.observers.polling import PollingObserver

        return PollingObserver(timeout=frequency)


WatcherFactory = Callable[[OnChange, OnOverflow, float], Watcher]

watchers: dict[str, WatcherFactory] = {
    "inotify": InotifyWatcher,
    "observer": ObserverWatcher,
    "polling": PollingWatcher,
}
"""The watcher backends by name, in the order ``'auto'`` tries them."""


def unavailable_reason(name: str) -> str | None:
    """Return why the backend ``name`` cannot run here, or None when it can."""
    try:
        from watchdog.version import VERSION_INFO, VERSION_STRING
    except ImportError:
        return "the watchdog package is not installed (pip install watchdog)"
    if name == "inotify":
        if not sys.platform.startswith("linux"):
            return f"inotify needs Linux, this is {sys.platform}"
        if tuple(VERSION_INFO[:2]) < (7, 1):
            return f"needs watchdog 7.1 or newer, this is watchdog {VERSION_STRING}"
        try:
            from watchdog.observers.inotify_c import InotifyFD  # noqa: F401
        except Exception as error:  # UnsupportedLibcError, OSError from ctypes
            return f"watchdog cannot use inotify here ({error})"
        return None
    try:
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver
    except Exception as error:
        return f"watchdog's observers fail to load ({error})"
    if name == "observer" and Observer is PollingObserver:
        return "watchdog has no native observer for this platform"
    return None


def choose_watcher(requested: object, reason_of: Callable[[str], str | None] = unavailable_reason,
                   setting: str = "engine.autoreload.watcher") -> str:
    """Return the backend to use for ``requested`` ('auto' or a name).

    ``reason_of(name)`` says why a backend cannot run here (None: it can); it is asked only
    about the backends needed, since asking imports them. Raises ConfigError for an unknown
    name, UnavailableError when the backend cannot run here.
    """
    if requested == AUTO:
        reasons = {}
        for name in watchers:
            reasons[name] = reason_of(name)
            if reasons[name] is None:
                return name
        details = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
        raise UnavailableError(f"{setting}: no file watcher can run here ({details})")
    if not isinstance(requested, str) or requested not in watchers:
        names = ", ".join(repr(name) for name in (AUTO, *watchers))
        raise ConfigError(f"expected one of {names}, got {requested!r}", key=setting)
    reason = reason_of(requested)
    if reason is not None:
        usable = [name for name in watchers if name != requested and reason_of(name) is None]
        hint = f"; available here: {', '.join(map(repr, usable))}" if usable else ""
        raise UnavailableError(f"{setting}: {requested!r} cannot run here: {reason}{hint}")
    return requested


def make_watcher(name: str, on_change: OnChange, on_overflow: OnOverflow,
                 frequency: float) -> Watcher:
    """Create and start the backend ``name``; a kernel limit becomes an UnavailableError."""
    try:
        watcher = watchers[name](on_change, on_overflow, frequency)
        watcher.start()
    except OSError as error:
        raise UnavailableError(f"cannot start the {name} file watcher: {limit_hint(error)}") \
            from error
    return watcher


def limit_hint(error: OSError) -> str:
    """Describe an inotify error, naming the kernel limit to raise when one was hit."""
    if error.errno == errno.ENOSPC:
        return (f"{error.strerror} (raise the sysctl fs.inotify.max_user_watches, or set "
                "engine.autoreload.watcher = 'polling')")
    if error.errno == errno.EMFILE:
        return (f"{error.strerror} (raise the sysctl fs.inotify.max_user_instances, or set "
                "engine.autoreload.watcher = 'polling')")
    return str(error)

