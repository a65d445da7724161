"""The notify protocol: one datagram to NOTIFY_SOCKET per message, descriptors attached.

``notify`` sends ``KEY=value`` lines (``notify_message`` formats them) to the socket that
NOTIFY_SOCKET names: a path, or ``@name`` in the abstract namespace. It uses systemd-python's
``systemd.daemon.notify`` when installed (which passes descriptors too, and knows every address
kind systemd may use), and a few lines of standard library otherwise, so nothing breaks where
libsystemd's headers are missing. ``prefer_systemd_python = False`` (or the environment variable
``SITEBUS_SYSTEMD_PYTHON=0``) forces the standard-library path. Without NOTIFY_SOCKET nothing
is sent: the site is not run by systemd.

``store_fds`` pushes sockets to the unit's file-descriptor store (FDSTORE=1, FDNAME=), from
which systemd passes them back under their names when the service starts again.
``watchdog_interval`` reads WATCHDOG_USEC and WATCHDOG_PID.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sitebus.errors import UnavailableError
from sitebus.systemd.activation import check_fdname, read_count

__all__ = [
    "fdstore_enabled",
    "monotonic_usec",
    "notify",
    "notify_address",
    "notify_message",
    "store_fds",
    "watchdog_interval",
]

prefer_systemd_python = os.environ.get("SITEBUS_SYSTEMD_PYTHON", "1") != "0"
"""Use systemd-python when it is installed; False forces the standard-library protocol."""


_FIELD = re.compile(r"[A-Z][A-Z0-9_]*")


def notify_message(**fields: object) -> str:
    """Return a notify datagram's text: one ``KEY=value`` line per field, in the order given."""
    lines = []
    for key, value in fields.items():
        if not _FIELD.fullmatch(key):
            raise ValueError(f"notify field names are upper case, got {key!r}")
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        if "\n" in text:
            raise ValueError(f"notify field {key} must be one line, got {text!r}")
        lines.append(f"{key}={text}")
    return "\n".join(lines)


def notify_address(value: str) -> str:
    """Return the socket address NOTIFY_SOCKET names: a path, or ``@name`` (abstract)."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    raise UnavailableError(
        f"NOTIFY_SOCKET: expected an absolute path or an @abstract name, got {value!r} "
        "(systemd-python reaches the other kinds: pip install sitebus[systemd])"
    )


def systemd_daemon() -> Any:
    """Return systemd-python's ``systemd.daemon`` when installed and preferred, else None."""
    if not prefer_systemd_python:
        return None
    try:
        import systemd.daemon  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return systemd.daemon


def _fd_numbers(fds: Iterable[socket.socket | int]) -> list[int]:
    return [fd if isinstance(fd, int) else fd.fileno() for fd in fds]


def notify(message: str, fds: Iterable[socket.socket | int] = ()) -> bool:
    """Send ``message`` (and ``fds``) to systemd; return False when NOTIFY_SOCKET is unset.

    Raises OSError when the notify socket cannot be reached.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    numbers = _fd_numbers(fds)
    daemon = systemd_daemon()
    if daemon is not None:
        if numbers:
            return bool(daemon.notify(message, fds=numbers))
        return bool(daemon.notify(message))
    data = message.encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        # Connected first: socket.send_fds ignores its address argument (seen in CPython 3.11).
        sock.connect(notify_address(address))
        if numbers:
            socket.send_fds(sock, [data], numbers)
        else:
            sock.send(data)
    return True


def store_fds(sockets_by_name: Mapping[str, socket.socket | int]) -> int:
    """Push sockets to systemd's file-descriptor store (FDSTORE=1, FDNAME=); return how many.

    The unit needs FileDescriptorStoreMax=; the sockets come back in LISTEN_FDS, under their
    names, when the service starts again.
    """
    stored = 0
    for name, sock in sockets_by_name.items():
        check_fdname(name, "FDNAME")
        if notify(notify_message(FDSTORE=1, FDNAME=name), fds=[sock]):
            stored += 1
    return stored


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Return the seconds between watchdog pings (half of WATCHDOG_USEC), or None for none."""
    if not environ.get("WATCHDOG_USEC"):
        return None
    if environ.get("WATCHDOG_PID") and read_count(environ, "WATCHDOG_PID", 1) != pid:
        return None
    return read_count(environ, "WATCHDOG_USEC", 1) / 2_000_000


def monotonic_usec() -> int:
    """Return CLOCK_MONOTONIC in microseconds, as RELOADING=1's MONOTONIC_USEC wants it."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def fdstore_enabled(environ: Mapping[str, str]) -> bool:
    """Return True when systemd says the unit has a file-descriptor store ($FDSTORE, v254+)."""
    value = environ.get("FDSTORE", "")
    return value.isdigit() and int(value) > 0
