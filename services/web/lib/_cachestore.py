"""The storage of ``lib.caching``: MemoryCache and the AntiStampedeCache of each URL.

Kept apart from the tool functions (``caching``, which re-exports these names). Each URL's
AntiStampedeCache maps the values of the selecting request headers to a stored response.
A slot whose response is being computed holds a ``_Pending`` sentinel; other threads wait on
its event; storing the value (``cache[key] = value``) hands it to them, and ``release``
wakes them without one (they then look again, and one of them computes). MemoryCache keeps
sizes and an expiry heap under one lock, and sweeps the heap lazily from ``get`` and ``put``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Any

from services.web._serving import serving

__all__ = ["AntiStampedeCache", "Cache", "MemoryCache"]

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
    """The variants of one URL, where a request for a variant being computed waits for it.

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
        """The stored response for this request's URL and varying headers, or None."""
        raise NotImplementedError

    def put(self, obj: Any, size: int) -> None:
        """Keep `obj` (`size` bytes) as the response for this request's URL and headers."""
        raise NotImplementedError

    def delete(self) -> None:
        """Forget every stored response for this URL, whatever the headers."""
        raise NotImplementedError

    def clear(self) -> None:
        """Forget everything stored."""
        raise NotImplementedError


class MemoryCache(Cache):
    """Responses kept in this process's memory, one set of variants per URL.

    ``store`` maps each URL to an AntiStampedeCache whose keys are tuples of the values of
    its ``selecting_headers`` and whose values are the responses:
    (status, headers, body, create_time).
    """

    maxobjects = 1000
    """The maximum number of cached variants."""

    maxobj_size = 100000
    """Responses bigger than this (bytes) are not kept."""

    maxsize = 10000000
    """Once the kept responses add up to this (bytes), no more are stored."""

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
        """Forget everything stored, and wake the requests waiting for a variant."""
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
        """The stored response for this request, or None when this request must compute it.

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
        """Forget every stored response for this URL, whatever the headers."""
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
