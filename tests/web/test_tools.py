"""Hooks and tools: hook points and their order, priorities, failsafe hooks, hooks in config,
Tool, HandlerTool, HandlerWrapperTool, ErrorTool, Toolboxes with their own namespaces, tools
as decorators and in config, and the built-in tools of part 1."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

import services.web as cherrypy
from services.web._cprequest import HookMap

calls: list[str] = []


def record(name: str) -> Any:
    def hook(**kwargs: Any) -> None:
        calls.append(name + (f"{sorted(kwargs.items())}" if kwargs else ""))

    return hook


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    calls.clear()


def test_hook_map_runs_by_priority_then_attachment_order() -> None:
    hooks = HookMap()
    hooks.attach("p", record("c50"))
    hooks.attach("p", record("a10"), priority=10)
    hooks.attach("p", record("d50"))
    hooks.attach("p", record("b10"), priority=10)
    hooks.attach("p", record("e90"), priority=90)
    hooks.run("p")
    assert calls == ["a10", "b10", "c50", "d50", "e90"]


def test_after_a_failing_hook_only_failsafe_hooks_run(caplog: Any) -> None:
    def fails() -> None:
        raise ValueError("hook failed")

    hooks = HookMap()
    hooks.attach("p", fails, priority=10)
    hooks.attach("p", record("skipped"))
    hooks.attach("p", record("failsafe"), failsafe=True)
    with caplog.at_level(logging.ERROR, logger="sitebus"), pytest.raises(ValueError):
        hooks.run("p")
    assert calls == ["failsafe"]
    assert "hook failed" in caplog.text


class HookRoot:
    @cherrypy.expose
    def index(self) -> str:
        calls.append("handler")
        return "ok"

    @cherrypy.expose
    def fail(self) -> str:
        calls.append("handler")
        raise ValueError("handler failed")


def ended() -> Any:
    """Return an on_end_request hook that records and sets an event (it runs after sending)."""
    done = threading.Event()

    def on_end_request() -> None:
        calls.append("on_end_request")
        done.set()

    on_end_request.done = done  # type: ignore[attr-defined]
    return on_end_request


def test_hook_points_run_in_the_reference_order(web: Any) -> None:
    points = ["on_start_resource", "before_request_body", "before_handler", "before_finalize",
              "on_end_resource", "before_error_response", "after_error_response"]
    conf: dict[str, Any] = {f"hooks.{point}": record(point) for point in points}
    end = conf["hooks.on_end_request"] = ended()
    web.mount(HookRoot(), "", {"/": conf})
    web.getPage("/")
    web.assertBody("ok")
    assert end.done.wait(10)
    assert calls == ["on_start_resource", "before_request_body", "before_handler", "handler",
                     "before_finalize", "on_end_resource", "on_end_request"]
    calls.clear()
    end.done.clear()
    web.getPage("/fail")
    web.assertStatus(500)
    assert end.done.wait(10)
    assert calls == ["on_start_resource", "before_request_body", "before_handler", "handler",
                     "on_end_resource", "before_error_response", "after_error_response",
                     "on_end_request"]


def test_request_hooks_attach_from_a_handler(web: Any) -> None:
    done = threading.Event()

    def end(flag: int) -> None:
        calls.append(f"end {flag}")
        done.set()

    class Root:
        @cherrypy.expose
        def index(self) -> str:
            cherrypy.request.hooks.attach("before_finalize", record("late"), priority=5)
            cherrypy.request.hooks.attach("on_end_request", end, flag=1)
            return "ok"

    web.mount(Root())
    web.getPage("/")
    assert done.wait(10)
    assert calls == ["late", "end 1"]


def test_tool_register_decorator_and_config(web: Any) -> None:
    @cherrypy.tools.register("before_finalize", priority=60)
    def secureheaders() -> None:
        headers = cherrypy.response.headers
        headers["X-Frame-Options"] = "DENY"
        headers["X-XSS-Protection"] = "1; mode=block"
        headers["Content-Security-Policy"] = "default-src='self'"

    try:
        class Root:
            @cherrypy.expose
            def index(self) -> str:
                return "secured"

            @cherrypy.expose
            def plain(self) -> str:
                return "plain"

        web.mount(Root(), "", {"/": {"tools.secureheaders.on": True},
                               "/plain": {"tools.secureheaders.on": False}})
        web.getPage("/")
        web.assertHeader("X-Frame-Options", "DENY")
        web.assertHeader("Content-Security-Policy", "default-src='self'")
        web.getPage("/plain")
        web.assertNoHeader("X-Frame-Options")
    finally:
        del cherrypy.tools.secureheaders


def test_tool_as_decorator_with_arguments(web: Any) -> None:
    cherrypy.tools.logit = cherrypy.Tool("before_finalize", record("logit"))
    try:
        class Root:
            @cherrypy.expose
            @cherrypy.tools.logit(level="high")
            def index(self) -> str:
                return "hello world"

        web.mount(Root())
        web.getPage("/")
        web.assertBody("hello world")
        assert calls == ["logit[('level', 'high')]"]
        assert Root.index._cp_config == {"tools.logit.on": True, "tools.logit.level": "high"}
    finally:
        del cherrypy.tools.logit


def test_tools_refuse_positional_arguments_and_direct_on() -> None:
    with pytest.raises(TypeError, match="settings go by keyword"):
        cherrypy.tools.encode("utf-8")
    with pytest.raises(AttributeError, match="has no 'on' attribute"):
        cherrypy.tools.encode.on = True
    with pytest.raises(AttributeError, match="has no 'on' attribute"):
        _ = cherrypy.tools.encode.on


def test_stateful_tool_attaches_more_hooks_in_setup(web: Any, caplog: Any) -> None:
    class TimingTool(cherrypy.Tool):
        def __init__(self) -> None:
            cherrypy.Tool.__init__(self, "before_handler", self.start_timer, priority=95)

        def _setup(self) -> None:
            cherrypy.Tool._setup(self)
            cherrypy.request.hooks.attach("before_finalize", self.end_timer, priority=5)

        def start_timer(self) -> None:
            cherrypy.request._time = time.time()

        def end_timer(self) -> None:
            duration = time.time() - cherrypy.request._time
            cherrypy.log(f"Page handler took {duration:.4f}")

    cherrypy.tools.timeit = TimingTool()
    try:
        class Root:
            @cherrypy.expose
            @cherrypy.tools.timeit()
            def index(self) -> str:
                return "hello world"

        web.mount(Root())
        with caplog.at_level(logging.INFO, logger="sitebus"):
            web.getPage("/")
        web.assertBody("hello world")
        assert "Page handler took " in caplog.text
    finally:
        del cherrypy.tools.timeit


def test_parameter_manipulation_tool(web: Any) -> None:
    class User:
        def __init__(self, name: str) -> None:
            self.name = name

    class UserManager(cherrypy.Tool):
        def __init__(self) -> None:
            cherrypy.Tool.__init__(self, "before_handler", self.load, priority=10)

        def load(self) -> None:
            req = cherrypy.request
            user_id = req.params.pop("user_id")
            req.params["user"] = User(f"user{int(user_id)}")

    cherrypy.tools.user = UserManager()
    try:
        class Root:
            @cherrypy.expose
            @cherrypy.tools.user()
            def index(self, user: User) -> str:
                return f"hello {user.name}"

        web.mount(Root())
        web.getPage("/?user_id=42")
        web.assertBody("hello user42")
    finally:
        del cherrypy.tools.user


def test_a_custom_toolbox_answers_to_its_namespace(web: Any) -> None:
    newauthtools = cherrypy._cptools.Toolbox("newauth")

    @newauthtools.register("before_request_body")
    def check_access(default: bool = False) -> None:
        if not getattr(cherrypy.request, "userid", default):
            raise cherrypy.HTTPError(401)

    class Root:
        @cherrypy.expose
        def default(self, *args: str) -> str:
            return "Hello"

    conf = {"/demo": {"newauth.check_access.on": True, "newauth.check_access.default": True},
            "/locked": {"newauth.check_access.on": True}}
    app = cherrypy.tree.mount(Root(), config=conf)
    app.toolboxes["newauth"] = newauthtools
    web.start()
    web.getPage("/demo")
    web.assertBody("Hello")
    web.getPage("/locked")
    web.assertStatus(401)
    web.getPage("/other")
    web.assertBody("Hello")


def test_a_toolbox_registered_on_the_request_class(web: Any) -> None:
    box = cherrypy.Toolbox("box")
    box.mark = cherrypy.Tool("before_finalize", record("mark"))

    class Root:
        @cherrypy.expose
        @box.mark(n=1)
        def index(self) -> str:
            return "ok"

    app = web.mount(Root())
    app.request_class.namespaces["box"] = box
    try:
        web.getPage("/")
        assert calls == ["mark[('n', 1)]"]
    finally:
        del app.request_class.namespaces["box"]


def test_tool_priority_from_config(web: Any) -> None:
    cherrypy.tools.first = cherrypy.Tool("before_finalize", record("first"), priority=10)
    cherrypy.tools.second = cherrypy.Tool("before_finalize", record("second"), priority=20)
    try:
        web.mount(HookRoot(), "", {"/": {"tools.first.on": True, "tools.second.on": True,
                                         "tools.second.priority": 5}})
        web.getPage("/")
        assert calls == ["handler", "second", "first"]
    finally:
        del cherrypy.tools.first
        del cherrypy.tools.second


def test_handler_tool(web: Any) -> None:
    def answer(flag: str = "") -> bool:
        if flag:
            cherrypy.response.body = [f"answered by the tool ({flag})".encode()]
            return True
        return False

    cherrypy.tools.answer = cherrypy.HandlerTool(answer)
    try:
        class Root:
            @cherrypy.expose
            @cherrypy.tools.answer(flag="on")
            def index(self) -> str:
                return "the handler"

            @cherrypy.expose
            def plain(self) -> str:
                return "the handler"

            nav = cherrypy.tools.answer.handler(flag="as a handler")
            missing = cherrypy.tools.answer.handler()

        web.mount(Root())
        web.getPage("/plain")
        web.assertBody("the handler")
        web.getPage("/")
        web.assertBody("answered by the tool (on)")
        web.getPage("/nav")
        web.assertBody("answered by the tool (as a handler)")
        web.getPage("/missing")
        web.assertStatus(404)
    finally:
        del cherrypy.tools.answer


def test_handler_wrapper_tool(web: Any) -> None:
    def shout(next_handler: Any, *args: Any, **kwargs: Any) -> str:
        return next_handler(*args, **kwargs).upper()

    cherrypy.tools.shout = cherrypy.HandlerWrapperTool(shout)
    try:
        class Root:
            @cherrypy.expose
            @cherrypy.tools.shout()
            def index(self, name: str = "world") -> str:
                return f"hello {name}"

        web.mount(Root())
        web.getPage("/?name=you")
        web.assertBody("HELLO YOU")
    finally:
        del cherrypy.tools.shout


def test_error_tool_becomes_the_error_response(web: Any) -> None:
    web.mount(HookRoot(), "", {"/": {"tools.err_redirect.on": True,
                                     "tools.err_redirect.url": "/",
                                     "tools.err_redirect.internal": True}})
    web.getPage("/fail")
    web.assertStatus(200)
    web.assertBody("ok")


# -- built-in tools of part 1 -------------------------------------------------------------


class Text:
    @cherrypy.expose
    def index(self) -> str:
        return "h\u00e9llo \u20ac"

    @cherrypy.expose
    @cherrypy.tools.accept(media=["text/html", "text/plain"])
    def select(self) -> str:
        if cherrypy.tools.accept.callable(media=["text/html", "text/plain"]) == "text/plain":
            return "PAGE TITLE"
        return "<h2>Page Title</h2>"

    @cherrypy.expose
    @cherrypy.tools.allow(methods=["POST"])
    def post_only(self) -> str:
        return "posted"

    @cherrypy.expose
    @cherrypy.tools.params()
    def typed(self, limit: int) -> str:
        return repr(limit)


@pytest.fixture
def text(web: Any) -> Any:
    web.mount(Text())
    return web


@pytest.mark.parametrize(
    "accept_charset, status, content_type, body",
    [
        (None, 200, "text/html;charset=utf-8", "h\u00e9llo \u20ac".encode()),
        ("utf-16", 200, "text/html;charset=utf-16", "h\u00e9llo \u20ac".encode("utf-16")),
        ("iso-8859-1;q=1, utf-8;q=0.5", 200, "text/html;charset=utf-8",
         "h\u00e9llo \u20ac".encode()),  # latin-1 cannot encode the euro sign
        ("iso-8859-1", 406, None, None),
    ],
)
def test_encode_tool_picks_an_acceptable_charset(text: Any, accept_charset: str | None,
                                                 status: int, content_type: str | None,
                                                 body: bytes | None) -> None:
    headers = [("Accept-Charset", accept_charset)] if accept_charset else []
    text.getPage("/", headers=headers)
    text.assertStatus(status)
    if content_type:
        text.assertHeader("Content-Type", content_type)
        text.assertBody(body)
    else:
        text.assertInBody("We tried these charsets: iso-8859-1")


def test_encode_tool_with_a_forced_encoding(web: Any) -> None:
    web.mount(Text(), "", {"/": {"tools.encode.encoding": "iso-8859-15"}})
    web.getPage("/")
    web.assertHeader("Content-Type", "text/html;charset=iso-8859-15")
    web.assertBody("h\u00e9llo \u20ac".encode("iso-8859-15"))


@pytest.mark.parametrize(
    "accept, status, body",
    [
        ("text/html", 200, "<h2>Page Title</h2>"),
        ("text/plain", 200, "PAGE TITLE"),
        ("text/plain, text/*;q=0.5", 200, "PAGE TITLE"),
        ("text/*", 200, "<h2>Page Title</h2>"),
        ("*/*", 200, "<h2>Page Title</h2>"),
        ("application/xml", 406, None),
    ],
)
def test_accept_tool(text: Any, accept: str, status: int, body: str | None) -> None:
    text.getPage("/select", headers=[("Accept", accept)])
    text.assertStatus(status)
    if body:
        text.assertBody(body)
    else:
        text.assertErrorPage(406, "Your client sent this Accept header: application/xml. But "
                                  "this resource only emits these media types: text/html, "
                                  "text/plain.")


def test_allow_tool(text: Any) -> None:
    text.getPage("/post_only", method="POST", body="")
    text.assertBody("posted")
    text.getPage("/post_only")
    text.assertStatus(405)
    text.assertHeader("Allow", "POST")


def test_params_tool_converts_by_annotation(text: Any) -> None:
    text.getPage("/typed?limit=10")
    text.assertBody("10")
    text.getPage("/typed?limit=ten")
    text.assertStatus(400)


def test_log_tracebacks_and_headers_on_errors(web: Any, caplog: Any) -> None:
    web.mount(HookRoot(), "", {"/": {"tools.log_headers.on": True}})
    with caplog.at_level(logging.INFO, logger="sitebus"):
        web.getPage("/fail", headers=[("X-Trace-Me", "yes")])
    web.assertStatus(500)
    assert "ValueError: handler failed" in caplog.text
    assert "X-Trace-Me: yes" in caplog.text
    caplog.clear()
    web.mount(HookRoot(), "/quiet", {"/": {"tools.log_tracebacks.on": False}})
    with caplog.at_level(logging.INFO, logger="sitebus"):
        web.getPage("/quiet/fail")
    assert "handler failed" not in caplog.text


def test_response_headers_tool_in_config(web: Any) -> None:
    web.mount(HookRoot(), "", {"/": {"tools.response_headers.on": True,
                                     "tools.response_headers.headers": [
                                         ("Content-Type", "text/plain")]}})
    web.getPage("/")
    web.assertHeader("Content-Type", "text/plain;charset=utf-8")


def test_redirect_tool(web: Any) -> None:
    web.mount(HookRoot(), "", {"/old": {"tools.redirect.on": True,
                                        "tools.redirect.url": "/",
                                        "tools.redirect.internal": False}})
    web.getPage("/old")
    web.assertStatus(303)
    web.assertHeader("Location", f"{web.base()}/")


# The built-in tools' kinds, hook points and priorities (the facts configs and custom tools
# are written against): name -> (kind, hook point, priority, callable's module.name).
BUILT_IN_TOOLS = {
    "accept": ("Tool", "on_start_resource", 50, "cptools.accept"),
    "allow": ("Tool", "on_start_resource", 50, "cptools.allow"),
    "auth_basic": ("Tool", "before_request_body", 1, "auth_basic.basic_auth"),
    "auth_digest": ("Tool", "before_request_body", 1, "auth_digest.digest_auth"),
    "autovary": ("Tool", "on_start_resource", 0, "cptools.autovary"),
    "basic_auth": ("Tool", "on_start_resource", 50, "auth.basic_auth"),
    "caching": ("CachingTool", "before_handler", 20, "caching.get"),
    "cpstats": ("StatsTool", "on_end_request", 50, "cpstats.StatsTool.record_stop"),
    "decode": ("Tool", "before_request_body", 50, "encoding.decode"),
    "digest_auth": ("Tool", "on_start_resource", 50, "auth.digest_auth"),
    "encode": ("Tool", "before_handler", 70, "encoding.ResponseEncoder"),
    "err_redirect": ("ErrorTool", None, 50, "cptools.redirect"),
    "etags": ("Tool", "before_finalize", 75, "cptools.validate_etags"),
    "expires": ("Tool", "before_finalize", 50, "caching.expires"),
    "flatten": ("Tool", "before_finalize", 50, "cptools.flatten"),
    "gzip": ("Tool", "before_finalize", 80, "encoding.gzip"),
    "ignore_headers": ("Tool", "before_request_body", 50, "cptools.ignore_headers"),
    "json_in": ("Tool", "before_request_body", 30, "jsontools.json_in"),
    "json_out": ("Tool", "before_handler", 30, "jsontools.json_out"),
    "log_headers": ("Tool", "before_error_response", 50, "cptools.log_request_headers"),
    "log_hooks": ("Tool", "on_end_request", 100, "cptools.log_hooks"),
    "log_tracebacks": ("Tool", "before_error_response", 50, "cptools.log_traceback"),
    "params": ("Tool", "before_handler", 15, "cptools.convert_params"),
    "proxy": ("Tool", "before_request_body", 30, "cptools.proxy"),
    "redirect": ("Tool", "on_start_resource", 50, "cptools.redirect"),
    "referer": ("Tool", "before_request_body", 50, "cptools.referer"),
    "response_headers": ("Tool", "on_start_resource", 50, "cptools.response_headers"),
    "session_auth": ("SessionAuthTool", "before_handler", 50, "sessionauth.session_auth"),
    "sessions": ("SessionTool", "before_request_body", 50, "sessions.init"),
    "staticdir": ("HandlerTool", "before_handler", 50, "static.staticdir"),
    "staticfile": ("HandlerTool", "before_handler", 50, "static.staticfile"),
    "trailing_slash": ("Tool", "before_handler", 60, "cptools.trailing_slash"),
    "xmlrpc": ("ErrorTool", None, 50, "xmlrpcutil.on_error"),
}


def test_the_built_in_tools_keep_their_hook_points_and_priorities() -> None:
    found = {}
    for name, tool in vars(cherrypy.tools).items():
        if isinstance(tool, cherrypy.Tool):
            module = tool.callable.__module__.rsplit(".", 1)[1]
            found[name] = (type(tool).__name__, tool._point, tool._priority,
                           f"{module}.{tool.callable.__qualname__}")
            assert tool._name == name and tool.namespace == "tools"
    assert found == BUILT_IN_TOOLS
