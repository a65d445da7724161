"""The site's process side under the reference's names: ``plugins``, ``servers``, ``wspbus``.

``from cherrypy.process.plugins import Daemonizer`` becomes
``from services.web.process.plugins import Daemonizer``; the classes are sitebus's. ``bus`` is the
process's bus (the site's, ``services.web.engine``), as ``cherrypy.process.bus`` is.
"""

from services.web.process import plugins, servers, wspbus
from sitebus.site.container import bus

__all__ = ["bus", "plugins", "servers", "wspbus"]
