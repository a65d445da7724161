"""Metrics: one process's totals, their sum over processes, the endpoint; and site config."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from sitebus.errors import ConfigError
from sitebus.site.container import Site
from sitebus.site.metrics import BUCKETS, MAX_SEEN, Recorder, collect_files

pytest.importorskip("prometheus_client")


def test_a_recorder_adds_up_its_threads_and_writes_the_totals(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder._awake = True  # no writer thread here: write by hand
    recorder.directory = str(tmp_path)
    recorder.record("", "GET", "200 OK", 0.0005)
    recorder.record("/api", "BREW", "418 I'm a teapot", 0.3)
    thread = threading.Thread(target=recorder.record, args=("/api", "GET", "200 OK", 20.0))
    thread.start()
    thread.join()  # its totals outlive it
    recorder.write()
    [written] = os.listdir(tmp_path)
    assert written == f"{recorder.token}.json"
    other = {"pid": 1, "requests": [["/api", "GET", "200", 2]],
             "durations": {"/api": [0] * len(BUCKETS) + [2, 1.5]}, "workers": 2,
             "worker_restarts": 1, "reloads": 1}
    (tmp_path / "1-abcd.json").write_text(__import__("json").dumps(other))
    (tmp_path / "garbled.json").write_text("{")  # a process killed mid-write is skipped
    total = collect_files(str(tmp_path), recorder.snapshot(), recorder.token)
    assert total["requests"] == {("/", "GET", "200"): 1, ("/api", "other", "418"): 1,
                                 ("/api", "GET", "200"): 3}
    api = total["durations"]["/api"]
    assert api[BUCKETS.index(0.5)] == 1 and api[len(BUCKETS)] == 3  # 20 s and two others: +Inf
    assert api[-1] == pytest.approx(21.8)
    assert (total["workers"], total["worker_restarts"], total["reloads"]) == (2, 1, 1)
    assert total["pids"] == {os.getpid(), 1}


def test_invented_methods_are_counted_as_other_and_keep_a_thread_s_keys_bounded() -> None:
    recorder = Recorder()
    recorder._awake = True  # no writer thread here
    for i in range(MAX_SEEN * 2):
        recorder.record("", f"M{i}", "200 OK", 0.002)
    recorder.record("", "GET", "200 OK", 0.002)
    recorder.record("", "GET", "200 Fine", 0.002)  # another reason phrase: the same code
    assert len(recorder._local.seen) == MAX_SEEN
    requests = {tuple(key): count for *key, count in recorder.snapshot()["requests"]}
    assert requests == {("/", "other", "200"): MAX_SEEN * 2, ("/", "GET", "200"): 2}
    durations = recorder.snapshot()["durations"]["/"]
    assert durations[BUCKETS.index(0.0025)] == MAX_SEEN * 2 + 2


def scrape(site: Site) -> tuple[str, str]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(headers))

    body = b"".join(site.bus.metrics.app({"REQUEST_METHOD": "GET"}, start_response))
    assert answer["headers"]["Content-Type"].startswith("text/plain; version=")
    return answer["status"], body.decode()


def test_the_endpoint_is_configured_from_the_site_config(tmp_path: Path) -> None:
    site = Site()
    site.config.update({"engine.metrics.on": True, "engine.metrics.path": "/_metrics",
                        "engine.metrics.directory": str(tmp_path / "m")})
    assert list(site.tree.endpoints) == ["/_metrics"]
    assert site.tree.observer is not None and site.tree.observer.metrics is not None
    site.bus.metrics.start()
    try:
        site.tree.observer.metrics.record("/shop", "GET", "200 OK", 0.01)
        site.bus.metrics.count_reload()
        status, text = scrape(site)
    finally:
        site.bus.metrics.exit()
    assert status == "200 OK"
    assert 'sitebus_requests_total{app="/shop",method="GET",status="200"} 1.0' in text
    assert 'sitebus_request_duration_seconds_bucket{app="/shop",le="0.01"} 1.0' in text
    assert "sitebus_reloads_total 1.0" in text and "sitebus_workers 0.0" in text
    assert f'process_resident_memory_bytes{{pid="{os.getpid()}"}}' in text
    assert not (tmp_path / "m").exists()  # made on start, removed on exit
    site.config.update({"engine.metrics.on": False})
    assert not site.tree.endpoints and site.tree.observer.metrics is None
    with pytest.raises(ConfigError, match=r"engine\.metrics\.path: expected a path"):
        site.config.update({"engine.metrics.path": "metrics"})


def test_unknown_server_keys_suggest_the_closest_worker_keys_included() -> None:
    site = Site()
    with pytest.raises(ConfigError) as caught:
        site.config.update({"server.max_request": 10})
    message = str(caught.value)
    assert message.startswith("server.max_request: unknown setting (did you mean "
                              "'max_requests'?); expected one of ")
    assert "worker_timeout" in message and "socket_port" in message
    with pytest.raises(ConfigError, match=r"server\.tls\.socket_prot: unknown setting \(did "
                                          r"you mean 'socket_port'\?\)"):
        site.config.update({"server.tls.socket_prot": 1})


def test_explicit_keys_win_over_a_later_environment() -> None:
    site = Site()
    site.config.update({"log.screen": True, "engine.autoreload.on": True})
    site.config.update({"environment": "production"})
    assert site.log.screen is True and site.config["engine.autoreload.on"] is True
    site.config.update({"log.screen": False})
    assert site.log.screen is False
