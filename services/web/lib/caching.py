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
import heapq
import itertools
import threading
import time
from typing import Any

from services.web._cperror import HTTPError, HTTPRedirect
from services.web._serving import serving
from services.web.lib import cptools, httputil

__all__ = ["AntiStampedeCache", "Cache", "MemoryCache", "expires", "get", "get_cache",
           "tee_output"]

CACHEABLE_STATUSES = frozenset({200, 203, 300, 301, 404, 405, 410, 414, 501})
"""Statuses a response may be stored with (RFC 7231 6.1, less the empty 204)."""

_RELEASED = object()
"""What a waiter gets when the slot it waited on was released without a value."""

_FIRST = ("<selecting headers not known yet>",)
"""The slot key of a URL whose first response has not said what its variants depend on."""


class _Pending:
    """The sentinel in a slot whose value one thread is computing."""

    __slots__ = ("event", "result")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: Any = None


class AntiStampedeCache(dict):
    """A storage system for cached items which reduces stampede collisions.

    ``selecting_headers`` names the request headers whose values key the variants (None
    until the first response is stored).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.selecting_headers: list[str] | None = None
        self._lock = threading.Lock()

    def wait(self, key: Any, timeout: float | None = 5, debug: bool = False) -> Any:
        """Return the cached value for ``key``, or None (then the caller should compute it).

        If another thread is computing the value, wait up to ``timeout`` seconds for it. When
        None is returned, a sentinel has been placed so other threads wait on this one (a
        later ``self[key] = value`` ends their wait). With ``timeout`` None, nothing waits
        and no sentinel is used.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            value, _pending = self.claim(key, remaining)
            if value is not _RELEASED:
                return value

    def claim(self, key: Any, timeout: float | None) -> tuple[Any, _Pending | None]:
        """Return (value, None), (None, the sentinel placed for the caller) or (_RELEASED, None).

        The caller that gets a sentinel must end it: ``self[key] = value`` or
        ``release(key, sentinel)``.
        """
        with self._lock:
            value = dict.get(self, key)
            if timeout is None:
                return (None if isinstance(value, _Pending) else value), None
            if value is None:
                pending = _Pending()
                dict.__setitem__(self, key, pending)
                return None, pending
            if not isinstance(value, _Pending):
                return value, None
        if value.event.wait(timeout):
            return (_RELEASED if value.result is None else value.result), None
        with self._lock:  # the other thread is too slow: compute it here, and let others wait
            current = dict.get(self, key)
            if current is not None and not isinstance(current, _Pending):
                return current, None
            pending = _Pending()
            dict.__setitem__(self, key, pending)
            return None, pending

    def __setitem__(self, key: Any, value: Any) -> None:
        """Set the cached value for ``key``, and hand it to the threads waiting for it."""
        with self._lock:
            existing = dict.get(self, key)
            dict.__setitem__(self, key, value)
        if isinstance(existing, _Pending):
            existing.result = value
            existing.event.set()

    def release(self, key: Any, pending: _Pending) -> None:
        """End ``pending`` without a value: its waiters stop waiting."""
        with self._lock:
            if dict.get(self, key) is pending:
                dict.__delitem__(self, key)
        pending.event.set()

    def variants(self) -> list[tuple[Any, Any]]:
        """Return the (key, variant) pairs stored (not the slots being computed)."""
        with self._lock:
            return [(k, v) for k, v in dict.items(self) if not isinstance(v, _Pending)]


class Cache:
    """Base class for Cache implementations: get, put, delete and clear."""

    def get(self) -> Any:
        """Return the current variant if in the cache, else None."""
        raise NotImplementedError

    def put(self, obj: Any, size: int) -> None:
        """Store the current variant in the cache."""
        raise NotImplementedError

    def delete(self) -> None:
        """Remove ALL cached variants of the current resource."""
        raise NotImplementedError

    def clear(self) -> None:
        """Reset the cache to its initial, empty state."""
        raise NotImplementedError


class MemoryCache(Cache):
    """An in-memory cache for varying response content.

    ``store`` maps each URL to an AntiStampedeCache whose keys are tuples of the values of
    its ``selecting_headers`` and whose values are the responses:
    (status, headers, body, create_time).
    """

    maxobjects = 1000
    """The maximum number of cached variants."""

    maxobj_size = 100000
    """The maximum size of each cached object in bytes."""

    maxsize = 10000000
    """The maximum size of the entire cache in bytes."""

    delay = 600
    """Seconds until the cached content expires."""

    antistampede_timeout: float = 5
    """Seconds to wait for other threads to compute a response."""

    expire_freq = 0.1
    """Seconds at least between sweeps for expired objects."""

    debug = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.expiration_thread: threading.Thread | None = None
        self.clear()

    def clear(self) -> None:
        """Reset the cache to its initial, empty state (waiters are released)."""
        with self._lock:
            old = getattr(self, "store", {})
            self.store: dict[str, AntiStampedeCache] = {}
            self.expirations: list[tuple[float, int, str, Any, Any]] = []
            self.cursize = 0
            self.objects = 0
            self.tot_puts = self.tot_gets = self.tot_hist = 0
            self.tot_expires = self.tot_non_modified = 0
            self._sequence = itertools.count()
            self._next_sweep = 0.0
        for uricache in old.values():
            _release_all(uricache)

    def key(self) -> str:
        """Return the URL of the current request, the key of its variants in ``store``."""
        request = serving.request
        qs = request.query_string
        return f"{request.base}{request.script_name}{request.path_info}{'?' + qs if qs else ''}"

    def expire_cache(self) -> None:
        """Drop the variants whose time has come (called by ``get`` and ``put``)."""
        now = time.time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.expire_freq
        with self._lock:
            heap = self.expirations
            while heap and heap[0][0] <= now:
                _, _, uri, key, variant = heapq.heappop(heap)
                uricache = self.store.get(uri)
                if uricache is not None and dict.get(uricache, key) is variant:
                    dict.__delitem__(uricache, key)
                    self._forget(variant)
                    self.tot_expires += 1
                    if not uricache:
                        del self.store[uri]

    def _forget(self, variant: Any) -> None:
        self.cursize -= len(variant[2])
        self.objects -= 1

    def get(self) -> Any:
        """Return the current variant if in the cache, else None (then compute it).

        Waits while another thread computes the same variant; when it returns None the
        current request holds the variant's slot (``request._cache_claim``) until it stores
        a response or releases the slot.
        """
        self.expire_cache()
        request = serving.request
        self.tot_gets += 1
        uri = self.key()
        deadline = time.monotonic() + self.antistampede_timeout
        while True:
            with self._lock:  # again after each wait: a released URL may have been dropped
                uricache = self.store.get(uri)
                if uricache is None:
                    if len(self.store) >= self.maxobjects:
                        return None
                    uricache = self.store[uri] = AntiStampedeCache()
            names = uricache.selecting_headers
            key = _FIRST if names is None else \
                tuple(request.headers.get(name, "") for name in names)
            value, pending = uricache.claim(key, max(0.0, deadline - time.monotonic()))
            if pending is not None:
                request._cache_claim = (self, uri, uricache, key, pending)
                return None
            if value is not _RELEASED:
                if value is not None:
                    self.tot_hist += 1
                return value
            if time.monotonic() >= deadline:
                return None

    def put(self, variant: Any, size: int) -> None:
        """Store the current variant in the cache (if it fits), keyed by its Vary headers."""
        self.expire_cache()
        request = serving.request
        response = serving.response
        uri = self.key()
        names = [e.value.title() for e in response.headers.elements("Vary")]
        if "*" in names:
            return
        with self._lock:
            uricache = self.store.get(uri)
            if uricache is None:
                if len(self.store) >= self.maxobjects:
                    return
                uricache = self.store[uri] = AntiStampedeCache()
            if uricache.selecting_headers != names:
                for old_key, old in uricache.variants():
                    dict.__delitem__(uricache, old_key)
                    self._forget(old)
                uricache.selecting_headers = names
            key = tuple(request.headers.get(name, "") for name in names)
            old = dict.get(uricache, key)
            if isinstance(old, _Pending):
                old = None
            freed = len(old[2]) if old is not None else 0
            if size >= self.maxobj_size or self.cursize - freed + size >= self.maxsize \
                    or (old is None and self.objects >= self.maxobjects):
                return
            if old is not None:
                self._forget(old)
            self.cursize += size
            self.objects += 1
            self.tot_puts += 1
            expiry = response.time + self.delay
            heapq.heappush(self.expirations, (expiry, next(self._sequence), uri, key, variant))
        uricache[key] = variant  # hands it to the waiters
        claim = request.__dict__.get("_cache_claim")
        if claim is not None and (claim[2] is not uricache or claim[3] != key):
            # Waiters queued on the URL (or on another variant): let them look again now.
            del request._cache_claim
            claim[0].release(*claim[1:])

    def release(self, uri: str, uricache: AntiStampedeCache, key: Any,
                pending: _Pending) -> None:
        """End a slot that got no value; forget the URL if nothing else is left of it."""
        uricache.release(key, pending)
        with self._lock:
            if not uricache and self.store.get(uri) is uricache:
                del self.store[uri]

    def delete(self) -> None:
        """Remove ALL cached variants of the current resource."""
        with self._lock:
            uricache = self.store.pop(self.key(), None)
            if uricache is None:
                return
            for _, variant in uricache.variants():
                self._forget(variant)
        _release_all(uricache)


def _release_all(uricache: AntiStampedeCache) -> None:
    for key, value in list(dict.items(uricache)):
        if isinstance(value, _Pending):
            uricache.release(key, value)


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
        from sitebus.site import load_object

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
