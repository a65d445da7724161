"""Handlers that exercise each form of the ``expose`` and tool decorators, for the tests.

``ExposeExamples`` has one handler per way of calling ``expose`` (bare, empty call, one alias,
a list of aliases, the ``alias`` keyword); ``ToolExamples`` stacks a tool decorator under a
``config`` decorator to show that neither overwrites the other's settings.
"""

from __future__ import annotations

from collections.abc import Iterator

from services.web import config, expose, tools

__all__ = ["ExposeExamples", "ToolExamples"]


class ExposeExamples:
    """Handlers exposed by each form of ``expose``; each answers a name of its own."""

    @expose(alias="alias3")
    def watson(self) -> str:
        """Exposed with the ``alias`` keyword."""
        return "Mr. and Mrs. Watson"

    @expose(["alias1", "alias2"])
    def andrews(self) -> str:
        """Exposed under two aliases."""
        return "Mr Ken Andrews"

    @expose("call_alias")
    def nesbitt(self) -> str:
        """Exposed under one alias."""
        return "Mr Nesbitt"

    @expose()
    def call_empty(self) -> str:
        """Exposed by calling expose with no arguments."""
        return "Mrs. B.J. Smegma"

    @expose
    def no_call(self) -> str:
        """Exposed by the bare decorator."""
        return "Mr E. R. Bradshaw"


class ToolExamples:
    """A streamed handler with a Content-Type set by the response_headers tool."""

    @expose
    @config(**{"response.stream": True})
    @tools.response_headers(headers=[("Content-Type", "application/data")])
    def blah(self) -> Iterator[bytes]:
        """Stream one chunk."""
        yield b"blah"
