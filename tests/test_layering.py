"""The bus stands alone: bus.py and plugins.py import only the standard library, and no
sitebus module imports services (the CLI and the site load apps by name at run time)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sitebus"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("name", ["bus.py", "plugins.py"])
def test_bus_and_plugins_use_the_standard_library_only(name: str) -> None:
    allowed_own = {"sitebus.bus"} if name == "plugins.py" else set()
    outside = {
        module
        for module in imported_modules(PACKAGE / name)
        if module.split(".")[0] not in sys.stdlib_module_names
        and module != "__future__"
        and module not in allowed_own
    }
    assert outside == set(), f"{name} imports outside the standard library: {outside}"


def test_no_sitebus_module_imports_services() -> None:
    offenders = {
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if any(m == "services" or m.startswith("services.") for m in imported_modules(path))
    }
    assert offenders == set()


def test_the_checker_catches_a_third_party_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom cheroot import wsgi\nimport services.web\n")
    assert imported_modules(bad) == {"os", "cheroot", "services.web"}
