"""Clients that keep their connections open lose no request when a server retires.

Eight PersistentClients (one ``http.client`` connection each, reused until the server
answers ``Connection: close``) send back to back while the site reloads its workers, restarts
in place, or stops; every reset, ``RemoteDisconnected`` or 5xx is a failure. And a stop is
bounded: a handler that never returns is cut at ``server.shutdown_timeout``.
"""

from __future__ import annotations

import http.client
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sites import ClientCrowd, ready_addresses, reloaded, run_site, tcp_port
from tests.integration.worker_sites import (
    APP,
    WorkerRecorder,
    recorder_fixture,  # noqa: F401 (the fixture recorder, autouse)
    site_config,
    start_site,
    wait_for_workers,
    write_app,
)
from tests.processes import wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def test_rolling_reloads_lose_no_request_of_kept_alive_clients(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path)
    current = wait_for_workers(tmp_path, 2)
    crowd = ClientCrowd(port, "/", clients=8)
    crowd.start()
    try:
        crowd.more_answers(20, "answers before the reloads")
        for _reload in range(4):
            reloaded(child, signal.SIGUSR1)
            current = wait_for_workers(tmp_path, 2, not_among=current)
            crowd.more_answers(20, "answers from the new workers")
    finally:
        crowd.finish()
    assert crowd.failures == []
    # The old workers told each client to reconnect (Connection: close) rather than dropping
    # its connection: each client opened new connections along the way.
    assert crowd.connections > len(crowd.clients)
    pids = {int(body.split()[0]) for client in crowd.clients for body in client.answers[-3:]}
    assert pids <= current
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0


def test_restarts_in_place_lose_no_request_of_kept_alive_clients(
        spawn: Any, tmp_path: Path) -> None:
    write_app(tmp_path, APP)
    child = run_site(spawn, tmp_path, site_config(workers=0), "-p", "site.pid")
    port = tcp_port(ready_addresses(child))
    crowd = ClientCrowd(port, "/", clients=8)
    crowd.start()
    try:
        crowd.more_answers(20, "answers before the restarts")
        for _restart in range(4):
            reloaded(child, signal.SIGUSR2)
            crowd.more_answers(20, "answers from the new image")
    finally:
        crowd.finish()
    assert crowd.failures == []
    assert {int(client.answers[-1].split()[0]) for client in crowd.clients} == {child.pid}
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0


def test_a_stop_cuts_a_handler_that_never_returns_at_the_shutdown_timeout(
        spawn: Any, tmp_path: Path) -> None:
    write_app(tmp_path, APP)
    child = run_site(spawn, tmp_path, site_config("server.shutdown_timeout = 1", workers=0),
                     "-p", "site.pid")
    port = tcp_port(ready_addresses(child))
    crowd = ClientCrowd(port, "/slow?3600", clients=1)  # as good as never
    crowd.clients[0].timeout = 60
    crowd.start()
    try:
        child.wait_for_output("in handler")
        began = time.monotonic()
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0
        took = time.monotonic() - began
    finally:
        crowd.finish()
    # The timeout plus one second, and half a second for the signal and the reaping on a
    # loaded machine.
    assert took < 1 + 1 + 0.5, took
    assert "Cut a request from 127.0.0.1:" in child.output
    assert "server.shutdown_timeout 1" in child.output
    assert "Exiting without the abandoned threads" in child.output
    assert not (tmp_path / "site.pid").exists()


def test_sigwinch_reopens_the_log_files_of_master_and_workers_without_a_reload(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path, "log.access_file = 'access.log'",
                             "log.error_file = 'error.log'")
    workers = wait_for_workers(tmp_path, 2)
    crowd = ClientCrowd(port, "/", clients=4)
    crowd.start()
    try:
        crowd.more_answers(10, "answers before the rotation")
        (tmp_path / "access.log").rename(tmp_path / "access.log.1")
        (tmp_path / "error.log").rename(tmp_path / "error.log.1")
        child.send_signal(signal.SIGWINCH)  # logrotate's postrotate
        wait_until(lambda: child.output.count("Caught signal SIGWINCH.") == 3, 30,
                   "the master and both workers to catch SIGWINCH")
        crowd.more_answers(10, "answers after the rotation")
    finally:
        crowd.finish()
    assert crowd.failures == []
    assert wait_for_workers(tmp_path, 2) == workers  # nothing was reloaded
    old = (tmp_path / "access.log.1").read_text().count("\n")
    wait_until(lambda: (tmp_path / "access.log").read_text().count("\n") + old
               == crowd.answered, 30, "every answer in one of the two access logs")
    assert (tmp_path / "access.log").stat().st_size > 0
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0
    # The master's and the workers' last lines went to the new error log, none to the old.
    rotated, new = ((tmp_path / name).read_text() for name in ("error.log.1", "error.log"))
    assert "Bus STOPPING" not in rotated
    assert new.count("Bus STOPPING") == 3, new


def test_a_restart_hands_idle_connections_to_the_new_image(spawn: Any, tmp_path: Path) -> None:
    """A client idle on its connection across the restart keeps it and gets its answer from
    the new image; one that sends its request as the restart begins gets its answer too,
    from the new image on the same connection, or from the old one with Connection: close
    when the request came before the drain handed its connection over."""
    write_app(tmp_path, APP)
    child = run_site(spawn, tmp_path, site_config(workers=0), "-p", "site.pid")
    port = tcp_port(ready_addresses(child))
    idle, eager = (http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in "ab")
    for connection in (idle, eager):
        connection.request("GET", "/")
        assert connection.getresponse().read().split()[0] == str(child.pid).encode()
    sockets = (idle.sock, eager.sock)
    seen = len(child.notify.messages)
    child.send_signal(signal.SIGUSR2)
    child.notify.wait_for("RELOADING", "1", after=seen)
    eager.request("GET", "/")  # sent while the old image drains or the new one starts
    ready_addresses(child, after=seen + 1)
    response = eager.getresponse()
    assert response.status == 200
    told_to_close = response.getheader("Connection") == "close"
    response.read()
    assert told_to_close or eager.sock is sockets[1]
    idle.request("GET", "/")
    response = idle.getresponse()
    assert (response.status, response.getheader("Connection")) == (200, None)
    response.read()
    assert idle.sock is sockets[0]  # the same connection, never reopened
    for connection in (idle, eager):
        connection.close()
    assert "Closed" not in child.output
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0
