"""The reaper: its decisions as tables, and the real thing in this process as a child subreaper.

(tests/integration/test_container_process.py runs it as PID 1 of a PID namespace.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import warnings

import pytest

from sitebus.bus import Bus
from sitebus.errors import ConfigError
from sitebus.process.reaper import (
    RECHECK_LIMIT,
    Pending,
    Reaper,
    after_look,
    next_look,
    owned_pids,
    set_child_subreaper,
    track,
    zombie_children,
)
from tests.processes import wait_until

PR_GET_CHILD_SUBREAPER = 37


def is_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    value = ctypes.c_int(-1)
    assert libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) == 0
    return bool(value.value)


# -- decisions ------------------------------------------------------------------------------


@pytest.mark.parametrize("zombies, pending, kept, due", [
    ({5}, {}, {5: Pending(10.2)}, set()),                         # new: wait one interval
    ({5}, {5: Pending(10.0)}, {5: Pending(10.0)}, {5}),           # seen an interval ago: due
    ({5}, {5: Pending(10.1)}, {5: Pending(10.1)}, set()),         # not yet
    (set(), {5: Pending(9.0)}, {}, set()),                        # reaped by its owner: forget
    ({5, 6}, {5: Pending(9.0, 2)}, {5: Pending(9.0, 2), 6: Pending(10.2)}, {5}),
])
def test_track(zombies: set[int], pending: dict[int, Pending], kept: dict[int, Pending],
               due: set[int]) -> None:
    assert track(zombies, pending, 10.0, 0.2) == (kept, due)


@pytest.mark.parametrize("pending, due, owned, kept, reap", [
    ({5: Pending(9.0)}, {5}, set(), {}, {5}),                     # nobody owns it: reap
    ({5: Pending(9.0)}, {5}, {5}, {5: Pending(10.4, 1)}, set()),  # a Popen owns it: later
    ({5: Pending(9.0, 3)}, {5}, {5}, {5: Pending(13.2, 4)}, set()),  # less and less often
    ({5: Pending(9.0, 20)}, {5}, {5}, {5: Pending(10.0 + RECHECK_LIMIT, 21)}, set()),
    ({5: Pending(9.0), 6: Pending(10.2)}, {5}, set(), {6: Pending(10.2)}, {5}),  # 6 waits
])
def test_after_look(pending: dict[int, Pending], due: set[int], owned: set[int],
                    kept: dict[int, Pending], reap: set[int]) -> None:
    assert after_look(pending, due, owned, 10.0, 0.2) == (kept, reap)


@pytest.mark.parametrize("pending, last, signalled, expected", [
    ({}, 10.0, False, None),                                      # idle: SIGCHLD alone wakes
    ({}, 10.0, True, 10.2),                                       # at most once per interval
    ({}, 5.0, True, 5.2),                                         # long quiet: (past) at once
    ({5: Pending(11.0)}, 10.0, False, 11.0),                      # a zombie's due time
    ({5: Pending(10.05)}, 10.0, False, 10.2),                     # ...not before the interval
    ({5: Pending(11.0)}, 5.0, True, 5.2),
])
def test_next_look(pending: dict[int, Pending], last: float, signalled: bool,
                   expected: float | None) -> None:
    result = next_look(pending, last, signalled, 0.2)
    assert result == (None if expected is None else pytest.approx(expected))


# -- the system -----------------------------------------------------------------------------


def fork() -> int:
    """os.fork, without Python 3.12's warning about forking a process that has threads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def test_zombie_children_lists_an_exited_child_until_it_is_reaped() -> None:
    pid = fork()
    if pid == 0:
        os._exit(7)
    try:
        wait_until(lambda: pid in zombie_children(os.getpid()), 10, "the child to be a zombie")
    finally:
        _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    assert pid not in zombie_children(os.getpid())


def test_zombie_children_skips_live_children_and_others_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid not in zombie_children(os.getpid())
        assert zombie_children(child.pid) == set()
    finally:
        child.kill()
        child.wait()


def test_owned_pids_names_live_popens_until_they_are_waited_for() -> None:
    child = subprocess.Popen(["sh", "-c", "exit 3"])
    assert child.pid in owned_pids()
    assert child.wait() == 3
    assert child.pid not in owned_pids()


def test_owned_pids_knows_subclasses_and_multiprocessing() -> None:
    import multiprocessing

    class Mine(subprocess.Popen):  # type: ignore[type-arg]
        pass

    child = Mine(["sh", "-c", "exit 4"])
    process = multiprocessing.get_context("spawn").Process(target=int)
    process.start()
    try:
        assert {child.pid, process.pid} <= owned_pids()
    finally:
        assert child.wait() == 4
        process.join(30)
    assert process.exitcode == 0


def test_subreaper_takes_the_orphans_of_descendants() -> None:
    assert not is_subreaper()
    set_child_subreaper(True)
    try:
        assert is_subreaper()
        # sh leaves a background child behind and exits: the child re-parents to us.
        out = subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True)
        orphan = int(out.stdout)
        try:
            with open(f"/proc/{orphan}/stat") as stat:
                assert int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
        finally:
            os.kill(orphan, signal.SIGKILL)
            os.waitpid(orphan, 0)
    finally:
        set_child_subreaper(False)
    assert not is_subreaper()


# -- the plugin in this process -------------------------------------------------------------


@pytest.mark.slow
def test_the_reaper_reaps_orphans_and_leaves_subprocess_its_children(bus: Bus) -> None:
    previous = signal.getsignal(signal.SIGCHLD)
    reaper = Reaper(bus)
    reaper.interval = 0.05
    reaper.subscribe()
    bus.start()
    try:
        assert is_subreaper()
        assert signal.getsignal(signal.SIGCHLD) == reaper._on_sigchld
        for _ in range(10):
            subprocess.run(["sh", "-c", "sleep 0.01 &"], check=True)
        # The app's own children keep their exit status, even one waited for late.
        codes = [subprocess.run(["sh", "-c", f"exit {n}"]).returncode for n in (0, 1, 7, 255)]
        late = subprocess.Popen(["sh", "-c", "exit 3"])
        wait_until(lambda: late.pid in zombie_children(os.getpid()), 10, "a zombie Popen")
        wait_until(lambda: reaper.reaped >= 10, 10, "the reaper to reap 10 orphans")
        threading.Event().wait(0.3)  # six intervals: time for the reaper to take it, wrongly
        assert late.wait() == 3
        assert codes == [0, 1, 7, 255]
        assert zombie_children(os.getpid()) == set()
        assert reaper.reaped == 10
    finally:
        bus.exit()
    assert signal.getsignal(signal.SIGCHLD) == previous
    assert not is_subreaper()
    assert not any(t.name == "sitebus reaper" for t in threading.enumerate())


def test_a_bad_interval_is_one_clear_error(bus: Bus) -> None:
    reaper = Reaper(bus)
    reaper.interval = "1"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"engine.reaper.interval: expected seconds between 0 "
                                          r"and 60, got '1'"):
        reaper.start()
    assert signal.getsignal(signal.SIGCHLD) in (signal.SIG_DFL, None)


def test_a_forked_child_gets_sigchld_s_default_back(bus: Bus) -> None:
    reaper = Reaper(bus)
    reaper.subscribe()
    bus.start()
    try:
        read_end, write_end = os.pipe()
        pid = fork()
        if pid == 0:  # a worker, say: no reaper here
            os.write(write_end, b"default" if signal.getsignal(signal.SIGCHLD)
                     == signal.SIG_DFL else b"inherited")
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as answer:
            assert answer.read() == b"default"
        os.waitpid(pid, 0)
        assert signal.getsignal(signal.SIGCHLD) == reaper._on_sigchld  # the parent keeps it
    finally:
        bus.exit()
