"""Apps by kind: load a ``tree.*`` entry's app, tell what kind it is, refuse what cannot serve.

A site hosts two kinds of app. A **services.web app** (an ``Application``, or a root object
with exposed handlers, which the tree wraps into one) takes app config: ``[/path]`` sections,
tools, dispatchers. **Any other WSGI callable** (Flask, Django, Bottle, Falcon, Pyramid, a
bare function) is grafted as it is and never receives services.web config: a Bottle app has a
``merge`` method of its own, so duck typing on ``merge`` is not enough; the kind comes from
the type the framework registered (``Tree.app_class``) and from the exposed handlers of a root.

An **ASGI app** (``async def __call__(scope, receive, send)``: FastAPI, Starlette, Django's
``asgi.py``) is mounted beside them and served by uvicorn (``sitebus.servers.asgi``).

Refused, each with one line naming the tree entry, the module and the cause (exit 78): an app
that fails to import (whatever it raises), an object that is none of these, and
services.web config given to an ASGI app.

Entry forms (``tree.<name> = ...`` in ``[global]``)::

    tree.blog = "blog:root"                                  # at /blog
    tree.blog = "/blog", "blog:root"                         # at /blog
    tree.blog = "/blog", "blog:root", "www.example.com"      # a virtual host
    tree.blog = {"path": "/blog", "app": "blog:root", "config": "blog.conf",
                 "host": "www.example.com"}                  # its own app config

A third tuple element is the virtual host, as it always was; app config has its own key in
the dict form, so the two never mix.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any, NamedTuple

from sitebus.errors import ConfigError
from sitebus.site.config import attributes

__all__ = ["ASGI", "SERVICES_WEB", "WSGI", "TreeEntry", "app_kind", "load_app", "parse_entry",
           "refuse"]

SERVICES_WEB = "services.web"
WSGI = "wsgi"
ASGI = "asgi"

ENTRY_KEYS = ("path", "app", "config", "host")


class TreeEntry(NamedTuple):
    """A ``tree.<name>`` entry: where, what, its app config and its virtual host.

    ``name`` is what messages call it: ``tree.blog``, or ``APP 'blog:root'`` from the command
    line.
    """

    name: str
    script_name: str
    target: Any
    config: Any = None
    host: str | None = None
    own_path: bool = False
    """True for ``tree.<name> = app``: an application goes at its own script name (as the
    reference mounts it), anything else at ``/<name>``."""


def parse_entry(name: str, value: Any) -> TreeEntry:
    """Return the TreeEntry that ``tree.<name> = value`` describes, or a ConfigError."""
    key = f"tree.{name}"
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(ENTRY_KEYS))
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r}; expected some of "
                              f"{', '.join(ENTRY_KEYS)}", key=key, value=value)
        if "app" not in value:
            raise ConfigError("expected an 'app' key naming 'module:attr'", key=key, value=value)
        entry = TreeEntry(key, value.get("path", "/" + name), value["app"],
                          value.get("config"), value.get("host"))
    elif isinstance(value, tuple) and len(value) in (2, 3) and isinstance(value[0], str):
        entry = TreeEntry(key, value[0], value[1], None, value[2] if len(value) == 3 else None)
    elif isinstance(value, str) or callable(value) or not isinstance(value, (tuple, list)):
        entry = TreeEntry(key, "/" + name, value, own_path=True)
    else:
        raise ConfigError('expected "module:attr", ("/prefix", "module:attr"[, "host"]) or '
                          '{"path": ..., "app": ..., "config": ..., "host": ...}',
                          key=key, value=value)
    if not isinstance(entry.script_name, str) or (entry.script_name
                                                  and not entry.script_name.startswith("/")):
        raise ConfigError(f"expected a mount point starting with '/', got "
                          f"{entry.script_name!r}", key=key, value=value)
    if entry.host is not None and not isinstance(entry.host, str):
        raise ConfigError(f"expected a host name, got {entry.host!r}", key=key, value=value)
    return entry


def load_app(entry: TreeEntry) -> Any:
    """Import the object ``entry.target`` names (``"module:attr"`` or a dotted name).

    Whatever the import raises becomes one ConfigError naming the entry, the module and the
    cause, so a broken app is a config problem (exit 78), not a traceback.
    """
    target = entry.target
    if not isinstance(target, str):
        return target
    module_name, colon, attr = target.partition(":")
    key = entry.name
    try:
        if not colon:
            return attributes(target)
        found: Any = importlib.import_module(module_name)
    except Exception as error:
        raise ConfigError(f"cannot import module {module_name!r}: {_cause(error)}", key=key,
                          value=target) from None
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}", key=key,
                              value=target) from None
    return found


def _cause(error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} ({error.filename}, line {error.lineno})"
    return f"{type(error).__name__}: {error}"


def _has_exposed_handlers(obj: Any) -> bool:
    if getattr(obj, "_cp_config", None) is not None:
        return True
    for name in dir(obj):
        if name.startswith("__"):
            continue
        try:
            if getattr(getattr(obj, name, None), "exposed", False) is True:
                return True
        except Exception:
            continue
    return False


def _is_asgi(app: Any) -> bool:
    if inspect.isfunction(app) or inspect.ismethod(app):
        return inspect.iscoroutinefunction(app)
    return any(inspect.iscoroutinefunction(vars(base).get("__call__"))
               for base in type(app).__mro__)


def app_kind(app: Any, app_class: type | None) -> str | None:
    """Return SERVICES_WEB, WSGI or ASGI for ``app``; None for what is none of them.

    ``app_class`` is the framework's application type (``Tree.app_class``), if registered.
    """
    if app_class is not None and isinstance(app, app_class):
        return SERVICES_WEB
    if isinstance(app, type):
        return None  # a class, where an instance was meant
    if _is_asgi(app):
        return ASGI
    call_exposed = any(getattr(vars(base).get("__call__"), "exposed", False)
                       for base in type(app).__mro__)
    if not callable(app) or call_exposed:
        return SERVICES_WEB if call_exposed or _has_exposed_handlers(app) else None
    if getattr(app, "_cp_config", None) is not None:
        return SERVICES_WEB
    return WSGI


def describe(app: Any) -> str:
    """Name an object for a message: ``flask.app.Flask``, ``function fw.hello``."""
    if isinstance(app, type) or inspect.isroutine(app):
        what = "class" if isinstance(app, type) else "function"
        return f"{what} {getattr(app, '__module__', '?')}.{app.__qualname__}"
    kind = type(app)
    return f"{kind.__module__}.{kind.__qualname__}"


def refuse(entry: TreeEntry, app: Any, kind: str | None) -> ConfigError:
    """Return the error for an app of ``kind`` that this site cannot mount as ``entry`` says."""
    key = entry.name
    if kind == ASGI:
        return ConfigError(f"{entry.target!r} is an ASGI app ({describe(app)}: async "
                           "__call__(scope, receive, send)), which takes no services.web "
                           "config; remove 'config' from this entry",
                           key=key, value=entry.target)
    if isinstance(app, type):
        return ConfigError(f"{entry.target!r} is a class ({describe(app)}); expected a WSGI "
                           "callable or a services.web root object: name an instance",
                           key=key, value=entry.target)
    if kind is None:
        return ConfigError(f"{entry.target!r} ({describe(app)}) is not callable and has no "
                           "exposed handlers; expected a WSGI callable or a services.web root "
                           "object", key=key, value=entry.target)
    return ConfigError(f"{entry.target!r} is a WSGI app ({describe(app)}), which takes no "
                       "services.web config; remove 'config' from this entry",
                       key=key, value=entry.target)
