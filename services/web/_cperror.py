"""Exceptions that page handlers raise to answer at once, and the default error page.

``HTTPError(status, message)`` answers with a 4xx/5xx status and an error page;
``NotFound`` is ``HTTPError(404)``; ``HTTPRedirect(urls, status)`` answers 3xx with a
Location; ``InternalRedirect(path)`` makes the framework handle another path in the same
request, with its config recalculated. Each has ``set_response()``, which writes the status,
headers and body onto the current response, and is callable (``request.handler =
NotFound()`` raises it), as the reference's are.

Error pages: ``request.error_page`` maps a code (or ``'default'``) to a template file or a
callable; otherwise the built-in page below is used. Message and traceback are HTML-escaped
as text (``<``, ``>``, ``&``; quotes stay, as the reference has them: the values go between
tags, never into attributes); the traceback is shown only where ``request.show_tracebacks``
is on.

Redirect targets are made absolute against the current URL. Characters that may not appear
in a URL (controls, spaces, non-ASCII) are percent-encoded, so a redirect can never inject a
header line, and the note in the body escapes the URL, so it can never inject markup.
"""

from __future__ import annotations

import contextlib
import html
import re
import sys
import traceback as _traceback
import urllib.parse
from collections.abc import Iterator
from typing import Any

from services.web._serving import serving
from services.web.lib import httputil

__all__ = [
    "CherryPyException",
    "HTTPError",
    "HTTPRedirect",
    "InternalRedirect",
    "NotFound",
    "TimeoutError",
    "bare_error",
    "clean_headers",
    "format_exc",
    "get_error_page",
]

VERSION = "sitebus"


class CherryPyException(Exception):
    """A base class for the framework's exceptions."""


class TimeoutError(CherryPyException):  # noqa: A001 (the reference's name)
    """The response took longer than ``response.timeout`` allows."""


class InternalRedirect(CherryPyException):
    """Handle another path within the same request: a new URL, the same socket.

    The path may be relative to the current one, may carry a query string, and the new
    request is a GET with no body. ``request.prev`` is the request that redirected.
    """

    def __init__(self, path: str, query_string: str = "") -> None:
        self.request = serving.request
        self.query_string = query_string
        if "?" in path:
            path, self.query_string = path.split("?", 1)
        self.path = urllib.parse.urljoin(self.request.path_info, path)
        super().__init__(self.path, self.query_string)


# Characters a URL may carry as they are; everything else is percent-encoded.
_URL_SAFE = "/:?#[]@!$&'()*+,;=%~-._"
_URL_UNSAFE = re.compile(r"[^\x21-\x7e]|[\"<>\\^`{|}]")

_REDIRECT_NOTES = {
    300: "This resource can be found at ",
    301: "This resource has permanently moved to ",
    302: "This resource resides temporarily at ",
    303: "This resource can be found at ",
    307: "This resource has moved temporarily to ",
    308: "This resource has been moved to ",
}


def safe_url(url: str) -> str:
    """Return ``url`` with controls, spaces, non-ASCII and unsafe characters percent-encoded."""
    if _URL_UNSAFE.search(url) is None:
        return url
    return urllib.parse.quote(url, safe=_URL_SAFE)


class HTTPRedirect(CherryPyException):
    """Answer with a 3xx redirect to ``urls`` (one URL or a list; the first is the Location).

    The default status is 303 for HTTP/1.1 clients and 302 for HTTP/1.0 ones.
    """

    encoding = "utf-8"

    def __init__(self, urls: str | list[str], status: int | str | None = None,
                 encoding: str | None = None) -> None:
        from services.web._helper import url as current_url

        request = serving.request
        if isinstance(urls, (str, bytes)):
            urls = [urls]
        here = current_url()
        abs_urls = []
        for target in urls:
            if isinstance(target, bytes):
                target = target.decode(encoding or self.encoding)
            abs_urls.append(safe_url(urllib.parse.urljoin(here, target)))
        if status is None:
            code = 303 if request.protocol >= (1, 1) else 302
        else:
            code = int(status)
            if code < 300 or code > 399:
                raise ValueError(f"HTTPRedirect: expected a 3xx status, got {code}")
        self.code = self.status = code
        self.urls = abs_urls
        super().__init__(abs_urls, code)

    def set_response(self) -> None:
        """Modify the current response to this redirect."""
        response = serving.response
        response.status = status = self.status
        headers = response.headers
        if status in _REDIRECT_NOTES:
            headers["Content-Type"] = "text/html;charset=utf-8"
            headers["Location"] = self.urls[0]
            note = _REDIRECT_NOTES[status]
            body = "<br />\n".join(
                f'{note}<a href="{html.escape(u, quote=True)}">{html.escape(u)}</a>.'
                for u in self.urls)
            response.body = body.encode("utf-8")
            headers.pop("Content-Length", None)
        elif status == 304:
            for key in ("Allow", "Content-Encoding", "Content-Language", "Content-Length",
                        "Content-Location", "Content-MD5", "Content-Range", "Content-Type",
                        "Expires", "Last-Modified"):
                headers.pop(key, None)
            response.body = None
        elif status == 305:
            headers["Location"] = self.urls[0]
            response.body = None
            headers.pop("Content-Length", None)
        else:
            raise ValueError(f"The {status} status code is unknown.")

    def __call__(self) -> None:
        """Use this exception as request.handler (raise self)."""
        raise self


def shows_tracebacks(request: Any) -> bool:
    """Return whether error pages for ``request`` may show tracebacks.

    A request whose config has not been applied yet (it failed early) follows the site
    config, so ``environment = 'production'`` hides tracebacks from the very start.
    """
    own = request.__dict__.get("show_tracebacks")
    if own is not None:
        return bool(own)
    from sitebus.site.container import config

    return bool(config.get("request.show_tracebacks", type(request).show_tracebacks))


def clean_headers(status: int) -> None:
    """Remove the headers of the original content, which do not apply to an error page."""
    headers = serving.response.headers
    for key in ("Accept-Ranges", "Age", "Cache-Control", "Content-Encoding",
                "Content-Length", "Expires", "Content-Location", "Content-MD5",
                "Last-Modified"):
        headers.pop(key, None)
    if status != 405:  # a 405 must say what is allowed
        headers.pop("Allow", None)
    if status != 416:
        headers.pop("Content-Range", None)


class HTTPError(CherryPyException):
    """Answer at once with an error status (400-599) and an error page.

    ``message`` is shown on the page; the default is the status's standard description.
    """

    status: int | str
    code: int
    reason: str

    def __init__(self, status: int | str = 500, message: str | None = None) -> None:
        self.status = status
        try:
            self.code, self.reason, default_message = httputil.valid_status(status)
        except ValueError as error:
            raise self.__class__(500, error.args[0]) from None
        if self.code < 400 or self.code > 599:
            raise ValueError(f"HTTPError: expected a 4xx or 5xx status, got {self.code}")
        self._message = message or default_message
        super().__init__(status, message)

    def set_response(self) -> None:
        """Modify the current response to this error: status, headers and the error page."""
        response = serving.response
        clean_headers(self.code)
        response.status = self.status
        tb = format_exc() if shows_tracebacks(serving.request) else None
        response.headers.pop("Content-Length", None)
        response.body = get_error_page(self.status, traceback=tb, message=self._message)
        pad_error_body(self.code)

    def get_error_page(self, *args: Any, **kwargs: Any) -> bytes:
        return get_error_page(*args, **kwargs)

    def __call__(self) -> None:
        """Use this exception as request.handler (raise self)."""
        raise self

    @classmethod
    @contextlib.contextmanager
    def handle(cls, exception: type[BaseException] | tuple[type[BaseException], ...],
               status: int = 500, message: str = "") -> Iterator[None]:
        """Translate ``exception`` raised inside the block into an HTTPError."""
        try:
            yield
        except exception as exc:
            raise cls(status, message or str(exc)) from exc


class NotFound(HTTPError):
    """Answer 404 for ``path`` (default: the current request's path)."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            request = serving.request
            path = request.script_name + request.path_info
        self.args = (path,)
        super().__init__(404, f"The path '{path}' was not found.")


# The built-in error page. Its fields (%(status)s, %(message)s, %(traceback)s, %(version)s)
# are those a custom error_page template file uses; tests find the traceback as the text of
# the element with id "traceback", and the version line in the one with id "powered_by".
_HTTPErrorTemplate = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>%(status)s</title>
<style>
body { font-family: sans-serif; margin: 2em; }
#traceback { color: #b00; white-space: pre-wrap; }
#powered_by { margin-top: 2em; padding-top: .5em; border-top: 1px solid #999; font-size: small; }
</style>
</head>
<body>
<main>
<h2>%(status)s</h2>
<p>%(message)s</p>
<pre id="traceback">%(traceback)s</pre>
</main>
<div id="powered_by">Powered by %(version)s</div>
</body>
</html>
"""


def _page_fields(status: int | str, kwargs: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    try:
        code, reason, message = httputil.valid_status(status)
    except ValueError as error:
        raise HTTPError(500, error.args[0]) from None
    if kwargs.get("status") is None:
        kwargs["status"] = f"{code} {reason}"
    if kwargs.get("message") is None:
        kwargs["message"] = message
    if kwargs.get("traceback") is None:
        kwargs["traceback"] = ""
    if kwargs.get("version") is None:
        kwargs["version"] = VERSION
    for key, value in kwargs.items():
        kwargs[key] = "" if value is None else html.escape(str(value), quote=False)
    return code, kwargs


FRIENDLY_ERROR_SIZES = {400: 512, 403: 256, 404: 512, 405: 256, 406: 512, 408: 512,
                        409: 512, 410: 256, 500: 512, 501: 512, 505: 512}
"""Statuses whose page Internet Explorer replaced by its own "friendly" one when the body was
no larger than this many bytes (Microsoft KB 218155)."""


def pad_error_body(code: int) -> None:
    """Pad a short error page with spaces to one byte over its status's friendly-error size,
    as the reference does, so that such browsers show the site's page, not their own."""
    limit = FRIENDLY_ERROR_SIZES.get(code)
    if limit is None:
        return
    response = serving.response
    body = response.collapse_body()
    if 0 < len(body) <= limit:
        response.body = body.ljust(limit + 1)
        if "Content-Length" in response.headers:  # a page that set its own (serve_file)
            response.headers["Content-Length"] = str(limit + 1)


def render_error_page(status: int | str, **kwargs: Any) -> bytes:
    """Return the built-in error page for ``status`` (no custom pages, no side effects)."""
    _, fields = _page_fields(status, kwargs)
    return (_HTTPErrorTemplate % fields).encode("utf-8")


def get_error_page(status: int | str, **kwargs: Any) -> Any:
    """Return an HTML page (bytes, or an iterator of bytes) for an error status.

    ``kwargs`` may give ``message``, ``traceback`` and ``version``; they are HTML-escaped.
    A custom page from ``request.error_page`` (a template file or a callable) wins; if it
    fails, the built-in page says so.
    """
    code, kwargs = _page_fields(status, kwargs)
    pages = getattr(serving.request, "error_page", None) or {}
    error_page = pages.get(code) or pages.get("default")
    template = _HTTPErrorTemplate
    if error_page:
        try:
            if callable(error_page):
                return _custom_page_body(error_page(**kwargs))
            with open(error_page, "rb") as handle:
                template = handle.read().decode("utf-8")
        except Exception:
            failure = _traceback.format_exception_only(*sys.exc_info()[:2])[-1]
            extra = kwargs["message"]
            if extra:
                extra += "<br />"
            extra += ("In addition, the custom error page failed:\n<br />"
                      + html.escape(failure, quote=False))
            kwargs["message"] = extra
            template = _HTTPErrorTemplate
    serving.response.headers["Content-Type"] = "text/html;charset=utf-8"
    try:
        return (template % kwargs).encode("utf-8")
    except (KeyError, TypeError, ValueError) as error:
        kwargs["message"] += "<br />In addition, the custom error page template failed: " + \
            html.escape(repr(error), quote=False)
        return (_HTTPErrorTemplate % kwargs).encode("utf-8")


def _custom_page_body(result: Any) -> Any:
    from services.web.lib import is_iterator
    from services.web.lib.encoding import UTF8StreamEncoder

    if is_iterator(result):
        return UTF8StreamEncoder(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    if not isinstance(result, bytes):
        raise ValueError("error_page: a custom error page must give bytes, str or an iterator, "
                         f"got {type(result).__name__}")
    return result


def format_exc(exc: BaseException | None = None) -> str:
    """Return the current exception's traceback as text, or '' when there is none."""
    if exc is None:
        exc = sys.exc_info()[1]
    if exc is None:
        return ""
    return "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))


def bare_error(extrabody: str | bytes | None = None
               ) -> tuple[str, list[tuple[str, str]], list[bytes]]:
    """Return (status, headers, body) for a failure outside the request machinery.

    Made of nothing that could fail in turn; ``extrabody`` is appended to the body.
    """
    body = b"Unrecoverable error in the server."
    if extrabody:
        if isinstance(extrabody, str):
            extrabody = extrabody.encode("utf-8")
        body += b"\n" + extrabody
    return ("500 Internal Server Error",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            [body])
