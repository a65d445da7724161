"""The response timeout monitor (engine.timeout_monitor): subscribed by default, configurable
by name, silent between checks, stopping at once, and marking a request in flight."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import services.web as cherrypy
from services.web._cptimeout import TimeoutMonitor
from sitebus.bus import Bus
from tests.processes import wait_until


def task_status(thread: threading.Thread, field: str) -> str:
    """Return a field of the kernel's status of ``thread`` (/proc/self/task/<tid>/status)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name == field:
                return value.strip()
    raise AssertionError(f"no {field} line")


def context_switches(thread: threading.Thread) -> int:
    """Return how many times ``thread`` has been switched out (voluntarily) so far."""
    return int(task_status(thread, "voluntary_ctxt_switches"))


class CountingMonitor(TimeoutMonitor):
    def __init__(self, bus: Any) -> None:
        super().__init__(bus)
        self.runs = 0
        self.checked = threading.Condition()

    def run(self) -> None:
        super().run()
        with self.checked:
            self.runs += 1
            self.checked.notify_all()

    def wait_for_runs(self, runs: int, timeout: float = 20) -> bool:
        with self.checked:
            return self.checked.wait_for(lambda: self.runs >= runs, timeout)


@pytest.fixture
def bus() -> Any:
    bus = Bus()
    yield bus
    bus.exit()


def test_the_monitor_is_subscribed_by_default_with_a_minute_between_checks() -> None:
    monitor = cherrypy.engine.timeout_monitor
    assert isinstance(monitor, TimeoutMonitor)
    assert monitor.frequency == 60
    assert monitor.start in cherrypy.engine.listeners["start"]
    assert monitor.before_request in cherrypy.engine.listeners["before_request"]


@pytest.mark.slow
def test_between_checks_the_thread_sleeps_and_stop_is_immediate(bus: Any) -> None:
    monitor = CountingMonitor(bus)
    monitor.subscribe()
    bus.start()
    thread = monitor.thread
    assert thread is not None and thread.is_alive() and thread.name == "_TimeoutMonitor"
    wait_until(lambda: task_status(thread, "State").startswith("S"), 10, "the thread to block")
    before = context_switches(thread)
    time.sleep(1.0)  # a window to observe, not a synchronisation
    assert context_switches(thread) == before  # no wake-up before `frequency` (60 s)
    assert monitor.runs == 0
    started = time.monotonic()
    bus.stop()
    assert time.monotonic() - started < 5  # not up to a minute
    assert not thread.is_alive() and monitor.thread is None


def test_it_checks_every_frequency_seconds(bus: Any) -> None:
    monitor = CountingMonitor(bus)
    monitor.frequency = 0.02
    monitor.subscribe()
    bus.start()
    try:
        assert monitor.wait_for_runs(3)
    finally:
        bus.stop()


def test_it_marks_a_request_in_flight(web: Any) -> None:
    monitor = CountingMonitor(cherrypy.engine)
    monitor.frequency = 0.02
    monitor.subscribe()
    monitor.start()  # its thread only: the site's bus stays as it is

    class Root:
        @cherrypy.expose
        def index(self) -> str:
            cherrypy.response.timeout = 0
            runs = monitor.runs
            assert monitor.wait_for_runs(runs + 2)  # a whole check while in flight
            return str(cherrypy.response.timed_out)

    try:
        web.mount(Root())
        web.getPage("/")
        web.assertBody("True")
    finally:
        monitor.stop()
        monitor.unsubscribe()
    assert monitor.thread is None


def test_the_monitor_is_configured_by_name(site_state: Any) -> None:
    monitor = cherrypy.engine.timeout_monitor
    frequency = monitor.frequency
    try:
        cherrypy.config.update({"engine.timeout_monitor.frequency": 3600})
        assert monitor.frequency == 3600
        cherrypy.config.update({"engine.timeout_monitor.on": False})
        assert monitor.start not in cherrypy.engine.listeners["start"]
        assert monitor.before_request not in cherrypy.engine.listeners["before_request"]
    finally:
        monitor.frequency = frequency
        cherrypy.config.update({"engine.timeout_monitor.on": True})
    assert monitor.start in cherrypy.engine.listeners["start"]
