"""Listening sockets: bind TCP and UNIX addresses, choose the backlog, stop accepting at once.

sitebus binds every listening socket itself, in the thread that runs the bus's ``start``, and
hands the bound socket to the server. Three reasons: a bind error (address in use, no
permission, a missing directory) is raised straight into ``start`` as one clear error naming
the address, with nothing left bound; a socket given by someone else (systemd, the previous
process image on a restart) is served the same way as one bound here; and cheroot's own
``prepare()`` takes fd 3 whenever ``LISTEN_PID`` is set, for every server in the process,
which sitebus must decide instead.

Rules:

- The backlog (``listen()``'s argument) holds a burst: the reference's 5 overflows as soon as
  a few dozen clients connect at once, and each dropped SYN costs the client a one-second
  retransmission (see bench/bench_servers.py). It is capped by ``net.core.somaxconn``, which
  the kernel would apply silently anyway, so the value reported is the one in force.
- A UNIX socket file left by a dead process (nothing accepts on it) is replaced; a live one
  is an error naming the path; anything that is not a socket is never removed. The file is
  removed on stop only if it is still the one bound here (same device and inode).
- A server accepts from a :class:`Listener`, a duplicate of the listening socket.
  ``stop_accepting()`` makes its ``accept()`` answer "try again" from then on, and for a
  socket sitebus owns it also shuts the socket down, so the kernel refuses new connections
  at once and the server's selector wakes up. A socket sitebus was given is left open and
  listening: its owner (systemd, the next process image) keeps the queued connections.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any

from sitebus.errors import CannotCreateError, NoPermissionError, UnavailableError

__all__ = [
    "BURST_BACKLOG",
    "Listener",
    "bind_tcp",
    "bind_unix",
    "default_backlog",
    "file_identity",
    "format_address",
    "is_listening",
    "listen_backlog",
    "remove_socket_file",
    "serve_on",
    "socket_file_verdict",
    "somaxconn",
]

SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"

BURST_BACKLOG = 1024
"""The backlog asked for by default: enough for a burst of connections from a proxy or many
clients at once (nginx asks for 511, gunicorn for 2048); capped by ``somaxconn``."""

UNIX_PATH_MAX = 107
"""The longest UNIX socket path in bytes (``sun_path`` holds 108 with the final NUL)."""

Address = Any  # (host, port), (host, port, flowinfo, scope_id) or a socket file path


def somaxconn(path: str = SOMAXCONN_PATH) -> int:
    """Return the kernel's cap on listen backlogs (``net.core.somaxconn``)."""
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return socket.SOMAXCONN


def listen_backlog(requested: int | None, limit: int) -> int:
    """Return the backlog to ask for: ``requested`` (or the burst default), capped by ``limit``."""
    wanted = BURST_BACKLOG if requested is None else requested
    return max(1, min(wanted, limit))


def default_backlog() -> int:
    """Return the default ``socket_queue_size`` on this host."""
    return listen_backlog(None, somaxconn())


def format_address(address: Address) -> str:
    """Return an address as people write it: ``127.0.0.1:8080``, ``[::1]:8080``, a path."""
    if isinstance(address, bytes):
        address = os.fsdecode(address)
    if isinstance(address, str):
        if address.startswith("\0"):
            return "@" + address[1:]  # a Linux abstract socket, as ss(8) shows it
        return address
    host, port = address[:2]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def is_listening(sock: socket.socket) -> bool:
    """Return True when ``sock`` is a stream socket in the listening state."""
    try:
        return bool(
            sock.type == socket.SOCK_STREAM
            and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        )
    except OSError:
        return False


class Listener(socket.socket):
    """A duplicate of a listening socket, from which a server accepts connections.

    After ``stop_accepting()``, ``accept()`` raises BlockingIOError (EAGAIN), which cheroot
    and flup both take as "nothing to accept", so a selector that wakes up while the server
    stops does no harm.
    """

    accepting = True
    owned = True
    """True when sitebus bound the socket, and so may shut it down."""

    def accept(self) -> tuple[socket.socket, Any]:
        if not self.accepting:
            raise BlockingIOError(errno.EAGAIN, "the server has stopped accepting connections")
        return super().accept()

    def stop_accepting(self) -> None:
        """Accept nothing more; refuse new connections at once if sitebus owns the socket."""
        self.accepting = False
        if self.owned:
            try:
                # On a listening socket, SHUT_RD ends the listening state: new connections
                # are refused, queued ones are reset, and pollers see the socket hang up.
                self.shutdown(socket.SHUT_RD)
            except OSError:
                pass


def serve_on(sock: socket.socket, owned: bool) -> Listener:
    """Return a non-blocking Listener on a duplicate of the listening socket ``sock``."""
    listener = Listener(fileno=os.dup(sock.fileno()))
    listener.owned = owned
    listener.setblocking(False)  # several acceptors may share the socket: never block
    return listener


def _bind_error(error: OSError, address: Address) -> OSError:
    where = format_address(address)
    if error.errno == errno.EADDRINUSE:
        return UnavailableError(
            errno.EADDRINUSE,
            f"cannot listen on {where}: the address is already in use "
            "(another process is listening there)",
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return NoPermissionError(
            error.errno,
            f"cannot listen on {where}: permission denied (ports below 1024 need root "
            "or CAP_NET_BIND_SERVICE)",
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return UnavailableError(
            error.errno, f"cannot listen on {where}: that is not an address of this host"
        )
    return UnavailableError(error.errno, f"cannot listen on {where}: {error.strerror or error}")


def bind_tcp(host: str, port: int, backlog: int, nodelay: bool = True) -> socket.socket:
    """Return a TCP socket listening on ``host:port``, or raise an error naming the address.

    ``host`` is resolved as the reference does (the first address that binds wins, so
    'localhost' may be ::1); '::' accepts IPv4 too (dual stack).
    """
    try:
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise UnavailableError(
            errno.EADDRNOTAVAIL,
            f"cannot listen on {format_address((host, port))}: "
            f"the host name does not resolve ({error.strerror})",
        ) from error
    first_error: OSError | None = None
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if port != 0:  # SO_REUSEADDR on port 0 could hand out a port in TIME_WAIT use
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host in ("::", "::0", "::0.0.0.0"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if nodelay:  # accepted sockets inherit it
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind(address)
            sock.listen(backlog)
            return sock
        except OSError as error:
            sock.close()
            if first_error is None:
                first_error = _bind_error(error, (host, port))
    assert first_error is not None, "getaddrinfo returned no address"
    raise first_error


def socket_file_verdict(mode: int | None, answered: bool | None) -> str:
    """Decide what to do with the path of a UNIX socket about to be bound.

    ``mode`` is the path's ``st_mode`` (None when nothing is there); ``answered`` tells
    whether a connection to it succeeded (None when not tried). Returns 'bind' (free),
    'replace' (a stale socket: remove it first), 'in-use' (a live socket) or 'not-a-socket'.
    """
    if mode is None:
        return "bind"
    if not stat.S_ISSOCK(mode):
        return "not-a-socket"
    return "in-use" if answered else "replace"


def _probe_socket_file(path: str) -> tuple[int | None, bool | None]:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None, None
    if not stat.S_ISSOCK(mode):
        return mode, None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return mode, False
        except OSError:
            return mode, True  # a backlog full or a timeout means somebody is there
        return mode, True


def file_identity(path: str) -> tuple[int, int] | None:
    """Return (device, inode) of ``path``, or None when it does not exist."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def bind_unix(path: str, backlog: int, mode: int) -> tuple[socket.socket, tuple[int, int], bool]:
    """Return a UNIX socket listening at ``path`` with file ``mode``, its file identity, and
    whether a stale socket file was replaced."""
    verdict = socket_file_verdict(*_probe_socket_file(path))
    if verdict == "in-use":
        raise UnavailableError(
            errno.EADDRINUSE,
            f"cannot listen on {path}: the socket file is in use "
            "(a process is accepting connections on it)",
        )
    if verdict == "not-a-socket":
        raise CannotCreateError(
            errno.EEXIST, f"cannot listen on {path}: a file that is not a socket is in the way"
        )
    replaced = verdict == "replace"
    if replaced:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise _bind_error(error, path) from error
        reason = error.strerror or str(error)
        if error.errno == errno.ENOENT:
            reason = f"the directory {os.path.dirname(path) or '.'} does not exist"
        raise CannotCreateError(
            error.errno, f"cannot create socket file {path}: {reason}"
        ) from error
    try:
        os.chmod(path, mode)
        identity = file_identity(path)
        assert identity is not None
        sock.listen(backlog)
    except BaseException:
        sock.close()
        remove_socket_file(path, file_identity(path))
        raise
    return sock, identity, replaced


def remove_socket_file(path: str, identity: tuple[int, int] | None) -> bool:
    """Remove the socket file at ``path`` if it is still the one with ``identity``."""
    if identity is None or file_identity(path) != identity:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
