"""The reference's string helpers for code written against ``cherrypy._cpcompat``.

Native strings are ``str`` on Python 3, so each helper is a small conversion: ``ntob`` to
bytes, ``ntou`` and ``tonative`` to text. ISO-8859-1 is the default because it is HTTP's
header charset, and it maps every byte to one character and back.
"""

from __future__ import annotations

import http.client

# Code written for the reference may use urllib.request after a bare ``import urllib``: the
# reference's own imports made that work, so this one keeps it working.
import urllib.request  # noqa: F401
from typing import Any

__all__ = ["HTTPSConnection", "assert_native", "ntob", "ntou", "text_or_bytes", "tonative"]

HTTPSConnection = http.client.HTTPSConnection
text_or_bytes = (str, bytes)


def assert_native(value: Any) -> None:
    """Raise TypeError unless ``value`` is a native string (``str``)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a native str, got {type(value).__name__}")


def ntob(value: str, encoding: str = "ISO-8859-1") -> bytes:
    """Encode the native string ``value`` to bytes."""
    assert_native(value)
    return value.encode(encoding)


def ntou(value: str, encoding: str = "ISO-8859-1") -> str:
    """Return the native string ``value`` as text (it already is)."""
    assert_native(value)
    return value


def tonative(value: str | bytes, encoding: str = "ISO-8859-1") -> str:
    """Return ``value`` as a native string, decoding bytes with ``encoding``."""
    return value.decode(encoding) if isinstance(value, bytes) else value
