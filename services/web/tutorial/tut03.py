"""Tutorial 3: my URLs have parameters.

Query-string keys become keyword arguments: ``/generate?length=16``; Python's default makes
``/generate`` work too. Values arrive as strings.
"""

import random
import string

import services.web as cherrypy


class StringGenerator:
    @cherrypy.expose
    def index(self):
        return "Hello world!"

    @cherrypy.expose
    def generate(self, length=8):
        return ''.join(random.sample(string.hexdigits, int(length)))


if __name__ == '__main__':
    cherrypy.quickstart(StringGenerator())
