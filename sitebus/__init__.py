"""sitebus: a process supervisor and site container for Python web sites.

The Web Site Process Bus (``sitebus.bus``) is at the centre; everything the process does is a
plugin on it. See DESIGN.md in the shared notes for the layout.
"""

__version__ = "0.1.0"
