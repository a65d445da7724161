"""Restarts keep the listening sockets: no refused connection, no lost request, no leaked fd."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sites import (
    ClientCrowd,
    SteadyClient,
    get,
    get_unix,
    ready_addresses,
    reloaded,
    run_site,
    tcp_port,
)
from tests.processes import wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

SLOW_APP = '''
import sys
import time

def slow(environ, start_response):
    print("in handler", file=sys.stderr, flush=True)
    time.sleep(float(environ["QUERY_STRING"] or 0))
    body = b"slept"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [body]
'''


def fd_kinds(pid: int) -> Counter[str]:
    """Count a process's open descriptors by kind: socket, pipe, or the file's path."""
    kinds: Counter[str] = Counter()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if ".status-" in target:  # the status file's temporary, caught while it is written
            continue
        if target.startswith(("socket:", "pipe:", "anon_inode:")):
            target = target.split(":")[0]
        elif "site.pid" in target:  # the lock: on the file, or on the temporary it was
            target = "the PID file"
        kinds[target] += 1
    return kinds


def test_ten_restarts_under_a_steady_client_fail_no_request(spawn: Any, tmp_path: Path) -> None:
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      f"server.unix.socket_file = '{tmp_path}/site.sock'\n"
                                      "engine.autoreload.on = False\n"
                                      "tree.bare = '/bare', 'apps:hello'\n", "-p", "site.pid")
    port = tcp_port(ready_addresses(child))
    fds_before = fd_kinds(child.pid)
    client = SteadyClient(port, "/bare/")
    crowd = ClientCrowd(port, "/bare/", clients=4)  # and clients that keep their connections
    client.start()
    crowd.start()
    try:
        for restart in range(10):
            assert reloaded(child, signal.SIGUSR2)
            assert get_unix(str(tmp_path / "site.sock"), "/bare/")[0] == 200, restart
            crowd.more_answers(2, "kept-alive clients answered by the new image")
    finally:
        client.finish()
        crowd.finish()
    assert client.failures == []
    assert crowd.failures == []
    assert len(client.answers) >= 10
    # Only the listeners crossed the exec: after ten restarts the process holds what it held
    # before (listening sockets, the PID file lock, the wake-up pipe, its logs), not more.
    # Connections come and go, so sockets may be fewer than before, never more.
    after: list[Counter[str]] = []

    def as_before() -> bool:
        after[:] = [fd_kinds(child.pid)]
        sockets_before, sockets_after = fds_before.pop("socket", 0), after[0].pop("socket", 0)
        same = after[0] == fds_before and sockets_after <= sockets_before
        fds_before["socket"], after[0]["socket"] = sockets_before, sockets_after
        return same

    try:
        wait_until(as_before, 10, "the descriptors to be as before the restarts")
    except AssertionError:
        raise AssertionError(f"before: {fds_before}\nafter:  {after[0]}") from None
    assert (tmp_path / "site.pid").read_text().strip() == str(child.pid)
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    assert not (tmp_path / "site.sock").exists()  # the restarted image still owned it


def test_a_request_in_flight_during_a_restart_completes(spawn: Any, tmp_path: Path) -> None:
    (tmp_path / "slowapp.py").write_text(SLOW_APP)
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      "engine.autoreload.on = False\n"
                                      "tree.slow = '/slow', 'slowapp:slow'\n")
    port = tcp_port(ready_addresses(child))
    outcome: list[Any] = []

    def slow_request() -> None:
        try:
            outcome.append(get(port, "/slow/?1.0", timeout=60)[:2])
        except OSError as error:
            outcome.append(error)

    request = threading.Thread(target=slow_request)
    request.start()
    child.wait_for_output("in handler")  # the request is in flight when the restart begins
    seen = len(child.notify.messages)
    child.send_signal(signal.SIGUSR2)
    ready_addresses(child, after=seen + 1)
    request.join(60)
    assert outcome == [(200, b"slept")]


def test_a_stop_during_a_restart_stops_the_site(spawn: Any, tmp_path: Path) -> None:
    """SIGTERM while a restart drains (``systemctl stop`` just after a reload): the site exits.

    It used to be lost: the restart went on and the site served again.
    """
    (tmp_path / "slowapp.py").write_text(SLOW_APP)
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      "engine.autoreload.on = False\n"
                                      "tree.slow = '/slow', 'slowapp:slow'\n", "-p", "site.pid")
    port = tcp_port(ready_addresses(child))
    outcome: list[Any] = []
    request = threading.Thread(
        target=lambda: outcome.append(get(port, "/slow/?1.5", timeout=60)[:2]))
    request.start()
    child.wait_for_output("in handler")
    child.send_signal(signal.SIGUSR2)
    child.wait_for_output("Bus STOPPING")  # the restart waits for the request in flight
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    request.join(60)
    assert outcome == [(200, b"slept")]
    assert "Exit requested during the restart: exiting instead." in child.output
    assert "Re-spawning" not in child.output
    assert not (tmp_path / "site.pid").exists()


def test_a_stop_as_the_restart_re_executes_stops_the_new_image(
        spawn: Any, tmp_path: Path) -> None:
    """SIGTERM as the process re-executes: the new image, not yet handling signals, stops.

    It used to die of the signal unhandled (143), leaving its PID file; the handled signals
    are now held blocked across the exec, and the new image handles them once it can.
    """
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      "engine.autoreload.on = False\n"
                                      "tree.bare = '/bare', 'apps:hello'\n", "-p", "site.pid")
    ready_addresses(child)
    child.send_signal(signal.SIGUSR2)
    child.wait_for_output("Re-spawning")  # the exec is under way
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0, child.output
    assert not (tmp_path / "site.pid").exists()
    assert child.output.count("Caught signal SIGTERM.") == 1
