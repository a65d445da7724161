"""Functions for builtin tools: logging on errors, redirects, headers, Accept, Allow...

Each function runs inside a request (it reads ``serving.request``/``serving.response``) and
takes its settings as keyword arguments, which come from ``tools.<name>.<arg>`` config.
"""

from __future__ import annotations

import logging
import re
import typing
from collections.abc import Iterable, Iterator
from typing import Any

from services.web._cperror import HTTPError, HTTPRedirect, InternalRedirect
from services.web._cprequest import current_log, hookpoints
from services.web._serving import serving
from services.web.lib import is_iterator

__all__ = [
    "accept",
    "allow",
    "convert_params",
    "flatten",
    "ignore_headers",
    "log_hooks",
    "log_request_headers",
    "log_traceback",
    "redirect",
    "referer",
    "response_headers",
    "trailing_slash",
]


def log_traceback(severity: int = logging.ERROR, debug: bool = False) -> None:
    """Write the last error's traceback to the error log."""
    current_log().error("", "HTTP", severity=severity, traceback=True)


def log_request_headers(debug: bool = False) -> None:
    """Write the request headers to the error log."""
    lines = [f"  {name}: {value}" for name, value in serving.request.header_list]
    current_log().error("\nRequest Headers:\n" + "\n".join(lines), "HTTP")


def log_hooks(debug: bool = False) -> None:
    """Write the request's hooks, by point, to the error log."""
    from services.web._helper import url

    request = serving.request
    points = list(hookpoints) + [k for k in request.hooks if k not in hookpoints]
    lines = []
    for point in points:
        lines.append(f"    {point}:")
        lines.extend(f"        {hook!r}" for hook in request.hooks.get(point, []))
    current_log().error(f"\nRequest Hooks for {url()}:\n" + "\n".join(lines), "HTTP")


def redirect(url: str = "", internal: bool = True, debug: bool = False) -> None:
    """Raise InternalRedirect or HTTPRedirect to the given url."""
    if internal:
        raise InternalRedirect(url)
    raise HTTPRedirect(url)


def trailing_slash(missing: bool = True, extra: bool = False, status: int | None = None,
                   debug: bool = False) -> None:
    """Redirect if path_info has (missing|extra) trailing slash."""
    from services.web._helper import url

    request = serving.request
    pi = request.path_info
    if request.is_index is True:
        if missing and not pi.endswith("/"):
            raise HTTPRedirect(url(pi + "/", request.query_string), status=status or 301)
    elif request.is_index is False:
        if extra and pi.endswith("/") and pi != "/":
            raise HTTPRedirect(url(pi[:-1], request.query_string), status=status or 301)


def flatten(debug: bool = False) -> None:
    """Wrap response.body in a generator that recursively iterates over it."""

    def flattener(body: Iterable[Any]) -> Iterator[Any]:
        for chunk in body:
            if is_iterator(chunk):
                yield from flattener(chunk)
            else:
                yield chunk

    response = serving.response
    response.body = flattener(response.body)


def response_headers(headers: Iterable[tuple[str, str]] | None = None,
                     debug: bool = False) -> None:
    """Set headers on the response."""
    response_headers_map = serving.response.headers
    for name, value in headers or []:
        response_headers_map[name] = value


response_headers.failsafe = True  # type: ignore[attr-defined]


def allow(methods: Any = None, debug: bool = False) -> None:
    """Raise 405 if request.method is not in ``methods`` (default GET and HEAD).

    The Allow header is set either way; HEAD is allowed wherever GET is.
    """
    if not isinstance(methods, (tuple, list)):
        methods = [methods]
    methods = [m.upper() for m in methods if m]
    if not methods:
        methods = ["GET", "HEAD"]
    elif "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")
    serving.response.headers["Allow"] = ", ".join(methods)
    if serving.request.method not in methods:
        raise HTTPError(405)


def ignore_headers(headers: Iterable[str] = ("Range",), debug: bool = False) -> None:
    """Delete request headers whose field names are included in ``headers``."""
    request_headers = serving.request.headers
    for name in headers:
        request_headers.pop(name, None)


def referer(pattern: str, accept: bool = True, accept_missing: bool = False,
            error: int = 403, message: str = "Forbidden Referer header.",
            debug: bool = False) -> None:
    """Raise HTTPError if Referer header does/does not match the given pattern."""
    ref = serving.request.headers.get("Referer")
    if ref is None:
        if accept_missing:
            return
    elif accept == bool(re.match(pattern, ref)):
        return
    raise HTTPError(error, message)


def accept(media: str | list[str] | None = None, debug: bool = False) -> str | None:
    """Return the client's preferred media type from the given list; 406 if none fits.

    The client's Accept header is read in its order of preference; ``*/*`` and ``type/*``
    prefer the earlier entries of ``media``. Without an Accept header anything goes.
    """
    if not media:
        return None
    if isinstance(media, str):
        media = [media]
    request = serving.request
    ranges = request.headers.elements("Accept")
    if not ranges:
        return media[0]
    for element in ranges:
        if element.qvalue <= 0:
            continue
        if element.value == "*/*":
            return media[0]
        if element.value.endswith("/*"):
            mtype = element.value[:-1]
            for m in media:
                if m.startswith(mtype):
                    return m
        elif element.value in media:
            return element.value
    header = request.headers.get("Accept")
    if header is None:
        msg = "Your client did not send an Accept header."
    else:
        msg = f"Your client sent this Accept header: {header}."
    msg += f" But this resource only emits these media types: {', '.join(media)}."
    raise HTTPError(406, msg)


def convert_params(exception: type[BaseException] = ValueError, error: int = 400) -> None:
    """Convert request params by the handler's annotations; a failure answers ``error``."""
    request = serving.request
    handler = request.handler
    func = getattr(handler, "callable", handler)
    try:
        types = typing.get_type_hints(func)
    except Exception:
        types = dict(getattr(func, "__annotations__", {}))
    types.pop("return", None)
    with HTTPError.handle(exception, error):
        for key in set(types).intersection(request.params):
            request.params[key] = types[key](request.params[key])


# -- session_auth (web2a): the reference keeps it here; it lives in its own module -------------

from services.web.lib.sessionauth import SessionAuth, session_auth  # noqa: E402

__all__ += ["SessionAuth", "session_auth"]
