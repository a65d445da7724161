"""Functional testing of web sites over real HTTP: ``getPage`` and the ``assert*`` family.

``WebClient`` holds the last response (``status``, ``headers``, ``body``) and checks it, in
the reference's style::

    client.getPage("/echo?message=Hello%20world")
    client.assertStatus("200 OK")
    client.assertHeader("Content-Type", "text/html;charset=utf-8")
    client.assertBody("Hello world")

``WebCase`` is the same as a ``unittest.TestCase``. Requests go through ``http.client`` to
``HOST:PORT``; a persistent connection is kept with ``set_persistent()``. Assertion failures
raise AssertionError with the status, headers and the start of the body, never prompting.
"""

from __future__ import annotations

import datetime
import http.client
import re
import time
import unittest
from collections.abc import Iterable
from typing import Any

__all__ = ["WebCase", "WebClient", "cleanHeaders", "interface", "openURL", "shb"]


def interface(host: str) -> str:
    """Return an IP address for a client to connect to the given listening ``host``."""
    if host == "0.0.0.0":
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def cleanHeaders(headers: Iterable[tuple[str, str]] | None, method: str, body: Any,
                 host: str, port: int) -> list[tuple[str, str]]:
    """Return request headers with Host and, for a body, Content-Type and Content-Length."""
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if "host" not in names:
        headers.append(("Host", host if port == 80 else f"{host}:{port}"))
    if body is not None:
        if "content-type" not in names:
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        if "content-length" not in names:
            headers.append(("Content-Length", str(len(body))))
    return headers


def shb(response: http.client.HTTPResponse) -> tuple[str, list[tuple[str, str]], bytes]:
    """Return status, headers, body of an http.client response."""
    status = f"{response.status} {response.reason}"
    return status, response.getheaders(), response.read()


def openURL(url: str, headers: Iterable[tuple[str, str]] | None = None, method: str = "GET",
            body: Any = None, host: str = "127.0.0.1", port: int = 8000,
            http_conn: type[http.client.HTTPConnection] = http.client.HTTPConnection,
            protocol: str = "HTTP/1.1", timeout: float = 30.0,
            conn: http.client.HTTPConnection | None = None
            ) -> tuple[str, list[tuple[str, str]], bytes]:
    """Open ``url`` on host:port and return (status, headers, body)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    own = conn is None
    if conn is None:
        conn = http_conn(interface(host), port, timeout=timeout)
    conn._http_vsn_str = protocol  # type: ignore[attr-defined]
    conn._http_vsn = int(protocol[5]) * 10 + int(protocol[7])  # type: ignore[attr-defined]
    try:
        conn.putrequest(method.upper(), url, skip_host=True, skip_accept_encoding=True)
        for key, value in cleanHeaders(headers, method, body, host, port):
            conn.putheader(key, value.encode("latin-1") if isinstance(value, str) else value)
        conn.endheaders()
        if body is not None:
            conn.send(body)
        return shb(conn.getresponse())
    finally:
        if own:
            conn.close()


class WebClient:
    """A client for one server with the reference's WebCase assertions."""

    HOST = "127.0.0.1"
    PORT = 8000
    PROTOCOL = "HTTP/1.1"
    scheme = "http"
    encoding = "utf-8"
    timeout = 30.0

    status: str = ""
    headers: list[tuple[str, str]] = []
    body: bytes = b""
    url: str = ""
    time: float = 0.0

    _conn: http.client.HTTPConnection | None = None

    def __init__(self, host: str | None = None, port: int | None = None) -> None:
        if host is not None:
            self.HOST = host
        if port is not None:
            self.PORT = port

    # -- connections ------------------------------------------------------------------------

    def get_conn(self, auto_open: bool = False) -> http.client.HTTPConnection:
        """Return a connection to our HTTP server."""
        cls = http.client.HTTPSConnection if self.scheme == "https" else \
            http.client.HTTPConnection
        conn = cls(interface(self.HOST), self.PORT, timeout=self.timeout)
        conn.auto_open = auto_open
        conn.connect()
        return conn

    def set_persistent(self, on: bool = True, auto_open: bool = False) -> None:
        """Make our HTTP connection persistent (or not)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if on:
            self._conn = self.get_conn(auto_open=auto_open)

    @property
    def persistent(self) -> bool:
        return self._conn is not None

    @persistent.setter
    def persistent(self, on: bool) -> None:
        self.set_persistent(on)

    def close(self) -> None:
        """Close the persistent connection, if any."""
        self.set_persistent(False)

    def base(self) -> str:
        port = "" if (self.scheme, self.PORT) in (("http", 80), ("https", 443)) else \
            f":{self.PORT}"
        return f"{self.scheme}://{interface(self.HOST)}{port}"

    def getPage(self, url: str, headers: Iterable[tuple[str, str]] | None = None,  # noqa: N802
                method: str = "GET", body: Any = None, protocol: str | None = None
                ) -> tuple[str, list[tuple[str, str]], bytes]:
        """Open the url and remember status, headers and body; return them."""
        if url.startswith(("http://", "https://")):
            url = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
        self.url = url
        start = time.monotonic()
        self.status, self.headers, self.body = openURL(
            url, headers, method, body, self.HOST, self.PORT,
            protocol=protocol or self.PROTOCOL, timeout=self.timeout, conn=self._conn)
        self.time = time.monotonic() - start
        return self.status, self.headers, self.body

    # -- assertions -------------------------------------------------------------------------

    def _fail(self, msg: str) -> None:
        excerpt = self.body[:1000].decode(self.encoding, "replace")
        raise AssertionError(f"{msg}\n  for {self.url}: {self.status}\n  headers: "
                             f"{self.headers!r}\n  body: {excerpt!r}")

    def assertStatus(self, status: Any, msg: str | None = None) -> None:  # noqa: N802
        """Fail if self.status != status (an int, a 'code reason' string, or a list of them)."""
        if isinstance(status, (list, tuple)):
            for candidate in status:
                try:
                    self.assertStatus(candidate)
                    return
                except AssertionError:
                    continue
            self._fail(msg or f"Status {self.status!r} not in {status!r}")
        code, _, reason = self.status.partition(" ")
        if isinstance(status, int):
            if int(code) != status:
                self._fail(msg or f"Status {self.status!r} != {status!r}")
            return
        want_code, _, want_reason = str(status).partition(" ")
        if want_code != code or (want_reason and want_reason != reason):
            self._fail(msg or f"Status {self.status!r} != {status!r}")

    def assertHeader(self, key: str, value: str | None = None,  # noqa: N802
                     msg: str | None = None) -> str:
        """Fail if (key, [value]) is not among the headers; return the header's value."""
        lowkey = key.lower()
        for k, v in self.headers:
            if k.lower() == lowkey and (value is None or str(value) == v):
                return v
        self._fail(msg or f"{key!r}: {value!r} not in headers")
        return ""

    def assertHeaderIn(self, key: str, values: Iterable[str],  # noqa: N802
                       msg: str | None = None) -> str:
        """Fail if the header is missing or its value is not among ``values``."""
        lowkey = key.lower()
        wanted = [str(v) for v in values]
        for k, v in self.headers:
            if k.lower() == lowkey:
                if v in wanted:
                    return v
        self._fail(msg or f"{key!r} not in {wanted!r}")
        return ""

    def assertHeaderItemValue(self, key: str, value: str,  # noqa: N802
                              msg: str | None = None) -> str:
        """Fail if the header does not contain ``value`` as one of its comma-separated items."""
        lowkey = key.lower()
        for k, v in self.headers:
            if k.lower() == lowkey and value in [item.strip() for item in v.split(",")]:
                return value
        self._fail(msg or f"{value!r} not in the {key!r} header")
        return ""

    def assertNoHeader(self, key: str, msg: str | None = None) -> None:  # noqa: N802
        """Fail if the header is present."""
        lowkey = key.lower()
        matches = [k for k, _ in self.headers if k.lower() == lowkey]
        if matches:
            self._fail(msg or f"{key!r} in headers")

    def assertNoHeaderItemValue(self, key: str, value: str,  # noqa: N802
                                msg: str | None = None) -> None:
        """Fail if the header contains ``value`` as one of its comma-separated items."""
        lowkey = key.lower()
        for k, v in self.headers:
            if k.lower() == lowkey and value in [item.strip() for item in v.split(",")]:
                self._fail(msg or f"{value!r} in the {key!r} header")

    def _as_bytes(self, value: Any) -> bytes:
        return value.encode(self.encoding) if isinstance(value, str) else value

    def assertBody(self, value: Any, msg: str | None = None) -> None:  # noqa: N802
        """Fail if value != self.body."""
        if self._as_bytes(value) != self.body:
            self._fail(msg or f"expected body {value!r}")

    def assertInBody(self, value: Any, msg: str | None = None) -> None:  # noqa: N802
        """Fail if value not in self.body."""
        if self._as_bytes(value) not in self.body:
            self._fail(msg or f"{value!r} not in body")

    def assertNotInBody(self, value: Any, msg: str | None = None) -> None:  # noqa: N802
        """Fail if value in self.body."""
        if self._as_bytes(value) in self.body:
            self._fail(msg or f"{value!r} found in body")

    def assertMatchesBody(self, pattern: Any, msg: str | None = None,  # noqa: N802
                          flags: int = 0) -> None:
        """Fail if the body does not match the regular expression ``pattern``."""
        if re.search(self._as_bytes(pattern), self.body, flags) is None:
            self._fail(msg or f"No match for {pattern!r} in body")

    def assertErrorPage(self, status: Any, message: str | None = None,  # noqa: N802
                        pattern: str | None = "") -> None:
        """Compare the body with the built-in error page for ``status``.

        ``pattern`` must be found in the page's traceback; None means there must be none.
        """
        from services.web._cperror import render_error_page

        page = render_error_page(status, message=message)
        epage = re.escape(page).replace(
            re.escape(b'<pre id="traceback"></pre>'),
            re.escape(b'<pre id="traceback">') + b"(.*)" + re.escape(b"</pre>"))
        m = re.match(epage, self.body, re.DOTALL)
        if not m:
            self._fail("Error page does not match; expected:\n" + page.decode("utf-8"))
            return
        if pattern is None:
            if m.group(1):
                self._fail("Error page contains a traceback")
        elif pattern and not re.search(re.escape(pattern).encode(self.encoding), m.group(1)):
            self._fail(f"Error page does not contain {pattern!r} in its traceback")

    date_tolerance = 2

    def assertEqualDates(self, dt1: datetime.datetime, dt2: datetime.datetime,  # noqa: N802
                         seconds: float | None = None) -> None:
        """Fail if the two datetimes differ by more than ``seconds`` (default 2)."""
        tolerance = self.date_tolerance if seconds is None else seconds
        if abs((dt1 - dt2).total_seconds()) > tolerance:
            raise AssertionError(f"{dt1!r} and {dt2!r} are not within {tolerance!r} seconds.")


class WebCase(WebClient, unittest.TestCase):
    """WebClient as a unittest.TestCase (the reference's ``webtest.WebCase``)."""

    def __init__(self, methodName: str = "runTest") -> None:  # noqa: N803
        unittest.TestCase.__init__(self, methodName)
