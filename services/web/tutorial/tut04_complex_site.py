"""Package tutorial 4: a site of several objects, each a branch of the URL tree."""

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf

INDENT = " " * 12


def _lines(*lines):
    """Join the lines, each on its own indented line, blank lines kept empty."""
    return "".join("\n" + (INDENT + line if line else "") for line in lines)


class ExtraLinksPage:
    """``/links/extra/``: two more links and a way back."""

    @cherrypy.expose
    def index(self):
        """List the extra links."""
        items = [("http://del.icio.us", "del.icio.us"), ("http://www.cherrypy.dev", "CherryPy")]
        return _lines(
            "<p>Here are some extra useful links:</p>", "", "<ul>",
            *[f'    <li><a href="{url}">{label}</a></li>' for url, label in items],
            "</ul>", "", '<p>[<a href="../">Return to links page</a>]</p>')


class LinksPage:
    """``/links/``: a few links, and ``extra`` below."""

    def __init__(self):
        self.extra = ExtraLinksPage()

    @cherrypy.expose
    def index(self):
        """List the links."""
        return _lines("<p>Here are some useful links:</p>", "", "<ul>",
                      '    <li><a href="http://www.cherrypy.dev">The CherryPy site</a></li>',
                      '    <li><a href="http://www.python.org">The Python site</a></li>',
                      "</ul>", "", '<p>You can check out some extra useful',
                      'links <a href="./extra/">here</a>.</p>', "",
                      '<p>[<a href="../">Return</a>]</p>')


class JokePage:
    """``/joke/``: a very short joke."""

    @cherrypy.expose
    def index(self):
        """Tell it."""
        return _lines('<p>"In Python, how do you create a string of random',
                      'characters?" -- "Read a Perl file!"</p>',
                      '<p>[<a href="../">Return</a>]</p>')


class HomePage:
    """``/``: the start page, linking to the branches."""

    def __init__(self):
        self.joke = JokePage()
        self.links = LinksPage()

    @cherrypy.expose
    def index(self):
        """Welcome and link."""
        return _lines("<p>Hi, this is the home page! Check out the other",
                      'fun stuff on this site:</p>', "", "<ul>",
                      '    <li><a href="/joke/">A silly joke</a></li>',
                      '    <li><a href="/links/">Useful links</a></li>', "</ul>")


root = HomePage()

if __name__ == "__main__":
    cherrypy.quickstart(root, config=tutconf)
