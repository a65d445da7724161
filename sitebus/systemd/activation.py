"""Socket activation: the listening sockets systemd passes, and which server takes which.

systemd (or ``systemd-socket-activate``, or sitebus's own re-exec) passes listening sockets as
descriptors 3, 4, ... and says so in three variables: ``LISTEN_PID`` (which must be our pid:
the variables may have leaked from a parent), ``LISTEN_FDS`` (how many) and ``LISTEN_FDNAMES``
(colon-separated names; ``unknown`` when absent, as ``sd_listen_fds_with_names`` reports).

``parse_listen_fds`` reads them and ``assign_listeners`` decides which server takes which
socket; both are pure. ``listen_fds`` is the shell: it checks each descriptor is a listening
stream socket (TCP or UNIX) and removes the variables, so child processes never take them for
theirs. ``listen_environ`` writes the variables for the other direction, and
``hand_over_listeners`` moves the sockets into place for it, just before a re-exec. The
checks are our own rather than libsystemd's ``sd_is_socket``, so socket activation needs no
optional package at all.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from sitebus.errors import ConfigError, UnavailableError

__all__ = [
    "Claim",
    "assign_listeners",
    "check_fdname",
    "hand_over_listeners",
    "listen_environ",
    "listen_fds",
    "parse_listen_fds",
    "passed_by_systemd",
]

LISTEN_FDS_START = 3
LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
UNKNOWN_FDNAME = "unknown"
FDNAME_MAX = 255


# Sockets that systemd handed us (by device and inode): systemd already holds these, so they
# are never pushed to its file-descriptor store, where they would come back twice.
_passed_by_systemd: set[tuple[int, int]] = set()


# -- decisions -------------------------------------------------------------------------------------


def read_count(environ: Mapping[str, str], key: str, minimum: int) -> int:
    """Return ``environ[key]`` as an integer of at least ``minimum``, else a ConfigError."""
    value = environ[key]
    try:
        number = int(value, 10)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ConfigError(f"expected an integer of at least {minimum}, got {value!r}", key=key)
    return number


def parse_listen_fds(environ: Mapping[str, str], pid: int) -> list[tuple[int, str]]:
    """Return the ``(fd, name)`` pairs that systemd passed to process ``pid``, in fd order.

    Nothing was passed to us when ``LISTEN_PID`` is unset or names another process.
    """
    if "LISTEN_PID" not in environ:
        return []
    if read_count(environ, "LISTEN_PID", 1) != pid:
        return []
    count = read_count(environ, "LISTEN_FDS", 0) if "LISTEN_FDS" in environ else 0
    names_value = environ.get("LISTEN_FDNAMES")
    if names_value is None:
        names = [UNKNOWN_FDNAME] * count
    else:
        names = names_value.split(":") if count else []
        if len(names) != count or (not count and names_value):
            raise ConfigError(
                f"names {len(names_value.split(':'))} sockets ({names_value!r}) but "
                f"LISTEN_FDS={count}; expected one name per socket",
                key="LISTEN_FDNAMES",
            )
    return [(LISTEN_FDS_START + i, name) for i, name in enumerate(names)]


def check_fdname(name: str, key: str | None = None) -> str:
    """Return ``name`` if systemd accepts it as a descriptor name, else raise ConfigError."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= FDNAME_MAX
        or ":" in name
        or not all(" " <= c <= "~" for c in name)
    ):
        raise ConfigError(
            f"expected a socket name of 1 to {FDNAME_MAX} printable ASCII characters "
            f"without ':', got {name!r}",
            key=key,
            value=name,
        )
    return name


def listen_environ(names: Sequence[str], pid: int) -> dict[str, str]:
    """Return the variables that pass ``len(names)`` sockets, from fd 3, to process ``pid``."""
    for name in names:
        check_fdname(name, "LISTEN_FDNAMES")
    return {
        "LISTEN_PID": str(pid),
        "LISTEN_FDS": str(len(names)),
        "LISTEN_FDNAMES": ":".join(names),
    }


class Claim(NamedTuple):
    """What one server asks of the sockets systemd passed.

    ``fdname`` is the socket name the server's config gives (it then takes only that socket);
    without one, the server takes a socket named like itself (which is how the sockets it
    stored in the file-descriptor store come back) or else the next one in fd order.
    ``can_bind`` says the server has an address of its own for when nothing is left for it.
    """

    server: str
    fdname: str | None = None
    can_bind: bool = False


def _describe(passed: Iterable[tuple[int, str]]) -> str:
    return ", ".join(f"fd {fd} ({name!r})" for fd, name in passed) or "none"


def assign_listeners(
    passed: Sequence[tuple[int, str]], claims: Sequence[Claim]
) -> dict[str, int]:
    """Decide which passed socket each server takes: ``{server: fd}``.

    By name first (a configured ``fdname``, else the server's own name), then in fd order for
    the servers without a configured name: those with no address of their own first, so a
    server that can bind never takes the socket another one cannot live without. Servers
    absent from the result bind their own address. A server left with neither, or a socket
    left with no server, is a ConfigError naming what is missing and what is left over.
    """
    free = list(passed)
    taken: dict[str, int] = {}
    for claim in claims:
        wanted = claim.fdname or claim.server
        for item in free:
            if item[1] == wanted:
                taken[claim.server] = item[0]
                free.remove(item)
                break
    in_order = [c for c in claims if c.fdname is None and c.server not in taken]
    for claim in sorted(in_order, key=lambda c: c.can_bind):
        if free:
            taken[claim.server] = free.pop(0)[0]

    problems = []
    for claim in claims:
        if claim.server in taken or claim.can_bind:
            continue
        wants = f"the socket named {claim.fdname!r}" if claim.fdname else "a socket"
        problems.append(f"server {claim.server!r} needs {wants} and has no address of its own")
    if problems:
        problems.append(f"systemd passed: {_describe(passed)}")
    if free:
        problems.append(
            f"no server takes {_describe(free)} (of {_describe(passed)}): add a server for "
            "each, name them with FileDescriptorName=, or remove them from the socket unit "
            "(or empty the file-descriptor store with `systemctl stop`)"
        )
    if problems:
        raise ConfigError("; ".join(problems), key="LISTEN_FDS")
    return taken


# -- the shell -------------------------------------------------------------------------------------


def _listening_socket(fd: int, name: str) -> socket.socket:
    where = f"fd {fd} ({name!r}) passed by systemd"
    try:
        info = os.fstat(fd)
    except OSError as error:
        raise UnavailableError(f"{where} is not open ({error.strerror})") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(f"{where} is not a socket; expected a listening stream socket "
                          "(ListenStream= in the socket unit)", key="LISTEN_FDS")
    sock = socket.socket(fileno=fd)
    kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
    accepting = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    family = sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
    problem = None
    if family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        problem = f"is a socket of family {family}; expected TCP (IPv4, IPv6) or UNIX"
    elif kind != socket.SOCK_STREAM:
        problem = (f"is a socket of type {kind}, not a stream socket "
                   "(use ListenStream=, not ListenDatagram= or ListenSequentialPacket=)")
    elif not accepting:
        problem = "is a stream socket that is not listening (a connection, not a listener)"
    if problem:
        sock.detach()  # the descriptor stays as systemd gave it
        raise ConfigError(f"{where} {problem}", key="LISTEN_FDS")
    os.set_inheritable(fd, False)  # as sd_listen_fds does; a re-exec passes it on explicitly
    _passed_by_systemd.add((info.st_dev, info.st_ino))
    return sock


def listen_fds(unset_environment: bool = True) -> list[tuple[socket.socket, str]]:
    """Return the listening sockets systemd passed us, with their names, in fd order.

    The LISTEN_* variables are removed from the environment (unless told otherwise), whether
    or not they were meant for us, so child processes never take them for theirs.
    """
    try:
        passed = parse_listen_fds(os.environ, os.getpid())
    finally:
        if unset_environment:
            for key in LISTEN_VARIABLES:
                os.environ.pop(key, None)
    sockets: list[tuple[socket.socket, str]] = []
    try:
        for fd, name in passed:
            sockets.append((_listening_socket(fd, name), name))
    except BaseException:
        for sock, _name in sockets:
            sock.detach()
        raise
    return sockets


def passed_by_systemd(sock: socket.socket | int) -> bool:
    """Return True when ``sock`` is one of the sockets ``listen_fds`` returned."""
    try:
        info = os.fstat(sock if isinstance(sock, int) else sock.fileno())
    except OSError:
        return False
    return (info.st_dev, info.st_ino) in _passed_by_systemd


def hand_over_listeners(listeners: Mapping[int, str]) -> dict[int, str]:
    """Move ``listeners`` (``{fd: name}``) to fds 3, 4, ... and set LISTEN_* for a re-exec.

    For the last moment before ``os.execv``: whatever held those descriptors is replaced (it
    is close-on-exec anyway), so nothing may be written through them afterwards. Returns the
    new ``{fd: name}``, inheritable, for the descriptors to keep open across the exec.
    """
    names = list(listeners.values())
    environ = listen_environ(names, os.getpid())  # checks the names before anything moves
    first_free = LISTEN_FDS_START + len(names)
    # Copy every listener above the target range first, so no move overwrites another.
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, first_free) for fd in listeners]
    moved: dict[int, str] = {}
    for index, (copy, name) in enumerate(zip(copies, names, strict=True)):
        target = LISTEN_FDS_START + index
        os.dup2(copy, target, inheritable=True)
        os.close(copy)
        moved[target] = name
    os.environ.update(environ)
    return moved
