"""The head reader and strict framing on real sockets, with cheroot serving a real app.

Slow clients (slowloris, silent connections, slow bodies, slow TLS handshakes) must not keep
a one-thread server from answering; malformed requests are answered 400/413/431/501 and
their connection closed, and the server goes on serving.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from cheroot import makefile

from sitebus.servers.connection import BufferedSocketIO, StreamReader
from sitebus.servers.listeners import bind_tcp, bind_unix, serve_on
from sitebus.servers.wsgiserver import CherootServer, make_ssl_adapter
from tests.httpclients import GatedApp, StartResponse, fetch
from tests.test_framing import REFUSED

pytestmark = pytest.mark.timeout(60)

MAX_BODY = 1000


def echo_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Read the whole body; answer the method, path and body."""
    body = environ["wsgi.input"].read()
    text = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {len(body)}:".encode() + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


def ignoring_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answer without reading the body."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@contextmanager
def serving(app: Any = echo_app, threads: int = 1, unix: str | None = None,
            certificate: tuple[str, str] | None = None,
            **attributes: Any) -> Iterator[tuple[Any, CherootServer]]:
    """Run a CherootServer on a fresh listener; yield (address, server)."""
    if unix is not None:
        sock, _identity, _replaced = bind_unix(unix, 128, 0o600)
    else:
        sock = bind_tcp("127.0.0.1", 0, 128)
    server = CherootServer(serve_on(sock, True), app, numthreads=threads)
    server.max_request_body_size = MAX_BODY
    server.max_request_header_size = 8192
    for name, value in attributes.items():
        setattr(server, name, value)
    if certificate is not None:
        server.ssl_adapter = make_ssl_adapter(*certificate)
    server.ready_event = threading.Event()
    thread = threading.Thread(target=server.safe_start, daemon=True)
    thread.start()
    try:
        assert server.ready_event.wait(5)
        yield sock.getsockname(), server
    finally:
        server.stop()
        thread.join(10)
        sock.close()
        assert not thread.is_alive()


def exchange(address: Any, data: bytes, half_close: bool = False,
             timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data``; return what came back and whether the server closed the connection."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def read_all(sock: socket.socket) -> tuple[bytes, bool]:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received, False
    except ConnectionResetError:
        pass
    return received, True


def receive_until(sock: socket.socket, end: bytes) -> bytes:
    """Receive until what came ends with ``end`` (the socket's timeout bounds each wait)."""
    received = b""
    while not received.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.") else 0


def slowloris(address: Any, count: int, stack: ExitStack) -> list[socket.socket]:
    """Open ``count`` connections that each send half a head, and ``count`` that send nothing."""
    socks = []
    for i in range(2 * count):
        sock = stack.enter_context(socket.create_connection(address, timeout=5))
        if i % 2:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        socks.append(sock)
    return socks


# -- malformed requests: a table on a real server -----------------------------------------------

BODIES = [
    # (request, status, half_close)
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
     400, False),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
     400, False),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n", 400, False),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
     400, False),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
     400, False),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
     400, False),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 400, True),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 400, True),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n" + b"x" * 1001
     + b"\r\n0\r\n\r\n", 413, False),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"1f4\r\n" + b"x" * 500 + b"\r\n" + b"1f5\r\n" + b"x" * 501 + b"\r\n0\r\n\r\n", 413, False),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 400, True),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Len", 400, True),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, False),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, False),
]

TABLE = [(head, status, False) for head, status in REFUSED] + BODIES


def test_the_table_has_at_least_fifty_cases() -> None:
    assert len(TABLE) >= 50


@pytest.fixture(scope="module")
def strict_server() -> Iterator[Any]:
    with serving(threads=2) as (address, _server):
        yield address


@pytest.mark.parametrize(("request_bytes", "status", "half_close"), TABLE)
def test_malformed_requests_are_refused_and_closed(
    strict_server: Any, request_bytes: bytes, status: int, half_close: bool
) -> None:
    response, closed = exchange(strict_server, request_bytes, half_close)
    assert status_of(response) == status, response[:300]
    assert closed, "the connection was left open"
    assert exchange(strict_server, b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[
        0].endswith(b"GET /after 0:")


def test_well_formed_requests_are_served(strict_server: Any) -> None:
    cases = [
        (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
         b"POST /a 5:hello"),
        (b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
         b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", b"POST /c 11:hello world"),
        (b"\r\nGET /crlf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"GET /crlf 0:"),
        (b"GET /ten HTTP/1.0\r\n\r\n", b"GET /ten 0:"),
    ]
    for request, answer in cases:
        response, closed = exchange(strict_server, request)
        assert status_of(response) == 200 and response.endswith(answer), response
        assert closed


def test_a_smuggled_request_in_an_unread_chunked_body_is_not_served() -> None:
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    with serving(ignoring_app) as (address, _server):
        response, closed = exchange(
            address, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
            + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in response
    assert closed


def test_expect_100_continue_still_works() -> None:
    with serving() as (address, _server), socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"abc")
        response, _closed = read_all(sock)
    assert response.endswith(b"POST /e 3:abc")


# -- slow clients -------------------------------------------------------------------------------


def test_slow_and_silent_clients_hold_no_thread() -> None:
    with serving(threads=1) as (address, server), ExitStack() as stack:
        slowloris(address, 32, stack)
        for i in range(10):
            started = time.monotonic()
            assert fetch(address, f"/{i}", timeout=5)[0] == 200
            assert time.monotonic() - started < 1
        assert server.head_reader is not None and server.head_reader.waiting >= 64


def test_a_slow_small_body_holds_no_thread() -> None:
    with serving(threads=1) as (address, _server), \
            socket.create_connection(address, timeout=5) as slow:
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 50)
        started = time.monotonic()
        assert fetch(address, timeout=5)[0] == 200
        assert time.monotonic() - started < 1
        slow.sendall(b"y" * 50)
        response = receive_until(slow, b"x" * 50 + b"y" * 50)
    assert response.startswith(b"HTTP/1.1 200")


def test_keep_alive_pipelining_and_a_slow_head_on_a_kept_alive_connection() -> None:
    with serving(threads=1) as (address, _server), \
            socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3")
        assert receive_until(sock, b"GET /2 0:").count(b"HTTP/1.1 200") == 2
        started = time.monotonic()  # the rest of /3 has not come: the thread must be free
        assert fetch(address, "/other", timeout=5)[0] == 200
        assert time.monotonic() - started < 1
        sock.sendall(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response, closed = read_all(sock)
    assert response.endswith(b"GET /3 0:") and closed


def test_a_head_not_finished_in_time_is_answered_408_and_idle_ones_closed() -> None:
    with serving(header_timeout=0.3, timeout=1) as (address, _server):
        with socket.create_connection(address, timeout=5) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\n")
            started = time.monotonic()
            slow.sendall(b"Host: x\r\n")
            response, closed = read_all(slow)
            assert status_of(response) == 408 and closed
            assert 0.2 < time.monotonic() - started < 3
        with socket.create_connection(address, timeout=5) as silent:
            started = time.monotonic()
            assert read_all(silent) == (b"", True)
            assert 0.2 < time.monotonic() - started < 3


def test_the_oldest_waiting_connection_makes_room_for_a_new_one() -> None:
    with serving(threads=1, max_waiting=8) as (address, server), ExitStack() as stack:
        slow = slowloris(address, 10, stack)
        assert fetch(address, timeout=5)[0] == 200
        assert read_all(slow[0]) == (b"", True)  # the first one was closed to make room
        assert server.head_reader is not None
        assert server.head_reader.waiting <= 8 and server.head_reader.evicted >= 12


def test_slow_tls_handshakes_and_heads_hold_no_thread(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with serving(threads=1, certificate=(str(cert_path), str(key_path))) as (address, _server), \
            ExitStack() as stack:
        stack.enter_context(socket.create_connection(address, timeout=5))  # no handshake
        half = stack.enter_context(socket.create_connection(address, timeout=5))
        half.sendall(b"\x16\x03\x01\x00\xc8\x01")  # the first bytes of a ClientHello
        tls = stack.enter_context(client.wrap_socket(
            socket.create_connection(address, timeout=5), server_hostname="127.0.0.1"))
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half a head, encrypted
        started = time.monotonic()
        status, body, _response = fetch(address, "/tls", tls=client, timeout=5)
        assert (status, body) == (200, b"GET /tls 0:")
        assert time.monotonic() - started < 1
        tls.sendall(b"Connection: close\r\n\r\n")
        response, _closed = read_all(tls)
        assert response.endswith(b"GET / 0:")


def test_slowloris_on_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with serving(threads=1, unix=path) as (_address, _server), ExitStack() as stack:
        for _ in range(8):
            sock = stack.enter_context(socket.socket(socket.AF_UNIX))
            sock.connect(path)
            sock.sendall(b"GET / HTTP/1.1\r\n")
        assert fetch(path, timeout=5)[0] == 200


# -- draining and health ------------------------------------------------------------------------


def test_draining_closes_after_each_response_and_idle_connections_at_the_deadline() -> None:
    with serving(threads=1) as (address, server), \
            socket.create_connection(address, timeout=5) as idle, \
            socket.create_connection(address, timeout=5) as busy:
        reader = server.head_reader
        assert reader is not None
        for sock in (idle, busy):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"Connection: close" not in receive_until(sock, b"GET / 0:")
        reader.begin_draining(time.monotonic() + 0.5)
        busy.sendall(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
        response, closed = read_all(busy)
        assert b"Connection: close" in response and response.endswith(b"GET /last 0:") and closed
        started = time.monotonic()
        assert read_all(idle) == (b"", True)
        assert 0.2 < time.monotonic() - started < 3


def test_stalled_reports_a_connection_no_thread_has_taken() -> None:
    app = GatedApp()
    with serving(app, threads=1) as (address, server):
        assert server.stalled(time.monotonic()) is None  # sends a probe
        holder = threading.Thread(target=fetch, args=(address, "/slow"), daemon=True)
        holder.start()
        assert app.entered.wait(5)
        waiting = threading.Thread(target=fetch, args=(address, "/fast"), daemon=True)
        waiting.start()
        deadline = time.monotonic() + 5
        while not server.head_reader.queued:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stalled = server.stalled(time.monotonic() + 30)
        assert stalled is not None and stalled >= 29
        app.gate.set()
        holder.join(5)
        waiting.join(5)
        assert not server.head_reader.queued  # type: ignore[union-attr]


# -- the one assumption about cheroot's insides --------------------------------------------------


def test_cheroot_stream_reader_serves_the_buffer_first() -> None:
    """Fails loudly if cheroot's StreamReader stops being a buffered reader over its raw IO."""
    left, right = socket.socketpair()
    with left, right:
        reader = StreamReader(left, "rb", 8192)
        assert isinstance(reader, makefile.StreamReader)
        raw = reader.raw
        assert isinstance(raw, BufferedSocketIO)
        raw.pending += b"GET / HTTP/1.1\r\n\r\nNEXT"
        right.sendall(b" MORE")
        assert reader.readline() == b"GET / HTTP/1.1\r\n"
        assert reader.readline() == b"\r\n"
        assert reader.has_data()
        buffered = reader.peek(1)
        assert buffered == b"NEXT"
        reader.read1(len(buffered))
        assert not reader.has_data()
        raw.pending[0:0] = buffered
        assert reader.read(9) == b"NEXT MORE"


def test_the_framework_answers_400_and_413_not_500_for_bad_chunked_bodies() -> None:
    import services.web as web

    class Root:
        @web.expose
        def form(self, **params: Any) -> str:
            return repr(sorted(params))

    app = web.Application(Root())
    head = (b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
            b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    with serving(app) as (address, _server):
        for body, status in [(b"3\r\na=1XX0\r\n\r\n", 400), (b"0x3\r\na=1\r\n0\r\n\r\n", 400),
                             (b"3e9\r\n" + b"a" * 1001 + b"\r\n0\r\n\r\n", 413),
                             (b"3\r\na=1\r\n0\r\n\r\n", 200)]:
            response, closed = exchange(address, head + body)
            assert status_of(response) == status, response[:200]
            assert closed or status == 200


def test_an_error_page_replaces_the_headers_of_the_response_it_stands_for() -> None:
    def failing_late(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7")])
        try:
            raise RuntimeError("after the headers were given, before any body")
        except RuntimeError:
            page = b"error page"
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/html"), ("Content-Length", str(len(page)))],
                           sys.exc_info())
            return [page]

    with serving(failing_late) as (address, _server):
        answer, _closed = exchange(address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ")
    assert head.lower().count(b"content-length:") == 1
    assert head.lower().count(b"content-type:") == 1
    assert b"Content-Type: text/html" in head and body == b"error page"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_head_response_has_no_content_and_the_connection_stays_usable(
        declared: bool) -> None:
    def plain_wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers = [("Content-Type", "text/plain")]
        if declared:
            headers.append(("Content-Length", "5"))
        start_response("200 OK", headers)
        return [b"hel", b"lo"]  # the body of a GET, given for HEAD too, as many apps do

    with serving(plain_wsgi) as (address, _server):
        answer, closed = exchange(address, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head_response, _, get_response = answer.partition(b"\r\n\r\n")
        assert head_response.startswith(b"HTTP/1.1 200 ") and closed
        if declared:  # the length the GET has, and the connection goes on
            assert b"Content-Length: 5" in head_response
            assert get_response.startswith(b"HTTP/1.1 200 "), answer  # not "hello" first
            assert get_response.partition(b"\r\n\r\n")[2] == b"hello"
        else:  # no length to give: cheroot closes the connection after the head, nothing more
            assert b"Connection: close" in head_response and get_response == b"", answer
        connection = http.client.HTTPConnection(*address, timeout=5)  # a real keep-alive client
        try:
            for method in ("HEAD", "GET", "HEAD", "GET"):
                connection.request(method, "/")
                response = connection.getresponse()
                assert (response.status, response.read()) == (
                    200, b"" if method == "HEAD" else b"hello")
        finally:
            connection.close()
