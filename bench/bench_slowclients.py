"""Slow clients benchmark: how many slowloris and silent connections a site withstands.

    python bench/bench_slowclients.py [--rounds 3] [--max 4096] [--baseline DIR]
                                      [--only slow|throughput]

Slow clients: N connections are held open on the server, half of them slowloris (half a
request head, then one more header line every 2 s) and half silent (connected, nothing sent);
then 10 normal requests are made one after another, each on a new connection, and each must
be answered within 1 s. N climbs 2, 4, 8, ... up to --max; a server "withstands" the largest
N at which all 10 were answered in time. The row "64 + 64" is the issue's target: 64 slowloris
and 64 silent connections. Servers, each in its own process with its defaults: ``sitebus run``
(production environment, one process and -w 2), gunicorn 27 gthread -w 2 (4 threads, as
sitebus's thread_pool), CherryPy 18's quickstart. With --baseline DIR (a checkout of another
sitebus revision, e.g. ``git archive main | tar -x -C DIR``) that revision runs too, from
PYTHONPATH, so before and after are measured in the same run.

Throughput: hello-world requests per second through 16 keep-alive connections (wrk), for
sitebus one process and -w 2, and the baseline if given: the head reader must not cost the
fast path its speed. Each figure is the median of the rounds; every round visits every server.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_servers import CHERRYPY_APP, HELLO_APP, rounds_of_load  # noqa: E402
from bench.bench_workers import tree_cpu_seconds  # noqa: E402
from bench.env import median, reexec_in_venv, table  # noqa: E402
from bench.harness import free_port, launched  # noqa: E402

PROBES = 10
PROBE_TIMEOUT = 1.0
DRIP_INTERVAL = 2.0

@dataclass(frozen=True)
class Target:
    """One server to measure: a label, what it is, its workers, and where sitebus comes from."""

    label: str
    kind: str  # 'sitebus', 'gunicorn' or 'cherrypy'
    workers: int = 0  # sitebus: -w (0: one process)
    pythonpath: str | None = None  # sitebus: run this checkout instead of the installed one

    def argv(self, port: int, workdir: str) -> list[str]:
        Path(workdir, "hello.py").write_text(HELLO_APP)
        if self.kind == "gunicorn":
            return [sys.executable, "-m", "gunicorn", "--chdir", workdir, "-k", "gthread",
                    "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}",
                    "--log-level", "warning", "hello:app"]
        if self.kind == "cherrypy":
            return [sys.executable, "-c", CHERRYPY_APP.format(port=port)]
        Path(workdir, "site.conf").write_text(
            f'[global]\nenvironment = "production"\nserver.socket_port = {port}\n'
            'tree.hello = "", "hello:app"\n')
        argv = [sys.executable, "-m", "sitebus", "run", "-c", "site.conf"]
        return argv + (["-w", str(self.workers)] if self.workers else [])


LOGS: str | None = None
"""A directory for the servers' output (--logs), else it is discarded."""


@contextmanager
def running(target: Target) -> Iterator[tuple[tuple[str, int], int]]:
    """Run a server; yield ((host, port), pid) once it answers."""
    port = free_port()
    env = dict(os.environ)
    if target.pythonpath:
        env["PYTHONPATH"] = target.pythonpath
    with tempfile.TemporaryDirectory() as workdir, ExitStack() as files:
        output: Any = subprocess.DEVNULL
        if LOGS:
            name = "".join(c if c.isalnum() else "-" for c in target.label)
            output = files.enter_context(open(Path(LOGS, f"{name}-{port}.log"), "w"))
        with launched(target.argv(port, workdir), port, target.label, cwd=workdir, env=env,
                      output=output) as process:
            yield ("127.0.0.1", port), process.pid


class Attack:
    """N slow connections held open: half slowloris (a line every 2 s), half silent."""

    def __init__(self, address: tuple[str, int], count: int) -> None:
        self.socks: list[socket.socket] = []
        self.slow: list[socket.socket] = []
        selector = selectors.DefaultSelector()
        for i in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(address)
            self.socks.append(sock)
            if i % 2 == 0:
                selector.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + 3
        while selector.get_map() and time.monotonic() < deadline:
            for key, _mask in selector.select(0.1):
                sock = key.fileobj  # type: ignore[assignment]
                selector.unregister(sock)
                try:
                    sock.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n")
                    self.slow.append(sock)
                except OSError:
                    pass
        selector.close()
        self._stop = threading.Event()
        self._dripper = threading.Thread(target=self._drip, daemon=True)
        self._dripper.start()

    def _drip(self) -> None:
        line = 0
        while not self._stop.wait(DRIP_INTERVAL):
            line += 1
            for sock in self.slow:
                try:
                    sock.send(b"X-Drip-%d: %d\r\n" % (line, line))
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._dripper.join()
        for sock in self.socks:
            sock.close()


def probe(address: tuple[str, int]) -> float | None:
    """Make one request on a new connection; return its latency, or None past 1 s."""
    started = time.monotonic()
    try:
        with socket.create_connection(address, timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            received = b""
            while b"\r\n\r\n" not in received:
                remaining = PROBE_TIMEOUT - (time.monotonic() - started)
                if remaining <= 0:
                    return None
                sock.settimeout(remaining)
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                received += chunk
    except OSError:
        return None
    elapsed = time.monotonic() - started
    return elapsed if received.startswith(b"HTTP/1.1 200") and elapsed <= PROBE_TIMEOUT else None


def under_attack(address: tuple[str, int], count: int) -> tuple[int, float]:
    """Return (requests answered within 1 s out of 10, slowest answered, ms) with N held."""
    attack = Attack(address, count)
    try:
        time.sleep(0.5)  # let the server take them all in
        latencies = [probe(address) for _ in range(PROBES)]
    finally:
        attack.close()
    answered = [x for x in latencies if x is not None]
    time.sleep(0.5)
    return len(answered), max(answered, default=float("nan")) * 1000


def ladder(limit: int) -> list[int]:
    counts, n = [], 2
    while n <= limit:
        counts.append(n)
        n *= 2
    return counts


def stack_alive(target: Target, servers: dict[Target, tuple[tuple[str, int], int]]) -> bool:
    """Return True while the server's main process runs."""
    try:
        os.kill(servers[target][1], 0)
        with open(f"/proc/{servers[target][1]}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def slow_clients(targets: list[Target], rounds: int, limit: int) -> None:
    withstood: dict[Target, list[int]] = {t: [] for t in targets}
    at_target: dict[Target, list[tuple[int, float]]] = {t: [] for t in targets}
    with ExitStack() as stack:
        servers = {t: stack.enter_context(running(t)) for t in targets}
        for _ in range(rounds):
            for target, (address, _pid) in servers.items():
                at_target[target].append(under_attack(address, 128))
                best = 0
                for count in ladder(limit):
                    answered, _slowest = under_attack(address, count)
                    if answered < PROBES:
                        break
                    best = count
                withstood[target].append(best)
                alive = stack_alive(target, servers)
                print(f"  {target.label}: 64+64 -> {at_target[target][-1][0]}/10, "
                      f"withstands {best}{'' if alive else ' (the server has exited)'}",
                      file=sys.stderr, flush=True)
    rows = []
    for target in targets:
        answered = [a for a, _ in at_target[target]]
        slowest = [s for _, s in at_target[target]]
        rows.append([target.label, f"{median(answered):.0f}/10",
                     " ".join(str(a) for a in answered), f"{median(slowest):.0f}",
                     f"{median(withstood[target]):.0f}",
                     " ".join(str(w) for w in withstood[target])])
    print(f"\nSlow clients (median of {rounds} rounds; N = slowloris + silent connections held;"
          f" ladder up to {limit}):\n")
    print(table(["server", "64+64: answered <1 s", "rounds", "slowest ms", "withstands N",
                 "rounds"], rows))


def throughput(targets: list[Target], rounds: int, seconds: float) -> None:
    with ExitStack() as stack:
        servers = {t: stack.enter_context(running(t)) for t in targets}
        results = {target: [(r.requests_per_second, r.cpu_us_per_request) for r in found]
                   for target, found in rounds_of_load(servers, rounds, seconds, 16,
                                                       cpu=tree_cpu_seconds).items()}
    rows = []
    for target in targets:
        rates = [r for r, _ in results[target]]
        rows.append([target.label, f"{median(rates):.0f}", " ".join(f"{r:.0f}" for r in rates),
                     f"{median([c for _, c in results[target]]):.0f}"])
    print(f"\nHello world, 16 keep-alive connections, {seconds:g} s x {rounds} rounds "
          "(median):\n")
    print(table(["server", "req/s", "rounds", "CPU us/req"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max", type=int, default=4096, help="the largest N tried")
    parser.add_argument("--baseline", help="a checkout of another sitebus revision to compare")
    parser.add_argument("--only", choices=["slow", "throughput"])
    parser.add_argument("--logs", help="a directory to keep the servers' output in")
    args = parser.parse_args()
    reexec_in_venv()
    global LOGS
    LOGS = args.logs
    baseline = os.path.abspath(args.baseline) if args.baseline else None
    sitebus = [Target("sitebus", "sitebus"), Target("sitebus -w 2", "sitebus", 2)]
    if baseline:
        sitebus += [Target("sitebus baseline", "sitebus", 0, baseline),
                    Target("sitebus baseline -w 2", "sitebus", 2, baseline)]
    if args.only != "throughput":
        slow_clients(sitebus + [Target("gunicorn gthread -w 2 --threads 4", "gunicorn"),
                                Target("CherryPy 18", "cherrypy")], args.rounds, args.max)
    if args.only != "slow":
        throughput(sitebus, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
