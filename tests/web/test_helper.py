"""The reference's testing style: a CPWebCase with setup_server, as the docs show it."""

from __future__ import annotations

import services.web as cherrypy
from services.web.test import helper


class SimpleCPTest(helper.CPWebCase):
    @staticmethod
    def setup_server() -> None:
        class Root:
            @cherrypy.expose
            def echo(self, message: str) -> str:
                return message

        cherrypy.tree.mount(Root())

    def test_message_should_be_returned_as_is(self) -> None:
        self.getPage("/echo?message=Hello%20world")
        self.assertStatus("200 OK")
        self.assertHeader("Content-Type", "text/html;charset=utf-8")
        self.assertBody("Hello world")

    def test_non_utf8_message_will_fail(self) -> None:
        """A query string not in UTF-8 is treated as another URL: 404."""
        self.getPage("/echo?message=A+bient%F4t",
                     headers=[("Accept-Charset", "ISO-8859-1,utf-8"),
                              ("Content-Type", "text/html;charset=ISO-8859-1")])
        self.assertStatus("404 Not Found")

    def test_persistent_connections(self) -> None:
        self.set_persistent(True)
        for word in ("one", "two", "three"):
            self.getPage(f"/echo?message={word}")
            self.assertBody(word)

    def test_assertion_failures_describe_the_response(self) -> None:
        self.getPage("/echo?message=x")
        try:
            self.assertBody("y")
        except AssertionError as error:
            assert "for /echo?message=x: 200 OK" in str(error)
        else:
            raise AssertionError("assertBody should have failed")


class ScriptNameTest(helper.CPWebCase):
    script_name = "/mounted"

    @staticmethod
    def setup_server() -> None:
        class Root:
            @cherrypy.expose
            def index(self) -> str:
                return cherrypy.request.script_name

        cherrypy.tree.mount(Root(), "/mounted")

    def test_pages_are_below_the_script_name(self) -> None:
        self.getPage("/")
        self.assertBody("/mounted")


def test_the_tree_is_restored_after_a_case() -> None:
    assert "/mounted" not in cherrypy.tree.apps
