"""Request config: the merge of site, application and handler config, and its namespaces.

Config files, values and environments are the site's (``sitebus.site.config``; re-exported here
under the reference's names). This module owns what the framework adds:

- The request namespaces (``Request.namespaces``): ``hooks``, ``request`` (``request.body.*``
  sets attributes of the request body), ``response`` (``response.headers.*`` sets default
  headers), ``error_page`` and ``tools`` (the default Toolbox). A custom Toolbox or handler
  registered there gets the keys of its namespace on every request, as the reference says.
- Validation of those namespaces where config enters: the site's ``config.update`` and an
  application's ``merge`` refuse a bad hook point, error page code or tool key (including a
  setting a built-in tool does not take, such as ``tools.gzip.mime_type``) with a
  ConfigError naming the key, instead of failing on the first request. Where a key may
  rightly name something not known yet (a custom tool registered after the config is read,
  a setting a tool passes on to user code, such as a custom session store's, an attribute
  an app sets on its requests), only a near miss of a known name is refused, with "did you
  mean": ``tools.sesions.on``, ``tools.sessions.timout``, ``request.show_tracebaks``.
- The cache that keeps the per-request path lean. A dispatcher gathers the config sources
  that apply (the site config, ``_cp_config`` dicts, application sections); the merged dict
  and a *plan* (what each namespace does with it) are cached under the sources' identities
  and reused while every source still equals the copy taken when the entry was built. So
  config changed in place, through ``config.update``, ``app.merge`` or by assignment, is
  seen by the next request, and a request pays for a few dict comparisons, not a merge and a
  walk through the namespaces. Each request gets its own copy of the merged dict; if code
  changes ``request.config`` after dispatch, the plan is rebuilt for that request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from services.web._cprequest import Hook, Request, hookpoints
from services.web._serving import serving
from sitebus.errors import ConfigError
from sitebus.site.config import Config, NamespaceSet, as_dict, environments, merge, unrepr

__all__ = [
    "Config",
    "ConfigCache",
    "RequestNamespaces",
    "apply_request_config",
    "as_dict",
    "environments",
    "merge",
    "unrepr",
    "validate_section",
]


class RequestNamespaces(NamespaceSet):
    """The request namespaces; counts its changes so cached plans know when to rebuild."""

    version = 0

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.version += 1

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self.version += 1

    def pop(self, *args: Any) -> Any:
        self.version += 1
        return super().pop(*args)

    def clear(self) -> None:
        super().clear()
        self.version += 1

    def copy(self) -> RequestNamespaces:
        return RequestNamespaces(self)


# -- the request namespaces' handlers -------------------------------------------------------


def hooks_namespace(k: str, v: Any) -> None:
    """Attach bare hooks declared in config (``hooks.<point>[.anything]``)."""
    point = k.split(".", 1)[0]
    serving.request.hooks.add(point, _as_hook(v))


def request_namespace(k: str, v: Any) -> None:
    """Set request attributes declared in config (``request.body.*`` on the body)."""
    if k[:5] == "body.":
        setattr(serving.request.body, k[5:], v)
    else:
        setattr(serving.request, k, v)


def response_namespace(k: str, v: Any) -> None:
    """Set response attributes declared in config (``response.headers.*`` as headers)."""
    if k[:8] == "headers.":
        serving.response.headers[k[8:]] = v
    else:
        setattr(serving.response, k, v)


def error_page_namespace(k: str, v: Any) -> None:
    """Set custom error pages declared in config."""
    request = serving.request
    request.error_page = {**request.error_page, _error_page_key(k): v}


def _as_hook(value: Any) -> Hook:
    if isinstance(value, str):
        from sitebus.site.config import attributes

        value = attributes(value)
    return value if isinstance(value, Hook) else Hook(value)


def _error_page_key(k: str) -> Any:
    return k if k == "default" else int(k)


Request.namespaces = RequestNamespaces(
    hooks=hooks_namespace,
    request=request_namespace,
    response=response_namespace,
    error_page=error_page_namespace,
)


# -- validation where config enters ---------------------------------------------------------


def _check_hook(key: str, value: Any) -> None:
    point = key.split(".", 1)[0]
    if point not in hookpoints:
        raise ConfigError(f"unknown hook point {point!r}; expected one of "
                          f"{', '.join(hookpoints)}", key=f"hooks.{key}", value=value)
    if not (callable(value) or isinstance(value, str)):
        raise ConfigError(f"expected a callable (or its dotted name), got {value!r}",
                          key=f"hooks.{key}", value=value)


def _check_tool(namespace: str) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        name, dot, arg = key.partition(".")
        if not dot or not name or not arg:
            raise ConfigError(f"expected {namespace}.<tool>.<setting> "
                              f"(e.g. {namespace}.{key or 'encode'}.on)",
                              key=f"{namespace}.{key}", value=value)
        if arg == "on" and not isinstance(value, bool):
            raise ConfigError(f"expected True or False, got {value!r}",
                              key=f"{namespace}.{key}", value=value)
        if namespace == "tools":
            _check_tool_name(name, key, value)
        if namespace == "tools" and arg not in ("on", "priority"):
            _check_tool_setting(name, arg, value)

    return check


NEAR_MISS = 0.8
"""How alike (difflib's ratio) an unknown name must be to a known one to be called a typo."""


def _near_miss(name: str, known: Any, cutoff: float = NEAR_MISS) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff)
    return close[0] if close else None


def _check_tool_name(name: str, key: str, value: Any) -> None:
    """Refuse a tool name that is a near miss of a built-in one (``tools.sesions.on``)."""
    from services.web._cptools import Tool, default_toolbox

    tools = {k for k, v in vars(default_toolbox).items() if isinstance(v, Tool)}
    if name in tools:
        return
    close = _near_miss(name, tools)
    if close is not None:  # any other name may be a custom tool registered later
        raise ConfigError(f"unknown tool {name!r} (did you mean {close!r}?)",
                          key=f"tools.{key}", value=value)


def _check_tool_setting(name: str, arg: str, value: Any) -> None:
    """Refuse a setting a built-in tool does not take (a typo would fail every request)."""
    from services.web._cptools import SessionTool, Tool, default_toolbox, tool_settings

    tool = default_toolbox.__dict__.get(name)
    if not isinstance(tool, Tool):
        return  # not (yet) registered: it is checked when requests set it up
    if type(tool)._setup is not Tool._setup and not type(tool).__module__.startswith(
            "services.web."):
        return  # a user's tool with a _setup of its own reads arguments its callable lacks
    accepted = tool_settings(tool)
    strict = accepted is not None
    if accepted is None:  # it takes **kwargs: refuse near misses of what it is known to take
        accepted = _named_parameters(tool.callable)
        if isinstance(tool, SessionTool):
            from services.web.lib.sessions import known_settings

            accepted |= known_settings()
    if arg in accepted:
        return
    known = sorted(accepted | {"on", "priority"})
    close = _near_miss(arg, known, NEAR_MISS if not strict else 0.6)  # strict: a hint only
    if not strict:
        if close is not None:
            raise ConfigError(f"unknown setting (did you mean {close!r}?)",
                              key=f"tools.{name}.{arg}", value=value)
        return
    hint = f" (did you mean {close!r}?)" if close else ""
    raise ConfigError(f"unknown setting{hint}; expected one of {', '.join(known)}",
                      key=f"tools.{name}.{arg}", value=value)


def _named_parameters(function: Any) -> set[str]:
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _check_attribute(namespace: str) -> Callable[[str, Any], None]:
    """Refuse ``request.*``/``response.*`` keys that are near misses of the class's attributes."""

    def check(key: str, value: Any) -> None:
        from services.web._cpreqbody import RequestBody
        from services.web._cpresponse import Response

        if namespace == "response" and key.startswith("headers."):
            return
        owner: type = Request if namespace == "request" else Response
        attribute = key
        if namespace == "request" and key.startswith("body."):
            owner, attribute = RequestBody, key[5:]
        known = {name for name in dir(owner) if not name.startswith("_")}
        if attribute in known:
            return
        close = _near_miss(attribute, known)
        if close is not None:  # another name may be the app's own attribute
            raise ConfigError(f"unknown {owner.__name__} attribute (did you mean {close!r}?)",
                              key=f"{namespace}.{key}", value=value)

    return check


def _check_error_page(key: str, value: Any) -> None:
    try:
        code = _error_page_key(key)
    except ValueError:
        code = None
    if code is None or (code != "default" and not 400 <= code <= 599):
        raise ConfigError("expected error_page.<code> with a code from 400 to 599, or "
                          "error_page.default", key=f"error_page.{key}", value=value)
    if not (callable(value) or isinstance(value, str)):
        raise ConfigError(f"expected a template file name or a callable, got {value!r}",
                          key=f"error_page.{key}", value=value)


def _ignore(key: str, value: Any) -> None:
    """Keys of this namespace are kept in the config dict and applied per request."""


def _app_root_only(key: str, value: Any) -> None:
    raise ConfigError("wsgi.* keys belong in an application's '/' config section, not in "
                      "the site config", key=f"wsgi.{key}", value=value)


VALIDATORS: dict[str, Callable[[str, Any], None]] = {
    "hooks": _check_hook,
    "request": _check_attribute("request"),
    "response": _check_attribute("response"),
    "error_page": _check_error_page,
    "tools": _check_tool("tools"),
}
"""Checks for the keys of the request namespaces, run where config enters."""


def register_site_namespaces(config: Config) -> None:
    """Register the framework's namespaces on the site config (checking keys on update)."""
    for namespace, check in VALIDATORS.items():
        config.namespaces.setdefault(namespace, check)
    config.namespaces.setdefault("wsgi", _app_root_only)
    # Keys read before the framework was imported (the master of a site whose workers import
    # the apps reads its config files first) are checked now, as they would have been then.
    for full_key, value in list(config.items()):
        namespace, dot, key = str(full_key).partition(".")
        validator = VALIDATORS.get(namespace)
        if dot and validator is not None:
            validator(key, value)


def validate_section(section: str, entries: Mapping[str, Any]) -> None:
    """Check the request-namespace keys of one application config section."""
    for full_key, value in entries.items():
        namespace, dot, key = str(full_key).partition(".")
        check = VALIDATORS.get(namespace)
        if not dot or check is None:
            continue
        try:
            check(key, value)
        except ConfigError as error:
            message = str(error)
            prefix = f"{full_key}: "
            if message.startswith(prefix):
                message = message[len(prefix):]
            raise ConfigError(message, key=full_key, value=value, section=section) from None


# -- the cache and the plan -----------------------------------------------------------------


class Plan:
    """What the request namespaces do with one merged config, prepared once.

    ``steps`` are (function, data) pairs applied in the namespaces' order.
    """

    __slots__ = ("steps", "namespaces", "version")

    def __init__(self, config: Mapping[str, Any], namespaces: NamespaceSet) -> None:
        self.namespaces = namespaces
        self.version = getattr(namespaces, "version", None)
        grouped: dict[str, list[tuple[str, Any]]] = {}
        for full_key, value in config.items():
            namespace, dot, key = full_key.partition(".")
            if dot and namespace in namespaces:
                grouped.setdefault(namespace, []).append((key, value))
        steps: list[tuple[Callable[[Any, Any], None], Any]] = []
        for namespace, handler in namespaces.items():
            entries = grouped.get(namespace)
            if entries:
                steps.append(_step_for(namespace, handler, entries))
        self.steps = steps

    def current(self, namespaces: NamespaceSet) -> bool:
        return self.namespaces is namespaces and \
            self.version == getattr(namespaces, "version", None) is not None

    def apply(self, request: Any) -> None:
        for step, data in self.steps:
            step(request, data)


def _is_toolbox(handler: Any) -> bool:
    from services.web._cptools import Toolbox

    return isinstance(handler, Toolbox)


def _step_for(namespace: str, handler: Any, entries: list[tuple[str, Any]]
              ) -> tuple[Callable[[Any, Any], None], Any]:
    if handler is request_namespace:
        attrs = [(k, v) for k, v in entries if k[:5] != "body."]
        body_attrs = [(k[5:], v) for k, v in entries if k[:5] == "body."]
        return _set_request_attrs, (attrs, body_attrs)
    if handler is response_namespace:
        attrs = [(k, v) for k, v in entries if k[:8] != "headers."]
        headers = [(k[8:], v) for k, v in entries if k[:8] == "headers."]
        return _set_response_attrs, (attrs, headers)
    if handler is error_page_namespace:
        return _set_error_pages, {_error_page_key(k): v for k, v in entries}
    if handler is hooks_namespace:
        return _attach_hooks, [(k.split(".", 1)[0], _as_hook(v)) for k, v in entries]
    if _is_toolbox(handler):
        toolmap: dict[str, dict[str, Any]] = {}
        for key, value in entries:
            name, _, arg = key.partition(".")
            toolmap.setdefault(name, {})[arg] = value
        enabled = [(name, *_prepared_hook(handler, name, toolmap))
                   for name, settings in toolmap.items() if settings.get("on", False)]
        return _setup_tools, (handler, toolmap, enabled)
    return _call_namespace, (handler, entries)


def _set_request_attrs(request: Any, data: Any) -> None:
    attrs, body_attrs = data
    for name, value in attrs:
        setattr(request, name, value)
    if body_attrs:
        body = request.body
        for name, value in body_attrs:
            setattr(body, name, value)


def _set_response_attrs(request: Any, data: Any) -> None:
    attrs, headers = data
    response = serving.response
    for name, value in attrs:
        setattr(response, name, value)
    for name, value in headers:
        response.headers[name] = value


def _set_error_pages(request: Any, pages: dict[Any, Any]) -> None:
    request.error_page = {**request.error_page, **pages}


def _attach_hooks(request: Any, hooks: list[tuple[str, Hook]]) -> None:
    for point, hook in hooks:
        request.hooks.add(point, hook)


def _prepared_hook(toolbox: Any, name: str, toolmap: dict[str, dict[str, Any]]
                   ) -> tuple[Any, Any]:
    """Return (tool, (point, Hook)) for a plain Tool, whose hook is the same every request.

    Tools that override ``_setup`` (or are not plain Tools) get (tool, None): they are set
    up per request, as they may attach different hooks each time.
    """
    from services.web._cptools import Tool

    tool = getattr(toolbox, name, None)
    if tool is None or type(tool)._setup is not Tool._setup or tool._point is None:
        return tool, None
    conf = {k: v for k, v in toolmap[name].items() if k != "on"}
    priority = tool._priority_of(conf)
    return tool, (tool._point, Hook(tool.callable, None, priority, **conf))


def _setup_tools(request: Any, data: Any) -> None:
    toolbox, toolmap, enabled = data
    request.toolmaps[toolbox.namespace] = toolmap
    hooks = request.hooks
    for name, prepared_tool, prepared in enabled:
        tool = getattr(toolbox, name, None)
        if tool is None:
            from services.web._cperror import HTTPError

            raise HTTPError(500, f"{toolbox.namespace}.{name}.on: no tool named {name!r} in "
                            f"the {toolbox.namespace!r} toolbox")
        if prepared is not None and tool is prepared_tool and tool.callable is \
                prepared[1].callback:
            hooks.add(*prepared)
        else:
            tool._setup()


def _call_namespace(request: Any, data: Any) -> None:
    handler, entries = data
    if hasattr(handler, "__enter__") and hasattr(handler, "__exit__"):
        with handler as bound:
            for key, value in entries:
                bound(key, value)
    else:
        for key, value in entries:
            handler(key, value)


class ConfigEntry:
    """One cached merge: the sources, copies of them, the merged dict and its plan."""

    __slots__ = ("sources", "snapshots", "merged", "plan")

    def __init__(self, sources: list[Mapping[str, Any]]) -> None:
        self.sources = sources  # held, so their ids cannot be reused while cached
        self.snapshots = [dict(source) for source in sources]
        merged: dict[str, Any] = {}
        for snapshot in self.snapshots:
            merged.update(snapshot)
        self.merged = merged
        self.plan: Plan | None = None

    def valid(self, sources: list[Mapping[str, Any]]) -> bool:
        for source, snapshot in zip(sources, self.snapshots, strict=True):
            if source != snapshot:
                return False
        return True


class ConfigCache:
    """Merged request configs of one application, keyed by the identities of their sources."""

    max_entries = 2048

    def __init__(self) -> None:
        self._entries: dict[tuple[int, ...], ConfigEntry] = {}

    def lookup(self, sources: list[Mapping[str, Any]]) -> ConfigEntry:
        """Return the entry for ``sources``, merging them if none is cached or still valid."""
        key = tuple(map(id, sources))
        entry = self._entries.get(key)
        if entry is not None and entry.valid(sources):
            return entry
        entry = ConfigEntry(sources)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = entry
        return entry

    def clear(self) -> None:
        self._entries.clear()


def apply_request_config(request: Any) -> None:
    """Apply the namespaces of ``request.config``, from the cached plan when it applies."""
    namespaces = request.namespaces
    config = request.config
    if config is None:
        return
    entry = request.__dict__.get("_config_entry")
    if entry is not None and config == entry.merged:
        plan = entry.plan
        if plan is None or not plan.current(namespaces):
            plan = entry.plan = Plan(entry.merged, namespaces)
    else:
        plan = Plan(config, namespaces)
    plan.apply(request)
