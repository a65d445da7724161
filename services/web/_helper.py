"""Helpers of the application layer: ``expose``, ``popargs`` and ``url``.

``expose`` marks a callable (or a class, for the method dispatcher) as reachable. Aliases
(``@expose(['generer', 'generar'])``) are added to the class being defined when Python calls
``__set_name__`` at the end of the class body. The reference's statement form,
``expose(method, 'alias')`` on a line of its own in a class body, returns nothing that gets
a name, so there the aliases go straight into the namespace of the class being defined (the
calling frame's locals, which for a class body is that namespace). Outside a class body
aliases have nothing to attach to and are ignored.

``url()`` builds absolute URLs from the current request (its base, script name and path),
or from the default server's address outside a request.
"""

from __future__ import annotations

import inspect
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from services.web._serving import serving

__all__ = ["expose", "popargs", "url", "normalize_path"]


class _Aliased:
    """An exposed function waiting for its class: ``__set_name__`` adds its aliases there."""

    def __init__(self, func: Callable[..., Any], aliases: Sequence[str]) -> None:
        object.__setattr__(self, "_func", func)
        object.__setattr__(self, "_aliases", tuple(aliases))

    def __set_name__(self, owner: type, name: str) -> None:
        setattr(owner, name, self._func)
        for alias in self._aliases:
            setattr(owner, alias.replace(".", "_"), self._func)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self._func.__get__(instance, owner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._func(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._func, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._func, name, value)

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self._func


def expose(func: Any = None, alias: str | Sequence[str] | None = None) -> Any:
    """Expose the function or class, optionally providing aliases (a name or a list)."""
    if isinstance(func, (str, list, tuple)):
        alias, func = func, None  # @expose('alias') or @expose(['a', 'b'])

    def expose_(target: Any) -> Any:
        target.exposed = True
        if alias is None or isinstance(target, type):
            return target
        aliases = [alias] if isinstance(alias, str) else list(alias)
        return _Aliased(target, aliases)

    if func is None:
        return expose_
    if alias is not None and not isinstance(func, type):
        namespace = sys._getframe(1).f_locals
        if "__qualname__" in namespace and "__module__" in namespace:  # a class body
            func.exposed = True
            for name in [alias] if isinstance(alias, str) else alias:
                namespace[name.replace(".", "_")] = func
            return func
    return expose_(func)


def popargs(*args: str, handler: Any = None) -> Any:
    """Name leading path segments: pop them into ``request.params`` as the named arguments.

    Use as a class decorator (``@popargs('year', 'month')``) or as ``_cp_dispatch =
    popargs(...)`` in a class body. Exposed attributes win over popped segments. With
    ``handler``, dispatch continues on that object; a callable handler (or a class) is
    called with the popped values and its result is used instead.
    """
    handler_call = handler is not None and (callable(handler) or inspect.isclass(handler))

    def decorated(cls_or_self: Any = None, vpath: list[str] | None = None) -> Any:
        if inspect.isclass(cls_or_self):
            from services.web._cpdispatch import Dispatcher

            setattr(cls_or_self, Dispatcher.dispatch_method_name, decorated)
            return cls_or_self
        segments = [] if vpath is None else vpath  # popped in place: the dispatcher counts
        count = min(len(args), len(segments))
        named = dict(zip(args[:count], segments[:count], strict=True))
        del segments[:count]
        if handler_call:
            return handler(**named)
        serving.request.params.update(named)
        if handler is not None:
            return handler
        # As the final handler, resolve what is left with getattr, so this _cp_dispatch is
        # not called again on the same object.
        return getattr(cls_or_self, segments.pop(0), None) if segments else cls_or_self

    return decorated


def normalize_path(path: str) -> str:
    """Resolve '.' and '..' segments of a URL path; leave everything else as it is."""
    if "./" not in path and not path.endswith(("/.", "/..")):
        return path
    leading = path.startswith("/")
    keep = 1 if leading else 0  # never pop the empty atom before an absolute path's '/'
    atoms: list[str] = []
    parts = path.split("/")
    for index, atom in enumerate(parts):
        last = index == len(parts) - 1
        if atom in (".", ".."):
            if atom == ".." and len(atoms) > keep:
                atoms.pop()
            if last:
                atoms.append("")
        else:
            atoms.append(atom)
    newpath = "/".join(atoms)
    if leading and not newpath.startswith("/"):
        newpath = "/" + newpath
    return newpath


def url(path: str = "", qs: Any = "", script_name: str | None = None,
        base: str | None = None, relative: Any = None) -> str:
    """Build the URL a client should use for ``path``, from the current request.

    ``path`` relative to the current page resolves against it (with the trailing slash an
    index page implies); ``qs`` may be a string or a mapping/sequence to urlencode.
    ``relative`` may be False (absolute), True (relative to the current page) or
    'server' (from the root of the server); the default is ``request.app.relative_urls``.
    """
    if isinstance(qs, (tuple, list, dict)):
        qs = urllib.parse.urlencode(qs)
    if qs:
        qs = "?" + qs
    request = serving.request
    if request.app:
        if not path.startswith("/"):
            pi = request.path_info
            if request.is_index is True:
                if not pi.endswith("/"):
                    pi = pi + "/"
            elif request.is_index is False:
                if pi.endswith("/") and pi != "/":
                    pi = pi[:-1]
            path = pi if path == "" else urllib.parse.urljoin(pi, path)
        if script_name is None:
            script_name = request.script_name
        if base is None:
            base = request.base
        newurl = base + script_name + normalize_path(path) + qs
    else:
        if base is None:
            base = _server_base()
        newurl = base + normalize_path((script_name or "") + path) + qs

    if relative is None:
        relative = getattr(request.app, "relative_urls", False)
    if relative == "server":
        newurl = "/" + "/".join(newurl.split("/", 3)[3:])
    elif relative:
        old = url(relative=False).split("/")[:-1]
        new = newurl.split("/")
        while old and new and old[0] == new[0]:
            old.pop(0)
            new.pop(0)
        newurl = "/".join([".."] * len(old) + new)
    return newurl


def _server_base() -> str:
    from services.web import _cpserver

    return _cpserver.default_base()
