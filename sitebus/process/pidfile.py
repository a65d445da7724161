"""PIDFile: the process id in a file while the site lives, locked, never written over a live owner.

The file holds ``<pid>\\n`` and nothing else, so ``kill $(cat site.pid)``, systemd's
``PIDFile=`` and supervisors read it as they read any PID file.

Writing. The pid goes into a temporary file next to the target, which is locked (``flock``,
exclusive, on a read-only descriptor: the writable one is closed at once, so no descriptor
that could change the file survives a privilege drop) before it gets its final name:
``link()`` when no file exists (it fails if another process created one meanwhile),
``rename()`` over a stale one. A reader therefore sees either
the old file or the complete new one, and the name never points at an unlocked file of ours. (So
``/proc/PID/fd`` shows the lock's descriptor under the temporary name, "deleted"; ``lsof`` and
``fuser`` given the PID file's path find it, as they match the inode.)

Ownership. The lock is held by a descriptor that stays open while the process lives, so the
kernel releases it when the process dies, however it dies. A start first locks the existing
file, then checks that the name still points at the file it locked (another starter may have
replaced it meanwhile; then it starts over), then decides with ``pidfile_verdict``:

- the lock is held by someone else: a live owner. Refuse with ``TemporaryError`` (75).
- the file names our own pid: ours (a restart, see below). Keep it, keep the lock.
- the named process is not running, or was started after the file was written (its pid was
  reused), or now runs another program (psutil's command line): stale. Replace it, logged.
- the named process runs the same program and was started before the file was written, but
  holds no lock: an owner between re-execution and re-locking, or one that writes PID files
  without locking. Refuse, as for a live owner.

Restart. ``bus.restart()`` keeps the pid, so the exit listener leaves the file in place and
the new process image locks it again: its verdict is "ours". The lock itself does not cross
``execv`` (its descriptor is close-on-exec). Keeping it open through ``bus.inherit_fds`` was
rejected: the bus hands those descriptors to the new image as listening sockets
(``LISTEN_FDS``), and a new image without a PID file would hold the lock forever. During the
short gap a second instance sees an unlocked file naming a live process of the same program,
started before the file was written, and refuses; if such a starter holds the lock for a
moment while deciding, the restarted image waits for it briefly.

Exit. The file is removed only if the name still points at our locked file and it still
holds our pid; a file someone else wrote is left alone. Forked children (workers) close
their copy of the descriptor, so the lock dies with this process, not with its children.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import psutil

from sitebus.bus import Bus
from sitebus.errors import CannotCreateError, ConfigError, TemporaryError
from sitebus.plugins import SimplePlugin

__all__ = ["PIDFile", "ProcessInfo", "Verdict", "pidfile_verdict", "program_name", "parse_pid"]

CONFIG_KEY = "engine.pidfile.pidfile"

REUSE_SLACK = 1.0
"""Seconds of clock granularity allowed between a process's start and the file's mtime."""

CONTENDED_TRIES = 40
CONTENDED_WAIT = 0.05
"""How long (tries x seconds) a restarted image waits for a starter that holds its file's lock."""

Kind = Literal["absent", "ours", "contended", "live", "stale"]


@dataclass(frozen=True)
class ProcessInfo:
    """What psutil says about the process a PID file names."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...] | None  # None when the command line cannot be read
    running: bool  # False for a zombie


@dataclass(frozen=True)
class Verdict:
    """What to do with an existing PID file, and why."""

    kind: Kind
    pid: int | None
    reason: str


def parse_pid(contents: str) -> int | None:
    """Return the pid on the first line of ``contents``, or None if there is no valid one."""
    lines = contents.strip().splitlines()
    if not lines or not re.fullmatch(r"\d{1,10}", lines[0].strip()):
        return None
    pid = int(lines[0])
    return pid if pid > 0 else None


_PYTHON = re.compile(r"(python|pypy)[\d.]*[a-z]*(\.exe)?")
_OPTIONS_WITH_VALUE = "mcWX"
_LONG_OPTIONS_WITH_VALUE = ("--check-hash-based-pycs",)


def _script_name(path: str) -> str:
    name = os.path.basename(path.rstrip("/"))
    return name[:-3] if name.endswith(".py") else name


def program_name(cmdline: Sequence[str]) -> str:
    """Return the program a command line runs: a script's name, a ``-m`` package, an executable.

    ``python3 -m sitebus run``, ``/usr/bin/python3.11 /usr/local/bin/sitebus run`` (a console
    script as the kernel runs it) and ``sitebus run`` all give ``'sitebus'``; the interpreter
    and its options do not count.
    """
    if not cmdline:
        return ""
    executable = os.path.basename(cmdline[0])
    if not _PYTHON.fullmatch(executable):
        return _script_name(cmdline[0])
    args = list(cmdline[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            return _script_name(args[i]) if i < len(args) else executable
        if arg.startswith("--"):
            if arg in _LONG_OPTIONS_WITH_VALUE:
                i += 1
            continue
        if not arg.startswith("-") or arg == "-":
            return _script_name(arg)
        letters = arg[1:]
        for j, letter in enumerate(letters):
            if letter not in _OPTIONS_WITH_VALUE:
                continue
            value = letters[j + 1 :]
            if not value and i < len(args):
                value = args[i]
                i += 1
            if letter == "m":
                return value.split(".")[0]
            if letter == "c":
                return "-c"
            break  # -W and -X take a value; no program there
    return executable


def pidfile_verdict(
    contents: str | None,
    process: ProcessInfo | None,
    our_pid: int,
    our_program: str,
    written_at: float,
    locked: bool,
) -> Verdict:
    """Decide what an existing PID file means for a process that wants to write it.

    ``contents`` is None when there is no file; ``process`` describes the pid it names (None
    if no such process); ``written_at`` is the file's mtime; ``locked`` says whether another
    open file holds the lock.
    """
    if contents is None:
        return Verdict("absent", None, "there is no PID file")
    pid = parse_pid(contents)
    if pid == our_pid:
        if locked:
            return Verdict("contended", pid, f"it names this process ({pid}) but is locked")
        return Verdict("ours", pid, f"it already names this process ({pid})")
    if locked:
        if pid is None or process is None or not process.running:
            return Verdict("live", pid, "another process holds its lock")
        return Verdict("live", pid, f"process {pid} holds its lock")
    if pid is None:
        return Verdict("stale", None, f"it holds no process id ({contents[:40]!r})")
    if process is None or not process.running:
        return Verdict("stale", pid, f"process {pid} is not running")
    if process.create_time > written_at + REUSE_SLACK:
        return Verdict("stale", pid, f"process {pid} started after the file was written")
    if process.cmdline is None:
        return Verdict("live", pid, f"process {pid} is running (its command line is unreadable)")
    theirs = program_name(process.cmdline)
    if theirs != our_program:
        return Verdict("stale", pid, f"process {pid} now runs another program ({theirs!r})")
    return Verdict("live", pid, f"process {pid} ({theirs!r}) is running")


def process_info(pid: int) -> ProcessInfo | None:
    """Ask psutil about ``pid``; None if there is no such process."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            running = process.status() != psutil.STATUS_ZOMBIE
            created = process.create_time()
            try:
                cmdline: tuple[str, ...] | None = tuple(process.cmdline())
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cmdline = None
    except psutil.NoSuchProcess:
        return None
    return ProcessInfo(pid, created, cmdline, running)


def validated_path(value: object) -> str:
    """Return the absolute path ``engine.pidfile.pidfile`` names, or raise ConfigError."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"expected the path of a file, got {value!r}", key=CONFIG_KEY, value=value
        )
    path = os.path.abspath(value)
    if os.path.isdir(path):
        raise ConfigError(
            f"expected the path of a file, got {value!r}, which is a directory",
            key=CONFIG_KEY,
            value=value,
        )
    return path


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: str) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _cannot_create(path: str, error: OSError) -> CannotCreateError:
    reason = error.strerror or str(error)
    return CannotCreateError(f"{CONFIG_KEY}: cannot write the PID file {path!r}: {reason}")


def _locked_temporary(path: str, pid: int) -> tuple[int, str]:
    """Create a locked file holding ``pid`` in the directory of ``path``; return (fd, name).

    The descriptor returned, which holds the lock for the life of the process, is read-only:
    the one that wrote the pid is closed, so after a privilege drop the process has no way
    left to change the file (it belongs to the user who started the site, mode 0644).
    """
    directory, name = os.path.split(path)
    try:
        writer, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise _cannot_create(path, error) from error
    fd = None
    try:
        os.write(writer, f"{pid}\n".encode())
        os.fchmod(writer, 0o644)
        fd = os.open(temporary, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        held, written = os.fstat(fd), os.fstat(writer)
        if (held.st_dev, held.st_ino) != (written.st_dev, written.st_ino):
            raise OSError(0, "the temporary file was replaced while it was written")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if fd is not None:
            os.close(fd)
        os.unlink(temporary)
        raise _cannot_create(path, error) from error
    finally:
        os.close(writer)
    return fd, temporary


def _install(path: str, pid: int, replace: bool) -> int | None:
    """Give a new locked file holding ``pid`` the name ``path``; None if one appeared meanwhile."""
    fd, temporary = _locked_temporary(path, pid)
    try:
        if replace:
            os.rename(temporary, path)
        else:
            os.link(temporary, path)
            os.unlink(temporary)
    except FileExistsError:
        os.close(fd)
        os.unlink(temporary)
        return None
    except OSError as error:
        os.close(fd)
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise _cannot_create(path, error) from error
    return fd


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode("ascii", errors="replace")


_live_plugins: weakref.WeakSet[PIDFile] = weakref.WeakSet()


class PIDFile(SimplePlugin):
    """Writes the process id to a file while the bus runs, and removes it at exit."""

    pidfile: object
    """The path of the PID file (``engine.pidfile.pidfile``), preferably absolute."""

    finalized: bool
    """True once this process holds the file."""

    def __init__(self, bus: Bus, pidfile: object) -> None:
        super().__init__(bus)
        self.pidfile = pidfile
        self.finalized = False
        self._fd: int | None = None
        self._path: str | None = None
        self._owner: int | None = None
        _live_plugins.add(self)

    def start(self) -> None:
        """Write and lock the PID file, or refuse to start over a live owner."""
        pid = os.getpid()
        if self.finalized and self._owner == pid:
            self.bus.log(f"PID {pid!r} already written to {self._path!r}.")
            return
        path = validated_path(self.pidfile)
        fd, verdict = self._acquire(path, pid)
        self._fd, self._path, self._owner = fd, path, pid
        self.finalized = True
        if verdict.kind == "ours":
            self.bus.log(f"PID {pid!r} already written to {path!r}; locked it again.")
        else:
            self.bus.log(f"PID {pid!r} written to {path!r}.")

    start.priority = 70  # type: ignore[attr-defined]

    def exit(self) -> None:
        """Remove the PID file if it is still ours; keep it when the process restarts."""
        fd, path = self._fd, self._path
        if fd is None or path is None or self._owner != os.getpid():
            return
        if self.bus.execv:
            # The descriptor closes at execv; the new image finds its own pid and locks again.
            self.bus.log(f"PID file kept for the restart: {path!r}.")
            return
        try:
            if _same_file(fd, path) and parse_pid(_read(fd)) == self._owner:
                os.unlink(path)
                self.bus.log(f"PID file removed: {path!r}.")
            else:
                self.bus.log(
                    f"PID file {path!r} no longer holds PID {self._owner}; left alone.", 30
                )
        except OSError as error:
            self.bus.log(f"Could not remove PID file {path!r}: {error.strerror or error}. "
                         "`sitebus stop` removes it; so that the site can, make its directory "
                         "writable by the user the site runs as.", 30)
        finally:
            self._release()

    def _release(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None
        self.finalized = False

    def _acquire(self, path: str, pid: int) -> tuple[int, Verdict]:
        """Return a locked descriptor of the file at ``path`` holding ``pid``, and the verdict."""
        our_program = program_name(psutil.Process(pid).cmdline())
        for _ in range(CONTENDED_TRIES):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                created = _install(path, pid, replace=False)
                if created is not None:
                    return created, Verdict("absent", None, "there was no PID file")
                continue  # another starter created it first: judge theirs
            except OSError as error:
                raise _cannot_create(path, error) from error
            keep = False
            try:
                locked = not _try_lock(fd)
                if not _same_file(fd, path):
                    continue  # replaced or removed while we looked: look again
                contents = _read(fd)
                named = parse_pid(contents)
                info = process_info(named) if named is not None and named != pid else None
                verdict = pidfile_verdict(
                    contents, info, pid, our_program, os.fstat(fd).st_mtime, locked
                )
                if verdict.kind == "ours":
                    keep = True
                    return fd, verdict
                if verdict.kind == "contended":
                    time.sleep(CONTENDED_WAIT)  # a starter is judging our file; it lets go soon
                    continue
                if verdict.kind == "live":
                    raise TemporaryError(
                        f"PID file {path!r} belongs to a running instance: {verdict.reason}. "
                        f"Stop that instance first, or set {CONFIG_KEY} to another file."
                    )
                self.bus.log(f"Replacing stale PID file {path!r}: {verdict.reason}.", 30)
                replaced = _install(path, pid, replace=True)
                assert replaced is not None
                return replaced, verdict
            finally:
                if not keep:
                    os.close(fd)
        raise TemporaryError(
            f"PID file {path!r} kept changing or stayed locked while this process "
            f"(PID {pid}) tried to take it; is another instance starting?"
        )


def _close_in_forked_child() -> None:
    """A forked child must not keep its parent's PID file lock alive."""
    for plugin in list(_live_plugins):
        if plugin._fd is not None:
            try:
                os.close(plugin._fd)
            except OSError:
                pass
            plugin._fd = None


os.register_at_fork(after_in_child=_close_in_forked_child)
