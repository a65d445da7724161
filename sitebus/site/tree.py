"""The tree: the WSGI router that hosts several applications in one site.

Each request goes to the app mounted at the longest script name that is a whole-segment prefix
of its path (``/blog`` takes ``/blog`` and ``/blog/x``, never ``/blogroll``); SCRIPT_NAME grows
by that prefix and PATH_INFO keeps the rest, as PEP 3333 asks. Script names are given as text
and compared in WSGI's form (UTF-8 bytes seen as latin-1), so non-ASCII mount points work.
Apps grafted for a host (virtual hosts) are tried first for requests whose Host matches; then
the apps for every host. Where nothing is mounted the answer is a plain 404.

Any WSGI callable is grafted with ``graft``; ``mount`` wraps a request-framework root object
into an application first. The framework registers its factory in ``app_factory``, so this
module (sitebus) never imports the framework (services).

Around the app that answers, the tree's ``observer`` (``sitebus.servers.observe``) gives the request
its id and, as the body is closed, writes the access line and records the metrics. Before
routing, ``proxy`` (``sitebus.site.proxyheaders``, while ``engine.proxy`` is on) puts the client's
address, scheme and host from a trusted proxy's headers into the environ, so routing by host,
every app and the access log see the client.

Endpoints are exact paths the site answers itself, before every app and on every host (the
health endpoint, ``sitebus.site.health``): a root app or a virtual host never shadows them, and
they are written to the access log only when added with ``access_log=True`` (a load balancer
probes every second). While there are none, routing is exactly as above: the method that
looks endpoints up first is put in place only when one is added, so an endpoint that is off
costs the request path nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from sitebus.errors import ConfigError
from sitebus.servers.observe import Observer
from sitebus.site.logs import LogManager

__all__ = ["Tree", "wsgi_path"]

WSGIApp = Callable[..., Iterable[bytes]]
FRAMEWORK_MODULE = "services.web"


def wsgi_path(text: str) -> str:
    """Return a path in WSGI's form: its UTF-8 bytes decoded as latin-1."""
    return text.encode("utf-8").decode("latin-1")


def normalize_script_name(script_name: str | None) -> str:
    """Return a mount point as the tree keys it: '' for the root, else '/a/b' with no '/' end."""
    if script_name is None:
        return ""
    if not isinstance(script_name, str):
        raise TypeError(f"a script name must be a string, got {script_name!r}")
    script_name = script_name.rstrip("/")
    if script_name and not script_name.startswith("/"):
        raise ValueError(f"a script name must start with '/' (or be ''), got {script_name!r}")
    return script_name


def endpoint_path(value: Any, key: str, example: str) -> str:
    """Return ``value`` if an endpoint can answer it exactly; else raise ConfigError on ``key``.

    Such a path is a '/' and more, with no query, fragment or space (the health and metrics
    endpoints' ``path`` settings).
    """
    if (not isinstance(value, str) or not value.startswith("/") or len(value) < 2
            or any(c in value for c in "?# \t\r\n")):
        raise ConfigError(f"expected a path such as {example!r} (a '/', then no '?', '#' or "
                          f"space), got {value!r}", key=key, value=value)
    return value


def _host_of(environ: dict[str, Any]) -> str:
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    if host.startswith("["):  # [::1]:8080
        return host[: host.find("]") + 1].lower()
    return host.rsplit(":", 1)[0].lower()


class Tree:
    """A registry of applications mounted at script names, and the WSGI app that routes to them."""

    def __init__(self, log: LogManager | None = None) -> None:
        self.apps: dict[str, Any] = {}
        """A map of {script name: application} for every host."""
        self.vhosts: dict[str, dict[str, Any]] = {}
        """A map of {host: {script name: application}} for apps that answer one host."""
        self.log = log
        self.app_factory: Callable[[Any, str, Any], Any] | None = None
        self.app_class: type | None = None
        """The framework's application type, registered with ``app_factory``: apps of it take
        app config (``sitebus.site.apps``); any other WSGI callable never does."""
        self.current_path: Callable[[], str | None] | None = None
        """Returns the path of the request being served (the framework registers it)."""
        self.endpoints: dict[str, tuple[Any, bool]] = {}
        """A map of {exact path: (application, access_log)} answered before every app."""
        self._routes: list[tuple[str, Any]] = []
        self._vhost_routes: dict[str, list[tuple[str, Any]]] = {}
        self.observer: Observer | None = Observer(log) if log is not None else None
        """Notes each request for its id, the access log and the metrics (None: nothing)."""
        self.proxy: Callable[[dict[str, Any]], None] | None = None
        """Rewrites the environ from a trusted proxy's headers before routing (or None)."""

    # -- mounting ------------------------------------------------------------------------------

    def mount(self, root: Any, script_name: str = "", config: Any = None,
              host: str | None = None) -> Any:
        """Wrap a framework root object into an application, graft it and return it.

        An object that already is an application (or any WSGI callable, given without config)
        is grafted as it is; an application goes at its own script name, which a
        ``script_name`` given here must equal (ValueError otherwise). With ``host``, it
        answers that virtual host only.
        """
        if script_name is None:
            raise TypeError("script_name: expected a string such as '' or '/blog', got None")
        script_name = normalize_script_name(script_name)
        if hasattr(root, "script_name") and hasattr(root, "merge"):
            app = root
            own = getattr(app, "_script_name", app.script_name)
            if own is None:
                raise TypeError(f"cannot mount {app!r}: its script_name is None")
            own = normalize_script_name(own)
            if script_name and script_name != own:
                raise ValueError(f"cannot mount {app!r} at {script_name!r}: its script_name "
                                 f"is {own!r}")
            script_name = own
            if config is not None:
                app.merge(config)
        elif (callable(root) and config is None and not hasattr(root, "_cp_config")
              and not getattr(root, "exposed", False)):  # an exposed function is a root
            app = root
        else:
            app = self._factory()(root, script_name, config)
        self.graft(app, script_name, host)
        return app

    def _factory(self) -> Callable[[Any, str, Any], Any]:
        if self.app_factory is None:
            importlib.import_module(FRAMEWORK_MODULE)  # registers its factory on import
        if self.app_factory is None:
            raise RuntimeError(f"{FRAMEWORK_MODULE} did not register an application factory")
        return self.app_factory

    def graft(self, wsgi_callable: WSGIApp, script_name: str = "", host: str | None = None) -> None:
        """Mount any WSGI callable at ``script_name`` (for ``host`` only, if given)."""
        if not callable(wsgi_callable):
            raise TypeError(f"cannot graft {wsgi_callable!r}: it is not a WSGI callable")
        script_name = normalize_script_name(script_name)
        if host is None:
            self.apps[script_name] = wsgi_callable
        else:
            self.vhosts.setdefault(host.lower(), {})[script_name] = wsgi_callable
        self._rebuild_routes()

    def unmount(self, script_name: str, host: str | None = None) -> None:
        """Remove the application at ``script_name`` (for ``host``), if any."""
        script_name = normalize_script_name(script_name)
        table = self.apps if host is None else self.vhosts.get(host.lower(), {})
        table.pop(script_name, None)
        self._rebuild_routes()

    def add_endpoint(self, path: str, app: WSGIApp, access_log: bool = False) -> None:
        """Answer ``path`` (exactly, on every host) with ``app``, before every mounted app."""
        if not callable(app):
            raise TypeError(f"cannot answer {path!r} with {app!r}: it is not a WSGI callable")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"an endpoint's path must start with '/', got {path!r}")
        self.endpoints[wsgi_path(path)] = (app, access_log)
        self._route = self._route_endpoints_first  # type: ignore[method-assign]

    def remove_endpoint(self, path: str) -> None:
        """Stop answering ``path`` as an endpoint (the apps answer it again)."""
        self.endpoints.pop(wsgi_path(path), None)
        if not self.endpoints:
            self.__dict__.pop("_route", None)

    def _rebuild_routes(self) -> None:
        def ordered(table: dict[str, Any]) -> list[tuple[str, Any]]:
            return sorted(((wsgi_path(s), a) for s, a in table.items()),
                          key=lambda pair: len(pair[0]), reverse=True)

        self._routes = ordered(self.apps)
        self._vhost_routes = {host: ordered(table) for host, table in self.vhosts.items()}

    def script_name(self, path: str | None = None) -> str | None:
        """Return the script name of the app that would answer ``path``, or None.

        Without a path, the current request's (as ``current_path`` gives it), if any.
        """
        if path is None and self.current_path is not None:
            path = self.current_path()
        if path is None:
            return None
        path = wsgi_path(path)
        for script_name, _app in self._routes:
            if _matches(path, script_name):
                return script_name.encode("latin-1").decode("utf-8")
        return None

    # -- routing -------------------------------------------------------------------------------

    def _route(self, environ: dict[str, Any]) -> tuple[str | None, Any] | None:
        path = environ.get("PATH_INFO", "")
        if self._vhost_routes:
            for script_name, app in self._vhost_routes.get(_host_of(environ), ()):
                if _matches(path, script_name):
                    return script_name, app
        for script_name, app in self._routes:
            if _matches(path, script_name):
                return script_name, app
        return None

    def _route_endpoints_first(self, environ: dict[str, Any]) -> tuple[str | None, Any] | None:
        """Route to an endpoint (script name None: not logged; '': logged), else as usual."""
        endpoint = self.endpoints.get(environ.get("PATH_INFO", ""))
        if endpoint is not None:
            app, access_log = endpoint
            return ("" if access_log else None), app
        return Tree._route(self, environ)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        if self.proxy is not None:
            self.proxy(environ)
        route = self._route(environ)
        if route is None:
            app: WSGIApp = _not_found
            script_name: str | None = ""
        else:
            script_name, app = route
            if script_name:
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + script_name
                environ["PATH_INFO"] = environ.get("PATH_INFO", "")[len(script_name):]
        observer = self.observer
        if observer is None or script_name is None:
            return app(environ, start_response)
        return observer(app, environ, start_response, script_name)


def _matches(path: str, script_name: str) -> bool:
    return (not script_name or path == script_name
            or (path.startswith(script_name) and path[len(script_name)] == "/"))


def _not_found(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    body = f"Not Found: nothing is mounted at {path.encode('latin-1').decode('utf-8', 'replace')}\n"
    data = body.encode("utf-8")
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                      ("Content-Length", str(len(data)))])
    return [data]
