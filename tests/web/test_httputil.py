"""The HTTP library functions: pure, so tested table by table."""

from __future__ import annotations

import pytest

from services.web._helper import normalize_path
from services.web.lib import httputil


@pytest.mark.parametrize(
    "status, expected",
    [
        (200, (200, "OK", "Request fulfilled, document follows")),
        ("404", (404, "Not Found", "Nothing matches the given URI")),
        ("404 Gone Fishing", (404, "Gone Fishing", "Nothing matches the given URI")),
        (None, (200, "OK", "Request fulfilled, document follows")),
        ("", (200, "OK", "Request fulfilled, document follows")),
        ("404  ", (404, "Not Found", "Nothing matches the given URI")),
        (599, (599, "", "")),
    ],
)
def test_valid_status(status: object, expected: tuple[int, str, str]) -> None:
    assert httputil.valid_status(status) == expected


@pytest.mark.parametrize("status, fragment", [
    ("abc", "is non-numeric"), ([1], "non-numeric"), (99, "out of range"), (600, "out of range"),
    ("6000 x", "range"),
])
def test_invalid_status(status: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        httputil.valid_status(status)


@pytest.mark.parametrize(
    "qs, expected",
    [
        ("a=1&b=2", {"a": "1", "b": "2"}),
        ("a=1&a=2&a=3", {"a": ["1", "2", "3"]}),
        ("a=&b", {"a": "", "b": ""}),
        ("name=J%C3%BCrgen+M", {"name": "Jürgen M"}),
        ("a=1;b=2", {"a": "1", "b": "2"}),
        ("12,34", {"x": 12, "y": 34}),
        ("", {}),
    ],
)
def test_parse_query_string(qs: str, expected: dict[str, object]) -> None:
    assert httputil.parse_query_string(qs) == expected


def test_parse_query_string_refuses_what_its_encoding_cannot_decode() -> None:
    with pytest.raises(UnicodeDecodeError):
        httputil.parse_query_string("message=A+bient%F4t")
    assert httputil.parse_query_string("message=A+bient%F4t", encoding="latin-1") == {
        "message": "A bientôt"}


@pytest.mark.parametrize(
    "header, length, expected",
    [
        ("bytes=3-6", 10, [(3, 7)]),
        ("bytes=3-", 10, [(3, 10)]),
        ("bytes=-4", 10, [(6, 10)]),
        ("bytes=-40", 10, [(0, 10)]),
        ("bytes=0-0,-1", 10, [(0, 1), (9, 10)]),
        ("bytes=3-100", 10, [(3, 10)]),
        ("bytes=20-30", 10, []),
        ("bytes=6-3", 10, None),
        ("items=1-2", 10, None),
        ("", 10, None),
        ("bytes=x-y", 10, None),
    ],
)
def test_get_ranges(header: str, length: int, expected: object) -> None:
    assert httputil.get_ranges(header, length) == expected


def test_accept_elements_sort_most_preferred_first_keeping_client_order_for_ties() -> None:
    elements = httputil.header_elements(
        "Accept", "text/plain;q=0.5, text/html, application/json;q=0.9, image/png")
    assert [e.value for e in elements] == ["text/html", "image/png", "application/json",
                                           "text/plain"]
    assert elements[-1].qvalue == 0.5
    assert str(elements[2]) == "application/json;q=0.9"


def test_header_element_parse_strips_quotes() -> None:
    element = httputil.HeaderElement.from_str('text/html; charset="utf-8"; level=1')
    assert element.value == "text/html"
    assert element.params == {"charset": "utf-8", "level": "1"}


def test_header_map_is_case_insensitive_and_title_cases_keys() -> None:
    headers = httputil.HeaderMap()
    headers["content-type"] = "text/plain"
    headers.update({"x-custom": "1"})
    assert headers["Content-Type"] == "text/plain"
    assert "CONTENT-TYPE" in headers
    assert sorted(dict.keys(headers)) == ["Content-Type", "X-Custom"]
    assert headers.pop("X-CUSTOM") == "1"
    assert headers.get("missing", 5) == 5


def test_header_map_output_encodes_values_for_the_wire() -> None:
    headers = httputil.HeaderMap()
    headers["X-Number"] = 5
    headers["X-Latin"] = "café"
    headers["X-Greek"] = "Ελλάδα"
    output = dict(headers.native_output())
    assert dict(headers.output())[b"X-Latin"] == "café".encode("latin-1")  # the reference's form
    assert output["X-Number"] == "5"
    assert output["X-Latin"] == "café"
    assert output["X-Greek"].startswith("=?utf-8?b?")
    assert httputil.decode_TEXT(output["X-Greek"]) == "Ελλάδα"


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb"])
def test_header_map_refuses_line_breaks(value: str) -> None:
    headers = httputil.HeaderMap()
    headers["X-Injected"] = value
    with pytest.raises(ValueError, match="line break"):
        headers.output()


@pytest.mark.parametrize(
    "atoms, expected",
    [(("", ""), "/"), (("/app", ""), "/app"), (("", "/page"), "/page"),
     (("/app/", "/page"), "/app/page"), (("/app", "page"), "/app/page")],
)
def test_urljoin(atoms: tuple[str, ...], expected: str) -> None:
    assert httputil.urljoin(*atoms) == expected
    assert httputil.urljoin_bytes(*(a.encode() for a in atoms)) == expected.encode()


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/a/b/../c", "/a/c"),
        ("/a/..", "/"),
        ("/..", "/"),
        ("/./a", "/a"),
        ("/a//b/./", "/a//b/"),
        ("/a/b/", "/a/b/"),
        ("/x/../y/", "/y/"),
        ("a/../../b", "b"),
    ],
)
def test_normalize_path_resolves_dot_segments_only(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


def test_http_date_is_rfc_7231() -> None:
    assert httputil.HTTPDate(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert httputil.HTTPDate(86400.7) == "Fri, 02 Jan 1970 00:00:00 GMT"


def test_protocol_from_http() -> None:
    assert httputil.protocol_from_http("HTTP/1.0") == (1, 0)
