"""Helpers for tests of sites with pre-fork workers: an app that names its process, waits on the
status file, a steady client, and a recorder that makes sure no worker outlives its test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sitebus.process.status import read_status
from tests.integration.sites import get, ready_addresses, run_site, tcp_port
from tests.processes import Child, wait_until

APP = '''\
"""Answers with its process id and VERSION; /slow?S sleeps S seconds; /spin never returns."""
import os
import time

VERSION = 1


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        print(f"in handler {os.getpid()} {environ['QUERY_STRING']}", flush=True)
        time.sleep(float(environ["QUERY_STRING"] or 0))
    elif path == "/spin":
        print(f"spinning in {os.getpid()}", flush=True)
        while True:
            pass
    body = f"{os.getpid()} {VERSION}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

PLUGIN_APP = '''\
"""An app with a plugin on the site's bus, as a database pool would be."""
import os

from sitebus.plugins import SimplePlugin
from sitebus.site.container import bus


class Pool(SimplePlugin):
    def start(self):
        with open("pool.log", "a") as log:
            log.write(f"start {os.getpid()}\\n")

    def stop(self):
        with open("pool.log", "a") as log:
            log.write(f"stop {os.getpid()}\\n")


Pool(bus).subscribe()


def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def site_config(*lines: str, workers: int = 2) -> str:
    """A site of ``workers`` workers serving workers_app on an ephemeral port; ``lines`` add
    keys or replace these."""
    defaults = ["server.socket_port = 0", f"server.workers = {workers}",
                "engine.autoreload.on = False", "tree.app = '', 'workers_app:app'"]
    given = {line.split("=")[0].strip() for line in lines}
    kept = [line for line in defaults if line.split("=")[0].strip() not in given]
    return "\n".join(["[global]", *kept, *lines]) + "\n"


def write_app(workdir: Path, text: str = APP, name: str = "workers_app.py") -> Path:
    path = workdir / name
    path.write_text(text)
    return path


def serving(port: int, path: str = "/") -> tuple[int, int]:
    """GET ``path``; return the answering worker's pid and its app's VERSION."""
    status, body, _headers = get(port, path, timeout=30)
    assert status == 200, (status, body)
    pid, version = body.split()
    return int(pid), int(version)


def workers(workdir: Path, state: str | None = "ready") -> list[dict[str, Any]]:
    """The workers the site's status file lists (those in ``state``)."""
    found = (read_status(str(workdir / "site.pid.status")) or {}).get("workers") or []
    return [w for w in found if state is None or w.get("state") == state]


def wait_for_workers(workdir: Path, count: int, not_among: set[int] = frozenset(),  # type: ignore[assignment]
                     timeout: float = 30) -> set[int]:
    """Wait until the status file lists exactly ``count`` ready workers, none in ``not_among``,
    and no other worker; return their pids."""

    def settled() -> set[int] | None:
        listed = workers(workdir, None)
        ready = {w["pid"] for w in listed if w["state"] == "ready"}
        if len(listed) == count and len(ready) == count and not ready & not_among:
            return ready
        return None

    return wait_until(settled, timeout, f"{count} ready workers other than {not_among}")  # type: ignore[return-value]


class WorkerRecorder:
    """Records the children of each master while it runs, to check none outlives the test.

    A thread samples them every 20 ms (a test's bookkeeping, not a synchronisation); a
    process is known by its pid and start time, so a reused pid is not mistaken for it.
    """

    def __init__(self) -> None:
        self.masters: list[int] = []
        self.seen: dict[int, float] = {}
        self._lock = threading.Lock()
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def watch(self, child: Child) -> Child:
        with self._lock:
            self.masters.append(child.pid)
        self.sample()
        return child

    def sample(self) -> None:
        with self._lock:
            masters = list(self.masters)
        for pid in masters:
            try:
                children = psutil.Process(pid).children()
            except psutil.Error:
                continue
            for process in children:
                try:
                    self.seen.setdefault(process.pid, process.create_time())
                except psutil.Error:
                    pass

    def _sample(self) -> None:
        while not self._quit.wait(0.02):
            self.sample()

    def alive(self) -> list[int]:
        """The recorded workers still running (zombies count as gone)."""
        left = []
        for pid, created in list(self.seen.items()):
            try:
                process = psutil.Process(pid)
                if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.Error:
                pass
        return left

    def close(self, timeout: float = 20) -> list[int]:
        """Stop sampling; wait for every recorded worker to end; kill and return any left."""
        self._quit.set()
        self._thread.join()
        try:
            wait_until(lambda: not self.alive(), timeout, "every worker to exit")
        except AssertionError:
            pass
        left = self.alive()
        for pid in left:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        return left


@pytest.fixture(name="recorder", autouse=True)
def recorder_fixture() -> Iterator[WorkerRecorder]:
    """A WorkerRecorder for the test; fails it if a worker outlived it.

    A module that imports this gets it for every test (autouse: set up before ``spawn``, so
    torn down after it).
    """
    recorder = WorkerRecorder()
    yield recorder
    left = recorder.close()
    assert left == [], f"workers outlived the test: {left}"


def start_site(spawn: Any, recorder: WorkerRecorder, workdir: Path, *lines: str,
               workers: int = 2, app: str = APP) -> tuple[Child, int]:
    """Write the app and the site, run it with a PID file; return the child and its port."""
    write_app(workdir, app)
    child = recorder.watch(run_site(spawn, workdir, site_config(*lines, workers=workers),
                                    "-p", "site.pid"))
    return child, tcp_port(ready_addresses(child))
