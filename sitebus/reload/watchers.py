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
takes the first available in this order. Only public watchdog names are used (``Observer``,
``PollingObserver``, the event classes).

- ``inotify`` (Linux): a thin shell over inotify(7), called through ctypes: one thread blocked
  in poll(2) on the inotify descriptor and a wake-up pipe. Idle, it makes no wake-ups; ``stop()``
  writes to the pipe. Chosen over watchdog's ``InotifyObserver``, which holds each IN_MOVED_FROM
  up to 0.5 s to pair it with its IN_MOVED_TO, so a save-by-rename was reported 0.5 s late in one
  save out of five when threads contend (measured); the Autoreloader needs no pairing, as each
  half names a path it looks up. It was once built on watchdog's ``InotifyFD``, which is not
  part of watchdog's public API and changed under us in 7.1.1; the kernel interface is stable,
  three calls and one struct, so it is used directly.
- ``observer``: watchdog's own ``Observer`` for the platform (inotify, FSEvents, kqueue, the
  Windows API).
- ``polling``: watchdog's ``PollingObserver``, which lists and stats each watched directory
  every ``frequency`` seconds: for file systems that send no events (NFS, some container
  mounts). Only this one wakes up while idle.
"""

from __future__ import annotations

import errno
import os
import select
import struct
import sys
import threading
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
    """inotify(7) through libc by ctypes: one thread, blocked in poll(2) until a change."""

    name = "inotify"

    def __init__(self, on_change: OnChange, on_overflow: OnOverflow, frequency: float) -> None:
        self._on_change = on_change
        self._on_overflow = on_overflow
        self._libc = _libc()
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _errno_error("inotify_init1")
        self._fd = fd
        self._wake_read, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._directories: dict[int, str] = {}
        self._thread = threading.Thread(target=self._run, name="Autoreloader inotify",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, directory: str) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(directory), WATCHED_EVENTS)
        if wd < 0:
            raise _errno_error(f"inotify_add_watch({directory!r})")
        self._directories[wd] = directory

    def stop(self) -> None:
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join()
        for fd in (self._fd, self._wake_read, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass
        self._fd = self._wake_read = self._wake_write = -1

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_read in ready:
                return
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            for wd, mask, name in parse_events(data):
                self._dispatch(wd, mask, name)

    def _dispatch(self, wd: int, mask: int, name: bytes) -> None:
        if mask & IN_Q_OVERFLOW:
            self._on_overflow()
            return
        directory = self._directories.get(wd)
        if directory is None:
            return
        if mask & IN_IGNORED:  # the watch is gone (directory deleted, unmounted)
            del self._directories[wd]
        elif name:
            self._on_change(os.path.join(directory, os.fsdecode(name)))
        elif mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            self._on_change(directory)


# inotify(7) constants, from <sys/inotify.h>.
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
IN_CLOEXEC = os.O_CLOEXEC
IN_NONBLOCK = os.O_NONBLOCK
WATCHED_EVENTS = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM
                  | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
"""What a watch asks of the kernel: changes only, never opens or reads (IN_OPEN, IN_ACCESS,
IN_CLOSE_NOWRITE), so an application that reads files next to its modules wakes nothing."""

_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


def parse_events(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split what read(2) returned from an inotify descriptor into (wd, mask, name) events."""
    events = []
    offset = 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
        offset += _EVENT.size
        name = data[offset:offset + length].rstrip(b"\0")
        offset += length
        events.append((wd, mask, name))
    return events


def _libc() -> Any:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return libc


def _errno_error(call: str) -> OSError:
    import ctypes

    number = ctypes.get_errno()
    return OSError(number, f"{call}: {os.strerror(number)}")


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
    if name == "inotify":
        if not sys.platform.startswith("linux"):
            return f"inotify needs Linux, this is {sys.platform}"
        try:
            libc = _libc()
            libc.inotify_init1  # noqa: B018 (a C library without it raises AttributeError)
        except (OSError, AttributeError) as error:
            return f"the C library offers no inotify ({error})"
        return None
    try:
        import watchdog  # noqa: F401
    except ImportError:
        return "the watchdog package is not installed (pip install watchdog)"
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

