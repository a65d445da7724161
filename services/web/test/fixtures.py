"""pytest fixtures for applications on a real HTTP server.

Import them into a conftest.py (``from services.web.test.fixtures import site_state, web``).

``web`` mounts roots on the site tree and serves the tree on 127.0.0.1 and an ephemeral
port, with the reference's test settings (tracebacks and mismatched parameters shown)::

    def test_hello(web):
        web.mount(Root())
        web.getPage("/")
        web.assertBody("Hello world!")

The site config and tree are restored after each test (``site_state``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.web.test.helper import TEST_CONFIG, SiteState, WebHarness

__all__ = ["site_state", "web"]


@pytest.fixture
def site_state() -> Iterator[SiteState]:
    """Restore the site config and tree after the test."""
    from sitebus.site.container import config

    state = SiteState()
    dict.update(config, TEST_CONFIG)
    try:
        yield state
    finally:
        state.restore()


@pytest.fixture
def web(site_state: SiteState) -> Iterator[WebHarness]:
    """A client for apps mounted with ``web.mount(root, script_name, config)``."""
    harness = WebHarness()
    try:
        yield harness
    finally:
        harness.stop()
