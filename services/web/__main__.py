"""``python -m services.web``: the reference's ``python -m cherrypy`` (cherryd)."""

from services.web.daemon import run

run()
