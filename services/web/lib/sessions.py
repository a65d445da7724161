"""Sessions: server-side data keyed by a cookie (``tools.sessions``).

``init`` (at ``before_request_body``) reads the session id from the cookie (``name``,
default ``session_id``) and makes ``services.web.session`` the current thread's Session. An
id the store does not know, or whose data has expired, is replaced by a new one (protection
against session fixation), so an application that saves nothing gets a new id on every
request. An id that could not have come from ``generate_id`` (not matching ``id_pattern``:
a path, a key with spaces, a huge cookie) is replaced without asking the store at all. The
data is loaded on first access and saved at ``before_finalize`` (after the response, when
it is streamed) only if it was accessed. With the default ``locking='implicit'`` the
session is locked before the handler and always released when the request ends; ``'early'``
locks before the body is read; ``'explicit'`` leaves ``acquire_lock``/``release_lock`` to
the application.

Stores (``storage_class``): ``RamSession`` (the default, in this process's memory),
``FileSession`` (a file per session, locked with file locks, shared by processes; in
``filesession``) and ``MemcachedSession`` (in ``memcachedsession``), or any subclass of
``Session``. Settings given as ``tools.sessions.<name>`` become attributes of each Session.

Expired data is removed by a ``Monitor`` on the site's bus every ``clean_freq`` minutes, one
per store (class and location), started on the first load; its thread waits on an event,
so it wakes only when a cleanup is due and stops at once when the bus stops. Stores that
expire data themselves (memcached) get no monitor.
"""

from __future__ import annotations

import datetime
import os
import re
import time
import warnings
from typing import Any

from services.web._serving import serving
from services.web.lib import httputil, is_iterator
from services.web.lib.locking import KeyedLocks
from services.web.lib.sessioncleanup import start_cleanup, stop_cleanup

__all__ = ["FileSession", "KeyedLocks", "MemcachedSession", "RamSession", "Session", "close",
           "expire", "init", "save", "set_response_cookie", "stop_cleanup"]


class Session:
    """A dict-like view of one session's data, loaded on first access."""

    _id: str | None = None
    id_observers: list[Any]
    """Callbacks to which each new id is passed."""
    id_pattern = re.compile(r"[A-Za-z0-9_-]{1,128}")
    """The form an id from a client must have to be looked up at all."""
    timeout: float = 60
    """Minutes after the last save at which the session expires."""
    locked = False
    loaded = False
    clean_thread: Any = None
    """The Monitor which calls clean_up every ``clean_freq`` minutes (the first one made)."""
    clean_freq: float = 5
    """Minutes between cleanups of expired sessions."""
    originalid: str | None = None
    """The id the client sent (possibly unknown to the store, so not the one in use)."""
    missing = False
    """True if the client sent an id the store did not have."""
    regenerated = False
    """True if the application called regenerate()."""
    debug = False

    def __init__(self, id: str | None = None, **kwargs: Any) -> None:  # noqa: A002
        self.id_observers = []
        self._data: dict[Any, Any] = {}
        self._settings = kwargs
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.originalid = id
        self.missing = False
        if id is None:
            self._regenerate()
        else:
            self.id = id
            if not (isinstance(id, str) and self.id_pattern.fullmatch(id)
                    and self._exists()):
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
        """Return a new session id (160 random bits, as hex)."""
        return os.urandom(20).hex()

    def regenerate(self) -> None:
        """Move the data to a new id, e.g. after login, so that an old id is worth nothing."""
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
        """Delete the sessions whose time is up."""

    def expiration(self) -> datetime.datetime:
        """Return when data saved now expires."""
        return self.now() + datetime.timedelta(seconds=self.timeout * 60)

    def save(self) -> None:
        """Save the session data, if it was loaded; release the lock either way."""
        try:
            if self.loaded:
                self._save(self.expiration())
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
        if self.clean_freq and type(self).clean_up is not Session.clean_up:
            start_cleanup(self)

    def delete(self) -> None:
        """Delete the stored session data."""
        self._delete()

    def cleanup_key(self) -> Any:
        """Return what identifies this session's store: one cleanup monitor per key."""
        return type(self)

    def cleaner(self) -> Session:
        """Return a Session with this one's settings and no id, to run clean_up with."""
        cleaner = type(self).__new__(type(self))
        cleaner.id_observers = []
        cleaner._data = {}
        cleaner._settings = self._settings
        for key, value in self._settings.items():
            setattr(cleaner, key, value)
        return cleaner

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
    """Sessions kept in this process's memory (lost at restart; any object can be stored)."""

    cache: dict[str, tuple[dict[Any, Any], datetime.datetime]] = {}
    locks = KeyedLocks()

    def clean_up(self) -> None:
        """Delete the sessions whose time is up."""
        now = self.now()
        for session_id, (_data, expiration) in list(self.cache.items()):
            if expiration <= now:
                self.cache.pop(session_id, None)

    def _exists(self) -> bool:
        entry = self.cache.get(self.id)  # type: ignore[arg-type]
        return entry is not None and entry[1] > self.now()

    def _load(self) -> tuple[dict[Any, Any], datetime.datetime] | None:
        return self.cache.get(self.id)  # type: ignore[arg-type]

    def _save(self, expiration_time: datetime.datetime) -> None:
        self.cache[self.id] = (self._data, expiration_time)  # type: ignore[index]

    def _delete(self) -> None:
        self.cache.pop(self.id, None)  # type: ignore[arg-type]

    def acquire_lock(self) -> None:
        """Hold this session's lock, so other requests for it wait until it is saved."""
        if self.locked:
            return
        self.locks.acquire(self.id)
        self.locked = True

    def release_lock(self) -> None:
        """Let the next request for this session in."""
        self.locks.release(self.id)
        self.locked = False

    def __len__(self) -> int:
        """How many sessions are stored."""
        return len(self.cache)


# -- the tool's functions ---------------------------------------------------------------------

_setup_done: set[tuple[type, str]] = set()
_STORAGE_TYPES = {"ram": "RamSession", "file": "FileSession", "memcached": "MemcachedSession"}


def _storage_class(storage_type: Any, storage_class: Any) -> Any:
    if storage_class:
        if isinstance(storage_class, str):
            from sitebus.site.config import attributes

            storage_class = attributes(storage_class)
        return storage_class
    if storage_type:
        warnings.warn("tools.sessions.storage_type is deprecated; use "
                      "tools.sessions.storage_class", DeprecationWarning, stacklevel=3)
        name = _STORAGE_TYPES.get(str(storage_type).lower())
        if name is None:
            from sitebus.errors import ConfigError

            raise ConfigError(f"expected one of {', '.join(_STORAGE_TYPES)}, got "
                              f"{storage_type!r}", key="tools.sessions.storage_type",
                              value=storage_type)
        return globals()[name]
    return RamSession


def known_settings() -> set[str]:
    """Return the ``tools.sessions.*`` settings of ``init`` and the built-in stores."""
    import inspect

    from services.web.lib.filesession import FileSession
    from services.web.lib.memcachedsession import MemcachedSession

    names = {p.name for p in inspect.signature(init).parameters.values()
             if p.kind is p.POSITIONAL_OR_KEYWORD}
    names |= {"storage_class", "locking"}
    for store in (Session, RamSession, FileSession, MemcachedSession):
        for klass in store.__mro__:
            names |= {name for name, value in vars(klass).items()
                      if not name.startswith("_") and not callable(value)
                      and not isinstance(value, (classmethod, staticmethod, property))}
            names |= {name for name in getattr(klass, "__annotations__", {})
                      if not name.startswith("_")}
    return names


def _restore_proxy() -> None:
    """Put ``services.web.session`` back if code deleted it (``del cherrypy.session``), as
    the reference's session tool does."""
    import services.web

    if "session" not in vars(services.web):
        from services.web._serving import ThreadLocalProxy

        services.web.session = ThreadLocalProxy("session")


def init(storage_type: Any = None, path: str | None = None, path_header: str | None = None,
         name: str = "session_id", timeout: float = 60, domain: str | None = None,
         secure: bool = False, clean_freq: float = 5, persistent: bool = True,
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
    storage_class = _storage_class(storage_type, kwargs.pop("storage_class", None))
    kwargs.pop("locking", None)
    setup = getattr(storage_class, "setup", None)
    if setup is not None:
        setup_key = (storage_class, repr(sorted(kwargs.items())))
        if setup_key not in _setup_done:
            setup(**kwargs)
            _setup_done.add(setup_key)
    kwargs["timeout"] = timeout
    kwargs["clean_freq"] = clean_freq
    session = storage_class(session_id, **kwargs)
    session.debug = debug
    serving.session = session
    _restore_proxy()

    def update_cookie(new_id: str | None) -> None:
        serving.response.cookie[name] = new_id

    session.id_observers.append(update_cookie)
    set_response_cookie(path=path, path_header=path_header, name=name,
                        timeout=timeout if persistent else None, domain=domain,
                        secure=secure, httponly=httponly)


def set_response_cookie(path: str | None = None, path_header: str | None = None,
                        name: str = "session_id", timeout: float | None = 60,
                        domain: str | None = None, secure: bool = False,
                        httponly: bool = False) -> None:
    """Set the session cookie on the response (``timeout`` in minutes; None or 0: none)."""
    cookie = serving.response.cookie
    cookie[name] = serving.session.id
    morsel = cookie[name]
    morsel["path"] = path or (serving.request.headers.get(path_header) if path_header
                              else None) or "/"
    if timeout:
        morsel["max-age"] = int(timeout * 60)
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
    """Tell the client to drop its session cookie (one dated a year ago)."""
    name = serving.request.config.get("tools.sessions.name", "session_id")
    one_year = 60 * 60 * 24 * 365
    cookie = serving.response.cookie
    if name not in cookie:
        cookie[name] = ""
    cookie[name]["expires"] = httputil.HTTPDate(time.time() - one_year)
    cookie[name]["max-age"] = 0


from services.web.lib.filesession import FileSession  # noqa: E402 (subclasses of Session)
from services.web.lib.memcachedsession import MemcachedSession  # noqa: E402
