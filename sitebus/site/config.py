"""Site config: INI files whose values are Python literals, dicts, namespaces, environments.

The reference's format: ``[global]`` holds site-wide keys, ``[/path]`` sections hold app config,
any other section is free for the app. Values are Python expressions (``8080``, ``"0.0.0.0"``,
``60 * 60``, ``pkg.module.Class(arg, key=1)``), evaluated by ``unrepr`` over an AST walk that
allows literals, arithmetic, names importable from modules, attribute access and calls; never
``eval``. Keys keep their case. ``%(name)s`` refers to another key of the section or of
``[DEFAULT]``, as ConfigParser's basic interpolation does.

Keys are ``namespace.rest``; ``Config.update`` passes every key of a namespace to the handler
registered in ``namespaces`` (a plain callable, or a context manager whose ``__enter__``
returns the callable and whose ``__exit__`` runs after the last key). The one key without a
namespace, ``environment``, first imports a bundle of keys from ``environments``; keys given
explicitly win over the bundle's.

Every parsed value remembers where it came from (file, section, line), so an error raised for
it, by the parser or by a namespace handler, names the file, section, line and key.
"""

from __future__ import annotations

import ast
import builtins
import configparser
import operator
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import IO, Any

from sitebus.errors import ConfigError
from sitebus.names import attributes, modules

__all__ = [
    "Config",
    "NamespaceSet",
    "Parser",
    "as_dict",
    "attributes",
    "environments",
    "merge",
    "modules",
    "unrepr",
]

_QUIET: dict[str, Any] = {
    "engine.autoreload.on": False,
    "checker.on": False,
    "tools.log_headers.on": False,
    "request.show_tracebacks": False,
    "request.show_mismatched_params": False,
}
"""What every environment but development turns off: reloading, checks, tracebacks."""

environments: dict[str, dict[str, Any]] = {
    "staging": dict(_QUIET),
    "production": {**_QUIET, "log.screen": False},
    "embedded": {
        # For a site embedded in another deployment stack, which owns signals and logging.
        **_QUIET,
        "log.screen": False,
        "engine.SIGHUP": None,
        "engine.SIGTERM": None,
        "engine.signal_handler.on": False,  # the host owns the signals: install none
    },
    "development": {
        # Error pages with tracebacks, which no other setting shows (see services.web).
        "request.show_tracebacks": True,
        "request.show_mismatched_params": True,
    },
    "test_suite": {
        **_QUIET,
        "request.show_tracebacks": True,
        "request.show_mismatched_params": True,
        "log.screen": False,
        "log.access_flush_interval": 0,  # a test reads the access file right after a request
    },
}


# -- values ----------------------------------------------------------------------------------

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
    ast.Invert: operator.invert,
}


def _dotted_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List):
        return [_evaluate(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e) for e in node.elts)
    if isinstance(node, ast.Set):
        return {_evaluate(e) for e in node.elts}
    if isinstance(node, ast.Dict):
        pairs = list(zip(node.keys, node.values, strict=True))
        if any(k is None for k, _ in pairs):
            raise ValueError("'**' is not allowed in a config value")
        return {_evaluate(k): _evaluate(v) for k, v in pairs if k is not None}
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted_name(node)
        if name is None:  # an attribute of something computed: f(x).attr
            assert isinstance(node, ast.Attribute)
            return getattr(_evaluate(node.value), node.attr)
        if "." not in name and hasattr(builtins, name):
            return getattr(builtins, name)
        return attributes(name)
    if isinstance(node, ast.Call):
        func = _evaluate(node.func)
        args = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                args.extend(_evaluate(arg.value))
            else:
                args.append(_evaluate(arg))
        kwargs: dict[str, Any] = {}
        # ``**mapping`` first, so a keyword written out wins over the same key in a mapping
        # (where Python would refuse the call), as the reference's config reader has it.
        for keyword in sorted(node.keywords, key=lambda k: k.arg is not None):
            if keyword.arg is None:
                kwargs.update(_evaluate(keyword.value))
            else:
                kwargs[keyword.arg] = _evaluate(keyword.value)
        return func(*args, **kwargs)
    if isinstance(node, ast.Subscript):  # httputil.response_codes[404], argv[1:]
        return _evaluate(node.value)[_evaluate(node.slice)]
    if isinstance(node, ast.Slice):
        bounds = (node.lower, node.upper, node.step)
        return slice(*(None if part is None else _evaluate(part) for part in bounds))
    raise ValueError(f"{type(node).__name__} is not allowed in a config value")


def unrepr(s: str) -> Any:
    """Return the Python object a config value stands for (``'8080'`` gives ``8080``)."""
    if not s:
        return s
    tree = ast.parse(s.strip(), mode="eval")
    return _evaluate(tree)


# -- files -------------------------------------------------------------------------------------


class SourcedDict(dict):
    """A two-level config dict that remembers each key's file, section and line."""

    origins: dict[tuple[str, str], tuple[str | None, int | None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origins = {}

    def origin(self, section: str, key: str) -> dict[str, Any]:
        filename, lineno = self.origins.get((section, key), (None, None))
        return {"filename": filename, "section": section, "lineno": lineno}


def _line_numbers(text: str) -> dict[tuple[str, str], int]:
    """Map (section, key) to the line where the key is set, for error messages."""
    found: dict[tuple[str, str], int] = {}
    section = configparser.DEFAULTSECT
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or line[:1].isspace():
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
            continue
        cut = min((i for i in (stripped.find("="), stripped.find(":")) if i > 0), default=-1)
        if cut > 0:
            found.setdefault((section, stripped[:cut].strip()), number)
    return found


class Parser(configparser.ConfigParser):
    """A ConfigParser that keeps the case of keys and raises if a file cannot be read."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr

    def read(self, filenames: Any, encoding: str | None = None) -> list[str]:  # type: ignore[override]
        if isinstance(filenames, (str, bytes, os.PathLike)):
            filenames = [filenames]
        read_ok = []
        for filename in filenames:
            with open(filename, encoding=encoding or "utf-8") as handle:
                self.read_file(handle, str(filename))
            read_ok.append(str(filename))
        return read_ok

    def as_dict(self, raw: bool = False, vars: Mapping[str, str] | None = None,
                filename: str | None = None,
                lines: dict[tuple[str, str], int] | None = None) -> SourcedDict:
        """Convert the parsed file to a two-level dict of unrepr'ed values."""
        result = SourcedDict()
        lines = lines or {}
        for section in self.sections():
            values = result.setdefault(section, {})
            for option in self.options(section):
                lineno = lines.get((section, option))
                try:
                    text = self.get(section, option, raw=raw, vars=vars)
                except configparser.Error as error:
                    raise ConfigError(f"cannot read the value: {error}", key=option,
                                      filename=filename, section=section, lineno=lineno) from None
                try:
                    values[option] = unrepr(text)
                except Exception as error:
                    word = text.strip()
                    if isinstance(error, (ImportError, AttributeError)) and all(
                            part.isidentifier() for part in word.split(".")):
                        # A bare word that names nothing: a string without its quotes.
                        why = (f"expected a Python value, got {word}, which names nothing "
                               f'importable; strings need quotes: {option} = "{word}"')
                    else:
                        why = (f"expected a Python value (strings need quotes), got {text!r}: "
                               f"{type(error).__name__}: {error}")
                    raise ConfigError(why, key=option, value=text, filename=filename,
                                      section=section, lineno=lineno) from None
                result.origins[(section, option)] = (filename, lineno)
        return result

    def dict_from_file(self, file: str | os.PathLike[str] | IO[str]) -> SourcedDict:
        """Parse a filename or an open file into a two-level dict."""
        if hasattr(file, "read"):
            filename = getattr(file, "name", None)
            text = file.read()
        else:
            filename = os.fspath(file)
            try:
                with open(filename, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as error:
                raise ConfigError(f"cannot read the config file: {error.strerror}",
                                  filename=filename) from None
        try:
            self.read_string(text, source=str(filename or "<config>"))
        except configparser.Error as error:
            raise ConfigError(f"not a valid config file: {_first_line(error)}",
                              filename=str(filename or "<config>"),
                              lineno=getattr(error, "lineno", None)) from None
        return self.as_dict(filename=str(filename) if filename else None,
                            lines=_line_numbers(text))


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0]


def as_dict(config: Any) -> dict[str, Any]:
    """Return a dict from ``config``, whether it is a dict, a filename or an open file."""
    if isinstance(config, (str, os.PathLike)) or hasattr(config, "read"):
        return Parser().dict_from_file(config)
    if isinstance(config, SourcedDict):
        return config  # a file read before: keep where each key came from
    if not isinstance(config, Mapping):
        raise ConfigError(f"expected a dict, a filename or an open file, got {config!r}")
    return dict(config)


def merge(base: dict[str, Any], config: Any) -> None:
    """Merge a two-level config (dict, filename or file) into ``base``, section by section."""
    for section, value_map in as_dict(config).items():
        if not isinstance(value_map, Mapping):
            raise ConfigError(
                f"expected a section of keys, got {value_map!r}; application config is a "
                "dict of paths ('/', '/page') to dicts of keys", key=str(section))
        base.setdefault(section, {}).update(value_map)


# -- namespaces and the config dict ---------------------------------------------------------------

Handler = Callable[[str, Any], Any]


class NamespaceSet(dict):
    """A dict of config namespace names to handlers, called once per key of their namespace."""

    def __call__(self, config: Mapping[str, Any],
                 origin: Callable[[str], dict[str, Any]] | None = None) -> None:
        """Pass each ``namespace.key`` of ``config`` to its namespace's handler."""
        grouped: dict[str, list[tuple[str, str, Any]]] = {}
        for full_key, value in config.items():
            if "." in full_key:
                namespace, _, key = full_key.partition(".")
                grouped.setdefault(namespace, []).append((full_key, key, value))
        done: set[str] = set()
        # A handler may register more namespaces (loading an app that brings its own, as
        # services.web does): keep going until every registered namespace has had its keys.
        while pending := [n for n in self if n in grouped and n not in done]:
            for namespace in pending:
                done.add(namespace)
                handler = self[namespace]
                entries = grouped[namespace]
                if isinstance(handler, AbstractContextManager) or (
                    hasattr(handler, "__enter__") and hasattr(handler, "__exit__")
                ):
                    with handler as bound:
                        _apply_entries(bound, entries, origin)
                else:
                    _apply_entries(handler, entries, origin)

    def __repr__(self) -> str:
        return f"{self.__module__}.{self.__class__.__name__}({dict.__repr__(self)})"

    def copy(self) -> NamespaceSet:
        return self.__class__(self)


def _apply_entries(handler: Handler, entries: list[tuple[str, str, Any]],
                   origin: Callable[[str], dict[str, Any]] | None) -> None:
    for full_key, key, value in entries:
        try:
            handler(key, value)
        except ConfigError as error:
            if error.filename is None and origin is not None:
                raise ConfigError(_strip_key(str(error), full_key), key=full_key, value=value,
                                  **origin(full_key)) from None
            raise
        except (ValueError, TypeError, AttributeError, LookupError) as error:
            where = origin(full_key) if origin is not None else {}
            raise ConfigError(f"{type(error).__name__}: {error}", key=full_key, value=value,
                              **where) from None


def _strip_key(message: str, key: str) -> str:
    prefix = f"{key}: "
    return message[len(prefix):] if message.startswith(prefix) else message


class Config(dict):
    """A dict of site-wide config with defaults, environments and namespaces.

    ``update`` takes a dict, a filename or an open file; of a file, only ``[global]`` is site
    config (the ``[/path]`` sections belong to apps, other sections to their owners).
    """

    defaults: dict[str, Any] = {}
    environments = environments
    namespaces: NamespaceSet

    def __init__(self, file: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.namespaces = NamespaceSet()
        self.files: list[str] = []
        self._explicit: set[str] = set()
        self.reset()
        if file is not None:
            self.update(file)
        if kwargs:
            self.update(kwargs)

    def reset(self) -> None:
        """Forget every setting made: back to the defaults."""
        self.clear()
        self._explicit.clear()
        dict.update(self, self.defaults)

    def update(self, config: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Update self from a dict, a filename or an open file, and run the namespaces."""
        if config is None:
            config = {}
        if isinstance(config, (str, os.PathLike)):
            self.files.append(os.path.abspath(os.fspath(config)))
        parsed = as_dict(config)
        origins = getattr(parsed, "origins", None)
        if isinstance(parsed.get("global"), Mapping):
            parsed = dict(parsed["global"])
        parsed.update(kwargs)
        self._apply(parsed, _origin_lookup(origins, "global"))

    def _apply(self, config: dict[str, Any],
               origin: Callable[[str], dict[str, Any]] | None = None) -> None:
        given = set(config) - {"environment"}
        which_env = config.get("environment")
        if which_env:
            if which_env not in self.environments:
                where = origin("environment") if origin else {}
                raise ConfigError(
                    f"unknown environment {which_env!r}; expected one of "
                    f"{', '.join(sorted(self.environments))}",
                    key="environment", value=which_env, **where)
            for key, value in self.environments[which_env].items():
                # Keys given explicitly win, in this update or an earlier one (a config file
                # read before `-e production`, whose `log.screen = True` must stay).
                if key not in given and key not in self._explicit:
                    config[key] = value
        self._explicit |= given
        dict.update(self, config)
        self.namespaces(config, origin)

    def __call__(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        """Decorate a handler or class, merging these keys into its ``_cp_config``."""
        if args:
            raise TypeError("use config(**{'tools.x.on': True}) with keyword entries only")

        def decorator(func: Any) -> Any:
            if not hasattr(func, "_cp_config"):
                func._cp_config = {}
            func._cp_config.update(kwargs)
            return func

        return decorator


def _origin_lookup(origins: dict[tuple[str, str], tuple[str | None, int | None]] | None,
                   section: str) -> Callable[[str], dict[str, Any]] | None:
    if not origins:
        return None

    def lookup(key: str) -> dict[str, Any]:
        filename, lineno = origins.get((section, key), (None, None))
        return {"filename": filename, "section": section if filename else None,
                "lineno": lineno}

    return lookup


def iter_namespace(config: Mapping[str, Any], namespace: str) -> Iterator[tuple[str, Any]]:
    """Yield (rest, value) for every ``namespace.rest`` key of a flat config."""
    prefix = namespace + "."
    for key, value in config.items():
        if key.startswith(prefix):
            yield key[len(prefix):], value
