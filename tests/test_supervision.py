"""The master's decisions about its workers, as tables (sitebus.workers.supervision)."""

from __future__ import annotations

import pytest

from sitebus.workers.supervision import (
    CRASH_LIMIT,
    SETTINGS,
    Plan,
    WorkerView,
    check_settings,
    crash_verdict,
    describe_exit,
    plan,
    request_limit,
    should_recycle,
    spawn_delay,
)


def w(pid: int, state: str = "ready", generation: int = 0, retiring: bool = False) -> WorkerView:
    return WorkerView(pid, generation, state, retiring, started=float(pid))


PLANS = [
    # (workers, target, generation, may_spawn, expected plan)
    ([], 2, 0, True, Plan(spawn=2)),
    ([], 2, 0, False, Plan()),
    ([w(1)], 2, 0, True, Plan(spawn=1)),
    ([w(1), w(2, "starting")], 2, 0, True, Plan()),
    ([w(1), w(2, "stopping")], 2, 0, True, Plan(spawn=1)),  # stopping ones count for nothing
    # a reload (generation 1): one new worker at a time, an old one stops once one is ready
    ([w(1), w(2)], 2, 1, True, Plan(spawn=1)),
    ([w(1), w(2), w(3, "starting", 1)], 2, 1, True, Plan()),
    ([w(1), w(2), w(3, generation=1)], 2, 1, True, Plan(spawn=1, stop=(1,))),
    ([w(1, "stopping"), w(2), w(3, generation=1)], 2, 1, True, Plan(spawn=1)),
    ([w(2), w(3, generation=1), w(4, "starting", 1)], 2, 1, True, Plan()),
    ([w(2), w(3, generation=1), w(4, generation=1)], 2, 1, True, Plan(stop=(2,))),
    ([w(3, generation=1), w(4, generation=1)], 2, 1, True, Plan()),
    ([w(1), w(2)], 2, 1, False, Plan()),  # no fork allowed yet: the old ones keep serving
    ([w(1, "starting"), w(2)], 2, 1, True, Plan(spawn=1, stop=(1,))),  # serves nothing yet
    # a retiring worker (recycled, hung) is replaced the same way, first among outgoing ones
    ([w(1, retiring=True), w(2)], 2, 0, True, Plan(spawn=1)),
    ([w(1), w(2, retiring=True), w(3)], 2, 0, True, Plan(stop=(2,))),
    # SIGTTIN / SIGTTOU
    ([w(1), w(2)], 3, 0, True, Plan(spawn=1)),
    ([w(1), w(2), w(3)], 2, 0, True, Plan(stop=(1,))),
    ([w(1), w(2), w(3, "starting")], 2, 0, True, Plan(stop=(3,))),
]


@pytest.mark.parametrize("workers, target, generation, may_spawn, expected", PLANS)
def test_plan(workers: list[WorkerView], target: int, generation: int, may_spawn: bool,
              expected: Plan) -> None:
    assert plan(workers, target, generation, may_spawn) == expected


def test_a_rolling_reload_never_serves_with_fewer_ready_workers() -> None:
    """Play a reload of 3 workers through plan(); count the ready workers at every step."""
    workers = {pid: w(pid) for pid in (1, 2, 3)}
    next_pid = 4
    for _step in range(20):
        todo = plan(list(workers.values()), 3, 1)
        for pid in todo.stop:
            del workers[pid]  # stopping: serves no new connection
        for _ in range(todo.spawn):
            workers[next_pid] = w(next_pid, "starting", 1)
            next_pid += 1
        assert sum(v.state == "ready" for v in workers.values()) >= 3
        starting = [pid for pid, v in workers.items() if v.state == "starting"]
        assert len(starting) <= 1
        for pid in starting:  # the new worker becomes ready
            workers[pid] = w(pid, "ready", 1)
    assert sorted(workers) == [4, 5, 6]
    assert all(v.generation == 1 for v in workers.values())


RECYCLE = [
    # (requests, rss, oldest, limit, max_rss, timeout, reason contains)
    (10, 100, None, 0, 0, 30, None),
    (10, 100, 2.0, 0, 0, 30, None),
    (10, 100, 30.0, 0, 0, 30, "running for 30 s"),
    (10, 100, 99.0, 0, 0, 0, None),  # no timeout
    (10, 100, None, 10, 0, 30, "served 10 requests"),
    (9, 100, None, 10, 0, 30, None),
    (10, 2 << 20, None, 0, 1 << 20, 30, "memory reached 2 MiB"),
    (10, 1 << 20, None, 0, 1 << 20, 30, None),
]


@pytest.mark.parametrize("requests, rss, oldest, limit, max_rss, timeout, reason", RECYCLE)
def test_should_recycle(requests: int, rss: int, oldest: float | None, limit: int, max_rss: int,
                        timeout: float, reason: str | None) -> None:
    found = should_recycle(requests, rss, oldest, limit, max_rss, timeout)
    assert (found is None) if reason is None else (found is not None and reason in found)


@pytest.mark.parametrize("failures, any_ready, verdict", [
    (0, False, "retry"),
    (CRASH_LIMIT - 1, False, "retry"),
    (CRASH_LIMIT, False, "give up"),
    (CRASH_LIMIT + 5, True, "retry"),  # others serve: never give up
])
def test_crash_verdict(failures: int, any_ready: bool, verdict: str) -> None:
    assert crash_verdict(failures, any_ready) == verdict


def test_spawn_delay_doubles_up_to_a_cap() -> None:
    delays = [spawn_delay(n) for n in range(12)]
    assert delays[:4] == [0.0, 0.1, 0.2, 0.4]
    assert delays == sorted(delays) and delays[-1] == 30.0


@pytest.mark.parametrize("max_requests, jitter, expected", [
    (0, 50, 0), (100, 0, 100), (100, 50, 150),
])
def test_request_limit(max_requests: int, jitter: int, expected: int) -> None:
    assert request_limit(max_requests, jitter, lambda low, high: high) == expected


def test_check_settings_names_each_wrong_value() -> None:
    good = {name: default for name, (default, _check, _text) in SETTINGS.items()}
    assert check_settings(good) == []
    for name, bad in [("workers", -1), ("workers", 2.5), ("workers", True),
                      ("worker_timeout", -1), ("worker_timeout", float("inf")),
                      ("max_requests", "10"), ("max_requests_jitter", -5), ("max_rss", 1.5),
                      ("preload", 1)]:
        problems = check_settings({**good, name: bad})
        assert [setting for setting, _expected in problems] == [name]


@pytest.mark.parametrize("code, text", [(0, "exit status 0"), (78, "exit status 78"),
                                        (-9, "killed by SIGKILL"), (-200, "killed by signal 200")])
def test_describe_exit(code: int, text: str) -> None:
    assert describe_exit(code) == text
