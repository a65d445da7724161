"""Dispatch: the object tree, index/default, parameters, _cp_dispatch, popargs, config along
the path, trailing slashes, mismatched parameters; MethodDispatcher, RoutesDispatcher,
VirtualHost and a custom dispatcher."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import services.web as cherrypy
from services.web._cpdispatch import Dispatcher, mismatch_error


class Users:
    @cherrypy.expose
    def index(self) -> str:
        return "users index"

    @cherrypy.expose
    def default(self, user: str, *rest: str) -> str:
        return f"user {user} {list(rest)}"


class Dir:
    _cp_config = {"response.headers.X-Node": "dir"}

    @cherrypy.expose
    def index(self) -> str:
        return "dir index"

    @cherrypy.expose
    def page(self) -> str:
        return "dir page " + cherrypy.request.config.get("response.headers.X-Node", "")

    @cherrypy.expose
    @cherrypy.config(**{"response.headers.X-Node": "page2", "demo.key": 2})
    def page2(self) -> str:
        return f"{cherrypy.request.config['demo.key']}"


class Root:
    users = Users()
    dir = Dir()

    @cherrypy.expose
    def index(self) -> str:
        return "root index"

    @cherrypy.expose(["generer", "generar"])
    def generate(self, length: str = "8") -> str:
        return "x" * int(length)

    @cherrypy.expose
    def keywords(self, a: str, b: str = "B", **extra: str) -> str:
        return f"a={a} b={b} extra={sorted(extra.items())}"

    @cherrypy.expose
    def positional(self, first: str, second: str = "none") -> str:
        return f"{first}/{second}"

    @cherrypy.expose
    def kwonly(self, *, flag: str = "off") -> str:
        return f"flag={flag}"

    @cherrypy.expose
    def some_page(self) -> str:
        return "some_page"

    @cherrypy.expose
    def multi(self, x: Any) -> str:
        return repr(x)

    def hidden(self) -> str:
        return "never"

    @cherrypy.expose
    def raises_type_error(self) -> str:
        raise TypeError("from inside the handler")


@pytest.fixture
def root(web: Any) -> Any:
    web.mount(Root(), "", {"/": {"demo.key": 1}, "/dir/page": {"response.headers.X-Node": "sect"}})
    return web


@pytest.mark.parametrize(
    "path, status, body",
    [
        ("/", 200, "root index"),
        ("/generate?length=3", 200, "xxx"),
        ("/generer?length=2", 200, "xx"),
        ("/generar", 200, "xxxxxxxx"),
        ("/users/", 200, "users index"),
        ("/users/bob", 200, "user bob []"),
        ("/users/bob/x/y", 200, "user bob ['x', 'y']"),
        ("/dir/", 200, "dir index"),
        ("/dir/page", 200, "dir page sect"),
        ("/dir/page2", 200, "2"),
        ("/keywords?a=1&c=3", 200, "a=1 b=B extra=[('c', '3')]"),
        ("/positional/one", 200, "one/none"),
        ("/positional/one/two", 200, "one/two"),
        ("/kwonly?flag=on", 200, "flag=on"),
        ("/some-page", 200, "some_page"),
        ("/some.page", 200, "some_page"),
        ("/multi?x=1&x=2", 200, "['1', '2']"),
        ("/hidden", 404, None),
        ("/nothing/here", 404, None),
    ],
)
def test_object_dispatch(root: Any, path: str, status: int, body: str | None) -> None:
    root.getPage(path)
    root.assertStatus(status)
    if body is not None:
        root.assertBody(body)


def test_config_merges_along_the_path(root: Any) -> None:
    root.getPage("/dir/page")
    root.assertHeader("X-Node", "sect")  # the section wins over the class's _cp_config
    root.getPage("/dir/")
    root.assertHeader("X-Node", "dir")
    root.getPage("/dir/page2")
    root.assertHeader("X-Node", "page2")  # the handler's _cp_config wins over its class's
    root.getPage("/")
    root.assertNoHeader("X-Node")


def test_trailing_slash_redirects(root: Any) -> None:
    root.getPage("/dir")
    root.assertStatus(301)
    root.assertHeader("Location", f"{root.base()}/dir/")
    root.getPage("/users?x=1")
    root.assertStatus(301)
    root.assertHeader("Location", f"{root.base()}/users/?x=1")
    root.getPage("/generate/")  # an extra slash is kept by default
    root.assertStatus(200)


def test_trailing_slash_extra_redirects_when_asked(web: Any) -> None:
    web.mount(Root(), "", {"/": {"tools.trailing_slash.extra": True}})
    web.getPage("/generate/?length=1")
    web.assertStatus(301)
    web.assertHeader("Location", f"{web.base()}/generate?length=1")
    web.getPage("/")
    web.assertStatus(200)


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("/positional", 404, "Missing parameters: first"),
        ("/positional/a/b/c", 404, None),
        ("/keywords", 404, "Missing parameters: a"),
        ("/generate?lenght=1", 404, "Unexpected query string parameters: lenght"),
        ("/positional/a?first=b", 404, "Multiple values for parameters: first"),
    ],
)
def test_mismatched_parameters(root: Any, path: str, status: int, message: str | None) -> None:
    root.getPage(path)
    root.assertStatus(status)
    if message:
        root.assertInBody(message)


def test_mismatched_body_parameters_are_400(root: Any) -> None:
    root.getPage("/generate", method="POST", body="lenght=1")
    root.assertStatus(400)
    root.assertInBody("Unexpected body parameters: lenght")
    root.getPage("/positional/a", method="POST", body="first=b")
    root.assertStatus(400)
    root.assertInBody("Multiple values for parameters: first")


def test_mismatch_messages_are_hidden_unless_asked(root: Any) -> None:
    cherrypy.config.update({"request.show_mismatched_params": False})
    root.getPage("/keywords")
    root.assertStatus(404)
    root.assertNotInBody("Missing parameters")


def test_a_type_error_inside_the_handler_is_not_swallowed(root: Any) -> None:
    root.getPage("/raises_type_error")
    root.assertStatus(500)
    root.assertInBody("from inside the handler")


def _sig(func: Any) -> inspect.Signature:
    return inspect.signature(func)


def f_pos(a, b=1): ...  # noqa: E704, ANN001, ANN201
def f_var(a, *args, **kwargs): ...  # noqa: E704, ANN001, ANN002, ANN003, ANN201
def f_kw(*, a): ...  # noqa: E704, ANN001, ANN201


@pytest.mark.parametrize(
    "func, args, kwargs, body, expected",
    [
        (f_pos, ("x",), {}, set(), None),
        (f_pos, (), {"a": "1"}, set(), None),
        (f_pos, (), {}, set(), (404, "Missing parameters: a")),
        (f_pos, ("x", "y", "z"), {}, set(), (404, None)),
        (f_pos, ("x",), {"a": "1"}, set(), (404, "Multiple values for parameters: a")),
        (f_pos, ("x",), {"a": "1"}, {"a"}, (400, "Multiple values for parameters: a")),
        (f_pos, ("x",), {"c": "1"}, set(), (404, "Unexpected query string parameters: c")),
        (f_pos, ("x",), {"c": "1"}, {"c"}, (400, "Unexpected body parameters: c")),
        (f_var, ("x", "y"), {"c": "1"}, set(), None),
        (f_kw, (), {"a": "1"}, set(), None),
        (f_kw, ("x",), {"a": "1"}, set(), (404, None)),
        (f_kw, (), {}, set(), (404, "Missing parameters: a")),
    ],
)
def test_mismatch_error_decisions(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                                  body: set[str], expected: tuple[int, str | None] | None
                                  ) -> None:
    error = mismatch_error(_sig(func), args, kwargs, body, show=True)
    if expected is None:
        assert error is None
    else:
        assert error is not None
        assert (error.code, error._message if expected[1] else None) == expected


# -- _cp_dispatch and popargs ---------------------------------------------------------------


class Album:
    @cherrypy.expose
    def index(self, artist: str, title: str) -> str:
        return f"About {title} by {artist}..."


class Band:
    def __init__(self) -> None:
        self.albums = Album()

    def _cp_dispatch(self, vpath: list[str]) -> Any:
        if len(vpath) == 1:
            cherrypy.request.params["name"] = vpath.pop()
            return self
        if len(vpath) == 3:
            cherrypy.request.params["artist"] = vpath.pop(0)
            vpath.pop(0)
            cherrypy.request.params["title"] = vpath.pop(0)
            return self.albums
        return vpath

    @cherrypy.expose
    def index(self, name: str) -> str:
        return f"About {name}..."


def test_cp_dispatch_rewrites_the_path(web: Any) -> None:
    web.mount(Band())
    web.getPage("/nirvana/")
    web.assertBody("About nirvana...")
    web.getPage("/nirvana/albums/nevermind/")
    web.assertBody("About nevermind by nirvana...")


@cherrypy.popargs("track_num", "track_title")
class Track:
    @cherrypy.expose
    def index(self, band_name: str, album_title: str, track_num: str, track_title: str) -> str:
        return f"{band_name}/{album_title}/{track_num}/{track_title}"


@cherrypy.popargs("album_title")
class PopAlbum:
    def __init__(self) -> None:
        self.tracks = Track()

    @cherrypy.expose
    def index(self, band_name: str, album_title: str) -> str:
        return f"About {album_title} by {band_name}..."


@cherrypy.popargs("band_name")
class PopBand:
    def __init__(self) -> None:
        self.albums = PopAlbum()

    @cherrypy.expose
    def index(self, band_name: str) -> str:
        return f"About {band_name}..."

    @cherrypy.expose
    def create(self) -> str:
        return "create"


def test_popargs_names_segments_for_every_nested_handler(web: Any) -> None:
    web.mount(PopBand())
    web.getPage("/nirvana/")
    web.assertBody("About nirvana...")
    web.getPage("/nirvana/albums/nevermind/")
    web.assertBody("About nevermind by nirvana...")
    web.getPage("/nirvana/albums/nevermind/tracks/06/polly")
    web.assertStatus(301)  # an index: trailing_slash adds the slash
    web.getPage("/nirvana/albums/nevermind/tracks/06/polly/")
    web.assertBody("nirvana/nevermind/06/polly")
    web.getPage("/create")  # exposed attributes win over popped arguments
    web.assertBody("create")


def test_popargs_with_a_handler(web: Any) -> None:
    class Day:
        @cherrypy.expose
        def index(self, year: str, day: str) -> str:
            return f"day {year}-{day}"

    class Root:
        _cp_dispatch = cherrypy.popargs("year", handler=None)
        day = Day()

        @cherrypy.expose
        def index(self, year: str = "none") -> str:
            return f"year {year}"

    class Called:
        _cp_dispatch = cherrypy.popargs("year", handler=lambda year: Day() if year else None)

    web.mount(Root())
    web.getPage("/2009/")
    web.assertBody("year 2009")
    web.getPage("/")
    web.assertBody("year none")


# -- other dispatchers ------------------------------------------------------------------------


@cherrypy.expose
class Resource:
    def __init__(self) -> None:
        self.value = "initial"

    def GET(self) -> str:
        return self.value

    def POST(self, value: str) -> str:
        self.value = value
        return "stored"

    @cherrypy.tools.response_headers(headers=[("X-Put", "yes")])
    def PUT(self, value: str) -> str:
        self.value = value
        return "put"


def test_method_dispatcher(web: Any) -> None:
    web.mount(Resource(), "/api", {"/": {"request.dispatch": cherrypy.dispatch.MethodDispatcher()}})
    web.getPage("/api/")
    web.assertBody("initial")
    web.assertHeader("Allow", "GET, HEAD, POST, PUT")
    web.getPage("/api/", method="POST", body="value=new")
    web.assertBody("stored")
    web.getPage("/api/", method="PUT", body="value=newer")
    web.assertBody("put")
    web.assertHeader("X-Put", "yes")  # the verb's _cp_config applies
    web.getPage("/api/", method="HEAD")
    web.assertStatus(200)
    web.assertBody("")
    web.getPage("/api/", method="DELETE")
    web.assertStatus(405)
    web.assertHeader("Allow", "GET, HEAD, POST, PUT")


def test_custom_dispatcher_subclass(web: Any) -> None:
    class ForceLowerDispatcher(Dispatcher):
        def __call__(self, path_info: str) -> None:
            return Dispatcher.__call__(self, path_info.lower())

    web.mount(Root(), "", {"/": {"request.dispatch": ForceLowerDispatcher()}})
    web.getPage("/GENerAte?length=2")
    web.assertBody("xx")


def test_custom_dispatcher_per_path(web: Any) -> None:
    def dispatch(path_info: str) -> None:
        request = cherrypy.serving.request
        request.handler = lambda: f"custom {path_info}"
        request.config = {"tools.encode.on": True}

    web.mount(Root(), "", {"/special": {"request.dispatch": dispatch}})
    web.getPage("/special/thing")
    web.assertBody("custom /special/thing")
    web.getPage("/generate?length=1")
    web.assertBody("x")


def test_virtual_host(web: Any) -> None:
    class Domain2:
        @cherrypy.expose
        def index(self) -> str:
            return "domain2 index"

        @cherrypy.expose
        def page(self) -> str:
            return "domain2 page"

    class VRoot:
        domain2 = Domain2()

        @cherrypy.expose
        def index(self) -> str:
            return "main index"

    dispatch = cherrypy.dispatch.VirtualHost(**{"www.domain2.example": "/domain2"})
    web.mount(VRoot(), "", {"/": {"request.dispatch": dispatch}})
    web.getPage("/")
    web.assertBody("main index")
    web.getPage("/", headers=[("Host", "www.domain2.example")])
    web.assertBody("domain2 index")
    web.getPage("/page", headers=[("Host", "www.domain2.example")])
    web.assertBody("domain2 page")
    web.getPage("/page", headers=[("X-Forwarded-Host", "www.domain2.example")])
    web.assertBody("domain2 page")


def test_routes_dispatcher(web: Any) -> None:
    pytest.importorskip("routes")

    class Dummy:
        _cp_config = {"response.headers.X-Controller": "dummy"}

        @cherrypy.expose
        def index(self) -> str:
            return "I said good day!"

    class City:
        def __init__(self, name: str) -> None:
            self.name = name
            self.population = 10000

        @cherrypy.config(**{"tools.response_headers.on": True,
                            "tools.response_headers.headers": [("Content-Language", "en-GB")]})
        def index(self, **kwargs: str) -> str:
            return f"Welcome to {self.name}, pop. {self.population}"

        def update(self, **kwargs: str) -> str:
            self.population = int(kwargs["pop"])
            return f"OK, {self.name} has a population of {self.population}"

    d = cherrypy.dispatch.RoutesDispatcher()
    d.connect(action="index", name="hounslow", route="/hounslow", controller=City("Hounslow"))
    d.connect(name="surbiton", route="/surbiton", controller=City("Surbiton"), action="index",
              conditions={"method": ["GET"]})
    d.mapper.connect("/surbiton", controller="surbiton", action="update",
                     conditions={"method": ["POST"]})
    d.connect("main", "/:action", controller=Dummy())
    web.mount(None, "", {"/": {"request.dispatch": d}})

    web.getPage("/hounslow")
    web.assertStatus(200)
    web.assertBody("Welcome to Hounslow, pop. 10000")
    web.assertHeader("Content-Language", "en-GB")
    web.getPage("/foo")
    web.assertStatus(404)
    web.getPage("/surbiton")
    web.assertBody("Welcome to Surbiton, pop. 10000")
    web.getPage("/surbiton", method="POST", body="pop=1327")
    web.assertBody("OK, Surbiton has a population of 1327")
    web.getPage("/index")
    web.assertBody("I said good day!")
    web.assertHeader("X-Controller", "dummy")


def test_expose_keeps_the_function_and_adds_aliases() -> None:
    class C:
        @cherrypy.expose("alias")
        def f(self) -> str:
            return "f"

        @cherrypy.expose()
        def g(self) -> str:
            return "g"

    assert C.f is C.alias
    assert C.f.exposed and C.g.exposed
    assert C().alias() == "f"
