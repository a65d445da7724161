"""XML-RPC: the controller, the tool's error handler and the body helpers.

XML-RPC is a second dispatch inside one URL: the URL finds an ``XMLRPCController``
(dispatch as usual; ``dispatch.XMLRPCDispatcher()`` strips a leading ``/RPC2``), then the
controller reads the method name and arguments from the request body and calls the exposed
method of that (dotted) name below itself. The answer is always ``200 OK`` with a
``methodResponse``; any failure (an unknown or unexposed method, a body that is not an
XML-RPC call, an exception in the method) becomes a ``Fault`` (code 1, the error's text):
``tools.xmlrpc`` is the ErrorTool that writes it. The controller turns the tool on itself.

Settings: ``tools.xmlrpc.encoding`` ('utf-8') and ``tools.xmlrpc.allow_none`` (False).
Method names that have a segment starting with '_' are never looked up.
"""

from __future__ import annotations

import sys
import xmlrpc.client
from typing import Any

from services.web._helper import expose
from services.web._serving import serving

__all__ = ["XMLRPCController", "on_error", "patched_path", "process_body", "respond"]


def process_body() -> tuple[tuple[Any, ...], str]:
    """Return (params, method) from the request body (an XML-RPC methodCall)."""
    body = serving.request.body.read()  # a body over request.body.maxbytes is a 413
    try:
        params, method = xmlrpc.client.loads(body)
    except Exception:  # not XML, not a methodCall, an entity bomb that expat refused...
        return ("ERROR PARAMS",), "ERRORMETHOD"
    return params, method if isinstance(method, str) else "ERRORMETHOD"


def patched_path(path: str) -> str:
    """Return ``path``, doctored for RPC: a trailing '/' and no leading '/RPC2'."""
    if not path.endswith("/"):
        path += "/"
    if path.startswith("/RPC2/"):
        path = path[5:]
    return path


def _set_response(body: str) -> None:
    # The XML-RPC spec: "Unless there's a lower-level error, always return 200 OK."
    response = serving.response
    data = body.encode("utf-8") if isinstance(body, str) else body
    response.status = "200 OK"
    response.body = data
    response.headers["Content-Type"] = "text/xml"
    response.headers["Content-Length"] = str(len(data))


def respond(body: Any, encoding: str = "utf-8", allow_none: Any = 0) -> None:
    """Set the response to a methodResponse carrying ``body`` (or a Fault)."""
    if not isinstance(body, xmlrpc.client.Fault):
        body = (body,)
    _set_response(xmlrpc.client.dumps(body, methodresponse=True, encoding=encoding,
                                      allow_none=bool(allow_none)))


def on_error(*args: Any, **kwargs: Any) -> None:
    """Set the response to a Fault for the error being handled (``tools.xmlrpc``)."""
    _set_response(xmlrpc.client.dumps(xmlrpc.client.Fault(1, str(sys.exc_info()[1]))))


class XMLRPCController:
    """Subclass this to serve XML-RPC: its exposed methods are the procedures.

    Its exposed methods (and those of exposed attributes, for dotted names) are the RPC
    methods; positional path segments come first, then the call's parameters.
    """

    _cp_config = {"tools.xmlrpc.on": True}

    @expose
    def default(self, *vpath: Any, **params: Any) -> Any:
        rpcparams, rpcmethod = process_body()
        subhandler: Any = self
        for attr in rpcmethod.split("."):
            if not attr or attr.startswith("_"):
                subhandler = None
                break
            subhandler = getattr(subhandler, attr, None)
        if subhandler is None or not getattr(subhandler, "exposed", False) \
                or not callable(subhandler):
            raise Exception(f'method "{rpcmethod}" is not supported')
        body = subhandler(*(vpath + rpcparams), **params)
        conf = serving.request.toolmaps.get("tools", {}).get("xmlrpc", {})
        respond(body, conf.get("encoding", "utf-8"), conf.get("allow_none", 0))
        return serving.response.body
