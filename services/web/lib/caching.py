"""The in-process HTTP cache (``tools.caching``) and the Expires tool (``tools.expires``).

GET and HEAD responses are kept in memory with the values of their selecting request
headers (those the response's Vary names); a later request for the same URL with the same
values gets the stored copy, or 304 when its If-Modified-Since or If-None-Match allows,
with ``request.cached = True`` and ``request.cacheable = False``. POST, PUT and DELETE
(``invalid_methods``) delete every stored variant of their URL. ``Cache-Control: max-age``
and ``no-cache`` (or ``Pragma: no-cache``) in a request are honoured; ``no-store`` keeps a
response out of the cache.

Anti-stampede: while one request computes a response, other requests for the same variant
wait for it (up to ``antistampede_timeout`` seconds) instead of computing it too. Each
variant's slot holds a sentinel until the response is stored; a request that ends without
storing it (an error, an uncacheable status, a client that went away) releases the slot at
``on_end_request``, so the waiters stop waiting at once and one of them computes instead.
Unlike the reference, this works from the very first request for a URL: before the first
response says which headers select its variants, waiters queue on the URL itself.

Also unlike the reference, and for safety:

- one cache per application (``get_cache(app)``), created with the first request's
  settings; ``cache_class`` and the cache's attributes (``delay``, ``maxobjects``...) come
  from config, and changed settings are applied to the cache as requests see them;
- only statuses cacheable by default (RFC 7231 6.1) and responses setting no cookie are
  stored (a cached Set-Cookie would hand one client's session to every other), nor any
  with ``Cache-Control: no-store`` or ``private``, ``Pragma: no-cache`` or ``Vary: *``;
- a hit keeps its own Date header;
- expiry is lazy: ``get`` and ``put`` sweep entries past their time (at most once every
  ``expire_freq`` seconds), so no thread runs and an idle cache costs nothing
  (``expiration_thread`` stays None). ``maxobjects`` counts stored variants.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

from services.web._cperror import HTTPError, HTTPRedirect
from services.web._serving import serving
from services.web.lib import cptools, httputil
from services.web.lib._cachestore import _RELEASED, AntiStampedeCache, Cache, MemoryCache

__all__ = ["AntiStampedeCache", "Cache", "MemoryCache", "expires", "get", "get_cache",
           "tee_output"]

CACHEABLE_STATUSES = frozenset({200, 203, 300, 301, 404, 405, 410, 414, 501})
"""Statuses a response may be stored with (RFC 7231 6.1, less the empty 204)."""

_caches_lock = threading.Lock()


def get_cache(app: Any = None) -> Any:
    """Return the cache of ``app`` (default: the current request's), or None if it has none."""
    app = serving.request.app if app is None else app
    return getattr(app, "_cache", None)


def _cache_for(kwargs: dict[str, Any]) -> Any:
    """Return the current application's cache, made or updated from the tool's settings."""
    app = serving.request.app
    cache_class = kwargs.pop("cache_class", MemoryCache)
    if isinstance(cache_class, str):
        from sitebus.site.container import load_object

        cache_class = load_object(cache_class)
    cache = getattr(app, "_cache", None)
    if cache is None or type(cache) is not cache_class:
        with _caches_lock:
            cache = getattr(app, "_cache", None)
            if cache is None or type(cache) is not cache_class:
                cache = cache_class()
                app._cache = cache
    for name, value in kwargs.items():
        if getattr(cache, name, _RELEASED) != value:
            setattr(cache, name, value)
    return cache


def _release_claim() -> None:
    """End the slot the current request holds, if it stored nothing (on_end_request)."""
    claim = serving.request.__dict__.pop("_cache_claim", None)
    if claim is not None:
        cache, *slot = claim
        cache.release(*slot)


_release_claim.failsafe = True  # type: ignore[attr-defined]


def _request_directives(request: Any) -> list[str]:
    return [e.value.strip().lower() for e in request.headers.elements("Cache-Control")]


def get(invalid_methods: Any = ("POST", "PUT", "DELETE"), debug: bool = False,
        **kwargs: Any) -> bool:
    """Serve the current request from the cache if possible; return True if it was.

    POST, PUT and DELETE (``invalid_methods``) delete the cached variants of the URL. A
    stored copy younger than ``delay`` (or the request's ``max-age``) is served with an Age
    header, or answered 304 when the request's validators allow. Otherwise the request is
    marked ``cacheable`` and False is returned.
    """
    request = serving.request
    response = serving.response
    cache = _cache_for(kwargs)
    cache.debug = debug
    if request.method in invalid_methods:
        cache.delete()
        request.cached = request.cacheable = False
        return False
    pragma = [e.value.lower() for e in request.headers.elements("Pragma")]
    directives = _request_directives(request)
    if "no-cache" in pragma or "no-cache" in directives:
        request.cached = False
        request.cacheable = True
        return False
    max_age = cache.delay
    for directive in directives:
        name, eq, value = directive.partition("=")
        if name.strip() == "max-age":
            value = value.strip().strip('"')
            if not eq or not value.isdigit():
                raise HTTPError(400, "Invalid Cache-Control header")
            max_age = int(value)
            break
    variant = cache.get()
    if request.__dict__.get("_cache_claim") is not None:
        request.hooks.attach("on_end_request", _release_claim)
    if variant is None:
        request.cached = False
        request.cacheable = True
        return False
    status, headers, body, create_time = variant
    age = int(response.time - create_time)
    if age > max_age:
        request.cached = False
        request.cacheable = True
        return False
    request.cached = True
    request.cacheable = False
    fresh = response.headers
    response.headers = restored = httputil.HeaderMap()
    dict.update(restored, headers)
    dict.__setitem__(restored, "Date", dict.get(fresh, "Date"))
    restored["Age"] = str(age)
    try:
        cptools.validate_etags()
        cptools.validate_since()
    except HTTPRedirect as redirect:
        if redirect.status == 304:
            cache.tot_non_modified += 1
        raise
    response.status = status
    response.body = [body] if body else []
    return True


def tee_output() -> None:
    """Tee the response body into the cache as it is sent. Internal: the tool attaches it."""
    request = serving.request
    if request.__dict__.get("_cache_teed"):
        return  # before_finalize runs again after a 304 or an error raised at that point
    request._cache_teed = True
    if "no-store" in _request_directives(request):
        return
    response = serving.response
    cache = get_cache()

    def tee(body: Any) -> Any:
        output = []
        for chunk in body:
            output.append(chunk)
            yield chunk
        data = b"".join(output)
        if data and _storable(response):
            cache.put((response.status, dict(response.headers), data, response.time),
                      len(data))

    response.body = tee(response.body)


def _storable(response: Any) -> bool:
    code = httputil.valid_status(response.status)[0]
    if code not in CACHEABLE_STATUSES or response.__dict__.get("cookie"):
        return False
    headers = response.headers
    directives = {e.value.split("=", 1)[0].strip().lower()
                  for e in headers.elements("Cache-Control")}
    if directives & {"no-store", "private"}:
        return False
    return "no-cache" not in [e.value.lower() for e in headers.elements("Pragma")]


def expires(secs: Any = 0, force: bool = False, debug: bool = False) -> None:
    """Set the Expires header (and, for secs=0, cache prevention headers).

    ``secs`` (an int or a timedelta) is the time between ``response.time`` and expiry. With
    0, Expires is set in the past and ``Pragma: no-cache`` and ``Cache-Control: no-cache,
    must-revalidate`` are added. Unless ``force``, this happens only for responses a cache
    could keep (one with an ETag, Last-Modified, Age or Expires header), and headers already
    set are kept; with ``force`` they are replaced.
    """
    response = serving.response
    headers = response.headers
    if not force and not any(name in headers
                             for name in ("ETag", "Last-Modified", "Age", "Expires")):
        return
    if isinstance(secs, datetime.timedelta):
        secs = secs.days * 86400 + secs.seconds
    if isinstance(secs, bool) or not isinstance(secs, (int, float)):
        raise TypeError(f"tools.expires.secs: expected a number of seconds or a timedelta, "
                        f"got {secs!r}")
    if secs == 0:
        if force or "Pragma" not in headers:
            headers["Pragma"] = "no-cache"
        if serving.request.protocol >= (1, 1) and (force or "Cache-Control" not in headers):
            headers["Cache-Control"] = "no-cache, must-revalidate"
        expiry = httputil.HTTPDate(1169942400.0)  # a date in the past
    else:
        expiry = httputil.HTTPDate(response.time + secs)
    if force or "Expires" not in headers:
        headers["Expires"] = expiry
