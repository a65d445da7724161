"""PIDFile: the pure decisions, table by table, and the plugin on a real bus in this process."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from sitebus.bus import Bus, ChannelFailures
from sitebus.errors import ConfigError, TemporaryError, exit_code_of
from sitebus.process.pidfile import (
    PIDFile,
    ProcessInfo,
    parse_pid,
    pidfile_verdict,
    process_info,
    program_name,
)


@pytest.mark.parametrize(
    ("cmdline", "name"),
    [
        (["/usr/bin/python3", "-m", "sitebus", "run", "-d"], "sitebus"),
        (["python3.11", "-m", "sitebus.cli", "run"], "sitebus"),
        (["/usr/bin/python3.11", "/usr/local/bin/sitebus", "run"], "sitebus"),
        (["/usr/local/bin/sitebus", "run"], "sitebus"),
        (["python", "-u", "-X", "dev", "-W", "error", "site.py"], "site"),
        (["python", "-Wdefault", "-msitebus"], "sitebus"),
        (["python", "-um", "sitebus"], "sitebus"),
        (["python", "-E", "--check-hash-based-pycs", "always", "app/main.py"], "main"),
        (["python", "-c", "import sitebus"], "-c"),
        (["python", "--", "-weird.py"], "-weird"),
        (["python"], "python"),
        (["pypy3", "serve.py"], "serve"),
        (["sleep", "60"], "sleep"),
        (["/usr/sbin/nginx", "-g", "daemon off;"], "nginx"),
        ([], ""),
    ],
)
def test_program_name(cmdline: list[str], name: str) -> None:
    assert program_name(cmdline) == name


@pytest.mark.parametrize(
    ("contents", "pid"),
    [
        ("1234\n", 1234),
        ("  42  \n", 42),
        ("42\nextra\n", 42),
        ("", None),
        ("\n", None),
        ("0\n", None),
        ("-5\n", None),
        ("12ab\n", None),
        ("99999999999\n", None),
    ],
)
def test_parse_pid(contents: str, pid: int | None) -> None:
    assert parse_pid(contents) == pid


WRITTEN = 1_000_000.0
SITE = ProcessInfo(200, WRITTEN - 60, ("python3", "-m", "sitebus", "run"), True)


@pytest.mark.parametrize(
    ("contents", "process", "locked", "kind", "reason"),
    [
        (None, None, False, "absent", "there is no PID file"),
        ("100\n", None, False, "ours", "it already names this process (100)"),
        ("100\n", None, True, "contended", "it names this process (100) but is locked"),
        ("200\n", SITE, True, "live", "process 200 holds its lock"),
        ("200\n", None, True, "live", "another process holds its lock"),
        ("junk\n", None, True, "live", "another process holds its lock"),
        ("junk\n", None, False, "stale", "it holds no process id ('junk\\n')"),
        ("200\n", None, False, "stale", "process 200 is not running"),
        ("200\n", ProcessInfo(200, WRITTEN - 60, SITE.cmdline, False), False, "stale",
         "process 200 is not running"),
        ("200\n", ProcessInfo(200, WRITTEN + 30, SITE.cmdline, True), False, "stale",
         "process 200 started after the file was written"),
        ("200\n", ProcessInfo(200, WRITTEN + 0.5, SITE.cmdline, True), False, "live",
         "process 200 ('sitebus') is running"),
        ("200\n", ProcessInfo(200, WRITTEN - 60, ("sleep", "60"), True), False, "stale",
         "process 200 now runs another program ('sleep')"),
        ("200\n", ProcessInfo(200, WRITTEN - 60, None, True), False, "live",
         "process 200 is running (its command line is unreadable)"),
        ("200\n", SITE, False, "live", "process 200 ('sitebus') is running"),
    ],
)
def test_pidfile_verdict(
    contents: str | None, process: ProcessInfo | None, locked: bool, kind: str, reason: str
) -> None:
    verdict = pidfile_verdict(contents, process, 100, "sitebus", WRITTEN, locked)
    assert (verdict.kind, verdict.reason) == (kind, reason)


def test_process_info_describes_this_process() -> None:
    info = process_info(os.getpid())
    assert info is not None and info.running
    assert info.cmdline is not None and program_name(info.cmdline)
    assert process_info(2**22 + 1) is None  # above Linux's pid_max


@pytest.fixture
def messages(bus: Bus) -> list[str]:
    lines: list[str] = []
    bus.subscribe("log", lambda msg, level: lines.append(msg))
    return lines


def test_start_writes_and_locks_exit_removes(bus: Bus, tmp_path: Path, messages: list[str]) -> None:
    path = tmp_path / "site.pid"
    PIDFile(bus, str(path)).subscribe()
    bus.start()
    assert path.read_text() == f"{os.getpid()}\n"
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert os.listdir(tmp_path) == ["site.pid"]
    bus.exit()
    assert not path.exists()
    assert messages.count(f"PID {os.getpid()!r} written to {str(path)!r}.") == 1
    assert f"PID file removed: {str(path)!r}." in messages


def test_stop_and_start_again_keeps_the_file(bus: Bus, tmp_path: Path, messages: list[str]) -> None:
    path = tmp_path / "site.pid"
    PIDFile(bus, path).subscribe()
    bus.start()
    bus.stop()
    bus.start()
    assert f"PID {os.getpid()!r} already written to {str(path)!r}." in messages
    assert path.exists()


def test_a_file_locked_elsewhere_refuses_with_75(bus: Bus, tmp_path: Path) -> None:
    path = tmp_path / "site.pid"
    path.write_text("1\n")
    holder = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        PIDFile(bus, str(path)).subscribe()
        with pytest.raises(ChannelFailures) as failure:
            bus.start()
        assert exit_code_of(failure.value) == 75
        (error,) = failure.value.get_instances()
        assert isinstance(error, TemporaryError)
        assert str(error) == (
            f"PID file {str(path)!r} belongs to a running instance: process 1 holds its lock. "
            "Stop that instance first, or set engine.pidfile.pidfile to another file."
        )
        assert path.read_text() == "1\n"  # left alone, even by the exit that followed
    finally:
        os.close(holder)


@pytest.mark.parametrize("value", [None, "", 42, b"/run/x.pid"])
def test_a_bad_path_is_a_config_error(bus: Bus, value: object) -> None:
    PIDFile(bus, value).subscribe()
    with pytest.raises(ChannelFailures) as failure:
        bus.start()
    (error,) = failure.value.get_instances()
    assert isinstance(error, ConfigError)
    assert str(error) == f"engine.pidfile.pidfile: expected the path of a file, got {value!r}"
    assert exit_code_of(failure.value) == 78


def test_a_directory_is_a_config_error(bus: Bus, tmp_path: Path) -> None:
    PIDFile(bus, str(tmp_path)).subscribe()
    with pytest.raises(ChannelFailures, match="which is a directory"):
        bus.start()


def test_restart_keeps_the_file(bus: Bus, tmp_path: Path, messages: list[str]) -> None:
    path = tmp_path / "site.pid"
    plugin = PIDFile(bus, str(path))
    plugin.subscribe()
    bus.start()
    bus.restart()  # no block(), so no execv: only the exit listeners run
    assert path.read_text() == f"{os.getpid()}\n"
    assert f"PID file kept for the restart: {str(path)!r}." in messages
    plugin._release()


def test_exit_leaves_a_file_that_is_no_longer_ours(
    bus: Bus, tmp_path: Path, messages: list[str]
) -> None:
    path = tmp_path / "site.pid"
    PIDFile(bus, str(path)).subscribe()
    bus.start()
    path.unlink()
    path.write_text("12345\n")  # someone else's file now
    bus.exit()
    assert path.read_text() == "12345\n"
    assert f"PID file {str(path)!r} no longer holds PID {os.getpid()}; left alone." in messages


def test_a_relative_path_is_made_absolute_at_start(
    bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    PIDFile(bus, "site.pid").subscribe()
    bus.start()
    monkeypatch.chdir("/")
    bus.exit()  # removes the file it wrote, not one relative to the new directory
    assert not (tmp_path / "site.pid").exists()
