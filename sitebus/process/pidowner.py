"""Find the running site a PID file names, for ``sitebus stop/reload/restart/status``.

A PID file is only a claim: a stale file may name a process that has nothing to do with the
site (its pid reused), and whoever can write to the PID directory can make it name any
process. So the control commands signal a pid only when both checks pass:

1. **It holds the file's lock.** The site's PIDFile keeps an exclusive ``flock`` on the file
   for as long as it lives. The check opens the file, then looks through the named process's
   descriptors (``/proc/PID/fd``) for one open on the same inode (device and inode number)
   whose ``/proc/PID/fdinfo`` lists a ``FLOCK`` lock. A file nobody locks, or that another
   process locks, names no site. (``/proc/locks`` was rejected: it shows the pid that took
   the lock, which a fork keeps, and its device numbers do not always match ``stat`` on
   overlay file systems. ``F_GETLK`` and ``F_OFD_GETLK`` do not see ``flock`` locks.)
2. **It is a sitebus site.** Its command line runs the ``sitebus`` program
   (``python -m sitebus``, the console script), or the site's status file beside the PID
   file (``<pidfile>.status``, written by the site itself) names that pid.

The pid is held through a pidfd (``pidfd_open``) from before the checks until the signal,
so a process that exits meanwhile cannot hand its pid to another one that then gets the
signal; waiting for a stop blocks on the same pidfd.

Otherwise nothing is signalled and the command exits non-zero, saying what it found.
``owner_verdict`` decides from plain values; ``find_site`` gathers them from ``/proc``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
from dataclasses import dataclass
from typing import Literal

from sitebus.errors import EX_NOINPUT, EX_NOPERM, EX_UNAVAILABLE
from sitebus.process.pidfile import parse_pid, program_name
from sitebus.process.status import read_status, status_path

__all__ = ["Found", "Verdict", "owner_verdict", "holds_flock", "find_site", "SITE_PROGRAM"]

SITE_PROGRAM = "sitebus"

Kind = Literal["site", "absent", "gone", "stale", "foreign", "unknown"]


@dataclass(frozen=True)
class Verdict:
    """Whether a PID file names a running site, and what was found if not."""

    kind: Kind
    pid: int | None
    message: str

    @property
    def exit_code(self) -> int:
        """The exit code of a control command that found this (0 for a site)."""
        return {"site": 0, "absent": EX_NOINPUT, "unknown": EX_NOPERM}.get(self.kind,
                                                                           EX_UNAVAILABLE)

    @property
    def status_code(self) -> int:
        """The exit code of ``sitebus status``, as an LSB init script's ``status``."""
        return {"site": 0, "absent": 3, "gone": 3}.get(self.kind, 4)


def owner_verdict(
    path: str,
    contents: str | None,
    running: bool,
    holds_lock: bool | None,
    program: str | None,
    named_by_status: bool,
) -> Verdict:
    """Decide whether the PID file at ``path`` names a running sitebus site.

    ``contents`` is None when there is no file; ``running`` says whether the pid it names
    runs; ``holds_lock`` whether that process holds the file's lock (None: /proc would not
    say); ``program`` is the program its command line runs (None: unreadable);
    ``named_by_status`` whether the site's status file names that pid.
    """
    if contents is None:
        return Verdict("absent", None, f"no site is running: {path} does not exist")
    pid = parse_pid(contents)
    if pid is None:
        return Verdict("stale", None, f"{path} holds no process id ({contents[:40]!r}); "
                                      "nothing was signalled")
    if not running:
        return Verdict("gone", pid, f"the site is not running (pid {pid} from {path} is gone)")
    who = f"pid {pid}" + (f" ({program!r})" if program else "")
    if holds_lock is None:
        return Verdict("unknown", pid, f"cannot tell whether {who} holds the lock of {path} "
                                       "(its /proc entries are not readable: run as root or as "
                                       "the site's user); nothing was signalled")
    if not holds_lock:
        return Verdict("stale", pid, f"{path} names {who}, which does not hold the file's lock: "
                                     "a stale or forged PID file; nothing was signalled")
    if program != SITE_PROGRAM and not named_by_status:
        return Verdict("foreign", pid, f"{who} holds the lock of {path} but is not a sitebus "
                                       "site (neither its command line nor the site's status "
                                       "file say so); nothing was signalled")
    return Verdict("site", pid, f"{who} is the site of {path}")


def holds_flock(fdinfo: str) -> bool:
    """Return True if a ``/proc/PID/fdinfo/N`` text lists an exclusive ``flock`` lock."""
    for line in fdinfo.splitlines():
        name, _, value = line.partition(":")
        if name == "lock" and "FLOCK" in value.split() and "WRITE" in value.split():
            return True
    return False


def _holds_lock_on(pid: int, device: int, inode: int) -> bool | None:
    """Return whether ``pid`` has (device, inode) open with a flock on it; None if unreadable."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    except PermissionError:
        return None
    for name in names:
        try:
            info = os.stat(f"/proc/{pid}/fd/{name}")
            if (info.st_dev, info.st_ino) != (device, inode):
                continue
            with open(f"/proc/{pid}/fdinfo/{name}", encoding="ascii", errors="replace") as f:
                if holds_flock(f.read()):
                    return True
        except OSError:
            continue  # closed meanwhile, or a descriptor stat cannot follow
    return False


def _program(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    args = [arg.decode("utf-8", "replace") for arg in raw.split(b"\0") if arg]
    return program_name(args) if args else None


def _running(pid: int) -> bool:
    """True while ``pid`` runs; a zombie has stopped."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@dataclass
class Found:
    """What ``find_site`` found: the verdict and, for a site, a pidfd that holds on to it."""

    verdict: Verdict
    pidfd: int | None = None
    device: int = 0
    inode: int = 0

    def send(self, signum: int) -> None:
        """Signal the site through its pidfd (or its pid where pidfds do not exist)."""
        assert self.verdict.pid is not None
        if self.pidfd is not None:
            signal.pidfd_send_signal(self.pidfd, signum)
        else:
            os.kill(self.verdict.pid, signum)

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the site to exit; True if it did."""
        assert self.verdict.pid is not None
        if self.pidfd is not None:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            return bool(poller.poll(max(0, int(timeout * 1000))))
        return not _running(self.verdict.pid)

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def find_site(path: str) -> Found:
    """Return what the PID file at ``path`` names; ``verdict.kind == 'site'`` to signal it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return Found(owner_verdict(path, None, False, None, None, False))
    except OSError as error:
        return Found(Verdict("unknown", None, f"cannot read {path}: {error.strerror}"))
    try:
        contents = os.pread(fd, 4096, 0).decode("ascii", errors="replace")
        info = os.fstat(fd)
    finally:
        os.close(fd)
    pid = parse_pid(contents)
    if pid is None:
        return Found(owner_verdict(path, contents, False, None, None, False))
    pidfd = None
    with contextlib.suppress(ProcessLookupError, OSError, AttributeError):
        pidfd = os.pidfd_open(pid)
    running = _running(pid)
    holds = _holds_lock_on(pid, info.st_dev, info.st_ino) if running else False
    named = (read_status(status_path(path)) or {}).get("pid") == pid
    verdict = owner_verdict(path, contents, running, holds, _program(pid), named)
    if verdict.kind != "site" and pidfd is not None:
        os.close(pidfd)
        pidfd = None
    return Found(verdict, pidfd, info.st_dev, info.st_ino)


def remove_if_left(path: str, found: Found) -> bool:
    """After the site exited, remove its PID file and status file if it could not.

    A site that dropped privileges cannot remove files from a PID directory it may no longer
    write to; the control command (often root) does it, for the same file only: the same
    inode, still naming the pid, and unlocked.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (found.device, found.inode):
            return False
        if parse_pid(os.pread(fd, 4096, 0).decode("ascii", "replace")) != found.verdict.pid:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a new instance holds it now
        os.unlink(path)
    except OSError:
        return False
    finally:
        os.close(fd)
    status = status_path(path)
    if (read_status(status) or {}).get("pid") == found.verdict.pid:
        with contextlib.suppress(OSError):
            os.unlink(status)
    return True
