"""Fixtures for the request framework's tests: ``web`` and ``site_state``."""

from services.web.test.fixtures import site_state, web

__all__ = ["site_state", "web"]
