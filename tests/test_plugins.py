"""SimplePlugin, Monitor, BackgroundTask, PerpetualTimer and ThreadManager on a real bus."""

from __future__ import annotations

import threading
import time

import pytest

from sitebus.bus import Bus
from sitebus.plugins import BackgroundTask, Monitor, PerpetualTimer, SimplePlugin, ThreadManager

SAFETY = 10.0  # a generous bound for "at once": far below any interval used here


@pytest.fixture
def messages(bus: Bus) -> list[str]:
    lines: list[str] = []
    bus.subscribe("log", lambda msg, level: lines.append(msg))
    return lines


class Recorder(SimplePlugin):
    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    start.priority = 10  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.calls.append("stop")

    def custom(self) -> None:
        self.calls.append("custom")

    def not_a_channel(self) -> None:
        self.calls.append("never")


def test_simple_plugin_subscribes_methods_named_like_channels(bus: Bus) -> None:
    bus.subscribe("custom", lambda: None)  # the channel exists before the plugin subscribes
    plugin = Recorder(bus)
    plugin.subscribe()
    assert bus._priorities[("start", plugin.start)][0] == 10
    bus.start()
    bus.publish("custom")
    bus.stop()
    assert plugin.calls == ["start", "custom", "stop"]
    plugin.unsubscribe()
    bus.start()
    bus.publish("custom")
    assert plugin.calls == ["start", "custom", "stop"]
    assert all(plugin.not_a_channel not in members for members in bus.listeners.values())


def test_monitor_runs_its_callback_and_stops_at_once(bus: Bus, messages: list[str]) -> None:
    ran = threading.Semaphore(0)
    fast = Monitor(bus, ran.release, frequency=0.01, name="Ticker")
    fast.subscribe()
    bus.start()
    assert fast.thread is not None and fast.thread.name == "Ticker"
    assert ran.acquire(timeout=SAFETY) and ran.acquire(timeout=SAFETY)
    assert "Started monitor thread 'Ticker'." in messages
    bus.stop()
    assert fast.thread is None


def test_monitor_stop_does_not_wait_out_the_interval(bus: Bus) -> None:
    slow = Monitor(bus, lambda: None, frequency=3600)
    slow.subscribe()
    bus.start()
    thread = slow.thread
    assert thread is not None and thread.is_alive()
    began = time.monotonic()
    bus.stop()
    assert time.monotonic() - began < SAFETY
    assert not thread.is_alive()


def test_monitor_graceful_restarts_the_thread(bus: Bus) -> None:
    monitor = Monitor(bus, lambda: None, frequency=3600)
    monitor.subscribe()
    bus.start()
    first = monitor.thread
    bus.graceful()
    assert monitor.thread is not None and monitor.thread is not first
    assert first is not None and not first.is_alive()


def test_monitor_with_no_frequency_starts_no_thread(bus: Bus) -> None:
    monitor = Monitor(bus, lambda: None, frequency=0)
    monitor.subscribe()
    bus.start()
    assert monitor.thread is None
    assert Monitor.start.priority == 70  # type: ignore[attr-defined]


def test_background_task_cancel_is_immediate_and_errors_are_logged(
    bus: Bus, messages: list[str]
) -> None:
    def broken() -> None:
        raise RuntimeError("task failed")

    task = BackgroundTask(0.001, broken, bus=bus)
    assert task.daemon
    task.start()
    task.join(SAFETY)
    assert not task.is_alive() and not task.running
    assert any("Error in background task thread function" in m and "task failed" in m
               for m in messages)

    idle = BackgroundTask(3600, lambda: None)
    idle.start()
    idle.cancel()
    idle.join(SAFETY)
    assert not idle.is_alive()


def test_perpetual_timer_repeats_until_cancelled() -> None:
    ticks = threading.Semaphore(0)
    timer = PerpetualTimer(0.001, ticks.release)
    timer.start()
    for _ in range(3):
        assert ticks.acquire(timeout=SAFETY)
    timer.cancel()
    timer.join(SAFETY)
    assert not timer.is_alive()


def test_thread_manager_publishes_thread_start_and_stop(bus: Bus) -> None:
    manager = ThreadManager(bus)
    manager.subscribe()
    started: list[int] = []
    stopped: list[int] = []
    bus.subscribe("start_thread", started.append)
    bus.subscribe("stop_thread", stopped.append)
    bus.start()

    all_acquired = threading.Barrier(3, timeout=SAFETY)

    def request() -> None:
        bus.publish("acquire_thread")
        bus.publish("acquire_thread")  # the same thread again: no second start_thread
        all_acquired.wait()  # alive together, so their idents are distinct

    threads = [threading.Thread(target=request) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY)
    assert sorted(started) == [1, 2, 3]
    assert len(manager.threads) == 3

    bus.publish("acquire_thread")
    bus.publish("release_thread")
    assert stopped == [4]
    bus.stop()
    assert sorted(stopped) == [1, 2, 3, 4]
    assert manager.threads == {}
