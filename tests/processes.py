"""The one way tests start real processes: ``spawn`` (the fixture in conftest.py) and Child.

A child runs with its output in a log file in the test's temporary directory and with a
NOTIFY_SOCKET of its own, so a test can wait for readiness (a notify datagram, a line of
output, a port that answers) with a deadline for each wait, never a fixed sleep. Teardown
always terminates, waits, then kills, and reaps; when the test failed it prints each child's
argv, exit code and log.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 15.0


class Timeout(AssertionError):
    """A wait in a test ran past its deadline."""


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return an environment in which a child imports this checkout's sitebus."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_SOCKET"))}
    paths = [str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Call ``predicate`` until it returns something true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class NotifySocket:
    """A datagram socket that records what a child sends with the sd_notify protocol."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []
        self.fds: list[list[int]] = []

    def _receive(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return False
        data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 16)
        fields = dict(
            line.split("=", 1) for line in data.decode().splitlines() if "=" in line
        )
        self.messages.append(fields)
        self.fds.append(list(fds))
        return True

    def wait_for(self, key: str, value: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 after: int = 0) -> dict[str, str]:
        """Return the first message (from index ``after``) that sets ``key`` (to ``value``)."""
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            for message in self.messages[seen:]:
                if key in message and (value is None or message[key] == value):
                    return message
            seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(
                    f"no notify message with {key}={value or '*'} within {timeout:.1f} s; "
                    f"got {self.messages}"
                )
            self._receive(remaining)

    def close(self) -> None:
        for group in self.fds:
            for fd in group:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.sock.close()


class Child:
    """A real process started by a test, with its log, its notify socket and its exit code."""

    def __init__(self, argv: list[str], workdir: Path, env: dict[str, str], name: str,
                 stdin: int | None, pass_fds: Iterable[int], start_new_session: bool,
                 notify: bool) -> None:
        self.argv = argv
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.notify = NotifySocket(workdir / f"{name}.notify") if notify else None
        if self.notify is not None:
            env = {**env, "NOTIFY_SOCKET": str(self.notify.path)}
        self._log_file = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            pass_fds=tuple(pass_fds),
            start_new_session=start_new_session,
        )
        self.pid = self.popen.pid

    @property
    def output(self) -> str:
        """Everything the child wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout: float = DEFAULT_TIMEOUT) -> re.Match[str]:
        """Wait until the child's output matches the regular expression ``pattern``."""
        regex = re.compile(pattern, re.MULTILINE)

        def found() -> re.Match[str] | None:
            match = regex.search(self.output)
            if match is None and self.popen.poll() is not None:
                match = regex.search(self.output)
                if match is None:
                    raise AssertionError(
                        f"child exited with {self.popen.returncode} before printing "
                        f"{pattern!r}:\n{self.output}"
                    )
            return match

        return wait_until(found, timeout, f"output matching {pattern!r}")  # type: ignore[return-value]

    def wait_for_port(self, port: int, host: str = "127.0.0.1",
                      timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until a TCP connection to ``host:port`` succeeds."""

        def answers() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"child exited with {self.popen.returncode}:\n{self.output}")
            try:
                with socket.create_connection((host, port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(answers, timeout, f"{host}:{port} to answer")

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Wait for the child to exit and return its exit code (negative for a signal)."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Timeout(f"child {self.argv} still running after {timeout:.1f} s:\n"
                          f"{self.output}") from None

    def send_signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def reap(self) -> None:
        """Terminate, wait, kill if needed; always leaves no process behind."""
        if self.popen.poll() is None:
            try:
                self.popen.terminate()
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log_file.close()
        if self.notify is not None:
            self.notify.close()

    def describe(self) -> str:
        return (
            f"argv: {self.argv}\nexit code: {self.popen.returncode}\n"
            f"--- log {self.log_path} ---\n{self.output}"
        )


def notify(message: str) -> None:
    """Send ``message`` to $NOTIFY_SOCKET if set: the test programs' side of NotifySocket."""
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), path)


def socket_fds() -> int:
    """Count this process's open socket descriptors (to check a restart leaks none)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
        except OSError:
            pass
    return count


def python(*args: str) -> list[str]:
    """Return an argv that runs this interpreter."""
    return [sys.executable, *args]


def kill_process_group(pid: int) -> None:
    """Kill what a test left in a process group of its own (daemons, workers)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
