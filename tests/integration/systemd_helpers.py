"""Helpers shared by the tests that run programs the way systemd would: what is installed,
free ports, notify message order, and a journald of the test's own."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.processes import NotifySocket, kill_process_group

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
NEEDS_SOCKET_ACTIVATE = pytest.mark.skipif(
    SOCKET_ACTIVATE is None, reason="systemd-socket-activate is not installed (Debian package "
    "systemd)")

try:
    import systemd.journal  # noqa: F401

    HAVE_SYSTEMD_PYTHON = True
except ImportError:
    HAVE_SYSTEMD_PYTHON = False

NEEDS_SYSTEMD_PYTHON = pytest.mark.skipif(
    not HAVE_SYSTEMD_PYTHON,
    reason="systemd-python is not installed (apt-get install libsystemd-dev pkg-config; "
    "pip install systemd-python)",
)
# The notify datagrams through both implementations: "0" forces the standard library.
BOTH_PATHS = [
    pytest.param("0", id="stdlib"),
    pytest.param("1", id="systemd-python", marks=NEEDS_SYSTEMD_PYTHON),
]

JOURNALD = next((p for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
                 if os.access(p, os.X_OK)), None)
NAMESPACE_SCRIPT = Path(__file__).with_name("journal_namespace.sh")

# What systemd does for a service with StandardError=journal: stdout and stderr are a stream
# connected to journald, and JOURNAL_STREAM names it (or, with "elsewhere", names another file).
# The stream's identifier is TEST_STREAM_IDENTIFIER's (systemd's is SyslogIdentifier=), and
# TEST_NOTIFY_SOCKET becomes NOTIFY_SOCKET only here, so the test's journald never sees it.
JOURNAL_STDERR = """\
import os, socket, sys
stream = socket.socket(socket.AF_UNIX)
stream.connect("/run/systemd/journal/stdout")
identifier = os.environ.pop("TEST_STREAM_IDENTIFIER", "sitebus-test")
stream.sendall(f"{identifier}\\n\\n6\\n0\\n0\\n0\\n0\\n".encode())
stream.shutdown(socket.SHUT_RD)
os.dup2(stream.fileno(), 1)
os.dup2(stream.fileno(), 2)
info = os.fstat(2)
os.environ["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino + (sys.argv[1] == 'elsewhere')}"
if "TEST_NOTIFY_SOCKET" in os.environ:
    os.environ["NOTIFY_SOCKET"] = os.environ.pop("TEST_NOTIFY_SOCKET")
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def position(notify: NotifySocket, message: dict[str, str]) -> int:
    """Return the index of ``message`` among what ``notify`` received."""
    return next(i for i, m in enumerate(notify.messages) if m is message)


def wait_after(notify: NotifySocket, key: str, value: str | None,
               earlier: dict[str, str]) -> dict[str, str]:
    """Wait for a message setting ``key`` (to ``value``) that came after ``earlier``."""
    return notify.wait_for(key, value, after=position(notify, earlier) + 1)


def _can_mount_namespaces() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t",
                               "tmpfs", "tmpfs", "/mnt"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def journal_runner(spawn: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """Return ``run(argv, until, identifier, env=None)``: a command beside a journald of its own.

    ``run`` starts the command and returns ``finish()``, which waits for it to exit and returns
    its exit code, the Child, and the journal entries whose SYSLOG_IDENTIFIER is
    ``identifier``. ``until`` is how many such entries to wait for, or a ``FIELD=value`` match
    for the last one (see journal_namespace.sh). journald runs in a mount namespace with a
    fresh /run, so it disturbs nothing and needs no systemd as pid 1; everything runs in a
    session of its own, killed at teardown. Skips the test, with the reason, where that
    cannot work.
    """
    if not HAVE_SYSTEMD_PYTHON:
        pytest.skip("systemd-python is not installed")
    if JOURNALD is None:
        pytest.skip("systemd-journald is not installed (Debian package systemd)")
    if not _can_mount_namespaces():
        pytest.skip("no mount namespaces here (unshare -m needs CAP_SYS_ADMIN)")

    def run(argv: list[str], until: int | str, identifier: str,
            env: dict[str, str] | None = None) -> Any:
        out = tmp_path / "journal.json"
        child = spawn(["unshare", "-m", "--propagation", "private", "sh", str(NAMESPACE_SCRIPT),
                       str(out), identifier, str(until), *argv],
                      env=env, name="journald", notify=False, new_session=True)
        # The command runs as a child of the script: kill whatever is left of the session.
        request.addfinalizer(lambda: kill_process_group(child.pid))

        def finish() -> tuple[int, Any, list[dict[str, Any]]]:
            status = child.wait(60)
            entries = [json.loads(line) for line in out.read_text().splitlines()]
            return status, child, entries

        return finish

    return run
