"""sitebus.systemd in-process: the pure decisions (tables), and notify over real sockets."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sitebus import systemd
from sitebus.bus import Bus, ChannelFailures
from sitebus.errors import ConfigError, UnavailableError, exit_code_of, root_causes
from sitebus.systemd import (
    Claim,
    assign_listeners,
    journal_stream_matches,
    listen_environ,
    notify_message,
    parse_listen_fds,
    protocol,
    watchdog_interval,
)
from tests.processes import NotifySocket

PID = 4242

try:
    import systemd.daemon as _systemd_daemon  # noqa: F401

    HAVE_SYSTEMD_PYTHON = True
except ImportError:
    HAVE_SYSTEMD_PYTHON = False

BOTH_PATHS = [
    pytest.param(False, id="stdlib"),
    pytest.param(True, id="systemd-python", marks=pytest.mark.skipif(
        not HAVE_SYSTEMD_PYTHON, reason="systemd-python is not installed "
        "(apt-get install libsystemd-dev pkg-config; pip install systemd-python)")),
]


@pytest.fixture(params=BOTH_PATHS)
def notify_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(protocol, "prefer_systemd_python", request.param)
    return bool(request.param)


# -- parse_listen_fds --------------------------------------------------------------------------


@pytest.mark.parametrize("environ, expected", [
    ({}, []),
    ({"LISTEN_FDS": "2"}, []),  # no LISTEN_PID: not for us
    ({"LISTEN_PID": "1", "LISTEN_FDS": "2"}, []),  # another process's
    ({"LISTEN_PID": str(PID)}, []),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "0"}, []),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1"}, [(3, "unknown")]),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "3"}, [(3, "unknown"), (4, "unknown"),
                                                   (5, "unknown")]),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:admin"},
     [(3, "http"), (4, "admin")]),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:web"},
     [(3, "web"), (4, "web")]),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "0", "LISTEN_FDNAMES": ""}, []),
])
def test_parse_listen_fds(environ: dict[str, str], expected: list[tuple[int, str]]) -> None:
    assert parse_listen_fds(environ, PID) == expected


@pytest.mark.parametrize("environ, key, words", [
    ({"LISTEN_PID": "me", "LISTEN_FDS": "1"}, "LISTEN_PID", "'me'"),
    ({"LISTEN_PID": "0", "LISTEN_FDS": "1"}, "LISTEN_PID", "at least 1"),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "two"}, "LISTEN_FDS", "'two'"),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "-1"}, "LISTEN_FDS", "at least 0"),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "one"},
     "LISTEN_FDNAMES", "names 1 sockets ('one') but LISTEN_FDS=2"),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"},
     "LISTEN_FDNAMES", "names 2 sockets"),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "0", "LISTEN_FDNAMES": "a"},
     "LISTEN_FDNAMES", "LISTEN_FDS=0"),
])
def test_parse_listen_fds_rejects_bad_values(environ: dict[str, str], key: str,
                                             words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_listen_fds(environ, PID)
    assert caught.value.exit_code == 78
    assert str(caught.value).startswith(f"{key}: ")
    assert words in str(caught.value)


def test_listen_environ_is_what_parse_reads() -> None:
    environ = listen_environ(["http", "admin"], PID)
    assert environ == {"LISTEN_PID": "4242", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:admin"}
    assert parse_listen_fds(environ, PID) == [(3, "http"), (4, "admin")]
    with pytest.raises(ConfigError, match="without ':', got 'a:b'"):
        listen_environ(["a:b"], PID)


@pytest.mark.parametrize("name, ok", [
    ("web", True), ("sitebus.socket", True), ("a b", True), ("x" * 255, True),
    ("", False), ("x" * 256, False), ("a:b", False), ("tab\there", False), ("é", False),
])
def test_check_fdname(name: str, ok: bool) -> None:
    if ok:
        assert systemd.check_fdname(name) == name
    else:
        with pytest.raises(ConfigError):
            systemd.check_fdname(name)


# -- assign_listeners --------------------------------------------------------------------------

P2 = [(3, "http"), (4, "admin")]
UNNAMED = [(3, "unknown"), (4, "unknown")]


@pytest.mark.parametrize("passed, claims, expected", [
    # nothing passed: every server binds its own address
    ([], [Claim("server", can_bind=True)], {}),
    ([], [], {}),
    # in order from fd 3
    (UNNAMED, [Claim("a"), Claim("b")], {"a": 3, "b": 4}),
    ([(3, "sitebus.socket")], [Claim("server", can_bind=True)], {"server": 3}),
    # by configured name, whatever the order
    (P2, [Claim("x", "admin"), Claim("y", "http")], {"x": 4, "y": 3}),
    # by the server's own name (how stored sockets come back)
    (P2, [Claim("admin", can_bind=True), Claim("http", can_bind=True)],
     {"admin": 4, "http": 3}),
    # names first, then the rest in order
    (P2, [Claim("main"), Claim("admin")], {"main": 3, "admin": 4}),
    # a server that cannot bind gets the leftover before one that can
    ([(3, "sitebus.socket")], [Claim("extra", can_bind=True), Claim("main")], {"main": 3}),
    # a named server that can bind and finds nothing binds itself
    ([(3, "unknown")], [Claim("a"), Claim("b", "other", can_bind=True)], {"a": 3}),
    # the same name twice: one each, in fd order
    ([(3, "web"), (4, "web")], [Claim("a", "web"), Claim("b", "web")], {"a": 3, "b": 4}),
])
def test_assign_listeners(passed: list[tuple[int, str]], claims: list[Claim],
                          expected: dict[str, int]) -> None:
    assert assign_listeners(passed, claims) == expected


@pytest.mark.parametrize("passed, claims, words", [
    # more servers than sockets
    ([(3, "unknown")], [Claim("a"), Claim("b")],
     ["server 'b' needs a socket and has no address of its own",
      "systemd passed: fd 3 ('unknown')"]),
    ([], [Claim("a")], ["server 'a' needs a socket", "systemd passed: none"]),
    # a name that was not passed
    (P2, [Claim("a", "web"), Claim("b"), Claim("c")],
     ["server 'a' needs the socket named 'web'"]),
    # more sockets than servers
    (UNNAMED, [Claim("a")], ["no server takes fd 4 ('unknown')"]),
    (P2, [Claim("x", "admin")], ["no server takes fd 3 ('http') (of fd 3 ('http'), "
                                 "fd 4 ('admin'))", "FileDescriptorName="]),
    # both at once
    (P2, [Claim("a", "web"), Claim("b", "http")],
     ["server 'a' needs the socket named 'web'", "no server takes fd 4 ('admin')"]),
])
def test_assign_listeners_mismatch_names_what_is_missing_and_extra(
    passed: list[tuple[int, str]], claims: list[Claim], words: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        assign_listeners(passed, claims)
    assert caught.value.exit_code == 78
    for word in words:
        assert word in str(caught.value)


# -- notify_message, watchdog_interval, journal_stream_matches ---------------------------------


@pytest.mark.parametrize("fields, text", [
    ({"READY": 1}, "READY=1"),
    ({"READY": True, "STATUS": "Running; listening on 127.0.0.1:80"},
     "READY=1\nSTATUS=Running; listening on 127.0.0.1:80"),
    ({"RELOADING": 1, "MONOTONIC_USEC": 123456789}, "RELOADING=1\nMONOTONIC_USEC=123456789"),
    ({"FDSTORE": 1, "FDNAME": "web"}, "FDSTORE=1\nFDNAME=web"),
    ({"WATCHDOG": False}, "WATCHDOG=0"),
    ({}, ""),
])
def test_notify_message(fields: dict[str, Any], text: str) -> None:
    assert notify_message(**fields) == text


@pytest.mark.parametrize("fields", [{"ready": 1}, {"STATUS": "two\nlines"}, {"X-Y": 1}])
def test_notify_message_rejects_what_would_break_the_protocol(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        notify_message(**fields)


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": ""}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(PID)}, 0.5),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, None),  # someone else's watchdog
    ({"WATCHDOG_PID": str(PID)}, None),
])
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ, PID) == expected


@pytest.mark.parametrize("environ, key", [
    ({"WATCHDOG_USEC": "soon"}, "WATCHDOG_USEC"),
    ({"WATCHDOG_USEC": "0"}, "WATCHDOG_USEC"),
    ({"WATCHDOG_USEC": "100", "WATCHDOG_PID": "x"}, "WATCHDOG_PID"),
])
def test_watchdog_interval_rejects_bad_values(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: "):
        watchdog_interval(environ, PID)


def _stat(dev: int, ino: int) -> os.stat_result:
    return os.stat_result((0o020620, ino, dev, 1, 0, 0, 0, 0, 0, 0))


@pytest.mark.parametrize("environ, stderr, expected", [
    ({"JOURNAL_STREAM": "8:12345"}, _stat(8, 12345), True),
    ({"JOURNAL_STREAM": "8:12345"}, _stat(8, 12346), False),  # stderr was redirected
    ({"JOURNAL_STREAM": "9:12345"}, _stat(8, 12345), False),
    ({}, _stat(8, 12345), False),
    ({"JOURNAL_STREAM": "8:12345"}, None, False),  # stderr closed
    ({"JOURNAL_STREAM": "garbage"}, _stat(8, 12345), False),
    ({"JOURNAL_STREAM": "8:"}, _stat(8, 0), False),
])
def test_journal_stream_matches(environ: dict[str, str], stderr: os.stat_result | None,
                                expected: bool) -> None:
    assert journal_stream_matches(environ, stderr) is expected


@pytest.mark.parametrize("value, expected", [
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@sitebus/notify", "\0sitebus/notify"),
])
def test_notify_address(value: str, expected: str) -> None:
    assert systemd.notify_address(value) == expected


@pytest.mark.parametrize("value", ["relative/path", "@", "vsock:2:1234"])
def test_notify_address_rejects_what_it_cannot_reach(value: str) -> None:
    with pytest.raises(UnavailableError, match="NOTIFY_SOCKET: expected an absolute path"):
        systemd.notify_address(value)


# -- notify over real sockets, both implementations ---------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    recorder = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(recorder.path))
    yield recorder
    recorder.close()


def test_notify_is_a_no_op_without_notify_socket(notify_path: bool) -> None:
    assert systemd.notify("READY=1") is False
    assert systemd.store_fds({"web": 0}) == 0


def test_notify_sends_one_datagram(notify_path: bool, notify_socket: NotifySocket) -> None:
    assert systemd.notify(notify_message(READY=1, STATUS="Running")) is True
    assert notify_socket.wait_for("READY", "1") == {"READY": "1", "STATUS": "Running"}


def test_notify_reaches_an_abstract_socket(notify_path: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"sitebus-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("STOPPING=1") is True
        assert receiver.recv(1024) == b"STOPPING=1"


def test_notify_to_a_missing_socket_raises_oserror(notify_path: bool, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-here"))
    with pytest.raises(OSError):
        systemd.notify("READY=1")


def test_store_fds_carries_a_socket_that_still_accepts(
    notify_path: bool, notify_socket: NotifySocket
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    assert systemd.store_fds({"web": listener}) == 1
    message = notify_socket.wait_for("FDSTORE", "1")
    assert message == {"FDSTORE": "1", "FDNAME": "web"}
    [fds] = notify_socket.fds
    assert len(fds) == 1
    listener.close()  # only the stored copy is left, as when the site has exited
    with socket.socket(fileno=os.dup(fds[0])) as stored, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        stored.settimeout(10)
        connection, _ = stored.accept()
        with connection:
            connection.sendall(b"served through the stored socket")
        assert client.recv(100) == b"served through the stored socket"


def test_store_fds_rejects_a_bad_name_before_sending(notify_socket: NotifySocket) -> None:
    with pytest.raises(ConfigError, match="FDNAME: .*got 'a:b'"):
        systemd.store_fds({"a:b": 0})
    assert notify_socket.messages == []


# -- the plugin in-process: idle costs nothing ----------------------------------------------------


def test_notifier_without_watchdog_starts_no_thread(notify_socket: NotifySocket) -> None:
    bus = Bus()
    plugin = systemd.SystemdNotifier(bus)
    plugin.subscribe()
    before = threading.active_count()
    seen: dict[str, Any] = {}

    def watch_then_exit() -> None:
        seen["ready"] = notify_socket.wait_for("READY", "1")
        seen["threads"] = threading.active_count()
        bus.exit()

    bus.start()
    threading.Thread(target=watch_then_exit, daemon=True).start()
    bus.block()  # READY=1 is sent from here, as in a real site
    assert seen["ready"]["STATUS"] == "Running"
    assert seen["threads"] == before + 1  # the watcher only: no watchdog thread
    assert plugin.interval is None
    assert notify_socket.wait_for("STOPPING", "1")["STATUS"] == "Stopping"
    plugin.unsubscribe()
    assert all(plugin.started not in listeners for listeners in bus.listeners.values())


@pytest.mark.parametrize("attr, value, key", [
    ("watchdog", "yes", "engine.systemd.watchdog"),
    ("fdstore", 1, "engine.systemd.fdstore"),
])
def test_notifier_rejects_bad_settings_at_start(attr: str, value: object, key: str) -> None:
    bus = Bus()
    plugin = systemd.SystemdNotifier(bus)
    setattr(plugin, attr, value)
    plugin.subscribe()
    with pytest.raises(ChannelFailures) as caught:
        bus.start()
    [error] = root_causes(caught.value)
    assert isinstance(error, ConfigError) and str(error).startswith(f"{key}: expected True")
    assert exit_code_of(caught.value) == 78
    assert bus.state is bus.states.EXITING


def test_running_status_names_the_listening_addresses(tmp_path: Path) -> None:
    bus = Bus()
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "site.sock"))
    with tcp, unix:
        bus.inherit_fds.update({tcp.fileno(): "web", unix.fileno(): "local"})
        text = systemd.SystemdNotifier(bus).running_status()
        port = tcp.getsockname()[1]
    assert text == f"Running; listening on 127.0.0.1:{port}, {tmp_path / 'site.sock'}"
    assert systemd.SystemdNotifier(Bus()).running_status() == "Running"


def test_notifier_watchdog_thread_ends_with_the_bus(notify_socket: NotifySocket,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    bus = Bus()
    plugin = systemd.SystemdNotifier(bus)
    plugin.subscribe()
    seen: dict[str, Any] = {}

    def watch_then_exit() -> None:
        ready = notify_socket.wait_for("READY", "1")
        seen["ping"] = notify_socket.wait_for("WATCHDOG", "1",
                                              after=notify_socket.messages.index(ready))
        seen["threads"] = [t.name for t in threading.enumerate()]
        bus.exit()

    bus.start()
    threading.Thread(target=watch_then_exit, daemon=True).start()
    bus.block()
    assert seen["ping"] == {"WATCHDOG": "1"}
    assert "systemd watchdog" in seen["threads"]
    assert plugin.interval == 0.05
    assert "systemd watchdog" not in [t.name for t in threading.enumerate()]


# -- listen_fds and journald, the parts that need no other process ------------------------------


def test_listen_fds_removes_variables_meant_for_another_process(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LISTEN_PID", "1")
    monkeypatch.setenv("LISTEN_FDS", "2")
    monkeypatch.setenv("LISTEN_FDNAMES", "a:b")
    assert systemd.listen_fds() == []
    assert not [key for key in os.environ if key.startswith("LISTEN_")]


def test_listen_fds_removes_the_variables_even_when_they_are_wrong(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "many")
    with pytest.raises(ConfigError, match="LISTEN_FDS: expected an integer"):
        systemd.listen_fds()
    assert "LISTEN_PID" not in os.environ


def test_journal_is_not_used_when_stderr_is_not_the_journal(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert systemd.log_to_journal() is None


def test_journal_asked_for_without_systemd_python_names_the_package(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # import fails as if missing
    with pytest.raises(UnavailableError, match=r"pip install sitebus\[systemd\]") as caught:
        systemd.log_to_journal(force=True)
    assert caught.value.exit_code == 69
    stderr = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{stderr.st_dev}:{stderr.st_ino}")
    assert systemd.log_to_journal() is None  # automatic: plain stderr still reaches journald


@pytest.mark.skipif(not HAVE_SYSTEMD_PYTHON, reason="systemd-python is not installed")
def test_journal_handler_is_attached_with_identifier_and_fields() -> None:
    logger = logging.getLogger("sitebus-journal-test")
    bus = Bus()
    handler = systemd.log_to_journal(bus, logger=logger.name, identifier="shop", force=True)
    try:
        assert handler in logger.handlers
        assert type(handler).__name__ == "JournalHandler"
        assert handler._extra["SYSLOG_IDENTIFIER"] == "shop"  # type: ignore[union-attr]
        record = logger.makeRecord(logger.name, 30, __file__, 1, "x", (), None,
                                   extra={"context": "HTTP"})
        assert handler.filter(record)  # type: ignore[union-attr]
        assert (record.SITEBUS_CONTEXT, record.SITEBUS_STATE) == ("HTTP", "STOPPED")
    finally:
        logger.removeHandler(handler)  # type: ignore[arg-type]


def test_notifier_refuses_to_start_with_a_bad_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    bus = Bus()
    systemd.SystemdNotifier(bus).subscribe()
    with pytest.raises(ChannelFailures) as caught:
        bus.start()
    assert [str(e) for e in root_causes(caught.value)] == [
        "WATCHDOG_USEC: expected an integer of at least 1, got 'soon'"]
