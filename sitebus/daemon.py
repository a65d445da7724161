"""``sitebus.daemon``: a public path README documents, kept for the module
now at ``sitebus.process.daemon``."""

from sitebus.process.daemon import (
    Daemonizer,
    daemon_outcome,
    is_daemonized,
)

__all__ = [
    "Daemonizer",
    "daemon_outcome",
    "is_daemonized",
]
