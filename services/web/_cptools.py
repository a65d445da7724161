"""Tools: per-request functions attached to hook points, and the Toolboxes that hold them.

A Tool wraps a callable and the hook point it runs at. A Toolbox is a config namespace: for
``tools.<name>.on = True`` (in any config, or set by the ``@tools.<name>(...)`` decorator on
a handler) the Toolbox calls ``tool._setup()`` for the request, which attaches the callable
at the tool's point with the ``tools.<name>.<arg>`` entries as keyword arguments. The name
the tool is given in its Toolbox, not the callable's name, is the config name.

Kinds of tools:

- ``Tool(point, callable, name=None, priority=50)``: runs ``callable(**conf)`` at ``point``.
- ``HandlerTool(callable)``: runs at ``before_handler``; if the callable returns True it has
  answered the request and the page handler is skipped. ``.handler(...)`` makes a page
  handler of it.
- ``HandlerWrapperTool(newhandler)``: replaces the page handler with
  ``newhandler(next_handler, *args, **kwargs)``.
- ``ErrorTool(callable)``: becomes ``request.error_response``.

Priorities are set per tool (a lower one runs earlier) and may be overridden with
``tools.<name>.priority``. Adding a tool means adding one attribute to a Toolbox: the
machinery needs nothing else.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from services.web._cperror import NotFound
from services.web._cprequest import Request
from services.web._helper import expose
from services.web._serving import serving
from services.web.lib.xmlrpcutil import XMLRPCController

__all__ = ["CachingTool", "ErrorTool", "HandlerTool", "HandlerWrapperTool", "SessionAuthTool",
           "SessionTool", "Tool", "Toolbox", "XMLRPCController", "default_toolbox",
           "tool_settings"]

_attr_error = ("A tool has no 'on' attribute to set or read: turn it on in the config "
               "(tools.NAME.on = True) or decorate the handler with it.")


def _getargs(func: Callable[..., Any]) -> list[str]:
    """Return the names of the parameters of ``func`` (or of its ``__call__``)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    return [p.name for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _refuse_on(*_: Any) -> Any:
    """Refuse ``tool.on``: a tool is turned on in config or by calling it as a decorator."""
    raise AttributeError(_attr_error)


class Tool:
    """A registered function for use with request hooks.

    Use it as a decorator (``@tools.name(arg=1)``) or turn it on in config
    (``tools.name.on = True``, ``tools.name.arg = 1``).
    """

    namespace = "tools"

    def __init__(self, point: str | None, callable: Callable[..., Any],
                 name: str | None = None, priority: int = 50) -> None:
        self._name, self._point, self._priority = name, point, priority
        self.callable = callable
        self.__doc__ = callable.__doc__  # help(tools.NAME) shows the function's own
        self._setargs()

    on = property(_refuse_on, _refuse_on)

    def _setargs(self) -> None:
        """Copy the callable's parameter names to attributes, so help() lists the settings."""
        for arg in _getargs(self.callable):
            if not hasattr(type(self), arg):
                setattr(self, arg, None)

    def _merged_args(self, d: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return a dict of this tool's settings for the current request."""
        conf = dict(d) if d else {}
        settings = serving.request.toolmaps.get(self.namespace, {}).get(self._name)
        if settings:
            conf.update(settings)
        conf.pop("on", None)
        return conf

    def __call__(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        """Turn the tool on for the decorated handler, with these settings."""
        if args:
            raise TypeError(f"tools.{self._name}: settings go by keyword (name=value), got "
                            f"{len(args)} positional argument(s)")

        def tool_decorator(f: Any) -> Any:
            if not hasattr(f, "_cp_config"):
                f._cp_config = {}
            subspace = f"{self.namespace}.{self._name}."
            f._cp_config[subspace + "on"] = True
            for k, v in kwargs.items():
                f._cp_config[subspace + k] = v
            return f

        return tool_decorator

    def _priority_of(self, conf: dict[str, Any]) -> int:
        p = conf.pop("priority", None)
        if p is None:
            p = getattr(self.callable, "priority", self._priority)
        return p

    def _setup(self) -> None:
        """Hook this tool into the current request (called when the tool is on)."""
        conf = self._merged_args()
        priority = self._priority_of(conf)
        serving.request.hooks.attach(self._point, self.callable, priority=priority, **conf)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace}.{self._name} at {self._point}>"


class HandlerTool(Tool):
    """A Tool which may answer the request itself, skipping the page handler.

    The callable returns True when it has set the response. ``handler(...)`` turns the
    tool into a page handler (for example ``nav = tools.staticdir.handler(section='/nav',
    dir='nav', root=...)``), which answers 404 when the callable does not handle the path.
    """

    def __init__(self, callable: Callable[..., Any], name: str | None = None) -> None:
        super().__init__("before_handler", callable, name)

    def handler(self, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        """Use this tool as a page handler."""

        @expose
        def handle_func(*a: Any, **kw: Any) -> Any:
            handled = self.callable(*args, **self._merged_args(kwargs))
            if not handled:
                raise NotFound()
            return serving.response.body

        return handle_func

    def _wrapper(self, **kwargs: Any) -> None:
        request = serving.request
        if request.handler is None:
            return  # an earlier tool answered already (the cache, say): leave its body alone
        if self.callable(**kwargs):
            request.handler = None

    def _setup(self) -> None:
        conf = self._merged_args()
        priority = self._priority_of(conf)
        serving.request.hooks.attach(self._point, self._wrapper, priority=priority, **conf)


class HandlerWrapperTool(Tool):
    """A Tool which wraps the page handler: ``newhandler(next_handler, *args, **kwargs)``.

    For example, a template tool::

        def render(next_handler, *args, **kwargs):
            return template.render(next_handler(*args, **kwargs))
        tools.render = HandlerWrapperTool(render)
    """

    def __init__(self, newhandler: Callable[..., Any], point: str = "before_handler",
                 name: str | None = None, priority: int = 50) -> None:
        self.newhandler = newhandler
        self._point = point
        self._name = name
        self._priority = priority
        self.__doc__ = newhandler.__doc__

    def callable(self, *args: Any, **kwargs: Any) -> None:
        # The tool's own config arguments stay in request.config; the wrapper gets the
        # arguments the handler is called with.
        innerfunc = serving.request.handler
        serving.request.handler = functools.partial(self.newhandler, innerfunc)


class ErrorTool(Tool):
    """A Tool which becomes ``request.error_response`` (it answers unexpected errors)."""

    def __init__(self, callable: Callable[..., Any], name: str | None = None) -> None:
        super().__init__(None, callable, name)

    def _wrapper(self) -> None:
        self.callable(**self._merged_args())

    def _setup(self) -> None:
        serving.request.error_response = self._wrapper


class SessionTool(Tool):
    """Server-side sessions (``tools.sessions``): init, lock, save and close at their points.

    ``locking`` is 'implicit' (lock before the handler), 'early' (before the request body)
    or 'explicit' (the application locks); the lock is always released at the end.
    """

    def __init__(self) -> None:
        from services.web.lib import sessions

        super().__init__("before_request_body", sessions.init)
        self._sessions = sessions

    def _lock_session(self) -> None:
        serving.session.acquire_lock()

    def _setup(self) -> None:
        hooks = serving.request.hooks
        conf = self._merged_args()
        priority = self._priority_of(conf)
        hooks.attach(self._point, self.callable, priority=priority, **conf)
        locking = conf.pop("locking", "implicit")
        if locking == "implicit":
            hooks.attach("before_handler", self._lock_session)
        elif locking == "early":
            hooks.attach("before_request_body", self._lock_session, priority=60)
        elif locking != "explicit":
            from sitebus.errors import ConfigError

            raise ConfigError("expected 'implicit', 'early' or 'explicit'",
                              key="tools.sessions.locking", value=locking)
        hooks.attach("before_finalize", self._sessions.save)
        hooks.attach("on_end_request", self._sessions.close)

    def regenerate(self) -> None:
        """Give the session a fresh id (and cookie), so an id seen before login stops working."""
        serving.session.regenerate()
        relevant = ("path", "path_header", "name", "timeout", "domain", "secure", "httponly")
        conf = {k: v for k, v in self._merged_args().items() if k in relevant}
        self._sessions.set_response_cookie(**conf)


class SessionAuthTool(HandlerTool):
    """The ``session_auth`` tool: every attribute of SessionAuth is a setting."""

    def _setargs(self) -> None:
        from services.web.lib.sessionauth import SessionAuth

        for name in dir(SessionAuth):
            if not name.startswith("__") and not hasattr(type(self), name):
                setattr(self, name, None)


def tool_settings(tool: Any) -> set[str] | None:
    """Return the settings ``tool`` accepts (besides on and priority); None for any."""
    try:
        signature = inspect.signature(tool.callable)
    except (TypeError, ValueError):
        return None
    names = set()
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            return None
        if param.kind is not param.VAR_POSITIONAL:
            names.add(param.name)
    return names


# -- caching and XML-RPC (issue 9, second half) ----------------------------------------------


class CachingTool(Tool):
    """The caching tool (``tools.caching``): answer from the cache, or tee the output into it.

    At before_handler (priority 20, before the encoder wraps the handler) a fresh cached
    copy answers the request and the handler is skipped; otherwise, if the request is
    cacheable, the response is teed into the cache at before_finalize (priority 90, after
    gzip, so the compressed variant is stored).
    """

    def __init__(self) -> None:
        from services.web.lib import caching

        super().__init__("before_handler", caching.get, priority=20)
        self._caching = caching

    def _wrapper(self, **kwargs: Any) -> None:
        request = serving.request
        if self.callable(**kwargs):
            request.handler = None
        elif request.cacheable:
            request.hooks.attach("before_finalize", self._caching.tee_output, priority=90)

    def _setup(self) -> None:
        conf = self._merged_args()
        priority = conf.pop("priority", None)
        serving.request.hooks.attach(self._point, self._wrapper,
                                     priority=self._priority if priority is None else priority,
                                     **conf)


class Toolbox:
    """A collection of Tools answering to one config namespace (``tools`` by default).

    Register a custom toolbox for requests with
    ``app.request_class.namespaces['<namespace>'] = toolbox``.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def __getattr__(self, name: str) -> Any:
        namespace = self.__dict__.get("namespace")
        raise AttributeError(f"no tool named {name!r} in the {namespace!r} toolbox")

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Tool):
            if value._name is None:
                value._name = name
            value.namespace = self.namespace
        object.__setattr__(self, name, value)

    def __enter__(self) -> Callable[[str, Any], None]:
        """Collect the request's entries of this namespace into request.toolmaps."""
        toolmap: dict[str, dict[str, Any]] = {}
        serving.request.toolmaps[self.namespace] = toolmap

        def populate(k: str, v: Any) -> None:
            toolname, _, arg = k.partition(".")
            toolmap.setdefault(toolname, {})[arg] = v

        return populate

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        """Set up each tool that is on for this request."""
        toolmap = serving.request.toolmaps.get(self.namespace)
        if toolmap:
            for name, settings in toolmap.items():
                if settings.get("on", False):
                    getattr(self, name)._setup()

    def register(self, point: str, **kwargs: Any) -> Callable[[Any], Any]:
        """A decorator: the function becomes a tool of this toolbox, run at ``point``.

        ``name`` (default: the function's name) and ``priority`` may be given.
        """

        def decorator(func: Any) -> Any:
            attr_name = kwargs.get("name", func.__name__)
            setattr(self, attr_name, Tool(point, func, **kwargs))
            return func

        return decorator

    def __repr__(self) -> str:
        return f"<Toolbox {self.namespace!r}>"


def _build_default_toolbox() -> Toolbox:
    """Return the built-in tools: the plain ones by hook point, then those of other kinds."""
    from services.web.lib import (
        auth,
        auth_basic,
        auth_digest,
        caching,
        cpstats,
        cptools,
        encoding,
        jsontools,
        sessionauth,
        static,
        xmlrpcutil,
    )

    # Within a hook point, lower priorities run first (50 unless said).
    plain: dict[str, list[tuple[str, Callable[..., Any], int]]] = {
        "on_start_resource": [
            ("autovary", cptools.autovary, 0),
            ("allow", cptools.allow, 50), ("accept", cptools.accept, 50),
            ("redirect", cptools.redirect, 50),
            ("response_headers", cptools.response_headers, 50),
            ("basic_auth", auth.basic_auth, 50), ("digest_auth", auth.digest_auth, 50),
        ],
        "before_request_body": [
            # Authentication first: an unauthenticated body is never parsed.
            ("auth_basic", auth_basic.basic_auth, 1),
            ("auth_digest", auth_digest.digest_auth, 1),
            ("proxy", cptools.proxy, 30), ("json_in", jsontools.json_in, 30),
            ("decode", encoding.decode, 50), ("referer", cptools.referer, 50),
            ("ignore_headers", cptools.ignore_headers, 50),
        ],
        "before_handler": [
            ("params", cptools.convert_params, 15), ("json_out", jsontools.json_out, 30),
            ("trailing_slash", cptools.trailing_slash, 60),
            ("encode", encoding.ResponseEncoder, 70),  # before gzip (80) and caching
        ],
        "before_finalize": [
            ("flatten", cptools.flatten, 50), ("expires", caching.expires, 50),
            ("etags", cptools.validate_etags, 75), ("gzip", encoding.gzip, 80),
        ],
        "before_error_response": [
            ("log_tracebacks", cptools.log_traceback, 50),
            ("log_headers", cptools.log_request_headers, 50),
        ],
        "on_end_request": [("log_hooks", cptools.log_hooks, 100)],
    }
    box = Toolbox("tools")
    for point, entries in plain.items():
        for name, function, priority in entries:
            setattr(box, name, Tool(point, function, priority=priority))
    box.err_redirect = ErrorTool(cptools.redirect)
    box.xmlrpc = ErrorTool(xmlrpcutil.on_error)
    box.staticdir = HandlerTool(static.staticdir)
    box.staticfile = HandlerTool(static.staticfile)
    box.sessions = SessionTool()
    box.session_auth = SessionAuthTool(sessionauth.session_auth)
    box.caching = CachingTool()
    box.cpstats = cpstats.StatsTool()
    return box


default_toolbox = _build_default_toolbox()
"""The built-in tools (``services.web.tools``), answering to the ``tools`` namespace."""

Request.namespaces["tools"] = default_toolbox
