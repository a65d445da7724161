"""Package tutorial 5: page objects share a base class that draws the header and footer."""

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf

MARGIN = " " * 12
BLANK = " " * 8  # the blank lines of the reference's page keep this indentation


class Page:
    """A page with a ``title``: ``render`` wraps a body in the common header and footer."""

    title = "Untitled Page"
    body: tuple[str, ...] = ()  # the rows between header and footer, given by each page

    def header(self):
        """The top of the page, down to the title heading."""
        rows = ["<html>", "<head>", f"    <title>{self.title}</title>", "<head>", "<body>",
                f"<h2>{self.title}</h2>"]
        return "\n" + "".join(MARGIN + row + "\n" for row in rows) + BLANK + "\n"

    def footer(self):
        """The end of the page."""
        return BLANK + "\n" + MARGIN + "</body>\n" + MARGIN + "</html>\n" + BLANK

    def render(self, *body_rows):
        """Return the whole page around ``body_rows``."""
        middle = "".join(MARGIN + row + "\n" for row in body_rows)
        return self.header() + middle + self.footer()

    @cherrypy.expose
    def index(self):
        """Show the page: ``body``, which each subclass gives, inside the common frame."""
        return self.render(*self.body)


class AnotherPage(Page):
    """``/another/``: a second page with a title of its own."""

    title = "Another Page"
    body = ("<p>", "And this is the amazing second page!", "</p>")


class HomePage(Page):
    """``/``: the home page; ``/another/`` is the page object in its attribute."""

    title = "Tutorial 5"
    body = ("<p>", "Isn't this exciting? There's",
            '<a href="./another/">another page</a>, too!', "</p>")

    def __init__(self):
        self.another = AnotherPage()


if __name__ == "__main__":
    cherrypy.quickstart(HomePage(), config=tutconf)
