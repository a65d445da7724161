"""Functions for builtin tools: logging on errors, redirects, headers, Accept, Allow...

Each function runs inside a request (it reads ``serving.request``/``serving.response``) and
takes its settings as keyword arguments, which come from ``tools.<name>.<arg>`` config.

The second block holds the tools that trust or read more of the request:

- ``proxy`` rewrites ``request.base`` (and ``request.remote.ip``) from a reverse proxy's
  X-Forwarded-* headers. It trusts only well-formed values: a scheme other than http or
  https, a host that is not a host, or an address that is not an IP is ignored, so a forged
  header cannot turn ``url()`` or a redirect into ``javascript:...``. Unlike the reference
  (which takes the first address of X-Forwarded-For, one the client may have written), the
  client's address is taken ``proxies`` entries from the end (default 1: the entry the
  proxy in front of the site added). With the tool off nothing reads these headers.
- ``autovary`` fills in Vary from the request headers the application actually read.
- ``validate_etags`` (``tools.etags``) and ``validate_since`` answer conditional requests
  (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since) with 304 or 412.
  Entity tags are compared as RFC 7232 says (strong for If-Match, weak for If-None-Match,
  a quoted list may hold commas); dates are compared as dates, falling back to the
  reference's exact text comparison when one does not parse; If-Modified-Since is ignored
  when If-None-Match is present.
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import logging
import re
import typing
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

from services.web._cperror import HTTPError, HTTPRedirect, InternalRedirect
from services.web._cprequest import current_log, hookpoints
from services.web._serving import serving
from services.web.lib import is_iterator, set_vary_header
from services.web.lib.httputil import HeaderMap, valid_status

__all__ = [
    "MonitoredHeaderMap",
    "accept",
    "allow",
    "autovary",
    "convert_params",
    "flatten",
    "ignore_headers",
    "log_hooks",
    "log_request_headers",
    "log_traceback",
    "proxy",
    "redirect",
    "referer",
    "response_headers",
    "trailing_slash",
    "validate_etags",
    "validate_since",
]


def log_traceback(severity: int = logging.ERROR, debug: bool = False) -> None:
    """Log the traceback of the error being handled (at ERROR, or ``severity``)."""
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
    """Send the request to `url`: inside the server (internal) or through the client."""
    if internal:
        raise InternalRedirect(url)
    raise HTTPRedirect(url)


def trailing_slash(missing: bool = True, extra: bool = False, status: int | None = None,
                   debug: bool = False) -> None:
    """Redirect to the URL with the slash its handler expects: added for an index, else removed."""
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
    """Let a handler return nested iterables: the body is walked depth first, in order."""

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
    """Add the configured (name, value) pairs to the response's headers."""
    response_headers_map = serving.response.headers
    for name, value in headers or []:
        response_headers_map[name] = value


response_headers.failsafe = True  # type: ignore[attr-defined]


def allow(methods: Any = None, debug: bool = False) -> None:
    """Raise 405 if request.method is not in ``methods`` (default GET and HEAD).

    The Allow header is set either way; HEAD is allowed wherever GET is.
    """
    given = methods if isinstance(methods, (tuple, list)) else [methods]
    allowed = [name.upper() for name in given if name] or ["GET", "HEAD"]
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.append("HEAD")
    serving.response.headers["Allow"] = ", ".join(allowed)
    if serving.request.method not in allowed:
        raise HTTPError(405)


def ignore_headers(headers: Iterable[str] = ("Range",), debug: bool = False) -> None:
    """Drop the named headers from the request before the handler sees them."""
    request_headers = serving.request.headers
    for name in headers:
        request_headers.pop(name, None)


def referer(pattern: str, accept: bool = True, accept_missing: bool = False,
            error: int = 403, message: str = "Forbidden Referer header.",
            debug: bool = False) -> None:
    """Answer `error` unless the Referer matches `pattern` (accept=False: unless it does not)."""
    ref = serving.request.headers.get("Referer")
    if ref is None:
        if accept_missing:
            return
    elif accept == bool(re.match(pattern, ref)):
        return
    raise HTTPError(error, message)


def accept(media: str | list[str] | None = None, debug: bool = False) -> str | None:
    """Pick from ``media`` the type the client's Accept header likes best; 406 if none fits.

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
        msg = "The request has no Accept header."
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

# -- proxies, Vary, conditional requests (issue 9, second half) -----------------------------

_host_pattern = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(?::[0-9]{1,5})?$")


def _forwarded_base(value: str) -> str | None:
    """Return a forwarded host (or scheme://host) if it is well formed, else None."""
    value = value.split(",")[0].strip()
    if "://" in value:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or parts.path.strip("/") \
                or parts.query or not _host_pattern.match(parts.netloc):
            return None
        return f"{parts.scheme.lower()}://{parts.netloc}"
    return value if _host_pattern.match(value) else None


def proxy(base: str | None = None, local: str = "X-Forwarded-Host",
          remote: str = "X-Forwarded-For", scheme: str = "X-Forwarded-Proto",
          debug: bool = False, proxies: int = 1) -> None:
    """Behind a reverse proxy, rebuild the URL the client used (scheme://host[:port][/path]).

    ``local`` names the header carrying the host the client asked for (``'Origin'`` for
    Squid); to put a path in the base, set ``base`` to it (no trailing slash) and ``local``
    to ''. ``remote`` names the header carrying the client's address ('' leaves
    ``request.remote.ip`` alone); ``proxies`` is how many proxies in front of the site
    append to it. ``scheme`` names the header carrying the scheme (X-Forwarded-Ssl: on
    works too).
    """
    request = serving.request
    headers = request.headers
    new_scheme = None
    if scheme:
        value = headers.get(scheme)
        if value is not None:
            value = value.split(",")[0].strip().lower()
            if value == "on" and "ssl" in scheme.lower():
                new_scheme = "https"
            elif value in ("http", "https"):
                new_scheme = value
    if not new_scheme:
        new_scheme = request.base.partition("://")[0] or request.scheme
    if local:
        forwarded = headers.get(local)
        if forwarded is not None:
            base = _forwarded_base(forwarded) or base
    if not base:
        host = headers.get("Host", "")
        base = host if _host_pattern.match(host) else \
            urllib.parse.urlsplit(request.base).netloc
    if "://" not in base:
        base = f"{new_scheme}://{base}"
    request.base = base.rstrip("/")
    if remote:
        value = headers.get(remote)
        if value:
            addresses = [a.strip() for a in value.split(",")]
            if 1 <= proxies <= len(addresses):
                candidate = addresses[-proxies]
                try:
                    request.remote.ip = str(ipaddress.ip_address(candidate))
                except ValueError:
                    pass


class MonitoredHeaderMap(HeaderMap):
    """A HeaderMap which records the names of the headers read (``accessed_headers``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accessed_headers: set[str] = set()

    def __getitem__(self, key: Any) -> Any:
        self.accessed_headers.add(str(key).title())
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.accessed_headers.add(str(key).title())
        return super().__contains__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.accessed_headers.add(str(key).title())
        return super().get(key, default)

    def elements(self, key: str) -> list[Any]:
        self.accessed_headers.add(str(key).title())
        return super().elements(key)


def autovary(ignore: Any = None, debug: bool = False) -> None:
    """Fill in the Vary response header from the request headers the application read.

    ``ignore`` names headers never to list (default Content-Disposition, Content-Length,
    Content-Type).
    """
    request = serving.request
    monitored = MonitoredHeaderMap()
    dict.update(monitored, request.headers)
    request.headers = monitored
    ignored = {"Content-Disposition", "Content-Length", "Content-Type"} if ignore is None \
        else {str(name).title() for name in ignore}

    def set_response_header() -> None:
        response = serving.response
        for name in sorted(monitored.accessed_headers - ignored):
            set_vary_header(response, name)

    request.hooks.attach("before_finalize", set_response_header, priority=95)


_etag_pattern = re.compile(r'\s*((?:W/)?"[^"]*"|[^,\s]+)\s*(?:,|$)')


def _etags(value: str) -> list[str]:
    """Return the entity tags of an If-Match/If-None-Match value (``['*']`` for any)."""
    return [m.group(1) for m in _etag_pattern.finditer(value) if m.group(1)]


def _opaque(tag: str) -> tuple[bool, str]:
    weak = tag.startswith("W/")
    if weak:
        tag = tag[2:]
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        tag = tag[1:-1]
    return weak, tag


def _strong_match(tag: str, candidates: list[str]) -> bool:
    weak, value = _opaque(tag)
    return not weak and any(_opaque(c) == (False, value) for c in candidates)


def _weak_match(tag: str, candidates: list[str]) -> bool:
    value = _opaque(tag)[1]
    return any(_opaque(c)[1] == value for c in candidates)


def validate_etags(autotags: bool = False, debug: bool = False) -> None:
    """Answer 304 or 412 when If-Match or If-None-Match rule on the response's ETag.

    With ``autotags``, a 200 response without an ETag gets one: the MD5 of its body. Only
    for URLs whose other methods do not change what GET returns (see the reference's
    warning): a 304 has no body, so its automatic tag would be wrong.
    """
    response = serving.response
    if "ETag" in response.__dict__:
        return  # run once: before_finalize runs again for the 304 or 412 raised here
    code = valid_status(response.status)[0]
    etag = response.headers.get("ETag")
    if not etag and autotags and code == 200:
        etag = '"' + hashlib.md5(response.collapse_body(), usedforsecurity=False).hexdigest() + '"'
        response.headers["ETag"] = etag
    response.ETag = etag
    if not 200 <= code <= 299:
        return
    request = serving.request
    if_match = request.headers.get("If-Match")
    if if_match:
        conditions = _etags(if_match)
        if conditions != ["*"] and not (etag and _strong_match(etag, conditions)):
            raise HTTPError(412, f"If-Match failed: ETag {etag!r} did not match {conditions!r}")
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match:
        conditions = _etags(if_none_match)
        if conditions == ["*"] or (etag and _weak_match(etag, conditions)):
            if request.method in ("GET", "HEAD"):
                raise HTTPRedirect([], 304)
            raise HTTPError(412, f"If-None-Match failed: ETag {etag!r} matched {conditions!r}")


def _http_time(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _not_after(since: str, lastmod: str) -> bool | None:
    """Return whether Last-Modified is not later than ``since``; None if dates do not parse."""
    when, modified = _http_time(since), _http_time(lastmod)
    if when is None or modified is None:
        return None
    return modified <= when


def validate_since() -> None:
    """Answer 304 or 412 from If-Modified-Since and If-Unmodified-Since and the Last-Modified set.

    Without a Last-Modified header on the response, it leaves the request alone.
    """
    response = serving.response
    lastmod = response.headers.get("Last-Modified")
    if not lastmod:
        return
    code = valid_status(response.status)[0]
    request = serving.request
    since = request.headers.get("If-Unmodified-Since")
    if since and (200 <= code <= 299 or code == 412):
        unchanged = _not_after(since, lastmod)
        if unchanged is False or (unchanged is None and since != lastmod):
            raise HTTPError(412)
    since = request.headers.get("If-Modified-Since")
    if since and "If-None-Match" not in request.headers and (200 <= code <= 299 or code == 304):
        unchanged = _not_after(since, lastmod)
        if unchanged or (unchanged is None and since == lastmod):
            if request.method in ("GET", "HEAD"):
                raise HTTPRedirect([], 304)
            raise HTTPError(412)
