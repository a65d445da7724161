"""The bus in-process: states, channels, publish semantics, waiting, logging."""

from __future__ import annotations

import os
import threading

import pytest

from sitebus.bus import (
    TRANSITIONS,
    Bus,
    ChannelFailures,
    _close_on_exec_except,
    reexec_argv,
    states,
)


class LogRecorder:
    def __init__(self, bus: Bus) -> None:
        self.lines: list[tuple[str, int]] = []
        bus.subscribe("log", self)

    def __call__(self, msg: str, level: int) -> None:
        self.lines.append((msg, level))

    @property
    def messages(self) -> list[str]:
        return [msg for msg, _level in self.lines]


@pytest.fixture
def log(bus: Bus) -> LogRecorder:
    return LogRecorder(bus)


# -- states ---------------------------------------------------------------------------------------


def test_states_have_the_reference_reprs_and_start_stopped(bus: Bus) -> None:
    assert repr(states.STOPPED) == "states.STOPPED"
    assert [s.name for s in states] == ["STOPPED", "STARTING", "STARTED", "STOPPING", "EXITING"]
    assert bus.states is states
    assert bus.state is states.STOPPED


def test_start_stop_exit_walk_the_states_and_log_them(bus: Bus, log: LogRecorder) -> None:
    seen = []
    for channel in ("start", "stop", "exit"):
        bus.subscribe(channel, lambda c=channel: seen.append((c, bus.state)))
    bus.start()
    assert bus.state is states.STARTED
    bus.stop()
    assert bus.state is states.STOPPED
    bus.exit()
    assert bus.state is states.EXITING
    assert seen == [
        ("start", states.STARTING),
        ("stop", states.STOPPING),
        ("stop", states.STOPPING),  # exit() always stops first, as the reference does
        ("exit", states.EXITING),
    ]
    assert log.messages == [
        "Bus STARTING", "Bus STARTED", "Bus STOPPING", "Bus STOPPED",
        "Bus STOPPING", "Bus STOPPED", "Bus EXITING", "Bus EXITED",
    ]


def test_graceful_publishes_and_logs(bus: Bus, log: LogRecorder) -> None:
    calls = []
    bus.subscribe("graceful", lambda: calls.append(bus.state))
    bus.start()
    bus.graceful()
    assert calls == [states.STARTED]
    assert "Bus graceful" in log.messages


def test_starting_again_publishes_start_again_even_after_exit(
    bus: Bus, log: LogRecorder
) -> None:
    starts = []
    bus.subscribe("start", lambda: starts.append(1))
    bus.start()
    bus.start()  # as the reference: a plugin subscribed since the first start starts now
    assert starts == [1, 1]
    assert bus.state is states.STARTED
    bus.exit()
    bus.start()
    assert starts == [1, 1, 1]
    assert bus.state is states.STARTED
    bus.exit()
    assert bus.state is states.EXITING


def test_a_fresh_bus_has_no_log_listener_and_still_logs(caplog: pytest.LogCaptureFixture) -> None:
    fresh = Bus()
    assert fresh.listeners["log"] == set()
    assert fresh.publish("log") == []  # nothing to call, so nothing to fail
    with caplog.at_level("INFO", logger="sitebus"):
        fresh.log("to the sitebus logger")
    assert [r.getMessage() for r in caplog.records] == ["to the sitebus logger"]


def test_transition_table_matches_the_docstring_diagram() -> None:
    assert TRANSITIONS[states.STARTING] == {states.STARTED, states.STOPPING}
    assert TRANSITIONS[states.EXITING] == {states.STARTING}
    assert states.EXITING in TRANSITIONS[states.STOPPED]


# -- subscribe and publish ------------------------------------------------------------------------


def test_publish_returns_outputs_in_priority_order(bus: Bus) -> None:
    def late() -> str:
        return "late"

    late.priority = 90  # type: ignore[attr-defined]
    bus.subscribe("ch", lambda: "default")
    bus.subscribe("ch", late)
    bus.subscribe("ch", lambda: "early", priority=10)
    assert bus.publish("ch") == ["early", "default", "late"]


def test_equal_priorities_run_in_subscription_order(bus: Bus) -> None:
    listeners = [lambda i=i: i for i in range(20)]
    for listener in listeners:
        bus.subscribe("ch", listener)
    assert bus.publish("ch") == list(range(20))


def test_subscribe_is_a_set_and_can_change_priority(bus: Bus) -> None:
    def listener() -> str:
        return "x"

    bus.subscribe("ch", listener)
    bus.subscribe("ch", listener)
    assert bus.publish("ch") == ["x"]
    bus.subscribe("ch", lambda: "y", priority=40)
    bus.subscribe("ch", listener, priority=10)
    assert bus.publish("ch") == ["x", "y"]


def test_subscribe_works_as_a_decorator(bus: Bus) -> None:
    @bus.subscribe("ch")
    def first(value: int) -> int:
        return value + 1

    @bus.subscribe("ch", priority=1)
    def second(value: int) -> int:
        return value * 10

    assert callable(first) and callable(second)
    assert bus.publish("ch", 3) == [30, 4]


def test_publish_passes_args_and_kwargs(bus: Bus) -> None:
    bus.subscribe("ch", lambda a, b=0: (a, b))
    assert bus.publish("ch", 1, b=2) == [(1, 2)]


def test_unknown_channel_and_unsubscribe_of_absent_listener_do_nothing(bus: Bus) -> None:
    assert bus.publish("nobody-listens") == []
    bus.unsubscribe("nobody-listens", print)
    bus.unsubscribe("start", print)
    listener = bus.subscribe("ch", lambda: 1)
    bus.unsubscribe("ch", listener)
    assert bus.publish("ch") == []


def test_new_channels_appear_in_listeners(bus: Bus) -> None:
    assert set(bus.listeners) >= {"start", "stop", "exit", "graceful", "log", "main"}
    bus.subscribe("db-save", print)
    assert print in bus.listeners["db-save"]


# -- failures -------------------------------------------------------------------------------------


def test_every_listener_runs_and_failures_are_gathered(bus: Bus, log: LogRecorder) -> None:
    ran = []

    def fails(n: int) -> None:
        ran.append(f"fail{n}")
        raise ValueError(f"boom {n}")

    bus.subscribe("ch", lambda: fails(1), priority=1)
    bus.subscribe("ch", lambda: ran.append("ok"), priority=2)
    bus.subscribe("ch", lambda: fails(2), priority=3)
    with pytest.raises(ChannelFailures) as caught:
        bus.publish("ch")
    failures = caught.value
    assert ran == ["fail1", "ok", "fail2"]
    assert [str(e) for e in failures.get_instances()] == ["boom 1", "boom 2"]
    assert str(failures) == "ValueError('boom 1')\nValueError('boom 2')"
    assert failures and failures.delimiter == "\n"
    errors = [(m, lvl) for m, lvl in log.lines if m.startswith("Error in 'ch' listener")]
    assert len(errors) == 2 and all(lvl == 40 for _m, lvl in errors)
    assert "ValueError: boom 1" in errors[0][0]  # the traceback is appended


def test_channel_failures_is_false_when_empty_and_handle_exception_appends() -> None:
    failures = ChannelFailures()
    assert not failures and failures.get_instances() == []
    try:
        raise KeyError("k")
    except KeyError:
        failures.handle_exception()
    assert failures and isinstance(failures.get_instances()[0], KeyError)


def test_keyboard_interrupt_stops_the_publish_at_once(bus: Bus) -> None:
    ran = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    bus.subscribe("ch", interrupt, priority=1)
    bus.subscribe("ch", lambda: ran.append(1), priority=2)
    with pytest.raises(KeyboardInterrupt):
        bus.publish("ch")
    assert ran == []


def test_system_exit_zero_after_a_failure_becomes_one(bus: Bus) -> None:
    def fails() -> None:
        raise ValueError

    def exits() -> None:
        raise SystemExit(0)

    bus.subscribe("ch", fails, priority=1)
    bus.subscribe("ch", exits, priority=2)
    with pytest.raises(SystemExit) as caught:
        bus.publish("ch")
    assert caught.value.code == 1
    bus.unsubscribe("ch", fails)
    with pytest.raises(SystemExit) as caught:
        bus.publish("ch")
    assert caught.value.code == 0


def test_a_failing_log_listener_is_not_logged_again_nor_fatal(
    bus: Bus, log: LogRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def broken_log(msg: str, level: int) -> None:
        calls.append(msg)
        raise OSError("disk full")

    bus.subscribe("log", broken_log)
    with pytest.raises(ChannelFailures):
        bus.publish("log", "direct", 20)
    bus.log("hello")
    assert calls == ["direct", "hello"]
    assert log.messages == ["direct", "hello"]  # the other log listener still ran, once each
    assert "a log listener failed (OSError('disk full')): hello" in capsys.readouterr().err
    bus.start()  # state changes log too; a broken log must not break the lifecycle
    bus.exit()
    assert bus.state is states.EXITING


def test_log_publishes_message_level_and_traceback(bus: Bus, log: LogRecorder) -> None:
    bus.log("plain")
    bus.log("warned", 30)
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        bus.log("with traceback", 40, traceback=True)
    assert log.lines[0] == ("plain", 20)
    assert log.lines[1] == ("warned", 30)
    assert log.lines[2][0].startswith("with traceback\nTraceback")
    assert "ZeroDivisionError" in log.lines[2][0]


# -- start failures and exit requests -------------------------------------------------------------


def test_failed_start_exits_and_reraises(bus: Bus, log: LogRecorder) -> None:
    events = []

    def broken() -> None:
        raise OSError("port in use")

    bus.subscribe("start", broken)
    bus.subscribe("stop", lambda: events.append("stop"))
    bus.subscribe("exit", lambda: events.append("exit"))
    with pytest.raises(ChannelFailures) as caught:
        bus.start()
    assert isinstance(caught.value.get_instances()[0], OSError)
    assert bus.state is states.EXITING
    assert events == ["stop", "exit"]
    assert "Shutting down due to error in start listener:" in "\n".join(log.messages)


def test_exit_from_another_thread_during_start_happens_when_start_returns(bus: Bus) -> None:
    in_start = threading.Event()
    exit_called = threading.Event()

    def slow_start() -> None:
        in_start.set()
        assert exit_called.wait(10)

    def other() -> None:
        in_start.wait(10)
        bus.exit()  # must not block on the start in progress, nor kill the process
        exit_called.set()

    bus.subscribe("start", slow_start)
    thread = threading.Thread(target=other)
    thread.start()
    bus.start()
    thread.join(10)
    assert bus.state is states.EXITING


def test_exit_from_a_stop_listener_completes_after_stop(bus: Bus) -> None:
    exits = []
    bus.subscribe("stop", bus.exit)
    bus.subscribe("exit", lambda: exits.append(bus.state))
    bus.start()
    bus.stop()
    assert bus.state is states.EXITING
    assert exits == [states.EXITING]


def test_exit_unregisters_the_atexit_warning(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    unregistered = []
    import sitebus.bus as busmodule

    monkeypatch.setattr(busmodule.atexit, "unregister", unregistered.append)
    bus.start()
    bus.exit()
    assert unregistered == [bus._exit_at_interpreter_exit]


# -- waiting --------------------------------------------------------------------------------------


def test_wait_in_a_thread_returns_when_the_state_is_reached(bus: Bus) -> None:
    reached = []
    waiter = threading.Thread(target=lambda: (bus.wait(states.STARTED), reached.append(1)))
    waiter.start()
    bus.start()
    waiter.join(10)
    assert reached == [1]
    bus.wait([states.STOPPED, states.STARTED])  # already there: returns at once


def test_wait_publishes_to_the_channel_while_waiting(bus: Bus) -> None:
    ticks = threading.Semaphore(0)
    bus.subscribe("tick", ticks.release)
    waiter = threading.Thread(target=bus.wait, args=(states.STARTED, 0.01, "tick"))
    waiter.start()
    for _ in range(3):
        assert ticks.acquire(timeout=10)
    bus.start()
    waiter.join(10)
    assert not waiter.is_alive()


def test_block_in_main_thread_returns_on_exit_from_another_thread(bus: Bus) -> None:
    assert threading.current_thread() is threading.main_thread()
    bus.start()
    threading.Thread(target=bus.exit).start()
    bus.block()
    assert bus.state is states.EXITING


def test_block_publishes_main_only_while_someone_listens(bus: Bus) -> None:
    ticks = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            bus.unsubscribe("main", tick)
            threading.Thread(target=bus.exit).start()

    bus.start()
    bus.subscribe("main", tick)
    bus.block(interval=0.01)
    assert len(ticks) == 3


def test_calls_for_the_main_thread_run_inside_block(bus: Bus) -> None:
    ran_in = []
    bus.start()
    bus.call_in_main_thread(lambda: ran_in.append(threading.current_thread()))
    bus.call_in_main_thread(bus.exit)
    bus.block()
    assert ran_in == [threading.main_thread()]


def test_a_failing_main_thread_call_is_logged_and_block_goes_on(
    bus: Bus, log: LogRecorder
) -> None:
    def broken() -> None:
        raise ValueError("bad call")

    bus.start()
    bus.call_in_main_thread(broken)
    bus.call_in_main_thread(bus.exit)
    bus.block()
    assert any("Error in main-thread call" in m and "bad call" in m for m in log.messages)



@pytest.mark.parametrize("raised, logged", [
    (KeyboardInterrupt, "Keyboard Interrupt: shutting down bus"),
    (SystemExit, "SystemExit raised: shutting down bus"),
])
def test_an_interrupt_in_block_exits_the_bus(bus: Bus, log: LogRecorder,
                                             raised: type[BaseException], logged: str) -> None:
    def interrupt() -> None:
        raise raised

    bus.start()
    bus.subscribe("main", interrupt)
    if raised is SystemExit:  # it goes on up, after the bus has exited
        with pytest.raises(SystemExit):
            bus.block(interval=0.01)
    else:
        bus.block(interval=0.01)
    assert bus.state is states.EXITING
    assert logged in log.messages


# -- an exit wins over a restart --------------------------------------------------------------


@pytest.fixture
def no_exec(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record os.execv calls instead of replacing the test process."""
    calls: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append(list(argv)))
    return calls


def test_an_exit_while_a_restart_stops_makes_it_an_exit(
        bus: Bus, log: LogRecorder, no_exec: list[list[str]]) -> None:
    exits_saw: list[bool] = []
    # A stop listener of the restart asks to exit: the exit listeners have not run yet.
    bus.subscribe("stop", lambda: bus.execv and bus.exit())
    bus.subscribe("exit", lambda: exits_saw.append(bus.execv))
    bus.start()
    bus.call_in_main_thread(bus.restart)  # as SIGUSR2 does
    bus.block()
    assert exits_saw == [False]  # the PID file and the status file go
    assert no_exec == []
    assert "Exit requested during the restart: exiting instead." in log.messages


def test_an_exit_after_a_restarts_exit_listeners_runs_them_again_as_an_exit(
        bus: Bus, no_exec: list[list[str]]) -> None:
    exits_saw: list[bool] = []
    bus.subscribe("exit", lambda: exits_saw.append(bus.execv), priority=10)
    # Late in the restart, once every exit listener ran (the signal arrives while block()
    # joins the other threads).
    bus.subscribe("exit", lambda: bus.execv and bus.call_in_main_thread(bus.exit), priority=90)
    bus.start()
    threading.Thread(target=bus.restart).start()
    bus.block()
    assert exits_saw == [True, False]  # first kept for the restart, then cleaned up
    assert no_exec == [] and bus.execv is False


def test_a_restart_while_exiting_leaves_it_an_exit(
        bus: Bus, log: LogRecorder, no_exec: list[list[str]]) -> None:
    exits_saw: list[bool] = []
    bus.subscribe("stop", bus.restart)  # as SIGUSR2 would, while the servers drain
    bus.subscribe("exit", lambda: exits_saw.append(bus.execv))
    bus.start()
    threading.Thread(target=bus.exit).start()
    bus.block()
    assert exits_saw == [False] and no_exec == []
    assert "Restart not done: the bus is already exiting." in log.messages


def test_a_second_restart_during_a_restart_changes_nothing(
        bus: Bus, no_exec: list[list[str]]) -> None:
    bus.subscribe("stop", bus.restart)
    bus.start()
    bus.restart()
    bus.block()
    assert len(no_exec) == 1  # one re-exec, not an exit


def test_graceful_once_exiting_does_nothing(bus: Bus) -> None:
    reloads: list[int] = []
    bus.subscribe("graceful", lambda: reloads.append(1))
    bus.start()
    bus.graceful()
    bus.exit()
    bus.graceful()
    assert reloads == [1]


def test_start_with_callback_runs_func_in_a_thread_after_started(bus: Bus) -> None:
    seen = []
    done = threading.Event()

    def func(a: int, b: int = 0) -> None:
        seen.append((a, b, bus.state, threading.current_thread().name))
        done.set()

    thread = bus.start_with_callback(func, (1,), {"b": 2})
    assert done.wait(10)
    thread.join(10)
    assert seen[0][:3] == (1, 2, states.STARTED)
    assert seen[0][3].startswith("Bus Callback Thread-")


# -- thread safety --------------------------------------------------------------------------------


def test_subscribe_and_publish_from_many_threads(bus: Bus) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                listener = bus.subscribe("shared", lambda i=i, n=n: (n, i))
                outputs = bus.publish("shared")
                assert (n, i) in outputs
                bus.unsubscribe("shared", listener)
        except BaseException as error:  # noqa: B036 - any failure must reach the test
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert bus.publish("shared") == []


# -- re-execution pieces --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "orig_argv, expected",
    [
        (["python3", "site.py", "-x"], ["/usr/bin/python3", "site.py", "-x"]),
        (["python3", "-m", "pkg.mod", "a"], ["/usr/bin/python3", "-m", "pkg.mod", "a"]),
        (["/venv/bin/python", "/venv/bin/sitebus", "run"],
         ["/usr/bin/python3", "/venv/bin/sitebus", "run"]),
        (["python3", "-X", "dev", "-c", "code"], ["/usr/bin/python3", "-X", "dev", "-c", "code"]),
    ],
)
def test_reexec_argv_keeps_the_command_line(orig_argv: list[str], expected: list[str]) -> None:
    assert reexec_argv(orig_argv, "/usr/bin/python3") == expected


def test_reexec_argv_refuses_an_unknown_command_line() -> None:
    with pytest.raises(ValueError, match="original command line"):
        reexec_argv([], "/usr/bin/python3")


def test_close_on_exec_marks_all_but_the_kept_descriptors() -> None:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        for fd in (r1, w1, r2, w2):
            os.set_inheritable(fd, True)
        _close_on_exec_except({r2})
        assert not os.get_inheritable(r1) and not os.get_inheritable(w1)
        assert not os.get_inheritable(w2)
        assert os.get_inheritable(r2)
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def test_block_returns_only_after_the_exit_listeners_of_another_thread(bus: Bus) -> None:
    order: list[str] = []
    listener_started = threading.Event()
    proceed = threading.Event()
    block_returned = threading.Event()

    def slow_exit_listener() -> None:
        listener_started.set()
        assert proceed.wait(10)
        order.append("exit listeners done")

    def release_when_block_returns_or_soon() -> None:
        assert listener_started.wait(10)
        block_returned.wait(0.5)  # only a broken bus returns from block() meanwhile
        proceed.set()

    bus.subscribe("exit", slow_exit_listener)
    bus.start()
    threading.Thread(target=bus.exit, daemon=True).start()
    threading.Thread(target=release_when_block_returns_or_soon, daemon=True).start()
    bus.block()
    order.append("block returned")
    block_returned.set()
    assert order == ["exit listeners done", "block returned"]


def test_errors_that_explain_themselves_are_logged_without_a_traceback(
    bus: Bus, log: LogRecorder
) -> None:
    class PortInUse(OSError):
        exit_code = 69

    def broken() -> None:
        raise PortInUse("cannot listen on 127.0.0.1:80: the address is already in use")

    bus.subscribe("start", broken)
    with pytest.raises(ChannelFailures):
        bus.start()
    errors = [m for m, level in log.lines if level == 40]
    assert errors[0].startswith("Error in 'start' listener")
    assert errors[0].endswith(": cannot listen on 127.0.0.1:80: the address is already in use")
    assert errors[1] == ("Shutting down due to error in start listener: "
                         "cannot listen on 127.0.0.1:80: the address is already in use")
    assert not any("Traceback" in m for m in errors)
