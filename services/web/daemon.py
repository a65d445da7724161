"""The reference's ``cherryd`` as a module: ``start(...)`` and ``run()``.

Both go through the site's one start-up path, the ``sitebus run`` command: ``start`` turns
its keyword arguments into that command's options, and ``run`` reads the reference's
command line (``-c FILE``, ``-d``, ``-e ENV``, ``-f``, ``-s``, ``-x``, ``-i MODULE``,
``-p PIDFILE``, ``-P PATH``), which ``sitebus run`` shares. ``python -m services.web`` runs
it too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

__all__ = ["run", "start"]


def start(configfiles: Iterable[str] | None = None, daemonize: bool = False,
          environment: str | None = None, fastcgi: bool = False, scgi: bool = False,
          pidfile: str | None = None, imports: Iterable[str] | None = None,
          cgi: bool = False) -> None:
    """Run the site with the given config files, imports and options, until it stops."""
    gateways = [flag for on, flag in ((fastcgi, "-f"), (scgi, "-s"), (cgi, "-x")) if on]
    if len(gateways) > 1:
        raise ValueError("fastcgi, scgi and cgi are mutually exclusive; choose one")
    argv = ["run"]
    for name in configfiles or ():
        argv += ["-c", name]
    for name in imports or ():
        argv += ["-i", name]
    if environment:
        argv += ["-e", environment]
    if pidfile:
        argv += ["-p", pidfile]
    if daemonize:
        argv.append("-d")
    argv += gateways
    _sitebus_run(argv)


def run(argv: list[str] | None = None) -> None:
    """Run the site from a cherryd command line (``sys.argv[1:]`` by default)."""
    _sitebus_run(["run", *(sys.argv[1:] if argv is None else argv)])


def _sitebus_run(argv: list[str]) -> None:
    from sitebus import cli

    cli.main(argv)
