"""Logging under the reference's module name: the site's LogManager (``sitebus.logs``)."""

from sitebus.logs import LogManager

__all__ = ["LogManager"]
