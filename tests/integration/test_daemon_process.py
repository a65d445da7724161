"""Daemonizer in real processes: detaching, and the parent's exit status telling the truth.

The spawned process is the original one: it exits once the daemon has reported. The daemon
(its grandchild) says READY on the test's NOTIFY_SOCKET and records its facts; the
``detached`` fixture kills any daemon a test leaves behind.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.service_helpers import child_argv, is_locked, read_facts, wait_gone

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def detached() -> Iterator[list[int]]:
    """A list for the pids of daemons; any still running at teardown is killed."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        wait_gone(pid)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def daemon_pid_in(output: str) -> int:
    return int(re.search(r"the daemon \(PID (\d+)\)", output).group(1))  # type: ignore[union-attr]


def test_the_parent_exits_0_once_the_daemon_has_started(
    spawn: Any, tmp_path: Path, detached: list[int]
) -> None:
    child = spawn(child_argv(tmp_path, "--daemon", "--pidfile", "site.pid",
                             "--stdout", "daemon.out", "--stderr", "daemon.err"))
    assert child.wait() == 0
    daemon = int(child.notify.wait_for("READY", "1")["PID"])
    detached.append(daemon)
    (facts,) = read_facts(tmp_path / "facts.jsonl")

    assert daemon == facts["pid"] != child.pid
    assert (tmp_path / "site.pid").read_text() == f"{daemon}\n"
    assert is_locked(tmp_path / "site.pid")
    # Detached: a session of its own, of which it is not the leader, and a new parent.
    assert facts["sid"] not in (os.getsid(0), daemon)
    assert facts["pgid"] == facts["sid"]
    assert facts["ppid"] not in (child.pid, facts["sid"], os.getpid())
    assert facts["streams"] == {"0": "/dev/null", "1": str(tmp_path / "daemon.out"),
                                "2": str(tmp_path / "daemon.err")}
    assert facts["cwd"] == str(tmp_path)
    assert facts["umask"] == current_umask()
    assert facts["daemon_env"] == str(daemon)

    parent_out = child.output
    assert parent_out.index("Forking once.") < parent_out.index("Forking twice.")
    assert f"Daemon started with PID {daemon}." in parent_out
    assert "Daemonized to PID" not in parent_out  # after the fork, output goes to the files
    daemon_err = (tmp_path / "daemon.err").read_text()
    assert f"Daemonized to PID: {daemon}" in daemon_err
    assert f"PID {daemon!r} written to" in daemon_err
    assert "READY {" in (tmp_path / "daemon.out").read_text()

    os.kill(daemon, signal.SIGTERM)
    wait_gone(daemon)
    assert not (tmp_path / "site.pid").exists()
    assert "PID file removed" in (tmp_path / "daemon.err").read_text()


def test_streams_default_to_dev_null_and_threads_are_warned_about(
    spawn: Any, tmp_path: Path, detached: list[int]
) -> None:
    child = spawn(child_argv(tmp_path, "--daemon", "--thread"))
    assert child.wait() == 0
    daemon = int(child.notify.wait_for("READY", "1")["PID"])
    detached.append(daemon)
    (facts,) = read_facts(tmp_path / "facts.jsonl")
    assert facts["streams"] == {"0": "/dev/null", "1": "/dev/null", "2": "/dev/null"}
    assert "There are 2 active threads (MainThread, early-thread). Daemonizing now may " \
           "cause strange failures." in child.output
    os.kill(daemon, signal.SIGTERM)
    wait_gone(daemon)


def test_a_failing_start_listener_makes_the_parent_fail_with_its_error(
    spawn: Any, tmp_path: Path
) -> None:
    child = spawn(child_argv(tmp_path, "--daemon", "--pidfile", "site.pid", "--fail-start"))
    assert child.wait() == 70
    out = child.output
    daemon = daemon_pid_in(out)
    assert f"sitebus: the daemon (PID {daemon}) failed to start (exit status 70): " \
           "[Errno 98] address already in use (on purpose)" in out
    wait_gone(daemon)
    assert not (tmp_path / "site.pid").exists()  # the daemon wrote it, then removed it


def test_the_status_the_daemon_reports_is_the_parents(spawn: Any, tmp_path: Path) -> None:
    owner = spawn(child_argv(tmp_path, "--pidfile", "site.pid"), name="owner")
    owner.notify.wait_for("READY", "1")
    child = spawn(child_argv(tmp_path, "--daemon", "--pidfile", "site.pid"), name="second")
    assert child.wait() == 75
    out = child.output
    assert "failed to start (exit status 75): PID file" in out
    assert f"process {owner.pid} holds its lock" in out
    wait_gone(daemon_pid_in(out))
    assert (tmp_path / "site.pid").read_text() == f"{owner.pid}\n"


def test_without_a_report_the_parent_shows_the_logged_errors(spawn: Any, tmp_path: Path) -> None:
    child = spawn(child_argv(tmp_path, "--daemon", "--fail-start", "--no-report"))
    assert child.wait() == 70
    out = child.output
    daemon = daemon_pid_in(out)
    assert f"sitebus: the daemon (PID {daemon}) exited before it started: " in out
    assert "Shutting down due to error in start listener:" in out
    assert "address already in use (on purpose)" in out
    wait_gone(daemon)


def test_a_daemon_that_vanishes_while_starting_fails_the_parent(
    spawn: Any, tmp_path: Path
) -> None:
    child = spawn(child_argv(tmp_path, "--daemon", "--hard-exit"))
    assert child.wait() == 70
    assert "exited before it started, without saying why; see its log" in child.output


def test_restart_keeps_the_daemon_and_its_pid_file(
    spawn: Any, tmp_path: Path, detached: list[int]
) -> None:
    child = spawn(child_argv(tmp_path, "--daemon", "--pidfile", "site.pid",
                             "--stderr", "daemon.err"))
    assert child.wait() == 0
    daemon = int(child.notify.wait_for("GENERATION", "0")["PID"])
    detached.append(daemon)
    os.kill(daemon, signal.SIGHUP)  # no terminal: restart
    child.notify.wait_for("GENERATION", "1")
    first, second = read_facts(tmp_path / "facts.jsonl")
    assert first["pid"] == second["pid"] == daemon
    assert first["sid"] == second["sid"]
    assert second["streams"] == first["streams"]
    assert (tmp_path / "site.pid").read_text() == f"{daemon}\n"
    assert is_locked(tmp_path / "site.pid")
    log = (tmp_path / "daemon.err").read_text()
    assert f"Already daemonized (PID {daemon}); not forking again." in log
    assert log.count(f"Daemonized to PID: {daemon}") == 1
    os.kill(daemon, signal.SIGTERM)
    wait_gone(daemon)
    assert not (tmp_path / "site.pid").exists()


def kind_of(target: str) -> str:
    kinds = {"/dev/null": "null", "pipe:": "pipe", "socket:": "socket"}
    for prefix, kind in kinds.items():
        if target.startswith(prefix):
            return kind
    if target.endswith("/site.log"):
        return "log"
    if "site.pid" in target:  # the name it was created under, as /proc shows it
        return "pidfile"
    return target


def test_the_daemon_keeps_the_bus_descriptors_and_log_files_and_nothing_else(
    spawn: Any, tmp_path: Path, detached: list[int]
) -> None:
    child = spawn(child_argv(tmp_path, "--daemon", "--pidfile", "site.pid", "--inherit",
                             "--log-file", "site.log"))
    assert child.wait() == 0
    daemon = int(child.notify.wait_for("READY", "1")["PID"])
    detached.append(daemon)
    (facts,) = read_facts(tmp_path / "facts.jsonl")
    bound = re.search(r"^inherited (.*)$", child.output, re.M).group(1)  # type: ignore[union-attr]
    assert facts["inherited"] == bound  # still the same socket, not a closed or reused fd
    assert facts["threads"] == 1  # idle costs nothing: no thread serves the report pipe
    kinds = sorted(kind_of(target) for target in facts["fds"].values())
    # Standard streams, the bus's wake-up pipe, the inherited socket, the log file, the PID
    # file's lock; the report pipe is closed once it has reported, the child's other pipe
    # (opened before starting) was closed by DaemonContext.
    assert kinds == sorted(["null"] * 3 + ["pipe"] * 2 + ["socket", "log", "pidfile"])
    pipes = {target for target in facts["fds"].values() if target.startswith("pipe:")}
    assert len(pipes) == 1  # both ends of one pipe
    log = (tmp_path / "site.log").read_text()
    assert f"Daemonized to PID: {daemon}" in log
    assert "Bus STARTED" in log
    os.kill(daemon, signal.SIGTERM)
    wait_gone(daemon)
