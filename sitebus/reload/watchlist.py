"""What the Autoreloader watches: module files, named files, their real paths and mtimes.

The files are those of the imported modules whose names match a regular expression
(``module_files``, the reference's ``sysfiles()``) and those named in the plugin's ``files``
set. A relative module path is absolute against the directory the process was in when it
imported the module (taken here, at import time, as the reference does); a ``.pyc`` stands
for its ``.py``; a module loaded from a zip archive stands for the archive. Files are keyed by
their real path, so a change made through a symbolic link, or to its target, is seen; messages
name them as imported or given. A file that does not exist is skipped, as the reference does,
and looked for again at the next scan.

Two sources say when there may be more to watch: ``WatchedFiles`` (the ``files`` set) when
something is added, and ``ImportNotifier``, a finder first on ``sys.meta_path`` that finds
nothing and only notes that an import is under way. An audit hook on 'import' was rejected: it
runs for every audited event of the process and cannot be removed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from sitebus.errors import ConfigError

__all__ = ["WatchList", "WatchedFiles", "ImportNotifier", "module_files", "source_path",
           "module_file_base"]

module_file_base = os.getcwd()
"""The directory relative module paths are relative to: the working directory at start-up."""

Found = tuple[str, str, float]  # (name as imported or given, real path, mtime)


def source_path(filename: str, base: str) -> str:
    """Return the absolute source file for a module's ``__file__`` (``.pyc`` gives ``.py``)."""
    path = os.path.normpath(os.path.join(base, filename))
    if not path.endswith(".pyc"):
        return path
    if os.path.basename(os.path.dirname(path)) == "__pycache__":
        try:
            return importlib.util.source_from_cache(path)
        except (ValueError, NotImplementedError):
            pass
    return path[:-1]


def module_files(modules: Mapping[str, Any], match: str, base: str) -> set[str]:
    """Return the source files of the modules whose names match ``match`` (``re.match``)."""
    pattern = re.compile(match)
    found: set[str] = set()
    for name, module in list(modules.items()):
        if module is None or not pattern.match(name):
            continue
        try:
            archive = getattr(getattr(module, "__loader__", None), "archive", None)
            filename = archive if isinstance(archive, str) else getattr(module, "__file__", None)
        except Exception:  # a lazy module whose attribute access imports, and fails
            continue
        if isinstance(filename, str) and filename:
            found.add(source_path(filename, base))
    return found


def resolve(path: str, real_directories: dict[str, str]) -> tuple[str, float]:
    """Return the real path of an existing file and its mtime; raise OSError if it is missing.

    Symbolic links are resolved once per directory (``real_directories`` caches them), so a
    scan of a thousand modules costs a thousand lstat calls, not one per path component.
    """
    directory, name = os.path.split(path)
    real_directory = real_directories.get(directory)
    if real_directory is None:
        real_directory = real_directories[directory] = os.path.realpath(directory)
    real = os.path.join(real_directory, name)
    info = os.lstat(real)
    if stat.S_ISLNK(info.st_mode):
        real = os.path.realpath(real)
        info = os.stat(real)
    return real, info.st_mtime


def check_file_name(item: object, setting: str = "engine.autoreload.files") -> None:
    """Raise ConfigError unless ``item`` can name a file."""
    if not isinstance(item, (str, os.PathLike)) or not os.fspath(item):
        raise ConfigError(f"expected file names (strings or paths), got {item!r}",
                          key=setting, value=item)


class WatchList:
    """The watched files: real path to name, grouped by real directory, with their mtimes.

    Not thread-safe: the Autoreloader calls ``add`` and the look-ups under its own lock.
    """

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # real path -> name as imported or given
        self.by_directory: dict[str, set[str]] = {}  # real directory -> real paths
        self.mtimes: dict[str, float] = {}  # name -> mtime when first seen or last acted on

    def unseen(self, names: Iterable[str]) -> list[Found]:
        """Return the existing files among ``names`` not watched yet (reads the disk only)."""
        found = []
        real_directories: dict[str, str] = {}
        for name in sorted(names):
            if name in self.mtimes:
                continue
            try:
                real, mtime = resolve(name, real_directories)
            except OSError:
                continue  # not there: a sourceless module, a file not made yet
            found.append((name, real, mtime))
        return found

    def add(self, found: Iterable[Found]) -> None:
        """Watch the files ``unseen`` returned."""
        for name, real, mtime in found:
            self.names[real] = name
            self.by_directory.setdefault(os.path.dirname(real), set()).add(real)
            self.mtimes[name] = mtime

    def affected(self, path: str) -> list[str]:
        """Return the watched files a change to ``path`` concerns (a file, or its directory)."""
        if path in self.names:
            return [path]
        return sorted(self.by_directory.get(path, ()))  # the directory was deleted or moved

    def modified(self) -> list[str]:
        """Return the watched files whose mtime differs from the one recorded, or are gone."""
        found = []
        for real, name in list(self.names.items()):
            try:
                mtime: float | None = os.stat(real).st_mtime
            except OSError:
                mtime = None
            if mtime != self.mtimes.get(name):
                found.append(real)
        return found

    def refresh(self, reals: Iterable[str]) -> None:
        """Record the current mtimes of ``reals`` (acted on: not 'modified' any more)."""
        for real in reals:
            name = self.names.get(real)
            if name is not None:
                try:
                    self.mtimes[name] = os.stat(real).st_mtime
                except OSError:
                    pass


class WatchedFiles(set[Any]):
    """The ``files`` set: a plain set that says when files are added, and checks they are names."""

    def __init__(self, items: Iterable[Any] = (), on_add: Callable[[], None] | None = None):
        items = list(items)
        for item in items:
            check_file_name(item)
        super().__init__(items)
        self._on_add = on_add

    def add(self, item: Any) -> None:
        check_file_name(item)
        super().add(item)
        self._added()

    def update(self, *others: Iterable[Any]) -> None:
        items = [item for other in others for item in other]
        for item in items:
            check_file_name(item)
        super().update(items)
        self._added()

    def __ior__(self, other: AbstractSet[Any]) -> WatchedFiles:  # type: ignore[misc]
        self.update(other)
        return self

    def _added(self) -> None:
        if self._on_add is not None:
            self._on_add()

    def names(self, base: str) -> set[str]:
        """Return the absolute, normalised names of the files (relative ones against ``base``)."""
        return {os.path.normpath(os.path.join(base, os.fspath(item))) for item in list(self)}


class ImportNotifier:
    """A meta path finder that finds nothing: it says that an import is under way."""

    def __init__(self, notify: Callable[[], None]) -> None:
        self._notify = notify

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        try:
            self._notify()
        except Exception:
            pass  # never break an import
        return None

    def invalidate_caches(self) -> None:
        pass
