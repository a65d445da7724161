"""SignalHandler in-process: names and numbers, handlers restored, signals from any thread."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sitebus.bus import Bus, states
from sitebus.process.signals import SignalHandler
from tests.processes import wait_until

SAFETY = 10.0


HANDLED = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


@pytest.fixture
def handler(bus: Bus) -> Iterator[SignalHandler]:
    """A SignalHandler on a process whose handled signals start at their defaults (an earlier
    test's engine may have left its handlers installed, nohup ignores SIGHUP); what was there
    is put back after."""
    found = {number: signal.signal(number, signal.SIG_DFL) for number in HANDLED}
    h = SignalHandler(bus)
    try:
        yield h
    finally:
        h.unsubscribe()
        for number, disposition in found.items():
            signal.signal(number, signal.SIG_DFL if disposition is None else disposition)


def test_signals_map_numbers_to_names() -> None:
    assert SignalHandler.signals[signal.SIGTERM] == "SIGTERM"
    assert SignalHandler.signals[signal.SIGHUP] == "SIGHUP"


def test_default_handlers(bus: Bus, handler: SignalHandler) -> None:
    assert handler.handlers == {
        "SIGHUP": handler.handle_SIGHUP,
        "SIGTERM": bus.exit,
        "SIGUSR1": bus.graceful,
        "SIGUSR2": bus.restart,
    }


@pytest.mark.parametrize("bad", ["SIGNOTHING", "TERM", 999, "signal"])
def test_set_handler_refuses_unknown_signals(handler: SignalHandler, bad: Any) -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        handler.set_handler(bad)


def test_subscribe_ignores_signals_this_platform_lacks(handler: SignalHandler) -> None:
    handler.handlers["SIGBREAK"] = print  # Windows only
    handler.subscribe()
    assert signal.getsignal(signal.SIGTERM) == handler._handle_signal


def test_unsubscribe_restores_the_handlers_that_were_there(handler: SignalHandler) -> None:
    def mine(signum: int, frame: Any) -> None:
        pass

    previous_usr1 = signal.signal(signal.SIGUSR1, mine)
    previous_wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous_wakeup)
    try:
        handler.subscribe()
        assert signal.getsignal(signal.SIGUSR1) == handler._handle_signal
        handler.unsubscribe()
        assert signal.getsignal(signal.SIGUSR1) is mine
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        current_wakeup = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(current_wakeup)
        assert current_wakeup == previous_wakeup
    finally:
        signal.signal(signal.SIGUSR1, previous_usr1)


def test_a_signal_is_published_on_its_channel_and_logged(bus: Bus, handler: SignalHandler) -> None:
    seen: list[str] = []
    logged: list[str] = []
    bus.subscribe("log", lambda msg, level: logged.append(msg))
    handler.handlers = {"SIGUSR1": lambda: seen.append("usr1")}
    handler.subscribe()
    bus.subscribe("SIGUSR1", bus.exit)
    bus.start()
    signal.raise_signal(signal.SIGUSR1)
    bus.block()
    assert seen == ["usr1"]
    assert "Listening for SIGUSR1." in logged and "Caught signal SIGUSR1." in logged


def test_a_signal_delivered_to_another_thread_wakes_block(bus: Bus, handler: SignalHandler) -> None:
    graceful = threading.Event()
    bus.subscribe("graceful", graceful.set)
    bus.subscribe("graceful", bus.exit, priority=90)
    handler.subscribe()
    bus.start()

    main_thread = threading.get_native_id()

    def main_thread_sleeps_in_poll() -> bool:
        with open(f"/proc/self/task/{main_thread}/wchan") as wchan:
            return "poll" in wchan.read()

    def signal_myself() -> None:
        wait_until(main_thread_sleeps_in_poll, SAFETY, "the main thread to sleep in block()")
        # The signal goes to this thread, not the main one that sleeps in block().
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    fired: list[bool] = []

    def safety_net() -> None:  # only a main thread left asleep lets this fire
        fired.append(True)
        bus.exit()

    timer = threading.Timer(SAFETY, safety_net)
    timer.daemon = True
    timer.start()
    threading.Thread(target=signal_myself).start()
    try:
        bus.block()
    finally:
        timer.cancel()
    assert graceful.is_set() and fired == []


def test_configure_adds_a_listener_or_turns_off_a_signal(bus: Bus, handler: SignalHandler) -> None:
    calls: list[str] = []
    before = signal.getsignal(signal.SIGHUP)  # SIG_IGN under nohup, else SIG_DFL
    handler.subscribe()
    assert signal.getsignal(signal.SIGHUP) != before
    handler.configure("SIGTERM", lambda: calls.append("custom"))
    assert handler.handlers["SIGTERM"] == bus.exit
    handler._publish_signal("SIGTERM")
    assert calls == ["custom"] and bus.state is states.EXITING  # both ran
    handler.configure("SIGHUP", None)
    assert signal.getsignal(signal.SIGHUP) == before  # what the process had is back
    assert bus.publish("SIGHUP") == []


def test_configure_before_subscribe_changes_what_subscribe_installs(
    handler: SignalHandler,
) -> None:
    handler.configure("SIGTERM", None)
    handler.subscribe()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGHUP) == handler._handle_signal


def test_a_listener_configured_before_subscribe_is_added_then(bus: Bus,
                                                              handler: SignalHandler) -> None:
    calls: list[str] = []
    handler.configure("SIGTERM", None)
    handler.configure("SIGTERM", lambda: calls.append("cleanup"))
    handler.subscribe()
    assert signal.getsignal(signal.SIGTERM) == handler._handle_signal
    bus.publish("SIGTERM")
    assert calls == ["cleanup"] and bus.state is states.STOPPED  # the exit was turned off


def test_a_second_listener_adds_to_the_first(bus: Bus, handler: SignalHandler) -> None:
    calls: list[str] = []
    handler.set_handler("SIGUSR1", lambda: calls.append("one"))
    handler.set_handler("SIGUSR1", lambda: calls.append("two"))
    bus.publish("SIGUSR1")
    assert calls == ["one", "two"]
    handler.unsubscribe()
    assert bus.publish("SIGUSR1") == []


def test_subscribing_twice_installs_once(bus: Bus, handler: SignalHandler) -> None:
    logged: list[str] = []
    bus.subscribe("log", lambda msg, level: logged.append(msg))
    handler.subscribe()
    handler.subscribe()
    assert logged.count("Listening for SIGTERM.") == 1
    assert len(bus.listeners["SIGTERM"]) == 1


def test_a_signal_is_published_when_the_main_thread_is_not_in_block(
    bus: Bus, handler: SignalHandler,
) -> None:
    published: list[str] = []
    done = threading.Event()

    def seen() -> None:
        published.append(threading.current_thread().name)
        done.set()

    handler.handlers = {"SIGUSR1": seen}
    handler.subscribe()
    bus.start()
    signal.raise_signal(signal.SIGUSR1)  # the main thread runs this test, not block()
    assert done.wait(SAFETY)
    assert published and published[0] != "MainThread"
    bus.exit()


def test_set_handler_from_another_thread_is_a_value_error(handler: SignalHandler) -> None:
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            handler.set_handler("SIGUSR1")
        except ValueError as error:
            errors.append(error)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(SAFETY)
    assert "only be set from the main thread (SIGUSR1)" in str(errors[0])
