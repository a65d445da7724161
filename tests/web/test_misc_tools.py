"""The smaller built-in tools: proxy (and forged X-Forwarded-* headers), autovary, etags and
validate_since, referer, response_headers, flatten, trailing_slash, ignore_headers, allow,
json_in/json_out with hostile bodies, and the default favicon."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

import services.web as cherrypy
from services.web import _cptree
from services.web.lib import cptools

# -- proxy ----------------------------------------------------------------------------------


class ProxyRoot:
    @cherrypy.expose
    def base(self) -> str:
        return cherrypy.request.base

    @cherrypy.expose
    def remoteip(self) -> str:
        return cherrypy.request.remote.ip

    @cherrypy.expose
    def pageurl(self) -> str:
        return cherrypy.url()

    @cherrypy.expose
    def moved(self) -> str:
        raise cherrypy.HTTPRedirect("elsewhere")


def proxied(web: Any, **settings: Any) -> Any:
    conf = {"tools.proxy.on": True, **{f"tools.proxy.{k}": v for k, v in settings.items()}}
    web.mount(ProxyRoot(), "", {"/": conf})
    return web


@pytest.mark.parametrize(
    "headers, base",
    [
        ([], "http://127.0.0.1:{port}"),
        ([("X-Forwarded-Host", "www.example.test")], "http://www.example.test"),
        ([("X-Forwarded-Host", "a.example.test, b.example.test")], "http://a.example.test"),
        ([("X-Forwarded-Host", "www.example.test:8443"), ("X-Forwarded-Proto", "https")],
         "https://www.example.test:8443"),
        ([("X-Forwarded-Host", "[::1]:8080")], "http://[::1]:8080"),
        ([("Host", "www.example.test:8080")], "http://www.example.test:8080"),
        # Forged or broken values are ignored.
        ([("X-Forwarded-Proto", "javascript")], "http://127.0.0.1:{port}"),
        ([("X-Forwarded-Host", "evil.test/path")], "http://127.0.0.1:{port}"),
        ([("X-Forwarded-Host", 'evil.test" onload="x')], "http://127.0.0.1:{port}"),
        ([("X-Forwarded-Host", "user@evil.test")], "http://127.0.0.1:{port}"),
        ([("X-Forwarded-Host", "")], "http://127.0.0.1:{port}"),
    ],
)
def test_proxy_base(web: Any, headers: list[tuple[str, str]], base: str) -> None:
    proxied(web)
    web.getPage("/base", headers=headers)
    web.assertBody(base.format(port=web.PORT))


@pytest.mark.parametrize(
    "forwarded_for, proxies, ip",
    [
        ("1.2.3.4", 1, "1.2.3.4"),
        ("6.6.6.6, 1.2.3.4", 1, "1.2.3.4"),  # the first entry is the client's own claim
        ("6.6.6.6, 1.2.3.4", 2, "6.6.6.6"),
        ("6.6.6.6, 1.2.3.4", 3, "127.0.0.1"),
        ("2001:db8::1", 1, "2001:db8::1"),
        ("not-an-ip", 1, "127.0.0.1"),
        ("1.2.3.4:5678", 1, "127.0.0.1"),
        ("", 1, "127.0.0.1"),
    ],
)
def test_proxy_remote_address(web: Any, forwarded_for: str, proxies: int, ip: str) -> None:
    proxied(web, proxies=proxies)
    web.getPage("/remoteip", headers=[("X-Forwarded-For", forwarded_for)])
    web.assertBody(ip)


def test_proxy_settings(web: Any) -> None:
    proxied(web, base="http://www.mydomain.test/shop", local="", remote="X-Real-Ip",
            scheme="X-Forwarded-Ssl")
    web.getPage("/pageurl", headers=[("X-Forwarded-Host", "ignored.test"),
                                     ("X-Real-Ip", "10.1.2.3")])
    web.assertBody("http://www.mydomain.test/shop/pageurl")
    web.getPage("/remoteip", headers=[("X-Real-Ip", "10.1.2.3")])
    web.assertBody("10.1.2.3")
    proxied(web, scheme="X-Forwarded-Ssl")
    web.getPage("/base", headers=[("X-Forwarded-Ssl", "on"), ("X-Forwarded-Host", "s.test")])
    web.assertBody("https://s.test")


def test_proxy_redirects_and_urls_carry_one_port(web: Any) -> None:
    proxied(web)
    web.getPage("/moved", headers=[("X-Forwarded-Host", "www.example.test:8080")])
    web.assertStatus(303)
    web.assertHeader("Location", "http://www.example.test:8080/elsewhere")
    web.getPage("/pageurl", headers=[("X-Forwarded-Host", "www.example.test:8080")])
    web.assertBody("http://www.example.test:8080/pageurl")


def test_forged_forwarded_headers_mean_nothing_with_the_proxy_off(web: Any) -> None:
    web.mount(ProxyRoot())
    forged = [("X-Forwarded-Host", "evil.test"), ("X-Forwarded-For", "6.6.6.6"),
              ("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")]
    web.getPage("/base", headers=forged)
    web.assertBody(f"http://127.0.0.1:{web.PORT}")
    web.getPage("/remoteip", headers=forged)
    web.assertBody("127.0.0.1")
    web.getPage("/moved", headers=forged)
    web.assertHeader("Location", f"http://127.0.0.1:{web.PORT}/elsewhere")


# -- autovary -------------------------------------------------------------------------------


class AutoVary:
    @cherrypy.expose
    def index(self) -> str:
        headers = cherrypy.request.headers
        headers.get("Accept-Encoding")
        headers["Host"]
        "If-Modified-Since" in headers  # noqa: B015
        headers.elements("Range")
        cherrypy.tools.accept.callable(["text/html", "text/plain"])
        return "Hello, world!"


def test_autovary(web: Any) -> None:
    web.mount(AutoVary(), "", {"/": {"tools.autovary.on": True}})
    web.getPage("/")
    web.assertHeader("Vary", "Accept, Accept-Charset, Accept-Encoding, Host, "
                             "If-Modified-Since, Range")
    web.mount(AutoVary(), "", {"/": {"tools.autovary.on": True,
                                     "tools.autovary.ignore": ["Host", "Range"]}})
    web.getPage("/")
    web.assertHeader("Vary", "Accept, Accept-Charset, Accept-Encoding, If-Modified-Since")


# -- etags and validate_since ---------------------------------------------------------------


class ETagRoot:
    @cherrypy.expose
    def resource(self) -> str:
        return "Oh wah ta goo Siam."

    @cherrypy.expose
    def fail(self, code: str) -> None:
        if 300 <= int(code) <= 399:
            raise cherrypy.HTTPRedirect([], int(code))
        raise cherrypy.HTTPError(int(code))

    @cherrypy.expose
    def unicoded(self) -> str:
        return "I am a \u1ee4nicode string."

    @cherrypy.expose
    def dated(self) -> str:
        cherrypy.response.headers["Last-Modified"] = "Wed, 01 Jan 2025 00:00:00 GMT"
        cptools.validate_since()
        return "dated"


@pytest.fixture
def etags(web: Any) -> Any:
    web.mount(ETagRoot(), "", {"/": {"tools.etags.on": True, "tools.etags.autotags": True}})
    return web


def test_etags(etags: Any) -> None:
    etags.getPage("/resource")
    etags.assertStatus(200)
    etags.assertHeader("Content-Type", "text/html;charset=utf-8")
    etags.assertBody("Oh wah ta goo Siam.")
    etag = etags.assertHeader("ETag")
    for method, header, value, status in [
        ("GET", "If-Match", etag, 200),
        ("GET", "If-Match", "*", 200),
        ("POST", "If-Match", "*", 200),
        ("GET", "If-Match", "a bogus tag", 412),
        ("GET", "If-Match", "W/" + etag, 412),  # If-Match compares strongly
        ("GET", "If-Match", f'"x,y", {etag}', 200),  # a quoted tag may hold a comma
        ("GET", "If-None-Match", etag, 304),
        ("GET", "If-None-Match", "W/" + etag, 304),  # If-None-Match compares weakly
        ("HEAD", "If-None-Match", etag, 304),
        ("POST", "If-None-Match", etag, 412),
        ("GET", "If-None-Match", "*", 304),
        ("GET", "If-None-Match", "a bogus tag", 200),
        ("GET", "If-None-Match", '"x, y", "z"', 200),
    ]:
        etags.getPage("/resource", headers=[(header, value)], method=method,
                      body="" if method == "POST" else None)
        etags.assertStatus(status, f"{method} {header}: {value}")


def test_etags_and_errors(etags: Any) -> None:
    etags.getPage("/resource")
    etag = etags.assertHeader("ETag")
    etags.getPage("/fail/412", headers=[("If-Match", etag)])
    etags.assertStatus(412)
    etags.getPage("/fail/304", headers=[("If-Match", etag)])
    etags.assertStatus(304)
    etags.getPage("/fail/412", headers=[("If-None-Match", "*")])
    etags.assertStatus(412)
    etags.getPage("/fail/304", headers=[("If-None-Match", "*")])
    etags.assertStatus(304)


def test_etags_of_a_unicode_body(etags: Any) -> None:
    etags.getPage("/unicoded")
    etags.assertStatus(200)
    etag = etags.assertHeader("ETag")
    etags.getPage("/unicoded", headers=[("If-Match", etag)])
    etags.assertStatus(200)
    etags.assertHeader("ETag", etag)


@pytest.mark.parametrize(
    "method, headers, status",
    [
        ("GET", [], 200),
        ("GET", [("If-Modified-Since", "Wed, 01 Jan 2025 00:00:00 GMT")], 304),
        ("GET", [("If-Modified-Since", "Thu, 02 Jan 2025 00:00:00 GMT")], 304),
        ("GET", [("If-Modified-Since", "Tue, 31 Dec 2024 23:59:59 GMT")], 200),
        ("GET", [("If-Modified-Since", "garbage")], 200),
        ("GET", [("If-Modified-Since", "Wed, 01 Jan 2025 00:00:00 GMT"),
                 ("If-None-Match", '"other"')], 200),  # If-None-Match wins
        ("POST", [("If-Modified-Since", "Wed, 01 Jan 2025 00:00:00 GMT")], 412),
        ("GET", [("If-Unmodified-Since", "Tue, 31 Dec 2024 00:00:00 GMT")], 412),
        ("GET", [("If-Unmodified-Since", "Wed, 01 Jan 2025 00:00:00 GMT")], 200),
        ("GET", [("If-Unmodified-Since", "garbage")], 412),
    ],
)
def test_validate_since(web: Any, method: str, headers: list[tuple[str, str]],
                        status: int) -> None:
    web.mount(ETagRoot())
    web.getPage("/dated", headers=headers, method=method,
                body="" if method == "POST" else None)
    web.assertStatus(status)


def test_etag_lists_parse_as_rfc_7232_says() -> None:
    assert cptools._etags('"a", W/"b,c" , "d"') == ['"a"', 'W/"b,c"', '"d"']
    assert cptools._etags("*") == ["*"]
    assert cptools._strong_match('"a"', ['"a"']) and not cptools._strong_match('W/"a"', ['"a"'])
    assert cptools._weak_match('W/"a"', ['"a"']) and cptools._weak_match('"a"', ['W/"a"'])


# -- referer, response_headers, flatten, trailing_slash, ignore_headers ---------------------


class Misc:
    @cherrypy.expose
    def accept(self) -> str:
        return "Accepted!"

    @cherrypy.expose
    def reject(self) -> str:
        return "Rejected!"

    @cherrypy.expose
    @cherrypy.tools.response_headers(headers=[("Content-Language", "en-GB")])
    def decorated(self) -> str:
        return "Hello, world"

    @cherrypy.expose
    def split(self) -> str:
        return "never sent"

    split._cp_config = {  # type: ignore[attr-defined]
        "tools.response_headers.on": True,
        "tools.response_headers.headers": [("X-Injected", "a\r\nSet-Cookie: evil=1")]}

    @cherrypy.expose
    @cherrypy.tools.flatten()
    def nested(self) -> Any:
        def inner() -> Any:
            yield b"b"
            yield (c for c in (b"c", b"d"))

        def outer() -> Any:
            yield b"a"
            yield inner()
            yield b"e"

        return outer()

    @cherrypy.expose
    def ranged(self) -> str:
        return str("Range" in cherrypy.request.headers)

    class sub:  # noqa: N801
        @cherrypy.expose
        def index(self) -> str:
            return "sub index"

        @cherrypy.expose
        def page(self) -> str:
            return "sub page"

    sub = sub()  # type: ignore[assignment, misc]


@pytest.fixture
def misc(web: Any) -> Any:
    web.mount(Misc(), "", {
        "/accept": {"tools.referer.on": True,
                    "tools.referer.pattern": r"http://[^/]*example\.com"},
        "/reject": {"tools.referer.on": True,
                    "tools.referer.pattern": r"http://[^/]*example\.com",
                    "tools.referer.accept": False, "tools.referer.accept_missing": True},
        "/ranged": {"tools.ignore_headers.on": True},
    })
    return web


def test_referer(misc: Any) -> None:
    misc.getPage("/accept")
    misc.assertErrorPage(403, "Forbidden Referer header.")
    misc.getPage("/accept", headers=[("Referer", "http://www.example.com/")])
    misc.assertBody("Accepted!")
    misc.getPage("/accept", headers=[("Referer", "http://www.example.org/")])
    misc.assertStatus(403)
    misc.getPage("/reject")
    misc.assertBody("Rejected!")
    misc.getPage("/reject", headers=[("Referer", "http://www.example.com/")])
    misc.assertErrorPage(403, "Forbidden Referer header.")


def test_response_headers(misc: Any) -> None:
    misc.getPage("/decorated")
    misc.assertHeader("Content-Language", "en-GB")
    misc.getPage("/split")
    misc.assertStatus(500)  # a line break in a header value never splits the header
    misc.assertNoHeader("Set-Cookie")


def test_flatten_and_ignore_headers(misc: Any) -> None:
    misc.getPage("/nested")
    misc.assertBody("abcde")
    misc.getPage("/ranged", headers=[("Range", "bytes=0-1")])
    misc.assertBody("False")


def test_trailing_slash(web: Any) -> None:
    web.mount(Misc())
    web.getPage("/sub")
    web.assertStatus(301)
    web.assertHeader("Location", f"{web.base()}/sub/")
    web.getPage("/sub/page/")
    web.assertBody("sub page")  # extra slashes are allowed by default
    web.mount(Misc(), "", {"/": {"tools.trailing_slash.extra": True,
                                 "tools.trailing_slash.status": 308}})
    web.getPage("/sub/page/?x=1")
    web.assertStatus(308)
    web.assertHeader("Location", f"{web.base()}/sub/page?x=1")
    web.mount(Misc(), "", {"/": {"tools.trailing_slash.missing": False}})
    web.getPage("/sub")
    web.assertBody("sub index")


# -- json_in, json_out ----------------------------------------------------------------------


class JSON:
    @cherrypy.expose
    @cherrypy.tools.json_in()
    def echo(self) -> bytes:
        return json.dumps(cherrypy.request.json).encode()

    @cherrypy.expose
    @cherrypy.tools.json_in(force=False)
    def lenient(self, **params: Any) -> str:
        return repr(getattr(cherrypy.request, "json", None)) + repr(sorted(params))

    @cherrypy.expose
    @cherrypy.tools.json_out()
    def out(self) -> Any:
        return {"key": "v\u00e4lue", "list": [1, 2]}

    @cherrypy.expose
    @cherrypy.tools.json_out()
    def unserializable(self) -> Any:
        return {"key": object()}

    @cherrypy.expose
    @cherrypy.tools.json_out(content_type=None, handler=lambda *a, **k: b"custom")
    def custom(self) -> str:
        return "unused"

    @cherrypy.expose
    @cherrypy.tools.json_in()
    @cherrypy.tools.json_out()
    def roundtrip(self) -> Any:
        return {"got": cherrypy.request.json}


@pytest.fixture
def jsonapp(web: Any) -> Any:
    web.mount(JSON(), "", {"/echo": {"request.body.maxbytes": 1000}})
    return web


def post(web: Any, path: str, body: bytes, content_type: str = "application/json") -> None:
    web.getPage(path, method="POST", body=body, headers=[("Content-Type", content_type)])


def test_json_in(jsonapp: Any) -> None:
    post(jsonapp, "/echo", b'{"a": [1, 2, {"b": null}]}')
    jsonapp.assertBody('{"a": [1, 2, {"b": null}]}')
    post(jsonapp, "/echo", '"gr\u00fc\u00df"'.encode())
    jsonapp.assertBody('"gr\\u00fc\\u00df"')
    post(jsonapp, "/lenient", b"a=1", "application/x-www-form-urlencoded")
    jsonapp.assertBody("None['a']")
    post(jsonapp, "/roundtrip", b"[1]")
    jsonapp.assertHeader("Content-Type", "application/json")
    jsonapp.assertBody('{"got": [1]}')


@pytest.mark.parametrize(
    "body, content_type, status, message",
    [
        (b'{"a": ', "application/json", 400, "Invalid JSON document"),
        (b"\xff\xfe{}", "application/json", 400, "Invalid JSON document"),
        (b"[" * 100000 + b"]" * 100000, "application/json", 413, None),  # over maxbytes
        (b"NaN-ish garbage", "text/javascript", 400, "Invalid JSON document"),
        (b"a=1", "application/x-www-form-urlencoded", 415,
         "Expected an entity of content type application/json, text/javascript"),
        (b"{}", "text/plain", 415, None),
        (b"x" * 2000, "application/json", 413, None),
    ],
)
def test_json_in_refuses_bad_bodies(jsonapp: Any, body: bytes, content_type: str,
                                    status: int, message: str | None) -> None:
    post(jsonapp, "/echo", body, content_type)
    jsonapp.assertStatus(status)
    if message:
        jsonapp.assertInBody(message)


def test_json_in_refuses_a_document_nested_too_deep(jsonapp: Any) -> None:
    post(jsonapp, "/roundtrip", b"[" * 200000 + b"]" * 200000)
    jsonapp.assertStatus(400)
    jsonapp.assertInBody("Invalid JSON document")


def test_json_in_needs_a_content_length(jsonapp: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", jsonapp.PORT, timeout=20)
    try:
        conn.request("POST", "/echo", body=iter([b"{}"]),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 411
        response.read()
    finally:
        conn.close()


def test_json_out(jsonapp: Any) -> None:
    jsonapp.getPage("/out")
    jsonapp.assertHeader("Content-Type", "application/json")
    assert json.loads(jsonapp.body) == {"key": "v\u00e4lue", "list": [1, 2]}
    jsonapp.getPage("/unserializable")
    jsonapp.assertStatus(500)
    jsonapp.assertInBody("is not JSON serializable")
    jsonapp.getPage("/custom")
    jsonapp.assertHeader("Content-Type", "text/html;charset=utf-8")
    jsonapp.assertBody("custom")


# -- the default favicon --------------------------------------------------------------------


class Hello:
    @cherrypy.expose
    def index(self) -> str:
        return "Hello World!"


def test_default_favicon(web: Any) -> None:
    web.mount(Hello())
    web.getPage("/favicon.ico")
    web.assertStatus(200)
    web.assertHeader("Content-Type", "image/x-icon")
    with open(_cptree.FAVICON, "rb") as handle:
        assert web.body == handle.read()
    assert web.body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    lastmod = web.assertHeader("Last-Modified")
    web.getPage("/favicon.ico", headers=[("If-Modified-Since", lastmod)])
    web.assertStatus(304)


def test_no_default_favicon_below_the_root_or_over_an_own_one(web: Any) -> None:
    class Own(Hello):
        @cherrypy.expose
        def favicon_ico(self) -> bytes:
            cherrypy.response.headers["Content-Type"] = "image/png"
            return b"mine"

    web.mount(Hello(), "/app")
    web.getPage("/app/favicon.ico")
    web.assertStatus(404)
    web.mount(Own())
    web.getPage("/favicon.ico")
    web.assertBody("mine")


# -- settings of built-in tools are checked where config enters -----------------------------


def test_a_misspelled_tool_setting_is_a_config_error(site_state: Any) -> None:
    from sitebus.errors import ConfigError

    with pytest.raises(ConfigError, match=r"tools\.gzip\.mime_type: unknown setting \(did you "
                                          r"mean 'mime_types'\?\); expected one of "
                                          r"compress_level, debug, mime_types, on, priority"):
        cherrypy.tree.mount(Hello(), "/typo", {"/": {"tools.gzip.mime_type": ["text/css"]}})
    with pytest.raises(ConfigError, match=r"tools\.proxy\.remote_header: unknown setting"):
        cherrypy.config.update({"tools.proxy.remote_header": "X-Real-Ip"})
    # Tools taking any setting (caching passes them to its cache) and unknown tools pass.
    cherrypy.tree.mount(Hello(), "/ok", {"/": {"tools.caching.delay": 5,
                                               "tools.notyet.whatever": 1}})


@pytest.mark.parametrize("methods, allow_header", [
    (None, "GET, HEAD"), ("post", "POST"), (["get", "put"], "GET, PUT, HEAD"),
    (("GET", "HEAD"), "GET, HEAD"),
])
def test_allow_sets_the_header_and_refuses_other_methods(web: Any, methods: Any,
                                                         allow_header: str) -> None:
    class Guarded:
        @cherrypy.expose
        def index(self) -> str:
            return "in"

    web.mount(Guarded(), "", {"/": {"tools.allow.on": True, "tools.allow.methods": methods}})
    web.getPage("/", method="HEAD" if "HEAD" in allow_header else "POST",
                body=None if "HEAD" in allow_header else "")
    web.assertStatus(200)
    web.assertHeader("Allow", allow_header)
    web.getPage("/", method="DELETE")
    web.assertStatus(405)
    web.assertHeader("Allow", allow_header)
