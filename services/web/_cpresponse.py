"""The Response: status, headers, cookies and body of the current request's answer.

The body may be bytes, a list of bytes, a file, an iterable or a generator; text is refused
(``tools.encode``, on by default, encodes it first). ``finalize`` checks the status, computes
Content-Length (collapsing a buffered body, so errors inside generators still become error
pages) and turns headers and cookies into the list WSGI sends; with ``stream`` on, status and
headers go out first and the server pulls the body. Every closable body the response ever
held is remembered and closed once when the request ends, consumed or not.
"""

from __future__ import annotations

import http.cookies
import time
from typing import Any

from services.web._cperror import HTTPError
from services.web._cphooks import log_traceback
from services.web.lib import closable, file_generator, httputil

__all__ = ["Response", "prepare_iter"]

_UNICODE_ERR = ("A page handler returned str where bytes are expected: encode it, or turn "
                "tools.encode on.")


def prepare_iter(value: Any) -> Any:
    """Make ``value`` (bytes, text, a file, None or an iterable) an iterable body."""
    if isinstance(value, (bytes, str)):
        return [value] if value else []
    if value is None:
        return []
    if hasattr(value, "read"):
        return file_generator(value)
    return value


class Response:
    """An HTTP response: status, headers, cookie and body for the current request."""

    status: Any = ""
    """What the handler set (an int or a string); finalize turns it into e.g. '200 OK'."""

    header_list: list[tuple[str, str]] | None = None
    """The headers as (name, value) pairs, filled by finalize."""

    output_status = ""
    """The status line's text as sent ('200 OK'), filled by finalize."""

    timeout = 300
    """Seconds to allow responses to run."""

    timed_out = False
    """True when the response has run longer than ``timeout``."""

    stream = False
    """If False, the body is collapsed (buffered) before sending; if True, it is streamed."""

    server_name = "sitebus"

    def __init__(self) -> None:
        self._body: Any = []
        self._closables: list[Any] | None = None
        self.time = now = time.time()
        self.headers = headers = httputil.HeaderMap()
        dict.update(headers, {"Content-Type": "text/html", "Server": self.server_name,
                              "Date": httputil.HTTPDate(now)})

    def __getattr__(self, name: str) -> Any:
        if name == "cookie":
            cookie = self.cookie = http.cookies.SimpleCookie()
            return cookie
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def body(self) -> Any:
        """The body (entity) of the response, as an iterable of bytes."""
        return self._body

    @body.setter
    def body(self, value: Any) -> None:
        if isinstance(value, str):
            raise ValueError(_UNICODE_ERR)
        if isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    raise ValueError(_UNICODE_ERR)
            self._body = value
            return
        value = prepare_iter(value)
        self.close_later(value)
        self._body = value

    def close_later(self, body: Any) -> None:
        """Remember ``body`` (if it can be closed) to close it when the request ends."""
        if isinstance(body, (list, tuple, bytes)) or not closable(body):
            return
        if self._closables is None:
            self._closables = [body]
        elif not any(body is known for known in self._closables):
            self._closables.append(body)

    def collapse_body(self) -> bytes:
        """Collapse the body to a single byte string, and return it."""
        body = self._body
        new_body = body if isinstance(body, bytes) else b"".join(body)
        self._body = [new_body] if new_body else []
        return new_body

    def close_body(self) -> None:
        """Call close() on every closable body this response held, once each."""
        closables, self._closables = self._closables, None
        for item in closables or ():
            try:
                item.close()
            except Exception:
                log_traceback()

    def check_timeout(self) -> None:
        """Set ``timed_out`` if the response has run longer than ``timeout``."""
        if time.time() > self.time + self.timeout:
            self.timed_out = True

    def finalize(self) -> None:
        """Transform the headers (and cookies) into header_list; compute Content-Length."""
        try:
            code, reason, _ = httputil.valid_status(self.status)
        except ValueError as error:
            raise HTTPError(500, error.args[0]) from None
        headers = self.headers
        self.status = self.output_status = f"{code} {reason}"
        if self.stream:
            if dict.get(headers, "Content-Length") is None:
                dict.pop(headers, "Content-Length", None)
        elif code < 200 or code in (204, 205, 304):
            dict.pop(headers, "Content-Length", None)
            self._body = []
        elif dict.get(headers, "Content-Length") is None:
            body = self._body
            if type(body) is list and len(body) == 1 and type(body[0]) is bytes:
                length = len(body[0])  # the usual case: already one chunk
            else:
                length = len(self.collapse_body())
            dict.__setitem__(headers, "Content-Length", str(length))
        self.header_list = header_list = headers.native_output()
        cookie = self.__dict__.get("cookie")
        if cookie:
            for line in cookie.output().split("\r\n"):
                name, value = line.split(": ", 1)
                header_list.append((name, httputil.HeaderMap.encode(value)))
