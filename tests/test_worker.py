"""The pieces of pre-fork workers that run in one process: the pipe protocol, the request
tracker, the heartbeat's messages, the site's bus helpers, listen-only servers, settings."""

from __future__ import annotations

import os
import socket
import threading
import wsgiref.util
import wsgiref.validate
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sitebus.bus import states
from sitebus.errors import ConfigError
from sitebus.servers.server import Server
from sitebus.site.container import Engine, Site
from sitebus.workers.worker import Heartbeat, MessageReader, RequestTracker, encode


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def call(app: Any, path: str = "/") -> bytes:
    environ: dict[str, Any] = {"PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": ""}
    wsgiref.util.setup_testing_defaults(environ)
    result = app(environ, lambda status, headers, exc_info=None: lambda data: None)
    try:
        return b"".join(result)
    finally:
        result.close()


# -- the protocol ---------------------------------------------------------------------------


def test_messages_survive_any_split_of_the_stream() -> None:
    data = encode({"ready": 1}) + b"garbage\n" + encode({"beat": 1, "requests": 3})
    for cut in range(len(data) + 1):
        reader = MessageReader()
        assert reader.feed(data[:cut]) + reader.feed(data[cut:]) == [
            {"ready": 1}, {"beat": 1, "requests": 3}]


# -- the request tracker --------------------------------------------------------------------


def test_the_tracker_counts_requests_and_forgets_finished_ones() -> None:
    reached = []
    tracker = RequestTracker(limit=2, on_limit=lambda: reached.append(tracker.requests))
    app = wsgiref.validate.validator(tracker.wrap(hello))
    assert call(app) == b"hello"
    assert tracker.requests == 1 and reached == [] and tracker.started == {}
    call(app)
    call(app)
    assert tracker.requests == 3 and reached == [2]
    assert tracker.oldest(0.0) is None


def test_a_streamed_response_is_in_flight_until_closed() -> None:
    closed = []

    def streaming(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            yield b"a"
            yield b"b"
        finally:
            closed.append(True)

    tracker = RequestTracker()
    result = tracker.wrap(streaming)(
        {"PATH_INFO": "/"}, lambda status, headers, exc_info=None: None)
    assert next(iter(result)) == b"a"
    assert list(tracker.started) == [threading.get_ident()]
    assert tracker.oldest(tracker.started[threading.get_ident()] + 7) == 7
    result.close()
    assert tracker.started == {} and closed == [True]


def test_a_failing_app_is_not_left_in_flight() -> None:
    def failing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    tracker = RequestTracker()
    with pytest.raises(RuntimeError):
        tracker.wrap(failing)({}, None)
    assert tracker.started == {} and tracker.requests == 1


# -- the heartbeat --------------------------------------------------------------------------


def test_the_heartbeat_says_ready_beats_and_stopping() -> None:
    read_fd, write_fd = os.pipe()
    bus = Engine()
    tracker = RequestTracker()
    beat = Heartbeat(bus, write_fd, os.getppid(), 3600, tracker, stop_grace=3600)
    beat.subscribe()
    reader = MessageReader()
    try:
        bus.start()
        bus.call_in_main_thread(beat.beat)
        bus.call_in_main_thread(bus.exit)
        bus.block()
        messages = reader.feed(os.read(read_fd, 65536))
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert beat._deadline is not None  # a worker that does not end in time ends anyway
    beat._deadline.cancel()
    assert [next(iter(m)) for m in messages] == ["ready", "beat", "stopping"]
    assert messages[1]["requests"] == 0 and messages[1]["rss"] > 1 << 20
    assert messages[1]["oldest"] is None


def test_a_beat_that_finds_the_master_gone_stops_the_worker() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # the master's end is gone
    bus = Engine()
    beat = Heartbeat(bus, write_fd, os.getppid(), 3600, RequestTracker(), stop_grace=3600)
    beat.subscribe()
    try:
        bus.start()
        beat.beat()
        assert bus.state is states.EXITING
    finally:
        os.close(write_fd)
        if beat._deadline is not None:
            beat._deadline.cancel()


def test_a_start_failure_reaches_the_master_with_its_exit_code() -> None:
    read_fd, write_fd = os.pipe()
    try:
        beat = Heartbeat(Engine(), write_fd, os.getppid(), 3600, RequestTracker())
        code = beat.report_failure(ConfigError("cannot load it", key="tree.x"))
        assert code == 78
        assert MessageReader().feed(os.read(read_fd, 65536)) == [
            {"error": "tree.x: cannot load it", "code": 78}]
    finally:
        os.close(read_fd)
        os.close(write_fd)


# -- the site's bus -------------------------------------------------------------------------


class Owner:
    def start(self) -> None:
        pass

    start.priority = 10  # type: ignore[attr-defined]


def test_listeners_taken_and_put_back_keep_priority_and_order() -> None:
    bus = Engine()
    owner = Owner()
    first, second = (lambda: None), (lambda: None)
    bus.subscribe("start", first, 60)
    bus.subscribe("start", owner.start)
    bus.subscribe("start", second, 60)
    taken = bus.take_listeners(lambda channel, callback: callback in (first, second))
    assert taken == [("start", first, 60), ("start", second, 60)]
    assert bus.listeners["start"] == {owner.start}
    bus.put_listeners(taken)
    assert bus._ordered["start"] == (owner.start, first, second)


def test_reset_after_fork_gives_a_stopped_bus_with_free_locks() -> None:
    bus = Engine()
    bus.start()
    # Hold the lifecycle lock from a thread that then ends, as a thread of the parent that
    # does not exist in the child would: without the reset, exit() would wait for ever.
    holder = threading.Thread(target=bus._lifecycle_lock.acquire)
    holder.start()
    holder.join()
    bus.reset_after_fork()
    assert bus.state is states.STOPPED
    bus.start()
    assert bus.state is states.STARTED
    bus.exit()
    assert bus.state is states.EXITING


# -- servers: the master listens, the workers serve -----------------------------------------


def test_a_listen_only_server_binds_and_a_worker_takes_over_without_owning(
        tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    master = Engine()
    server = Server(master, socket_file=path, wsgi_app=hello)
    server.listen_only = True
    server.subscribe()
    master.start()
    assert server.listening_socket is not None and server.httpserver is None
    assert os.path.exists(path)
    listening = server.listening_socket
    worker = Engine()
    server.bus = worker
    server.unsubscribe()
    server.take_over()
    server.subscribe()
    worker.start()
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(path)
        client.sendall(b"GET / HTTP/1.0\r\n\r\n")
        response = b"".join(iter(lambda: client.recv(4096), b""))
        assert response.startswith(b"HTTP/1.1 200 OK") and response.endswith(b"hello")
    worker.exit()
    assert os.path.exists(path), "a worker leaves the master's socket file"
    assert listening.fileno() >= 0
    listening.close()
    os.unlink(path)
    master.exit()


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, message", [
    ("server.workers", -1, "server.workers: expected a number of worker processes"),
    ("server.worker_timeout", "30", "server.worker_timeout: expected a number of seconds"),
    ("server.max_rss", -2, "server.max_rss: expected a number of bytes"),
    ("server.preload", "yes", "server.preload: expected True or False"),
])
def test_worker_settings_are_checked_by_name(key: str, value: Any, message: str) -> None:
    site = Site()
    site.config.update({key: value})
    with pytest.raises(ConfigError, match=message):
        site.check()


def test_worker_settings_belong_to_the_site_not_to_a_server() -> None:
    with pytest.raises(ConfigError, match=r"server.tls.workers: .*use server.workers"):
        Site().config.update({"server.tls.workers": 2})


def test_workers_need_a_server_that_listens() -> None:
    site = Site()
    site.config.update({"server.workers": 2, "server.type": "cgi"})
    with pytest.raises(ConfigError, match=r"server.type: expected a server type that listens"):
        site.check()


def test_tree_entries_wait_while_apps_are_deferred() -> None:
    site = Site()
    site.defer_apps()
    site.config.update({"tree.hello": ("/hi", "tests.test_worker:hello"),
                        "tree.missing": ("/x", "no_such_module_here:app")})
    assert site.tree.apps == {}
    with pytest.raises(ConfigError, match="tree.missing: cannot import module 'no_such"):
        site.mount_deferred()
    assert site.tree.apps == {"/hi": hello}


def test_the_tracker_counts_a_server_that_cannot_answer() -> None:
    class Stalled:
        def __init__(self, age: float | None) -> None:
            self.age = age

        def stalled(self, now: float) -> float | None:
            return self.age

    class FakeServer:
        def __init__(self, age: float | None) -> None:
            self.httpserver = Stalled(age)

    tracker = RequestTracker()
    tracker.servers = [FakeServer(None), FakeServer(42.0), type("NotBuilt", (), {})()]
    assert tracker.oldest(100.0) == 42.0
    tracker.started[1] = 10.0
    assert tracker.oldest(100.0) == 90.0
    tracker.servers = [FakeServer(None)]
    tracker.started.clear()
    assert tracker.oldest(100.0) is None
