"""sitebus's packages import one way: the CLI, the site, the workers, the rest, the core; no
module imports one that imports it back.

Every import counts, at the top of a module or inside a function or ``if TYPE_CHECKING:``
alike: an import put off until it runs is still an arrow. ``ALLOWED`` is the rule the
packages' docstrings state (and docs/architecture.md draws); a new arrow that the rule does
not allow fails here, naming the module and the import. That ``bus.py`` and ``plugins.py`` use
the standard library only is test_layering's.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sitebus"


CORE = {"__init__", "bus", "plugins", "errors", "names"}
"""Modules at the top of sitebus/ that everything may use, and that use nothing else."""

TOP = {"cli", "__main__"}
"""The command line: it may use any package."""

PUBLIC = {"signals": "process", "pidfile": "process", "privileges": "process", "daemon": "process"}
"""Old public paths kept as thin re-exports, each of the package that holds the module now."""

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "process": {"core"},
    "servers": {"core"},
    "reload": {"core"},
    "systemd": {"core"},
    "workers": {"core", "process", "servers", "reload"},
    "site": {"core", "process", "servers", "reload", "systemd", "workers"},
    "cli": {"core", "process", "servers", "reload", "systemd", "workers", "site"},
}
"""Which packages each may import (besides itself)."""


def group(parts: tuple[str, ...]) -> str:
    """The package a module of sitebus belongs to, from its dotted name after ``sitebus``."""
    if not parts or parts[0] in CORE:
        return "core"
    if parts[0] in TOP:
        return "cli"
    if parts[0] in PUBLIC and len(parts) == 1:
        return f"public {parts[0]}"
    return parts[0]


def sitebus_imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Each ``sitebus`` import of a file: its text and the dotted name after ``sitebus``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "sitebus":  # from sitebus import x: x may be a module
                names = [f"sitebus.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            parts = tuple(name.split("."))
            if parts[0] == "sitebus":
                found.append((name, parts[1:]))
    return found


def arrows() -> dict[tuple[str, str], list[str]]:
    """Package to package, with the imports that make each arrow."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        source = group(parts)
        for name, target_parts in sitebus_imports(path):
            if target_parts and target_parts[0] == "__version__":
                target_parts = ()
            target = group(target_parts)
            if target != source:
                found.setdefault((source, target), []).append(f"{path.name}: {name}")
    return found


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The circles of a directed graph, each once (from its smallest node)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    found: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for following in sorted(graph.get(node, ())):
            if following == start:
                found.append([*path, start])
            elif following > start and following not in path:
                walk(start, following, [*path, following])

    for start in sorted(graph):
        walk(start, start, [start])
    return found


def test_every_module_belongs_to_a_known_package() -> None:
    groups = {str(path.relative_to(PACKAGE)): group(path.relative_to(PACKAGE).with_suffix("").parts)
              for path in PACKAGE.rglob("*.py")}
    unknown = {path for path, name in groups.items()
               if name not in ALLOWED and not name.startswith("public")}
    assert unknown == set(), "modules outside the packages ALLOWED knows"


def test_no_circles_between_packages() -> None:
    found = cycles(set(arrows()))
    assert found == [], f"import circles between sitebus's packages: {found}"


def test_imports_run_down_the_layers_only() -> None:
    wrong = {
        f"{source} -> {target}": why
        for (source, target), why in arrows().items()
        if not source.startswith("public") and target not in ALLOWED.get(source, set())
    }
    assert wrong == {}, "imports the layer rule does not allow (see ALLOWED)"


def test_public_paths_only_re_export() -> None:
    for name, package in PUBLIC.items():
        targets = {parts for _, parts in sitebus_imports(PACKAGE / f"{name}.py")}
        assert targets == {(package, name)}, f"sitebus/{name}.py should import {package}.{name}"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_a_public_path_re_exports_the_moved_module(name: str) -> None:
    public = importlib.import_module(f"sitebus.{name}")
    moved = importlib.import_module(f"sitebus.{PUBLIC[name]}.{name}")
    assert public.__all__ == sorted(moved.__all__)
    for attribute in moved.__all__:
        assert getattr(public, attribute) is getattr(moved, attribute)


def test_the_checker_finds_a_circle_and_a_lazy_import(tmp_path: Path) -> None:
    assert cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c", "a"]]
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from sitebus.site.container import Site\n"
                      "def f():\n    from sitebus import __version__, bus\n")
    assert sitebus_imports(module) == [
        ("sitebus.site.container", ("site", "container")),
        ("sitebus.__version__", ("__version__",)),
        ("sitebus.bus", ("bus",)),
    ]


def module_arrows() -> dict[tuple[str, str], list[str]]:
    """Module to module within sitebus (a package by its dotted name), with the imports."""
    modules = {".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(
        ".__init__") for path in PACKAGE.rglob("*.py")}
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(
            ".__init__")
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # from sitebus.servers import handover: the module handover, if it is one
                names = []
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    names.append(full if full.removeprefix("sitebus.") in modules else node.module)
            else:
                continue
            for name in names:
                if name.startswith("sitebus.") and name.removeprefix("sitebus.") != source:
                    target = name.removeprefix("sitebus.")
                    if target in modules:
                        found.setdefault((source, target), []).append(f"{path.name}: {name}")
    return found


def test_no_circles_between_modules() -> None:
    # Type-only imports count too: a Protocol says what one module needs of another.
    edges = set(module_arrows())
    assert ("servers.server", "servers.registry") in edges  # the graph is read at all
    found = cycles(edges)
    assert found == [], f"import circles between sitebus's modules: {found}"
