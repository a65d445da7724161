"""Daemonizer: the parent's verdict (table), the report pipe, and settings refused before forking.

Forking happens in child processes only: see tests/integration/test_daemon_process.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sitebus.bus import Bus, ChannelFailures
from sitebus.errors import CannotCreateError, ConfigError, exit_code_of
from sitebus.process.daemon import (
    DAEMON_PID_ENV,
    Daemonizer,
    _read_reports,
    daemon_outcome,
    is_daemonized,
)

PID = {"event": "pid", "pid": 321}
ERROR = {"event": "error", "message": "Error in 'start' listener: port 80 in use"}


@pytest.mark.parametrize(
    ("events", "code", "message"),
    [
        ([PID, {"event": "started", "pid": 321}], 0, None),
        ([PID, ERROR, {"event": "failed", "code": 69, "message": "127.0.0.1:80 is in use"}],
         69, "the daemon (PID 321) failed to start (exit status 69): 127.0.0.1:80 is in use"),
        ([PID, ERROR, {"event": "failed", "code": 78, "message": None}],
         78, "the daemon (PID 321) failed to start (exit status 78): Error in 'start' "
             "listener: port 80 in use"),
        ([{"event": "failed", "code": 70, "message": "daemonizing failed: OSError()"}],
         70, "the daemon failed to start (exit status 70): daemonizing failed: OSError()"),
        ([PID, {"event": "failed", "code": 0}],
         70, "the daemon (PID 321) failed to start (exit status 70): no reason given"),
        ([PID, {"event": "failed", "code": "69"}],
         70, "the daemon (PID 321) failed to start (exit status 70): no reason given"),
        ([PID, ERROR],
         70, "the daemon (PID 321) exited before it started: Error in 'start' listener: "
             "port 80 in use"),
        ([PID], 70, "the daemon (PID 321) exited before it started, without saying why; "
                    "see its log"),
        ([], 70, "the daemon exited before it started, without saying why; see its log"),
    ],
)
def test_daemon_outcome(events: list[dict], code: int, message: str | None) -> None:
    assert daemon_outcome(events) == (code, message)


@pytest.mark.parametrize(
    ("environ", "pid", "expected"),
    [
        ({}, 10, False),
        ({DAEMON_PID_ENV: "10"}, 10, True),
        ({DAEMON_PID_ENV: "10"}, 11, False),  # a child process of the daemon
        ({DAEMON_PID_ENV: ""}, 10, False),
    ],
)
def test_is_daemonized(environ: dict[str, str], pid: int, expected: bool) -> None:
    assert is_daemonized(environ, pid) is expected


def test_read_reports_stops_at_the_final_event() -> None:
    read_fd, write_fd = os.pipe()
    try:
        lines = [json.dumps(PID), json.dumps(ERROR), "not json", json.dumps({"event": "started"}),
                 json.dumps({"event": "never read"})]
        os.write(write_fd, ("\n".join(lines) + "\n").encode())
        events = _read_reports(read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert events == [PID, ERROR, {"event": "error", "message": "not json"}, {"event": "started"}]


def test_read_reports_returns_what_came_before_the_pipe_closed() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, (json.dumps(PID) + "\n" + json.dumps(ERROR)).encode())  # no newline
    os.close(write_fd)
    try:
        assert _read_reports(read_fd) == [PID, ERROR]
    finally:
        os.close(read_fd)


def test_priority_is_65(bus: Bus) -> None:
    plugin = Daemonizer(bus)
    plugin.subscribe()
    assert bus._priorities[("start", plugin.start)][0] == 65
    assert (plugin.stdin, plugin.stdout, plugin.stderr) == ("/dev/null",) * 3


@pytest.mark.parametrize(
    ("settings", "error_class", "message", "code"),
    [
        ({"stdout": None}, ConfigError,
         "engine.daemonizer.stdout: expected a file path such as '/dev/null', got None", 78),
        ({"stderr": 2}, ConfigError,
         "engine.daemonizer.stderr: expected a file path such as '/dev/null', got 2", 78),
        ({"stdin": "missing-input"}, ConfigError,
         "engine.daemonizer.stdin: cannot read '{tmp}/missing-input': No such file or directory",
         78),
        ({"stderr": "no/such/dir/err.log"}, CannotCreateError,
         "engine.daemonizer.stderr: cannot open '{tmp}/no/such/dir/err.log' for appending: "
         "No such file or directory", 73),
    ],
)
def test_bad_streams_fail_before_forking(
    bus: Bus,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, object],
    error_class: type[Exception],
    message: str,
    code: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    plugin = Daemonizer(bus)
    for name, value in settings.items():
        setattr(plugin, name, value)  # as engine.daemonizer.<name> = value does
    plugin.subscribe()
    with pytest.raises(ChannelFailures) as failure:
        bus.start()
    (error,) = failure.value.get_instances()
    assert isinstance(error, error_class)
    assert str(error) == message.format(tmp=tmp_path)
    assert exit_code_of(failure.value) == code
    assert not plugin.finalized


def test_a_restarted_daemon_does_not_fork_again(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DAEMON_PID_ENV, str(os.getpid()))
    lines: list[str] = []
    bus.subscribe("log", lambda msg, level: lines.append(msg))
    plugin = Daemonizer(bus)
    plugin.subscribe()
    bus.start()
    assert f"Already daemonized (PID {os.getpid()}); not forking again." in lines
    assert plugin.finalized
    bus.stop()
    bus.start()
    assert "Already daemonized." in lines


def test_report_failure_checks_the_code_and_needs_no_parent(bus: Bus) -> None:
    plugin = Daemonizer(bus)
    for bad in (0, 256, -1, "69"):
        with pytest.raises(ValueError, match="expected an exit status from 1 to 255"):
            plugin.report_failure(bad)  # type: ignore[arg-type]
    plugin.report_failure(69, "nobody waits: nothing happens")
