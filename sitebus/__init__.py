"""sitebus: a process supervisor and site container for Python web sites.

The Web Site Process Bus (``sitebus.bus``) is at the centre; everything the process does is a
plugin on it. docs/architecture.md draws the packages, the start-up path, a request's way,
restarts, reloads and the workers.
"""

__version__ = "0.1.0"
