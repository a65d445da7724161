import services.web as cherrypy


class Root:
    @cherrypy.expose
    def index(self):
        return "Hello world!"


def test_hello(web):
    web.mount(Root())
    web.getPage("/")
    web.assertStatus("200 OK")
    web.assertHeader("Content-Type", "text/html;charset=utf-8")
    web.assertBody("Hello world!")
