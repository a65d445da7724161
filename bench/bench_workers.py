"""Pre-fork workers benchmark: sitebus -w 2 beside gunicorn -w 2, and the fast autoreload.

    python bench/bench_workers.py [--rounds 3] [--seconds 5] [--only throughput|access|autoreload]

Throughput: requests per second of the same app (bench_servers.HELLO_APP) through wrk, for
``sitebus run -w 2 -e production`` (the settings a user gets: thread_pool 4 per worker),
the same with thread_pool 1 and 2 per worker (is 4 the right default with workers?), and
gunicorn 27 with 2 sync workers and with 2 gthread workers of 4 threads. Two loads: hello
world through 16 keep-alive connections, and a handler that sleeps 10 ms (a database query)
through 64. Each figure is the median of the rounds; every round visits every server in
turn (in reverse order every other round), and CPU time per request counts the master and
all its workers.

Access logs (``--only access``): hello world as production runs it, access logs to files on
both sides: sitebus without one, with one, and with one and ``engine.metrics.on``, beside
gunicorn's two kinds with ``--access-logfile``; the ratios say what the access log and the
metrics cost sitebus and how it compares with gunicorn.

Autoreload: the time from saving the app's module to the first response of the new code,
median of 10 saves, for ``sitebus run -w 1`` (autoreload forks a fresh worker) and for the
single-process site (autoreload re-executes the process).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_servers import HELLO_APP, Result, rounds_of_load  # noqa: E402
from bench.env import ROOT, median, reexec_in_venv, table  # noqa: E402
from bench.harness import free_port, launched, wait_for_port  # noqa: E402


@dataclass(frozen=True)
class Server:
    """One server to measure: a label and how to run it on a port in a directory."""

    label: str
    kind: str  # 'sitebus' or 'gunicorn'
    threads: int = 0  # sitebus: server.thread_pool (0: the default); gunicorn: --threads
    access_log: bool = False  # write the access log to a file
    metrics: bool = False  # sitebus: engine.metrics.on

    def argv(self, port: int, workdir: str) -> list[str]:
        Path(workdir, "hello.py").write_text(HELLO_APP)
        access = str(Path(workdir, "access.log"))
        if self.kind == "gunicorn":
            argv = [sys.executable, "-m", "gunicorn", "--chdir", workdir, "-w", "2",
                    "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
            if self.threads:
                argv += ["--threads", str(self.threads)]
            if self.access_log:
                argv += ["--access-logfile", access]
            return [*argv, "hello:app"]
        lines = ["[global]", 'environment = "production"', f"server.socket_port = {port}",
                 'tree.hello = "", "hello:app"']
        if self.threads:
            lines.append(f"server.thread_pool = {self.threads}")
        if self.access_log:
            lines.append(f"log.access_file = {access!r}")
        if self.metrics:
            lines.append("engine.metrics.on = True")
        Path(workdir, "site.conf").write_text("\n".join(lines) + "\n")
        return [sys.executable, "-m", "sitebus", "run", "-c", "site.conf", "-w", "2"]


SERVERS = [
    Server("sitebus -w 2 (defaults)", "sitebus"),
    Server("sitebus -w 2, thread_pool 1", "sitebus", 1),
    Server("sitebus -w 2, thread_pool 2", "sitebus", 2),
    Server("gunicorn -w 2 (sync)", "gunicorn"),
    Server("gunicorn -w 2 --threads 4", "gunicorn", 4),
]

ACCESS_SERVERS = [
    Server("sitebus -w 2, no access log", "sitebus"),
    Server("sitebus -w 2, access log", "sitebus", access_log=True),
    Server("sitebus -w 2, access log, metrics", "sitebus", access_log=True, metrics=True),
    Server("gunicorn -w 2 (sync), access log", "gunicorn", access_log=True),
    Server("gunicorn -w 2 --threads 4, access log", "gunicorn", 4, access_log=True),
]
"""How production runs: access logs to files on both sides (``--only access``)."""


@contextmanager
def running(server: Server) -> Iterator[tuple[tuple[str, int], int]]:
    """Run a server; yield ((host, port), pid of its master) once it answers."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir, \
            launched(server.argv(port, workdir), port, server.label, cwd=workdir) as process:
        yield ("127.0.0.1", port), process.pid


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children."""
    import psutil

    total = 0.0
    try:
        master = psutil.Process(pid)
        for process in [master, *master.children(recursive=True)]:
            times = process.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        pass
    return total


def measure(rounds: int, seconds: float, connections: int, path: str,
            servers: list[Server] = SERVERS) -> dict[Server, list[Result]]:
    with ExitStack() as stack:
        running_servers = {server: stack.enter_context(running(server)) for server in servers}
        return rounds_of_load(running_servers, rounds, seconds, connections, path=path,
                              cpu=tree_cpu_seconds)


def throughput(rounds: int, seconds: float) -> None:
    hello = measure(rounds, seconds, 16, "/")
    waits = measure(rounds, seconds, 64, "/io")
    best_hello = max(median([r.requests_per_second for r in hello[s]])
                     for s in SERVERS if s.kind == "gunicorn")
    best_wait = max(median([r.requests_per_second for r in waits[s]])
                    for s in SERVERS if s.kind == "gunicorn")
    rows = []
    for server in SERVERS:
        rate = median([r.requests_per_second for r in hello[server]])
        wait_rate = median([r.requests_per_second for r in waits[server]])
        rows.append([server.label, f"{rate:.0f}",
                     " ".join(f"{r.requests_per_second:.0f}" for r in hello[server]),
                     f"{median([r.cpu_us_per_request for r in hello[server]]):.0f}",
                     f"{rate / best_hello:.2f}", f"{wait_rate:.0f}",
                     f"{wait_rate / best_wait:.2f}",
                     sum(r.errors for r in hello[server] + waits[server])])
    print("hello world, 16 keep-alive connections; 10 ms handler, 64 connections "
          "(req/s; x = against the best gunicorn)")
    print(table(["server", "hello req/s", "per round", "CPU us/req", "x", "10 ms req/s", "x",
                 "errors"], rows))
    print()


def access_logs(rounds: int, seconds: float) -> None:
    """Hello world with access logs to files: sitebus against gunicorn, and what the access
    log and the metrics cost sitebus (same run, alternating rounds)."""
    hello = measure(rounds, seconds, 16, "/", ACCESS_SERVERS)
    rate = {server: median([r.requests_per_second for r in hello[server]])
            for server in ACCESS_SERVERS}
    plain, logged, measured = ACCESS_SERVERS[0], ACCESS_SERVERS[1], ACCESS_SERVERS[2]
    best_gunicorn = max(rate[s] for s in ACCESS_SERVERS if s.kind == "gunicorn")
    rows = []
    for server in ACCESS_SERVERS:
        rows.append([server.label, f"{rate[server]:.0f}",
                     " ".join(f"{r.requests_per_second:.0f}" for r in hello[server]),
                     f"{median([r.cpu_us_per_request for r in hello[server]]):.0f}",
                     f"{rate[server] / best_gunicorn:.2f}",
                     f"{rate[server] / rate[plain]:.2f}" if server.kind == "sitebus" else "",
                     sum(r.errors for r in hello[server])])
    print("hello world, 16 keep-alive connections, access logs to files "
          "(req/s; x = against the best gunicorn with its access log)")
    print(table(["server", "req/s", "per round", "CPU us/req", "x gunicorn", "x no log",
                 "errors"], rows))
    print(f"access log costs sitebus {1 - rate[logged] / rate[plain]:.1%}; metrics on top "
          f"cost {1 - rate[measured] / rate[logged]:.1%}; sitebus with its access log is "
          f"{rate[logged] / best_gunicorn:.2f}x the best gunicorn with its own\n")


# -- autoreload ----------------------------------------------------------------------------

VERSIONED_APP = (
    "VERSION = {version}\n"
    "def app(environ, start_response):\n"
    "    body = str(VERSION).encode()\n"
    "    start_response('200 OK', [('Content-Type', 'text/plain'),\n"
    "                              ('Content-Length', str(len(body)))])\n"
    "    return [body]\n"
)


def fetch(port: int) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b"".join(iter(lambda: sock.recv(65536), b""))
    except OSError:
        return None
    return data.partition(b"\r\n\r\n")[2]


def reload_latencies(workers: int, saves: int) -> list[float]:
    """Seconds from each save of the app to the first answer of the new code."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        Path(workdir, "app.py").write_text(VERSIONED_APP.format(version=0))
        Path(workdir, "site.conf").write_text(
            "[global]\nlog.screen = False\n"
            f"server.socket_port = {port}\ntree.app = '', 'app:app'\n")
        argv = [sys.executable, "-m", "sitebus", "run", "-c", "site.conf", "-w", str(workers)]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        latencies = []
        try:
            wait_for_port(port, process, "sitebus")
            time.sleep(1.5)  # the master learns which files the worker imported
            for version in range(1, saves + 1):
                wanted = str(version).encode()
                saved = time.monotonic()
                Path(workdir, "app.py").write_text(VERSIONED_APP.format(version=version))
                while fetch(port) != wanted:
                    if time.monotonic() - saved > 10:
                        raise RuntimeError(f"version {version} never answered")
                latencies.append(time.monotonic() - saved)
                time.sleep(0.5)  # let the old worker go
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    return latencies


def autoreload(saves: int = 10) -> None:
    rows = []
    for label, workers in (("sitebus -w 1 (fresh worker)", 1),
                           ("sitebus, no workers (re-exec)", 0)):
        latencies = reload_latencies(workers, saves)
        rows.append([label, f"{median(latencies) * 1000:.0f}",
                     f"{min(latencies) * 1000:.0f}", f"{max(latencies) * 1000:.0f}"])
    print(f"autoreload: save to first response of the new code, {saves} saves (ms)")
    print(table(["site", "median", "min", "max"], rows))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", choices=["throughput", "access", "autoreload"])
    args = parser.parse_args()
    rounds = max(3, args.rounds)
    client = "wrk" if shutil.which("wrk") else "the built-in Python client (install wrk)"
    print(f"load from {client}; {os.cpu_count()} CPUs; median of {rounds} rounds of "
          f"{args.seconds:g} s; sitebus from {ROOT}\n")
    if args.only in (None, "throughput"):
        throughput(rounds, args.seconds)
    if args.only in (None, "access"):
        access_logs(rounds, args.seconds)
    if args.only in (None, "autoreload"):
        autoreload()


if __name__ == "__main__":
    reexec_in_venv()
    main()
