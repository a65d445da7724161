"""The reference's tutorials as runnable modules: ``python -m services.web.tutorial.tut01``.

Each is the reference's code with only the import line changed
(``import services.web as cherrypy``); each serves on http://127.0.0.1:8080/ unless the site
config says otherwise (``server.socket_port``). tut01-tut10 follow tutorials 1-10 (tut06,
tut08 and tut10 serve their pages and static files from this package: ``tut08.html``,
``tut10.html`` and ``public/``, whatever the current directory; tut09 and tut10 keep their
SQLite database, ``my.db``, in the current directory); tut11 puts the three ways of
organizing code of tutorial 11 (a dispatcher, a tool and a plugin) into one small
application.

The package tutorials of the reference are here too, under its module names:
``tut01_helloworld``, ``tut02_expose_methods``, ``tut03_get_and_post``, ``tut04_complex_site``,
``tut05_derived_objects``, ``tut06_default_method``, ``tut07_sessions``,
``tut08_generators_and_yield``, ``tut09_files`` and ``tut10_http_errors``, each with the
reference's root class and ``tutconf`` (this package's ``tutorial.conf``). tut09's
``pdf_file.pdf`` is a one-page PDF of ours, padded to the size of the reference's file (the
reference's test checks the size of the download).
"""

thing2 = object()
"""A module-level object for config tests: ``__import__('services.web.tutorial').thing2``."""
