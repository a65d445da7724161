"""sitebus.servers.framing: the head rules and the body readers, from tables, without sockets."""

from __future__ import annotations

import io

import pytest

from sitebus.servers.framing import (
    ChunkedInput,
    FramingError,
    Head,
    LengthInput,
    Refusal,
    find_head_end,
    parse_chunk_size,
    read_head,
)

GET = b"GET / HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"", -1),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", -1),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody", 27),
        (b"\r\nGET / HTTP/1.1\r\n\r\n", 20),  # one empty line before the request is skipped
        (b"GET / HTTP/1.1\nHost: x\n\n", 24),  # bare LFs end it too, to be refused
        (b"GET / HTTP/1.1\r\n\r", -1),
    ],
)
def test_find_head_end(data: bytes, end: int) -> None:
    assert find_head_end(data) == end


def test_find_head_end_resumes_where_it_stopped() -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\n\r"
    assert find_head_end(data) == -1
    data += b"\n"
    assert find_head_end(data, start=len(data) - 1) == len(data)


@pytest.mark.parametrize(
    ("head", "framing"),
    [
        (GET + b"\r\n", (0, False, False)),
        (b"GET / HTTP/1.0\r\n\r\n", (0, False, False)),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", (5, False, False)),
        (b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length:   007  \r\n\r\n", (7, False, False)),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", (0, True, False)),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", (0, True, False)),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n",
         (9, False, True)),
        (b"GET /caf\xc3\xa9?q=1 HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9\t!\r\n\r\n",
         (0, False, False)),
        (b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", (0, False, False)),
    ],
)
def test_heads_accepted(head: bytes, framing: tuple[int, bool, bool]) -> None:
    verdict = read_head(head, 1000)
    assert isinstance(verdict, Head)
    assert (verdict.content_length, verdict.chunked, verdict.expect_continue) == framing
    assert verdict.length == len(head)


REFUSED = [
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5_0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n", 400),
    (b"GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-B: 2\r\n\r\n", 400),
    (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400),
    (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1\r\nHost: x\r\n\r\n", 400),
    (b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
]


@pytest.mark.parametrize(("head", "status"), REFUSED)
def test_heads_refused(head: bytes, status: int) -> None:
    verdict = read_head(head, 1000)
    assert isinstance(verdict, Refusal), verdict
    assert int(verdict.status[:3]) == status


def test_a_refusal_is_a_whole_response_that_closes() -> None:
    response = Refusal("400 Bad Request", "No.").response()
    assert response == (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                        b"Content-Length: 3\r\nConnection: close\r\n\r\nNo.")


@pytest.mark.parametrize(
    ("line", "size"),
    [(b"0\r\n", 0), (b"5\r\n", 5), (b"1A\r\n", 26), (b"ff;name=value\r\n", 255),
     (b"5 ; ext\r\n", 5), (b"0000000000000010\r\n", 16)],
)
def test_chunk_sizes_accepted(line: bytes, size: int) -> None:
    assert parse_chunk_size(line) == size


@pytest.mark.parametrize(
    "line",
    [b"0x5\r\n", b"+5\r\n", b"-1\r\n", b"5_0\r\n", b" 5\r\n", b"\r\n", b"5\n", b"5\r",
     b"g\r\n", b"11111111111111111\r\n", b"5;\x00\r\n"],
)
def test_chunk_sizes_refused(line: bytes) -> None:
    with pytest.raises(FramingError) as caught:
        parse_chunk_size(line)
    assert caught.value.refusal.status.startswith("400")


def chunked(data: bytes, max_size: int = 0) -> ChunkedInput:
    return ChunkedInput(io.BufferedReader(io.BytesIO(data)), max_size)  # type: ignore[arg-type]


def test_chunked_body_read_whole_by_parts_and_by_lines() -> None:
    wire = b"5\r\nhello\r\n7;x=1\r\n world\n\r\n3\r\nab\n\r\n0\r\nX-T: 1\r\n\r\nNEXT"
    assert chunked(wire).read() == b"hello world\nab\n"
    body = chunked(wire)
    assert [body.read(3), body.read(4), body.read(100), body.read(1)] == \
        [b"hel", b"lo w", b"orld\nab\n", b""]
    assert body.done and body.size == 15
    assert list(chunked(wire)) == [b"hello world\n", b"ab\n"]
    assert chunked(wire).readlines() == [b"hello world\n", b"ab\n"]
    assert chunked(wire).readline(4) == b"hell"
    assert list(chunked(wire).read_trailer_lines()) == [b"X-T: 1\r\n"]
    stream = io.BufferedReader(io.BytesIO(wire))
    ChunkedInput(stream).read()  # type: ignore[arg-type]
    assert stream.read() == b"NEXT"  # not one byte past the body's end


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"0x5\r\nhello\r\n0\r\n\r\n", 400),
        (b"5\r\nhelloXX0\r\n\r\n", 400),
        (b"5\r\nhello0\r\n\r\n", 400),
        (b"5\r\nhel", 400),
        (b"5\r\nhello\r\n", 400),
        (b"5\r\nhello\r\n0\r\n", 400),
        (b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", 400),
        (b"5\nhello\r\n0\r\n\r\n", 400),
        (b"", 400),
        (b"b\r\nhello world\r\n0\r\n\r\n", 413),
        (b"6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n", 413),
        (b"5" * 5000 + b"\r\n", 400),
    ],
)
def test_chunked_bodies_refused(wire: bytes, status: int) -> None:
    with pytest.raises(FramingError) as caught:
        chunked(wire, max_size=10).read()
    assert int(caught.value.refusal.status[:3]) == status


def test_length_input_reads_its_length_and_notices_a_short_body() -> None:
    body = LengthInput(io.BufferedReader(io.BytesIO(b"ab\ncdNEXT")), 5)
    assert body.readline() == b"ab\n"
    assert body.read() == b"cd"
    assert body.read() == b""
    short = LengthInput(io.BufferedReader(io.BytesIO(b"abc")), 5)
    with pytest.raises(FramingError, match="shorter than Content-Length"):
        short.read()
    with pytest.raises(FramingError):
        LengthInput(io.BufferedReader(io.BytesIO(b"abc")), 5).readline()


@pytest.mark.parametrize(("head", "reason"), [
    (b"GET /hello HTTP/1.1\n\n", "HTTP requires CRLF terminators"),
    (b"GET /hello HTTP/1.1\r\n\n", "HTTP requires CRLF terminators"),
    (b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n", "HTTP requires CRLF terminators"),
    (b"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n", "A bare CR in a header line"),
    (b"GET  / HTTP/1.1\r\n\r\n", "Malformed Request-Line"),
    (b"GET / HTTP/1.1\r\nre, 1.2.3.4\r\n\r\n",
     "Illegal header line. A malformed header name (whitespace before the colon?)"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n",
     "The entity sent with the request exceeds the maximum allowed bytes."),
])
def test_refusals_give_the_reference_reasons(head: bytes, reason: str) -> None:
    """cheroot's words, which the reference's clients and tests look for."""
    verdict = read_head(head, 1000)
    assert isinstance(verdict, Refusal) and verdict.reason == reason
