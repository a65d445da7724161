"""`sitebus run` as systemd runs it: sockets from systemd-socket-activate, with and without
names; the notify datagrams through start, graceful, restart and stop; watchdog pings; the
file-descriptor store across a SIGKILL; journald."""

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
from tests.integration.sites import (
    APPS,
    get,
    get_unix,
    ready_addresses,
    reloaded,
    run_site,
    tcp_port,
)
from tests.integration.systemd_helpers import (
    BOTH_PATHS,
    JOURNAL_STDERR,
    NEEDS_SOCKET_ACTIVATE,
    SOCKET_ACTIVATE,
    free_port,
    journal_runner,
    position,
    wait_after,
)
from tests.processes import Child, NotifySocket, Timeout, python, wait_until

pytestmark = pytest.mark.timeout(90)

AS_SYSTEMD = str(Path(__file__).with_name("as_systemd.py"))
SITEBUS_RUN = ["-m", "sitebus", "run", "-c", "site.conf", "-p", "site.pid"]

REPORTS = '''
def reports(environ, start_response):
    from sitebus.site.container import log
    log("an app warns", "APP", 30)
    log("an app reports an error", "APP", 40)
    return hello(environ, start_response)
'''


def site_config(tmp_path: Path, *lines: str) -> str:
    """A site with the default server (TCP) and ``server.local`` (a UNIX socket file)."""
    return "\n".join([
        "[global]",
        "server.socket_port = 0",
        f"server.local.socket_file = '{tmp_path / 'own.sock'}'",
        "engine.autoreload.on = False",
        "tree.bare = '/bare', 'apps:hello'",
        *lines,
    ]) + "\n"


def write_site(tmp_path: Path, config: str) -> None:
    (tmp_path / "apps.py").write_text(APPS + REPORTS)
    (tmp_path / "site.conf").write_text(config)


def socket_activate(spawn: Any, listen: list[str], *options: str) -> Child:
    """Start ``sitebus run`` under systemd-socket-activate, listening on ``listen``."""
    assert SOCKET_ACTIVATE is not None
    argv = [SOCKET_ACTIVATE, *[f"--listen={address}" for address in listen], *options]
    for name in ("PYTHONPATH", "PYTHONUNBUFFERED", "NOTIFY_SOCKET"):
        argv += ["-E", name]  # it passes on only the variables it is told to
    child = spawn([*argv, sys.executable, *SITEBUS_RUN])
    child.wait_for_output(rf"Listening on .* as {2 + len(listen)}\.")
    return child


def answer(connection: socket.socket) -> bytes:
    """Read what the server sends on ``connection`` until it closes it."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def request_on(connection: socket.socket, path: str) -> None:
    connection.sendall(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())


def pid_in_pidfile(tmp_path: Path) -> int:
    return int((tmp_path / "site.pid").read_text())


# -- socket activation -------------------------------------------------------------------------


@NEEDS_SOCKET_ACTIVATE
@pytest.mark.parametrize("how", ["in order", "by name", "as contrib's sitebus.socket"])
def test_sitebus_run_serves_tcp_and_unix_sockets_from_systemd_socket_activate(
    spawn: Any, tmp_path: Path, how: str
) -> None:
    port, passed = free_port(), tmp_path / "passed.sock"
    tcp = f"127.0.0.1:{port}"
    if how == "in order":
        # No names: the default server takes fd 3, server.local fd 4.
        listen, options, config = [tcp, str(passed)], [], site_config(tmp_path)
        taken = [("server", "unknown", 3), ("server.local", "unknown", 4)]
    elif how == "as contrib's sitebus.socket":
        # FileDescriptorName=http names every socket of the unit: taken in order too.
        listen, options, config = [tcp, str(passed)], ["--fdname=http:http"], site_config(tmp_path)
        taken = [("server", "http", 3), ("server.local", "http", 4)]
    else:
        # The UNIX socket first, so taking them in order would swap them: the default server
        # takes "web" through server.socket_fdname, server.local "local" through its name.
        listen, options = [str(passed), tcp], ["--fdname=local:web"]
        config = site_config(tmp_path, "server.socket_fdname = 'web'")
        taken = [("server", "web", 4), ("server.local", "local", 3)]
    write_site(tmp_path, config)
    child = socket_activate(spawn, listen, *options)
    # The first connection makes systemd-socket-activate execute sitebus in its place; the
    # request waits in the socket until the site serves it.
    with socket.create_connection(("127.0.0.1", port), timeout=15) as first:
        request_on(first, "/bare/first")
        assert sorted(ready_addresses(child)) == sorted([tcp, str(passed)])
        assert answer(first).endswith(b"\r\n\r\nbare wsgi /bare /first")
    for server, name, fd in taken:
        assert f"Serving {server} on the socket passed as {name!r} (fd {fd})" in child.output
    assert pid_in_pidfile(tmp_path) == child.pid  # executed in place, as systemd does
    assert get(port, "/bare/tcp")[:2] == (200, b"bare wsgi /bare /tcp")
    assert get_unix(str(passed), "/bare/unix") == (200, b"bare wsgi /bare /unix")
    assert not (tmp_path / "own.sock").exists()  # server.local bound nothing of its own

    # A restart in place hands systemd's sockets on to the new image.
    assert sorted(reloaded(child, signal.SIGHUP)) == sorted([tcp, str(passed)])
    assert get(port, "/bare/again")[:2] == (200, b"bare wsgi /bare /again")
    assert get_unix(str(passed), "/bare/again") == (200, b"bare wsgi /bare /again")
    assert pid_in_pidfile(tmp_path) == child.pid

    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    assert passed.exists()  # systemd's socket file: the site never removes it
    assert not (tmp_path / "site.pid").exists()


@NEEDS_SOCKET_ACTIVATE
@pytest.mark.parametrize("sockets, options, lines, error", [
    pytest.param(3, [], [], r"no server takes fd 5 \('unknown'\)", id="more sockets than servers"),
    pytest.param(2, ["--fdname=web:other"],
                 ["server.socket_fdname = 'web'", "server.local.socket_fdname = 'local'"],
                 r"no server takes fd 4 \('other'\)", id="a name no server claims"),
])
def test_sockets_no_server_takes_are_one_error_with_exit_78(
    spawn: Any, tmp_path: Path, sockets: int, options: list[str], lines: list[str], error: str
) -> None:
    port = free_port()
    listen = [f"127.0.0.1:{port}", str(tmp_path / "passed.sock"), f"127.0.0.1:{free_port()}"]
    write_site(tmp_path, site_config(tmp_path, *lines))
    child = socket_activate(spawn, listen[:sockets], *options)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as first:
        assert child.wait() == 78
        try:
            unanswered = first.recv(100)
        except ConnectionResetError:  # never accepted: reset as the listener closed
            unanswered = b""
        assert unanswered == b""
    errors = [line for line in child.output.splitlines() if line.startswith("sitebus: error:")]
    assert len(errors) == 1, child.output
    assert re.match(r"sitebus: error: LISTEN_FDS: " + error + r" \(of fd 3 .*\): add a server "
                    r"for each, name them with FileDescriptorName=", errors[0]), errors
    assert "Traceback" not in child.output and "Bus STARTING" not in child.output
    with pytest.raises(Timeout):  # systemd heard nothing: the start failed
        child.notify.wait_for("STATUS", timeout=0.5)  # the site is gone: all would be in
    for left in ("site.pid", "site.pid.status", "own.sock"):
        assert not (tmp_path / left).exists(), left


# -- the notify datagrams --------------------------------------------------------------------------


@pytest.mark.parametrize("use_systemd_python", BOTH_PATHS)
def test_notify_order_through_start_graceful_restart_and_stop(
    spawn: Any, tmp_path: Path, use_systemd_python: str
) -> None:
    child = run_site(spawn, tmp_path, site_config(tmp_path), "-p", "site.pid",
                     env={"SITEBUS_SYSTEMD_PYTHON": use_systemd_python})
    notify = child.notify
    port = tcp_port(ready_addresses(child))
    # SIGUSR1 is graceful; SIGUSR2 and SIGHUP (no terminal here) re-execute in place.
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        seen = len(notify.messages)
        before = monotonic_usec()
        child.send_signal(signum)
        reloading = notify.wait_for("RELOADING", "1", after=seen)
        assert before <= int(reloading["MONOTONIC_USEC"]) <= monotonic_usec()
        wait_after(notify, "READY", "1", reloading)
        assert get(port, "/bare/")[0] == 200  # the same port throughout
        assert pid_in_pidfile(tmp_path) == child.pid and child.popen.poll() is None
    seen = len(notify.messages)
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    notify.wait_for("STOPPING", "1", after=seen)

    events = [key for m in notify.messages for key in ("READY", "RELOADING", "STOPPING")
              if key in m]
    assert events == ["READY", "RELOADING", "READY", "RELOADING", "READY", "RELOADING", "READY",
                      "STOPPING"]
    running = (rf"Running; listening on 127\.0\.0\.1:{port}, "
               + re.escape(str(tmp_path / "own.sock")))
    restarting = [r"Restarting \(re-executing\)", "Starting", running]  # a new image starts
    expected = ["Starting", running, r"Reloading \(graceful\)", running, *restarting,
                *restarting, "Stopping"]
    statuses = [m["STATUS"] for m in notify.messages]
    assert len(statuses) == len(expected), statuses
    for status, pattern in zip(statuses, expected, strict=True):
        assert re.fullmatch(pattern, status), (status, pattern)
    how = "systemd-python" if use_systemd_python == "1" else "the standard library"
    assert child.output.count(f"Notifying systemd through {how}.") == 3  # one per image
    assert "SIGHUP caught with no terminal attached. Restarting." in child.output
    assert not (tmp_path / "own.sock").exists()  # the last image removed what the first bound


# -- the watchdog ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_watchdog_pings_at_half_the_interval_across_a_restart(spawn: Any, tmp_path: Path) -> None:
    interval = 0.2
    write_site(tmp_path, site_config(tmp_path))
    # As systemd: WATCHDOG_USEC for the unit, WATCHDOG_PID naming the service's own pid.
    child = spawn(python(AS_SYSTEMD, "--pid-vars", "WATCHDOG_PID", sys.executable, *SITEBUS_RUN),
                  env={"WATCHDOG_USEC": str(int(2 * interval * 1_000_000))})
    notify = child.notify
    latest = notify.wait_for("READY", "1")

    def pings(count: int, after: dict[str, str]) -> tuple[list[float], dict[str, str]]:
        arrivals = []
        for _ in range(count):
            after = wait_after(notify, "WATCHDOG", "1", after)
            arrivals.append(monotonic_usec() / 1e6)
        return arrivals, after

    arrivals, latest = pings(6, latest)
    elapsed = arrivals[-1] - arrivals[0]
    # Generous bounds: a busy machine delays pings, but they never come in a flood.
    assert 5 * interval * 0.5 <= elapsed <= 5 * interval * 10, arrivals
    assert "Pinging systemd's watchdog every 0.2 s." in child.output

    # The re-executed image finds WATCHDOG_PID still its own and pings on.
    child.send_signal(signal.SIGUSR2)
    restarting = wait_after(notify, "RELOADING", "1", latest)
    latest = wait_after(notify, "READY", "1", restarting)
    pings(2, latest)
    assert child.output.count("Pinging systemd's watchdog every 0.2 s.") == 2

    seen = len(notify.messages)
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    stopping = notify.wait_for("STOPPING", "1", after=seen)
    assert all("WATCHDOG" not in m for m in notify.messages[position(notify, stopping):])


# -- the file-descriptor store ---------------------------------------------------------------------


@pytest.mark.parametrize("use_systemd_python", BOTH_PATHS)
def test_fdstore_keeps_the_sockets_while_no_site_runs(
    spawn: Any, tmp_path: Path, use_systemd_python: str
) -> None:
    # FDSTORE= is what systemd (v254+) sets for a unit with FileDescriptorStoreMax=.
    env = {"FDSTORE": "16", "SITEBUS_SYSTEMD_PYTHON": use_systemd_python}
    first = run_site(spawn, tmp_path, site_config(tmp_path), name="first", env=env)
    ready = first.notify.wait_for("READY", "1")
    port = tcp_port(ready_addresses(first))
    stored = {m["FDNAME"]: first.notify.fds[i]
              for i, m in enumerate(first.notify.messages[:position(first.notify, ready)])
              if m.get("FDSTORE") == "1"}
    assert sorted(stored) == ["default", "local"]  # stored once bound, before READY=1
    assert [len(fds) for fds in stored.values()] == [1, 1]
    tcp_fd, unix_fd = stored["default"][0], stored["local"][0]
    with socket.socket(fileno=os.dup(tcp_fd)) as received_tcp, \
            socket.socket(fileno=os.dup(unix_fd)) as received_unix:
        assert received_tcp.getsockname() == ("127.0.0.1", port)
        assert received_unix.getsockname() == str(tmp_path / "own.sock")
    first.send_signal(signal.SIGKILL)  # the site is gone; only the store holds its sockets
    first.wait()

    # The test serves a request through a received socket itself...
    with socket.create_connection(("127.0.0.1", port), timeout=15) as client, \
            socket.socket(fileno=os.dup(tcp_fd)) as listener:
        listener.settimeout(15)
        request_on(client, "/anyone")
        connection, _ = listener.accept()
        with connection:
            assert connection.recv(100).startswith(b"GET /anyone HTTP/1.0\r\n")
            connection.sendall(b"HTTP/1.0 200 OK\r\n\r\nanswered by the test")
        assert answer(client) == b"HTTP/1.0 200 OK\r\n\r\nanswered by the test"

    # ...and connections made while no site runs wait for the next one, which systemd starts
    # with the store's sockets in LISTEN_FDS, under their names.
    with socket.create_connection(("127.0.0.1", port), timeout=15) as tcp, \
            socket.socket(socket.AF_UNIX) as unix:
        unix.settimeout(15)
        unix.connect(str(tmp_path / "own.sock"))
        request_on(tcp, "/bare/waited-on-tcp")
        request_on(unix, "/bare/waited-on-unix")
        second = spawn(python(AS_SYSTEMD, "--fds", f"{tcp_fd},{unix_fd}", "--pid-vars",
                              "LISTEN_PID", sys.executable, *SITEBUS_RUN),
                       env={**env, "LISTEN_FDNAMES": "default:local"}, name="second",
                       pass_fds=(tcp_fd, unix_fd))
        assert answer(tcp).endswith(b"\r\n\r\nbare wsgi /bare /waited-on-tcp")
        assert answer(unix).endswith(b"\r\n\r\nbare wsgi /bare /waited-on-unix")
    second.notify.wait_for("READY", "1")
    assert "Serving server on the socket passed as 'default' (fd 3)" in second.output
    assert "Serving server.local on the socket passed as 'local' (fd 4)" in second.output
    # systemd holds the sockets it passed already: they are not stored twice.
    assert all("FDSTORE" not in m for m in second.notify.messages)
    second.send_signal(signal.SIGTERM)
    assert second.wait() == 0
    assert (tmp_path / "own.sock").exists()  # the store's socket: its file stays with it


# -- journald --------------------------------------------------------------------------------------


def test_sitebus_run_logs_to_journald_with_priorities_and_fields(
    spawn: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run = journal_runner(spawn, tmp_path, request)  # skips where no journald can run
    write_site(tmp_path, site_config(tmp_path, "tree.reports = '/reports', 'apps:reports'"))
    notify = NotifySocket(tmp_path / "site.notify")
    try:
        # stderr is a journal stream, as systemd makes it: records go to journald instead.
        finish = run(python("-c", JOURNAL_STDERR, "journal", *SITEBUS_RUN),
                     until="MESSAGE=Bus EXITED", identifier="sitebus",
                     env={"TEST_NOTIFY_SOCKET": str(notify.path),
                          "TEST_STREAM_IDENTIFIER": "sitebus"})
        port = int(re.search(r"127\.0\.0\.1:(\d+)",
                             notify.wait_for("READY", "1")["STATUS"]).group(1))
        assert get(port, "/bare/hello")[0] == 200
        assert get(port, "/reports/")[0] == 200
        pid = wait_until(lambda: (tmp_path / "site.pid").exists() and pid_in_pidfile(tmp_path),
                         15, "the PID file")
        os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
        status, child, entries = finish()
    finally:
        notify.close()
    assert status == 0, child.output
    by_message = {e["MESSAGE"]: e for e in entries}
    started = by_message["Bus STARTED"]
    assert started["_TRANSPORT"] == "journal"  # sent as records, not as lines of stderr
    assert (started["PRIORITY"], started["SITEBUS_CONTEXT"], started["SITEBUS_STATE"]) == (
        "6", "ENGINE", "STARTED")
    assert started["_PID"] == str(pid)
    for message, priority in (("an app warns", "4"), ("an app reports an error", "3")):
        entry = by_message[message]
        assert (entry["PRIORITY"], entry["SITEBUS_CONTEXT"], entry["SYSLOG_IDENTIFIER"]) == (
            priority, "APP", "sitebus")
    assert by_message["Bus STOPPING"]["SITEBUS_STATE"] == "STOPPING"
    access = [e for e in entries if "GET /bare/hello HTTP/1.1" in e["MESSAGE"]]
    assert len(access) == 1, entries
    assert (access[0]["PRIORITY"], access[0]["SITEBUS_CONTEXT"]) == ("6", "sitebus.access")
    # One copy of each record: none also came through stderr as a plain line.
    assert all(e["_TRANSPORT"] == "journal" for e in entries), [
        e["MESSAGE"] for e in entries if e["_TRANSPORT"] != "journal"]
