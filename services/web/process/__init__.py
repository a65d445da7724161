"""The site's process side under the reference's names: ``plugins``, ``servers``, ``wspbus``.

``from cherrypy.process.plugins import Daemonizer`` becomes
``from services.web.process.plugins import Daemonizer``; the classes are sitebus's.
"""

from services.web.process import plugins, servers, wspbus

__all__ = ["plugins", "servers", "wspbus"]
