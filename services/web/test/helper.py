"""Test helpers that run applications on a real HTTP server: the reference's ``CPWebCase``.

``LocalServer`` serves a WSGI application (by default the site tree) with cheroot on
127.0.0.1 and an ephemeral port, in its own threads; ``start()`` returns once the socket
listens and gives the port. (It is deliberately small: when the site's own Server adapter
can bind ephemeral ports for tests, this is the one class to switch over.)

``SiteState`` snapshots the site's config and tree and puts them back, so each test module
can mount what it likes. ``CPWebCase`` ties them together in the reference's style::

    class EchoTest(helper.CPWebCase):
        @staticmethod
        def setup_server():
            services.web.tree.mount(Root())

        def test_echo(self):
            self.getPage("/echo?message=Hello")
            self.assertBody("Hello")
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from services.web.lib import httputil
from services.web.test import webtest
from services.web.test.webtest import WebCase, WebClient
from sitebus.servers.registry import SETTINGS as SERVER_SETTINGS

__all__ = ["CPProcess", "CPWebCase", "LocalServer", "SiteState", "Supervisor", "WebHarness",
           "webtest"]

TEST_CONFIG = {
    "request.show_tracebacks": True,
    "request.show_mismatched_params": True,
    "tools.log_headers.on": False,
}
"""The request settings of the reference's ``test_suite`` environment."""


class LocalServer:
    """A cheroot WSGI server on 127.0.0.1 and an ephemeral port."""

    def __init__(self, app: Any = None, host: str = "127.0.0.1", port: int = 0,
                 threads: int = 4) -> None:
        if app is None:
            from sitebus.site.container import tree

            app = tree
        self.app = app
        self.host = host
        self.port = port
        self.threads = threads
        self.httpserver: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind, start serving in a thread, and return the port."""
        from cheroot import wsgi

        self.httpserver = wsgi.Server((self.host, self.port), self.app,
                                      numthreads=self.threads, shutdown_timeout=1)
        # Wake the accept loop often, so stop() returns quickly (tests only).
        self.httpserver.expiration_interval = 0.05
        self.httpserver.prepare()
        self.port = self.httpserver.bind_addr[1]
        self._thread = threading.Thread(target=self.httpserver.serve,
                                        name=f"LocalServer :{self.port}", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop serving and wait for the server's threads."""
        if self.httpserver is not None:
            self.httpserver.stop()
            self.httpserver = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


class SiteState:
    """A snapshot of the site config and tree, restored by ``restore()``.

    While it is held, the site's access log is quiet (tests read responses, not log lines).
    """

    def __init__(self) -> None:
        from sitebus.site.container import config, log, tree

        self._config = config
        self._tree = tree
        self._access_log = log.access_log
        self.access_log_disabled = log.access_log.disabled
        log.access_log.disabled = True
        self.config = dict(config)
        self.apps = dict(tree.apps)
        self.vhosts = {host: dict(table) for host, table in tree.vhosts.items()}
        # Config namespaces set attributes; putting the dict back does not undo them.
        self._log = log
        self.log_settings = {name: getattr(log, name) for name in log.settings}
        self._server = _site_server()
        self.server_settings = {name: self._server.__dict__[name] for name in SERVER_SETTINGS
                                if name in self._server.__dict__}

    def restore(self) -> None:
        self._access_log.disabled = self.access_log_disabled
        dict.clear(self._config)
        dict.update(self._config, self.config)
        self._tree.apps.clear()
        self._tree.apps.update(self.apps)
        self._tree.vhosts.clear()
        self._tree.vhosts.update(self.vhosts)
        self._tree._rebuild_routes()
        for name, value in self.log_settings.items():
            if getattr(self._log, name) != value:
                setattr(self._log, name, value)
        for name in SERVER_SETTINGS:
            if name in self.server_settings:
                setattr(self._server, name, self.server_settings[name])
            else:
                self._server.__dict__.pop(name, None)
        if not self._server.running:
            # A stopped server still reports the address it last bound; forget it too.
            self._server._bound = None


def _site_server() -> Any:
    from sitebus.site.container import site

    return site.server


class WebHarness(WebClient):
    """Mount apps on the site tree and query them over a real socket (the ``web`` fixture)."""

    def __init__(self) -> None:
        super().__init__()
        self.server: LocalServer | None = None

    def mount(self, root: Any, script_name: str = "", config: Any = None) -> Any:
        """Mount ``root`` on the site tree (starting the server if needed); return the app."""
        from sitebus.site.container import tree

        app = tree.mount(root, script_name, config)
        self.start()
        return app

    def graft(self, wsgi_app: Any, script_name: str = "") -> None:
        """Graft any WSGI application on the site tree (starting the server if needed)."""
        from sitebus.site.container import tree

        tree.graft(wsgi_app, script_name)
        self.start()

    def start(self) -> int:
        if self.server is None:
            self.server = LocalServer()
            self.PORT = self.server.start()
        return self.PORT

    def stop(self) -> None:
        self.close()
        if self.server is not None:
            self.server.stop()
            self.server = None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Supervisor:
    """Starts and stops the site for a CPWebCase class: the engine and the default server.

    The server serves in this process (the tests reach into the engine, the tree and the
    config); each test class starts the engine and exits it at the end.
    """

    using_apache = False
    using_wsgi = True
    wsgi_version: tuple[str, int] | None = None

    def __init__(self, scheme: str = "http", protocol: str = "HTTP/1.1", host: str = "127.0.0.1",
                 port: int = 0, validate: bool = False, server: str = "wsgi",
                 **extra: Any) -> None:
        self.scheme = scheme
        self.protocol = protocol
        self.host = host
        self.port = int(port) or free_port(host)
        self.validate = validate
        self.server = server
        for name, value in extra.items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return f"{type(self).__name__} on {self.host}:{self.port}"

    def base_config(self) -> dict[str, Any]:
        """The site config every test class starts from."""
        conf: dict[str, Any] = {
            "server.socket_host": self.host,
            "server.socket_port": self.port,
            "server.protocol_version": self.protocol,
            "environment": "test_suite",
            "log.screen": False,
        }
        if self.scheme == "https":
            conf["server.ssl_certificate"] = conf["server.ssl_private_key"] = serverpem()
        return conf

    def start(self, modulename: str | None = None) -> None:
        """Start the engine (and with it the site's servers)."""
        from sitebus.site.container import site

        site.server.using_wsgi = self.using_wsgi
        if self.wsgi_version is not None:
            site.server.wsgi_version = self.wsgi_version
        site.bus.start()

    def stop(self) -> None:
        """Run the case's ``teardown``, if any, and stop the engine.

        Stop, not exit (as the reference does): the process's bus stays usable for whatever
        runs next in this process, which an EXITING bus is not for plugins that check.
        """
        from sitebus.site.container import site

        teardown = getattr(self, "teardown", None)
        if teardown is not None:
            teardown()
        site.bus.stop()


class NativeSupervisor(Supervisor):
    """The site served by the native (non-WSGI) server: here the same cheroot server."""

    using_wsgi = False


class WSGIUnicodeSupervisor(Supervisor):
    """The WSGI server with the reference's ``('u', 0)`` WSGI version."""

    wsgi_version = ("u", 0)


def serverpem() -> str:
    """Return a PEM file holding a self-signed certificate and its key (made once)."""
    path = os.path.join(scratch_dir(), "test.pem")
    if not os.path.exists(path):
        import subprocess

        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-keyout", path, "-out", path + ".crt"],
                       check=True, capture_output=True)
        with open(path, "a", encoding="ascii") as pem, open(path + ".crt", encoding="ascii") as crt:
            pem.write(crt.read())
    return path


_scratch: list[str] = []


def scratch_dir() -> str:
    """A directory for this process's test files (config, PID file, logs)."""
    if not _scratch:
        _scratch.append(tempfile.mkdtemp(prefix="services-web-test-"))
        atexit.register(_remove_scratch, os.getpid())  # leave /tmp clean
    return _scratch[0]


def _remove_scratch(owner: int) -> None:
    """Remove the scratch directory at exit, in the process that made it (not a fork)."""
    if os.getpid() == owner and _scratch:
        shutil.rmtree(_scratch[0], ignore_errors=True)


class CPWebCase(WebCase):
    """A TestCase whose class mounts apps (``setup_server``) and serves them on a real port.

    Each class gets a fresh site config (the ``test_suite`` environment on 127.0.0.1 and a
    free port) and an empty tree; ``setup_server`` mounts what it tests, the helper adds
    ``gctools.GCRoot`` at ``/gc`` (``test_gc`` reads it), and the engine starts. At the end of
    the class the engine exits and the site config and tree are put back.
    """

    script_name = ""
    scheme = "http"
    available_servers: dict[str, Callable[..., Supervisor]] = {
        "wsgi": Supervisor,
        "wsgi_u": WSGIUnicodeSupervisor,
        "native": NativeSupervisor,
    }
    default_server = "wsgi"
    do_gc_test = False
    supervisor: Supervisor | None = None
    _state: SiteState | None = None

    # pytest calls both setup_class and setUpClass (unittest runners only the latter): each
    # does the work once.
    @classmethod
    def setup_class(cls) -> None:
        from sitebus.site.container import config, tree

        if cls.__dict__.get("supervisor") is not None:
            return
        factory = cls.available_servers.get(cls.default_server)
        if factory is None:
            raise RuntimeError(f"unknown server {cls.default_server!r}; expected one of "
                               f"{', '.join(cls.available_servers)}")
        supervisor = factory(scheme=cls.scheme)
        cls._state = SiteState()
        config.reset()
        config.update(supervisor.base_config())
        # On the base classes, as the reference does: a case's own PORT or HOST still wins.
        WebClient.HOST = CPWebCase.HOST = supervisor.host
        WebClient.PORT = CPWebCase.PORT = supervisor.port
        cls.supervisor = supervisor
        if "setup_server" in dir(cls):
            tree.apps.clear()
            tree.vhosts.clear()
            tree._rebuild_routes()
            cls.setup_server()  # type: ignore[attr-defined]
            from services.web.lib.gctools import GCRoot

            tree.mount(GCRoot(), "/gc")
            cls.do_gc_test = True
            supervisor.start(cls.__module__)

    @classmethod
    def teardown_class(cls) -> None:
        supervisor = cls.__dict__.get("supervisor")
        if supervisor is None:
            return
        cls.supervisor = None
        try:
            if "setup_server" in dir(cls):
                supervisor.stop()
        finally:
            if cls._state is not None:
                cls._state.restore()
                cls._state = None

    @classmethod
    def setUpClass(cls) -> None:  # noqa: N802
        cls.setup_class()

    @classmethod
    def tearDownClass(cls) -> None:  # noqa: N802
        cls.teardown_class()

    def tearDown(self) -> None:  # noqa: N802
        self.close()

    def test_gc(self) -> None:
        """The class's requests left no garbage behind (a report, not a failure)."""
        if not self.do_gc_test:
            return
        WebClient.getPage(self, "/gc/stats")
        self.assertStatus(200)

    def prefix(self) -> str:
        return self.script_name.rstrip("/")

    def base(self) -> str:
        return super().base() + self.prefix()

    def exit(self) -> None:
        sys.exit()

    def skip(self, msg: str = "skipped ") -> None:
        """Skip the running test."""
        import pytest

        pytest.skip(msg)

    def getPage(self, url: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        """Open ``url`` below this case's script_name."""
        if isinstance(url, bytes):
            url = url.decode("utf-8")
        if self.script_name and not url.startswith(("http://", "https://")):
            url = httputil.urljoin(self.script_name, url)
        return super().getPage(url, *args, **kwargs)


class CPProcess:
    """The site run as a separate process (``python -m services.web``, the reference's
    ``cherryd``), on this case's host and port, with its files in a scratch directory."""

    def __init__(self, wait: bool = False, daemonize: bool = False, ssl: bool = False,
                 socket_host: str | None = None, socket_port: int | None = None) -> None:
        from services.web import server

        self.wait = wait
        self.daemonize = daemonize
        self.ssl = ssl
        self.host = socket_host or server.socket_host
        self.port = socket_port or server.socket_port
        where = scratch_dir()
        self.pid_file = os.path.join(where, "test.pid")
        self.config_file = os.path.join(where, "test.conf")
        self.error_log = os.path.join(where, "test.error.log")
        self.access_log = os.path.join(where, "test.access.log")
        self.exit_code: int | None = None
        self._proc: Any = None
        self._daemon_pid: int | None = None

    def write_conf(self, extra: str = "") -> None:
        """Write the process's config file, with ``extra`` lines in its [global] section."""
        lines = ["[global]", f"server.socket_host: {self.host!r}",
                 f"server.socket_port: {int(self.port)}", "checker.on: False",
                 "log.screen: False", f"log.error_file: {self.error_log!r}",
                 f"log.access_file: {self.access_log!r}"]
        if self.ssl:
            lines += [f"server.ssl_certificate: {serverpem()!r}",
                      f"server.ssl_private_key: {serverpem()!r}"]
        with open(self.config_file, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n" + extra + "\n")

    def start(self, imports: Any = None) -> None:
        """Start the process; return once it serves (or, with ``wait``, once it ended)."""
        import subprocess

        _wait_for(lambda: not _listening(self.host, self.port), 5,
                  f"port {self.port} to be free")
        if os.path.exists(self.pid_file):
            os.unlink(self.pid_file)
        argv = [sys.executable, "-m", "services.web", "-c", self.config_file,
                "-p", self.pid_file]
        for name in imports if isinstance(imports, (list, tuple)) else [imports]:
            if name:
                argv += ["-i", name]
        if self.daemonize:
            argv.append("-d")
        self._proc = subprocess.Popen(argv)
        self._daemon_pid = None
        if self.wait:
            self.exit_code = self._proc.wait()
            if not (self.daemonize and self.exit_code == 0):
                return
        else:
            _wait_for(lambda: _listening(self.host, self.port), 20,
                      f"port {self.port} to answer")
        if self.daemonize:
            # The daemon removes its PID file as it exits: join() needs the pid after that.
            _wait_for(lambda: _read_pid(self.pid_file) is not None, 10, "the PID file")
            self._daemon_pid = _read_pid(self.pid_file)

    def get_pid(self) -> int:
        """The process id of the site (the daemon's, when daemonized)."""
        if self.daemonize:
            pid = _read_pid(self.pid_file) or self._daemon_pid
            if pid is None:
                raise FileNotFoundError(f"no PID in {self.pid_file}")
            return pid
        return int(self._proc.pid)

    join_timeout = 30.0
    """Seconds ``join`` waits before it kills the process (a test must not leave it behind)."""

    def join(self) -> None:
        """Wait for the process to end; kill it and raise TimeoutError if it does not."""
        import subprocess

        pid = self.get_pid() if self.daemonize else self._proc.pid
        try:
            code = self._proc.wait(self.join_timeout)
            if self.daemonize:
                _wait_for(lambda: not _alive(pid), self.join_timeout, f"process {pid} to end")
            else:
                self.exit_code = code
        except (subprocess.TimeoutExpired, TimeoutError):
            for victim in {pid, self._proc.pid}:
                try:
                    os.kill(victim, 9)
                except ProcessLookupError:
                    pass
            self._proc.wait()
            raise TimeoutError(f"process {pid} did not end within {self.join_timeout} s; "
                               "killed") from None


def _read_pid(path: str) -> int | None:
    """The pid in a PID file; None while it is missing or not yet written."""
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((webtest.interface(host), int(port)), timeout=1):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {seconds} s")
        time.sleep(0.05)
