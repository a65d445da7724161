"""systemd integration: socket activation, the notify protocol, the watchdog and journald.

What this module owns, and its rules:

- **Socket activation.** systemd (or ``systemd-socket-activate``, or our own ``restart()``)
  passes listening sockets as descriptors 3, 4, ... and says so in ``LISTEN_PID`` (which must
  be our pid: the variables may have leaked from a parent), ``LISTEN_FDS`` (how many) and
  ``LISTEN_FDNAMES`` (colon-separated names; ``unknown`` when absent, as systemd's
  ``sd_listen_fds_with_names`` reports). ``parse_listen_fds`` reads them, ``assign_listeners``
  decides which server takes which socket, and ``listen_fds`` is the thin shell that checks each
  descriptor is a listening stream socket and removes the variables so children don't inherit
  them. ``listen_environ`` writes the variables for the other direction (a re-exec).
- **Notify.** ``notify`` sends one datagram to ``NOTIFY_SOCKET`` (a path, or ``@name`` in the
  abstract namespace), with descriptors attached when asked (the file-descriptor store). It uses
  systemd-python's ``systemd.daemon.notify`` when installed (it passes descriptors too), and a
  few lines of standard library otherwise, so nothing breaks where libsystemd's headers are
  missing; ``prefer_systemd_python`` (or ``SITEBUS_SYSTEMD_PYTHON=0``) forces the latter.
  Without ``NOTIFY_SOCKET`` it does nothing.
- **SystemdNotifier** is the bus plugin: READY=1 once the bus is STARTED and the main loop runs,
  RELOADING=1 with MONOTONIC_USEC around graceful and before a restart's re-exec, STOPPING=1 on
  stop, STATUS= lines throughout, the listeners pushed to the file-descriptor store, and
  WATCHDOG=1 pings that prove the *main* loop is alive: a timer thread asks the main thread to
  ping and waits for it, so a stuck main thread means no ping. Without a watchdog there is no
  thread and no wake-up.
- **journald.** ``log_to_journal`` attaches systemd-python's JournalHandler to the ``sitebus``
  logger when stderr is the journal (``JOURNAL_STREAM`` names stderr's device and inode) or when
  asked, adding the bus state and the log context as fields.

Decisions are pure functions of plain values (the environment as a mapping, a pid, a stat
result); the system calls live in the few functions that need them.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sitebus.bus import Bus, states
from sitebus.errors import ConfigError, UnavailableError
from sitebus.plugins import SimplePlugin

__all__ = [
    "Claim",
    "SystemdNotifier",
    "assign_listeners",
    "check_fdname",
    "journal_stream_matches",
    "listen_environ",
    "listen_fds",
    "log_to_journal",
    "notify",
    "notify_address",
    "notify_message",
    "parse_listen_fds",
    "store_fds",
    "watchdog_interval",
]

LISTEN_FDS_START = 3
LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
UNKNOWN_FDNAME = "unknown"
FDNAME_MAX = 255

prefer_systemd_python = os.environ.get("SITEBUS_SYSTEMD_PYTHON", "1") != "0"
"""Use systemd-python when it is installed; False forces the standard-library protocol."""

# Sockets that systemd handed us (by device and inode): systemd already holds these, so they
# are never pushed to its file-descriptor store, where they would come back twice.
_passed_by_systemd: set[tuple[int, int]] = set()


# -- socket activation: decisions --------------------------------------------------------------


def _parse_count(environ: Mapping[str, str], key: str, minimum: int) -> int:
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
    if _parse_count(environ, "LISTEN_PID", 1) != pid:
        return []
    count = _parse_count(environ, "LISTEN_FDS", 0) if "LISTEN_FDS" in environ else 0
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


# -- socket activation: the shell ----------------------------------------------------------------


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


# -- the notify protocol -----------------------------------------------------------------------

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
        "(other kinds of address need systemd-python: pip install sitebus[systemd])"
    )


def _systemd_daemon() -> Any:
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
    daemon = _systemd_daemon()
    if daemon is not None:
        if numbers:
            return bool(daemon.notify(message, fds=numbers))
        return bool(daemon.notify(message))
    data = message.encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        # Connected first: socket.send_fds ignores its address argument (CPython 3.10-3.12).
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
    if environ.get("WATCHDOG_PID") and _parse_count(environ, "WATCHDOG_PID", 1) != pid:
        return None
    return _parse_count(environ, "WATCHDOG_USEC", 1) / 2_000_000


def monotonic_usec() -> int:
    """Return CLOCK_MONOTONIC in microseconds, as RELOADING=1's MONOTONIC_USEC wants it."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def fdstore_enabled(environ: Mapping[str, str]) -> bool:
    """Return True when systemd says the unit has a file-descriptor store ($FDSTORE, v254+)."""
    value = environ.get("FDSTORE", "")
    return value.isdigit() and int(value) > 0


# -- the plugin --------------------------------------------------------------------------------


class SystemdNotifier(SimplePlugin):
    """Tell systemd what the site is doing, and ping its watchdog while the main loop runs.

    Config: ``engine.systemd.on`` (on by default when NOTIFY_SOCKET is set),
    ``engine.systemd.watchdog`` (ping when systemd asks for it), ``engine.systemd.fdstore``
    (push the listeners to the file-descriptor store; None: when systemd says it has one).
    """

    watchdog: bool = True
    fdstore: bool | None = None

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.watchdog = True
        self.fdstore = None
        self.interval: float | None = None
        self._thread: threading.Thread | None = None
        self._stop_pinging = threading.Event()
        self._answered = threading.Event()

    def _listeners(self) -> list[tuple[str, Callable[..., Any]]]:
        return [("start", self.starting), ("start", self.started),
                ("graceful", self.reloading), ("graceful", self.reloaded),
                ("stop", self.stopping)]

    def subscribe(self) -> None:
        """Listen on start, graceful and stop."""
        for channel, method in self._listeners():
            self.bus.subscribe(channel, method)

    def unsubscribe(self) -> None:
        """Stop listening, and stop the watchdog pings."""
        for channel, method in self._listeners():
            self.bus.unsubscribe(channel, method)
        self._stop_watchdog()

    def send(self, **fields: object) -> None:
        """Send one notify message; trouble reaching systemd is logged, never raised."""
        try:
            notify(notify_message(**fields))
        except OSError as error:
            self.bus.log(f"Could not notify systemd ({fields}): {error}", 40)

    def status(self, text: str) -> None:
        """Tell systemd what the site is doing (STATUS=, shown by ``systemctl status``)."""
        self.send(STATUS=" ".join(text.split()))

    def _check_settings(self) -> None:
        if not isinstance(self.watchdog, bool):
            raise ConfigError(f"expected True or False, got {self.watchdog!r}",
                              key="engine.systemd.watchdog", value=self.watchdog)
        if self.fdstore is not None and not isinstance(self.fdstore, bool):
            raise ConfigError(f"expected True, False or None, got {self.fdstore!r}",
                              key="engine.systemd.fdstore", value=self.fdstore)

    def starting(self) -> None:
        """Check the settings and say the site is starting."""
        self._check_settings()
        how = "systemd-python" if _systemd_daemon() is not None else "the standard library"
        self.bus.log(f"Notifying systemd through {how}.")
        self.status("Starting")

    starting.priority = 1  # type: ignore[attr-defined]

    def started(self) -> None:
        """Store the bound listeners, and say READY=1 once the main loop runs."""
        if self.fdstore or (self.fdstore is None and fdstore_enabled(os.environ)):
            self.store_listeners()
        self.bus.call_in_main_thread(self._ready)

    started.priority = 90  # type: ignore[attr-defined]

    def _ready(self) -> None:
        if self.bus.state is not states.STARTED:
            return
        self.send(READY=1, STATUS=self.running_status())
        self._start_watchdog()

    def running_status(self) -> str:
        """Return the STATUS= text of a running site: its listening addresses."""
        addresses = []
        for fd in sorted(self.bus.inherit_fds):
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                continue
            try:
                address = sock.getsockname()
            except OSError:
                continue
            finally:
                sock.detach()
            if isinstance(address, tuple):
                host = f"[{address[0]}]" if ":" in address[0] else address[0]
                addresses.append(f"{host}:{address[1]}")
            else:
                addresses.append(str(address or "unnamed socket"))
        return "Running" + (f"; listening on {', '.join(addresses)}" if addresses else "")

    def store_listeners(self, listeners: Mapping[int, str] | None = None) -> int:
        """Push the listening sockets the site bound itself to the file-descriptor store.

        ``listeners`` maps fds to names (the bus's ``inherit_fds`` by default). Sockets that
        systemd passed us are skipped: systemd holds them already.
        """
        chosen = self.bus.inherit_fds if listeners is None else listeners
        own = {name: fd for fd, name in chosen.items() if not passed_by_systemd(fd)}
        try:
            stored = store_fds(own)
        except OSError as error:
            self.bus.log(f"Could not store the listening sockets with systemd: {error}", 40)
            return 0
        if stored:
            self.bus.log(f"Stored {stored} listening socket(s) in systemd's file-descriptor "
                         f"store: {', '.join(own)}")
        return stored

    def reloading(self) -> None:
        """Say RELOADING=1 as a graceful reload begins."""
        self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec(), STATUS="Reloading (graceful)")

    reloading.priority = 1  # type: ignore[attr-defined]

    def reloaded(self) -> None:
        """Say READY=1 again once every graceful listener has run."""
        self.send(READY=1, STATUS=self.running_status())

    reloaded.priority = 99  # type: ignore[attr-defined]

    def stopping(self) -> None:
        """Say STOPPING=1, or RELOADING=1 when the stop is a restart's (a re-exec follows)."""
        self._stop_watchdog()
        if self.bus.execv:
            self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec(),
                      STATUS="Restarting (re-executing)")
        else:
            self.send(STOPPING=1, STATUS="Stopping")

    stopping.priority = 1  # type: ignore[attr-defined]

    # -- the watchdog ------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        self.interval = watchdog_interval(os.environ, os.getpid()) if self.watchdog else None
        if self.interval is None or self._thread is not None:
            return
        self._stop_pinging.clear()
        self._thread = threading.Thread(target=self._watch, args=(self.interval,),
                                        name="systemd watchdog", daemon=True)
        self._thread.start()
        self.bus.log(f"Pinging systemd's watchdog every {self.interval:g} s.")

    def _watch(self, interval: float) -> None:
        while not self._stop_pinging.wait(interval):
            self._answered.clear()
            if self._stop_pinging.is_set():
                return
            self.bus.call_in_main_thread(self._ping)
            # Wait for the main thread's answer: a stuck main loop must mean no ping.
            while not self._answered.wait(interval):
                if self._stop_pinging.is_set():
                    return

    def _ping(self) -> None:
        try:
            if not self._stop_pinging.is_set():
                self.send(WATCHDOG=1)
        finally:
            self._answered.set()

    def _stop_watchdog(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop_pinging.set()
        self._answered.set()
        if thread is not threading.current_thread():
            thread.join()


# -- journald ----------------------------------------------------------------------------------


def journal_stream_matches(environ: Mapping[str, str], stderr_stat: os.stat_result | None) -> bool:
    """Return True when JOURNAL_STREAM (``device:inode``) names stderr: stderr is the journal."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if stderr_stat is None or not (device.isdigit() and inode.isdigit()):
        return False
    return (int(device), int(inode)) == (stderr_stat.st_dev, stderr_stat.st_ino)


def _stderr_stat() -> os.stat_result | None:
    try:
        return os.fstat(2)
    except OSError:
        return None


class _JournalFields(logging.Filter):
    """Add the bus state and the log context (ENGINE, HTTP...) as journal fields."""

    def __init__(self, bus: Bus | None) -> None:
        super().__init__()
        self.bus = bus

    def filter(self, record: logging.LogRecord) -> bool:
        record.SITEBUS_CONTEXT = getattr(record, "context", "") or record.name
        if self.bus is not None:
            record.SITEBUS_STATE = self.bus.state.name
        return True


def log_to_journal(
    bus: Bus | None = None,
    logger: str = "sitebus",
    identifier: str = "sitebus",
    level: int = logging.INFO,
    force: bool = False,
) -> logging.Handler | None:
    """Send the records of ``logger`` to journald when stderr is the journal, or when forced.

    Returns the handler, or None when the journal is not wanted. Without systemd-python a
    forced request is an UnavailableError naming the package; an automatic one is skipped
    (stderr already reaches the journal, only without priorities and fields).
    """
    if not force and not journal_stream_matches(os.environ, _stderr_stat()):
        return None
    try:
        from systemd.journal import (  # type: ignore[import-not-found,unused-ignore]
            JournalHandler,
        )
    except ImportError:
        if force:
            raise UnavailableError(
                "logging to journald needs systemd-python, which is not installed: "
                "pip install sitebus[systemd] (it builds with libsystemd-dev and pkg-config)"
            ) from None
        return None
    handler = JournalHandler(level=level, SYSLOG_IDENTIFIER=identifier)
    handler.addFilter(_JournalFields(bus))
    target = logging.getLogger(logger)
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > level:
        target.setLevel(level)
    return handler
