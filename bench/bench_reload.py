"""Reload benchmark: from a saved source file to its new text served, and requests lost meanwhile.

    python bench/bench_reload.py [--reloads 10] [--rounds 1]

Each server serves ``app.py`` (``version N``) with its reloader on. The benchmark saves a new
version the way editors do (a temporary file renamed over the old one) and polls every 2 ms
on a new connection until the new text comes back: that time is the reload latency (median
of the reloads). Meanwhile a second client sends a request on a new connection every few
milliseconds; a refused or reset connection, a timeout or a 5xx counts as failed.

Servers: sitebus (`sitebus run`, autoreload on: it re-executes in place keeping its sockets),
sitebus with one worker (`-w 1`: the master forks a fresh worker; only when sitebus has
workers), CherryPy 18 (its autoreloader polls file times once a second, and its restart
closes the listening socket), gunicorn `-w 1 --reload` with its polling reloader and with
inotify.

    python bench/bench_reload.py --keepalive [--rounds 3] [--reloads 4] [--wrk-reloads 5]

Kept-alive clients across signal reloads: eight clients, each on one ``http.client``
connection reused until the server closes it (every reset, RemoteDisconnected, timeout or
5xx a failure), send back to back while the server reloads ``--reloads`` times; then wrk
(``-t2 -c8``, when installed) runs while it reloads ``--wrk-reloads`` times, and its socket
errors and non-2xx answers are counted. Each reload saves a new version of the app first,
and its latency is the time from the signal to the new version served on a new connection.
Servers: sitebus restarting in place (SIGUSR2, one process), sitebus with 2 workers
reloading them (SIGUSR1, rolling), and gunicorn ``-w 2 --threads 4`` (gthread) with HUP.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.env import median, reexec_in_venv, table  # noqa: E402
from bench.harness import free_port, stop  # noqa: E402

APP = '''\
def app(environ, start_response):
    body = b"version {version}"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''

CHERRYPY = '''\
import sys
sys.path.insert(0, {workdir!r})
import cherrypy
import app
cherrypy.config.update({{"server.socket_port": {port}, "log.screen": False,
                        "engine.autoreload.on": True}})
cherrypy.tree.graft(app.app, "")
cherrypy.engine.signals.subscribe()
cherrypy.engine.start()
cherrypy.engine.block()
'''

SITE_CONFIG = '''\
[global]
server.socket_port = {port}
log.screen = False
tree.app = "", "app:app"
'''


def argv_for(name: str, port: int, workdir: str) -> list[str]:
    if name.startswith("sitebus"):
        Path(workdir, "site.conf").write_text(SITE_CONFIG.format(port=port))
        workers = ["-w", "1"] if name == "sitebus -w 1" else []
        return [sys.executable, "-m", "sitebus", "run", "-c", "site.conf", "-P", workdir,
                *workers]
    if name == "cherrypy":
        return [sys.executable, "-c", CHERRYPY.format(workdir=workdir, port=port)]
    engine = "inotify" if name.endswith("inotify") else "poll"
    return [sys.executable, "-m", "gunicorn", "-w", "1", "--reload", "--reload-engine", engine,
            "--chdir", workdir, "-b", f"127.0.0.1:{port}", "--log-level", "warning", "app:app"]


def fetch(port: int, timeout: float = 5) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def save(path: Path, version: int) -> None:
    """Save as editors do: write a temporary file, then rename it over the old one."""
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(APP.format(version=version))
    os.replace(temporary, path)


@contextmanager
def launched(name: str, argv: Callable[[str, int, str], list[str]],
             env: dict[str, str] | None = None
             ) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """Run server ``name`` (``argv(name, port, workdir)``) on app.py; yield once it answers."""
    with tempfile.TemporaryDirectory() as workdir:
        app = Path(workdir, "app.py")
        app.write_text(APP.format(version=0))
        port = free_port()
        process = subprocess.Popen(argv(name, port, workdir), cwd=workdir, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:  # a benchmark harness: polling for the first answer is fine here
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}")
                try:
                    if fetch(port, 1) == (200, b"version 0"):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not answer")
                time.sleep(0.05)
            yield process, port, app
        finally:
            stop(process, 15)


@contextmanager
def serving(name: str) -> Iterator[tuple[int, Path]]:
    with launched(name, argv_for) as (_process, port, app):
        time.sleep(1.5)  # past the polling reloaders' first look, so a save is a change
        yield port, app


class SteadyClient(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.sent = 0
        self.failed = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.sent += 1
            try:
                status, _body = fetch(self.port, 10)
                if status >= 500:
                    self.failed += 1
            except OSError:
                self.failed += 1
            self.stop.wait(0.005)


def measure(name: str, reloads: int) -> tuple[list[float], int, int]:
    latencies = []
    with serving(name) as (port, app):
        client = SteadyClient(port)
        client.start()
        try:
            for version in range(1, reloads + 1):
                expected = f"version {version}".encode()
                started = time.monotonic()
                save(app, version)
                while True:
                    try:
                        if fetch(port, 10)[1] == expected:
                            break
                    except OSError:
                        pass
                    if time.monotonic() - started > 30:
                        raise RuntimeError(f"{name} never served version {version}")
                    time.sleep(0.002)
                latencies.append(time.monotonic() - started)
                time.sleep(1.2)  # a person's next save; past a polling reloader's next look
        finally:
            client.stop.set()
            client.join(30)
    return latencies, client.failed, client.sent


def has_workers() -> bool:
    try:
        import sitebus.workers.master  # noqa: F401
    except ImportError:
        return False
    return True


# -- kept-alive clients across signal reloads ---------------------------------------------------

KEEPALIVE_SERVERS = {
    # name: (how many workers, the reload signal)
    "sitebus SIGUSR2 (1 process)": (0, signal.SIGUSR2),
    "sitebus -w 2 SIGUSR1": (2, signal.SIGUSR1),
    "gunicorn -w 2 --threads 4 HUP": (2, signal.SIGHUP),
}


def keepalive_argv(name: str, port: int, workdir: str) -> list[str]:
    if name.startswith("sitebus"):
        workers = KEEPALIVE_SERVERS[name][0]
        Path(workdir, "site.conf").write_text(
            SITE_CONFIG.format(port=port) + "engine.autoreload.on = False\n"
            + f"server.workers = {workers}\n")
        return [sys.executable, "-m", "sitebus", "run", "-c", "site.conf", "-P", workdir]
    return [sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "4", "--chdir", workdir,
            "-b", f"127.0.0.1:{port}", "--log-level", "warning", "app:app"]


def started(name: str) -> AbstractContextManager[tuple[subprocess.Popen[bytes], int, Path]]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return launched(name, keepalive_argv, env)


class KeptAliveClient(threading.Thread):
    """One connection, reused until the server closes it; back to back."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.sent = self.failed = self.connections = 0

    def run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.connections += 1
            self.sent += 1
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                if response.status >= 500:
                    self.failed += 1
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException):
                self.failed += 1
                connection.close()
                connection = None
        if connection is not None:
            connection.close()


def reload_once(process: subprocess.Popen[bytes], port: int, app: Path, version: int,
                signum: int) -> float:
    """Save a new version, send the reload signal; return seconds until it is served."""
    save(app, version)
    expected = f"version {version}".encode()
    started_at = time.monotonic()
    process.send_signal(signum)
    while True:
        try:
            if fetch(port, 10)[1] == expected:
                return time.monotonic() - started_at
        except OSError:
            pass
        if time.monotonic() - started_at > 30:
            raise RuntimeError(f"version {version} never served")
        time.sleep(0.002)


def measure_keepalive(name: str, reloads: int, wrk_reloads: int
                      ) -> tuple[list[float], int, int, int, int | None, int]:
    """Return (latencies, failed, sent, connections, wrk errors or None, wrk requests)."""
    signum = KEEPALIVE_SERVERS[name][1]
    latencies = []
    with started(name) as (process, port, app):
        clients = [KeptAliveClient(port) for _ in range(8)]
        for client in clients:
            client.start()
        try:
            time.sleep(0.5)
            for version in range(1, reloads + 1):
                latencies.append(reload_once(process, port, app, version, signum))
                time.sleep(1.5)  # every worker replaced, the clients back on their feet
        finally:
            for client in clients:
                client.stop.set()
            for client in clients:
                client.join(30)
        wrk_errors, wrk_requests = None, 0
        if shutil.which("wrk") and wrk_reloads:
            seconds = math.ceil(1.5 + 1.2 * wrk_reloads)  # wrk takes whole seconds
            wrk = subprocess.Popen(["wrk", "-t2", "-c8", f"-d{seconds}s", "--timeout", "5s",
                                    f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE,
                                   text=True)
            time.sleep(0.7)
            for version in range(reloads + 1, reloads + wrk_reloads + 1):
                reload_once(process, port, app, version, signum)
                time.sleep(0.9)
            output = wrk.communicate(timeout=seconds + 30)[0]
            errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                               r"timeout (\d+)", output)
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
            total = re.search(r"(\d+) requests in", output)
            wrk_errors = (sum(int(n) for n in errors.groups()) if errors else 0) + (
                int(non2xx.group(1)) if non2xx else 0)
            wrk_requests = int(total.group(1)) if total else 0
    return (latencies, sum(c.failed for c in clients), sum(c.sent for c in clients),
            sum(c.connections for c in clients), wrk_errors, wrk_requests)


def main_keepalive(args: argparse.Namespace) -> None:
    names = args.only or list(KEEPALIVE_SERVERS)
    results: dict[str, list[tuple[list[float], int, int, int, int | None, int]]] = {
        name: [] for name in names}
    for _round in range(args.rounds):
        for name in names:  # every round visits every server in turn
            results[name].append(measure_keepalive(name, args.reloads, args.wrk_reloads))
    rows = []
    for name, runs in results.items():
        latency = median([median(run[0]) for run in runs]) * 1000
        failed = [run[1] for run in runs]
        sent = [run[2] for run in runs]
        wrk = [run[4] for run in runs]
        rows.append([name, f"{latency:.0f}", f"{median(failed):g} ({'/'.join(map(str, failed))})",
                     f"{median(sent):.0f}", f"{median([run[3] for run in runs]):.0f}",
                     "-" if None in wrk else
                     f"{median(wrk):g} ({'/'.join(map(str, wrk))}) of "  # type: ignore[arg-type]
                     f"{median([run[5] for run in runs]):.0f}"])
    print(f"8 kept-alive clients across {args.reloads} reloads, then wrk -t2 -c8 across "
          f"{args.wrk_reloads} reloads; medians of {args.rounds} rounds (each round's figure "
          "in brackets)")
    print(table(["server", "reload ms", "failed", "sent", "connections", "wrk errors"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reloads", type=int, default=None)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--keepalive", action="store_true",
                        help="kept-alive clients and wrk across signal reloads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wrk-reloads", type=int, default=5)
    args = parser.parse_args()
    if args.keepalive:
        args.reloads = args.reloads or 4
        main_keepalive(args)
        return
    args.reloads = args.reloads or 10
    names = ["sitebus", *(["sitebus -w 1"] if has_workers() else []), "cherrypy",
             "gunicorn poll", "gunicorn inotify"]
    rows = []
    for name in args.only or names:
        latencies, failed, sent = measure(name, args.reloads)
        rows.append([name, f"{median(latencies) * 1000:.0f}",
                     f"{min(latencies) * 1000:.0f}-{max(latencies) * 1000:.0f}",
                     f"{failed}/{sent}"])
    print(f"save to new text served, median of {args.reloads} reloads (ms); requests failed "
          "meanwhile by a client sending every 5 ms")
    print(table(["server", "median ms", "range ms", "failed/sent"], rows))


if __name__ == "__main__":
    reexec_in_venv()
    main()
