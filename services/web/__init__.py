"""services.web: the request framework, a service hosted on the site's bus.

It keeps the reference's names, so an application written for it runs with only its import
lines changed (``import services.web as cherrypy``). Four layers, as the reference has them:

- application: ``expose``, ``popargs``, ``quickstart``, ``_cp_config``, ``tools``, ``url``;
- environment: ``request``, ``response`` (the current thread's), ``engine``, ``server``,
  ``tree``, ``config``, ``log``, ``thread_data``, the errors, ``lib``;
- extension: hooks, ``Tool``/``Toolbox``, ``dispatch``, config namespaces;
- core: ``Application``, the request/response objects, the WSGI adapter.

The process side is the site's: ``engine`` is ``sitebus.site.container.bus``, ``config`` the site
config, ``log`` the site's LogManager, ``tree`` the site tree (``tree.mount`` makes an
``Application`` of a root object and returns it; ``tree.graft`` mounts any WSGI app), and
``server`` the site's default HTTP server. ``process`` (``plugins``, ``servers``,
``wspbus``) and ``lib`` mirror ``cherrypy.process`` and ``cherrypy.lib``.

Importing this package registers the framework with the site: the application factory of
the tree, the config namespaces it owns (``request``, ``response``, ``tools``, ``hooks``,
``error_page``, ``checker``; ``wsgi`` is refused in site config), the default tools config
of the reference (log_tracebacks, log_headers, trailing_slash and encode on), the
start-up checker and the timeout monitor.
"""

from __future__ import annotations

from typing import Any

from services.web import (
    _cpchecker,
    _cpconfig,
    _cpdispatch,
    _cperror,
    _cplogging,
    _cpreqbody,
    _cprequest,
    _cptimeout,
    _cptools,
    _cptree,
    _cpwsgi,
    _helper,
    _workersafe,
    dispatch,
    lib,
    process,
)
from services.web._cperror import (
    CherryPyException,
    HTTPError,
    HTTPRedirect,
    InternalRedirect,
    NotFound,
    TimeoutError,
)
from services.web._cptools import ErrorTool, HandlerTool, HandlerWrapperTool, Tool, Toolbox
from services.web._cptree import Application
from services.web._helper import expose, popargs, url
from services.web._serving import Serving, ThreadLocalProxy, serving, thread_data
from services.web.lib import httputil as _httputil
from sitebus.site import container as _site

__all__ = [
    "Application",
    "CherryPyException",
    "ErrorTool",
    "HTTPError",
    "HTTPRedirect",
    "HandlerTool",
    "HandlerWrapperTool",
    "InternalRedirect",
    "NotFound",
    "TimeoutError",
    "Tool",
    "Toolbox",
    "config",
    "dispatch",
    "engine",
    "expose",
    "lib",
    "log",
    "popargs",
    "process",
    "quickstart",
    "request",
    "response",
    "server",
    "serving",
    "session",
    "thread_data",
    "tools",
    "tree",
    "url",
]

__version__ = "sitebus"

engine = _site.bus
"""The site's bus (``sitebus.site.container.bus``)."""

config = _site.config
"""The site config (``sitebus.site.container.config``)."""

log = _site.log
"""The site's LogManager: ``log(msg)``, ``log.error(...)``, ``log.access_file``..."""

tree = _site.tree
"""The site tree: ``tree.mount(root, script_name, config)``, ``tree.graft(wsgi_app, ...)``."""

tools = _cptools.default_toolbox
"""The built-in tools, answering to the ``tools`` config namespace."""

request: Any = ThreadLocalProxy("request")
"""The current thread's Request."""

response: Any = ThreadLocalProxy("response")
"""The current thread's Response."""

session: Any = ThreadLocalProxy("session")
"""The current thread's Session (with ``tools.sessions`` on)."""

checker = _cpchecker.checker
"""The start-up checker (``checker.on`` in site config)."""

# What the proxies show outside a request.
Serving.request = _cprequest.Request(_httputil.Host("127.0.0.1", 80),
                                     _httputil.Host("127.0.0.1", 1111))
Serving.response = _cprequest.Response()

# -- registration with the site --------------------------------------------------------------

tree.app_factory = _cptree.make_application
tree.app_class = Application
_cplogging.install(log)
tree.current_path = _cptree.current_path
_cpconfig.register_site_namespaces(config)
_cpchecker.register(engine, config)
_cptimeout.register(engine)
_workersafe.register(engine)

_DEFAULT_TOOLS = {
    "tools.log_tracebacks.on": True,
    "tools.log_headers.on": True,
    "tools.trailing_slash.on": True,
    "tools.encode.on": True,
}
_SAFE_DEFAULTS = {
    # Unlike the reference, error pages show tracebacks only where config asks for them
    # (environment = 'development' or 'test_suite', or request.show_tracebacks = True): a site
    # started with no environment, as `sitebus run` with no config, is reachable by anyone.
    "request.show_tracebacks": False,
}
config.defaults = {**getattr(config, "defaults", {}), **_DEFAULT_TOOLS, **_SAFE_DEFAULTS}
for _key, _value in {**_DEFAULT_TOOLS, **_SAFE_DEFAULTS}.items():
    config.setdefault(_key, _value)


def quickstart(root: Any = None, script_name: str = "", config: Any = None) -> None:
    """Mount the given root, start the default server (and the engine), then block.

    The engine's start prepares the site as ``sitebus run`` does (signals, sockets passed by
    systemd or by a restart, systemd notifications), so a reload re-executes and serves on.

    ``root`` is the root object of the application; ``script_name`` its mount point ('' for
    the site root, else '/path' with no trailing slash); ``config`` a file or dict of
    application config, whose ``[global]`` section, if any, goes to the site config.
    """
    if config:
        if hasattr(config, "read"):  # an open file can be read once: make it a dict
            config = _cpconfig.as_dict(config)
        if isinstance(config, dict):
            if isinstance(config.get("global"), dict):
                _site.config.update({"global": config["global"]})
        else:
            _site.config.update(config)  # a file: only its [global] section
    tree.mount(root, script_name, config)
    server_plugin = _cpserver_default()
    server_plugin.subscribe()
    engine.start()
    engine.block()


def _cpserver_default() -> Any:
    from services.web import _cpserver

    return _cpserver.default_server()


def __getattr__(name: str) -> Any:
    if name == "server":
        return _cpserver_default()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The reference's private module names stay reachable for code that uses them
# (cherrypy._cptools.Toolbox, cherrypy._cpconfig.environments...).
_private_modules = (_cpdispatch, _cpreqbody, _cpwsgi, _helper, _cperror)
