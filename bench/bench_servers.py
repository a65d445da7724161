"""Server benchmark: cheroot's throughput by thread count, and p99 latency by listen backlog.

    python bench/bench_servers.py [--rounds 3] [--seconds 5]

Throughput: hello-world requests per second through 16 keep-alive connections, for raw
cheroot with 1, 2, 4, 8 and 10 worker threads, and for sitebus's Server with its defaults;
then the same with an app that waits 10 ms per request (a database query, say), where
threads overlap the waits.
Latency: the 99th percentile with 64 concurrent clients that each open a new connection per
request (``Connection: close``), so every request passes through the listen backlog: raw
cheroot with the reference's backlog of 5 and with sitebus's default, sitebus's Server,
gunicorn and CherryPy with their defaults. Each figure is the median of the rounds; every
round visits all the servers in turn, so a shared machine's changing load hits them alike.

The load comes from wrk when it is installed (``apt-get install wrk``); otherwise from a
small threaded client in this process, which is slower and says so. Each server runs in a
process of its own. To compare another server, add a program to SERVERS and a Config to a table.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.env import median, reexec_in_venv, table  # noqa: E402
from bench.harness import free_port, launched  # noqa: E402

HELLO_APP = (
    "import time\n"
    "def app(environ, start_response):\n"
    "    if environ['PATH_INFO'] == '/io':\n"
    "        time.sleep(0.01)  # stands for a 10 ms database query\n"
    "    start_response('200 OK', [('Content-Type', 'text/plain'),\n"
    "                              ('Content-Length', '12')])\n"
    "    return [b'Hello world!']\n"
)

# CherryPy 18's quickstart with its production settings, serving 'Hello world!' on {port}.
CHERRYPY_APP = (
    "import cherrypy\n"
    "class Root:\n"
    "    @cherrypy.expose\n"
    "    def index(self):\n"
    "        return 'Hello world!'\n"
    "cherrypy.config.update({{'server.socket_port': {port}, 'log.screen': False,\n"
    "                        'environment': 'production'}})\n"
    "cherrypy.quickstart(Root())\n"
)

# Programs that serve HELLO_APP on {port}; {threads} and {backlog} are filled in when given.
SERVERS = {
    "cheroot": HELLO_APP + (
        "from cheroot import wsgi\n"
        "server = wsgi.Server(('127.0.0.1', {port}), app, numthreads={threads},\n"
        "                     request_queue_size={backlog})\n"
        "server.safe_start()\n"
    ),
    "sitebus": HELLO_APP + (
        "from sitebus.bus import Bus\n"
        "from sitebus.servers.server import Server\n"
        "from sitebus.process.signals import SignalHandler\n"
        "bus = Bus()\n"
        "SignalHandler(bus).subscribe()\n"
        "server = Server(bus, socket_port={port}, wsgi_app=app)\n"
        "if {threads}: server.thread_pool = {threads}\n"
        "if {backlog}: server.socket_queue_size = {backlog}\n"
        "server.subscribe()\n"
        "bus.start()\n"
        "bus.block()\n"
    ),
    "cherrypy": CHERRYPY_APP,
    "gunicorn": None,  # run as a command: see server_argv
    "site": None,  # the whole site through `sitebus run`: see server_argv
}

# The whole site: `sitebus run` with the app mounted on the tree, access log off (as it is
# for the raw server), autoreload off (production), the default server's settings.
SITE_CONFIG = (
    "[global]\n"
    "environment = 'production'\n"
    "server.socket_port = {port}\n"
    "{threads_line}"
    "tree.hello = '', 'hello:app'\n"
)


def server_argv(name: str, port: int, threads: int, backlog: int, workdir: str) -> list[str]:
    if name == "gunicorn":
        Path(workdir, "hello.py").write_text(HELLO_APP)
        return [sys.executable, "-m", "gunicorn", "--chdir", workdir, "-b", f"127.0.0.1:{port}",
                "--log-level", "warning", "hello:app"]
    if name == "site":
        Path(workdir, "hello.py").write_text(HELLO_APP)
        threads_line = f"server.thread_pool = {threads}\n" if threads else ""
        Path(workdir, "site.conf").write_text(SITE_CONFIG.format(port=port,
                                                                 threads_line=threads_line))
        return [sys.executable, "-m", "sitebus", "run", "-c", str(Path(workdir, "site.conf")),
                "-P", workdir]
    program = SERVERS[name]
    assert program is not None
    return [sys.executable, "-c", program.format(port=port, threads=threads, backlog=backlog)]


@contextmanager
def running(name: str, threads: int = 0, backlog: int = 0) -> Iterator[tuple[tuple[str, int], int]]:
    """Run a server in its own process; yield its ((host, port), pid) once it answers."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        argv = server_argv(name, port, threads, backlog, workdir)
        with launched(argv, port, name, settle=0, timeout=10) as process:
            yield ("127.0.0.1", port), process.pid


@dataclass
class Result:
    requests_per_second: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us_per_request: float = float("nan")


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time of a process, all threads (it is single-process)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(output: str) -> Result:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    match = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    p99 = float(match.group(1)) * UNITS_MS[match.group(2)] if match else float("nan")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    count = sum(int(n) for n in errors.groups()) if errors else 0
    total = re.search(r"(\d+) requests in", output)
    return Result(rate, p99, count + (int(non2xx.group(1)) if non2xx else 0),
                  int(total.group(1)) if total else 0)


def load_wrk(address: tuple[str, int], connections: int, seconds: float, close: bool,
             path: str = "/") -> Result:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "5s"]
    if close:
        argv += ["-H", "Connection: close"]
    output = subprocess.run([*argv, f"http://{address[0]}:{address[1]}{path}"], check=True,
                            capture_output=True, text=True).stdout
    return parse_wrk(output)


def load_python(address: tuple[str, int], connections: int, seconds: float,
                close: bool, path: str = "/") -> Result:
    """A fallback load generator: one thread per connection (GIL-bound: lower rates)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(*address, timeout=5)
        mine = []
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                conn.request("GET", path, headers={"Connection": "close"} if close else {})
                conn.getresponse().read()
                mine.append(time.monotonic() - started)
            except OSError:
                with lock:
                    errors[0] += 1
            if close:
                conn.close()
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
    return Result(len(latencies) / seconds, p99, errors[0], len(latencies))


Address = tuple[str, int]
K = TypeVar("K")


def rounds_of_load(live: Mapping[K, tuple[Address, int]], rounds: int, seconds: float,
                   connections: int, close: bool = False, path: str = "/",
                   cpu: Callable[[int], float] = cpu_seconds) -> dict[K, list[Result]]:
    """Load each live server ((address, pid) by key) in turn, ``rounds`` times; return each
    one's results, with the CPU time ``cpu(pid)`` per request.

    Every server is warmed up for a second first. Every round visits each server in turn, so
    a change in the machine's background load hits them all alike rather than whichever ran
    then, and every other round in reverse order, so none always runs right after the same
    one.
    """
    load = load_wrk if shutil.which("wrk") else load_python
    for address, _pid in live.values():
        load(address, connections, 1, close, path)  # warm up
    results: dict[K, list[Result]] = {key: [] for key in live}
    for round_ in range(rounds):
        order = list(live.items())
        if round_ % 2:  # no server always follows the same one (its flusher, its closes)
            order.reverse()
        for key, (address, pid) in order:
            cpu_before = cpu(pid)
            result = load(address, connections, seconds, close, path)
            if result.requests:
                result.cpu_us_per_request = (cpu(pid) - cpu_before) / result.requests * 1e6
            results[key].append(result)
    return results


@dataclass(frozen=True)
class Config:
    """One server process to measure: a SERVERS name and its thread and backlog settings."""

    name: str
    threads: int = 0  # 0: the server's default
    backlog: int = 0


def measure(configs: list[Config], rounds: int, seconds: float, connections: int,
            close: bool, path: str = "/") -> dict[Config, list[Result]]:
    """Return each config's results, one per round; all servers run at once."""
    with ExitStack() as stack:
        servers = {config: stack.enter_context(running(config.name, config.threads,
                                                       config.backlog))
                   for config in configs}
        return rounds_of_load(servers, rounds, seconds, connections, close, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", choices=["throughput", "latency", "site"])
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    rounds = max(3, args.rounds)
    client = "wrk" if shutil.which("wrk") else "the built-in Python client (install wrk)"
    print(f"load from {client}; {os.cpu_count()} CPUs; median of {rounds} rounds of "
          f"{args.seconds:g} s\n")

    if args.only in (None, "throughput"):
        throughput(rounds, args.seconds)
    if args.only in (None, "latency"):
        latency(rounds, args.seconds)
    if args.only in (None, "site"):
        site(rounds, args.seconds, args.idle_seconds)


THREAD_COUNTS = [Config("cheroot", n, 1024) for n in (1, 2, 4, 8, 10)] + [Config("sitebus")]
BACKLOGS = [Config("cheroot", 10, 5), Config("cheroot", 4, 1024), Config("sitebus"),
            Config("cherrypy"), Config("gunicorn")]


def label(value: int) -> object:
    return value or "default"


def throughput(rounds: int, seconds: float) -> None:
    hello = measure(THREAD_COUNTS, rounds, seconds, 16, close=False)
    waits = measure(THREAD_COUNTS, rounds, seconds, 16, close=False, path="/io")
    rows = []
    for config in THREAD_COUNTS:
        rates = [r.requests_per_second for r in hello[config]]
        rows.append([config.name, label(config.threads), f"{median(rates):.0f}",
                     " ".join(f"{rate:.0f}" for rate in rates),
                     f"{median([r.cpu_us_per_request for r in hello[config]]):.0f}",
                     f"{median([r.requests_per_second for r in waits[config]]):.0f}"])
    print("16 keep-alive connections: hello world (req/s, server CPU us per request), "
          "and req/s with a 10 ms wait per request")
    print(table(["server", "threads", "hello req/s", "per round", "CPU us/req",
                 "10 ms wait req/s"], rows))
    print()


def latency(rounds: int, seconds: float) -> None:
    results = measure(BACKLOGS, rounds, seconds, 64, close=True)
    rows = []
    for config in BACKLOGS:
        rows.append([config.name, label(config.backlog), label(config.threads),
                     f"{median([r.p99_ms for r in results[config]]):.1f}",
                     f"{median([r.requests_per_second for r in results[config]]):.0f}",
                     int(median([r.errors for r in results[config]]))])
    print("64 clients, a new connection per request: latency p99 (ms), requests per second")
    print(table(["server", "backlog", "threads", "p99 ms", "req/s", "errors"], rows))


SITE_VS_RAW = [Config("cheroot", 4, 1024), Config("site", 4)]


def context_switches(pid: int) -> int:
    """Return the context switches of every thread of ``pid`` so far."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass  # the thread ended meanwhile
    return total


def idle_switches(configs: list[Config], rounds: int, seconds: float) -> dict[Config, list[float]]:
    """Return each config's context switches per second while it serves nothing."""
    results: dict[Config, list[float]] = {config: [] for config in configs}
    with ExitStack() as stack:
        servers = {config: stack.enter_context(running(config.name, config.threads,
                                                       config.backlog))
                   for config in configs}
        time.sleep(1)  # let start-up settle before the measured windows
        for _ in range(rounds):
            before = {config: context_switches(pid) for config, (_a, pid) in servers.items()}
            time.sleep(seconds)  # all servers idle side by side over the same window
            for config, (_address, pid) in servers.items():
                results[config].append((context_switches(pid) - before[config]) / seconds)
    return results


def site(rounds: int, seconds: float, idle_seconds: float) -> None:
    """The whole site (tree + one WSGI app, `sitebus run`) against raw cheroot, same threads."""
    hello = measure(SITE_VS_RAW, rounds, seconds, 16, close=False)
    idle = idle_switches(SITE_VS_RAW, rounds, idle_seconds)
    raw = median([r.requests_per_second for r in hello[SITE_VS_RAW[0]]])
    rows = []
    for config in SITE_VS_RAW:
        rates = [r.requests_per_second for r in hello[config]]
        rows.append([config.name, config.threads, f"{median(rates):.0f}",
                     " ".join(f"{rate:.0f}" for rate in rates), f"{median(rates) / raw:.3f}",
                     f"{median([r.cpu_us_per_request for r in hello[config]]):.0f}",
                     f"{median(idle[config]):.2f}",
                     " ".join(f"{v:.1f}" for v in idle[config])])
    print("the whole site (`sitebus run`, tree + one app) against raw cheroot with the same "
          f"threads: hello world over 16 keep-alive connections; idle context switches per "
          f"second over {idle_seconds:g} s")
    print(table(["server", "threads", "req/s", "per round", "vs raw", "CPU us/req",
                 "idle switches/s", "per round"], rows))
    print()


if __name__ == "__main__":
    reexec_in_venv()
    main()
