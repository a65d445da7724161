"""Sessions: server-side data keyed by a cookie (``tools.sessions``), in memory here.

``init`` (at ``before_request_body``) reads the session id from the cookie (``name``,
default ``session_id``) and makes ``services.web.session`` the current thread's Session. An
id the store does not know is replaced by a new one (protection against session fixation),
so an application that saves nothing gets a new id on every request. The data is loaded on
first access and saved at ``before_finalize`` (after the response, when it is streamed)
only if it was accessed. With the default ``locking='implicit'`` the session is locked
before the handler and always released when the request ends; ``'early'`` locks before the
body is read; ``'explicit'`` leaves ``acquire_lock``/``release_lock`` to the application.

This module holds the Session base class and ``RamSession`` (the default store, in the
process's memory, cleaned every ``clean_freq`` minutes); file and memcached stores come
with the rest of the library (part 2) as further Session subclasses (``storage_class``).
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from typing import Any

from services.web._serving import serving
from services.web.lib import httputil, is_iterator

__all__ = ["RamSession", "Session", "close", "expire", "init", "save",
           "set_response_cookie"]


class Session:
    """A dict-like view of one session's data, loaded on first access."""

    _id: str | None = None
    id_observers: list[Any]
    timeout = 60
    """Minutes after the last save at which the session expires."""
    locked = False
    loaded = False
    clean_thread: Any = None
    """A class-level Monitor which calls clean_up every ``clean_freq`` minutes."""
    clean_freq = 5
    originalid: str | None = None
    """The id the client sent (possibly unknown to the store, so not the one in use)."""
    missing = False
    """True if the client sent an id the store did not have."""
    regenerated = False
    debug = False

    def __init__(self, id: str | None = None, **kwargs: Any) -> None:  # noqa: A002
        self.id_observers = []
        self._data: dict[Any, Any] = {}
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.originalid = id
        self.missing = False
        if id is None:
            self._regenerate()
        else:
            self.id = id
            if not self._exists():
                self.id = None
                self.missing = True
                self._regenerate()

    @property
    def id(self) -> str | None:
        """The current session id; observers are told of each new one."""
        return self._id

    @id.setter
    def id(self, value: str | None) -> None:
        self._id = value
        for observer in self.id_observers:
            observer(value)

    def now(self) -> datetime.datetime:
        """Return the current time (override to use another clock)."""
        return datetime.datetime.now()

    def generate_id(self) -> str:
        """Return a new session id."""
        return os.urandom(20).hex()

    def regenerate(self) -> None:
        """Replace the current session (with a new id)."""
        self.regenerated = True
        self._regenerate()

    def _regenerate(self) -> None:
        if self.id is not None:
            self.delete()
        was_locked = self.locked
        if was_locked:
            self.release_lock()
        self.id = None
        while self.id is None:
            self.id = self.generate_id()
            if self._exists():
                self.id = None
        if was_locked:
            self.acquire_lock()

    def clean_up(self) -> None:
        """Clean up expired sessions."""

    def save(self) -> None:
        """Save the session data, if it was loaded; release the lock either way."""
        try:
            if self.loaded:
                expiration = self.now() + datetime.timedelta(seconds=self.timeout * 60)
                self._save(expiration)
        finally:
            if self.locked:
                self.release_lock()

    def load(self) -> None:
        """Copy the stored data into this session (empty if none or expired)."""
        data = self._load()
        if data is None or data[1] < self.now():
            self._data = {}
        else:
            self._data = data[0]
        self.loaded = True
        cls = type(self)
        if self.clean_freq and cls.clean_thread is None:
            from sitebus.plugins import Monitor
            from sitebus.site import bus

            monitor = Monitor(bus, self.clean_up, self.clean_freq * 60, name="Session cleanup")
            monitor.subscribe()
            cls.clean_thread = monitor
            monitor.start()

    def delete(self) -> None:
        """Delete the stored session data."""
        self._delete()

    # -- the dict interface ---------------------------------------------------------------

    def _loaded_data(self) -> dict[Any, Any]:
        if not self.loaded:
            self.load()
        return self._data

    def __getitem__(self, key: Any) -> Any:
        return self._loaded_data()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._loaded_data()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._loaded_data()[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._loaded_data()

    def __iter__(self) -> Any:
        return iter(self._loaded_data())

    def pop(self, key: Any, default: Any = False) -> Any:
        return self._loaded_data().pop(key, default)

    def get(self, key: Any, default: Any = None) -> Any:
        return self._loaded_data().get(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._loaded_data().update(*args, **kwargs)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self._loaded_data().setdefault(key, default)

    def clear(self) -> None:
        self._loaded_data().clear()

    def keys(self) -> Any:
        return self._loaded_data().keys()

    def items(self) -> Any:
        return self._loaded_data().items()

    def values(self) -> Any:
        return self._loaded_data().values()

    # -- storage, for subclasses ----------------------------------------------------------

    def _exists(self) -> bool:
        raise NotImplementedError

    def _load(self) -> tuple[dict[Any, Any], datetime.datetime] | None:
        raise NotImplementedError

    def _save(self, expiration_time: datetime.datetime) -> None:
        raise NotImplementedError

    def _delete(self) -> None:
        raise NotImplementedError

    def acquire_lock(self) -> None:
        raise NotImplementedError

    def release_lock(self) -> None:
        raise NotImplementedError


class RamSession(Session):
    """Sessions kept in this process's memory (lost at restart)."""

    cache: dict[str, tuple[dict[Any, Any], datetime.datetime]] = {}
    locks: dict[str, threading.RLock] = {}
    _locks_lock = threading.Lock()

    def clean_up(self) -> None:
        """Clean up expired sessions and their unused locks."""
        now = self.now()
        for session_id, (_data, expiration) in list(self.cache.items()):
            if expiration <= now:
                self.cache.pop(session_id, None)
        for session_id in list(self.locks):
            lock = self.locks.get(session_id)
            if session_id not in self.cache and lock is not None and \
                    lock.acquire(blocking=False):
                self.locks.pop(session_id, None)
                lock.release()

    def _exists(self) -> bool:
        return self.id in self.cache

    def _load(self) -> tuple[dict[Any, Any], datetime.datetime] | None:
        return self.cache.get(self.id)  # type: ignore[arg-type]

    def _save(self, expiration_time: datetime.datetime) -> None:
        self.cache[self.id] = (self._data, expiration_time)  # type: ignore[index]

    def _delete(self) -> None:
        self.cache.pop(self.id, None)  # type: ignore[arg-type]

    def acquire_lock(self) -> None:
        """Acquire an exclusive lock on the currently-loaded session data."""
        with self._locks_lock:
            lock = self.locks.setdefault(self.id, threading.RLock())  # type: ignore[arg-type]
        lock.acquire()
        self.locked = True

    def release_lock(self) -> None:
        """Release the lock on the currently-loaded session data."""
        self.locks[self.id].release()  # type: ignore[index]
        self.locked = False

    def __len__(self) -> int:
        """Return the number of active sessions."""
        return len(self.cache)


# -- the tool's functions ---------------------------------------------------------------------

_setup_done: set[type] = set()


def init(storage_type: Any = None, path: str | None = None, path_header: str | None = None,
         name: str = "session_id", timeout: int = 60, domain: str | None = None,
         secure: bool = False, clean_freq: int = 5, persistent: bool = True,
         httponly: bool = False, debug: bool = False, **kwargs: Any) -> None:
    """Make the session of this request current (``services.web.session``).

    ``storage_class`` (default RamSession) is the store; other keyword arguments become
    attributes of the Session. ``persistent=False`` makes the cookie last the browser
    session; ``timeout`` (minutes) applies to the data and, if persistent, the cookie.
    """
    request = serving.request
    if getattr(request, "_session_init_flag", False):
        return
    request._session_init_flag = True
    session_id = None
    if name in request.cookie:
        session_id = request.cookie[name].value
    storage_class = kwargs.pop("storage_class", None) or RamSession
    kwargs.pop("locking", None)
    if storage_class not in _setup_done:
        setup = getattr(storage_class, "setup", None)
        if setup is not None:
            setup(**kwargs)
        _setup_done.add(storage_class)
    kwargs["timeout"] = timeout
    kwargs["clean_freq"] = clean_freq
    session = storage_class(session_id, **kwargs)
    session.debug = debug
    serving.session = session

    def update_cookie(new_id: str | None) -> None:
        serving.response.cookie[name] = new_id

    session.id_observers.append(update_cookie)
    set_response_cookie(path=path, path_header=path_header, name=name,
                        timeout=timeout if persistent else None, domain=domain,
                        secure=secure, httponly=httponly)


def set_response_cookie(path: str | None = None, path_header: str | None = None,
                        name: str = "session_id", timeout: int | None = 60,
                        domain: str | None = None, secure: bool = False,
                        httponly: bool = False) -> None:
    """Set the session cookie on the response (``timeout`` in minutes; None or 0: none)."""
    cookie = serving.response.cookie
    cookie[name] = serving.session.id
    morsel = cookie[name]
    morsel["path"] = path or (serving.request.headers.get(path_header) if path_header
                              else None) or "/"
    if timeout:
        morsel["max-age"] = timeout * 60
        morsel["expires"] = httputil.HTTPDate(time.time() + timeout * 60)
    if domain is not None:
        morsel["domain"] = domain
    if secure:
        morsel["secure"] = True
    if httponly:
        morsel["httponly"] = True


def save() -> None:
    """Save the session data (after the response, when it is streamed)."""
    session = getattr(serving, "session", None)
    if session is None:
        return
    request = serving.request
    if getattr(request, "_sessionsaved", False):
        return
    request._sessionsaved = True
    response = serving.response
    if response.stream:
        request.hooks.attach("on_end_request", session.save)
    else:
        if is_iterator(response.body):
            response.collapse_body()
        session.save()


save.failsafe = True  # type: ignore[attr-defined]


def close() -> None:
    """Release the session lock if the request still holds it."""
    session = getattr(serving, "session", None)
    if getattr(session, "locked", False):
        session.release_lock()  # type: ignore[union-attr]


close.failsafe = True  # type: ignore[attr-defined]
close.priority = 90  # type: ignore[attr-defined]


def expire() -> None:
    """Expire the current session cookie."""
    name = serving.request.config.get("tools.sessions.name", "session_id")
    one_year = 60 * 60 * 24 * 365
    cookie = serving.response.cookie
    if name not in cookie:
        cookie[name] = ""
    cookie[name]["expires"] = httputil.HTTPDate(time.time() - one_year)
    cookie[name]["max-age"] = 0
