"""PIDFile in real processes: contents, the lock, live and stale owners, every kind of exit."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.service_helpers import child_argv, is_locked, read_facts
from tests.processes import python

pytestmark = pytest.mark.timeout(60)


def start_site(spawn: Any, tmp_path: Path, *options: str, name: str | None = None) -> Any:
    return spawn(child_argv(tmp_path, *options), name=name)


def test_pid_written_locked_and_removed_on_sigterm(spawn: Any, tmp_path: Path) -> None:
    pidfile = tmp_path / "site.pid"
    child = start_site(spawn, tmp_path, "--pidfile", "site.pid")
    child.notify.wait_for("READY", "1")
    assert pidfile.read_text() == f"{child.pid}\n"
    assert oct(pidfile.stat().st_mode & 0o777) == oct(0o644)
    assert is_locked(pidfile)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".site.pid")) == []
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    assert not pidfile.exists()
    assert f"PID {child.pid!r} written to {str(pidfile)!r}." in child.output
    assert f"PID file removed: {str(pidfile)!r}." in child.output


def test_removed_on_a_normal_exit(spawn: Any, tmp_path: Path) -> None:
    child = start_site(spawn, tmp_path, "--pidfile", "site.pid", "--exit-when-ready")
    assert child.wait() == 0
    assert "PID file removed" in child.output
    assert not (tmp_path / "site.pid").exists()


def test_removed_when_a_later_start_listener_fails(spawn: Any, tmp_path: Path) -> None:
    child = start_site(spawn, tmp_path, "--pidfile", "site.pid", "--fail-start")
    assert child.wait() == 70
    out = child.output
    assert out.index("written to") < out.index("address already in use (on purpose)")
    assert "PID file removed" in out
    assert not (tmp_path / "site.pid").exists()


def test_a_second_instance_refuses_while_the_first_lives(spawn: Any, tmp_path: Path) -> None:
    pidfile = tmp_path / "site.pid"
    first = start_site(spawn, tmp_path, "--pidfile", "site.pid", name="first")
    first.notify.wait_for("READY", "1")
    before = pidfile.stat()
    second = start_site(spawn, tmp_path, "--pidfile", "site.pid", name="second")
    assert second.wait() == 75
    assert f"PID file {str(pidfile)!r} belongs to a running instance" in second.output
    assert f"process {first.pid} holds its lock" in second.output
    after = pidfile.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert pidfile.read_text() == f"{first.pid}\n"
    assert is_locked(pidfile)
    first.send_signal(signal.SIGTERM)
    assert first.wait() == 0
    assert not pidfile.exists()


def test_an_unlocked_file_of_a_running_instance_is_respected(spawn: Any, tmp_path: Path) -> None:
    # What a second starter sees while a restarted site re-executes: the file names a live
    # process of the same program, started before the file was written, and nobody locks it.
    pidfile = tmp_path / "site.pid"
    owner = start_site(spawn, tmp_path, name="owner")
    owner.notify.wait_for("READY", "1")
    pidfile.write_text(f"{owner.pid}\n")
    before = pidfile.stat()
    starter = start_site(spawn, tmp_path, "--pidfile", "site.pid", name="starter")
    assert starter.wait() == 75
    assert f"process {owner.pid} ('services_child') is running" in starter.output
    assert pidfile.stat().st_mtime_ns == before.st_mtime_ns
    assert pidfile.read_text() == f"{owner.pid}\n"


def test_a_file_naming_a_dead_process_is_replaced(spawn: Any, tmp_path: Path) -> None:
    gone = spawn(python("-c", "pass"), name="gone", notify=False)
    assert gone.wait() == 0
    pidfile = tmp_path / "site.pid"
    pidfile.write_text(f"{gone.pid}\n")
    child = start_site(spawn, tmp_path, "--pidfile", "site.pid")
    child.notify.wait_for("READY", "1")
    assert pidfile.read_text() == f"{child.pid}\n"
    assert f"Replacing stale PID file {str(pidfile)!r}: process {gone.pid} is not running." \
        in child.output
    assert is_locked(pidfile)


def test_a_pid_reused_by_another_program_is_replaced(spawn: Any, tmp_path: Path) -> None:
    other = spawn(["sleep", "60"], name="other", notify=False)
    pidfile = tmp_path / "site.pid"
    pidfile.write_text(f"{other.pid}\n")
    child = start_site(spawn, tmp_path, "--pidfile", "site.pid")
    child.notify.wait_for("READY", "1")
    assert pidfile.read_text() == f"{child.pid}\n"
    assert f"process {other.pid} now runs another program ('sleep')" in child.output


def test_a_pid_reused_by_a_later_process_is_replaced(spawn: Any, tmp_path: Path) -> None:
    # Same program, but started after the file was written: the pid was reused.
    later = start_site(spawn, tmp_path, name="later")
    later.notify.wait_for("READY", "1")
    pidfile = tmp_path / "site.pid"
    pidfile.write_text(f"{later.pid}\n")
    an_hour_ago = time.time() - 3600
    os.utime(pidfile, (an_hour_ago, an_hour_ago))
    child = start_site(spawn, tmp_path, "--pidfile", "site.pid", name="site")
    child.notify.wait_for("READY", "1")
    assert pidfile.read_text() == f"{child.pid}\n"
    assert f"process {later.pid} started after the file was written" in child.output


def test_a_file_without_a_pid_is_replaced(spawn: Any, tmp_path: Path) -> None:
    pidfile = tmp_path / "site.pid"
    pidfile.write_text("")
    child = start_site(spawn, tmp_path, "--pidfile", "site.pid")
    child.notify.wait_for("READY", "1")
    assert pidfile.read_text() == f"{child.pid}\n"
    assert "it holds no process id ('')" in child.output


def test_restart_keeps_the_file_and_locks_it_again(spawn: Any, tmp_path: Path) -> None:
    pidfile = tmp_path / "site.pid"
    child = start_site(spawn, tmp_path, "--pidfile", "site.pid")
    child.notify.wait_for("GENERATION", "0")
    before = pidfile.stat()
    child.send_signal(signal.SIGHUP)
    child.notify.wait_for("GENERATION", "1")
    assert [f["pid"] for f in read_facts(tmp_path / "facts.jsonl")] == [child.pid] * 2
    after = pidfile.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert pidfile.read_text() == f"{child.pid}\n"
    assert is_locked(pidfile)
    out = child.output
    assert f"PID file kept for the restart: {str(pidfile)!r}." in out
    assert f"PID {child.pid!r} already written to {str(pidfile)!r}; locked it again." in out
    assert "PID file removed" not in out
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    assert not pidfile.exists()


def test_a_forked_worker_does_not_keep_the_lock(spawn: Any, tmp_path: Path) -> None:
    pidfile = tmp_path / "site.pid"
    child = start_site(spawn, tmp_path, "--pidfile", "site.pid", "--fork-worker")
    child.notify.wait_for("READY", "1")
    worker = int(child.wait_for_output(r"^worker (\d+) running$").group(1))
    try:
        child.send_signal(signal.SIGKILL)  # no exit listener runs: the file stays behind
        assert child.wait() == -signal.SIGKILL
        assert pidfile.read_text() == f"{child.pid}\n"
        assert not is_locked(pidfile)  # although the worker, forked after locking, lives on
        os.kill(worker, 0)
    finally:
        os.kill(worker, signal.SIGKILL)


def test_a_missing_directory_is_a_cannot_create_error(spawn: Any, tmp_path: Path) -> None:
    child = start_site(spawn, tmp_path, "--pidfile", "missing/site.pid")
    assert child.wait() == 73
    assert f"engine.pidfile.pidfile: cannot write the PID file " \
        f"{str(tmp_path / 'missing' / 'site.pid')!r}: No such file or directory" in child.output
    assert not (tmp_path / "missing").exists()
