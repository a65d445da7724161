"""The library's browsable pages: gctools (garbage and reference leaks), profiler (profiles of
a handler or of every request, browsed), covercp (coverage of a real running site, browsed)."""

from __future__ import annotations

import gc
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

import services.web as cherrypy
from services.web.lib import covercp, gctools, profiler
from tests.httpclients import fetch
from tests.processes import python

leaked: list[Any] = []


class Hello:
    @cherrypy.expose
    def index(self) -> str:
        cherrypy.request.thing = Hello
        return "Hello world!"

    @cherrypy.expose
    def leak(self) -> str:
        leaked.append(cherrypy.serving.request)
        return "leaked"


def get(port: int, path: str) -> tuple[int, bytes]:
    status, body, _response = fetch(("127.0.0.1", port), path, timeout=20)
    return status, body


# -- gctools --------------------------------------------------------------------------------


def test_no_request_objects_leak_under_concurrent_requests(web: Any) -> None:
    cherrypy.tree.mount(gctools.GCRoot(), "/gc")
    web.mount(Hello())
    results: list[tuple[int, bytes]] = []
    threads = [threading.Thread(target=lambda: results.append(get(web.PORT, "/")))
               for _ in range(25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [(200, b"Hello world!")] * 25
    web.set_persistent(True)
    web.getPage("/gc/")  # on this connection, the next request starts after this one ended
    web.getPage("/gc/stats")
    web.assertStatus(200)
    web.assertHeader("Content-Type", "text/plain;charset=utf-8")
    web.assertInBody("No unexpected instances.")
    web.assertNotInBody("uncollectable")


def test_a_leaked_request_is_reported_with_its_referrers(web: Any) -> None:
    cherrypy.tree.mount(gctools.GCRoot(), "/gc")
    web.mount(Hello())
    web.set_persistent(True)  # the request has ended when the next one is read
    try:
        web.getPage("/leak")
        web.getPage("/gc/stats")
        web.assertInBody("Expected 2 Request instances, got 3.")
        web.assertInBody("path=/leak;stage=")
        web.assertInBody("Referrers for")
    finally:
        leaked.clear()
        gc.collect()
    web.getPage("/gc/")
    web.assertInBody('<a href="stats">')


def test_referrer_tree() -> None:
    class Target:
        pass

    target = Target()
    holder = {"key": target}
    also = [target]
    tree = gctools.ReferrerTree(maxdepth=1)
    branch = tree.ascend(target)
    parents = [parent for parent, _ in branch]
    assert any(p is holder for p in parents) and any(p is also for p in parents)
    lines = tree.format(branch)
    assert any(line.strip().startswith("{'key'") for line in lines)
    assert tree.peek("x" * 100) == "x" * 40 + "..."
    assert len(gctools.get_instances(Target)) == 1
    assert gctools.get_context(target) == ""


# -- profiler -------------------------------------------------------------------------------


def work(n: int) -> int:
    return sum(i * i for i in range(n))


def test_profiler_runs_and_browses(web: Any, tmp_path: Path) -> None:
    prof = profiler.Profiler(str(tmp_path))
    assert prof.run(work, 1000) == work(1000)
    assert prof.run(work, n=10) == work(10)
    assert prof.statfiles() == ["cp_0001.prof", "cp_0002.prof"]
    assert profiler.Profiler(str(tmp_path)).run(work, 5) == work(5)  # numbering continues
    assert prof.statfiles()[-1] == "cp_0003.prof"
    web.mount(prof, "/profiler")
    web.getPage("/profiler/")
    web.assertInBody('<a href="report?filename=cp_0001.prof">cp_0001.prof</a>')
    web.getPage("/profiler/report?filename=cp_0001.prof&sortby=tottime")
    web.assertStatus(200)
    web.assertHeader("Content-Type", "text/plain;charset=utf-8")
    web.assertInBody("function calls")
    web.assertInBody("(work)")
    for bad in ("../cp_0001.prof", "/etc/passwd", "cp_0009.prof"):
        web.getPage(f"/profiler/report?filename={bad}")
        web.assertStatus(404)
    web.getPage("/profiler/report?filename=cp_0001.prof&sortby=nonsense")
    web.assertStatus(404)


@pytest.mark.parametrize("aggregate, files", [(False, 3), (True, 1)])
def test_every_request_profiled_by_the_middleware(web: Any, tmp_path: Path, aggregate: bool,
                                                  files: int) -> None:
    web.mount(Hello(), "", {"/": {"wsgi.pipeline": [("profile", profiler.make_app)],
                                  "wsgi.profile.path": str(tmp_path),
                                  "wsgi.profile.aggregate": aggregate}})
    for _ in range(3):
        web.getPage("/")
        web.assertBody("Hello world!")
    names = profiler.Profiler(str(tmp_path)).statfiles()
    assert len(names) == files
    report = profiler.Profiler(str(tmp_path)).stats(names[-1])
    assert "index" in report


# -- covercp --------------------------------------------------------------------------------

MODULE = '''
def compute(n):
    if n > 10:
        return "big"
    return "small"


def never_called():
    return "never"
'''

SITE = '''
import functools
import services.web as cherrypy
from services.web.lib import covercp
import covered

cherrypy.engine.subscribe("start", functools.partial(covercp.start, "coverage.data"))


class Root:
    @cherrypy.expose
    def index(self, n):
        return covered.compute(int(n))


cherrypy.config.update({"server.socket_port": 0, "checker.on": False})
cherrypy.quickstart(Root())
'''


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_coverage_of_a_running_site(spawn: Any, write_script: Any, tmp_path: Path,
                                    web: Any) -> None:
    write_script("covered.py", MODULE)
    script = write_script("site.py", SITE)
    child = spawn(python(str(script)))
    port = int(child.wait_for_output(r"Serving on http://127\.0\.0\.1:(\d+)", 30).group(1))
    assert get(port, "/?n=50") == (200, b"big")
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
    assert (tmp_path / "coverage.data").exists()  # saved at exit

    stats = covercp.CoverStats(str(tmp_path / "coverage.data"), root=str(tmp_path))
    web.mount(stats, "/coverage")
    web.getPage("/coverage/")
    web.assertStatus(200)
    covered = str(tmp_path / "covered.py")
    web.assertInBody("covered.py</a>")
    web.getPage("/coverage/report?name=" + covered)
    web.assertStatus(200)
    body = web.body.decode()
    assert '<tr class="covered"><td>4</td><td><pre>        return &quot;big&quot;' in body
    assert '<tr class="missed"><td>5</td><td><pre>    return &quot;small&quot;' in body
    assert '<tr class="missed"><td>9</td>' in body
    web.getPage("/coverage/report?name=" + os.path.abspath(__file__))
    web.assertStatus(404)  # not measured: never shown
    web.getPage("/coverage/menu?pct=90&showpct=1")
    web.assertInBody("covered.py</a>")
    web.getPage("/coverage/menu?exclude=[")
    web.assertInBody("Bad query")


def test_covercp_names_its_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_coverage(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "coverage":
            raise ImportError("No module named 'coverage'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_coverage)
    with pytest.raises(ImportError, match=r"pip install coverage"):
        covercp.CoverStats("nothing")


def test_referrer_tree_names_who_holds_an_object_to_its_depth() -> None:
    import inspect

    from services.web.lib import gctools

    class Target:
        pass

    target = Target()
    holder = {"held": target}
    shallow = gctools.ReferrerTree(maxdepth=1).ascend(target)
    assert [children for parent, children in shallow if parent is holder] == [[]]
    tree = gctools.ReferrerTree(maxdepth=2)
    deep = tree.ascend(target)
    (children,) = [children for parent, children in deep if parent is holder]
    assert all(isinstance(entry, tuple) and len(entry) == 2 for entry in children)
    assert not any(inspect.isframe(parent) and parent.f_code is tree.ascend.__code__
                   for parent, _ in deep)
    crowd = [[target] for _ in range(12)]  # more referrers than maxparents: just a count
    ((summary, nothing),) = gctools.ReferrerTree(maxparents=10).ascend(target)
    assert re.fullmatch(r"\[(\d+) referrers\]", summary) and nothing == []
    assert int(summary[1:].split()[0]) > len(crowd)
