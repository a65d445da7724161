"""Package tutorial 8: a handler may yield its body piece by piece."""

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf

USERS = ("Remi", "Carlos", "Hendrik", "Lorenzo Lamas")


class GeneratorDemo:
    """``/`` yields a header, one line per user and a footer."""

    def header(self):
        return "<html><body><h2>Generators rule!</h2>"

    def footer(self):
        return "</body></html>"

    @cherrypy.expose
    def index(self):
        """Yield the page in parts."""
        yield self.header()
        yield "<h3>List of users:</h3>"
        yield from (f"{user}<br/>" for user in USERS)
        yield self.footer()


if __name__ == "__main__":
    cherrypy.quickstart(GeneratorDemo(), config=tutconf)
