"""JSON under the reference's module name: ``json`` (the standard library's), ``encode`` and
``decode``.

``encode(value)`` returns the JSON text as an iterator of UTF-8 chunks, as a response body
wants it; ``decode(text)`` parses one JSON document.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

__all__ = ["decode", "encode", "json"]

_decoder = json.JSONDecoder()
_encoder = json.JSONEncoder()


def decode(text: str) -> Any:
    """Parse one JSON document."""
    return _decoder.decode(text)


def encode(value: Any) -> Iterator[bytes]:
    """Return ``value`` as JSON, in UTF-8 chunks."""
    return (chunk.encode("utf-8") for chunk in _encoder.iterencode(value))
