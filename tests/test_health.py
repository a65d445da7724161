"""The health endpoint: its answers, its place in the tree, its settings and the drain order."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from sitebus import __version__
from sitebus.bus import Bus, ChannelFailures, states
from sitebus.errors import ConfigError
from sitebus.site.container import Site
from sitebus.site.health import DEFAULT_DRAIN_DELAY, Health, health_answer
from sitebus.site.logs import LogManager
from sitebus.site.tree import Tree
from tests.httpclients import call_wsgi


def echo(name: str) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = f"{name} {environ['PATH_INFO']}".encode("latin-1")
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


def call(app: Any, path: str, method: str = "GET", host: str = "localhost"
         ) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=path, SCRIPT_NAME="", QUERY_STRING="", REQUEST_METHOD=method,
                   HTTP_HOST=host, REMOTE_ADDR="127.0.0.1")
    status, headers, body = call_wsgi(app, environ)
    return status, dict(headers), body


FIELDS = {"state": "STARTED", "pid": 42, "uptime": 1.5, "version": "9.9"}


@pytest.mark.parametrize("method, ready, status, has_body", [
    ("GET", True, "200 OK", True),
    ("GET", False, "503 Service Unavailable", True),
    ("HEAD", True, "200 OK", False),
    ("HEAD", False, "503 Service Unavailable", False),
    ("POST", True, "405 Method Not Allowed", True),
    ("DELETE", False, "405 Method Not Allowed", True),
])
def test_health_answer(method: str, ready: bool, status: str, has_body: bool) -> None:
    got_status, headers, body = health_answer(method, ready, FIELDS)
    assert got_status == status
    named = dict(headers)
    assert named["Content-Type"] == "application/json"
    assert named["Cache-Control"] == "no-store"
    assert bool(body) == has_body
    if method in ("GET", "HEAD"):
        full = health_answer("GET", ready, FIELDS)[2]
        assert int(named["Content-Length"]) == len(full)  # HEAD: the length GET would send
        assert json.loads(full) == {**FIELDS, "ready": ready}
    else:
        assert named["Allow"] == "GET, HEAD"
        assert int(named["Content-Length"]) == len(body)


# -- the tree's endpoints -----------------------------------------------------------------------


def test_an_endpoint_comes_before_every_app_and_every_host() -> None:
    tree = Tree()
    tree.graft(echo("root"), "")
    tree.graft(echo("health-app"), "/health")
    tree.graft(echo("vhost"), "", host="shop.example.com")
    tree.add_endpoint("/health", echo("endpoint"))
    assert call(tree, "/health")[2] == b"endpoint /health"
    assert call(tree, "/health", host="shop.example.com")[2] == b"endpoint /health"
    # Exactly the path: below it and beside it, the apps answer as before.
    assert call(tree, "/health/more")[2] == b"health-app /more"
    assert call(tree, "/healthz")[2] == b"root /healthz"
    assert call(tree, "/", host="shop.example.com")[2] == b"vhost /"
    tree.remove_endpoint("/health")
    assert call(tree, "/health")[2] == b"health-app "


def test_without_endpoints_routing_is_the_plain_method() -> None:
    tree = Tree()
    tree.graft(echo("root"), "")
    assert "_route" not in vars(tree)
    tree.add_endpoint("/up", echo("up"))
    assert "_route" in vars(tree)
    tree.remove_endpoint("/up")
    assert "_route" not in vars(tree)  # off again: the request path is as it was
    tree.remove_endpoint("/never-added")
    assert call(tree, "/up")[2] == b"root /up"


def test_add_endpoint_refuses_bad_paths_and_apps() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        Tree().add_endpoint("health", echo("x"))
    with pytest.raises(TypeError, match="not a WSGI callable"):
        Tree().add_endpoint("/health", object())  # type: ignore[arg-type]


@pytest.mark.parametrize("access_log, logged", [(False, False), (True, True)])
def test_endpoints_reach_the_access_log_only_when_asked(access_log: bool, logged: bool) -> None:
    log = LogManager(appid=f"healthtest{access_log}")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log.access_log.addHandler(handler)
    log.access_log.setLevel(logging.INFO)
    try:
        tree = Tree(log=log)
        tree.graft(echo("root"), "")
        tree.add_endpoint("/health", echo("endpoint"), access_log=access_log)
        call(tree, "/health")
        assert ("GET /health" in stream.getvalue()) is logged
        call(tree, "/page")  # the apps are logged either way
        assert "GET /page" in stream.getvalue()
    finally:
        log.access_log.removeHandler(handler)


# -- the plugin on a bus ------------------------------------------------------------------------


def test_the_endpoint_follows_the_bus_state(bus: Bus) -> None:
    tree = Tree()
    tree.graft(echo("root"), "")
    health = Health(bus, tree)
    health.drain_delay = 0
    health.subscribe()
    seen: dict[str, tuple[str, dict[str, Any]]] = {}

    def probe(when: str) -> None:
        status, _headers, body = call(tree, "/health")
        seen[when] = (status, json.loads(body))

    on_start = bus.subscribe("start", lambda: probe("starting"), priority=80)
    on_stop = bus.subscribe("stop", lambda: probe("stopping"), priority=30)
    probe("stopped")
    bus.start()
    probe("started")
    bus.stop()
    bus.unsubscribe("start", on_start)
    bus.unsubscribe("stop", on_stop)
    assert [(when, status, body["state"], body["ready"]) for when, (status, body) in
            seen.items()] == [
        ("stopped", "503 Service Unavailable", "STOPPED", False),
        ("starting", "503 Service Unavailable", "STARTING", False),
        ("started", "200 OK", "STARTED", True),
        ("stopping", "503 Service Unavailable", "STOPPING", False),
    ]
    body = seen["started"][1]
    assert body["pid"] == os.getpid() and body["version"] == __version__
    assert 0 <= body["uptime"] < 365 * 86400
    assert call(tree, "/health", method="HEAD")[2] == b""
    health.unsubscribe()
    assert call(tree, "/health")[2] == b"root /health"


def test_stop_waits_drain_delay_while_not_ready_then_the_servers_stop(bus: Bus) -> None:
    tree = Tree()
    health = Health(bus, tree)
    health.drain_delay = 0.3
    health.subscribe()
    events: list[tuple[str, float, str]] = []

    def begin_stop() -> None:  # where a server stops accepting (ServerAdapter.begin_stop)
        events.append(("stop accepting", time.monotonic(), call(tree, "/health")[0]))

    bus.subscribe("stop", begin_stop, priority=24)
    bus.subscribe("stop", lambda: events.append(
        ("stopping", time.monotonic(), call(tree, "/health")[0])), priority=1)
    bus.start()
    bus.wait(states.STARTED)  # the main loop: where the site notes that it serves
    bus.stop()
    (first, t0, status0), (second, t1, status1) = events
    assert (first, status0) == ("stopping", "503 Service Unavailable")
    assert (second, status1) == ("stop accepting", "503 Service Unavailable")
    assert t1 - t0 >= 0.3


@pytest.mark.parametrize("case", ["restart", "never started", "delay 0"])
def test_stop_does_not_wait_on_a_restart_a_failed_start_or_a_zero_delay(bus: Bus,
                                                                           case: str) -> None:
    health = Health(bus, Tree())
    health.drain_delay = 0 if case == "delay 0" else 60
    health.subscribe()
    if case == "never started":
        def fail() -> None:
            raise ConfigError("no", key="x")

        bus.subscribe("start", fail, priority=10)
        started = time.monotonic()
        with pytest.raises(ChannelFailures, match="no"):
            bus.start()
        bus.wait(states.EXITING)
        assert time.monotonic() - started < 30
        return
    bus.start()
    bus.wait(states.STARTED)
    bus.execv = case == "restart"
    started = time.monotonic()
    try:
        bus.stop()
    finally:
        bus.execv = False
    assert time.monotonic() - started < 30
    assert bus.state is states.STOPPED


def test_uptime_counts_from_the_process_start(bus: Bus) -> None:
    import psutil

    fields = Health(bus, Tree()).fields()
    expected = time.time() - psutil.Process().create_time()
    assert abs(fields["uptime"] - expected) < 5


def test_a_health_without_a_tree_cannot_be_turned_on(bus: Bus) -> None:
    with pytest.raises(ConfigError, match="engine.health.on"):
        Health(bus).subscribe()


# -- config --------------------------------------------------------------------------------------


@pytest.fixture
def fresh_site() -> Site:
    return Site()


def test_config_turns_the_endpoint_on_and_off_and_moves_it(fresh_site: Site) -> None:
    tree = fresh_site.tree
    assert not tree.endpoints  # off by default
    assert fresh_site.bus.health.drain_delay == DEFAULT_DRAIN_DELAY
    fresh_site.config.update({"engine.health.on": True})
    assert list(tree.endpoints) == ["/health"]
    fresh_site.config.update({"engine.health.path": "/_status", "engine.health.access_log": True,
                              "engine.health.drain_delay": 0})
    assert tree.endpoints["/_status"][1] is True and list(tree.endpoints) == ["/_status"]
    assert fresh_site.bus.health.drain_delay == 0
    fresh_site.config.update({"engine.health.on": False})
    assert not tree.endpoints
    assert fresh_site.bus.listeners["stop"].isdisjoint({fresh_site.bus.health.stop})
    fresh_site.config.update({"engine.health.path": "/ping"})  # off: remembered, not placed
    assert not tree.endpoints
    fresh_site.config.update({"engine.health.on": True})
    assert list(tree.endpoints) == ["/ping"]


@pytest.mark.parametrize("key, value, expected", [
    ("path", "health", "expected a path"),
    ("path", "/", "expected a path"),
    ("path", "/health?x=1", "expected a path"),
    ("path", 5, "expected a path"),
    ("drain_delay", -1, "0 or more"),
    ("drain_delay", "2", "0 or more"),
    ("drain_delay", True, "0 or more"),
    ("drain_delay", float("inf"), "0 or more"),
    ("access_log", "yes", "True or False"),
    ("on", "yes", "True or False"),
    ("delay", 2, "unknown setting"),
])
def test_bad_settings_are_config_errors_naming_the_key(fresh_site: Site, key: str, value: Any,
                                                       expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        fresh_site.config.update({f"engine.health.{key}": value})
    assert caught.value.key == f"engine.health.{key}"


def test_a_typo_in_the_plugin_name_suggests_health(fresh_site: Site) -> None:
    with pytest.raises(ConfigError, match="did you mean 'health'"):
        fresh_site.config.update({"engine.helth.on": True})


def test_the_endpoint_answers_from_a_thread_while_stop_waits(bus: Bus) -> None:
    """What a balancer sees during the wait: 503, from a server thread, as stop blocks."""
    tree = Tree()
    health = Health(bus, tree)
    health.drain_delay = 0.5
    health.subscribe()
    bus.start()
    bus.wait(states.STARTED)
    stopper = threading.Thread(target=bus.stop)
    stopper.start()
    try:
        deadline = time.monotonic() + 10
        while bus.state is states.STARTED and time.monotonic() < deadline:
            time.sleep(0.005)
        assert call(tree, "/health")[0] == "503 Service Unavailable"
    finally:
        stopper.join(30)
