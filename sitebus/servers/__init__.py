"""Servers and listeners: sockets in, WSGI or ASGI calls out.

The server plugin (``server``: one per address, on the bus at priority 75), its registry of
server types (``registry``: cheroot, FastCGI, SCGI, CGI, uvicorn) and the settings a type is
built from (``settings``); listening sockets
(``listeners``) and their hand-over to the next image (``handover``); the cheroot WSGI server
(``wsgiserver``) with its epoll head reader (``headreader``, ``connection``), strict framing
(``framing``, ``strictgateway``) and keep-alive drain (``drain``); flup gateways
(``gateways``); the ASGI side (``asgiserver``, ``asgi``, ``wsgibridge``); what is noted of each
request for the access log and metrics (``observe``, ``asgiobserve``); the ServerAdapter base
(``adapter``).

May import: the core (``sitebus.bus``, ``sitebus.plugins``, ``sitebus.errors``,
``sitebus.names``), the standard library and the server libraries. Not the site, the workers
or the reloader: the site hands a server its WSGI app. See docs/architecture.md.
"""
