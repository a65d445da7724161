"""The dispatchers under their public name (``services.web.dispatch.MethodDispatcher``...).

The same objects as ``_cpdispatch``; a module of its own so that config values such as
``request.dispatch = cherrypy.dispatch.MethodDispatcher()`` import it by name.
"""

from services.web._cpdispatch import (
    Dispatcher,
    LateParamPageHandler,
    MethodDispatcher,
    PageHandler,
    RoutesDispatcher,
    VirtualHost,
    XMLRPCDispatcher,
    mismatch_error,
    punctuation_to_underscores,
    test_callable_spec,
)

__all__ = [
    "Dispatcher",
    "LateParamPageHandler",
    "MethodDispatcher",
    "PageHandler",
    "RoutesDispatcher",
    "VirtualHost",
    "XMLRPCDispatcher",
    "mismatch_error",
    "punctuation_to_underscores",
    "test_callable_spec",
]
