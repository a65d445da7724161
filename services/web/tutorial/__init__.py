"""The reference's tutorials as runnable modules: ``python -m services.web.tutorial.tut01``.

Each is the reference's code with only the import line changed
(``import services.web as cherrypy``); each serves on http://127.0.0.1:8080/ unless the site
config says otherwise (``server.socket_port``). tut01-tut04 and tut07 follow tutorials 1-4
and 7; tut11 puts the three ways of organizing code of tutorial 11 (a dispatcher, a tool and
a plugin) into one small application.
"""
