"""Tutorial 2: different URLs lead to different functions.

``index`` handles ``/`` and ``generate`` handles ``/generate``, which answers a random string.
"""

import random
import string

import services.web as cherrypy


class StringGenerator:
    @cherrypy.expose
    def index(self):
        return "Hello world!"

    @cherrypy.expose
    def generate(self):
        return ''.join(random.sample(string.hexdigits, 8))


if __name__ == '__main__':
    cherrypy.quickstart(StringGenerator())
