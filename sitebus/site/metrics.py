"""Prometheus metrics of the whole site, through prometheus-client (``engine.metrics``).

Off by default (``pip install sitebus[metrics]``). ``engine.metrics.on = True`` makes the site
answer ``GET engine.metrics.path`` ('/metrics') itself, before every app and on every host,
as the health endpoint does, with the text exposition format, over all the workers:

- ``sitebus_requests_total{app, method, status}``: requests answered (``app`` is the mount
  point, ``/`` for the root; ``method`` one of the standard methods or ``other``);
- ``sitebus_request_duration_seconds{app}``: a histogram of their durations (from the call
  of the app to the close of its body);
- ``sitebus_workers``, ``sitebus_worker_restarts_total`` (workers forked that did not grow the
  pool: after an exit, a recycle, a reload), ``sitebus_reloads_total``;
- the process collector's ``process_*`` metrics, for the master and each worker (``pid``).

How the workers' figures meet. Each process keeps its own totals and writes them, at most once
a second and when it stops, to a small JSON file of its own in a directory the master creates
on start (``engine.metrics.directory``, else a fresh temporary directory; it survives a restart
through ``SITEBUS_METRICS_DIR``) and removes on exit. The process that answers a scrape adds up
the files (its own totals taken fresh) into prometheus-client metric families. A request costs
its worker a few increments of its serving thread's own totals (no lock, nothing kept per
request); a thread of the recorder's writes the file. Files of workers that have exited
stay, so totals never go down. Measured on a hello world beside the access log: about 0.7 us
a request in-process and 1% of its instructions (valgrind, one process).

Rejected: prometheus-client's multiprocess mode, which does what is wanted but writes an mmap
per observation under a lock (three writes for a counter and a histogram, some microseconds a
request: more than the 5% of a hello world's cost that metrics may take); workers sending
their figures to the master through the heartbeat pipe, as the master serves no requests: a
scrape answered by a worker would need a way to ask the master, which the pipe (one way) does
not give.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sitebus.bus import Bus
from sitebus.errors import ConfigError
from sitebus.plugins import SimplePlugin
from sitebus.site.tree import endpoint_path

__all__ = ["BUCKETS", "Metrics", "Recorder", "collect_files"]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the request duration histogram's buckets, before +Inf."""

METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT",
                     "TRACE"))

DIRECTORY_VARIABLE = "SITEBUS_METRICS_DIR"
DEFAULT_PATH = "/metrics"
WRITE_INTERVAL = 1.0
MAX_SEEN = 256
"""Request keys (app, method, status line) a thread remembers as they came."""


class Recorder:
    """One process's totals, kept per serving thread; written at most once a second.

    Each thread that serves requests adds to totals of its own (``record``: one dict lookup
    and two list increments, no lock, nothing kept per request), and ``snapshot`` adds the
    threads' totals up. Keeping nothing per request matters: a queue of per-request tuples,
    folded once a second, made the garbage collector walk thousands of live tuples, several
    microseconds a request.
    """

    def __init__(self) -> None:
        self.directory: str | None = None
        self.master: dict[str, int] = {"workers": 0, "worker_restarts": 0, "reloads": 0}
        self._reset()
        _recorders.add(self)

    def _reset(self) -> None:
        self._local = threading.local()
        self._threads: list[dict[tuple[str, str, str], list[float]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._awake = False
        self._thread: threading.Thread | None = None
        self.token = f"{os.getpid()}-{os.urandom(4).hex()}"

    def _forked(self) -> None:
        """A worker starts from nothing: the master's figures are the master's file's."""
        self.master = dict.fromkeys(self.master, 0)
        self._reset()

    # -- per request ----------------------------------------------------------------------

    def record(self, script_name: str, method: str, status: str, duration: float) -> None:
        """Note one request, in the calling thread's totals."""
        try:  # nearly always: a request like one this thread has seen, one dict lookup
            entry = self._local.seen[script_name, method, status]
        except (AttributeError, KeyError):
            entry = self._entry(script_name, method, status)
        entry[bisect_left(BUCKETS, duration)] += 1
        entry[-1] += duration
        if not self._awake:
            self._awake = True
            self._start_writing()

    def _entry(self, script_name: str, method: str, status: str) -> list[float]:
        """Return the calling thread's histogram for a request's app, method and status.

        The labels are normalised here (a method outside METHODS is 'other', the status its
        code), and the request's own key is remembered in ``seen`` for the next one like it,
        up to MAX_SEEN keys a thread, so clients inventing methods cannot grow it for ever.
        """
        local = self._local
        try:
            totals, seen = local.totals, local.seen
        except AttributeError:
            totals, seen = local.totals, local.seen = {}, {}
            with self._lock:
                self._threads.append(totals)
        key = (script_name, method if method in METHODS else "other", status[:3])
        entry = totals.get(key)
        if entry is None:
            entry = totals[key] = [0.0] * (len(BUCKETS) + 2)  # buckets..., +Inf, sum
        if len(seen) < MAX_SEEN:
            seen[script_name, method, status] = entry
        return entry

    def _start_writing(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="sitebus metrics writer")
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(WRITE_INTERVAL)
            self._wake.clear()
            self._awake = False
            try:
                self.write()
            except OSError:
                pass  # the directory went away (the site is exiting)

    # -- totals ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return this process's totals as written to its file."""
        requests: dict[tuple[str, str, str], int] = {}
        durations: dict[str, list[float]] = {}
        with self._lock:
            threads = list(self._threads)
        for totals in threads:
            for (script_name, method, status), entry in list(totals.items()):
                entry = list(entry)
                app = script_name or "/"
                key = (app, method, status)
                requests[key] = requests.get(key, 0) + int(sum(entry[:-1]))
                into = durations.setdefault(app, [0.0] * (len(BUCKETS) + 2))
                for i, value in enumerate(entry):
                    into[i] += value
        return {"pid": os.getpid(),
                "requests": [[*key, count] for key, count in requests.items()],
                "durations": durations, **self.master}

    def write(self) -> None:
        """Write this process's totals to its file in the directory (if there is one)."""
        directory = self.directory
        if directory is None:
            return
        data = json.dumps(self.snapshot()).encode()
        path = os.path.join(directory, f"{self.token}.json")
        temporary = f"{path}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)

    def start(self) -> None:
        """Write the (empty) totals of a process that begins to serve, so it is listed."""
        try:
            self.write()
        except OSError:
            pass

    start.priority = 95  # type: ignore[attr-defined]  # after Metrics.start made the directory (78)

    def stop(self) -> None:
        """Write the totals now: the process stops (every request it served counted)."""
        try:
            self.write()
        except OSError:
            pass

    stop.priority = 90  # type: ignore[attr-defined]  # after the servers drained (25)


_recorders: weakref.WeakSet[Recorder] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for recorder in list(_recorders):
        recorder._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _remove_totals(directory: str) -> None:
    """Remove the totals files in ``directory`` (another run's, or this one's on exit)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.endswith((".json", ".json.tmp")):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def collect_files(directory: str | None, own: dict[str, Any], own_token: str
                  ) -> dict[str, Any]:
    """Add up every process's totals: the files in ``directory`` and ``own`` (fresh)."""
    snapshots = [own]
    if directory is not None:
        try:
            names = os.listdir(directory)
        except OSError:
            names = []
        for name in names:
            if not name.endswith(".json") or name == f"{own_token}.json":
                continue
            try:
                with open(os.path.join(directory, name), "rb") as handle:
                    snapshots.append(json.loads(handle.read()))
            except (OSError, ValueError):
                continue  # being replaced, or half written by a process killed meanwhile
    total: dict[str, Any] = {"requests": {}, "durations": {}, "pids": set(),
                             "workers": 0, "worker_restarts": 0, "reloads": 0}
    for snapshot in snapshots:
        if not isinstance(snapshot, dict):
            continue
        total["pids"].add(snapshot.get("pid"))
        for app, method, status, count in snapshot.get("requests", []):
            key = (app, method, status)
            total["requests"][key] = total["requests"].get(key, 0) + count
        for app, histogram in snapshot.get("durations", {}).items():
            into = total["durations"].setdefault(app, [0.0] * (len(BUCKETS) + 2))
            for i, value in enumerate(histogram[:len(into)]):
                into[i] += value
        for name in ("workers", "worker_restarts", "reloads"):
            total[name] += snapshot.get(name, 0) or 0
    return total


class _SiteCollector:
    """A prometheus-client collector of the site's totals (see ``collect_files``)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        recorder = self.metrics.recorder
        total = collect_files(recorder.directory, recorder.snapshot(), recorder.token)
        requests = CounterMetricFamily("sitebus_requests", "Requests answered.",
                                       labels=["app", "method", "status"])
        for (app, method, status), count in sorted(total["requests"].items()):
            requests.add_metric([app, method, status], count)
        yield requests
        durations = HistogramMetricFamily("sitebus_request_duration_seconds",
                                          "Time from calling the app to closing its body.",
                                          labels=["app"])
        for app, histogram in sorted(total["durations"].items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), histogram, strict=False):
                cumulative += count
                buckets.append((bound, cumulative))
            durations.add_metric([app], buckets, histogram[len(BUCKETS) + 1])
        yield durations
        yield GaugeMetricFamily("sitebus_workers", "Worker processes (0: the site serves "
                                "from one process).", value=total["workers"])
        yield CounterMetricFamily("sitebus_worker_restarts", "Workers forked to replace "
                                  "others (exits, recycles, reloads).",
                                  value=total["worker_restarts"])
        yield CounterMetricFamily("sitebus_reloads", "Graceful reloads.", value=total["reloads"])
        yield from _process_families(sorted(p for p in total["pids"] if isinstance(p, int)))


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


def _process_families(pids: Iterable[int]) -> Iterator[Any]:
    """The process collector's families for each live pid, labelled with the pid."""
    from prometheus_client import ProcessCollector
    from prometheus_client.metrics_core import Metric

    merged: dict[str, Any] = {}
    for pid in pids:
        collector = ProcessCollector(pid=_constant(pid), registry=None)
        for family in collector.collect():
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation,
                                                    family.type)
            for sample in family.samples:
                into.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
    yield from merged.values()


class Metrics(SimplePlugin):
    """``engine.metrics``: the /metrics endpoint, and the master's figures and directory.

    ``Metrics(bus, tree)``; the site makes one (``bus.metrics``). Its own listeners run in the
    master (it is one of ``workers.MASTER_PLUGINS``); the recorder's ``stop`` runs wherever
    requests are served.
    """

    def __init__(self, bus: Bus, tree: Any = None) -> None:
        super().__init__(bus)
        self.tree = tree
        self.recorder = Recorder()
        self._path = DEFAULT_PATH
        self.directory: str | None = None
        """Where each process writes its totals (None: a temporary directory on start)."""
        self._made_directory = False
        self._registry: Any = None
        self._on = False
        self._seen: set[int] = set()
        self._peak = 0

    @property
    def path(self) -> str:
        """The path the endpoint answers, exactly."""
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        endpoint_path(value, "engine.metrics.path", "/metrics")
        if self._on and self.tree is not None:
            self.tree.remove_endpoint(self._path)
            self.tree.add_endpoint(value, self.app)
        self._path = value

    # -- on and off ----------------------------------------------------------------------

    def subscribe(self) -> None:
        """Answer at ``path``, and record every request the tree serves."""
        if self.tree is None:
            raise ConfigError("metrics need the site's tree (Metrics(bus, tree))",
                              key="engine.metrics.on", value=True)
        try:
            from prometheus_client import CollectorRegistry
        except ImportError:
            raise ConfigError("needs prometheus-client: pip install 'sitebus[metrics]'",
                              key="engine.metrics.on", value=True) from None
        super().subscribe()
        self.bus.subscribe("start", self.recorder.start)
        self.bus.subscribe("stop", self.recorder.stop)
        self.bus.subscribe("graceful", self.count_reload)
        self.bus.subscribe("workers", self.workers_changed)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_SiteCollector(self))
        self.tree.add_endpoint(self._path, self.app)
        if self.tree.observer is not None:
            self.tree.observer.metrics = self.recorder
        self._on = True

    def unsubscribe(self) -> None:
        """Stop answering and recording."""
        super().unsubscribe()
        for channel, listener in (("start", self.recorder.start), ("stop", self.recorder.stop),
                                  ("graceful", self.count_reload),
                                  ("workers", self.workers_changed)):
            self.bus.unsubscribe(channel, listener)
        if self._on and self.tree is not None:
            self.tree.remove_endpoint(self._path)
            if self.tree.observer is not None:
                self.tree.observer.metrics = None
        self._on = False

    # -- the master -----------------------------------------------------------------------

    def start(self) -> None:
        """Make (or take back, after a restart) the directory the processes write to."""
        if self.recorder.directory is not None:
            return
        directory = self.directory or os.environ.get(DIRECTORY_VARIABLE)
        if directory and not os.path.isdir(directory):
            try:
                os.makedirs(directory, mode=0o700)
            except OSError as error:
                raise ConfigError(f"cannot create {directory!r}: {error.strerror}",
                                  key="engine.metrics.directory", value=directory) from None
            self._made_directory = True
        inherited = os.environ.pop(DIRECTORY_VARIABLE, None)
        if not directory:
            directory = tempfile.mkdtemp(prefix="sitebus-metrics-")
            self._made_directory = True
        elif inherited == directory:
            self._made_directory = not self.directory  # ours, from before the restart
        else:
            _remove_totals(directory)  # another run's figures are not this one's
        self.recorder.directory = directory
        self.recorder.write()

    # After privileges are dropped (77), so the workers may write there; before they fork (80).
    start.priority = 78  # type: ignore[attr-defined]

    def execv(self) -> None:
        """Keep the directory (and so the totals) for the next process image."""
        if self.recorder.directory is not None:
            os.environ[DIRECTORY_VARIABLE] = self.recorder.directory

    def exit(self) -> None:
        """Remove the directory this site made (not on a restart)."""
        if self.bus.execv:
            return
        directory, self.recorder.directory = self.recorder.directory, None
        if directory and self._made_directory:
            shutil.rmtree(directory, ignore_errors=True)
        elif directory:
            _remove_totals(directory)

    def count_reload(self) -> None:
        self.recorder.master["reloads"] += 1
        self._write()

    def workers_changed(self, snapshot: list[dict[str, Any]], target: int) -> None:
        """Count the workers, and those forked to replace others, from the supervisor's view."""
        self._seen.update(worker["pid"] for worker in snapshot)
        self._peak = max(self._peak, target)
        master = self.recorder.master
        figures = (sum(1 for worker in snapshot if worker.get("state") != "stopping"),
                   max(0, len(self._seen) - self._peak))
        if figures != (master["workers"], master["worker_restarts"]):
            master["workers"], master["worker_restarts"] = figures
            self._write()  # not on every request count the workers send (twice a second)

    def _write(self) -> None:
        try:
            self.recorder.write()
        except OSError:
            pass

    # -- the endpoint ---------------------------------------------------------------------

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]
            ) -> Iterable[bytes]:
        """Answer a scrape (the WSGI app the tree calls at ``path``)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            body = b"method not allowed\n"
            start_response("405 Method Not Allowed", [
                ("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                ("Allow", "GET, HEAD")])
            return [body]
        body = generate_latest(self._registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                  ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store")])
        return [b"" if method == "HEAD" else body]
