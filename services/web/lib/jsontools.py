"""JSON in and out: ``tools.json_in`` reads a JSON body into ``request.json``; ``json_out``
serializes what the page handler returns.

``json_in`` installs a body processor for the JSON content types; with ``force`` (the
default) any other content type is refused with 415. A body without Content-Length is 411,
and one that is not JSON (or not UTF-8, or nested too deep to parse) is ``400 Invalid JSON
document``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from services.web._cperror import HTTPError
from services.web._serving import serving

__all__ = ["json_encode", "json_handler", "json_in", "json_out", "json_processor"]

_encoder = json.JSONEncoder()


def json_encode(value: Any) -> Iterator[bytes]:
    """Encode ``value`` as JSON, yielding UTF-8 chunks."""
    for chunk in _encoder.iterencode(value):
        yield chunk.encode("utf-8")


def json_processor(entity: Any) -> None:
    """Parse a JSON body and store the result on `request.json`."""
    if not entity.headers.get("Content-Length", ""):
        raise HTTPError(411)
    body = entity.fp.read()
    # ValueError covers bad JSON and bad UTF-8; RecursionError a document nested too deep.
    with HTTPError.handle((ValueError, RecursionError), 400, "Invalid JSON document"):
        serving.request.json = json.loads(body.decode("utf-8"))


def json_in(content_type: Any = ("application/json", "text/javascript"), force: bool = True,
            debug: bool = False, processor: Callable[[Any], None] = json_processor) -> None:
    """Have JSON bodies parsed into ``request.json`` before the handler runs.

    ``content_type`` is one or several media types to parse; with ``force``, entities of
    other types are answered 415. ``processor`` replaces ``json_processor`` if given.
    """
    request = serving.request
    if isinstance(content_type, str):
        content_type = [content_type]
    if force:
        request.body.processors.clear()
        request.body.default_proc = HTTPError(
            415, f"Expected an entity of content type {', '.join(content_type)}")
    for ct in content_type:
        request.body.processors[ct] = processor


def json_handler(*args: Any, **kwargs: Any) -> Any:
    """Call the wrapped handler and encode its value as JSON."""
    value = serving.request._json_inner_handler(*args, **kwargs)
    return json_encode(value)


def json_out(content_type: str | None = "application/json", debug: bool = False,
             handler: Callable[..., Any] = json_handler) -> None:
    """Wrap the page handler so that what it returns is sent as JSON.

    ``content_type`` (None to leave it) is set on the response; ``handler`` does the
    encoding (it calls ``request._json_inner_handler``).
    """
    request = serving.request
    if request.handler is None:
        return  # another tool has already answered
    request._json_inner_handler = request.handler
    request.handler = handler
    if content_type is not None:
        serving.response.headers["Content-Type"] = content_type
