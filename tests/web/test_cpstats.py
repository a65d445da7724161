"""cpstats: tools.cpstats records requests (totals, per app, per thread, slow ones, URI sets),
StatsPage shows them as HTML and JSON (escaped, formatted, pausable), with the bus state."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

import services.web as cherrypy
from services.web.lib import cpstats


@pytest.fixture(autouse=True)
def fresh_statistics() -> Iterator[None]:
    stats = logging.statistics  # type: ignore[attr-defined]
    saved = dict(stats)
    for name in (cpstats.APPS, cpstats.SITE, "My Stuff"):
        stats.pop(name, None)
    cpstats._recent_stamps[:] = [0] * 60
    try:
        yield
    finally:
        stats.clear()
        stats.update(saved)


class App:
    @cherrypy.expose
    def index(self, **params: Any) -> str:
        return "hello"

    @cherrypy.expose
    def fail(self) -> str:
        raise ValueError("boom")


@pytest.fixture
def site(web: Any) -> Any:
    cherrypy.tree.mount(App(), "/app", {"/": {"tools.cpstats.on": True,
                                              "tools.cpstats.uriset": "group",
                                              "tools.cpstats.slow_queries": 1e-9,
                                              "tools.cpstats.slow_queries_count": 2}})
    cherrypy.tree.mount(App(), "/other", {"/": {"tools.cpstats.on": True}})
    web.mount(cpstats.StatsPage(), "/cpstats")
    web.set_persistent(True)  # each request is recorded before the next one is read
    return web


def data(web: Any) -> dict[str, Any]:
    web.getPage("/cpstats/data")
    web.assertStatus(200)
    web.assertHeader("Content-Type", "application/json")
    return json.loads(web.body)


def test_requests_are_recorded(site: Any) -> None:
    for _ in range(2):
        site.getPage("/app/")
        site.assertBody("hello")
    site.getPage("/app/", method="POST", body="a=123")
    site.getPage("/other/")
    site.getPage("/other/fail")
    site.assertStatus(500)
    stats = data(site)
    apps = stats["CherryPy Applications"]
    assert apps["Total Requests"] == 5
    assert apps["Current Requests"] == 0
    assert apps["Total Bytes Read"] == 5
    assert apps["Total Bytes Written"] > 4 * len("hello")
    assert apps["Requests/Second"] > 0 and apps["Requests/Second (last minute)"] > 0
    assert apps["Enabled"] is True
    per_app = apps["Applications"]
    assert per_app["/app"]["Total Requests"] == 3 and per_app["/app"]["Errors"] == 0
    assert per_app["/other"]["Total Requests"] == 2 and per_app["/other"]["Errors"] == 1
    assert per_app["/app"]["Average Time"] > 0
    # One record per worker thread: the last request each served.
    records = {r["Request-Line"]: r for r in apps["Requests"].values()}
    assert set(records) <= {"GET /app/ HTTP/1.1", "POST /app/ HTTP/1.1", "GET /other/ HTTP/1.1",
                            "GET /other/fail HTTP/1.1"}
    record = records["GET /other/fail HTTP/1.1"]
    assert record["Response Status"].startswith("500")
    assert record["Application"] == "/other"
    assert record["Thread"] and record["End Time"] >= record["Start Time"]
    assert all(r["Client"].startswith("127.0.0.1:") for r in records.values())
    # slow_queries_count keeps the last two of the three slow /app requests
    assert [q["Request-Line"] for q in apps["Slow Queries"]] == [
        "GET /app/ HTTP/1.1", "POST /app/ HTTP/1.1"]
    group = apps["URI Set Tracking"]["group"]
    assert group["Count"] == 3
    assert 0 < group["Min"] <= group["Avg"] <= group["Max"] and group["Sum"] >= group["Max"]
    site_ns = stats["Site"]
    assert site_ns["State"] in {"STOPPED", "STARTING", "STARTED", "STOPPING", "EXITING"}
    assert "/app" in site_ns["Mounted"] and site_ns["PID"] > 0 and site_ns["Threads"] >= 1


def test_the_page_is_html_escaped_and_formatted(site: Any) -> None:
    site.getPage("/app/?q=" + urllib.parse.quote("<script>", safe="<>") + "&x=<b>")
    site.getPage("/cpstats/")
    site.assertStatus(200)
    site.assertInBody("<h2>CherryPy Applications</h2>")
    site.assertInBody("<h2>Site</h2>")
    site.assertInBody("<th>Requests/Second (last minute)</th>")
    site.assertInBody("<h3>Applications</h3>")
    site.assertInBody("&lt;script&gt;")
    site.assertInBody("x=&lt;b&gt;")
    site.assertNotInBody("<script>")
    site.assertNotInBody("<th>End Time</th>")  # hidden by StatsPage.formatting
    site.assertInBody('<form action="pause" method="POST"')
    body = site.body.decode()
    assert body.index("<h2>Site</h2>") < body.index("<h2>CherryPy Applications</h2>")


def test_pause_and_resume(site: Any) -> None:
    site.getPage("/app/")
    form = "namespace=" + urllib.parse.quote("CherryPy Applications")
    site.getPage("/cpstats/pause", method="POST", body=form)
    site.assertStatus(303)
    site.getPage("/app/")
    assert data(site)["CherryPy Applications"]["Total Requests"] == 1
    site.getPage("/cpstats/")
    site.assertInBody('<form action="resume" method="POST"')
    site.getPage("/cpstats/resume", method="POST", body=form)
    site.getPage("/app/")
    assert data(site)["CherryPy Applications"]["Total Requests"] == 2
    site.getPage("/cpstats/pause?" + form)
    site.assertStatus(405)
    site.getPage("/cpstats/pause", method="POST", body="namespace=nothing")
    site.assertStatus(404)


def test_other_namespaces_and_extrapolation(site: Any) -> None:
    start = time.time() - 10
    logging.statistics["My Stuff"] = {  # type: ignore[attr-defined]
        "Enabled": True,
        "Start Time": start,
        "Important Events": 20,
        "Events/Second": lambda s: s["Important Events"] / (time.time() - s["Start Time"]),
        "Table Statistics": {"widgets": {"Rows": 13, "Inserts": 400}},
        "Slow Queries": [{"Query": "SELECT 1 <2", "Processing Time": 47.8}],
    }
    stuff = data(site)["My Stuff"]
    assert 0 < stuff["Events/Second"] <= 2
    assert stuff["Table Statistics"] == {"widgets": {"Rows": 13, "Inserts": 400}}
    site.getPage("/cpstats/")
    site.assertInBody("<h2>My Stuff</h2>")
    site.assertInBody("<h3>Table Statistics</h3>")
    site.assertInBody("SELECT 1 &lt;2")


def test_extrapolate_statistics_copies() -> None:
    scope = {"a": 1, "f": lambda s: s["a"] + 1, "c": {"r": {"x": lambda s: 5}}, "l": [{"y": 2}],
             "broken": lambda s: 1 / 0}
    copy = cpstats.extrapolate_statistics(scope)
    assert copy == {"a": 1, "f": 2, "c": {"r": {"x": 5}}, "l": [{"y": 2}],
                    "broken": "<ZeroDivisionError: division by zero>"}
    assert callable(scope["f"]) and copy["l"][0] is not scope["l"][0]


def test_the_tool_off_records_nothing(web: Any) -> None:
    web.mount(App())
    web.getPage("/")
    assert cpstats.APPS not in logging.statistics  # type: ignore[attr-defined]


def test_byte_count_wrapper_counts_every_way_of_reading() -> None:
    import io

    wrapper = cpstats.ByteCountWrapper(io.BytesIO(b"ab\ncd\nef\ngh\nij"))
    assert wrapper.read(1) == b"a" and wrapper.readline() == b"b\n"
    assert next(wrapper) == b"cd\n"
    assert wrapper.readlines(4) == [b"ef\n", b"gh\n"]  # stops once 4 bytes are in
    assert wrapper.readlines() == [b"ij"]
    assert wrapper.bytes_read == 14
