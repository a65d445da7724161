"""Static content: staticdir, staticfile, serve_file, serve_fileobj, serve_download; ranges,
preconditions, MIME types; and hostile paths that must never leave the directory."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

import services.web as cherrypy
from services.web.lib import static
from services.web.lib.static import precondition_status, range_applies
from tests.processes import wait_until

DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A static tree beside a secret that must stay unreachable."""
    (tmp_path / "secret.txt").write_text("top secret")
    root = tmp_path / "site"
    static_dir = root / "static"
    (static_dir / "css").mkdir(parents=True)
    (static_dir / "css" / "style.css").write_text("body { color: blue; }")
    (static_dir / "data.bin").write_bytes(DATA)
    (static_dir / "page.html").write_text("<p>hi</p>")
    (static_dir / "report.unknownext").write_text("<script>alert(1)</script>")
    (static_dir / "docs").mkdir()
    (static_dir / "docs" / "index.html").write_text("docs index")
    (static_dir / "empty").mkdir()
    (static_dir / "ünï.txt").write_text("unicode name")
    (root / "static2").mkdir()
    (root / "static2" / "other.txt").write_text("sibling directory")
    os.symlink(tmp_path / "secret.txt", static_dir / "escape.txt")
    os.symlink(static_dir / "page.html", static_dir / "alias.html")
    return tmp_path


class Root:
    @cherrypy.expose
    def index(self) -> str:
        return "the app"

    @cherrypy.expose
    def fallback(self, *args: Any) -> str:
        return "handler ran"


def mount(web: Any, tree: Path, **extra: Any) -> None:
    conf = {
        "/": {"tools.staticdir.root": str(tree / "site")},
        "/static": {"tools.staticdir.on": True, "tools.staticdir.dir": "static",
                    "tools.staticdir.index": "index.html", **extra},
        "/favicon.ico": {"tools.staticfile.on": True,
                         "tools.staticfile.filename": str(tree / "site/static/data.bin")},
    }
    web.mount(Root(), "", conf)


def test_staticdir_serves_files_with_their_types_and_validators(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/css/style.css")
    web.assertStatus(200)
    web.assertBody("body { color: blue; }")
    web.assertHeader("Content-Type", "text/css")
    web.assertHeader("Content-Length", "21")
    web.assertHeader("Accept-Ranges", "bytes")
    assert re.fullmatch(r'"[0-9a-f]+-15"', web.assertHeader("ETag"))
    web.assertHeader("Last-Modified")
    web.getPage("/static/page.html")
    web.assertHeader("Content-Type", "text/html")
    web.getPage("/static/data.bin")
    assert web.body == DATA
    web.getPage("/static/%C3%BCn%C3%AF.txt")
    web.assertBody("unicode name")
    web.getPage("/")
    web.assertBody("the app")


def test_unknown_extensions_are_never_served_as_html(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/report.unknownext")
    web.assertHeader("Content-Type", "application/octet-stream")


def test_content_types_and_mimetypes_map_override(web: Any, tree: Path,
                                                  monkeypatch: Any) -> None:
    mount(web, tree, **{"tools.staticdir.content_types": {"bin": "application/x-custom"}})
    web.getPage("/static/data.bin")
    web.assertHeader("Content-Type", "application/x-custom")
    monkeypatch.setitem(static.mimetypes.types_map, ".unknownext", "text/csv")
    web.getPage("/static/report.unknownext")
    web.assertHeader("Content-Type", "text/csv")


def test_index_files_and_directory_redirects(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/docs/")
    web.assertBody("docs index")
    web.getPage("/static/docs")
    web.assertStatus(301)
    web.assertHeader("Location", f"{web.base()}/static/docs/")
    web.getPage("/static/empty/")
    web.assertStatus(404)  # a directory without index is never listed


def test_without_index_a_directory_is_404(web: Any, tree: Path) -> None:
    web.mount(Root(), "", {"/static": {"tools.staticdir.on": True,
                                        "tools.staticdir.dir": str(tree / "site/static")}})
    web.getPage("/static/docs/")
    web.assertStatus(404)
    web.getPage("/static/")
    web.assertStatus(404)


def test_match_and_missing_files_fall_through_to_handlers(web: Any, tree: Path) -> None:
    web.mount(Root(), "", {"/fallback": {"tools.staticdir.on": True,
                                          "tools.staticdir.dir": str(tree / "site/static"),
                                          "tools.staticdir.match": r"\.css$"}})
    web.getPage("/fallback/css/style.css")
    web.assertBody("body { color: blue; }")
    web.getPage("/fallback/page.html")  # not matched: the handler answers
    web.assertBody("handler ran")
    web.getPage("/fallback/nothing.css")  # matched but missing: the handler answers
    web.assertBody("handler ran")


def test_only_get_and_head_are_served(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/page.html", method="HEAD")
    web.assertStatus(200)
    web.assertHeader("Content-Length", "9")
    assert web.body == b""
    web.getPage("/static/page.html", method="POST", body="x=1")
    web.assertStatus(404)  # no handler below /static


def test_staticfile_and_relative_root(web: Any, tree: Path) -> None:
    web.mount(Root(), "", {
        "/style.css": {"tools.staticfile.on": True,
                       "tools.staticfile.root": str(tree / "site"),
                       "tools.staticfile.filename": "static/css/style.css"},
        "/broken.css": {"tools.staticfile.on": True,
                        "tools.staticfile.filename": "relative/style.css"},
    })
    web.getPage("/style.css")
    web.assertBody("body { color: blue; }")
    web.assertHeader("Content-Type", "text/css")
    web.getPage("/broken.css")
    web.assertStatus(500)
    web.assertInBody("tools.staticfile.filename: expected an absolute path")


def test_relative_dir_without_root_is_a_clear_error(web: Any) -> None:
    web.mount(Root(), "", {"/static": {"tools.staticdir.on": True,
                                        "tools.staticdir.dir": "static"}})
    web.getPage("/static/x.css")
    web.assertStatus(500)
    web.assertInBody("tools.staticdir.dir: expected an absolute path")


# -- hostile paths ----------------------------------------------------------------------------

TRAVERSALS = [
    "/static/../secret.txt",
    "/static/../../secret.txt",
    "/static/css/../../../secret.txt",
    "/static/..%2F..%2Fsecret.txt",
    "/static/..%2f..%2fsecret.txt",
    "/static/css%2F..%2F..%2F..%2Fsecret.txt",
    "/static/%2e%2e/%2e%2e/secret.txt",
    "/static/%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/static/....//....//secret.txt",
    "/static/..\\..\\secret.txt",
    "/static/%252e%252e%252fsecret.txt",
    "/static//etc/passwd",
    "/static/%2Fetc%2Fpasswd",
    "/static/../static2/other.txt",
    "/static/escape.txt",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_attempts_never_leave_the_directory(web: Any, tree: Path, path: str) -> None:
    mount(web, tree)
    web.getPage(path)
    assert b"top secret" not in web.body
    assert b"sibling directory" not in web.body
    assert b"root:" not in web.body
    assert web.status[:3] in ("400", "403", "404"), (path, web.status)


@pytest.mark.parametrize("path", ["/static/page.html%00.css", "/static/%00",
                                  "/static/css/style.css%00"])
def test_nul_bytes_are_404_not_500(web: Any, tree: Path, path: str) -> None:
    mount(web, tree)
    web.getPage(path)
    web.assertStatus(404)


def test_symlinks_inside_the_tree_are_followed_outside_only_if_configured(
        web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/alias.html")
    web.assertBody("<p>hi</p>")
    web.getPage("/static/escape.txt")
    web.assertStatus(403)
    mount(web, tree, **{"tools.staticdir.follow_symlinks": True})
    web.getPage("/static/escape.txt")
    web.assertBody("top secret")


def test_a_sibling_with_a_common_prefix_is_outside(web: Any, tree: Path) -> None:
    # /site/static2 starts with /site/static as a string, but is not inside it.
    web.mount(Root(), "", {"/s": {"tools.staticdir.on": True,
                                  "tools.staticdir.dir": str(tree / "site/static")}})
    web.getPage("/s/../static2/other.txt")
    assert b"sibling" not in web.body


def test_traversal_does_not_reach_a_handler_of_another_path(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/../favicon.ico")
    web.assertStatus(403)


# -- ranges -----------------------------------------------------------------------------------


def test_single_range(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/data.bin", headers=[("Range", "bytes=3-6")])
    web.assertStatus(206)
    web.assertHeader("Content-Range", f"bytes 3-6/{len(DATA)}")
    web.assertHeader("Content-Length", "4")
    assert web.body == DATA[3:7]
    web.getPage("/static/data.bin", headers=[("Range", "bytes=-5")])
    assert web.body == DATA[-5:]
    web.getPage("/static/data.bin", headers=[("Range", "bytes=10000-")])
    assert web.body == DATA[10000:]


def test_multiple_ranges_are_multipart_byteranges(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/data.bin", headers=[("Range", "bytes=0-1,100-104")])
    web.assertStatus(206)
    content_type = web.assertHeader("Content-Type")
    boundary = content_type.split("boundary=")[1]
    assert content_type.startswith("multipart/byteranges")
    assert int(web.assertHeader("Content-Length")) == len(web.body)
    parts = web.body.split(f"--{boundary}".encode())
    assert parts[-1] == b"--\r\n"
    first, second = parts[1], parts[2]
    assert b"Content-range: bytes 0-1/10240" in first
    assert first.endswith(b"\r\n\r\n" + DATA[0:2] + b"\r\n")
    assert second.endswith(b"\r\n\r\n" + DATA[100:105] + b"\r\n")


def test_unsatisfiable_and_invalid_ranges(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/data.bin", headers=[("Range", "bytes=99999-")])
    web.assertStatus(416)
    web.assertHeader("Content-Range", f"bytes */{len(DATA)}")
    for value in ("bytes=5-2", "lines=1-2", "bytes=a-b", "bytes=", "garbage"):
        web.getPage("/static/data.bin", headers=[("Range", value)])
        web.assertStatus(200)
        assert web.body == DATA


@pytest.mark.parametrize(("ranges", "length", "expected"), [
    ([(0, 2), (100, 105)], 1000, [(0, 2), (100, 105)]),
    ([(100, 105), (0, 2)], 1000, [(100, 105), (0, 2)]),  # untouched ranges keep their order
    ([(0, 10), (5, 20)], 1000, [(0, 20)]),  # overlapping
    ([(10, 20), (0, 10)], 1000, [(0, 20)]),  # adjacent
    ([(0, 2), (0, 2), (50, 60)], 1000, [(0, 2), (50, 60)]),  # duplicates
    ([(0, 1000), (0, 1000)], 1000, None),  # more than the body in all
    ([(0, 600), (500, 1000)], 1000, None),
    ([(i * 10, i * 10 + 1) for i in range(100)], 1000, [(i * 10, i * 10 + 1) for i in range(100)]),
    ([(i * 10, i * 10 + 1) for i in range(101)], 1010, None),  # more than MAX_RANGES
    ([(0, 1)] * 1000, 1000, [(0, 1)]),  # many, but they merge into one
])
def test_bounded_ranges(ranges: list[tuple[int, int]], length: int, expected: object) -> None:
    assert static.bounded_ranges(ranges, length) == expected


def test_overlapping_ranges_are_merged(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/data.bin", headers=[("Range", "bytes=0-9,5-19")])
    web.assertStatus(206)
    web.assertHeader("Content-Range", f"bytes 0-19/{len(DATA)}")
    assert web.body == DATA[:20]
    web.getPage("/static/data.bin", headers=[("Range", "bytes=0-1,2-3,100-104")])
    web.assertStatus(206)
    assert web.assertHeader("Content-Type").startswith("multipart/byteranges")
    assert web.body.count(b"Content-range: ") == 2
    assert b"Content-range: bytes 0-3/10240" in web.body


def test_ranges_cannot_amplify_a_response(web: Any, tree: Path) -> None:
    big = tree / "site" / "static" / "big.bin"
    content = os.urandom(100_000)
    big.write_bytes(content)
    mount(web, tree)
    for value in (",".join(["0-"] * 1000),                       # 1,000 whole copies
                  ",".join(f"{i}-{i + 5000}" for i in range(0, 50_000, 100)),  # overlaps
                  ",".join(f"{i}-{i}" for i in range(0, 1010, 10))):  # 101 ranges
        web.getPage("/static/big.bin", headers=[("Range", "bytes=" + value)])
        web.assertStatus(200)
        assert web.body == content
        assert int(web.assertHeader("Content-Length")) == 100_000
    exactly = ",".join(f"{i}-{i}" for i in range(0, 1000, 10))  # 100 ranges: still served
    web.getPage("/static/big.bin", headers=[("Range", "bytes=" + exactly)])
    web.assertStatus(206)
    assert web.body.count(b"Content-range: ") == 100
    assert len(web.body) < 200_000


def test_ranges_need_http_11(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.PROTOCOL = "HTTP/1.0"
    web.getPage("/static/data.bin", headers=[("Range", "bytes=0-1")])
    web.assertStatus(200)
    assert web.body == DATA


def test_if_range(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/data.bin")
    etag = web.assertHeader("ETag")
    modified = web.assertHeader("Last-Modified")
    web.getPage("/static/data.bin", headers=[("Range", "bytes=0-1"), ("If-Range", etag)])
    web.assertStatus(206)
    web.getPage("/static/data.bin", headers=[("Range", "bytes=0-1"), ("If-Range", modified)])
    web.assertStatus(206)
    web.getPage("/static/data.bin", headers=[("Range", "bytes=0-1"), ("If-Range", '"old"')])
    web.assertStatus(200)
    assert web.body == DATA


# -- preconditions ----------------------------------------------------------------------------


def test_conditional_requests(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/page.html")
    etag = web.assertHeader("ETag")
    modified = web.assertHeader("Last-Modified")
    web.getPage("/static/page.html", headers=[("If-None-Match", etag)])
    web.assertStatus(304)
    assert web.body == b""
    web.assertHeader("ETag", etag)
    web.getPage("/static/page.html", headers=[("If-None-Match", f'"x", W/{etag}')])
    web.assertStatus(304)
    web.getPage("/static/page.html", headers=[("If-Modified-Since", modified)])
    web.assertStatus(304)
    web.getPage("/static/page.html", headers=[("If-Modified-Since",
                                                "Thu, 01 Jan 1998 00:00:00 GMT")])
    web.assertStatus(200)
    web.getPage("/static/page.html", headers=[("If-Match", '"other"')])
    web.assertStatus(412)
    web.getPage("/static/page.html", headers=[("If-Match", etag)])
    web.assertStatus(200)
    web.getPage("/static/page.html", headers=[("If-Unmodified-Since",
                                                "Thu, 01 Jan 1998 00:00:00 GMT")])
    web.assertStatus(412)
    web.getPage("/static/page.html", headers=[("If-Modified-Since", "not a date")])
    web.assertStatus(200)


def test_a_changed_file_gets_a_new_etag(web: Any, tree: Path) -> None:
    mount(web, tree)
    web.getPage("/static/page.html")
    etag = web.assertHeader("ETag")
    path = tree / "site/static/page.html"
    path.write_text("<p>changed</p>")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10_000_000))
    web.getPage("/static/page.html", headers=[("If-None-Match", etag)])
    web.assertStatus(200)
    web.assertBody("<p>changed</p>")


PRECONDITIONS = [
    # (method, headers, expected) with etag '"a"' and last-modified 1000
    ("GET", {}, None),
    ("GET", {"If-None-Match": '"a"'}, 304),
    ("GET", {"If-None-Match": "*"}, 304),
    ("GET", {"If-None-Match": 'W/"a"'}, 304),
    ("GET", {"If-None-Match": '"b"'}, None),
    ("POST", {"If-None-Match": '"a"'}, 412),
    ("GET", {"If-Match": '"b"'}, 412),
    ("GET", {"If-Match": 'W/"a"'}, 412),  # If-Match compares strongly
    ("GET", {"If-Match": '"a", "b"'}, None),
    ("GET", {"If-Modified-Since": "Thu, 01 Jan 1970 00:16:40 GMT"}, 304),
    ("GET", {"If-Modified-Since": "Thu, 01 Jan 1970 00:16:39 GMT"}, None),
    ("POST", {"If-Modified-Since": "Thu, 01 Jan 1970 00:16:40 GMT"}, None),
    ("GET", {"If-None-Match": '"b"', "If-Modified-Since": "Thu, 01 Jan 1970 00:16:40 GMT"},
     None),  # If-None-Match wins over If-Modified-Since
    ("GET", {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:16:39 GMT"}, 412),
    ("GET", {"If-Match": '"a"', "If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
     None),  # If-Match wins over If-Unmodified-Since
]


@pytest.mark.parametrize("method, headers, expected", PRECONDITIONS)
def test_precondition_status_table(method: str, headers: dict[str, str],
                                   expected: int | None) -> None:
    assert precondition_status(method, headers, '"a"', 1000.5) == expected


def test_range_applies_table() -> None:
    date = "Thu, 01 Jan 1970 00:16:40 GMT"
    assert range_applies({}, '"a"', 1000)
    assert range_applies({"If-Range": '"a"'}, '"a"', 1000)
    assert not range_applies({"If-Range": '"b"'}, '"a"', 1000)
    assert not range_applies({"If-Range": 'W/"a"'}, '"a"', 1000)
    assert range_applies({"If-Range": date}, '"a"', 1000)
    assert not range_applies({"If-Range": "Thu, 01 Jan 1970 00:16:41 GMT"}, '"a"', 1000)
    assert not range_applies({"If-Range": "junk"}, '"a"', 1000)


# -- serve_file, serve_fileobj, serve_download ------------------------------------------------


class FileRoot:
    def __init__(self, base: Path) -> None:
        self.base = base

    @cherrypy.expose
    def download(self) -> Any:
        return static.serve_download(str(self.base / "site/static/page.html"), "rapport été.html")

    @cherrypy.expose
    def attached(self) -> Any:
        return static.serve_file(str(self.base / "site/static/data.bin"), "image/png",
                                 "attachment")

    @cherrypy.expose
    def bytesio(self) -> Any:
        buffer = io.BytesIO(b"0123456789")
        buffer.seek(2)
        return static.serve_fileobj(buffer, "text/plain", "inline", "digits.txt")

    @cherrypy.expose
    def fileobj(self) -> Any:
        return static.serve_fileobj(open(self.base / "site/static/data.bin", "rb"))

    @cherrypy.expose
    def relative(self) -> Any:
        return static.serve_file("site/static/data.bin")

    @cherrypy.expose
    def missing(self) -> Any:
        return static.serve_file(str(self.base / "nothing-here"))


def test_serve_download_and_disposition(web: Any, tree: Path) -> None:
    web.mount(FileRoot(tree))
    web.getPage("/download")
    web.assertHeader("Content-Type", "application/x-download")
    web.assertHeader("Content-Disposition",
                     "attachment; filename=\"rapport ete.html\"; "
                     "filename*=UTF-8''rapport%20%C3%A9t%C3%A9.html")
    web.assertBody("<p>hi</p>")
    web.getPage("/attached")
    web.assertHeader("Content-Type", "image/png")
    web.assertHeader("Content-Disposition", 'attachment; filename="data.bin"')


def test_serve_fileobj_serves_from_the_current_position_with_ranges(web: Any,
                                                                    tree: Path) -> None:
    web.mount(FileRoot(tree))
    web.getPage("/bytesio")
    web.assertBody("23456789")
    web.assertHeader("Content-Disposition", 'inline; filename="digits.txt"')
    web.getPage("/bytesio", headers=[("Range", "bytes=1-2")])
    web.assertStatus(206)
    web.assertBody("34")
    web.getPage("/fileobj", headers=[("Range", "bytes=-3")])
    web.assertStatus(206)
    assert web.body == DATA[-3:]
    web.getPage("/fileobj")
    web.assertHeader("Last-Modified")
    assert web.body == DATA


def test_serve_file_errors(web: Any, tree: Path) -> None:
    web.mount(FileRoot(tree))
    web.getPage("/missing")
    web.assertStatus(404)
    web.getPage("/relative")
    web.assertStatus(500)
    web.assertInBody("is not an absolute path")


def test_files_are_closed_after_ranges_and_head(web: Any, tree: Path) -> None:
    mount(web, tree)
    target = str(tree / "site/static/data.bin")

    def open_copies() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}") == target
            except OSError:
                pass
        return count

    for _ in range(20):
        web.getPage("/static/data.bin", headers=[("Range", "bytes=0-1,5-6")])
        web.getPage("/static/data.bin", headers=[("Range", "bytes=0-1")])
        web.getPage("/static/data.bin", method="HEAD")
        web.getPage("/static/data.bin", headers=[("If-None-Match", "*")])
        web.getPage("/static/data.bin", headers=[("Range", "bytes=99999-")])
    # The server closes each response just after sending it: wait for the last one.
    wait_until(lambda: open_copies() == 0, 30, "every served copy of data.bin to be closed")
