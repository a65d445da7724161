"""Installs the cherrypy -> services.web import hook in every process of a suite run.

bench/cherrypy_suite.py puts this directory first on PYTHONPATH, so the pytest process and
any process it starts (CPProcess, the states demo) import services.web as ``cherrypy``.
"""

import alias

alias.install()
