"""sitebus.systemd in real processes: systemd-socket-activate, the notify sequence through
start, restart, graceful and stop, watchdog pings, the file-descriptor store, and journald."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from sitebus.systemd import monotonic_usec
from tests.integration.systemd_helpers import (
    BOTH_PATHS,
    JOURNAL_STDERR,
    NEEDS_SOCKET_ACTIVATE,
    NEEDS_SYSTEMD_PYTHON,
    SOCKET_ACTIVATE,
    free_port,
    journal_runner,
    position,
    wait_after,
)
from tests.processes import Timeout, python

CHILD = Path(__file__).with_name("systemd_child.py")

pytestmark = pytest.mark.timeout(90)


# -- socket activation -------------------------------------------------------------------------


@NEEDS_SOCKET_ACTIVATE
@pytest.mark.parametrize("fdnames, expected", [
    (None, ("unknown", "unknown")),
    ("web:local", ("web", "local")),
])
def test_listen_fds_takes_tcp_and_unix_sockets_from_systemd_socket_activate(
    spawn: Any, tmp_path: Path, fdnames: str | None, expected: tuple[str, str]
) -> None:
    port, path = free_port(), tmp_path / "site.sock"
    names = [f"--fdname={fdnames}"] if fdnames else []
    child = spawn([
        str(SOCKET_ACTIVATE), "-l", f"127.0.0.1:{port}", "-l", str(path), *names,
        "-E", "PYTHONPATH", "-E", "PYTHONUNBUFFERED", "-E", "NOTIFY_SOCKET",
        sys.executable, str(CHILD), "activate",
    ])
    child.wait_for_output(rf"Listening on {re.escape(str(path))} as 4")
    # The first connection makes systemd-socket-activate execute the child; both wait in
    # the kernel's backlog until the child accepts them.
    with socket.create_connection(("127.0.0.1", port), timeout=15) as tcp, \
            socket.socket(socket.AF_UNIX) as unix:
        unix.settimeout(15)
        unix.connect(str(path))
        message = child.notify.wait_for("SOCKETS")
        assert message == {"SOCKETS": f"{expected[0]}/inet,{expected[1]}/unix", "LEFTOVER": ""}
        assert tcp.recv(100) == f"{expected[0]} inet\n".encode()
        assert unix.recv(100) == f"{expected[1]} unix\n".encode()
    assert child.wait() == 0


@NEEDS_SOCKET_ACTIVATE
def test_a_datagram_socket_is_a_clear_error(spawn: Any, tmp_path: Path) -> None:
    path = tmp_path / "site.sock"
    child = spawn([
        str(SOCKET_ACTIVATE), "--datagram", "-l", str(path), "-E", "PYTHONPATH",
        sys.executable, str(CHILD), "activate",
    ])
    child.wait_for_output(r"Listening on .* as 3")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"wake up", str(path))
    assert child.wait() != 0
    assert ("ConfigError: LISTEN_FDS: fd 3 ('unknown') passed by systemd is a socket of "
            "type 2, not a stream socket (use ListenStream=") in child.output


def test_hand_over_listeners_keeps_the_sockets_across_a_re_exec(spawn: Any,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "site.sock"
    read_end, write_end = os.pipe()
    try:
        child = spawn(python(str(CHILD), "handover"), env={"CHILD_UNIX_PATH": str(path)},
                      stdin=read_end)
    finally:
        os.close(read_end)
    first = child.notify.wait_for("GENERATION", "0")
    # Connections made before the re-exec wait in the backlog; the new image serves them.
    with socket.create_connection(("127.0.0.1", int(first["PORT"])), timeout=15) as tcp, \
            socket.socket(socket.AF_UNIX) as unix:
        unix.settimeout(15)
        unix.connect(str(path))
        os.write(write_end, b"go\n")
        os.close(write_end)
        second = wait_after(child.notify, "GENERATION", "1", first)
        assert tcp.recv(100) == b"generation 1 web\n"
        assert unix.recv(100) == b"generation 1 local\n"
    assert child.wait() == 0
    assert first["PID"] == second["PID"] == str(child.pid)
    assert second["PORT"] == first["PORT"]
    assert second["FDS"] == "local:4,web:3"  # moved to 3, 4 and taken back by name
    assert second["LEFTOVER"] == ""  # LISTEN_* removed once read
    assert second["OPEN"] == first["OPEN"]  # nothing else crossed the exec


# -- the notify sequence -----------------------------------------------------------------------


@pytest.mark.parametrize("use_systemd_python", BOTH_PATHS)
def test_notify_sequence_through_restart_graceful_and_stop(
    spawn: Any, use_systemd_python: str
) -> None:
    child = spawn(python(str(CHILD), "notifier"),
                  env={"SITEBUS_SYSTEMD_PYTHON": use_systemd_python})
    notify = child.notify
    ready = notify.wait_for("READY", "1")
    # SIGHUP at once: the handler must be in place before READY=1 (Type=notify-reload).
    child.send_signal(signal.SIGHUP)
    restarting = wait_after(notify, "RELOADING", "1", ready)
    ready = wait_after(notify, "READY", "1", restarting)
    before = monotonic_usec()
    child.send_signal(signal.SIGUSR1)
    reloading = wait_after(notify, "RELOADING", "1", ready)
    assert before <= int(reloading["MONOTONIC_USEC"]) <= monotonic_usec()
    ready = wait_after(notify, "READY", "1", reloading)
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    wait_after(notify, "STOPPING", "1", ready)

    events = [key for m in notify.messages for key in ("READY", "RELOADING", "STOPPING")
              if key in m]
    assert events == ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"]
    statuses = [m["STATUS"] for m in notify.messages]
    running = r"Running; listening on 127\.0\.0\.1:\d+"
    expected = ["Starting", running, r"Restarting \(re-executing\)", "Starting", running,
                r"Reloading \(graceful\)", running, "Stopping"]
    assert len(statuses) == len(expected), statuses
    for status, pattern in zip(statuses, expected, strict=True):
        assert re.fullmatch(pattern, status), (status, pattern)
    assert "MONOTONIC_USEC" in restarting
    assert child.output.count("Re-spawning") == 1
    how = "systemd-python" if use_systemd_python == "1" else "the standard library"
    assert child.output.count(f"Notifying systemd through {how}.") == 2


# -- the watchdog ------------------------------------------------------------------------------


@pytest.mark.slow
def test_watchdog_pings_at_half_the_interval_only_while_the_main_loop_runs(
    spawn: Any, tmp_path: Path
) -> None:
    fifo = tmp_path / "unstick"
    os.mkfifo(fifo)
    interval = 0.2
    child = spawn(python(str(CHILD), "notifier"),
                  env={"WATCHDOG_USEC": str(int(interval * 2 * 1_000_000)),
                       "CHILD_FIFO": str(fifo)})
    notify = child.notify
    latest = notify.wait_for("READY", "1")
    arrivals = []
    for _ in range(6):
        latest = wait_after(notify, "WATCHDOG", "1", latest)
        arrivals.append(monotonic_usec() / 1e6)
    elapsed = arrivals[-1] - arrivals[0]
    # Generous bounds: a busy machine delays arrivals, but pings never come in a flood.
    assert 5 * interval * 0.5 <= elapsed <= 5 * interval * 10, arrivals
    assert "Pinging systemd's watchdog every 0.2 s." in child.output

    # A stuck main loop means no ping, though the timer thread is alive.
    child.send_signal(signal.SIGUSR2)
    child.wait_for_output(r"^stuck$")
    count = len(notify.messages)
    with pytest.raises(Timeout):
        notify.wait_for("WATCHDOG", "1", timeout=6 * interval, after=count)
    with open(fifo, "w") as unstick:
        unstick.write("go\n")
    child.wait_for_output(r"^unstuck: go$")
    notify.wait_for("WATCHDOG", "1", after=count)
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0


# -- the file-descriptor store -------------------------------------------------------------------

TAKE_BACK = """\
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="web")
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


@pytest.mark.parametrize("use_systemd_python", BOTH_PATHS)
def test_fdstore_carries_the_listener_across_a_full_stop_and_start(
    spawn: Any, use_systemd_python: str
) -> None:
    env = {"CHILD_FDSTORE": "1", "SITEBUS_SYSTEMD_PYTHON": use_systemd_python}
    first = spawn(python(str(CHILD), "notifier"), env=env, name="first")
    stored = first.notify.wait_for("FDSTORE", "1")
    assert stored == {"FDSTORE": "1", "FDNAME": "web"}
    [fds] = [first.notify.fds[position(first.notify, stored)]]
    assert len(fds) == 1
    wait_after(first.notify, "READY", "1", stored)  # stored once bound, before READY=1
    port = int(first.wait_for_output(r"port=(\d+)").group(1))
    first.send_signal(signal.SIGKILL)  # the site is gone; only the store holds the socket
    first.wait()

    # A connection made while no site runs waits in the stored socket's backlog...
    with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
        # ...and the next start, handed the store as LISTEN_FDS, takes the same socket back.
        second = spawn(python("-c", TAKE_BACK, str(fds[0]), str(CHILD), "notifier"),
                       env=env, name="second", pass_fds=(fds[0],))
        second.notify.wait_for("READY", "1")
        assert int(second.wait_for_output(r"port=(\d+)").group(1)) == port
        with socket.socket(fileno=os.dup(fds[0])) as listener:
            listener.settimeout(15)
            connection, _ = listener.accept()
            with connection:
                connection.sendall(b"no connection refused")
        assert client.recv(100) == b"no connection refused"
    # systemd holds the sockets it passed already: they are not stored twice.
    assert all("FDSTORE" not in m for m in second.notify.messages)
    second.send_signal(signal.SIGTERM)
    assert second.wait() == 0


# -- journald ----------------------------------------------------------------------------------

@pytest.fixture
def with_journald(spawn: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """Run a command beside a journald of its own; return its exit code and journal entries."""
    run = journal_runner(spawn, tmp_path, request)

    def run_to_end(argv: list[str], count: int) -> Any:
        status, child, entries = run(argv, count, "sitebus-test")()
        return status, child, {e["MESSAGE"]: e for e in entries}

    return run_to_end


@pytest.mark.parametrize("stderr", ["journal", "elsewhere"])
def test_journal_stream_decides_whether_records_go_to_journald(with_journald: Any,
                                                                stderr: str) -> None:
    status, child, entries = with_journald(
        python("-c", JOURNAL_STDERR, stderr, str(CHILD), "journal"), count=3)
    assert status == 0, child.output
    if stderr == "journal":
        assert entries["journal handler: JournalHandler"]["_TRANSPORT"] == "stdout"
        warning = entries["a warning from the engine"]
        assert warning["_TRANSPORT"] == "journal"
        assert (warning["PRIORITY"], warning["SITEBUS_CONTEXT"], warning["SITEBUS_STATE"]) == (
            "4", "ENGINE", "STOPPED")
        error = entries["an HTTP error"]
        assert (error["_TRANSPORT"], error["PRIORITY"], error["SITEBUS_CONTEXT"]) == (
            "journal", "3", "HTTP")
    else:  # stderr is not the journal: the lines arrive as plain output, with no fields
        assert entries["journal handler: NoneType"]["_TRANSPORT"] == "stdout"
        for message in ("a warning from the engine", "an HTTP error"):
            assert entries[message]["_TRANSPORT"] == "stdout"
            assert entries[message]["PRIORITY"] == "6"
            assert "SITEBUS_CONTEXT" not in entries[message]


def test_journal_when_asked_for_whatever_stderr_is(with_journald: Any) -> None:
    status, child, entries = with_journald(python(str(CHILD), "journal", "force"), count=2)
    assert status == 0, child.output
    assert "journal handler: JournalHandler" in child.output  # stderr: the spawn log file
    assert entries["a warning from the engine"]["SYSLOG_IDENTIFIER"] == "sitebus-test"
    assert entries["a warning from the engine"]["PRIORITY"] == "4"
    assert entries["an HTTP error"]["SITEBUS_CONTEXT"] == "HTTP"


@NEEDS_SYSTEMD_PYTHON
def test_stderr_that_is_not_the_journal_gets_no_journal_handler(spawn: Any) -> None:
    child = spawn(python(str(CHILD), "journal"), env={"JOURNAL_STREAM": "1:2"})
    assert child.wait() == 0
    assert "journal handler: NoneType" in child.output
