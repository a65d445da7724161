"""The reference's names for the second half of the tools and library, and the hook points
and priorities of the built-in tools (the reference's table; inventory 7.2)."""

from __future__ import annotations

import importlib

import pytest

import services.web as cherrypy
from services.web import _cptools


@pytest.mark.parametrize(
    "module, names",
    [
        ("services.web.lib.caching", ["AntiStampedeCache", "Cache", "MemoryCache", "expires",
                                      "get", "tee_output"]),
        ("services.web.lib.encoding", ["compress", "decompress", "gzip"]),
        ("services.web.lib.cptools", ["MonitoredHeaderMap", "autovary", "proxy",
                                      "validate_etags", "validate_since", "referer",
                                      "ignore_headers", "log_hooks", "log_request_headers"]),
        ("services.web.lib.xmlrpcutil", ["on_error", "patched_path", "process_body",
                                         "respond"]),
        ("services.web.lib.cpstats", ["ByteCountWrapper", "StatsPage", "StatsTool",
                                      "average_uriset_time", "extrapolate_statistics",
                                      "iso_format", "locale_date", "pause_resume",
                                      "proc_time"]),
        ("services.web.lib.gctools", ["GCRoot", "ReferrerTree", "RequestCounter",
                                      "get_context", "get_instances"]),
        ("services.web.lib.profiler", ["Profiler", "ProfileAggregator", "make_app",
                                       "new_func_strip_path", "serve"]),
        ("services.web.lib.covercp", ["CoverStats", "get_tree", "serve", "start"]),
        ("services.web._cptools", ["XMLRPCController", "CachingTool"]),
        ("services.web.dispatch", ["XMLRPCDispatcher"]),
    ],
)
def test_module_names(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    for name in names:
        assert getattr(imported, name) is not None, f"{module}.{name}"


@pytest.mark.parametrize(
    "name, kind, point, priority",
    [
        ("gzip", _cptools.Tool, "before_finalize", 80),
        ("caching", _cptools.CachingTool, "before_handler", 20),
        ("expires", _cptools.Tool, "before_finalize", 50),
        ("etags", _cptools.Tool, "before_finalize", 75),
        ("proxy", _cptools.Tool, "before_request_body", 30),
        ("autovary", _cptools.Tool, "on_start_resource", 0),
        ("xmlrpc", _cptools.ErrorTool, None, 50),
        ("cpstats", _cptools.Tool, "on_end_request", 50),
        ("encode", _cptools.Tool, "before_handler", 70),
        ("decode", _cptools.Tool, "before_request_body", 50),
        ("json_in", _cptools.Tool, "before_request_body", 30),
        ("json_out", _cptools.Tool, "before_handler", 30),
        ("referer", _cptools.Tool, "before_request_body", 50),
        ("response_headers", _cptools.Tool, "on_start_resource", 50),
        ("log_headers", _cptools.Tool, "before_error_response", 50),
        ("log_tracebacks", _cptools.Tool, "before_error_response", 50),
        ("trailing_slash", _cptools.Tool, "before_handler", 60),
        ("flatten", _cptools.Tool, "before_finalize", 50),
        ("accept", _cptools.Tool, "on_start_resource", 50),
        ("allow", _cptools.Tool, "on_start_resource", 50),
        ("err_redirect", _cptools.ErrorTool, None, 50),
    ],
)
def test_built_in_tools_run_where_the_reference_says(name: str, kind: type, point: str | None,
                                                     priority: int) -> None:
    tool = getattr(cherrypy.tools, name)
    assert isinstance(tool, kind)
    assert tool._point == point
    assert tool._priority == priority


def test_a_failed_wait_on_every_interface_is_only_a_warning() -> None:
    """The reference's ``process.servers._safe_wait``: a server bound to 0.0.0.0 cannot be
    checked by connecting without a loopback interface; elsewhere the failure stands."""
    from services.web.process import servers

    with pytest.warns(UserWarning, match="Unable to verify that the server is bound on 8"):
        with servers._safe_wait("0.0.0.0", 8):
            raise TimeoutError("port 8 not occupied")
    with pytest.raises(TimeoutError):
        with servers._safe_wait("127.0.0.1", 8):
            raise TimeoutError("port 8 not occupied")


def test_the_reference_wsgi_server_class_takes_a_server_s_settings() -> None:
    from services.web._cpserver import Server
    from services.web._cpwsgi_server import CPWSGIServer

    adapter = Server()
    adapter.socket_host, adapter.socket_port = "127.0.0.1", 8123
    adapter.thread_pool, adapter.socket_timeout = 3, 7
    adapter.max_request_body_size, adapter.nodelay = 1234, False
    adapter.wsgi_app = lambda environ, start_response: []
    built = CPWSGIServer(adapter)
    assert built.bind_addr == ("127.0.0.1", 8123) and built.server_adapter is adapter
    assert (built.requests.min, built.timeout) == (3, 7)
    assert (built.max_request_body_size, built.nodelay) == (1234, False)
    assert built.protocol == adapter.protocol_version and built.wsgi_app is adapter.wsgi_app
