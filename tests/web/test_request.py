"""The request: headers, cookies, params from query and body, body processors (urlencoded,
multipart uploads to temporary files, JSON), size limits, remote/base/path_info."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
from typing import Any

import pytest

import services.web as cherrypy


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "xYzZY"
              ) -> tuple[list[tuple[str, str]], bytes]:
    """Return headers and body of a multipart/form-data entity: (name, filename, content)."""
    lines = []
    for name, filename, content in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        lines.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode())
        if filename is not None:
            lines.append(b"Content-Type: application/octet-stream\r\n")
        lines.append(b"\r\n" + content + b"\r\n")
    lines.append(f"--{boundary}--\r\n".encode())
    body = b"".join(lines)
    return [("Content-Type", f"multipart/form-data; boundary={boundary}")], body


class Root:
    @cherrypy.expose
    def echo(self, **params: Any) -> str:
        return repr(sorted(params.items()))

    @cherrypy.expose
    def headers(self, name: str) -> str:
        return cherrypy.request.headers.get(name, "<none>")

    @cherrypy.expose
    def info(self, **ignored: str) -> str:
        r = cherrypy.request
        return json.dumps({
            "remote_ip": r.remote.ip, "base": r.base, "script_name": r.script_name,
            "path_info": r.path_info, "query_string": r.query_string, "method": r.method,
            "protocol": list(r.protocol), "scheme": r.scheme, "is_index": r.is_index,
            "request_line": r.request_line,
        })

    @cherrypy.expose
    def cookies(self) -> str:
        cookie = cherrypy.request.cookie
        for name in cookie:
            cherrypy.response.cookie[name + "_back"] = cookie[name].value
        cherrypy.response.cookie["expired"] = ""
        cherrypy.response.cookie["expired"]["expires"] = 0
        return ",".join(f"{k}={cookie[k].value}" for k in sorted(cookie))

    @cherrypy.expose
    def upload(self, myFile: Any, note: str = "") -> str:  # noqa: N803
        data = myFile.file.read()
        named = hasattr(myFile.file, "name") and os.path.exists(str(myFile.file.name))
        return (f"{myFile.filename} {myFile.content_type} {len(data)} {data[:5]!r} "
                f"{note} {type(myFile.file).__name__} {named}")

    @cherrypy.expose
    def digest(self, **params: Any) -> str:
        out = []
        for name, value in sorted(params.items()):
            data = value.file.read() if hasattr(value, "file") else value.encode("latin-1")
            out.append(f"{name}:{type(value).__name__}:{hashlib.sha256(data).hexdigest()}")
        return " ".join(out)

    @cherrypy.expose
    def raw(self) -> bytes:
        return cherrypy.request.body.read()

    @cherrypy.expose
    @cherrypy.config(**{"request.body.maxbytes": 100})
    def tinyupload(self) -> bytes:
        return cherrypy.request.body.read()

    @cherrypy.expose
    @cherrypy.tools.json_in()
    def json_echo(self) -> str:
        return repr(cherrypy.request.json)

    @cherrypy.expose
    @cherrypy.tools.json_out()
    def json_out(self) -> Any:
        return {"key": "value", "n": [1, 2]}

    @cherrypy.expose
    @cherrypy.config(**{"request.methods_with_bodies": ("POST", "PUT", "PROPPATCH")})
    def propfind(self, **params: Any) -> str:
        return repr(sorted(params.items()))


@pytest.fixture
def app(web: Any) -> Any:
    web.mount(Root(), "/app")
    return web


def test_query_string_params(app: Any) -> None:
    app.getPage("/app/echo?a=1&b=%C3%A9&a=2")
    app.assertBody(repr([("a", ["1", "2"]), ("b", "é")]))


def test_query_string_not_in_utf8_is_a_404(app: Any) -> None:
    app.getPage("/app/echo?message=A+bient%F4t",
                headers=[("Accept-Charset", "ISO-8859-1,utf-8"),
                         ("Content-Type", "text/html;charset=ISO-8859-1")])
    app.assertStatus("404 Not Found")


def test_urlencoded_body_params_merge_with_query_params(app: Any) -> None:
    app.getPage("/app/echo?a=1", method="POST", body="a=2&b=%E2%82%AC&c=x+y")
    app.assertBody(repr([("a", ["1", "2"]), ("b", "€"), ("c", "x y")]))


def test_urlencoded_body_with_another_charset(app: Any) -> None:
    app.getPage("/app/echo", method="POST", body="b=%E9",
                headers=[("Content-Type", "application/x-www-form-urlencoded;charset=latin-1")])
    app.assertBody(repr([("b", "é")]))
    app.getPage("/app/echo", method="POST", body="b=%E9")
    app.assertStatus(400)
    app.assertInBody("could not be decoded")


def test_multipart_fields_and_uploads_to_temporary_files(app: Any) -> None:
    content = os.urandom(3000) + b"\r\n--xYzZ not a boundary\r\n" + b"end"
    headers, body = multipart([("note", None, "héllo".encode()),
                               ("myFile", "data.bin", content)])
    app.getPage("/app/upload", method="POST", headers=headers, body=body)
    app.assertStatus(200)
    text = app.body.decode()
    assert text.startswith(f"data.bin application/octet-stream {len(content)} "), text
    assert text.endswith(" héllo BufferedRandom False"), text  # a nameless temporary file


def test_small_uploads_are_files_too(app: Any) -> None:
    headers, body = multipart([("myFile", "a b;c.txt", b"tiny")])
    app.getPage("/app/upload", method="POST", headers=headers, body=body)
    app.assertBody("a b;c.txt application/octet-stream 4 b'tiny'  BufferedRandom False")


def test_multipart_part_content_is_kept_to_the_byte(app: Any) -> None:
    # Line breaks of both kinds and a bare CR, a line longer than one read (64 KiB), a field
    # past maxrambytes (spooled to a file, then given as a str), and a small one (a str): the
    # break before each boundary belongs to the boundary, every other byte to the content.
    odd = b"a\nb\r\nc\rd\n\n\r\n" + b"x" * 70000 + b"\r\n--xYzZYnot\r\n--xYzZ\n\r"
    small = b"one\ntwo\r\n"
    upload = odd + b"\n"
    headers, body = multipart([("big", None, odd), ("small", None, small),
                               ("up", "u.bin", upload)])
    app.getPage("/app/digest", method="POST", headers=headers, body=body)
    app.assertStatus(200)
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    app.assertBody(f"big:str:{sha(odd)} small:str:{sha(small)} up:Part:{sha(upload)}")


def test_multipart_without_its_closing_boundary_is_a_400(app: Any) -> None:
    headers, body = multipart([("note", None, b"text")])
    app.getPage("/app/echo", method="POST", headers=headers, body=body[:-len("--xYzZY--\r\n")])
    app.assertStatus(400)
    app.assertInBody("The multipart body ends before its closing boundary")


def test_multipart_with_a_bad_boundary_is_a_400(app: Any) -> None:
    app.getPage("/app/echo", method="POST", body="x",
                headers=[("Content-Type", "multipart/form-data; boundary=\"\"")])
    app.assertStatus(400)
    app.assertInBody("Invalid boundary")


def test_unprocessed_bodies_can_be_read_by_the_handler(app: Any) -> None:
    app.getPage("/app/raw", method="POST", body=b"\x00\x01 raw bytes",
                headers=[("Content-Type", "application/octet-stream")])
    app.assertBody(b"\x00\x01 raw bytes")


def test_request_body_maxbytes_per_handler(app: Any) -> None:
    app.getPage("/app/tinyupload", method="POST", body="x" * 100,
                headers=[("Content-Type", "text/plain")])
    app.assertStatus(200)
    app.assertBody("x" * 100)
    app.getPage("/app/tinyupload", method="POST", body="x" * 101,
                headers=[("Content-Type", "text/plain")])
    app.assertStatus(413)


def test_a_body_without_length_is_a_411(app: Any) -> None:
    with socket.create_connection(("127.0.0.1", app.PORT), timeout=10) as sock:
        sock.sendall(b"POST /app/echo HTTP/1.0\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n\r\na=1")
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 411 "), reply[:100]


def test_methods_without_bodies_leave_the_body_alone(app: Any) -> None:
    app.getPage("/app/echo", method="PROPFIND", body="a=1")
    app.assertBody("[]")
    form = [("Content-Type", "application/x-www-form-urlencoded")]
    app.getPage("/app/propfind", form, method="PROPPATCH", body="a=1")
    app.assertBody(repr([("a", "1")]))
    app.getPage("/app/propfind", method="PROPPATCH", body="a=1")  # no Content-Type: raw
    app.assertBody("[]")


def test_chunked_request_body(app: Any) -> None:
    with socket.create_connection(("127.0.0.1", app.PORT), timeout=10) as sock:
        sock.sendall(b"POST /app/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n4\r\n&b=2\r\n0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    assert reply.endswith(repr([("a", "1"), ("b", "2")]).encode())


def test_json_in(app: Any) -> None:
    app.getPage("/app/json_echo", method="POST", body=json.dumps({"a": [1, "é"]}),
                headers=[("Content-Type", "application/json")])
    app.assertBody(repr({"a": [1, "é"]}))
    app.getPage("/app/json_echo", method="POST", body="{not json",
                headers=[("Content-Type", "application/json")])
    app.assertStatus(400)
    app.assertInBody("Invalid JSON document")
    app.getPage("/app/json_echo", method="POST", body="a=1")
    app.assertStatus(415)
    app.assertInBody("Expected an entity of content type application/json, text/javascript")


def test_json_out(app: Any) -> None:
    app.getPage("/app/json_out")
    app.assertHeader("Content-Type", "application/json")
    assert json.loads(app.body) == {"key": "value", "n": [1, 2]}


def test_headers_are_case_insensitive(app: Any) -> None:
    app.getPage("/app/headers?name=x-my-header", headers=[("X-MY-Header", "v1")])
    app.assertBody("v1")
    app.getPage("/app/headers?name=content-type", method="POST", body="",
                headers=[("Content-Type", "application/x-www-form-urlencoded")])
    app.assertBody("application/x-www-form-urlencoded")


def test_request_attributes(app: Any) -> None:
    app.getPage("/app/info?x=%C3%A9")
    info = json.loads(app.body)
    assert info == {
        "remote_ip": "127.0.0.1",
        "base": f"http://127.0.0.1:{app.PORT}",
        "script_name": "/app",
        "path_info": "/info",
        "query_string": "x=%C3%A9",
        "method": "GET",
        "protocol": [1, 1],
        "scheme": "http",
        "is_index": False,
        "request_line": "GET /app/info?x=%C3%A9 HTTP/1.1",
    }


def test_non_ascii_paths(web: Any) -> None:
    class Root:
        @cherrypy.expose
        def default(self, *args: str) -> str:
            return "/".join(args) + " " + cherrypy.request.path_info

    web.mount(Root(), "/café")
    web.getPage("/caf%C3%A9/men%C3%BC/%C3%A9t%C3%A9")
    web.assertBody("menü/été /menü/été")


def test_http11_without_host_is_a_400(app: Any) -> None:
    with socket.create_connection(("127.0.0.1", app.PORT), timeout=10) as sock:
        sock.sendall(b"GET /app/info HTTP/1.1\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b"An HTTP/1.1 request must carry a Host header." in reply


def test_http10_without_host_uses_the_server_name(app: Any) -> None:
    app.getPage("/app/info", protocol="HTTP/1.0", headers=[("Host", "")])
    info = json.loads(app.body)
    assert info["protocol"] == [1, 0]


def test_cookies_in_and_out(app: Any) -> None:
    app.getPage("/app/cookies", headers=[("Cookie", "First=Dinsdale; Last=Piranha;")])
    app.assertBody("First=Dinsdale,Last=Piranha")
    set_cookies = sorted(v for k, v in app.headers if k.lower() == "set-cookie")
    assert set_cookies[0].startswith("First_back=Dinsdale")
    assert set_cookies[1].startswith("Last_back=Piranha")
    assert set_cookies[2].startswith('expired=""; expires=')
    app.getPage("/app/echo")
    app.assertNoHeader("Set-Cookie")  # request cookies are not copied to the response


def test_sized_reader_reads_lines_within_the_declared_length() -> None:
    from services.web._cpreqbody import SizedReader

    stream = b"first\nsecond line\n\nlast" + b"not part of the body"
    reader = SizedReader(io.BytesIO(stream), length=23, maxbytes=None, bufsize=4)
    assert reader.readline() == b"first\n"
    assert reader.readline(3) == b"sec"
    assert reader.readline() == b"ond line\n"
    assert reader.bytes_read == 18
    assert reader.readlines() == [b"\n", b"last"]
    assert reader.read() == b"" and reader.done
    assert reader.bytes_read == 23

    reader = SizedReader(io.BytesIO(b"ab\ncd\nef"), length=None, maxbytes=None, bufsize=8)
    assert reader.readline(1) == b"a"  # the rest of the chunk waits, in order, for the next
    assert reader.readline() == b"b\n"
    assert reader.read(3) == b"cd\n"
    with io.BytesIO() as out:
        assert reader.read(fp_out=out) is None
        assert out.getvalue() == b"ef"
    assert reader.done


def test_sized_reader_stops_past_maxbytes_with_a_413() -> None:
    from services.web._cpreqbody import SizedReader

    reader = SizedReader(io.BytesIO(b"x" * 50), length=None, maxbytes=20, bufsize=8)
    with pytest.raises(cherrypy.HTTPError) as caught:
        reader.read()
    assert caught.value.status == 413


def test_sized_reader_keeps_read_ahead_bytes_in_stream_order() -> None:
    from services.web._cpreqbody import SizedReader

    reader = SizedReader(io.BytesIO(b"a\nb\ncdefgh"), length=None, maxbytes=None, bufsize=8)
    assert reader.readline() == b"a\n"  # reads 8 bytes ahead
    assert reader.readline(3) == b"b\n"
    assert reader.read() == b"cdefgh"


def test_the_request_names_its_stage_at_each_hook_point(web: Any) -> None:
    seen: list[str] = []

    def note() -> None:
        seen.append(cherrypy.request.stage)

    class Staged:
        @cherrypy.expose
        def index(self, fail: str = "") -> str:
            note()
            if fail:
                raise cherrypy.HTTPError(409)
            return "ok"

    points = ["on_start_resource", "before_request_body", "before_handler", "before_finalize",
              "on_end_resource"]
    web.mount(Staged(), "", {"/": {f"hooks.{point}": note for point in points}})
    web.getPage("/")
    web.assertBody("ok")
    assert seen == ["on_start_resource", "before_request_body", "before_handler", "handler",
                    "before_finalize", "on_end_resource"]
    seen.clear()
    web.getPage("/?fail=1")
    web.assertStatus(409)
    assert seen == ["on_start_resource", "before_request_body", "before_handler", "handler",
                    "before_finalize (HTTPError)", "on_end_resource"]
