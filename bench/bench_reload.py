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
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.env import median, reexec_in_venv, table  # noqa: E402

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
def serving(name: str) -> Iterator[tuple[int, Path]]:
    with tempfile.TemporaryDirectory() as workdir:
        app = Path(workdir, "app.py")
        app.write_text(APP.format(version=0))
        port = free_port()
        process = subprocess.Popen(argv_for(name, port, workdir), cwd=workdir,
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
            time.sleep(1.5)  # past the polling reloaders' first look, so a save is a change
            yield port, app
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
        import sitebus.workers  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
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
