"""cheroot's WSGI gateway with strict request bodies: a body that breaks its framing is a 400.

cheroot gives the app its own readers for the body. When a chunked body is malformed or
truncated they raise ValueError inside the app, and the app (or cheroot, when the error
escapes) answers 500; a chunked body over ``max_request_body_size`` answers 500 too, not 413;
and when the app leaves a chunked body unread, cheroot keeps the connection open with the rest
of the body on it, to be read as the next request.

``strict_gateway(base)`` returns a subclass of cheroot's gateway class that gives the app
``sitebus.servers.framing``'s readers instead (``ChunkedInput``, strict and held to the size limit;
``LengthInput``, which notices a body cut short). When one of them raises ``FramingError``,
the gateway answers its status (400 or 413) in place of whatever the app answered, as long as
no byte of the app's response has been sent, and closes the connection. A chunked request
whose body was not read to its end also closes the connection after its response.

A response to HEAD carries no content (RFC 9110 9.3.2), whatever the app returns: cheroot
would send the body an app gives (as a plain WSGI callable does), and on a keep-alive
connection the client would read it as the start of the next response. The headers stay what
the app gave, Content-Length included, as for the same GET.

The gateway reads ``req.conn.rfile``, ``req.rfile``, ``req.chunked_read``,
``req.close_connection``, ``req.sent_headers``, ``req.method``, ``req.chunked_write`` and
writes to ``req.conn.wfile``: public attributes of cheroot's ``HTTPRequest`` and
``HTTPConnection``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sitebus.servers.framing import ChunkedInput, FramingError, LengthInput, LineReader, Refusal

__all__ = ["strict_gateway"]

_made: dict[type, type] = {}



class _StrictBody:
    """The mixin: strict body readers, framing errors answered by the server."""

    req: Any
    env: dict[str, Any]
    refusal: Refusal | None = None

    def __init__(self, req: Any) -> None:
        super().__init__(req)  # type: ignore[call-arg]
        self.body: ChunkedInput | LengthInput | None = None
        if req.chunked_read:
            self.body = ChunkedInput(req.conn.rfile, req.server.max_request_body_size)
        elif getattr(req.rfile, "remaining", 0) > 0:
            self.body = LengthInput(req.rfile, req.rfile.remaining)
        if self.body is not None:
            self.env["wsgi.input"] = _Recording(self, self.body)

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], Any]:
        if isinstance(self.body, ChunkedInput) and not self.body.done:
            self.req.close_connection = True  # the rest of the body is still on the wire
        if exc_info is not None and not self.req.sent_headers:
            # An error page replaces the headers of the response it stands for (PEP 3333);
            # cheroot would add its headers to the first ones: two Content-Lengths.
            self.req.outheaders = []
        return super().start_response(status, headers, exc_info)  # type: ignore[misc]

    def write(self, chunk: bytes) -> None:
        req = self.req
        if req.method == b"HEAD":
            if self.started_response:  # type: ignore[attr-defined]
                req.ensure_headers_sent()  # the head, never the content
            return
        if self.refusal is not None and not req.sent_headers:
            return  # the refusal is answered instead, once the app is done
        super().write(chunk)  # type: ignore[misc]

    def respond(self) -> None:
        response: Iterable[bytes] | None = None
        try:
            response = self.req.server.wsgi_app(self.env, self.start_response)
            for chunk in response:
                if self.refusal is not None and not self.req.sent_headers:
                    break
                if chunk:
                    if not isinstance(chunk, bytes):
                        raise ValueError("WSGI Applications must yield bytes")
                    self.write(chunk)
        except Exception:
            if self.refusal is None:
                raise
        finally:
            try:
                # An app that raised (KeyboardInterrupt, SystemExit: cheroot stops the server)
                # gave no status to send; as in cheroot's gateway, nothing is sent for it here.
                if response is not None or self.refusal is not None:
                    self._finish()
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()

    def _finish(self) -> None:
        """Send the headers if not yet sent, or the refusal in place of the app's answer."""
        refusal = self.refusal
        if refusal is None:
            self.req.ensure_headers_sent()
            if self.req.method == b"HEAD":
                self.req.chunked_write = False  # no last chunk either: a HEAD has no content
            return
        self.req.close_connection = True
        if not self.req.sent_headers:
            self.req.sent_headers = True
            self.req.conn.wfile.write(refusal.response())


class _Recording(LineReader):
    """Passes reads to the body reader; notes a FramingError for the gateway to answer."""

    def __init__(self, gateway: _StrictBody, body: ChunkedInput | LengthInput) -> None:
        self._gateway = gateway
        self._body = body

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except FramingError as error:
            if self._gateway.refusal is None:
                self._gateway.refusal = error.refusal
            raise

    def read(self, size: int | None = -1) -> bytes:
        return self._call(self._body.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._call(self._body.readline, size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)


def strict_gateway(base: type) -> type:
    """Return cheroot gateway class ``base`` with strict request bodies (made once per base)."""
    made = _made.get(base)
    if made is None:
        made = _made[base] = type(f"Strict{base.__name__}", (_StrictBody, base), {})
    return made
