"""The facade: the reference's public names, and the objects they must be."""

from __future__ import annotations

import importlib

import pytest

import services.web as cherrypy
import sitebus.site.container

PUBLIC_NAMES = [
    "Application", "HTTPError", "HTTPRedirect", "InternalRedirect", "NotFound", "Tool",
    "Toolbox", "config", "dispatch", "engine", "expose", "lib", "log", "popargs", "process",
    "quickstart", "request", "response", "server", "serving", "thread_data", "tools", "tree",
    "url", "HandlerTool", "HandlerWrapperTool", "ErrorTool", "TimeoutError",
    "CherryPyException",
]


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_names(name: str) -> None:
    assert getattr(cherrypy, name) is not None


def test_the_site_objects_are_the_sites() -> None:
    assert cherrypy.engine is sitebus.site.container.bus
    assert cherrypy.config is sitebus.site.container.config
    assert cherrypy.log is sitebus.site.container.log
    assert cherrypy.tree is sitebus.site.container.tree
    assert cherrypy.tree.app_factory is cherrypy._cptree.make_application
    assert cherrypy.engine.signals is cherrypy.engine.signal_handler
    assert cherrypy.engine.timeout_monitor is not None


def test_the_server_is_the_sites_default_server() -> None:
    server = cherrypy.server
    assert server is cherrypy.server  # one object, found again
    assert hasattr(server, "subscribe")
    site_server = getattr(sitebus.site.container, "server", None)
    if site_server is not None:
        assert server is site_server


@pytest.mark.parametrize(
    "module, names",
    [
        ("services.web.dispatch", ["Dispatcher", "MethodDispatcher", "RoutesDispatcher",
                                   "VirtualHost", "PageHandler", "LateParamPageHandler",
                                   "test_callable_spec"]),
        ("services.web._cptools", ["Tool", "Toolbox", "HandlerTool", "HandlerWrapperTool",
                                   "ErrorTool"]),
        ("services.web._cpconfig", ["environments", "merge", "Config", "unrepr"]),
        ("services.web._cprequest", ["Request", "Response", "Hook", "HookMap", "hookpoints"]),
        ("services.web._cperror", ["HTTPError", "HTTPRedirect", "NotFound", "InternalRedirect",
                                   "format_exc", "bare_error", "get_error_page",
                                   "clean_headers"]),
        ("services.web._cpreqbody", ["RequestBody", "Entity", "Part", "SizedReader",
                                     "process_urlencoded", "process_multipart",
                                     "process_multipart_form_data"]),
        ("services.web._cpdispatch", ["Dispatcher", "punctuation_to_underscores"]),
        ("services.web._cplogging", ["LogManager"]),
        ("services.web.lib", ["is_iterator", "is_closable_iterator", "file_generator",
                              "file_generator_limited", "set_vary_header"]),
        ("services.web.lib.httputil", ["HeaderMap", "HeaderElement", "AcceptElement",
                                       "valid_status", "parse_query_string", "urljoin",
                                       "get_ranges", "Host", "decode_TEXT"]),
        ("services.web.lib.encoding", ["ResponseEncoder", "UTF8StreamEncoder", "decode"]),
        ("services.web.lib.cptools", ["trailing_slash", "log_traceback", "accept", "allow",
                                      "redirect", "response_headers", "flatten"]),
        ("services.web.lib.jsontools", ["json_in", "json_out", "json_processor",
                                        "json_handler"]),
        ("services.web.lib.reprconf", ["Config", "NamespaceSet", "Parser", "unrepr",
                                       "as_dict", "attributes", "modules"]),
        ("services.web.process.wspbus", ["Bus", "ChannelFailures", "states"]),
        ("services.web.process.plugins", ["SimplePlugin", "Monitor", "BackgroundTask",
                                          "ThreadManager", "SignalHandler"]),
        ("services.web.test.webtest", ["WebCase"]),
        ("services.web.test.helper", ["CPWebCase"]),
    ],
)
def test_module_names(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    for name in names:
        assert getattr(imported, name) is not None, f"{module}.{name}"


def test_process_plugins_are_sitebus_classes() -> None:
    from services.web.process.plugins import SignalHandler, SimplePlugin
    from sitebus.plugins import SimplePlugin as SitebusSimplePlugin
    from sitebus.process.signals import SignalHandler as SitebusSignalHandler

    assert SimplePlugin is SitebusSimplePlugin
    assert SignalHandler is SitebusSignalHandler


def test_a_plugin_not_written_yet_is_named_in_the_error() -> None:
    plugins = importlib.import_module("services.web.process.plugins")
    try:
        plugins.Daemonizer  # noqa: B018
    except AttributeError as error:
        assert "sitebus.process.daemon.Daemonizer" in str(error)


def test_config_decorator() -> None:
    @cherrypy.config(**{"tools.encode.encoding": "latin-1"})
    def handler() -> None: ...

    assert handler._cp_config == {"tools.encode.encoding": "latin-1"}
