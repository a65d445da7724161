"""The keep-alive drain and the bounded stop of a cheroot server, on real sockets in-process;
the hand-over's environment; and the cheroot hooks both rely on."""

from __future__ import annotations

import http.client
import inspect
import socket
import threading
import time
from typing import Any

import pytest
from cheroot import connections, makefile, server
from cheroot.workers import threadpool

from sitebus.bus import Bus, states
from sitebus.servers import handover
from sitebus.servers.drain import wait_for_empty_backlog
from sitebus.servers.server import Server
from tests.httpclients import GatedApp, connection, fetch, refuses
from tests.processes import wait_until

pytestmark = pytest.mark.timeout(60)


def serve(bus: Bus, app: Any, **settings: Any) -> Server:
    site_server = Server(bus, socket_port=0, wsgi_app=app, **settings)
    site_server.subscribe()
    bus.start()
    return site_server


def keep_alive(address: Any) -> http.client.HTTPConnection:
    """A connection that has had one answer and is now idle, kept alive by the server."""
    conn = connection(address)
    conn.request("GET", "/fast")
    response = conn.getresponse()
    assert (response.read(), response.getheader("Connection")) == (b"fast", None)
    return conn


def test_a_draining_server_serves_the_next_request_of_an_idle_connection_with_close(
        bus: Bus) -> None:
    app = GatedApp()
    site_server = serve(bus, app, shutdown_timeout=30)
    address = site_server.bound_addr
    in_flight: list[Any] = []
    slow = threading.Thread(target=lambda: in_flight.append(fetch(address, "/slow")[:2]))
    slow.start()
    assert app.entered.wait(15)
    idle = keep_alive(address)
    stopper = threading.Thread(target=bus.stop)
    stopper.start()
    wait_until(lambda: refuses(address), 15, "new connections to be refused")
    idle.request("GET", "/fast")  # the client did not know: no error, a last answer
    response = idle.getresponse()
    assert (response.status, response.read()) == (200, b"fast")
    assert response.getheader("Connection") == "close"
    assert idle.sock is None  # http.client closed it, as the answer said
    assert stopper.is_alive()  # still waiting for the request in flight
    app.gate.set()
    slow.join(15)
    stopper.join(15)
    assert in_flight == [(200, b"slow done")] and bus.state is states.STOPPED


def test_a_silent_connection_is_closed_after_the_idle_grace_not_the_shutdown_timeout(
        bus: Bus) -> None:
    site_server = serve(bus, GatedApp(), shutdown_timeout=30)
    site_server.httpserver.idle_grace = 0.3
    idle = keep_alive(site_server.bound_addr)
    began = time.monotonic()
    bus.stop()
    assert 0.3 <= time.monotonic() - began < 5
    assert idle.sock is not None and idle.sock.recv(1) == b""  # closed by the server
    idle.close()


def test_a_stop_cuts_a_request_past_the_shutdown_timeout_and_abandons_its_thread(
        bus: Bus) -> None:
    app = GatedApp()
    messages: list[str] = []
    bus.subscribe("log", lambda msg, level: messages.append(msg))
    site_server = serve(bus, app, shutdown_timeout=0.5)
    httpserver = site_server.httpserver
    outcome: list[Any] = []

    def stuck_request() -> None:
        try:
            outcome.append(fetch(site_server.bound_addr, "/slow")[:2])
        except (OSError, http.client.HTTPException) as error:
            outcome.append(type(error))

    client = threading.Thread(target=stuck_request)
    client.start()
    assert app.entered.wait(15)
    began = time.monotonic()
    bus.stop()
    took = time.monotonic() - began
    try:
        assert 0.5 <= took < 1.5, took
        client.join(15)
        assert outcome == [http.client.RemoteDisconnected]  # cut, not answered
        cut = [m for m in messages if m.startswith("Cut a request from 127.0.0.1:")]
        assert len(cut) == 1 and "server.shutdown_timeout 0.5" in cut[0], messages
        [thread] = httpserver.abandoned_threads
        assert thread.is_alive()  # Python cannot end it; the bus will not wait for it
        assert thread in bus._abandoned
    finally:
        app.gate.set()


def test_a_request_that_exits_the_bus_is_answered_and_not_waited_for(bus: Bus) -> None:
    """The reference's ``/exit`` handler: the stop waits for every request but the one that
    asked for it (which cannot end before the stop), and that one gets its answer."""
    messages: list[str] = []
    bus.subscribe("log", lambda msg, level: messages.append(msg))
    other = GatedApp()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/exit":
            bus.exit()
            start_response("200 OK", [("Content-Length", "3")])
            return [b"bye"]
        return list(other(environ, start_response))

    site_server = serve(bus, app, shutdown_timeout=30)
    address = site_server.bound_addr
    in_flight: list[Any] = []
    slow = threading.Thread(target=lambda: in_flight.append(fetch(address, "/slow")[:2]))
    slow.start()
    assert other.entered.wait(15)
    exiting: list[Any] = []
    exiter = threading.Thread(target=lambda: exiting.append(fetch(address, "/exit")))
    exiter.start()
    wait_until(lambda: refuses(address), 15, "the stop to begin")
    assert exiter.is_alive()  # the stop still waits for the other request in flight
    other.gate.set()
    exiter.join(15)
    slow.join(15)
    [(status, body, response)] = exiting
    assert (status, body, response.getheader("Connection")) == (200, b"bye", "close")
    assert in_flight == [(200, b"slow done")]
    assert bus.state is states.EXITING
    assert not [m for m in messages if m.startswith("Cut a request")], messages


def test_a_keyboard_interrupt_in_a_handler_exits_the_bus_without_an_answer(bus: Bus) -> None:
    """As in the reference (cheroot's ``interrupt``): the connection closes unanswered and
    the server's stop, run by that worker thread, does not wait for its own thread."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise KeyboardInterrupt

    address = serve(bus, app, shutdown_timeout=30).bound_addr
    with pytest.raises(http.client.RemoteDisconnected):
        fetch(address, "/ctrlc")
    wait_until(lambda: bus.state is states.EXITING, 15, "the bus to exit")
    assert refuses(address)


@pytest.mark.parametrize(("environ", "pid", "expected"), [
    ({}, 10, []),
    ({"SITEBUS_CONNECTIONS": "64:default,65:tls", "SITEBUS_CONNECTIONS_PID": "10"}, 10,
     [(64, "default"), (65, "tls")]),
    ({"SITEBUS_CONNECTIONS": "64:default", "SITEBUS_CONNECTIONS_PID": "11"}, 10, []),
    ({"SITEBUS_CONNECTIONS": "64:default,x:y,65:,", "SITEBUS_CONNECTIONS_PID": "10"}, 10,
     [(64, "default")]),
])
def test_handed_over_connections_are_read_only_by_their_process(
        environ: dict[str, str], pid: int, expected: list[tuple[int, str]]) -> None:
    assert handover.parse(environ, pid) == expected


def test_the_cheroot_hooks_the_drain_uses_are_there() -> None:
    """sitebus.servers.drain and CherootServer build on these public parts of cheroot; if a cheroot
    release renames or reshapes one, this fails first, naming it."""
    assert isinstance(inspect.getattr_static(server.HTTPServer, "can_add_keepalive_connection"),
                      property)
    for name in ("put_conn", "process_conn", "prepare", "serve", "stop"):
        assert callable(getattr(server.HTTPServer, name)), name
    assert server.HTTPServer.ConnectionClass is server.HTTPConnection
    assert "server" in inspect.signature(threadpool.WorkerThread.__init__).parameters
    for name in ("communicate", "close"):
        assert callable(getattr(server.HTTPConnection, name)), name
    assert server.HTTPConnection.linger is False
    assert list(inspect.signature(server.HTTPConnection.__init__).parameters) == [
        "self", "server", "sock", "makefile"]
    for name in ("put", "stop", "close", "run"):
        assert callable(getattr(connections.ConnectionManager, name)), name
    left, right = socket.socketpair()
    with left, right:
        reader = makefile.MakeFile(left, "rb")
        assert reader.has_data() is False
        reader.close()


def test_wait_for_empty_backlog_waits_for_the_queued_connections_to_be_accepted() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        assert wait_for_empty_backlog(listening, 0.05)
        with socket.create_connection(listening.getsockname()[:2]):
            assert not wait_for_empty_backlog(listening, 0.05)  # queued, nobody accepts
            accepter = threading.Timer(0.05, lambda: listening.accept()[0].close())
            accepter.start()
            assert wait_for_empty_backlog(listening, 5)
            accepter.join()
