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
import sys
import time
import traceback
import unittest
import urllib.parse
from collections.abc import Iterable
from typing import Any

__all__ = ["ServerError", "WebCase", "WebClient", "cleanHeaders", "interface", "openURL",
           "server_error", "shb", "strip_netloc"]


def interface(host: str) -> str:
    """Return an IP address for a client to connect to the given listening ``host``."""
    if host == "0.0.0.0":
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


methods_with_bodies = ("POST", "PUT", "PATCH")
"""The methods ``cleanHeaders`` gives a default Content-Type (a test may add more)."""


def cleanHeaders(headers: Iterable[tuple[str, str]] | None, method: str, body: Any,
                 host: str, port: int) -> list[tuple[str, str]]:
    """Return request headers with Host, and the body's Content-Length when a body is given.

    For POST, PUT and PATCH without a Content-Type, a form Content-Type is added, with a
    Content-Length (0 with no body); a body method given a Content-Type but no body gets no
    Content-Length, so that a server's 411 can be tested.
    """
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if "host" not in names:
        headers.append(("Host", host if port == 80 else f"{host}:{port}"))
    needs_type = method.upper() in methods_with_bodies and "content-type" not in names
    if needs_type:
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    if "content-length" not in names and (body is not None or needs_type):
        headers.append(("Content-Length", str(len(body or b""))))
    return headers


def shb(response: http.client.HTTPResponse) -> tuple[str, list[tuple[str, str]], bytes]:
    """Return status, headers, body of an http.client response."""
    status = f"{response.status} {response.reason}"
    return status, response.getheaders(), response.read()


def strip_netloc(url: str) -> str:
    """Return the server-absolute part of ``url`` (path, params and query)."""
    parts = urllib.parse.urlparse(url)
    return urllib.parse.urlunparse(("", "", parts.path, parts.params, parts.query, ""))


def _open_once(url: Any, headers: Any, method: str, body: Any, host: str, port: int,
               http_conn: Any, protocol: str, ssl_context: Any = None,
               timeout: float | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
    is_instance = hasattr(http_conn, "host")
    if is_instance:
        conn = http_conn
    else:
        options: dict[str, Any] = {"timeout": timeout}
        if ssl_context is not None:
            options["context"] = ssl_context
        conn = http_conn(interface(host), port, **options)
    conn._http_vsn_str = protocol
    conn._http_vsn = int("".join(ch for ch in protocol if ch.isdigit()))
    if isinstance(url, bytes):
        url = url.decode("utf-8")
    try:
        conn.putrequest(method.upper(), url, skip_host=True, skip_accept_encoding=True)
        for key, value in cleanHeaders(headers, method, body, host, port):
            conn.putheader(key, value.encode("latin-1") if isinstance(value, str) else value)
        conn.endheaders()
        if body is not None:
            conn.send(body)
        return shb(conn.getresponse())
    finally:
        if not is_instance:
            conn.close()


def openURL(url: Any, headers: Iterable[tuple[str, str]] | None = None, method: str = "GET",
            body: Any = None, host: str = "127.0.0.1", port: int = 8000,
            http_conn: Any = http.client.HTTPConnection, protocol: str = "HTTP/1.1",
            raise_subcls: Any = (), ssl_context: Any = None, timeout: float | None = None,
            attempts: int = 10) -> tuple[str, list[tuple[str, str]], bytes]:
    """Open ``url`` on host:port and return (status, headers, body).

    ``http_conn`` is a connection class (a connection per request) or an open connection.
    A socket error is retried (the server may be restarting), up to ``attempts`` times,
    half a second apart, except the OSError subclasses in ``raise_subcls``.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    for attempt in range(attempts):
        try:
            return _open_once(url, headers, method, body, host, port, http_conn, protocol,
                              ssl_context, timeout)
        except OSError as error:
            if (raise_subcls and isinstance(error, raise_subcls)) or attempt == attempts - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


ignored_exceptions: list[type[BaseException]] = []
"""Exception types that ``server_error`` leaves to the framework."""

ignore_all = False
"""When True, ``server_error`` leaves every exception to the framework."""


class ServerError(Exception):
    """Raised by getPage when the server reported an error through ``server_error``."""

    on = False


def server_error(exc: Any = None) -> bool:
    """Note a server-side exception (for getPage to raise ServerError); True if noted."""
    kind, value, tb = exc if exc is not None else sys.exc_info()
    if ignore_all or kind in ignored_exceptions:
        return False
    ServerError.on = True
    sys.stderr.write("".join(traceback.format_exception(kind, value, tb)) + "\n")
    return True


class WebClient:
    """A client for one server with the reference's WebCase assertions.

    ``HTTP_CONN`` is the connection class, or while ``persistent`` is on, the open connection
    every request goes through.
    """

    HOST = "127.0.0.1"
    PORT = 8000
    PROTOCOL = "HTTP/1.1"
    HTTP_CONN: Any = http.client.HTTPConnection
    scheme = "http"
    encoding = "utf-8"
    ssl_context: Any = None
    timeout: float | None = None

    status: str = ""
    headers: list[tuple[str, str]] = []
    body: bytes = b""
    cookies: list[tuple[str, str]] = []
    url: str = ""
    time: float = 0.0

    def __init__(self, host: str | None = None, port: int | None = None) -> None:
        if host is not None:
            self.HOST = host
        if port is not None:
            self.PORT = port

    # -- connections ------------------------------------------------------------------------

    @property
    def _Conn(self) -> type[http.client.HTTPConnection]:  # noqa: N802
        return http.client.HTTPSConnection if self.scheme == "https" else \
            http.client.HTTPConnection

    def interface(self) -> str:
        """Return the address a client connects to for our HOST."""
        return interface(self.HOST)

    def get_conn(self, auto_open: bool = False) -> http.client.HTTPConnection:
        """Return a new, connected connection to our HTTP server."""
        options: dict[str, Any] = {"timeout": self.timeout}
        if self.scheme == "https" and self.ssl_context is not None:
            options["context"] = self.ssl_context
        conn = self._Conn(self.interface(), self.PORT, **options)
        conn.auto_open = auto_open
        conn.connect()
        return conn

    def set_persistent(self, on: bool = True, auto_open: bool = False) -> None:
        """Send the following requests over one open connection (or, off, one each)."""
        if hasattr(self.HTTP_CONN, "host"):
            self.HTTP_CONN.close()
        self.HTTP_CONN = self.get_conn(auto_open=auto_open) if on else self._Conn

    @property
    def persistent(self) -> bool:
        """True while requests share one open connection."""
        return hasattr(self.HTTP_CONN, "host")

    @persistent.setter
    def persistent(self, on: bool) -> None:
        self.set_persistent(on)

    def close(self) -> None:
        """Close the persistent connection, if any."""
        if self.persistent:
            self.set_persistent(False)

    def base(self) -> str:
        port = "" if (self.scheme, self.PORT) in (("http", 80), ("https", 443)) else \
            f":{self.PORT}"
        return f"{self.scheme}://{interface(self.HOST)}{port}"

    def getPage(self, url: Any, headers: Iterable[tuple[str, str]] | None = None,  # noqa: N802
                method: str = "GET", body: Any = None, protocol: str | None = None,
                raise_subcls: Any = ()) -> tuple[str, list[tuple[str, str]], bytes]:
        """Open the url; remember status, headers, body and the cookies to send back."""
        ServerError.on = False
        if isinstance(url, bytes):
            url = url.decode("utf-8")
        if url.startswith(("http://", "https://")) and not self.persistent:
            url = strip_netloc(url) or "/"
        self.url = url
        start = time.monotonic()
        self.status, self.headers, self.body = openURL(
            url, headers, method, body, self.HOST, self.PORT, self.HTTP_CONN,
            protocol or self.PROTOCOL, raise_subcls=raise_subcls or (),
            ssl_context=self.ssl_context, timeout=self.timeout)
        self.time = time.monotonic() - start
        self.cookies = [("Cookie", v) for k, v in self.headers if k.lower() == "set-cookie"]
        if ServerError.on:
            raise ServerError()
        return self.status, self.headers, self.body

    @property
    def status_code(self) -> int:
        """The status code of the last response, as an int."""
        return int(self.status[:3])

    # -- assertions -------------------------------------------------------------------------

    def _fail(self, msg: str) -> None:
        excerpt = self.body[:4000].decode(self.encoding, "replace")
        raise AssertionError(f"{msg}\n  for {self.url}: {self.status}\n  headers: "
                             f"{self.headers!r}\n  body: {excerpt!r}")

    def _handlewebError(self, msg: str) -> None:  # noqa: N802
        """Fail with ``msg`` and the response (the reference's name)."""
        self._fail(msg)

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
            self._fail("The error page differs from the one expected:\n" + page.decode("utf-8"))
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
