"""session_auth: the login screen, do_login/do_logout, overrides through tool arguments, and
hostile input (reflected markup, open redirects, fixation, wrong methods, odd fields)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import services.web as cherrypy
from services.web.lib import cptools, sessions
from tests.web.sessions_helpers import session_cookie, set_cookies


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    yield
    sessions.stop_cleanup()
    sessions.RamSession.cache.clear()


def check(username: str, password: str) -> str | None:
    if (username, password) == ("test", "password"):
        return None
    return "Wrong login/password"


class Root:
    @cherrypy.expose
    def index(self) -> str:
        return f"Hi {cherrypy.request.login}, you are logged in"

    @cherrypy.expose
    def whoami(self) -> str:
        return str(cherrypy.session.get("username"))


def mount(web: Any, **extra: Any) -> None:
    web.mount(Root(), "", {"/": {"tools.sessions.on": True, "tools.session_auth.on": True,
                                 "tools.session_auth.check_username_and_password": check,
                                 **extra}})


def login(web: Any, body: str, cookie: str | None = None) -> None:
    headers = [("Cookie", f"session_id={cookie}")] if cookie else []
    web.getPage("/do_login", method="POST", body=body, headers=headers)


def test_login_flow(web: Any) -> None:
    mount(web)
    web.getPage("/?x=1")
    web.assertStatus(200)
    web.assertInBody('<form method="post" action="do_login">')
    web.assertInBody(f'value="{web.base()}/?x=1"')  # from_page
    before = session_cookie(web)
    login(web, "username=test&password=wrong&from_page=/", before)
    web.assertInBody("Message: Wrong login/password")
    web.assertInBody('value="test"')
    login(web, "username=test&password=password&from_page=/", before)
    web.assertStatus(303)
    web.assertHeader("Location", f"{web.base()}/")
    after = session_cookie(web)
    assert after != before  # a new id on login: a planted id is worthless
    cookie = [("Cookie", f"session_id={after}")]
    web.getPage("/", headers=cookie)
    web.assertBody("Hi test, you are logged in")
    web.getPage("/", headers=[("Cookie", f"session_id={before}")])
    web.assertInBody("do_login")  # the pre-login id is not logged in
    web.getPage("/do_logout", method="POST", body="from_page=/whoami", headers=cookie)
    web.assertStatus(303)
    web.getPage("/", headers=cookie)
    web.assertInBody("do_login")


def test_login_screen_is_bytes_and_escapes_what_it_shows(web: Any) -> None:
    auth = cptools.SessionAuth()
    page = auth.login_screen('"><script>x</script>', "<b>", "<i>err</i>")
    assert isinstance(page, bytes)
    assert b"<script>" not in page and b"<b>" not in page and b"<i>" not in page
    mount(web)
    login(web, "username=%3Cscript%3Ealert(1)%3C/script%3E&password=x")
    web.assertNotInBody("<script>alert(1)</script>")
    web.assertInBody("&lt;script&gt;alert(1)&lt;/script&gt;")


@pytest.mark.parametrize("target", ["http://evil.example/", "//evil.example/x",
                                    "https://evil.example", "\\\\evil.example",
                                    "/\\evil.example"])
def test_from_page_never_redirects_to_another_site(web: Any, target: str) -> None:
    mount(web)
    login(web, f"username=test&password=password&from_page={target}")
    web.assertStatus(303)
    location = web.assertHeader("Location")
    assert location == f"{web.base()}/", location


def test_from_page_on_this_site_is_kept(web: Any) -> None:
    mount(web)
    login(web, f"username=test&password=password&from_page={web.base()}/whoami?a=b")
    web.assertHeader("Location", f"{web.base()}/whoami?a=b")


def test_login_and_logout_need_post(web: Any) -> None:
    mount(web)
    web.getPage("/do_login?username=test&password=password")
    web.assertStatus(405)
    web.assertHeader("Allow", "POST")
    web.getPage("/do_logout")
    web.assertStatus(405)


@pytest.mark.parametrize("body, content_type", [
    ("username=a&username=b&password=x", "application/x-www-form-urlencoded"),
    ("username=test&password=password&extra=1", "application/x-www-form-urlencoded"),
    ("--B\r\nContent-Disposition: form-data; name=\"username\"; filename=\"u.txt\"\r\n\r\n"
     "test\r\n--B--\r\n", "multipart/form-data; boundary=B"),
    ("%ZZ=%ZZ", "application/x-www-form-urlencoded"),
    ("\xff\xfe", "application/x-www-form-urlencoded; charset=utf-8"),
])
def test_odd_login_bodies_never_500(web: Any, body: str, content_type: str) -> None:
    mount(web)
    web.getPage("/do_login", method="POST", body=body.encode("latin-1"),
                headers=[("Content-Type", content_type)])
    assert web.status[:3] in ("200", "303", "400"), web.status


def test_overrides_through_tool_arguments(web: Any) -> None:
    seen: list[str] = []
    mount(web, **{"tools.session_auth.anonymous": lambda: "guest",
                  "tools.session_auth.on_check": seen.append,
                  "tools.session_auth.session_key": "user"})
    web.getPage("/")
    web.assertBody("Hi guest, you are logged in")
    assert seen == ["guest"]
    assert "session_key" in dir(cherrypy.tools.session_auth)


def test_session_auth_needs_no_login_for_login_screen_path(web: Any) -> None:
    mount(web, **{"tools.session_auth.login_screen":
                  lambda from_page="..", username="", error_msg="", **kw: b"custom screen"})
    web.getPage("/login_screen")
    web.assertBody("custom screen")
    web.getPage("/")
    web.assertBody("custom screen")
    assert "session_id" in set_cookies(web.headers)
