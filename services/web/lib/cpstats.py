"""CPStats: statistics gathered in ``logging.statistics``, and a page that shows them.

``logging.statistics`` is a nested dict, the reference's convention: names (usually
packages) hold *namespaces*, which hold scalars and *collections* (a dict or a list of
*records*, each a dict). Any value may be a function of its scope, called when the
statistics are reported (``extrapolate_statistics``); a namespace's ``Enabled`` flag pauses
collection but not reporting.

``tools.cpstats`` (off by default; ``tools.cpstats.on = True`` in the site config covers
every framework app) records each request in the ``'CherryPy Applications'`` namespace:
totals, requests per second since start and over the last minute, the request in flight
(or last served) per thread, totals per application (script name), the slowest requests
(``slow_queries`` seconds and up, the last ``slow_queries_count`` of them) and, with
``uriset``, timings per group of URLs. The ``'Site'`` namespace shows the bus: its state,
the process, its threads and where the servers serve.

``StatsPage`` shows them: mount it where you like (``root.cpstats = StatsPage()``, or in
site config ``tree.cpstats = "/cpstats", services.web.lib.cpstats.StatsPage()``); its
``index`` is an HTML page (each namespace a table, each collection a table of records),
``data`` the same as JSON, and ``pause``/``resume`` (POST) set a namespace's Enabled flag.
``StatsPage.formatting`` (in ``_statspage``, re-exported here) mirrors the statistics: None
hides a value, a format string ('%.3f') formats it, a callable returns the HTML to show.
Everything else is escaped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from services.web._cptools import Tool
from services.web._serving import serving
from services.web.lib._statspage import (
    APPS,
    SITE,
    StatsPage,
    extrapolate_statistics,
    iso_format,
    locale_date,
    pause_resume,
)

__all__ = ["APPS", "SITE", "ByteCountWrapper", "StatsPage", "StatsTool", "average_uriset_time",
           "extrapolate_statistics", "iso_format", "locale_date", "pause_resume", "proc_time"]


if not hasattr(logging, "statistics"):
    logging.statistics = {}  # type: ignore[attr-defined]

_lock = threading.Lock()
_recent_stamps = [0] * 60
_recent_counts = [0] * 60


def proc_time(s: dict[str, Any]) -> float:
    """The processing time so far of a request in flight."""
    return time.time() - s["Start Time"]


def average_uriset_time(s: dict[str, Any]) -> float:
    return s["Count"] and (s["Sum"] / s["Count"]) or 0


def _per_second(total: str) -> Callable[[dict[str, Any]], float]:
    def rate(s: dict[str, Any]) -> float:
        return s[total] / max(time.time() - s["Start Time"], 1e-6)

    return rate


def _per_request(total: str) -> Callable[[dict[str, Any]], float]:
    def average(s: dict[str, Any]) -> float:
        return s[total] / s["Total Requests"] if s["Total Requests"] else 0.0

    return average


def _recent_rate(s: dict[str, Any]) -> float:
    """Requests per second over the last minute (or since start, if younger)."""
    now = int(time.time())
    count = sum(c for stamp, c in zip(_recent_stamps, _recent_counts, strict=True)
                if now - 60 < stamp <= now)
    return count / max(1.0, min(60.0, time.time() - s["Start Time"]))


def _new_app_record(name: str) -> dict[str, Any]:
    return {
        "Application": name,
        "Current Requests": 0,
        "Total Requests": 0,
        "Total Bytes Written": 0,
        "Total Time": 0.0,
        "Average Time": lambda s: s["Total Time"] / s["Total Requests"] if
        s["Total Requests"] else 0.0,
        "Errors": 0,
    }


def _site_namespace() -> dict[str, Any]:
    from sitebus.site import container as site

    bus = site.bus
    return {
        "State": lambda s: bus.state.name,
        "PID": os.getpid(),
        "Start Time": time.time(),
        "Uptime": lambda s: time.time() - s["Start Time"],
        "Threads": lambda s: threading.active_count(),
        "Serving": lambda s: ", ".join(site.site.descriptions()) or "(no server)",
        "Mounted": lambda s: ", ".join(sorted(n or "/" for n in site.tree.apps)) or "(none)",
        "Channels": lambda s: {channel: {"Channel": channel, "Listeners": len(listeners)}
                               for channel, listeners in sorted(bus.listeners.items())
                               if listeners},
    }


def _apps_namespace() -> dict[str, Any]:
    from services.web import __version__

    return {
        "Enabled": True,
        "Bytes Read/Request": _per_request("Total Bytes Read"),
        "Bytes Read/Second": _per_second("Total Bytes Read"),
        "Bytes Written/Request": _per_request("Total Bytes Written"),
        "Bytes Written/Second": _per_second("Total Bytes Written"),
        "Current Time": lambda s: time.time(),
        "Current Requests": 0,
        "Requests/Second": _per_second("Total Requests"),
        "Requests/Second (last minute)": _recent_rate,
        "Server Version": __version__,
        "Start Time": time.time(),
        "Total Bytes Read": 0,
        "Total Bytes Written": 0,
        "Total Requests": 0,
        "Total Time": 0.0,
        "Uptime": lambda s: time.time() - s["Start Time"],
        "Requests": {},
        "Applications": {},
        "Slow Queries": [],
    }


def _namespaces() -> dict[str, Any]:
    """Return the applications' namespace, creating both of ours on first use."""
    stats = logging.statistics  # type: ignore[attr-defined]
    apps = stats.get(APPS)
    if apps is None:
        with _lock:
            if SITE not in stats:
                stats[SITE] = _site_namespace()
            apps = stats.get(APPS)
            if apps is None:
                apps = stats[APPS] = _apps_namespace()
    return apps


class ByteCountWrapper:
    """A file-like object that passes reads through and adds their sizes to ``bytes_read``."""

    def __init__(self, rfile: Any) -> None:
        self.rfile = rfile
        self.bytes_read = 0

    def _tally(self, data: bytes) -> bytes:
        self.bytes_read += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        return self._tally(self.rfile.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._tally(self.rfile.readline(size))

    def readlines(self, sizehint: int = 0) -> list[bytes]:
        """Read lines to the end, or until they hold ``sizehint`` bytes (when above 0)."""
        lines: list[bytes] = []
        budget = sizehint if sizehint > 0 else None
        while budget is None or budget > 0:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            if budget is not None:
                budget -= len(line)
        return lines

    def close(self) -> None:
        self.rfile.close()

    def __iter__(self) -> ByteCountWrapper:
        return self

    def __next__(self) -> bytes:
        return self._tally(next(self.rfile))

    next = __next__


class StatsTool(Tool):
    """Counts requests, bytes and times per app and per URL (``tools.cpstats``)."""

    def __init__(self) -> None:
        super().__init__("on_end_request", self.record_stop)

    def _setup(self) -> None:
        if _namespaces().get("Enabled", False):
            super()._setup()
            self.record_start()

    def record_start(self) -> None:
        """Count the request in and note when it began, for the statistics."""
        request = serving.request
        if not hasattr(request.rfile, "bytes_read"):
            request.rfile = ByteCountWrapper(request.rfile)
            request.body.fp = request.rfile
        appstats = _namespaces()
        thread = threading.current_thread()
        name = (request.app.script_name if request.app is not None else "") or "/"
        remote = request.remote
        record = {
            "Thread": thread.name,
            "Application": name,
            "Bytes Read": None,
            "Bytes Written": None,
            "Client": lambda s: f"{remote.ip}:{remote.port}",  # tools.proxy may change it
            "End Time": None,
            "Processing Time": proc_time,
            "Request-Line": request.request_line,
            "Response Status": None,
            "Start Time": time.time(),
        }
        with _lock:
            appstats["Current Requests"] += 1
            appstats["Total Requests"] += 1
            appstats["Requests"][thread.ident] = record
            per_app = appstats["Applications"].get(name)
            if per_app is None:
                per_app = appstats["Applications"][name] = _new_app_record(name)
            per_app["Current Requests"] += 1
            per_app["Total Requests"] += 1
        request._cpstats = (record, per_app)

    def record_stop(self, uriset: str | None = None, slow_queries: float = 1.0,
                    slow_queries_count: int = 100, debug: bool = False, **kwargs: Any) -> None:
        """Count the request out: its time, bytes and status go into the statistics."""
        request = serving.request
        response = serving.response
        started = request.__dict__.pop("_cpstats", None)
        if started is None:
            return
        record, per_app = started
        appstats = _namespaces()
        read = getattr(request.rfile, "bytes_read", 0)
        if response.stream:
            written: Any = "chunked"
        else:
            try:
                written = int(response.headers.get("Content-Length", 0) or 0)
            except ValueError:
                written = 0
        status = str(response.output_status or response.status or "")
        end = time.time()
        duration = end - record["Start Time"]
        record.update({"Bytes Read": read, "Bytes Written": written, "Response Status": status,
                       "End Time": end, "Processing Time": duration})
        second = int(end)
        with _lock:
            appstats["Total Bytes Read"] += read
            appstats["Current Requests"] -= 1
            appstats["Total Time"] += duration
            per_app["Current Requests"] -= 1
            per_app["Total Time"] += duration
            if isinstance(written, int):
                appstats["Total Bytes Written"] += written
                per_app["Total Bytes Written"] += written
            if status[:1] == "5":
                per_app["Errors"] += 1
            slot = second % 60
            if _recent_stamps[slot] != second:
                _recent_stamps[slot] = second
                _recent_counts[slot] = 0
            _recent_counts[slot] += 1
            if uriset:
                tracking = appstats.setdefault("URI Set Tracking", {})
                entry = tracking.setdefault(uriset, {
                    "URI Set": uriset, "Min": None, "Max": None, "Count": 0, "Sum": 0,
                    "Avg": average_uriset_time})
                entry["Count"] += 1
                entry["Sum"] += duration
                seen = [duration] if entry["Min"] is None else [entry["Min"], entry["Max"]]
                seen.append(duration)
                entry["Min"], entry["Max"] = min(seen), max(seen)
            if slow_queries and duration > slow_queries:
                slow = appstats.setdefault("Slow Queries", [])
                slow.append(dict(record))
                del slow[:-slow_queries_count]
        if debug:
            from services.web._cprequest import current_log

            current_log().error(f"Stats recorded: {record!r}", "TOOLS.CPSTATS")
