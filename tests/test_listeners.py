"""Listeners: the backlog choice, socket file verdicts, addresses; real binds and refusals."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from sitebus.errors import CannotCreateError, UnavailableError
from sitebus.servers import listeners
from sitebus.servers.listeners import (
    bind_tcp,
    bind_unix,
    format_address,
    listen_backlog,
    remove_socket_file,
    serve_on,
    socket_file_verdict,
)
from tests.httpclients import refuses


@pytest.mark.parametrize(
    ("requested", "limit", "expected"),
    [
        (None, 4096, listeners.BURST_BACKLOG),  # the default holds a burst
        (None, 128, 128),  # capped by somaxconn (older kernels)
        (5, 4096, 5),  # an explicit value is kept
        (8192, 4096, 4096),  # ... but capped too
        (0, 4096, 1),  # never 0
    ],
)
def test_listen_backlog(requested: int | None, limit: int, expected: int) -> None:
    assert listen_backlog(requested, limit) == expected


def test_default_backlog_holds_64_clients_and_respects_somaxconn() -> None:
    assert min(64, listeners.somaxconn()) <= listeners.default_backlog() <= listeners.somaxconn()


def test_somaxconn_falls_back_when_proc_is_missing(tmp_path: Path) -> None:
    assert listeners.somaxconn(str(tmp_path / "missing")) == socket.SOMAXCONN
    (tmp_path / "somaxconn").write_text("511\n")
    assert listeners.somaxconn(str(tmp_path / "somaxconn")) == 511


SOCK = stat.S_IFSOCK | 0o666
FILE = stat.S_IFREG | 0o644


@pytest.mark.parametrize(
    ("mode", "answered", "verdict"),
    [
        (None, None, "bind"),
        (SOCK, False, "replace"),
        (SOCK, True, "in-use"),
        (FILE, None, "not-a-socket"),
        (stat.S_IFDIR | 0o755, None, "not-a-socket"),
    ],
)
def test_socket_file_verdict(mode: int | None, answered: bool | None, verdict: str) -> None:
    assert socket_file_verdict(mode, answered) == verdict


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (("127.0.0.1", 8080), "127.0.0.1:8080"),
        (("::1", 8080, 0, 0), "[::1]:8080"),
        ("/run/site.sock", "/run/site.sock"),
        (b"/run/site.sock", "/run/site.sock"),
        ("\0abstract", "@abstract"),
    ],
)
def test_format_address(address: object, text: str) -> None:
    assert format_address(address) == text


def test_port_0_binds_a_real_port() -> None:
    with bind_tcp("127.0.0.1", 0, 16) as sock:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_port_in_use_is_one_error_naming_the_address() -> None:
    with bind_tcp("127.0.0.1", 0, 16) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(UnavailableError) as caught:
            bind_tcp("127.0.0.1", port, 16)
    assert caught.value.errno == errno.EADDRINUSE
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in str(caught.value)
    assert caught.value.exit_code == 69


def test_an_unresolvable_host_is_unavailable() -> None:
    with pytest.raises(UnavailableError, match="nonexistent.invalid:8080: the host name"):
        bind_tcp("nonexistent.invalid", 8080, 16)


def test_an_address_of_another_host_is_named() -> None:
    with pytest.raises(UnavailableError, match="192.0.2.1:0: that is not an address of this host"):
        bind_tcp("192.0.2.1", 0, 16)  # TEST-NET-1, never local


def test_unix_socket_gets_its_mode_and_is_removed_on_stop(tmp_path: Path) -> None:
    path = str(tmp_path / "site.sock")
    sock, identity, replaced = bind_unix(path, 16, 0o660)
    with sock:
        assert not replaced
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert remove_socket_file(path, identity)
        assert not os.path.exists(path)


def test_a_socket_file_that_is_no_longer_ours_is_left_alone(tmp_path: Path) -> None:
    path = str(tmp_path / "site.sock")
    ours, identity, _ = bind_unix(path, 16, 0o666)
    theirs, their_identity, _ = bind_unix(str(tmp_path / "other.sock"), 16, 0o666)
    with ours, theirs:
        os.replace(tmp_path / "other.sock", path)  # someone put their socket at our path
        assert not remove_socket_file(path, identity)
        assert os.path.exists(path)
        assert remove_socket_file(path, their_identity)


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "site.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays; nothing accepts on it
    sock, _, replaced = bind_unix(path, 16, 0o666)
    with sock:
        assert replaced
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)


def test_a_live_socket_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    path = str(tmp_path / "site.sock")
    live, _, _ = bind_unix(path, 16, 0o666)
    with live, pytest.raises(UnavailableError) as caught:
        bind_unix(path, 16, 0o666)
    assert f"cannot listen on {path}: the socket file is in use" in str(caught.value)


def test_a_regular_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "site.sock"
    path.write_text("precious")
    with pytest.raises(CannotCreateError, match="a file that is not a socket is in the way"):
        bind_unix(str(path), 16, 0o666)
    assert path.read_text() == "precious"


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "site.sock"
    with pytest.raises(CannotCreateError) as caught:
        bind_unix(str(path), 16, 0o666)
    assert f"the directory {path.parent} does not exist" in str(caught.value)
    assert caught.value.exit_code == 73


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_stop_accepting_refuses_at_once_when_owned(family: str, tmp_path: Path) -> None:
    if family == "tcp":
        original = bind_tcp("127.0.0.1", 0, 16)
        address = original.getsockname()
    else:
        address = str(tmp_path / "s.sock")
        original = bind_unix(address, 16, 0o666)[0]
    listener = serve_on(original, owned=True)
    with original, listener:
        assert not refuses(address)
        listener.stop_accepting()
        assert refuses(address)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_stop_accepting_leaves_a_given_socket_listening() -> None:
    original = bind_tcp("127.0.0.1", 0, 16)
    listener = serve_on(original, owned=False)
    with original, listener:
        listener.stop_accepting()
        with pytest.raises(BlockingIOError):
            listener.accept()
        listener.close()
        # The owner (systemd, the next process image) still queues connections.
        with socket.create_connection(original.getsockname(), timeout=5):
            conn, _ = original.accept()
            conn.close()
