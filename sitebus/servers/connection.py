"""cheroot's connection and socket reader, fitted for the head reader
(``sitebus.servers.headreader``).

The head reader reads a request head before a worker thread sees the connection, so cheroot
must parse bytes that are no longer in the socket. ``BufferedSocketIO`` is the raw reader
under the connection's buffered reader: it returns the bytes the head reader took first, then
reads the socket. ``Connection`` tells the head reader when a thread takes it (for
``HeadReader.stalled``).

This is the one place that assumes anything of cheroot's insides: that its
``makefile.StreamReader`` is a buffered reader (``_pyio.BufferedReader``) over a raw socket
reader built in ``__init__``, with a ``bytes_read`` count. ``StreamReader`` builds that base on
``BufferedSocketIO`` instead; tests/test_headreader.py fails loudly if cheroot changes it.
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

from cheroot import makefile
from cheroot.server import HTTPConnection, HTTPRequest

__all__ = ["BufferedSocketIO", "Connection", "Request", "StreamReader"]


class Request(HTTPRequest):
    """cheroot's request in its proxy mode, as the reference's server runs it: ``CONNECT
    host:port`` reaches the app (other targets of CONNECT are answered 400), and the
    absolute form of a request target (``GET http://host/path``), which RFC 9112 3.2.2 says
    a server must accept, is served rather than refused."""

    def __init__(self, server: Any, conn: Any, proxy_mode: bool = True,
                 strict_mode: bool = True) -> None:
        super().__init__(server, conn, proxy_mode=proxy_mode, strict_mode=strict_mode)


class BufferedSocketIO(socket.SocketIO):
    """A socket's raw reader that returns the bytes the head reader took before the socket's."""

    def __init__(self, sock: socket.socket, mode: str) -> None:
        super().__init__(sock, "rb")
        self.pending = bytearray()

    def readinto(self, b: Any) -> int:
        if self.pending:
            size = min(len(b), len(self.pending))
            b[:size] = self.pending[:size]
            del self.pending[:size]
            return size
        return super().readinto(b) or 0


class StreamReader(makefile.StreamReader):
    """cheroot's socket reader, on a ``BufferedSocketIO``."""

    def __init__(self, sock: socket.socket, mode: str = "rb", bufsize: int = 8192) -> None:
        # StreamReader.__init__ would build a plain SocketIO; build its base on ours instead.
        super(makefile.StreamReader, self).__init__(BufferedSocketIO(sock, mode), bufsize)
        self.bytes_read = 0


class Holder(Protocol):
    """What a connection needs of the head reader that holds it (``HeadReader``): the
    connections queued for a worker thread, with when each was queued."""

    queued: dict[Connection, float]


class Connection(HTTPConnection):
    """cheroot's connection, which tells the head reader when a thread takes it."""

    RequestHandlerClass = Request

    reader: Holder | None = None
    """The head reader that holds it between requests."""

    def communicate(self) -> bool:
        reader = self.reader
        if reader is not None:
            reader.queued.pop(self, None)
        return bool(super().communicate())

    def close(self) -> None:
        reader = self.reader
        if reader is not None:
            reader.queued.pop(self, None)  # a 503 when the queue is full closes it untaken
        super().close()
