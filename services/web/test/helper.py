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

import threading
from typing import Any

from services.web.lib import httputil
from services.web.test.webtest import WebCase, WebClient

__all__ = ["CPWebCase", "LocalServer", "SiteState", "WebHarness"]

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
            from sitebus.site import tree

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
        from sitebus.site import config, log, tree

        self._config = config
        self._tree = tree
        self._access_log = log.access_log
        self.access_log_disabled = log.access_log.disabled
        log.access_log.disabled = True
        self.config = dict(config)
        self.apps = dict(tree.apps)
        self.vhosts = {host: dict(table) for host, table in tree.vhosts.items()}

    def restore(self) -> None:
        self._access_log.disabled = self.access_log_disabled
        dict.clear(self._config)
        dict.update(self._config, self.config)
        self._tree.apps.clear()
        self._tree.apps.update(self.apps)
        self._tree.vhosts.clear()
        self._tree.vhosts.update(self.vhosts)
        self._tree._rebuild_routes()


class WebHarness(WebClient):
    """Mount apps on the site tree and query them over a real socket (the ``web`` fixture)."""

    def __init__(self) -> None:
        super().__init__()
        self.server: LocalServer | None = None

    def mount(self, root: Any, script_name: str = "", config: Any = None) -> Any:
        """Mount ``root`` on the site tree (starting the server if needed); return the app."""
        from sitebus.site import tree

        app = tree.mount(root, script_name, config)
        self.start()
        return app

    def graft(self, wsgi_app: Any, script_name: str = "") -> None:
        """Graft any WSGI application on the site tree (starting the server if needed)."""
        from sitebus.site import tree

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


class CPWebCase(WebCase):
    """A TestCase whose class mounts apps (``setup_server``) and serves them on a real port."""

    script_name = ""
    _state: SiteState | None = None
    _server: LocalServer | None = None

    @staticmethod
    def setup_server() -> None:
        """Mount the applications under test (override it)."""

    # pytest calls both setup_class and setUpClass (unittest runners only the latter): each
    # does the work once.
    @classmethod
    def setup_class(cls) -> None:
        from sitebus.site import config

        if cls.__dict__.get("_server") is not None:
            return
        cls._state = SiteState()
        dict.update(config, TEST_CONFIG)
        cls.setup_server()
        cls._server = LocalServer()
        cls.PORT = cls._server.start()

    @classmethod
    def teardown_class(cls) -> None:
        if cls._server is not None:
            cls._server.stop()
            cls._server = None
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

    def prefix(self) -> str:
        return self.script_name.rstrip("/")

    def getPage(self, url: str, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        """Open ``url`` below this case's script_name."""
        if self.script_name and not url.startswith(("http://", "https://")):
            url = httputil.urljoin(self.script_name, url)
        return super().getPage(url, *args, **kwargs)
