"""``sitebus.signals``: a public path README documents, kept for the module
now at ``sitebus.process.signals``."""

from sitebus.process.signals import (
    SignalHandler,
)

__all__ = [
    "SignalHandler",
]
