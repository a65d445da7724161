"""Package tutorial 3: form fields (GET or POST alike) arrive as keyword arguments."""

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf

FORM = """
<form action="greetUser" method="GET">
    Your name:
    <input type="text" name="name" />
    <input type="submit" />
</form>"""

BACK = ' <a href="./">here</a>.'


class WelcomePage:
    """A form at ``/`` that sends a name to ``/greetUser``."""

    @cherrypy.expose
    def greetUser(self, name=None):  # noqa: N802 - the tutorial's URL
        """Greet the name given; ask again when it is missing or empty."""
        if name:
            return f"Hey {name}, what's up?"
        if name is None:
            return "Please enter your name" + BACK
        return "No, really, enter your name" + BACK

    @cherrypy.expose
    def index(self):
        """Show the form."""
        return FORM


if __name__ == "__main__":
    cherrypy.quickstart(WelcomePage(), config=tutconf)
