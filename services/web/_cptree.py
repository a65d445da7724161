"""Application: a root object with its config, as a WSGI application mounted on the site tree.

``Application(root, script_name='', config=None)`` wraps a tree of exposed objects. Its
``config`` is the reference's two-level dict (``{'/': {...}, '/page': {...}}``, paths
relative to the mount point; other sections are free for the app, read through
``request.app.config``). ``merge(config)`` adds a dict, file name or open file; the ``/``
section's ``log.*`` keys configure the app's own LogManager and its ``wsgi.*`` keys the
app's WSGI pipeline (``wsgi.pipeline = [(name, factory)]``, ``wsgi.<name>.<arg>``,
``wsgi.response_class``).

The site tree (``sitebus.site.tree``) makes one of these for every framework root mounted with
``tree.mount``; the tree writes the site's access log, so an Application writes access lines
only to its own log (``log.access_file`` in its ``/`` section), never to the site's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from services.web import _cplogging, _cpwsgi
from services.web._cpconfig import ConfigCache, RequestNamespaces, validate_section
from services.web._cprequest import Request, Response
from services.web._cptools import default_toolbox
from services.web._serving import serving
from sitebus.errors import ConfigError
from sitebus.site.config import NamespaceSet
from sitebus.site.config import merge as merge_config
from sitebus.site.container import bus, site
from sitebus.site.logs import LogManager
from sitebus.site.tree import Tree as SiteTree

__all__ = ["FAVICON", "Application", "Favicon", "Tree", "make_application"]


class Application:
    """A request-framework application: a root object, its config and its WSGI interface."""

    root: Any = None
    """The top-most object of the tree of handlers."""

    relative_urls: Any = False
    """The default for ``url(relative=...)``: False, True or 'server'."""

    recursive = False
    """If True, an InternalRedirect may visit the same URL twice."""

    request_class = Request
    response_class = Response

    def __init__(self, root: Any, script_name: str | None = "",
                 config: Any = None) -> None:
        self.log = _cplogging.LogManager(appid=str(id(self)))
        # The tree logs every request of the site; the app's own access log, if one is
        # configured, must not repeat its lines there.
        self.log.access_log.propagate = False
        self.root = root
        self.script_name = script_name
        self.config: dict[str, Any] = {}
        self.toolboxes: dict[str, Any] = {"tools": default_toolbox}
        self.namespaces = NamespaceSet(log=self._log_namespace, wsgi=self._wsgi_namespace)
        self.wsgiapp = _cpwsgi.CPWSGIApp(self)
        self._config_cache = ConfigCache()
        self._dispatch_in_config = False
        self._namespaces_key: tuple[Any, ...] | None = None
        self._request_namespaces: Any = None
        self._build_wsgiapp()
        if config:
            self.merge(config)

    def __repr__(self) -> str:
        return f"{self.__module__}.{type(self).__name__}({self.root!r}, {self.script_name!r})"

    # -- config -------------------------------------------------------------------------------

    @property
    def script_name(self) -> str:
        """The mount point ('' for the site root, never ending in '/').

        None means: take it from each request's SCRIPT_NAME.
        """
        if self._script_name is not None:
            return self._script_name
        return serving.request.wsgi_environ.get("SCRIPT_NAME", "").rstrip("/")

    @script_name.setter
    def script_name(self, value: str | None) -> None:
        self._script_name = value.rstrip("/") if value else value

    def merge(self, config: Any) -> None:
        """Merge a config (dict, file name or open file) into self.config."""
        merge_config(self.config, config)
        for section, entries in self.config.items():
            if isinstance(section, str) and section.startswith("/"):
                validate_section(section, entries)
        self.wsgiapp.reset()
        self.namespaces(self.config.get("/", {}))
        self._dispatch_in_config = any(
            isinstance(entries, Mapping) and "request.dispatch" in entries
            for section, entries in self.config.items() if str(section).startswith("/"))
        self._config_cache.clear()
        self._build_wsgiapp()

    def find_config(self, path: str, key: str, default: Any = None) -> Any:
        """The value of ``key`` set deepest along ``path`` (nearest the leaf), or ``default``."""
        for section in _sections_up_from(path or "/"):
            entries = self.config.get(section)
            if entries and key in entries:
                return entries[key]
        return default

    def _log_namespace(self, key: str, value: Any) -> None:
        if key not in LogManager.settings:
            raise ConfigError(f"unknown setting; expected one of "
                              f"{', '.join(LogManager.settings)}", key=f"log.{key}",
                              value=value, section="/")
        setattr(self.log, key, value)

    def _wsgi_namespace(self, key: str, value: Any) -> None:
        if key == "response_class":
            self.response_class = value
        elif key != "pipeline" and "." not in key:
            raise ConfigError("expected wsgi.pipeline, wsgi.response_class or "
                              "wsgi.<name>.<arg>", key=f"wsgi.{key}", value=value,
                              section="/")
        else:
            self.wsgiapp.configure(key, value)

    def set_request_config(self, request: Any, sources: list[Mapping[str, Any]]) -> None:
        """Set ``request.config`` to the merge of the site config and ``sources``."""
        entry = self._config_cache.lookup([site.config, *sources])
        request.config = dict(entry.merged)
        request._config_entry = entry

    def request_namespaces(self) -> Any:
        """Return the request namespaces of this app: the request class's plus its toolboxes."""
        base = self.request_class.namespaces
        key = (id(base), getattr(base, "version", None), tuple(self.toolboxes.items()))
        if key != self._namespaces_key:
            namespaces = RequestNamespaces(base)
            for name, toolbox in self.toolboxes.items():
                namespaces[name] = toolbox
            self._request_namespaces = namespaces
            self._namespaces_key = key
        return self._request_namespaces

    # -- serving ------------------------------------------------------------------------------

    def get_serving(self, local: Any, remote: Any, scheme: str, sproto: str) -> tuple[Any, Any]:
        """Create a Request and a Response, make them the thread's, and publish the start."""
        request = self.request_class(local, remote, scheme, sproto)
        request.app = self
        request.namespaces = self.request_namespaces()
        response = self.response_class()
        serving.request = request
        serving.response = response
        bus.publish("acquire_thread")
        bus.publish("before_request")
        return request, response

    def release_serving(self, request: Any = None, response: Any = None) -> None:
        """End the current request: on_end_request hooks, after_request, the app's log."""
        if request is None:
            request, response = serving.request, serving.response
        try:
            bus.publish("after_request")
        finally:
            try:
                request.close()
            except Exception:
                self.log.error(context="HTTP", severity=40, traceback=True)
            if self.log.access_log.handlers and request.wsgi_environ:
                size = (response.headers.get("Content-Length")
                        if response.header_list is not None else None)
                self.log.access(request.wsgi_environ, str(response.status or "200"),
                                int(size) if size else None)
            if serving.__dict__.get("request") is request:
                serving.clear()

    @property
    def pipeline(self) -> list[tuple[str, Callable[..., Any]]]:
        """The WSGI middleware around this app (``wsgiapp.pipeline``)."""
        return self.wsgiapp.pipeline

    @property
    def wsgi_config(self) -> dict[str, dict[str, Any]]:
        """Each middleware's keyword arguments, by name (``wsgiapp.config``)."""
        return self.wsgiapp.config

    def _build_wsgiapp(self) -> None:
        self.wsgiapp.head = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.wsgiapp(environ, start_response)


def current_path() -> str | None:
    """The full path (script name and path info) of the request being served, or None."""
    request = serving.__dict__.get("request")
    if request is None:
        return None
    from services.web.lib.httputil import urljoin

    return urljoin(request.script_name, request.path_info)


def make_application(root: Any, script_name: str, config: Any) -> Application:
    """The site tree's factory for framework roots (``tree.mount``).

    A root mounted at the site root gets the default ``/favicon.ico`` (a red cherry) unless
    it has a ``favicon_ico`` of its own; config such as ``[/favicon.ico]
    tools.staticfile.on`` still overrides it.
    """
    app = Application(root, script_name, config)
    if not script_name and root is not None and not hasattr(root, "favicon_ico"):
        try:
            root.favicon_ico = Favicon()
        except (AttributeError, TypeError):
            pass  # a root that takes no attributes keeps no favicon
    return app


FAVICON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "favicon.ico")
"""The default favicon's file."""


class Favicon:
    """A page handler serving ``FAVICON`` (image/x-icon), answering 304 when unchanged."""

    exposed = True

    def __call__(self) -> bytes:
        from services.web.lib import cptools, httputil

        headers = serving.response.headers
        headers["Content-Type"] = "image/x-icon"
        headers["Last-Modified"] = httputil.HTTPDate(os.stat(FAVICON).st_mtime)
        cptools.validate_since()
        with open(FAVICON, "rb") as handle:
            return handle.read()


class Tree(SiteTree):
    """A tree of applications of its own (the reference's ``_cptree.Tree()``): ``mount`` makes
    framework Applications, ``graft`` takes any WSGI app. The site serves ``services.web.tree``;
    a Tree made here serves wherever it is grafted or handed to a server."""

    def __init__(self, log: Any = None) -> None:
        super().__init__(log)
        self.app_factory = make_application
        self.current_path = current_path


def _sections_up_from(path: str) -> list[str]:
    """Return ``path`` and the sections above it, nearest first: /a/b, /a, / (a path
    without a leading slash stops at its first segment)."""
    parts = path.split("/")
    sections = ("/".join(parts[:end]) or "/" for end in range(len(parts), 0, -1))
    return list(dict.fromkeys(sections))
