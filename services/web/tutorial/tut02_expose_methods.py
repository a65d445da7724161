"""Package tutorial 2: every exposed method is a page; ``index`` links to another one."""

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf


class HelloWorld:
    """``/`` links to ``/show_msg``, which answers the greeting."""

    message = "Hello world!"

    @cherrypy.expose
    def index(self):
        """Answer ``/`` with a link."""
        return 'There is <a href="show_msg">a message</a> waiting for you.'

    @cherrypy.expose
    def show_msg(self):
        """Answer ``/show_msg``: an exposed method is a page of its own."""
        return self.message


if __name__ == "__main__":
    cherrypy.quickstart(HelloWorld(), config=tutconf)
