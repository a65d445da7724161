"""Decisions of the master of pre-fork workers, as pure functions of plain values.

``sitebus.workers.master`` (the master) and ``sitebus.workers.worker`` (the child) make the system
calls; what to do about what they see is decided here, so it is tested with tables rather than
processes:

- ``check_settings``: the ``server.workers``... settings, one problem at a time.
- ``plan``: given the workers (pid, generation, state) and how many there should be, which to
  fork and which to ask to stop. It encodes the rolling replacement: while outgoing workers
  (an older generation, or marked for retirement) serve, new ones are forked one at a time and
  an outgoing one is asked to stop only once a new one is ready, so the site never serves with
  fewer ready workers than it had.
- ``should_recycle``: what a heartbeat's figures (requests served, memory, the age of the
  oldest request in flight) say about a worker: keep it, or retire it and why.
- ``crash_verdict`` and ``spawn_delay``: the crash-loop rule. Workers that exit before they are
  ready are counted in a row (any ready worker resets the count); at ``CRASH_LIMIT`` with none
  ready the master gives up with the last worker's error and exit code, rather than forking in
  a loop; while others serve, it retries with a growing delay instead.
- ``request_limit``: ``max_requests`` plus this worker's share of the jitter, so workers
  started together are not all recycled together.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CRASH_LIMIT",
    "Failure",
    "SETTINGS",
    "Plan",
    "WorkerView",
    "check_settings",
    "crash_verdict",
    "describe_exit",
    "plan",
    "request_limit",
    "should_recycle",
    "spawn_delay",
]

CRASH_LIMIT = 3
"""Workers that exit before they are ready, in a row with none ready, before the master gives up."""

FIRST_RETRY = 0.1
LONGEST_RETRY = 30.0
"""Seconds before forking again after a start-up failure: doubling from FIRST_RETRY, capped."""


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_seconds(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


SETTINGS: dict[str, tuple[Any, Callable[[Any], bool], str]] = {
    "workers": (0, _is_int, "a number of worker processes, 0 or more (0: no workers)"),
    "worker_timeout": (30, _is_seconds, "a number of seconds, 0 or more (0: no timeout)"),
    "max_requests": (0, _is_int, "a number of requests, 0 or more (0: no limit)"),
    "max_requests_jitter": (0, _is_int, "a number of requests, 0 or more"),
    "max_rss": (0, _is_int, "a number of bytes, 0 or more (0: no limit)"),
    "preload": (False, lambda v: isinstance(v, bool), "True or False"),
}
"""The worker settings (``server.<name>``): default, check, and what a good value is."""


def check_settings(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return (setting, what was expected) for each wrong value, in the order of SETTINGS."""
    return [(name, expected) for name, (_default, check, expected) in SETTINGS.items()
            if not check(values[name])]


def request_limit(max_requests: int, jitter: int, draw: Callable[[int, int], int]) -> int:
    """Return how many requests one worker serves before it is recycled (0: no limit).

    ``draw(a, b)`` returns an integer from a to b inclusive (``random.randint``).
    """
    if max_requests <= 0:
        return 0
    return max_requests + (draw(0, jitter) if jitter > 0 else 0)


def should_recycle(requests: int, rss: int, oldest: float | None, limit: int, max_rss: int,
                   timeout: float) -> str | None:
    """Return why a worker should be replaced, from its last heartbeat, or None to keep it.

    ``oldest`` is the age in seconds of its oldest request in flight (None: none in flight);
    ``limit``, ``max_rss`` and ``timeout`` are off at 0.
    """
    if timeout > 0 and oldest is not None and oldest >= timeout:
        return (f"a request has been running for {oldest:.0f} s "
                f"(server.worker_timeout = {timeout:g})")
    if limit > 0 and requests >= limit:
        return f"it served {requests} requests (server.max_requests)"
    if max_rss > 0 and rss > max_rss:
        return f"its memory reached {rss / 1048576:.0f} MiB (server.max_rss = {max_rss})"
    return None


@dataclass(frozen=True)
class Failure:
    """Why the workers cannot run: the last worker's error and exit code."""

    message: str
    code: int


def describe_exit(code: int) -> str:
    """Return how a process ended, from its exit code: 'exit status 78', 'killed by SIGKILL'."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def crash_verdict(failures: int, any_ready: bool, limit: int = CRASH_LIMIT) -> str:
    """Return 'give up' when start-up failures say the workers cannot start, else 'retry'."""
    return "give up" if failures >= limit and not any_ready else "retry"


def spawn_delay(failures: int) -> float:
    """Return the seconds to wait before forking after ``failures`` start-up failures in a row."""
    if failures <= 0:
        return 0.0
    return min(LONGEST_RETRY, FIRST_RETRY * 2 ** (failures - 1))


@dataclass(frozen=True)
class WorkerView:
    """What ``plan`` needs to know of one worker."""

    pid: int
    generation: int
    state: str  # 'starting', 'ready' or 'stopping'
    retiring: bool = False  # to be replaced (recycled, hung), as an older generation is
    started: float = 0.0  # when it was forked (any clock): the oldest stop first


@dataclass(frozen=True)
class Plan:
    """How many workers to fork now, and which to ask to stop."""

    spawn: int = 0
    stop: tuple[int, ...] = ()


def plan(workers: Sequence[WorkerView], target: int, generation: int,
         may_spawn: bool = True) -> Plan:
    """Return what to do so that ``target`` workers of ``generation`` serve.

    Workers already stopping are left alone. Outgoing workers (another generation, or
    retiring) are replaced one at a time: one new worker starts; when it is ready an outgoing
    one is asked to stop and the next new one starts. Outgoing workers that are still
    starting are stopped at once (they serve nothing yet). Without outgoing workers, missing
    ones are forked all at once and extra ones stopped, the oldest first. ``may_spawn`` False
    (after a start-up failure, until the retry delay has passed) forks nothing.
    """
    active = [w for w in workers if w.state != "stopping"]
    current = [w for w in active if w.generation == generation and not w.retiring]
    outgoing = [w for w in active if w.generation != generation or w.retiring]
    stop = [w for w in outgoing if w.state == "starting"]
    serving_out = sorted((w for w in outgoing if w.state == "ready"),
                         key=lambda w: (not w.retiring, w.generation, w.started))
    current_ready = [w for w in current if w.state == "ready"]
    spawn = 0
    if serving_out:
        surplus = len(current_ready) + len(serving_out) - target
        stop += serving_out[:max(0, surplus)]
        if len(current) < target and not any(w.state == "starting" for w in current):
            spawn = 1
    elif len(current) < target:
        spawn = target - len(current)
    elif len(current) > target:
        by_age = sorted(current, key=lambda w: (w.state == "ready", w.started))
        stop += by_age[:len(current) - target]
    return Plan(spawn if may_spawn else 0, tuple(w.pid for w in stop))
