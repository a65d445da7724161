"""Idle keep-alive connections cross a restart's exec, so the new image serves them.

A restart in place keeps the listening sockets for the next process image (``LISTEN_FDS``);
this module does the same for the connections a client keeps open between two requests, so
a restart closes none of them and no client's next request can race a close (see
``sitebus.servers.drain``). The old image's server, draining, gives each idle connection to
:func:`give` instead of closing it: its descriptor is moved above the range the listeners
are moved into, and on the bus's ``execv`` channel (after the site has placed the listeners)
it is kept open across the exec and listed in ``SITEBUS_CONNECTIONS`` (``fd:name,...``, the
name being the server's fd name) with ``SITEBUS_CONNECTIONS_PID``, so a process that merely
inherits the environment takes nothing. The new image's servers :func:`take` theirs when they
build, and cheroot watches them as idle keep-alive connections: a request sent meanwhile
waited in the kernel's buffer and is served at once. Connections no server takes (the config
changed) are closed once the bus has started.

Not handed over: TLS connections (their session state lives in the old image) and a
connection with bytes already read into the server's buffer (they would be lost); those are
served or closed by the drain as on a stop.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Mapping
from typing import Any

__all__ = ["ENV", "ENV_PID", "FIRST_FD", "close_unclaimed", "export", "give", "parse", "take"]

ENV = "SITEBUS_CONNECTIONS"
ENV_PID = "SITEBUS_CONNECTIONS_PID"

FIRST_FD = 64
"""Handed-over descriptors live at or above this, clear of fds 3, 4... that the listening
sockets are moved into for ``LISTEN_FDS`` (so at most 61 listeners)."""

_outgoing: dict[int, str] = {}
_incoming: dict[str, list[socket.socket]] | None = None


def give(sock: socket.socket, name: str) -> None:
    """Keep ``sock`` (an idle connection of the server named ``name``) for the next image.

    The socket object gives up its descriptor, so closing it later sends nothing to the peer.
    """
    fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, FIRST_FD)
    sock.close()  # the copy at ``fd`` keeps the connection open
    _outgoing[fd] = name


def export(inherit_fds: dict[int, str], environ: Any = os.environ) -> None:
    """Keep the given connections open across the exec and describe them in ``environ``."""
    if not _outgoing:
        return
    environ[ENV] = ",".join(f"{fd}:{name}" for fd, name in sorted(_outgoing.items()))
    environ[ENV_PID] = str(os.getpid())
    for fd, name in _outgoing.items():
        inherit_fds[fd] = f"connection {name}"
    _outgoing.clear()


def parse(environ: Mapping[str, str], pid: int) -> list[tuple[int, str]]:
    """Return the ``(fd, name)`` pairs ``environ`` hands to process ``pid`` (none if not ours)."""
    if environ.get(ENV_PID) != str(pid):
        return []
    pairs = []
    for item in filter(None, environ.get(ENV, "").split(",")):
        fd, _, name = item.partition(":")
        if fd.isdigit() and name:
            pairs.append((int(fd), name))
    return pairs


def _incoming_connections() -> dict[str, list[socket.socket]]:
    global _incoming
    if _incoming is None:
        _incoming = {}
        pairs = parse(os.environ, os.getpid())
        os.environ.pop(ENV, None)
        os.environ.pop(ENV_PID, None)
        for fd, name in pairs:
            try:
                sock = socket.socket(fileno=fd)
                sock.set_inheritable(False)
                sock.getpeername()
            except OSError:
                continue  # closed meanwhile, or not a connected socket: nothing to serve
            _incoming.setdefault(name, []).append(sock)
    return _incoming


def take(name: str) -> list[socket.socket]:
    """Return the connections the previous image handed to the server named ``name``."""
    return _incoming_connections().pop(name, [])


def close_unclaimed() -> int:
    """Close the handed-over connections no server took; return how many."""
    left = [sock for socks in _incoming_connections().values() for sock in socks]
    _incoming_connections().clear()
    for sock in left:
        sock.close()
    return len(left)
