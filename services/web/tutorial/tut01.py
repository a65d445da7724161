"""Tutorial 1: a basic web application.

The most basic application: an exposed ``index`` answers http://127.0.0.1:8080/.
"""

import services.web as cherrypy


class HelloWorld:
    @cherrypy.expose
    def index(self):
        return "Hello world!"


if __name__ == '__main__':
    cherrypy.quickstart(HelloWorld())
