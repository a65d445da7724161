"""ServerAdapter and Server: pure pieces (descriptions, addresses, settings) and real sockets."""

from __future__ import annotations

import os
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import trustme

from sitebus.bus import Bus, ChannelFailures, states
from sitebus.errors import ConfigError, UnavailableError, exit_code_of, root_causes
from sitebus.servers.listeners import default_backlog
from sitebus.servers.server import Server, ServerAdapter, describe, server_types, setting_problems
from tests.httpclients import GatedApp, connection, fetch, hello_app, refuses
from tests.processes import socket_fds, wait_until

pytestmark = pytest.mark.timeout(60)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def logs(bus: Bus) -> list[str]:
    messages: list[str] = []
    bus.subscribe("log", lambda msg, level: messages.append(msg))
    return messages


@pytest.fixture
def tls(tmp_path: Path) -> tuple[str, str, ssl.SSLContext]:
    """A certificate and key for 127.0.0.1/localhost/::1, and a client context trusting it."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return str(cert_path), str(key_path), client


def server_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())


# -- pure pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "scheme", "text"),
    [
        (("127.0.0.1", 8080), "http", "http://127.0.0.1:8080"),
        (("127.0.0.1", 80), "http", "http://127.0.0.1"),
        (("example.com", 443), "https", "https://example.com"),
        (("example.com", 80), "https", "https://example.com:80"),
        (("::1", 8080), "http", "http://[::1]:8080"),
        (("::", 80), "http", "http://[::]"),
        (("127.0.0.1", 4000), "fcgi", "fcgi://127.0.0.1:4000"),
        ("/run/site.sock", "http", "socket file: /run/site.sock"),
        (None, "http", "an address not known yet"),
    ],
)
def test_describe(address: Any, scheme: str, text: str) -> None:
    assert describe(address, scheme) == text


def test_defaults_are_the_production_choices(bus: Bus) -> None:
    server = Server(bus)
    assert server.bind_addr == ("127.0.0.1", 8080)
    assert server.description == "http://127.0.0.1:8080"
    assert server.thread_pool == 4  # measured: see bench/bench_servers.py
    assert server.socket_queue_size == default_backlog() >= min(64, default_backlog())
    assert (server.socket_timeout, server.shutdown_timeout) == (10, 5)
    assert server.max_request_body_size == 100 * 1024 * 1024
    assert server.ssl_module == "builtin" and server.type == "cheroot"


def test_bind_addr_follows_host_port_and_socket_file(bus: Bus) -> None:
    server = Server(bus, socket_host="::1", socket_port=9000)
    assert server.bind_addr == ("::1", 9000)
    server.socket_file = "/run/site.sock"
    assert server.bind_addr == "/run/site.sock"
    assert server.description == "socket file: /run/site.sock"
    server.bind_addr = ("0.0.0.0", 80)
    assert (server.socket_host, server.socket_port, server.socket_file) == ("0.0.0.0", 80, None)
    server.bind_addr = "/tmp/other.sock"
    assert server.bind_addr == "/tmp/other.sock"
    with pytest.raises(ValueError, match="bind_addr: expected \\(host, port\\) for TCP"):
        server.bind_addr = ("a", "b", "c")


def test_bind_addr_of_a_given_listener(bus: Bus) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = Server(bus, listener=sock)
        assert server.bind_addr == sock.getsockname()


def test_keys_name_the_server(bus: Bus) -> None:
    assert Server(bus).key("socket_port") == "server.socket_port"
    assert Server(bus, "api").key("socket_port") == "server.api.socket_port"


def _values(**changes: Any) -> dict[str, Any]:
    server = Server(Bus(), wsgi_app=hello_app)
    values = server.settings()
    values.update(changes)
    return values


@pytest.mark.parametrize(
    ("changes", "setting", "expected"),
    [
        ({"socket_host": ""}, "socket_host", "use '0.0.0.0' (IPv4) or '::' (IPv6)"),
        ({"socket_host": None}, "socket_host", "a host name or IP address"),
        ({"socket_port": 70000}, "socket_port", "an integer from 0 to 65535"),
        ({"socket_port": -1}, "socket_port", "an integer from 0 to 65535"),
        ({"socket_port": "8080"}, "socket_port", "an integer from 0 to 65535"),
        ({"socket_port": True}, "socket_port", "an integer from 0 to 65535"),
        ({"socket_file": "/x" * 60}, "socket_file", "at most 107 bytes"),
        ({"socket_file_mode": 0o1777}, "socket_file_mode", "a file mode"),
        ({"socket_queue_size": 0}, "socket_queue_size", "a positive integer"),
        ({"socket_timeout": -1}, "socket_timeout", "0 or more"),
        ({"thread_pool": 0}, "thread_pool", "a positive integer"),
        ({"thread_pool_max": 0}, "thread_pool_max", "-1 (no limit) or a positive integer"),
        ({"thread_pool": 8, "thread_pool_max": 4}, "thread_pool_max", "at least thread_pool (8)"),
        ({"shutdown_timeout": "5"}, "shutdown_timeout", "a number of seconds"),
        ({"accepted_queue_size": 0}, "accepted_queue_size", "-1 (no limit)"),
        ({"protocol_version": "HTTP/2"}, "protocol_version", "'HTTP/1.1' or 'HTTP/1.0'"),
        ({"max_request_body_size": -1}, "max_request_body_size", "a number of bytes"),
        ({"nodelay": "yes"}, "nodelay", "True or False"),
        ({"wsgi_app": None}, "wsgi_app", "a WSGI application"),
        ({"wsgi_version": (2, 0)}, "wsgi_version", "(1, 0) or ('u', 0)"),
        ({"ssl_module": "m2crypto"}, "ssl_module", "'builtin' or 'pyopenssl'"),
        ({"ssl_private_key": "k.pem"}, "ssl_certificate", "a certificate file to go with"),
        ({"ssl_context": "ctx"}, "ssl_context", "None or an SSLContext"),
        ({"type": "twisted"}, "type", "one of 'cheroot', 'fastcgi', 'scgi', 'cgi', 'uvicorn'"),
        ({"type": "fastcgi", "ssl_certificate": "c.pem"}, "ssl_certificate",
         "the 'fastcgi' server type has no TLS"),
    ],
)
def test_setting_problems(changes: dict[str, Any], setting: str, expected: str) -> None:
    problems = setting_problems(_values(**changes))
    assert problems and problems[0][0] == setting
    assert expected in problems[0][1]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"socket_file": "/run/site.sock", "socket_host": ""},  # host and port do not apply
        {"socket_port": 0, "thread_pool_max": -1},
        {"thread_pool": 4, "thread_pool_max": 4},
        {"socket_timeout": 0, "shutdown_timeout": 0.5},
        {"protocol_version": "HTTP/1.0", "wsgi_version": ("u", 0)},
        {"type": "cgi", "socket_host": ""},  # CGI does not listen
    ],
)
def test_good_settings_have_no_problems(changes: dict[str, Any]) -> None:
    assert setting_problems(_values(**changes)) == []


def test_validate_names_the_key_the_value_and_what_was_expected(bus: Bus) -> None:
    server = Server(bus, "api", wsgi_app=hello_app, socket_port=70000)
    with pytest.raises(ConfigError) as caught:
        server.validate()
    assert str(caught.value) == (
        "server.api.socket_port: expected an integer from 0 to 65535, got 70000"
    )
    assert caught.value.exit_code == 78


def test_empty_host_is_refused_as_in_the_reference(bus: Bus) -> None:
    with pytest.raises(ConfigError, match="server.socket_host: .*'0.0.0.0'.*got ''"):
        Server(bus, wsgi_app=hello_app, socket_host="").validate()


def test_unknown_setting_is_a_config_error(bus: Bus) -> None:
    with pytest.raises(ConfigError, match="server.sokcet_port: unknown setting"):
        Server(bus, sokcet_port=80)


def test_a_missing_certificate_file_is_named(bus: Bus, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    server = Server(bus, wsgi_app=hello_app, ssl_certificate=missing)
    with pytest.raises(ConfigError) as caught:
        server.validate()
    assert str(caught.value) == (
        f"server.ssl_certificate: expected a readable file, got {missing!r} (no such file)"
    )


def test_a_bad_cipher_string_is_named(bus: Bus, tls: tuple[str, str, Any]) -> None:
    cert, key, _ = tls
    server = Server(bus, wsgi_app=hello_app, ssl_certificate=cert, ssl_private_key=key,
                    ssl_ciphers="NO-SUCH-CIPHER")
    with pytest.raises(ConfigError, match="server.ssl_ciphers: expected an OpenSSL cipher"):
        server.validate()


def test_a_missing_flup_is_reported_by_name(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flup", None)  # what find_spec sees when flup is absent
    server = Server(bus, wsgi_app=hello_app, type="fastcgi")
    with pytest.raises(UnavailableError) as caught:
        server.validate()
    assert "server.type = 'fastcgi' needs flup, which is not installed (pip install flup)" in str(
        caught.value)


def test_a_listener_that_does_not_listen_is_refused(bus: Bus) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listen()ed
        server = Server(bus, wsgi_app=hello_app, listener=sock)
        with pytest.raises(ConfigError, match="server.listener: expected a listening stream"):
            server.validate()


def test_the_registry_describes_each_type() -> None:
    assert list(server_types) == ["cheroot", "fastcgi", "scgi", "cgi", "uvicorn"]
    assert all(kind.summary and kind.scheme for kind in server_types.values())


# -- real sockets -------------------------------------------------------------------------------


def test_port_0_serves_on_a_real_port(bus: Bus, logs: list[str]) -> None:
    before = server_threads()
    server = Server(bus, socket_port=0, wsgi_app=hello_app)
    server.subscribe()
    bus.start()
    host, port = server.bound_addr
    assert host == "127.0.0.1" and port > 0
    assert f"Serving on http://127.0.0.1:{port}" in logs
    assert len(server_threads()) > len(before)  # the server's own threads, whatever their names
    status, body, response = fetch(server.bound_addr, "/x")
    assert (status, body) == (200, b"Hello http /x")
    assert response.getheader("Server").startswith("sitebus/")
    bus.exit()
    assert f"HTTP Server http://127.0.0.1:{port} shut down" in logs
    assert refuses(("127.0.0.1", port))
    assert server_threads() == before


def test_ipv4_ipv6_unix_and_tls_servers_together(
    bus: Bus, logs: list[str], tmp_path: Path, tls: tuple[str, str, ssl.SSLContext]
) -> None:
    cert, key, client = tls
    fds = socket_fds()
    path = str(tmp_path / "site.sock")
    servers = {
        "v4": Server(bus, socket_port=0, wsgi_app=hello_app),
        "v6": Server(bus, "v6", socket_host="::1", socket_port=0, wsgi_app=hello_app),
        "unix": Server(bus, "unix", socket_file=path, socket_file_mode=0o600,
                       wsgi_app=hello_app),
        "tls": Server(bus, "tls", socket_port=0, wsgi_app=hello_app,
                      ssl_certificate=cert, ssl_private_key=key),
    }
    for server in servers.values():
        server.subscribe()
    bus.start()
    assert servers["v6"].description.startswith("http://[::1]:")
    assert servers["unix"].description == f"socket file: {path}"
    assert servers["tls"].description.startswith("https://127.0.0.1:")
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
    assert fetch(servers["v4"].bound_addr)[:2] == (200, b"Hello http /")
    assert fetch(servers["v6"].bound_addr)[:2] == (200, b"Hello http /")
    assert fetch(path)[:2] == (200, b"Hello http /")
    assert fetch(servers["tls"].bound_addr, tls=client)[:2] == (200, b"Hello https /")
    for server in servers.values():
        assert f"Serving on {server.description}" in logs
    bus.exit()
    assert not os.path.exists(path)
    assert all(refuses(s.bound_addr) for s in servers.values())
    assert socket_fds() == fds


def test_plain_http_on_the_tls_port_is_turned_away(bus: Bus, tls: tuple[str, str, Any]) -> None:
    cert, key, client = tls
    server = Server(bus, socket_port=0, wsgi_app=hello_app, ssl_certificate=cert,
                    ssl_private_key=key)
    server.subscribe()
    bus.start()
    try:
        status, body, _ = fetch(server.bound_addr)
        assert status == 400 and b"only speaks HTTPS" in body
    except ConnectionResetError:
        pass  # cheroot closes with the request unread: the reset may overtake its 400
    assert fetch(server.bound_addr, tls=client)[:2] == (200, b"Hello https /")


def test_an_ssl_context_alone_turns_tls_on(bus: Bus, tls: tuple[str, str, Any]) -> None:
    cert, key, client = tls
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Server(bus, socket_port=0, wsgi_app=hello_app, ssl_context=context)
    server.subscribe()
    bus.start()
    assert server.scheme == "https"
    assert fetch(server.bound_addr, tls=client)[:2] == (200, b"Hello https /")


def test_the_reference_ssl_module_pyopenssl_is_served_by_python_ssl(
        bus: Bus, tls: tuple[str, str, Any], logs: list[str]) -> None:
    """The reference's TLS recipe with ``ssl_module = 'pyopenssl'`` works as written; a start
    says which library serves it."""
    cert, key, client = tls
    server = Server(bus, socket_port=0, wsgi_app=hello_app, ssl_module="pyopenssl",
                    ssl_certificate=cert, ssl_private_key=key)
    server.subscribe()
    bus.start()
    assert fetch(server.bound_addr, tls=client)[:2] == (200, b"Hello https /")
    assert [m for m in logs if "'pyopenssl': TLS is served by Python's ssl module" in m]


def test_a_key_that_does_not_match_is_a_config_error_with_nothing_bound(
    bus: Bus, tls: tuple[str, str, Any], tmp_path: Path
) -> None:
    cert, _, _ = tls
    other = trustme.CA().issue_cert("127.0.0.1")
    other_key = tmp_path / "other-key.pem"
    other.private_key_pem.write_to_path(other_key)
    fds = socket_fds()
    server = Server(bus, socket_port=0, wsgi_app=hello_app, ssl_certificate=cert,
                    ssl_private_key=str(other_key))
    server.subscribe()
    with pytest.raises(ChannelFailures) as caught:
        bus.start()
    [error] = root_causes(caught.value)
    assert isinstance(error, ConfigError)
    assert str(error).startswith("server.ssl_certificate: cannot use the certificate and key")
    assert exit_code_of(caught.value) == 78
    assert socket_fds() == fds


def test_a_port_in_use_stops_everything_with_one_error(bus: Bus, logs: list[str]) -> None:
    before = server_threads()
    fds = socket_fds()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        first = Server(bus, socket_port=0, wsgi_app=hello_app)
        second = Server(bus, "taken", socket_port=port, wsgi_app=hello_app)
        first.subscribe()
        second.subscribe()
        with pytest.raises(ChannelFailures) as caught:
            bus.start()
        [error] = root_causes(caught.value)
        assert isinstance(error, UnavailableError)
        assert str(error).endswith(
            f"cannot listen on 127.0.0.1:{port}: the address is already in use "
            "(another process is listening there)"
        )
        assert exit_code_of(caught.value) == 69
        assert bus.state is states.EXITING
        assert not first.running and refuses(first.bound_addr)
        assert server_threads() == before
    assert socket_fds() == fds


def test_already_serving_and_no_server(bus: Bus, logs: list[str]) -> None:
    with pytest.raises(ValueError, match="no httpserver to start"):
        ServerAdapter(bus).start()
    server = Server(bus, socket_port=0, wsgi_app=hello_app)
    server.subscribe()
    bus.start()
    server.start()
    assert f"Already serving on {server.description}" in logs
    bus.stop()
    server.stop()
    assert f"HTTP Server {server.description} already shut down" in logs


def test_restart_serves_again(bus: Bus, tmp_path: Path) -> None:
    path = str(tmp_path / "site.sock")
    server = Server(bus, socket_file=path, wsgi_app=hello_app)
    server.subscribe()
    bus.start()
    server.restart()
    assert server.running
    assert fetch(path)[:2] == (200, b"Hello http /")


def test_a_stale_socket_file_is_replaced_and_a_live_one_refused(
    bus: Bus, logs: list[str], tmp_path: Path
) -> None:
    path = str(tmp_path / "site.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    server = Server(bus, socket_file=path, wsgi_app=hello_app)
    server.subscribe()
    bus.start()
    assert f"Replaced the stale socket file {path}" in logs
    other = Server(Bus(), "second", socket_file=path, wsgi_app=hello_app)
    with pytest.raises(UnavailableError, match=f"cannot listen on {path}: the socket file is in"):
        other.start()
    assert fetch(path)[:2] == (200, b"Hello http /")


def test_a_queue_size_above_somaxconn_is_capped_with_a_warning(
    bus: Bus, logs: list[str]
) -> None:
    server = Server(bus, socket_port=0, wsgi_app=hello_app, socket_queue_size=10**7)
    server.subscribe()
    bus.start()
    assert any("server.socket_queue_size 10000000 is above net.core.somaxconn" in m for m in logs)


class BrokenServer:
    """A server whose start() fails (before ready, or after when ``after_ready``)."""

    def __init__(self, after_ready: bool = False) -> None:
        self.ready = False
        self.after_ready = after_ready
        self.crash = threading.Event()

    def start(self) -> None:
        if self.after_ready:
            self.ready = True
            self.crash.wait(15)
        raise OSError("the server broke (on purpose)")

    def stop(self) -> None:
        self.ready = False
        self.crash.set()


def test_an_error_in_the_server_thread_is_raised_into_start(bus: Bus, logs: list[str]) -> None:
    adapter = ServerAdapter(bus, BrokenServer(), ("127.0.0.1", 9))
    adapter.subscribe()
    with pytest.raises(ChannelFailures) as caught:
        bus.start()
    [error] = root_causes(caught.value)
    assert isinstance(error, OSError) and "the server broke (on purpose)" in str(error)
    assert adapter.interrupt is error
    assert bus.state is states.EXITING
    assert any(m.startswith("Shutting down due to error in start listener:") for m in logs)


def test_an_error_after_ready_makes_the_bus_exit(bus: Bus, logs: list[str]) -> None:
    broken = BrokenServer(after_ready=True)
    adapter = ServerAdapter(bus, broken, ("127.0.0.1", 9))
    adapter.subscribe()
    bus.start()
    assert bus.state is states.STARTED
    broken.crash.set()
    bus.wait(states.EXITING)
    assert any(m.startswith("HTTP server failed: shutting down\nTraceback") for m in logs)


def test_stop_drains_requests_in_flight_and_refuses_new_connections(bus: Bus) -> None:
    app = GatedApp()
    server = Server(bus, socket_port=0, wsgi_app=app, shutdown_timeout=30)
    server.subscribe()
    bus.start()
    address = server.bound_addr
    results: dict[str, Any] = {}

    def slow_request() -> None:
        results["slow"] = fetch(address, "/slow")[:2]

    client = threading.Thread(target=slow_request)
    client.start()
    assert app.entered.wait(15), "the slow request never reached the app"
    idle = connection(address)
    idle.request("GET", "/fast")
    assert idle.getresponse().read() == b"fast"  # now an idle keep-alive connection

    stopper = threading.Thread(target=bus.stop)
    stopper.start()
    wait_until(lambda: refuses(address), 15, "new connections to be refused")
    assert client.is_alive() and stopper.is_alive(), "stop must wait for the request in flight"
    app.gate.set()
    client.join(15)
    stopper.join(15)
    assert results["slow"] == (200, b"slow done")
    assert not stopper.is_alive() and bus.state is states.STOPPED
    assert idle.sock is not None and idle.sock.recv(1) == b""  # the idle connection was closed
    idle.close()


def test_all_servers_refuse_at_once_and_drain_together(bus: Bus) -> None:
    apps = [GatedApp(), GatedApp()]
    servers = [Server(bus, f"s{i}", socket_port=0, wsgi_app=app, shutdown_timeout=30)
               for i, app in enumerate(apps)]
    for server in servers:
        server.subscribe()
    bus.start()
    results: dict[int, Any] = {}

    def slow_request(i: int) -> None:
        results[i] = fetch(servers[i].bound_addr, "/slow")[:2]

    clients = [threading.Thread(target=slow_request, args=(i,)) for i in range(2)]
    for client in clients:
        client.start()
    assert all(app.entered.wait(15) for app in apps)
    stopper = threading.Thread(target=bus.stop)
    stopper.start()
    # Both refuse while both requests are still in flight: no server waits for another's drain.
    wait_until(lambda: all(refuses(s.bound_addr) for s in servers), 15, "both to refuse")
    assert all(client.is_alive() for client in clients)
    for app in apps:
        app.gate.set()
    for thread in (*clients, stopper):
        thread.join(15)
    assert results == {0: (200, b"slow done"), 1: (200, b"slow done")}
    assert bus.state is states.STOPPED


def test_a_given_listener_is_served_and_left_listening(bus: Bus, logs: list[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        address = sock.getsockname()
        server = Server(bus, listener=sock, wsgi_app=hello_app)
        server.subscribe()
        bus.start()
        assert f"Serving on http://127.0.0.1:{address[1]}" in logs
        assert fetch(address)[:2] == (200, b"Hello http /")
        bus.exit()
        # Its owner (systemd, the next process image) keeps it: connections still queue.
        with socket.create_connection(address, timeout=5):
            conn, _ = sock.accept()
            conn.close()


def test_a_detached_listener_outlives_the_stop(bus: Bus, tmp_path: Path) -> None:
    path = str(tmp_path / "site.sock")
    server = Server(bus, socket_file=path, wsgi_app=hello_app)
    server.subscribe()
    bus.start()
    sock = server.detach_listener()
    bus.exit()
    with sock:
        assert os.path.exists(path)  # still ours to hand over: not removed
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)  # queued in the backlog, not refused
            conn, _ = sock.accept()
            conn.close()


def _raw_exchange(address: Any, request: bytes) -> bytes:
    with socket.create_connection(address[:2], timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_connect_and_absolute_form_reach_the_app_as_on_the_reference(bus: Bus) -> None:
    """cheroot's proxy mode, as the reference runs it: ``CONNECT host:port`` is the app's to
    answer; any other CONNECT target is 400; an absolute-form target is served (RFC 9112)."""
    server = Server(bus, socket_port=0, wsgi_app=hello_app)
    server.subscribe()
    bus.start()
    address = server.bound_addr
    answer = _raw_exchange(address, b"CONNECT example.com:3128 HTTP/1.1\r\n"
                                    b"Host: example.com:3128\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"Hello http /example.com:3128")
    answer = _raw_exchange(address, b"CONNECT /path/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"must match authority-form" in answer
    answer = _raw_exchange(address, b"GET http://127.0.0.1/there HTTP/1.1\r\n"
                                    b"Host: 127.0.0.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"Hello http /there")
