"""Daemonizer: detach the site from its terminal, and tell the terminal whether it started.

The start listener (priority 65, before any server starts a thread) forks twice in the
classic way: the first child calls ``setsid()`` to leave the terminal's session, and its
child, the daemon, is not a session leader, so it can never acquire a controlling terminal.
The daemon then opens python-daemon's ``DaemonContext`` for the rest: standard streams
redirected to ``stdin``/``stdout``/``stderr`` (``/dev/null`` by default), other descriptors
closed. Then ``start()`` returns in the daemon and the other plugins start there.

Beyond the reference, the original process does not exit 0 at once: it waits on a pipe until
the daemon reports, and exits with the daemon's status. The daemon reports success from
``bus.call_in_main_thread``, queued by the start listener, which runs inside ``block()``
once ``start()`` has returned (and checks the state is STARTED). Until then every message
logged at level 40 or more goes down the pipe too, so a start failure reaches the terminal
with its text even when the daemon's stderr is ``/dev/null``. The CLI tells the specific exit
status with ``report_failure(69, message)``; if the daemon exits without a report, the
parent exits 70 (EX_SOFTWARE) with the errors seen. No thread polls: the parent blocks on the
pipe, the daemon writes only when something happens.

Choices, against python-daemon's defaults and the reference:

- The forks are ours (``detach_process=False``): DaemonContext's own fork exits the parent at
  once with 0, which is the silent success this plugin exists to avoid, and the bus reopens
  its wake-up pipe after each fork, so the descriptors to keep are known only in the daemon.
- Kept open: the bus's wake-up pipe, ``bus.inherit_fds``, the streams and sockets of logging
  handlers (a site's log files), and the report pipe. Everything else opened before priority
  65 is closed; open files and connections lazily or in start listeners after it.
- No signal handlers (``signal_map={}``): the SignalHandler owns signals.
- The working directory is kept, as the reference does since v8.9 (relative paths keep
  their meaning, and ``restart()`` re-executes from there anyway).
- The umask is kept, where the reference (and DaemonContext) set 0, which makes every file
  created without an explicit mode world-writable. Set one with ``engine.drop_privileges.umask``.
- Core dumps are left to the system's limits (``prevent_core=False``), as the reference does.

After ``restart()`` the new image has the same pid and is still detached: the daemon records
its pid in ``SITEBUS_DAEMON_PID``, and a Daemonizer that finds its own pid there does not
fork again.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any, NoReturn

import daemon as python_daemon

from sitebus.bus import Bus, states
from sitebus.errors import EX_SOFTWARE, CannotCreateError, ConfigError
from sitebus.plugins import SimplePlugin

__all__ = ["Daemonizer", "daemon_outcome", "is_daemonized"]

DAEMON_PID_ENV = "SITEBUS_DAEMON_PID"
EX_INTERRUPTED = 130  # what a shell reports for Ctrl-C

Event = dict[str, Any]


def is_daemonized(environ: Mapping[str, str], pid: int) -> bool:
    """Return True if this process image descends, through execv, from a Daemonizer's daemon."""
    return environ.get(DAEMON_PID_ENV) == str(pid)


def daemon_outcome(events: Sequence[Event]) -> tuple[int, str | None]:
    """Return the parent's exit status and what it must print, from the daemon's reports.

    Events are ``{'event': 'pid', 'pid': N}``, ``{'event': 'error', 'message': text}``,
    ``{'event': 'started'}`` and ``{'event': 'failed', 'code': N, 'message': text}``; the
    list ends early when the pipe closed without a final report.
    """
    pid = next((e.get("pid") for e in reversed(events) if e.get("event") == "pid"), None)
    who = "the daemon" if pid is None else f"the daemon (PID {pid})"
    errors = [str(e.get("message")) for e in events if e.get("event") == "error"]
    final = events[-1] if events and events[-1].get("event") in ("started", "failed") else None
    if final is not None and final["event"] == "started":
        return 0, None
    if final is not None:
        code = final.get("code")
        if not isinstance(code, int) or not 0 < code < 256:
            code = EX_SOFTWARE
        text = final.get("message") or "\n".join(errors) or "no reason given"
        return code, f"{who} failed to start (exit status {code}): {text}"
    if errors:
        return EX_SOFTWARE, f"{who} exited before it started: " + "\n".join(errors)
    return EX_SOFTWARE, f"{who} exited before it started, without saying why; see its log"


def _decode(line: bytes) -> Event:
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        return {"event": "error", "message": line.decode(errors="replace")}
    return event


def _stream_path(name: str, value: object) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"expected a file path such as '/dev/null', got {value!r}",
            key=f"engine.daemonizer.{name}",
            value=value,
        )
    return os.path.abspath(value)


def _open_streams(stdin: object, stdout: object, stderr: object) -> list[IO[Any]]:
    """Open the daemon's standard streams before forking, so errors reach the terminal."""
    paths = [_stream_path(n, v) for n, v in (("stdin", stdin), ("stdout", stdout),
                                              ("stderr", stderr))]
    opened: list[IO[Any]] = []
    try:
        try:
            opened.append(open(paths[0]))
        except OSError as error:
            raise ConfigError(
                f"cannot read {paths[0]!r}: {error.strerror or error}",
                key="engine.daemonizer.stdin",
                value=stdin,
            ) from error
        for name, path in (("stdout", paths[1]), ("stderr", paths[2])):
            try:
                opened.append(open(path, "a"))
            except OSError as error:
                raise CannotCreateError(
                    f"engine.daemonizer.{name}: cannot open {path!r} for appending: "
                    f"{error.strerror or error}"
                ) from error
    except BaseException:
        for stream in opened:
            stream.close()
        raise
    return opened


def _logging_descriptors() -> set[int]:
    """Descriptors of the streams and sockets that logging handlers write to."""
    loggers: list[Any] = [logging.getLogger()]
    loggers.extend(logging.Logger.manager.loggerDict.values())
    found = set()
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            for attribute in ("stream", "socket"):
                target = getattr(handler, attribute, None)
                try:
                    found.add(target.fileno())  # type: ignore[union-attr]
                except (AttributeError, ValueError, OSError):
                    pass
    return found


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


# Report pipes to close in processes forked from a daemon that has not reported yet (pre-fork
# workers): otherwise the waiting parent would only see the pipe close when they all exit.
_report_fds: set[int] = set()


def _close_report_pipes_in_child() -> None:
    for fd in list(_report_fds):
        try:
            os.close(fd)
        except OSError:
            pass
    _report_fds.clear()


os.register_at_fork(after_in_child=_close_report_pipes_in_child)


class Daemonizer(SimplePlugin):
    """Daemonize the running script."""

    finalized: bool
    """True once this process is the daemon."""

    def __init__(
        self,
        bus: Bus,
        stdin: object = "/dev/null",
        stdout: object = "/dev/null",
        stderr: object = "/dev/null",
    ) -> None:
        super().__init__(bus)
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.finalized = False
        self._report_fd: int | None = None
        self._report_lock = threading.Lock()

    def start(self) -> None:
        """Fork into a daemon; the original process exits with the daemon's start status."""
        if self.finalized:
            self.bus.log("Already daemonized.")
            return
        if is_daemonized(os.environ, os.getpid()):
            self.finalized = True
            self.bus.log(f"Already daemonized (PID {os.getpid()}); not forking again.")
            return
        streams = _open_streams(self.stdin, self.stdout, self.stderr)
        if threading.active_count() > 1:
            self.bus.log(
                f"There are {threading.active_count()} active threads "
                f"({', '.join(t.name for t in threading.enumerate())}). "
                "Daemonizing now may cause strange failures.",
                level=30,
            )
        read_fd, write_fd = os.pipe()
        self.bus.log("Forking once.")
        _flush_standard_streams()
        try:
            first_child = os.fork()
        except OSError:
            for fd in (read_fd, write_fd):
                os.close(fd)
            for stream in streams:
                stream.close()
            raise
        if first_child:
            os.close(write_fd)
            for stream in streams:
                stream.close()
            self._wait_for_daemon(read_fd, first_child)
        os.close(read_fd)
        self._report_fd = write_fd
        try:
            os.setsid()
            self.bus.log("Forking twice.")
            _flush_standard_streams()
            if os.fork():
                os._exit(0)
            self._detach(streams)
        except Exception as error:
            self.bus.log("Daemonizing failed.", level=40, traceback=True)
            self._finish({"event": "failed", "code": EX_SOFTWARE,
                          "message": f"daemonizing failed: {error!r}"})
            os._exit(EX_SOFTWARE)

    start.priority = 65  # type: ignore[attr-defined]

    def report_failure(self, code: int, message: str | None = None) -> None:
        """Have the waiting parent exit with ``code`` and print ``message``; once, before exit.

        For the CLI, when ``bus.start()`` failed: ``report_failure(69, 'port 80 in use')``.
        Does nothing when no parent waits (not daemonized, or already reported).
        """
        if not isinstance(code, int) or not 0 < code < 256:
            raise ValueError(f"expected an exit status from 1 to 255, got {code!r}")
        self._finish({"event": "failed", "code": code, "message": message})

    # -- the daemon's side ------------------------------------------------------------------

    def _detach(self, streams: list[IO[Any]]) -> None:
        """Become the daemon: DaemonContext redirects streams and closes other descriptors."""
        assert self._report_fd is not None
        keep = {self._report_fd, self.bus._wakeup_r, self.bus._wakeup_w}
        keep |= set(self.bus.inherit_fds) | _logging_descriptors()
        context = python_daemon.DaemonContext(
            detach_process=False,
            working_directory=os.getcwd(),
            umask=_current_umask(),
            prevent_core=False,
            signal_map={},
            files_preserve=sorted(keep),
            stdin=streams[0],
            stdout=streams[1],
            stderr=streams[2],
        )
        context.open()
        for stream in streams:
            stream.close()  # their descriptors now live on as 0, 1 and 2
        pid = os.getpid()
        os.environ[DAEMON_PID_ENV] = str(pid)
        self.finalized = True
        _report_fds.add(self._report_fd)
        self._send({"event": "pid", "pid": pid})
        self.bus.subscribe("log", self._forward_error)
        self.bus.log(f"Daemonized to PID: {pid}")
        self.bus.call_in_main_thread(self._report_started)

    def _forward_error(self, msg: str, level: int) -> None:
        if level >= 40:
            self._send({"event": "error", "message": msg})

    def _report_started(self) -> None:
        state = self.bus.state
        if state is states.STARTED:
            self._finish({"event": "started", "pid": os.getpid()})
        elif state is not states.STARTING:
            self._finish({"event": "failed", "code": EX_SOFTWARE,
                          "message": f"the site stopped while starting (bus {state.name})"})

    def _send(self, event: Event) -> bool:
        data = (json.dumps(event) + "\n").encode()
        with self._report_lock:
            fd = self._report_fd
            if fd is None:
                return False
            try:
                while data:
                    data = data[os.write(fd, data):]
            except OSError:
                self._close_report()  # the parent is gone: nobody to tell
                return False
        return True

    def _finish(self, event: Event) -> None:
        if self._send(event):
            with self._report_lock:
                self._close_report()

    def _close_report(self) -> None:
        fd, self._report_fd = self._report_fd, None
        if fd is None:
            return
        _report_fds.discard(fd)
        self.bus.unsubscribe("log", self._forward_error)
        try:
            os.close(fd)
        except OSError:
            pass

    # -- the original process's side --------------------------------------------------------

    def _wait_for_daemon(self, read_fd: int, first_child: int) -> NoReturn:
        """Wait for the daemon's report, then end this process with its status."""
        events: list[Event] = []
        try:
            events = _read_reports(read_fd)
            code, message = daemon_outcome(events)
        except KeyboardInterrupt:
            code = EX_INTERRUPTED
            message = "interrupted while waiting for the daemon to start; it may still be starting"
        try:
            os.waitpid(first_child, 0)  # it exits right after the second fork
        except ChildProcessError:
            pass
        if message is None:
            pid = next((e.get("pid") for e in events if e.get("event") == "pid"), None)
            self.bus.log(f"Daemon started with PID {pid}.")
        else:
            _flush_standard_streams()
            try:
                sys.stderr.write(f"sitebus: {message}\n")
            except (AttributeError, ValueError, OSError):
                pass
        logging.shutdown()
        _flush_standard_streams()
        os._exit(code)


def _read_reports(fd: int) -> list[Event]:
    """Read events from the report pipe until a final one, or until it closes."""
    events: list[Event] = []
    pending = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            if pending.strip():
                events.append(_decode(pending))
            return events
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if not line.strip():
                continue
            events.append(_decode(line))
            if events[-1].get("event") in ("started", "failed"):
                return events
