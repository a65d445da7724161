"""Several sitebus instances behind a real nginx or HAProxy, sharing a real memcached.

The health endpoint follows the bus state; stopping reports not-ready, then stops accepting,
then finishes in flight; through contrib's nginx and HAProxy files, a steady client loses no
request while one instance stops, restarts or reloads; a session kept in memcached follows
the client whichever instance answers; the proxy tool sees the client through nginx's headers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.integration.frontends import (
    SERVER_NAME,
    get,
    needs_haproxy,
    needs_memcached,
    needs_nginx,
    start_haproxy,
    start_instance,
    start_memcached,
    start_nginx,
)
from tests.integration.sites import PersistentClient, SteadyClient, ready_addresses, reloaded
from tests.processes import wait_until

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

SLOW_START = '''\
"""Hold the site in STARTING, its servers listening, until the test writes to go.fifo."""

from sitebus.site.container import bus


def wait_for_go():
    with open("go.fifo") as fifo:
        fifo.read()


bus.subscribe("start", wait_for_go, priority=90)
'''


def probe(instance: Any, path: str = "/health", method: str = "GET"
          ) -> tuple[int, bytes] | None:
    """Ask an instance directly; None when it refuses (or its socket is gone)."""
    try:
        return instance.request(path, method)  # type: ignore[no-any-return]
    except OSError:
        return None


# -- the health endpoint on one instance -----------------------------------------------------------


def test_the_health_endpoint_follows_the_bus_state(spawn: Any, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "slowstart.py").write_text(SLOW_START)
    os.mkfifo(tmp_path / "a" / "go.fifo")
    instance = start_instance(spawn, tmp_path, "a", unix=True,
                              extra="engine.health.drain_delay = 4\n",
                              args=("-i", "slowstart"), wait_ready=False)
    starting = wait_until(lambda: probe(instance), 30, "the instance to listen")
    assert isinstance(starting, tuple)
    assert starting[0] == 503 and json.loads(starting[1])["state"] == "STARTING"
    with open(tmp_path / "a" / "go.fifo", "w") as fifo:
        fifo.write("go")
    ready_addresses(instance.child)
    status, body = instance.request("/health")
    fields = json.loads(body)
    assert status == 200 and fields["state"] == "STARTED" and fields["ready"] is True
    assert fields["pid"] == instance.child.pid and fields["uptime"] >= 0
    assert instance.request("/health", "HEAD") == (200, b"")
    assert instance.request("/")[0] == 200

    # Stop: first not ready (503) while the app is still served, then refused.
    instance.child.send_signal(signal.SIGTERM)

    def not_ready() -> tuple[int, bytes] | None:
        answer = probe(instance)
        return answer if answer is not None and answer[0] == 503 else None

    draining = wait_until(not_ready, 30, "the health endpoint to answer 503")
    assert isinstance(draining, tuple) and json.loads(draining[1])["state"] == "STOPPING"
    assert instance.request("/") == (200, str(instance.child.pid).encode())  # still accepting
    answers: list[int] = []

    def refused() -> bool:
        answer = probe(instance)
        if answer is not None:
            answers.append(answer[0])
        return answer is None

    wait_until(refused, 30, "the instance to stop accepting")
    assert set(answers) <= {503}  # never ready again once it said 503
    assert instance.child.wait(30) == 0
    output = instance.child.output
    assert '"GET / HTTP/1.1" 200' in output  # apps are in the access log...
    assert "GET /health" not in output and "HEAD /health" not in output  # ...probes are not
    assert "Not ready: /health answers 503; the servers stop accepting in 4 s" in output


def test_a_restart_does_not_wait_the_drain_delay(spawn: Any, tmp_path: Path) -> None:
    instance = start_instance(spawn, tmp_path, "a", extra="engine.health.drain_delay = 120\n")
    reloaded(instance.child, signal.SIGUSR2, timeout=60)  # within 15 s, where the delay is 120
    assert instance.request("/health")[0] == 200
    assert "Not ready" not in instance.child.output


# -- behind nginx ----------------------------------------------------------------------------------


@needs_nginx
@needs_memcached
def test_a_session_in_memcached_follows_the_client_to_either_instance(spawn: Any,
                                                                       tmp_path: Path) -> None:
    pytest.importorskip("pymemcache", reason="pip install 'sitebus[memcached]'")
    memcached = start_memcached(spawn, tmp_path)
    instances = [start_instance(spawn, tmp_path, name, memcached=memcached) for name in "ab"]
    front = start_nginx(spawn, tmp_path, instances)
    status, body, response = get(front.port, "/login?user=alice")
    assert status == 200 and body.endswith(b" alice")
    cookie = response.getheader("Set-Cookie", "").split(";")[0]
    assert cookie.startswith("session_id=")
    served: dict[int, int] = {}
    for _ in range(12):
        status, body, _response = get(front.port, "/whoami", {"Cookie": cookie})
        pid, user = body.decode().split()
        assert (status, user) == (200, "alice")
        served[int(pid)] = served.get(int(pid), 0) + 1
    assert set(served) == {i.child.pid for i in instances}  # round robin: both answered
    # Without the cookie, no session: the instances share nothing else.
    assert get(front.port, "/whoami")[1].split()[1] == b"None"


@needs_nginx
def test_the_proxy_tool_sees_the_client_through_nginx(spawn: Any, tmp_path: Path) -> None:
    pytest.importorskip("trustme")
    instances = [start_instance(spawn, tmp_path, name) for name in "ab"]
    front = start_nginx(spawn, tmp_path, instances)
    tls = ssl.create_default_context()
    front.ca.configure_trust(tls)
    tls.check_hostname = False  # nginx is reached at 127.0.0.1, its certificate names the site
    # The client connects from 127.0.0.2: nginx's own address towards the instances is
    # 127.0.0.1, so only the headers can tell the app where the client is.
    for port, context, scheme in ((front.port, None, "http"), (front.tls_port, tls, "https")):
        assert port is not None
        status, body, _response = get(port, "/client", source="127.0.0.2", tls=context)
        seen = json.loads(body)
        assert status == 200
        assert seen["ip"] == "127.0.0.2"
        assert seen["base"] == f"{scheme}://{SERVER_NAME}"
    # A forged X-Forwarded-For comes first; nginx appends the real address, which wins.
    status, body, _response = get(front.port, "/client", {"X-Forwarded-For": "10.9.9.9"},
                                  source="127.0.0.2")
    assert json.loads(body)["ip"] == "127.0.0.2"
    # The health endpoint is for the local balancer and monitors only.
    assert get(front.port, "/health", source="127.0.0.2")[0] == 403
    status, body, _response = get(front.port, "/health")
    assert status == 200 and json.loads(body)["ready"] is True


def steady_start(spawn: Any, tmp_path: Path, unix: bool, extra: str = ""
                 ) -> tuple[list[Any], SteadyClient]:
    instances = [start_instance(spawn, tmp_path, name, unix=unix, extra=extra)
                 for name in "ab"]
    front = start_nginx(spawn, tmp_path, instances)
    client = SteadyClient(front.port, fetch=get)
    client.start()
    a, b = (i.child.pid for i in instances)
    client.wait_for(lambda c: c.served[a] >= 5 and c.served[b] >= 5, "both instances to serve")
    return instances, client


@needs_nginx
@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_a_graceful_stop_behind_nginx_fails_no_request(spawn: Any, tmp_path: Path,
                                                       unix: bool) -> None:
    (a, b), client = steady_start(spawn, tmp_path, unix, "engine.health.drain_delay = 1\n")
    try:
        a.child.send_signal(signal.SIGTERM)
        a.child.wait_for_output("Not ready: /health answers 503", timeout=30)
        when_not_ready = client.served[a.child.pid]
        assert a.child.wait(60) == 0
        client.more_from(b.child.pid, 50, "the other instance to go on serving")
    finally:
        client.finish()
    assert client.failures == []
    # Not ready is not gone: it went on serving what nginx sent it during the delay.
    assert client.served[a.child.pid] > when_not_ready
    assert "Not ready" in a.child.output and "shut down" in a.child.output


@needs_nginx
def test_restarts_behind_nginx_fail_no_request(spawn: Any, tmp_path: Path) -> None:
    (a, b), client = steady_start(spawn, tmp_path, unix=False)
    try:
        for _restart in range(3):
            reloaded(a.child, signal.SIGUSR2, timeout=60)
            client.more_from(a.child.pid, 5, "the restarted instance to serve again")
    finally:
        client.finish()
    assert client.failures == []
    assert set(client.served) == {a.child.pid, b.child.pid}  # a restart keeps the pid


@needs_nginx
def test_a_rolling_reload_behind_nginx_fails_no_request(spawn: Any, tmp_path: Path) -> None:
    instances, client = steady_start(spawn, tmp_path, unix=True)
    try:
        for instance in instances:  # one at a time: the other serves meanwhile
            reloaded(instance.child, signal.SIGUSR1, timeout=60)
            client.more_from(instance.child.pid, 5, "the reloaded instance to serve")
    finally:
        client.finish()
    assert client.failures == []
    for instance in instances:
        assert "Bus graceful" in instance.child.output


# -- behind HAProxy --------------------------------------------------------------------------------


@needs_haproxy
def test_haproxy_takes_a_stopping_instance_out_by_its_health(spawn: Any,
                                                            tmp_path: Path) -> None:
    """With the default drain delay (2 s) and contrib's checks (every second), HAProxy sees
    the 503 and stops sending before the instance stops accepting; a new instance on the
    same socket is taken back in once its health says 200."""
    instances = [start_instance(spawn, tmp_path, name, unix=True) for name in "ab"]
    front = start_haproxy(spawn, tmp_path, instances)
    a, b = instances
    client = SteadyClient(front.port, fetch=get)
    client.start()
    try:
        client.wait_for(lambda c: c.served[a.child.pid] >= 5 and c.served[b.child.pid] >= 5,
                        "both instances to serve")
        a.child.send_signal(signal.SIGTERM)
        front.child.wait_for_output(r"Server sitebus/s8081 is DOWN, reason: Layer7 wrong "
                                    r"status, code: 503", timeout=30)
        assert a.child.wait(60) == 0
        client.more_from(b.child.pid, 20, "the other instance to serve alone")
        # The same instance again, on the same socket: back in after two good checks.
        again = start_instance(spawn, tmp_path, "a", unix=True, run="-again")
        front.child.wait_for_output(r"Server sitebus/s8081 is UP", timeout=30)
        client.more_from(again.child.pid, 5, "the new instance to serve")
    finally:
        client.finish()
    assert client.failures == []
    # HAProxy never had to retry: it stopped sending before the instance stopped accepting.
    requests = re.findall(r' \d+/\d+/\d+/\d+/(\+?\d+) \d+/\d+ "GET / ', front.child.output)
    assert len(requests) >= 30 and set(requests) == {"0"}
    assert get(front.port, "/health")[0] == 403  # the balancer's, not the world's


@needs_nginx
@needs_memcached
def test_keep_alive_upstreams_lose_no_post_across_a_stop_start_and_a_restart(
        spawn: Any, tmp_path: Path) -> None:
    """contrib's nginx keeps connections to the instances (keepalive 8, HTTP/1.1, default
    max_fails and fail_timeout); four clients POST to sessions in memcached on connections of
    their own while one instance stops and starts again and the other restarts in place:
    not one POST fails (502 included), though nginx may keep the stopped instance out for
    its fail_timeout while the other restarts."""
    pytest.importorskip("pymemcache", reason="pip install 'sitebus[memcached]'")
    memcached = start_memcached(spawn, tmp_path)
    a, b = (start_instance(spawn, tmp_path, name, memcached=memcached,
                           extra="engine.health.drain_delay = 0.5\n") for name in "ab")
    front = start_nginx(spawn, tmp_path, [a, b])
    clients = [PersistentClient(front.port, "/login", method="POST", body=f"user=u{n}".encode(),
                                headers={"Host": SERVER_NAME}) for n in range(4)]
    for client in clients:
        client.start()

    def more(n: int, what: str) -> None:
        for client in clients:
            client.more_answers(n, what)

    try:
        more(10, "answers through nginx")
        a.child.send_signal(signal.SIGTERM)
        assert a.child.wait(60) == 0
        more(10, "answers from b alone")
        a = start_instance(spawn, tmp_path, "a", memcached=memcached, run="-again",
                           extra="engine.health.drain_delay = 0.5\n")
        reloaded(b.child, signal.SIGUSR2, timeout=60)
        more(20, "answers after b's restart")
    finally:
        for client in clients:
            client.stop.set()
        for client in clients:
            client.join(60)
    failures = [failure for client in clients for failure in client.failures]
    nginx_errors = [line for line in (tmp_path / "nginx" / "error.log").read_text().splitlines()
                    if "[error]" in line]
    assert failures == [], nginx_errors
    assert all(len(client.answers) >= 40 for client in clients)
