"""Bus benchmark: publish cost and the idle cost of a blocked bus, sitebus beside CherryPy.

    python bench/bench_bus.py [--rounds 3] [--idle-seconds 10]

Publish: microseconds per ``publish`` to a channel with 0, 1 and 10 no-op listeners (median
of the rounds). Idle: CPU seconds and context switches (all threads of the process) over
``--idle-seconds`` of a process whose bus is started and blocked, with its signal handler.
Targets (issue 2): publish to 10 listeners at least 2x faster than CherryPy's; idle, at most 2
context switches in 10 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.env import median, reexec_in_venv, table  # noqa: E402

IDLE_PROGRAMS = {
    "sitebus": (
        "from sitebus.bus import Bus\n"
        "from sitebus.process.signals import SignalHandler\n"
        "bus = Bus()\n"
        "SignalHandler(bus).subscribe()\n"
        "bus.start()\n"
        "print('ready', flush=True)\n"
        "bus.block()\n"
    ),
    "cherrypy": (
        "from cherrypy.process.wspbus import Bus\n"
        "from cherrypy.process.plugins import SignalHandler\n"
        "bus = Bus()\n"
        "SignalHandler(bus).subscribe()\n"
        "bus.start()\n"
        "print('ready', flush=True)\n"
        "bus.block()\n"
    ),
}


def make_bus(impl: str):  # type: ignore[no-untyped-def]
    if impl == "sitebus":
        from sitebus.bus import Bus
    else:
        from cherrypy.process.wspbus import Bus
    return Bus()


def publish_cost_us(impl: str, listeners: int, number: int) -> float:
    bus = make_bus(impl)
    for _ in range(listeners):
        bus.subscribe("ch", (lambda: None))
    seconds = timeit.timeit(lambda: bus.publish("ch"), number=number)
    return seconds / number * 1e6


def thread_counters(pid: int) -> tuple[float, int]:
    """Return (CPU seconds, context switches) summed over every thread of ``pid``."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    cpu = 0.0
    switches = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
    return cpu, switches


def idle_cost(impl: str, seconds: float) -> tuple[float, int]:
    child = subprocess.Popen(
        [sys.executable, "-c", IDLE_PROGRAMS[impl]],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{impl} idle program did not start")
        time.sleep(0.5)  # let start-up work settle before the measured window
        cpu0, sw0 = thread_counters(child.pid)
        time.sleep(seconds)
        cpu1, sw1 = thread_counters(child.pid)
        return cpu1 - cpu0, sw1 - sw0
    finally:
        child.terminate()
        child.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    rounds = max(3, args.rounds)

    rows = []
    for listeners in (0, 1, 10):
        costs = {
            impl: median([publish_cost_us(impl, listeners, args.number) for _ in range(rounds)])
            for impl in ("sitebus", "cherrypy")
        }
        rows.append([
            listeners,
            f"{costs['sitebus']:.3f}",
            f"{costs['cherrypy']:.3f}",
            f"{costs['cherrypy'] / costs['sitebus']:.1f}x",
        ])
    print(f"publish cost, us per call (median of {rounds} rounds of {args.number})")
    print(table(["listeners", "sitebus", "cherrypy", "sitebus speed-up"], rows))
    print()

    idle_rows = []
    for impl in ("sitebus", "cherrypy"):
        results = [idle_cost(impl, args.idle_seconds) for _ in range(rounds)]
        idle_rows.append([
            impl,
            f"{median([cpu for cpu, _ in results]):.3f}",
            int(median([sw for _, sw in results])),
            " ".join(str(sw) for _, sw in results),
        ])
    print(f"idle blocked bus over {args.idle_seconds:g} s (median of {rounds} rounds)")
    print(table(["bus", "CPU s", "ctx switches", "per round"], idle_rows))


if __name__ == "__main__":
    reexec_in_venv()
    main()
