"""XML-RPC: XMLRPCController, XMLRPCDispatcher and tools.xmlrpc, with the standard library's
xmlrpc.client as the client; faults for unknown, private and unexposed methods, bad bodies
and entity bombs."""

from __future__ import annotations

import datetime
import http.client
import xmlrpc.client
from typing import Any

import pytest

import services.web as cherrypy
from services.web import _cptools
from services.web.lib import xmlrpcutil


class Root:
    @cherrypy.expose
    def index(self) -> str:
        return "I'm a standard index!"


class Sub:
    @cherrypy.expose
    def hello(self, name: str) -> str:
        return f"hello {name}"


class XmlRpc(_cptools.XMLRPCController):
    sub = Sub()
    sub.exposed = True  # type: ignore[attr-defined]

    @cherrypy.expose
    def foo(self) -> str:
        return "Hello world!"

    @cherrypy.expose
    def return_single_item_list(self) -> list[int]:
        return [42]

    @cherrypy.expose
    def return_tuple(self) -> tuple[Any, ...]:
        return ("here", "is", 1, "tuple")

    @cherrypy.expose
    def return_dict(self) -> dict[str, int]:
        return {"a": 1, "b": 2, "c": 3}

    @cherrypy.expose
    def return_composite(self) -> Any:
        return {"a": 1, "z": 26}, "hi", ["welcome", "friend"]

    @cherrypy.expose
    def return_float(self) -> float:
        return 3.14

    @cherrypy.expose
    def return_datetime(self) -> Any:
        return xmlrpc.client.DateTime((2003, 10, 7, 8, 1, 0, 1, 280, -1))

    @cherrypy.expose
    def return_boolean(self) -> bool:
        return True

    @cherrypy.expose
    def return_unicode(self) -> str:
        return "gr\u00fc\u00df \u20ac"

    @cherrypy.expose
    def return_none(self) -> None:
        return None

    @cherrypy.expose
    def test_argument_passing(self, num: Any) -> Any:
        return num * 2

    @cherrypy.expose
    def test_returning_fault(self) -> Any:
        return xmlrpc.client.Fault(1, "custom Fault response")

    def not_exposed(self) -> str:
        return "secret"

    @cherrypy.expose
    def _private(self) -> str:
        return "secret"


@pytest.fixture
def rpc(web: Any) -> Any:
    root = Root()
    root.xmlrpc = XmlRpc()  # type: ignore[attr-defined]
    web.mount(root, "", {"/": {"request.dispatch": cherrypy.dispatch.XMLRPCDispatcher(),
                               "tools.xmlrpc.allow_none": 0},
                         "/xmlrpc/big": {"request.body.maxbytes": 1000}})
    return web


def proxy(web: Any, path: str = "/xmlrpc/", **kwargs: Any) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{web.PORT}{path}", **kwargs)


def test_xmlrpc(rpc: Any) -> None:
    rpc.getPage("/")
    rpc.assertBody("I'm a standard index!")
    for path in ("/xmlrpc/", "/RPC2/xmlrpc/"):
        with proxy(rpc, path) as server:
            assert server.foo() == "Hello world!"
    with proxy(rpc) as server:
        assert server.return_single_item_list() == [42]
        assert server.return_tuple() == ["here", "is", 1, "tuple"]
        assert server.return_dict() == {"a": 1, "b": 2, "c": 3}
        assert server.return_composite() == [{"a": 1, "z": 26}, "hi", ["welcome", "friend"]]
        assert server.return_float() == 3.14
        assert server.return_datetime() == xmlrpc.client.DateTime(
            (2003, 10, 7, 8, 1, 0, 1, 280, -1))
        assert server.return_boolean() is True
        assert server.return_unicode() == "gr\u00fc\u00df \u20ac"
        assert server.test_argument_passing(22) == 44
        assert server.sub.hello("you") == "hello you"
    with proxy(rpc, use_builtin_types=True) as server:
        assert server.return_datetime() == datetime.datetime(2003, 10, 7, 8, 1, 0)


@pytest.mark.parametrize(
    "call, fault",
    [
        (lambda s: s.test_argument_passing({}),
         "unsupported operand type(s) for *: 'dict' and 'int'"),
        (lambda s: s.non_method(), 'method "non_method" is not supported'),
        (lambda s: s.not_exposed(), 'method "not_exposed" is not supported'),
        (lambda s: s._private(), 'method "_private" is not supported'),
        (lambda s: getattr(s, "__class__.__init__")(), "is not supported"),
        (lambda s: getattr(s, "sub.")(), "is not supported"),
        (lambda s: s.test_returning_fault(), "custom Fault response"),
        (lambda s: s.return_none(), "cannot marshal None unless allow_none is enabled"),
        (lambda s: s.foo(1, 2), "takes 1 positional argument but 3 were given"),
    ],
)
def test_faults(rpc: Any, call: Any, fault: str) -> None:
    with proxy(rpc) as server, pytest.raises(xmlrpc.client.Fault) as error:
        call(server)
    assert error.value.faultCode == 1
    assert fault in error.value.faultString


def test_allow_none(web: Any) -> None:
    root = Root()
    root.xmlrpc = XmlRpc()  # type: ignore[attr-defined]
    web.mount(root, "", {"/": {"tools.xmlrpc.allow_none": True}})
    with proxy(web, allow_none=True) as server:
        assert server.return_none() is None


def raw_post(web: Any, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", web.PORT, timeout=20)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "text/xml"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lollollollollollollollollollol">
""" + b"".join(
    f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
    for i in range(1, 10)) + b"""]>
<methodCall><methodName>foo</methodName><params><param><value><string>&lol9;</string>
</value></param></params></methodCall>"""


@pytest.mark.parametrize(
    "body",
    [b"", b"not xml at all", b"<methodCall><methodName>foo", b"<a/>", BOMB],
    ids=["empty", "text", "truncated", "not-a-call", "entity-bomb"],
)
def test_bad_bodies_are_faults(rpc: Any, body: bytes) -> None:
    status, data = raw_post(rpc, "/xmlrpc/", body)
    assert status == 200
    with pytest.raises(xmlrpc.client.Fault, match='method "ERRORMETHOD" is not supported'):
        xmlrpc.client.loads(data)


def test_an_oversized_body_is_413(rpc: Any) -> None:
    body = xmlrpc.client.dumps(("x" * 5000,), "foo").encode()
    status, _ = raw_post(rpc, "/xmlrpc/big/", body)
    assert status == 413


def test_patched_path() -> None:
    assert xmlrpcutil.patched_path("/RPC2/xmlrpc") == "/xmlrpc/"
    assert xmlrpcutil.patched_path("/xmlrpc/") == "/xmlrpc/"
    assert xmlrpcutil.patched_path("/RPC2") == "/"
