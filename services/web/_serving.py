"""The per-thread request and response: ``serving`` and the ``request``/``response`` proxies.

Each worker thread serves one request at a time, so the request and response in flight live
in a ``threading.local`` (``serving.request``, ``serving.response``). ``services.web.request``
and ``.response`` are proxies that look up the current thread's objects on every access, so
application code can import them once at module level, as the reference allows.

Between requests a thread's slots are cleared and the class-level defaults show through: a
default Request and Response (set by ``services.web`` at import), so reading
``request.show_tracebacks`` outside a request works. The framework's own code reads
``serving.request`` directly rather than through the proxies, which costs a lookup less.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["Serving", "ThreadLocalProxy", "serving", "thread_data"]


class Serving(threading.local):
    """Each thread's current request and response, as ``serving.request`` and ``.response``."""

    request: Any = None
    """The request this thread is serving (a default one outside requests)."""

    response: Any = None
    """The response this thread is building (a default one outside requests)."""

    def load(self, request: Any, response: Any) -> None:
        """Make ``request`` and ``response`` the current thread's."""
        self.request = request
        self.response = response

    def clear(self) -> None:
        """Remove all attributes of self: the class defaults show through again."""
        self.__dict__.clear()


serving = Serving()
"""The current thread's request and response."""


class ThreadLocalProxy:
    """A stand-in for ``serving.<name>`` of whichever thread reads it."""

    __slots__ = ("__attrname__",)

    def __init__(self, attrname: str) -> None:
        object.__setattr__(self, "__attrname__", attrname)

    def _target(self) -> Any:
        return getattr(serving, self.__attrname__)

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(serving, self.__attrname__), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(getattr(serving, self.__attrname__), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(getattr(serving, self.__attrname__), name)

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        return self._target().__dict__

    def __getitem__(self, key: Any) -> Any:
        return self._target()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._target()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._target()[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._target()

    def __len__(self) -> int:
        return len(self._target())

    def __bool__(self) -> bool:
        return bool(self._target())

    def __repr__(self) -> str:
        target = getattr(serving, self.__attrname__, None)  # a repr never raises
        return f"<proxy of serving.{self.__attrname__}: {target!r}>"


class ThreadData(threading.local):
    """A container for per-thread data of the application (``services.web.thread_data``)."""


thread_data = ThreadData()
