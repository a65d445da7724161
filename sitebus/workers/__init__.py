"""Pre-fork workers: the master's plugin, the child's side, supervision.

``master`` (the Workers plugin on the master's bus), ``supervisor`` (the master's thread that
forks and watches), ``worker`` (a child's side: reset the bus, serve, beat), ``supervision``
(the decisions, as pure functions) and ``forkbus`` (the bus the site uses, which can be split
between master and workers and reset after a fork).

May import: ``sitebus.servers.server``, ``sitebus.reload``, ``sitebus.process`` and the core. Not
the site: the site creates the Workers plugin and passes itself in. See docs/architecture.md.
"""
