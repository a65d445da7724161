"""The process services: what a daemon owes the system it runs on.

Signals (``signals``), the PID file and who owns it (``pidfile``, ``pidowner``), privileges
(``privileges``), daemonizing (``daemon``), reaping orphans as PID 1 (``reaper``) and the status
file the control commands read (``status``). Each is a plugin on the bus or a pure helper.

May import: the standard library, third-party packages, and the core (``sitebus.bus``,
``sitebus.plugins``, ``sitebus.errors``, ``sitebus.names``). Nothing else of sitebus.
See docs/architecture.md for the layers.
"""
