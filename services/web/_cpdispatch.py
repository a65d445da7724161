"""Dispatchers: find the page handler for a path, and the config that applies to it.

The default ``Dispatcher`` walks the object tree from the application root, one attribute
per path segment (punctuation becomes ``_``), then picks the deepest exposed object as the
handler; an exposed ``default`` method of an object on the way takes the path when no
deeper handler does, with the leftover segments as positional arguments. A trailing
``index`` is implied, so ``/a/`` and ``/a`` both reach ``root.a.index`` (``is_index`` tells
``tools.trailing_slash`` which one the client asked for). An object with ``_cp_dispatch``
may rewrite the segments that follow it (``popargs`` is built on it).

Config for the request merges, in order: the site config, then for each object on the path
its ``_cp_config`` and the application's config section of that path. The merge itself is
cached (see ``_cpconfig``), so a dispatcher only gathers these sources.

``MethodDispatcher`` picks the method named after the HTTP verb on the exposed resource
(answering 405 with an ``Allow`` header when there is none); ``RoutesDispatcher`` maps
routes with the ``routes`` package; ``VirtualHost`` prefixes the path by the Host header.

Handlers get ``request.params`` as keyword arguments when called (``LateParamPageHandler``),
so tools may change them first. When the call fails with TypeError because the arguments do
not fit the handler, the answer is 404 (wrong path or query) or 400 (wrong body), as
``mismatch_error`` decides.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable
from typing import Any

from services.web._cperror import HTTPError, NotFound
from services.web._cphandler import (
    LateParamPageHandler,
    PageHandler,
    mismatch_error,
    test_callable_spec,
)
from services.web._serving import serving

__all__ = [
    "Dispatcher",
    "LateParamPageHandler",
    "MethodDispatcher",
    "PageHandler",
    "RoutesDispatcher",
    "VirtualHost",
    "XMLRPCDispatcher",
    "mismatch_error",
    "test_callable_spec",
]

punctuation_to_underscores = str.maketrans(string.punctuation, "_" * len(string.punctuation))


# -- the default dispatcher ---------------------------------------------------------------


class Dispatcher:
    """Find the handler by walking the object tree from the application root.

    ``dispatch_method_name`` is the method an object may define to rewrite the remaining
    segments; ``translate`` maps characters of a segment to those of an attribute name.
    """

    dispatch_method_name = "_cp_dispatch"

    def __init__(self, dispatch_method_name: str | None = None,
                 translate: dict[int, Any] = punctuation_to_underscores) -> None:
        if not isinstance(translate, dict):
            raise TypeError("translate: expected a dict (str.maketrans gives one), got "
                            f"{type(translate).__name__}")
        self.translate = translate
        if dispatch_method_name:
            self.dispatch_method_name = dispatch_method_name

    def __call__(self, path_info: str) -> None:
        """Set ``request.handler`` and ``request.config`` for ``path_info``."""
        request = serving.request
        func, vpath = self.find_handler(path_info)
        if func:
            # Decode any leftover %2F in the virtual path segments.
            vpath = [x.replace("%2F", "/") for x in vpath]
            request.handler = LateParamPageHandler(func, *vpath)
        else:
            request.handler = NotFound()

    def find_handler(self, path: str) -> tuple[Any, list[str]]:
        """Return the appropriate page handler and its positional arguments (the vpath).

        Also sets ``request.config`` (merged along the path) and ``request.is_index``.
        """
        request = serving.request
        func, vpath, sources, is_index = self._walk(path, request)
        request.is_index = is_index
        request.app.set_request_config(request, sources)
        return func, vpath

    def _step(self, node: Any, names: list[str]) -> tuple[Any, int]:
        """Follow the first of ``names`` from ``node``, taking what it consumes off ``names``.

        Return the object reached (None if none) and how many segments are left after it
        (0 when a ``_cp_dispatch`` added segments: that branch is a dead end).
        """
        before = len(names)
        child = getattr(node, names[0].translate(self.translate), None)
        hook = None if child is not None else getattr(node, self.dispatch_method_name, None)
        if (before > 1 and hook is not None and callable(hook)
                and not getattr(hook, "exposed", False)):
            implied_index = names.pop()  # _cp_dispatch sees only the segments of the URL
            child = hook(vpath=names)
            names.append(implied_index)
            if len(names) == before:  # it took the segment without popping it off
                del names[0]
        else:
            del names[0]  # followed, or not found (a default method may still take it)
        if len(names) > before:
            return None, 0
        return child, len(names)

    def _walk(self, path: str, request: Any) -> tuple[Any, list[str], list[dict[str, Any]],
                                                     bool | None]:
        app = request.app
        root = app.root
        appconf = app.config

        fullpath = [x for x in path.strip("/").split("/") if x]
        fullpath.append("index")
        fullpath_len = len(fullpath)

        # Each trail entry: (node, its config sources, segments left after it).
        root_sources = []
        root_conf = getattr(root, "_cp_config", None)
        if root_conf:
            root_sources.append(root_conf)
            if "tools.staticdir.dir" in root_conf:
                root_sources.append(_staticdir_section("/"))
        section = appconf.get("/")
        if section:
            root_sources.append(section)
        trail: list[tuple[Any, list[dict[str, Any]], int]] = [(root, root_sources, fullpath_len)]

        node = root
        names = fullpath[:]
        while names:
            consumed = fullpath_len - len(names)
            node, segleft = self._step(node, names)
            sources = []
            conf = getattr(node, "_cp_config", None)
            if conf:
                sources.append(conf)
                if "tools.staticdir.dir" in conf:  # its section is this node's path
                    here = fullpath[:fullpath_len - len(names)]
                    sources.append(_staticdir_section("/" + "/".join(here)))
            # The app config sections of the segments consumed at this step.
            curpath = "/" + "/".join(fullpath[:consumed]) if consumed else ""
            for seg in fullpath[consumed:fullpath_len - segleft]:
                curpath += "/" + seg
                section = appconf.get(curpath)
                if section:
                    sources.append(section)
                    if "tools.staticdir.dir" in section:
                        sources.append(_staticdir_section(curpath))
            trail.append((node, sources, segleft))

        # Find the deepest exposed handler, or the deepest exposed default method. Config
        # comes from the whole path either way (the sections of segments a default method
        # takes still apply), with a default method's own config after its object's.
        last = len(trail) - 1
        for i in range(last, -1, -1):
            candidate, _, segleft = trail[i]
            if candidate is None:
                continue
            default = getattr(candidate, "default", None)
            if default is not None and getattr(default, "exposed", False):
                sources = _flatten(trail[:i + 1])
                conf = getattr(default, "_cp_config", None)
                if conf:
                    sources.append(conf)
                sources.extend(_flatten(trail[i + 1:]))
                return default, fullpath[fullpath_len - segleft:-1], sources, \
                    path.endswith("/")
            if getattr(candidate, "exposed", False):
                return candidate, fullpath[fullpath_len - segleft:-1], _flatten(trail), \
                    i == last
        return None, [], _flatten(trail), None


def _flatten(trail: list[tuple[Any, list[dict[str, Any]], int]]) -> list[dict[str, Any]]:
    return [source for _, sources, _ in trail for source in sources]


_staticdir_sections: dict[str, dict[str, str]] = {}


def _staticdir_section(curpath: str) -> dict[str, str]:
    """Return the (shared) config source naming the section a staticdir is configured at."""
    found = _staticdir_sections.get(curpath)
    if found is None:
        found = _staticdir_sections[curpath] = {"tools.staticdir.section": curpath}
    return found


class MethodDispatcher(Dispatcher):
    """Dispatch to the method named after the HTTP verb (GET, POST...) of the resource.

    The resource is found as the default dispatcher finds a handler; it answers 405 (with
    an Allow header) for a verb it lacks; HEAD falls back to GET.
    """

    _verbs_by_type: dict[type, frozenset[str]] = {}

    @classmethod
    def allowed(cls, resource: Any) -> str:
        """Return the Allow header for ``resource``: its upper-case attribute names."""
        kind = type(resource)
        verbs = cls._verbs_by_type.get(kind)
        if verbs is None:
            verbs = cls._verbs_by_type[kind] = frozenset(m for m in dir(kind) if m.isupper())
        avail = set(verbs)
        avail.update(m for m in getattr(resource, "__dict__", ()) if m.isupper())
        if "GET" in avail:
            avail.add("HEAD")
        return ", ".join(sorted(avail))

    def __call__(self, path_info: str) -> None:
        request = serving.request
        resource, vpath, sources, is_index = self._walk(path_info, request)
        request.is_index = is_index
        if resource:
            serving.response.headers["Allow"] = self.allowed(resource)
            meth = request.method.upper()
            func = getattr(resource, meth, None)
            if func is None and meth == "HEAD":
                func = getattr(resource, "GET", None)
            if func:
                conf = getattr(func, "_cp_config", None)
                if conf:
                    sources.append(conf)
                vpath = [x.replace("%2F", "/") for x in vpath]
                request.handler = LateParamPageHandler(func, *vpath)
            else:
                request.handler = HTTPError(405)
        else:
            request.handler = NotFound()
        request.app.set_request_config(request, sources)


class RoutesDispatcher:
    """A dispatcher for URLs declared as routes (the ``routes`` package).

    ``connect(name, route, controller, **kwargs)`` adds a route; the matched ``controller``
    (the object given to connect under that name) and ``action`` (a method name) pick the
    handler; the other route variables become params.
    """

    def __init__(self, full_result: bool = False, **mapper_options: Any) -> None:
        try:
            import routes
        except ImportError as error:
            raise ImportError("RoutesDispatcher needs the 'routes' package "
                              "(pip install routes)") from error
        self.full_result = full_result
        self.controllers: dict[str, Any] = {}
        self.mapper = routes.Mapper(**mapper_options)
        self.mapper.controller_scan = self.controllers.keys

    def connect(self, name: str, route: str, controller: Any, **kwargs: Any) -> None:
        """Map ``route`` to ``controller``; route variables become handler params."""
        self.controllers[name] = controller
        self.mapper.connect(name, route, controller=name, **kwargs)

    def redirect(self, url: str) -> None:
        from services.web._cperror import HTTPRedirect

        raise HTTPRedirect(url)

    def __call__(self, path_info: str) -> None:
        func = self.find_handler(path_info)
        request = serving.request
        request.handler = LateParamPageHandler(func) if func else NotFound()

    def _route_target(self, result: dict[str, Any] | None) -> tuple[Any, list[Any]]:
        """Return the handler a route match names, and the ``_cp_config`` of the controller
        and of the handler (None where there is none)."""
        if not result:
            return None, []
        name: Any = result.get("controller")
        controller = self.controllers.get(name, name)
        if isinstance(controller, type):
            controller = controller()
        configs = [getattr(controller, "_cp_config", None)]
        action = result.get("action")
        if action is None:
            return controller, configs
        handler = getattr(controller, action, None)
        return handler, [*configs, getattr(handler, "_cp_config", None)]

    def find_handler(self, path_info: str) -> Any:
        """Find the page handler for ``path_info``, and set request.config."""
        import routes

        request = serving.request
        # Routes' per-thread config, for url_for() and redirect_to() in handlers. The environ
        # goes first: setting it derives a host and protocol, which ours then replace.
        settings: dict[str, Any] = {"mapper": self.mapper}
        if request.wsgi_environ:
            settings["environ"] = request.wsgi_environ
        settings.update(host=request.headers.get("Host"), protocol=request.scheme,
                        redirect=self.redirect)
        config = routes.request_config()
        for name, value in settings.items():
            setattr(config, name, value)
        result = self.mapper.match(path_info)  # by the method the config's environ gives
        config.mapper_dict = result
        params = dict(result) if result else {}
        if not self.full_result:
            params.pop("controller", None)
            params.pop("action", None)
        request.params.update(params)

        app = request.app
        sources: list[dict[str, Any]] = []

        def merge(conf: Any, curpath: str | None = None) -> None:
            if conf:
                sources.append(conf)
                if curpath is not None and "tools.staticdir.dir" in conf:
                    sources.append(_staticdir_section(curpath or "/"))

        merge(getattr(app.root, "_cp_config", None))
        merge(app.config.get("/"), "/")
        paths = list(itertools.accumulate(f"/{atom}" for atom in path_info.split("/") if atom))
        for curpath in paths[:-1]:
            merge(app.config.get(curpath), curpath)
        handler, own_configs = self._route_target(result)
        for conf in own_configs:
            merge(conf)
        if paths:  # the full path's section last: it overrides the controller's config
            merge(app.config.get(paths[-1]), paths[-1])
        request.is_index = None
        app.set_request_config(request, sources)
        return handler


def XMLRPCDispatcher(next_dispatcher: Any = None) -> Callable[[str], Any]:  # noqa: N802
    """Dispatch XML-RPC calls: strip a leading '/RPC2' and end the path with '/'.

    The URL then finds an ``XMLRPCController`` (its ``default`` method), which dispatches
    on the method named in the body (see ``lib.xmlrpcutil``).
    """
    from services.web.lib.xmlrpcutil import patched_path

    if next_dispatcher is None:
        next_dispatcher = Dispatcher()

    def xmlrpc_dispatch(path_info: str) -> Any:
        return next_dispatcher(patched_path(path_info))

    return xmlrpc_dispatch


def VirtualHost(next_dispatcher: Any = None, use_x_forwarded_host: bool = True,  # noqa: N802
                **domains: str) -> Callable[[str], Any]:
    """Serve several host names from one app: the Host header picks a path prefix.

    ``domains`` maps host names (``'www.domain2.example:443'``) to path prefixes inside the
    root application (``'/domain2'``); other hosts get the path unchanged. With
    ``use_x_forwarded_host``, X-Forwarded-Host (set by a reverse proxy) wins over Host.
    """
    if next_dispatcher is None:
        next_dispatcher = Dispatcher()

    host_headers = ("X-Forwarded-Host", "Host") if use_x_forwarded_host else ("Host",)

    def vhost_dispatch(path_info: str) -> Any:
        request = serving.request
        given = [request.headers[name] for name in host_headers if name in request.headers]
        prefix = domains.get(given[0] if given else "", "")
        result = next_dispatcher(_urljoin(prefix, path_info) if prefix else path_info)
        # staticdir's section names a path of the site's tree, below the prefix: strip it
        # (https://github.com/cherrypy/cherrypy/issues/614).
        section = (request.config or {}).get("tools.staticdir.section")
        if section:
            request.config["tools.staticdir.section"] = section[len(prefix):]
        return result

    return vhost_dispatch


def _urljoin(*atoms: str) -> str:
    from services.web.lib.httputil import urljoin

    return urljoin(*atoms)
