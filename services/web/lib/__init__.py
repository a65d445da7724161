"""The framework's library modules (``services.web.lib.httputil``, ``.encoding``, ...).

Mirrors ``cherrypy.lib``: so ``from cherrypy.lib import httputil`` becomes
``from services.web.lib import httputil``. This package holds the small helpers about
response bodies that several modules share.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import IO, Any

__all__ = [
    "file_generator",
    "file_generator_limited",
    "is_closable_iterator",
    "is_iterator",
    "set_vary_header",
]

# Whether close() of a type can be called without arguments, by type: asked once per type.
_closable_types: dict[type, bool] = {}


def is_iterator(obj: Any) -> bool:
    """Return True if ``obj`` is an iterator (not merely an iterable such as a list)."""
    return isinstance(obj, Iterator)


def is_closable_iterator(obj: Any) -> bool:
    """Return True if ``obj`` is an iterator whose ``close()`` takes no arguments."""
    if inspect.isgenerator(obj):
        return True
    if not is_iterator(obj):
        return False
    return closable(obj)


def closable(obj: Any) -> bool:
    """Return True if ``obj`` has a ``close()`` that can be called without arguments."""
    kind = type(obj)
    known = _closable_types.get(kind)
    if known is not None:
        return known
    close = getattr(obj, "close", None)
    result = False
    if callable(close):
        try:
            inspect.signature(close).bind()
            result = True
        except TypeError:
            result = False
        except ValueError:  # no signature (a builtin): assume the usual close()
            result = True
    _closable_types[kind] = result
    return result


class file_generator:  # noqa: N801 (the reference's name)
    """Read a file object piece by piece (64 KiB unless told), closing it when done."""

    def __init__(self, input: IO[bytes], chunkSize: int = 65536) -> None:  # noqa: N803
        self.input = input
        self.chunkSize = chunkSize

    def __iter__(self) -> file_generator:
        return self

    def __next__(self) -> bytes:
        chunk = self.input.read(self.chunkSize)
        if chunk:
            return chunk
        self.close()
        raise StopIteration()

    def close(self) -> None:
        """Close the underlying file."""
        close = getattr(self.input, "close", None)
        if close is not None:
            close()


def file_generator_limited(fileobj: IO[bytes], count: int,
                           chunk_size: int = 65536) -> Iterator[bytes]:
    """Read a file object piece by piece, no more than ``count`` bytes in all."""
    remaining = count
    while remaining > 0:
        chunk = fileobj.read(min(chunk_size, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def set_vary_header(response: Any, header_name: str) -> None:
    """Add ``header_name`` to the response's Vary header."""
    varies = response.headers.get("Vary", "")
    names = [x.strip() for x in varies.split(",") if x.strip()]
    if header_name not in names:
        names.append(header_name)
    response.headers["Vary"] = ", ".join(names)
