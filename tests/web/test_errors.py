"""Errors: HTTPError, NotFound, HTTPRedirect (statuses, header injection, XSS),
InternalRedirect, custom error pages, error_response, tracebacks and the default page."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import services.web as cherrypy
from services.web._cperror import HTTPRedirect, render_error_page, safe_url


class Root:
    @cherrypy.expose
    def index(self) -> str:
        return "index"

    @cherrypy.expose
    def fail(self, code: str, message: str | None = None) -> str:
        raise cherrypy.HTTPError(int(code), message)

    @cherrypy.expose
    def notfound(self) -> str:
        raise cherrypy.NotFound()

    @cherrypy.expose
    def handled(self) -> str:
        with cherrypy.HTTPError.handle(FileNotFoundError, 404):
            open("/no/such/file")  # noqa: SIM115
        return "never"

    @cherrypy.expose
    def unexpected(self) -> str:
        raise RuntimeError("unexpected <b>failure</b>")

    @cherrypy.expose
    def redirect(self, to: str, status: str | None = None) -> str:
        raise cherrypy.HTTPRedirect(to, int(status) if status else None)

    @cherrypy.expose
    def redirect_many(self) -> str:
        raise cherrypy.HTTPRedirect(["/a", "/b"], 300)

    @cherrypy.expose
    def url_with_xss(self) -> str:
        raise cherrypy.HTTPRedirect("/some<script>alert(1)</script>url")

    @cherrypy.expose
    def url_with_unicode(self) -> str:
        raise cherrypy.HTTPRedirect("/тест")

    @cherrypy.expose
    def url_with_crlf(self) -> str:
        raise cherrypy.HTTPRedirect("/x%0d%0aSet-Cookie:%20a=b")

    @cherrypy.expose
    def not_modified(self) -> str:
        raise cherrypy.HTTPRedirect("", 304)

    @cherrypy.expose
    def internal(self, to: str, **ignored: str) -> str:
        raise cherrypy.InternalRedirect(to)

    @cherrypy.expose
    def target(self, **params: str) -> str:
        prev = cherrypy.request.prev
        return (f"target {sorted(params.items())} {cherrypy.request.method} "
                f"prev={prev.path_info if prev else None} "
                f"header={cherrypy.request.config.get('response.headers.X-Section')}")

    @cherrypy.expose
    def loop(self) -> str:
        raise cherrypy.InternalRedirect("/loop")


@pytest.fixture
def app(web: Any) -> Any:
    web.mount(Root(), "", {"/target": {"response.headers.X-Section": "target"}})
    return web


@pytest.mark.parametrize(
    "code, message, expected",
    [
        (401, "Unauthorized", "Unauthorized"),
        (404, None, "Nothing matches the given URI"),
        (418, "short and stout", "short and stout"),
        (503, None, "The server is currently unable to handle the request due to a temporary "
                    "overloading or maintenance of the server."),
    ],
)
def test_http_error_status_and_message(app: Any, code: int, message: str | None,
                                       expected: str) -> None:
    url = f"/fail?code={code}" + (f"&message={message.replace(' ', '+')}" if message else "")
    app.getPage(url)
    app.assertStatus(code)
    app.assertErrorPage(code, expected, pattern="HTTPError")


def test_http_error_refuses_statuses_outside_4xx_5xx() -> None:
    with pytest.raises(ValueError, match="expected a 4xx or 5xx status, got 302"):
        cherrypy.HTTPError(302)
    with pytest.raises(cherrypy.HTTPError) as raised:  # an illegal status: a 500 saying so
        cherrypy.HTTPError("999")
    assert raised.value.code == 500
    assert "out of range" in raised.value._message


def test_not_found_names_the_path(app: Any) -> None:
    app.getPage("/notfound")
    app.assertStatus(404)
    app.assertInBody("The path '/notfound' was not found.")


def test_http_error_handle_translates_exceptions(app: Any) -> None:
    app.getPage("/handled")
    app.assertStatus(404)
    app.assertInBody("No such file or directory")


def test_unexpected_errors_are_500_with_the_traceback_where_allowed(app: Any,
                                                                    caplog: Any) -> None:
    with caplog.at_level(logging.ERROR, logger="sitebus"):
        app.getPage("/unexpected")
    app.assertStatus(500)
    app.assertErrorPage(500, pattern="RuntimeError: unexpected")
    app.assertNotInBody("<b>failure</b>")  # escaped
    assert any("RuntimeError: unexpected" in (r.exc_text or "") for r in caplog.records)
    cherrypy.config.update({"request.show_tracebacks": False})
    app.getPage("/unexpected")
    app.assertStatus(500)
    app.assertErrorPage(500, pattern=None)


def test_production_environment_hides_tracebacks(app: Any) -> None:
    cherrypy.config.update({"request.show_tracebacks": False})
    app.getPage("/fail?code=404")
    app.assertErrorPage(404, pattern=None)


@pytest.mark.parametrize(
    "status, protocol, code, note",
    [
        (None, "HTTP/1.1", 303, "This resource can be found at "),
        (None, "HTTP/1.0", 302, "This resource resides temporarily at "),
        (301, "HTTP/1.1", 301, "This resource has permanently moved to "),
        (302, "HTTP/1.1", 302, "This resource resides temporarily at "),
        (307, "HTTP/1.1", 307, "This resource has moved temporarily to "),
        (308, "HTTP/1.1", 308, "This resource has been moved to "),
    ],
)
def test_redirect_statuses(app: Any, status: int | None, protocol: str, code: int,
                           note: str) -> None:
    query = f"to=/target&status={status}" if status else "to=/target"
    app.getPage(f"/redirect?{query}", protocol=protocol)
    app.assertStatus(code)
    target = f"{app.base()}/target"
    app.assertHeader("Location", target)
    app.assertHeader("Content-Type", "text/html;charset=utf-8")
    app.assertBody(f'{note}<a href="{target}">{target}</a>.')


def test_relative_redirects_are_made_absolute(app: Any) -> None:
    app.getPage("/redirect?to=target")
    app.assertHeader("Location", f"{app.base()}/target")
    app.getPage("/redirect?to=http://example.com/x")
    app.assertHeader("Location", "http://example.com/x")


def test_redirect_to_several_urls(app: Any) -> None:
    app.getPage("/redirect_many")
    app.assertStatus(300)
    app.assertHeader("Location", f"{app.base()}/a")
    app.assertInBody("<br />\n")
    app.assertInBody(f'<a href="{app.base()}/b">')


def test_redirect_304_has_no_body(app: Any) -> None:
    app.getPage("/not_modified")
    app.assertStatus(304)
    app.assertBody(b"")
    app.assertNoHeader("Content-Type")


def test_redirect_with_xss_is_escaped(app: Any) -> None:
    app.getPage("/url_with_xss")
    app.assertStatus(303)
    app.assertNotInBody("<script>")
    app.assertNotInBody("&lt;script&gt;alert")  # the URL itself is percent-encoded
    location = app.assertHeader("Location")
    assert "<" not in location and location.endswith("/some%3Cscript%3Ealert(1)%3C/script%3Eurl")


def test_redirect_with_unicode_is_percent_encoded(app: Any) -> None:
    app.getPage("/url_with_unicode")
    app.assertStatus(303)
    app.assertHeader("Location", f"{app.base()}/%D1%82%D0%B5%D1%81%D1%82")


def test_redirect_cannot_inject_headers(app: Any) -> None:
    app.getPage("/url_with_crlf")
    app.assertStatus(303)
    app.assertNoHeader("Set-Cookie")


@pytest.mark.parametrize("url", ["/a\r\nSet-Cookie: x=1", "/a\nb", "/tab\there", "/é"])
def test_safe_url_leaves_no_control_characters(url: str) -> None:
    cleaned = safe_url(url)
    assert cleaned.isascii() and cleaned.isprintable() and " " not in cleaned


def test_redirect_status_must_be_3xx(app: Any) -> None:
    with pytest.raises(ValueError, match="expected a 3xx status"):
        HTTPRedirect("/x", 200)


def test_internal_redirect_recalculates_config(app: Any) -> None:
    app.getPage("/internal?to=/target%3Fa%3D1", method="POST", body="x=1")
    app.assertStatus(200)
    app.assertBody("target [('a', '1')] GET prev=/internal header=target")
    app.assertHeader("X-Section", "target")


def test_internal_redirect_loop_is_an_error(app: Any) -> None:
    app.getPage("/loop")
    app.assertStatus(500)
    app.assertInBody("InternalRedirector visited the same URL twice")


class ErrorPages:
    @cherrypy.expose
    def fail(self, code: str) -> str:
        raise cherrypy.HTTPError(int(code), "a <message>")

    @cherrypy.expose
    def crash(self) -> str:
        raise ValueError("crash")


def test_error_page_file_and_callable(web: Any, tmp_path: Path) -> None:
    template = tmp_path / "404.html"
    template.write_text("<html>custom %(status)s: %(message)s</html>")

    def page(status: str, message: str, traceback: str, version: str) -> str:
        return f"callable {status} {message}"

    web.mount(ErrorPages(), "", {"/": {"error_page.404": str(template),
                                       "error_page.default": page}})
    web.getPage("/fail?code=404")
    web.assertStatus(404)
    # Short error pages are padded with spaces past Internet Explorer's "friendly error"
    # sizes (512 bytes for 404, 256 for 403), as the reference does; 401 has no such size.
    web.assertBody("<html>custom 404 Not Found: a &lt;message&gt;</html>".ljust(513))
    web.assertHeader("Content-Length", "513")
    web.getPage("/fail?code=403")
    web.assertStatus(403)
    web.assertBody("callable 403 Forbidden a &lt;message&gt;".ljust(257))
    web.getPage("/fail?code=401")
    web.assertStatus(401)
    web.assertBody("callable 401 Unauthorized a &lt;message&gt;")


def test_a_padded_error_page_keeps_a_true_content_length(web: Any, tmp_path: Path) -> None:
    """An error page served by serve_file sets its own Content-Length; padding updates it."""
    from services.web.lib import static

    page = tmp_path / "404.html"
    page.write_text("<p>not here</p>")

    def serve_page(status: str, message: str, traceback: str, version: str) -> Any:
        return static.serve_file(str(page), content_type="text/html")

    web.mount(ErrorPages(), "", {"/": {"error_page.404": serve_page}})
    web.getPage("/fail?code=404")
    web.assertStatus(404)
    web.assertHeader("Content-Length", "513")
    web.assertBody("<p>not here</p>".ljust(513))


def test_a_failing_error_page_falls_back_to_the_default(web: Any, tmp_path: Path) -> None:
    web.mount(ErrorPages(), "", {"/": {"error_page.404": str(tmp_path / "missing.html")}})
    web.getPage("/fail?code=404")
    web.assertStatus(404)
    web.assertInBody("In addition, the custom error page failed:")
    web.assertInBody("missing.html'")  # escaped as text between tags: quotes stay, as the reference


def test_custom_error_response(web: Any) -> None:
    def error_response() -> None:
        cherrypy.response.status = 502
        cherrypy.response.body = b"handled by error_response"

    web.mount(ErrorPages(), "", {"/": {"request.error_response": error_response}})
    web.getPage("/crash")
    web.assertStatus(502)
    web.assertBody("handled by error_response")


def test_the_default_error_page_shape() -> None:
    page = render_error_page(404, message="gone", traceback="tb")
    text = page.decode()
    assert "<title>404 Not Found</title>" in text
    assert "<h2>404 Not Found</h2>" in text
    assert "<p>gone</p>" in text
    assert '<pre id="traceback">tb</pre>' in text
    assert '<div id="powered_by">Powered by ' in text
    assert render_error_page(500, message="<&>").decode().count("<p>&lt;&amp;&gt;</p>") == 1


def test_throw_errors_hands_the_exception_to_the_server(web: Any) -> None:
    class Thrower:
        @cherrypy.expose
        def index(self) -> str:
            raise ValueError("for the server")

    web.mount(Thrower(), "", {"/": {"request.throw_errors": True}})
    web.getPage("/")
    web.assertStatus(500)
    assert b'id="traceback"' not in web.body  # not our error page: the server's answer
    web.mount(Thrower(), "/paged")
    web.getPage("/paged/")
    web.assertStatus(500)
    web.assertInBody('id="traceback"')
