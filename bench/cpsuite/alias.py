"""An import hook that answers ``cherrypy`` and ``cherrypy.x`` with ``services.web[.x]``.

Used by bench/cherrypy_suite.py to run CherryPy's own test files against services.web. Only
the suite's own files (``cherrypy.test.test_*`` and the demo apps those tests start) come from
the installed cherrypy package; everything else they import, the test helpers included, is
services.web's. A name services.web lacks fails to import, as it would for a user.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ALIAS = "cherrypy"
TARGET = "services.web"
# Modules of cherrypy/test that are test *support*: these must be services.web's own.
SUPPORT = {"helper", "webtest", "logtest", "_test_decorators"}


def installed_suite_dir() -> Path:
    """Return the directory of the installed cherrypy package's tests, without importing it."""
    spec = importlib.machinery.PathFinder.find_spec(ALIAS)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("cherrypy is not installed: its test suite comes from the package")
    return Path(next(iter(spec.submodule_search_locations))) / "test"


class _Existing(importlib.abc.Loader):
    """Hand back an already imported module under a second name."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec: Any) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        # module_from_spec stamped the alias spec on it: the module keeps its real identity.
        module.__spec__ = self.spec


class AliasFinder(importlib.abc.MetaPathFinder):
    """Resolve ``cherrypy[.x]`` to ``services.web[.x]``, the suite's own files excepted."""

    def __init__(self) -> None:
        self.suite = installed_suite_dir()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        parts = fullname.split(".")
        if len(parts) == 3 and parts[1] == "test" and parts[2] not in SUPPORT:
            source = self.suite / f"{parts[2]}.py"
            if source.exists():
                return importlib.util.spec_from_file_location(fullname, source)
        real = TARGET + fullname[len(ALIAS):]
        try:
            module = importlib.import_module(real)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (real == exc.name or real.startswith(exc.name + ".")):
                return None
            raise
        return importlib.machinery.ModuleSpec(fullname, _Existing(module),
                                              is_package=hasattr(module, "__path__"))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
