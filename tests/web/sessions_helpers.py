"""Helpers for the session tests: cookies, a counting app, concurrent clients, fake clocks."""

from __future__ import annotations

import datetime
import http.cookies
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import services.web as cherrypy
from services.web.lib import sessions
from services.web.test.webtest import openURL


def set_cookies(headers: Iterable[tuple[str, str]]) -> dict[str, http.cookies.Morsel[str]]:
    """Return the cookies a response sets, by name."""
    jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    for name, value in headers:
        if name.lower() == "set-cookie":
            jar.load(value)
    return dict(jar)


def session_cookie(web: Any, name: str = "session_id") -> str:
    """Return the session id the last response set."""
    return set_cookies(web.headers)[name].value


class Counter:
    """Counts requests per session; ``slow`` reads, yields the GIL, then writes."""

    @cherrypy.expose
    def index(self) -> str:
        count = cherrypy.session.get("count", 0) + 1
        cherrypy.session["count"] = count
        return str(count)

    @cherrypy.expose
    def slow(self) -> str:
        count = cherrypy.session.get("count", 0)
        for _ in range(200):  # give other threads every chance to interleave
            pass
        import time

        time.sleep(0)
        cherrypy.session["count"] = count + 1
        return str(count + 1)

    @cherrypy.expose
    def peek(self) -> str:
        return str(cherrypy.session.get("count", 0))

    @cherrypy.expose
    def nothing(self) -> str:
        return "untouched"

    @cherrypy.expose
    def sid(self) -> str:
        return cherrypy.session.id

    @cherrypy.expose
    def regen(self) -> str:
        cherrypy.session["count"] = cherrypy.session.get("count", 0)
        cherrypy.session.regenerate()
        return cherrypy.session.id

    @cherrypy.expose
    def expire(self) -> str:
        sessions.expire()
        return "expired"

    @cherrypy.expose
    def locked(self) -> str:
        return repr(cherrypy.session.locked)

    @cherrypy.expose
    def lock_explicitly(self) -> str:
        before = cherrypy.session.locked
        cherrypy.session.acquire_lock()
        cherrypy.session["count"] = cherrypy.session.get("count", 0) + 1
        return f"{before} {cherrypy.session.locked}"


def hammer(port: int, paths: list[tuple[int, str]], cookie: str, workers: int = 8
           ) -> list[str]:
    """GET each (port, path) concurrently with the session cookie; return the bodies."""

    def get(target: tuple[int, str]) -> str:
        status, _headers, body = openURL(target[1], headers=[("Cookie", cookie)],
                                         port=target[0], timeout=60)
        assert status.startswith("200"), (status, body)
        return body.decode()

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(get, paths))


class Clock:
    """A settable offset added to the sessions' idea of now."""

    offset = datetime.timedelta(0)


class ClockedRamSession(sessions.RamSession):
    def now(self) -> datetime.datetime:
        return datetime.datetime.now() + Clock.offset


class ClockedFileSession(sessions.FileSession):
    def now(self) -> datetime.datetime:
        return datetime.datetime.now() + Clock.offset
