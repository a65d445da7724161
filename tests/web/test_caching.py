"""tools.caching (MemoryCache, AntiStampedeCache) and tools.expires: hits, variants by Vary,
conditional requests, request Cache-Control, what is never stored, limits, lazy expiry, and
the anti-stampede behaviour under real concurrent requests."""

from __future__ import annotations

import datetime
import email.utils
import gzip
import http.client
import threading
import time
from typing import Any

import pytest

import services.web as cherrypy
from services.web._cprequest import Hook
from services.web.lib import caching
from services.web.test.helper import LocalServer

LASTMOD = "Wed, 01 Jan 2025 00:00:00 GMT"


class Root:
    _cp_config = {"tools.caching.on": True, "tools.caching.antistampede_timeout": 30}

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, name: str) -> int:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            return self.calls[name]

    @cherrypy.expose
    def index(self, q: str = "") -> str:
        return f"visit #{self.count('index')} {cherrypy.request.method} {q}"

    @cherrypy.expose
    def vary(self) -> str:
        cherrypy.response.headers["Vary"] = "Accept-Language"
        lang = cherrypy.request.headers.get("Accept-Language", "none")
        return f"{lang} #{self.count('vary')}"

    @cherrypy.expose
    def lastmod(self) -> str:
        cherrypy.response.headers["Last-Modified"] = LASTMOD
        cherrypy.response.headers["ETag"] = '"v1"'
        return f"modified #{self.count('lastmod')}"

    @cherrypy.expose
    def cookie(self) -> str:
        cherrypy.response.cookie["session"] = str(self.count("cookie"))
        return "with a cookie"

    @cherrypy.expose
    def private(self) -> str:
        cherrypy.response.headers["Cache-Control"] = "private"
        return f"private #{self.count('private')}"

    @cherrypy.expose
    def fail(self) -> str:
        self.count("fail")
        raise ValueError("no")

    @cherrypy.expose
    def missing(self) -> str:
        self.count("missing")
        raise cherrypy.NotFound()

    @cherrypy.expose
    def big(self, n: str) -> bytes:
        return b"x" * int(n) + str(self.count("big")).encode()


@pytest.fixture
def root() -> Root:
    return Root()


@pytest.fixture
def app(web: Any, root: Root) -> Any:
    web.mount(root)
    return web


def get(web: Any, url: str, *headers: tuple[str, str], **kwargs: Any) -> str:
    web.getPage(url, headers=list(headers), **kwargs)
    return web.body.decode()


def age(web: Any) -> str | None:
    return dict((k.lower(), v) for k, v in web.headers).get("age")


def test_caching(app: Any, root: Root) -> None:
    assert get(app, "/") == "visit #1 GET "
    assert age(app) is None
    assert get(app, "/") == "visit #1 GET "
    assert age(app) == "0"
    assert get(app, "/", method="HEAD") == ""
    app.assertHeader("Content-Length", str(len("visit #1 GET ")))
    assert get(app, "/?q=other") == "visit #2 GET other"  # another URL, another entry
    assert get(app, "/", method="POST", body="") == "visit #3 POST "  # invalidates
    assert get(app, "/") == "visit #4 GET "
    assert get(app, "/") == "visit #4 GET "
    cache = caching.get_cache(cherrypy.tree.apps[""])
    assert cache.tot_hist >= 3 and cache.objects == 2


def test_vary_header(app: Any) -> None:
    assert get(app, "/vary", ("Accept-Language", "en")) == "en #1"
    assert get(app, "/vary", ("Accept-Language", "fr")) == "fr #2"
    assert get(app, "/vary", ("Accept-Language", "en")) == "en #1"
    assert get(app, "/vary", ("Accept-Language", "fr")) == "fr #2"
    assert get(app, "/vary") == "none #3"
    app.assertHeader("Vary", "Accept-Language")


def test_conditional_requests_on_cached_copies(app: Any, root: Root) -> None:
    assert get(app, "/lastmod") == "modified #1"
    get(app, "/lastmod", ("If-Modified-Since", LASTMOD))
    app.assertStatus(304)
    app.assertBody(b"")
    get(app, "/lastmod", ("If-Modified-Since", "Thu, 02 Jan 2025 00:00:00 GMT"))
    app.assertStatus(304)  # later than Last-Modified: not modified since
    assert get(app, "/lastmod", ("If-Modified-Since", "Tue, 31 Dec 2024 00:00:00 GMT")) == \
        "modified #1"
    get(app, "/lastmod", ("If-None-Match", '"v1"'))
    app.assertStatus(304)
    assert get(app, "/lastmod", ("If-None-Match", '"v0"')) == "modified #1"
    get(app, "/lastmod", ("If-Unmodified-Since", "Tue, 31 Dec 2024 00:00:00 GMT"))
    app.assertStatus(412)
    assert root.calls["lastmod"] == 1
    assert caching.get_cache(cherrypy.tree.apps[""]).tot_non_modified == 3


def test_request_cache_control(app: Any) -> None:
    assert get(app, "/") == "visit #1 GET "
    assert get(app, "/", ("Cache-Control", "max-age=100")) == "visit #1 GET "
    assert get(app, "/", ("Cache-Control", "no-cache")) == "visit #2 GET "
    assert get(app, "/") == "visit #2 GET "  # the fresh copy was stored
    assert get(app, "/", ("Pragma", "no-cache")) == "visit #3 GET "
    assert get(app, "/", ("Cache-Control", "no-store")) == "visit #3 GET "
    assert get(app, "/?q=x", ("Cache-Control", "no-store")) == "visit #4 GET x"
    assert get(app, "/?q=x") == "visit #5 GET x"  # no-store: not kept
    for bad in ("max-age=abc", "max-age=", "max-age=-1", "max-age"):
        get(app, "/", ("Cache-Control", bad))
        app.assertStatus(400)
        app.assertInBody("Invalid Cache-Control header")


def test_what_is_never_stored(app: Any, root: Root) -> None:
    for _ in range(2):
        get(app, "/cookie")
        get(app, "/private")
        get(app, "/fail")
        app.assertStatus(500)
        get(app, "/missing")
        app.assertStatus(404)
    assert root.calls == {"cookie": 2, "private": 2, "fail": 2, "missing": 1}


def test_size_limits(web: Any, root: Root) -> None:
    web.mount(root, "", {"/": {"tools.caching.maxobj_size": 1000,
                               "tools.caching.maxobjects": 2}})
    assert get(web, "/big?n=2000").endswith("1")
    assert get(web, "/big?n=2000").endswith("2")  # too big to keep
    assert get(web, "/big?n=10").endswith("3")
    assert get(web, "/big?n=10").endswith("3")
    assert get(web, "/big?n=20").endswith("4")
    assert get(web, "/big?n=30").endswith("5")  # two objects already
    assert get(web, "/big?n=30").endswith("6")
    assert get(web, "/big?n=20").endswith("4")


def test_expiry_is_lazy(web: Any, root: Root) -> None:
    web.mount(root, "", {"/": {"tools.caching.delay": 0, "tools.caching.expire_freq": 0}})
    assert get(web, "/") == "visit #1 GET "
    assert get(web, "/") == "visit #2 GET "  # expired when the second request looked
    cache = caching.get_cache(cherrypy.tree.apps[""])
    assert cache.tot_expires == 1 and cache.expiration_thread is None
    cache.delay = 600
    web.mount(root, "", {"/": {"tools.caching.expire_freq": 0}})
    assert caching.get_cache(cherrypy.tree.apps[""]) is not cache  # a new app, a new cache
    assert get(web, "/") == "visit #3 GET "
    assert get(web, "/") == "visit #3 GET "


def test_cache_class_and_invalid_methods_from_config(web: Any, root: Root) -> None:
    class CountingCache(caching.MemoryCache):
        gets = 0

        def get(self) -> Any:
            CountingCache.gets += 1
            return super().get()

    web.mount(root, "", {"/": {"tools.caching.cache_class": CountingCache,
                               "tools.caching.invalid_methods": ("DELETE",)}})
    assert get(web, "/") == "visit #1 GET "
    assert get(web, "/", method="POST", body="") == "visit #1 GET "  # POST reads the cache
    assert get(web, "/", method="DELETE") == "visit #2 DELETE "
    assert get(web, "/") == "visit #3 GET "
    assert CountingCache.gets == 3
    assert isinstance(caching.get_cache(cherrypy.tree.apps[""]), CountingCache)


def test_gzip_and_caching_together(web: Any, root: Root) -> None:
    web.mount(root, "", {"/": {"tools.gzip.on": True}})
    gz = ("Accept-Encoding", "gzip")
    web.getPage("/", headers=[gz])
    web.assertHeader("Content-Encoding", "gzip")
    first = web.body
    assert get(web, "/") == "visit #2 GET "  # identity is another variant
    web.getPage("/", headers=[gz])
    web.assertHeader("Content-Encoding", "gzip")
    web.assertHeader("Vary", "Accept-Encoding")
    assert web.body == first
    assert gzip.decompress(web.body) == b"visit #1 GET "


# -- anti-stampede, with real concurrent requests ------------------------------------------


class Stampede:
    """A slow resource: N requests arrive, then the first computation is let through."""

    def __init__(self, n: int, fail_first: bool = False) -> None:
        self.n = n
        self.fail_first = fail_first
        self.calls = 0
        self.arrivals = 0
        self.lock = threading.Lock()
        self.all_arrived = threading.Event()
        self.computing = threading.Event()
        self.release = threading.Event()

    def arrive(self) -> None:  # a before_handler hook that runs before the cache (p20)
        with self.lock:
            self.arrivals += 1
            if self.arrivals == self.n:
                self.all_arrived.set()

    @cherrypy.expose
    def slow(self) -> str:
        with self.lock:
            self.calls += 1
            call = self.calls
        self.computing.set()
        self.release.wait(30)
        if self.fail_first and call == 1:
            raise ValueError("the first computation fails")
        return f"computed by call {call}"


def run_stampede(resource: Stampede, site_state: Any) -> list[tuple[int, bytes]]:
    config = {"/": {"tools.caching.on": True, "tools.caching.antistampede_timeout": 60,
                    "hooks.before_handler": Hook(resource.arrive, priority=10)}}
    cherrypy.tree.mount(resource, "", config)
    server = LocalServer(threads=resource.n + 2)
    port = server.start()
    results: list[tuple[int, bytes]] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=40)
        try:
            conn.request("GET", "/slow")
            response = conn.getresponse()
            results.append((response.status, response.read()))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(resource.n)]
    try:
        for thread in threads:
            thread.start()
        assert resource.all_arrived.wait(30), f"only {resource.arrivals} requests arrived"
        assert resource.computing.wait(30)
        resource.release.set()
        for thread in threads:
            thread.join(45)
    finally:
        resource.release.set()
        server.stop()
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_antistampede_computes_once_from_the_first_request(site_state: Any) -> None:
    resource = Stampede(8)
    results = run_stampede(resource, site_state)
    assert resource.calls == 1
    assert results == [(200, b"computed by call 1")] * 8


def test_a_failed_computation_releases_the_waiters_at_once(site_state: Any) -> None:
    # The waiters would wait 60 s (antistampede_timeout) if the failed request kept its
    # slot; the clients give up after 40 s.
    resource = Stampede(6, fail_first=True)
    results = run_stampede(resource, site_state)
    assert resource.calls == 2
    assert sorted(status for status, _ in results) == [200] * 5 + [500]
    assert {body for status, body in results if status == 200} == {b"computed by call 2"}


def test_antistampede_cache_wait_and_release() -> None:
    cache = caching.AntiStampedeCache()
    assert cache.wait("k", timeout=None) is None and "k" not in cache  # no sentinel
    assert cache.wait("k") is None and "k" in cache  # the caller now computes it
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(cache.wait("k", timeout=30)))
    waiter.start()
    cache["k"] = "value"
    waiter.join(30)
    assert got == ["value"]
    assert cache.wait("k") == "value"

    assert cache.wait("j") is None
    pending = dict.get(cache, "j")
    got.clear()
    waiter = threading.Thread(target=lambda: got.append(cache.wait("j", timeout=30)))
    waiter.start()
    cache.release("j", pending)  # no value: the waiter computes it instead
    waiter.join(30)
    assert got == [None]
    assert dict.get(cache, "j") is not pending and dict.get(cache, "j") is not None


def test_antistampede_wait_times_out_and_takes_over() -> None:
    cache = caching.AntiStampedeCache()
    assert cache.wait("k") is None
    first = dict.get(cache, "k")
    assert cache.wait("k", timeout=0.2) is None  # the first is too slow
    assert dict.get(cache, "k") is not first  # the late one now computes it


# -- tools.expires ------------------------------------------------------------------------------


class Expires:
    _cp_config = {"tools.expires.on": True, "tools.expires.secs": 60}

    @cherrypy.expose
    def specific(self) -> str:
        cherrypy.response.headers["ETag"] = '"need_this_to_make_me_cacheable"'
        return "I am being specific"

    specific._cp_config = {"tools.expires.secs": 86400}  # type: ignore[attr-defined]

    @cherrypy.expose
    def delta(self) -> str:
        cherrypy.response.headers["Last-Modified"] = LASTMOD
        return "a timedelta"

    delta._cp_config = {  # type: ignore[attr-defined]
        "tools.expires.secs": datetime.timedelta(hours=1)}

    @cherrypy.expose
    def wrongtype(self) -> str:
        cherrypy.response.headers["ETag"] = '"x"'
        return "Woops"

    wrongtype._cp_config = {"tools.expires.secs": object()}  # type: ignore[attr-defined]

    @cherrypy.expose
    def dynamic(self) -> str:
        cherrypy.response.headers["ETag"] = '"bibbitybobbityboo"'
        cherrypy.response.headers["Cache-Control"] = "private"
        return "D-d-d-dynamic!"

    @cherrypy.expose
    def plain(self) -> str:
        return "no validator: nothing to set"


def expires_at(web: Any) -> float:
    value = web.assertHeader("Expires")
    return email.utils.parsedate_to_datetime(value).timestamp()


def test_expires_tool(web: Any) -> None:
    web.mount(Expires())
    web.getPage("/specific")
    web.assertStatus(200)
    assert abs(expires_at(web) - (time.time() + 86400)) < 600
    web.assertNoHeader("Pragma")
    web.getPage("/delta")
    assert abs(expires_at(web) - (time.time() + 3600)) < 600
    web.getPage("/wrongtype")
    web.assertStatus(500)
    web.assertInBody("TypeError: tools.expires.secs: expected a number of seconds")
    web.getPage("/dynamic")
    web.assertHeader("Cache-Control", "private")
    web.assertHeader("Expires")
    web.assertNoHeader("Pragma")
    web.getPage("/plain")
    web.assertNoHeader("Expires")


def test_expires_tool_forced(web: Any) -> None:
    web.mount(Expires(), "", {"/": {"tools.expires.force": True, "tools.expires.secs": 0}})
    for path in ("/dynamic", "/plain"):
        web.getPage(path)
        web.assertHeader("Pragma", "no-cache")
        web.assertHeader("Cache-Control", "no-cache, must-revalidate")
        web.assertHeader("Expires", "Sun, 28 Jan 2007 00:00:00 GMT")
    web.getPage("/plain", protocol="HTTP/1.0")
    web.assertHeader("Pragma", "no-cache")
    web.assertNoHeader("Cache-Control")
