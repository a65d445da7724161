"""Code coverage of a running site, and pages to browse it (needs ``pip install coverage``).

Turn tracing on when the site starts (once, in the main thread: threads started later are
traced too; calling ``start`` again starts afresh)::

    services.web.engine.subscribe("start", covercp.start)

then browse it live by mounting ``CoverStats(covercp.the_coverage)`` (after start), or, after
the process has exited (the data is saved at exit), serve the saved data with
``covercp.serve(path, port)`` or ``python -m services.web.lib.covercp [path [port]]``. In site
config: ``tree.coverage = "/coverage", services.web.lib.covercp.CoverStats(path)``, with
the path of a data file. Nothing is traced or mounted unless asked.

``CoverStats.index`` lists the measured files below ``root`` with their coverage (``pct``:
files below this percentage are marked; ``showpct``: show only those; ``exclude``: a regular
expression of paths to leave out); ``report?name=...`` shows a file's source with its
missed lines marked. Only files the coverage data measured can be shown.
"""

from __future__ import annotations

import atexit
import html
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

from services.web._cperror import NotFound
from services.web._helper import expose

__all__ = ["CoverStats", "get_tree", "serve", "start", "the_coverage"]

the_coverage: Any = None
"""The Coverage object ``start`` made (None before)."""

DEFAULT_EXCLUDE = r"python\d\.\d+|site-packages|/tests?/|tut\d|tutorial"


def default_path() -> str:
    return os.path.join(tempfile.gettempdir(), f"services.web-coverage-{os.getuid()}")


def _coverage_class() -> Any:
    try:
        import coverage
    except ImportError as error:
        raise ImportError("covercp needs the 'coverage' package (pip install coverage)") \
            from error
    return coverage.Coverage


def start(path: str | None = None) -> None:
    """Start tracing (into ``path``, saved at exit); subscribe it to the bus's 'start'."""
    global the_coverage
    if the_coverage is not None:
        the_coverage.stop()
        the_coverage.erase()
    else:
        atexit.register(_save)
    the_coverage = _coverage_class()(data_file=path or default_path())
    the_coverage.start()


def _save() -> None:
    if the_coverage is not None:
        the_coverage.stop()
        the_coverage.save()


def get_tree(base: str, exclude: str, coverage: Any = None) -> dict[str, Any]:
    """Return the measured files below ``base`` as a nested dict (None at the leaves)."""
    coverage = coverage if coverage is not None else the_coverage
    tree: dict[str, Any] = {}
    pattern = re.compile(exclude) if exclude else None
    base = os.path.join(os.path.abspath(base), "")
    for filename in sorted(coverage.get_data().measured_files()):
        if not filename.startswith(base) or (pattern and pattern.search(filename)):
            continue
        node = tree
        parts = filename[len(base):].split(os.sep)
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = None
    return tree


class CoverStats:
    """Pages that show a Coverage object's data (a Coverage, or the path of a data file)."""

    def __init__(self, coverage: Any = None, root: str | None = None) -> None:
        if coverage is None or isinstance(coverage, str):
            data_file = coverage or default_path()
            coverage = _coverage_class()(data_file=data_file)
            coverage.load()
        self.coverage = coverage
        self.root = root

    def _root(self) -> str:
        if self.root:
            return self.root
        files = list(self.coverage.get_data().measured_files())
        return os.path.commonpath(files) if len(files) > 1 else \
            os.path.dirname(files[0]) if files else os.sep

    def _percent(self, filename: str) -> float:
        _, statements, _, missing, _ = self.coverage.analysis2(filename)
        if not statements:
            return 100.0
        return 100.0 * (len(statements) - len(missing)) / len(statements)

    @expose
    def index(self, base: str = "", pct: str = "50", showpct: str = "",
              exclude: str = DEFAULT_EXCLUDE) -> str:
        return self.menu(base, pct, showpct, exclude)

    @expose
    def menu(self, base: str = "", pct: str = "50", showpct: str = "",
             exclude: str = DEFAULT_EXCLUDE) -> str:
        base = base or self._root()
        try:
            threshold = float(pct)
            tree = get_tree(base, exclude, self.coverage)
        except (ValueError, re.error) as error:
            return f"<html><body><p>Bad query: {html.escape(str(error))}</p></body></html>"
        rows = []
        for path, depth, filename in _walk(tree, base):
            if filename is None:
                rows.append(f'<div style="margin-left:{depth}em"><b>'
                            f"{html.escape(path)}/</b></div>")
                continue
            percent = self._percent(filename)
            if showpct and percent >= threshold:
                continue
            mark = ' style="color:#b00"' if percent < threshold else ""
            link = html.escape(f"report?name={filename}", quote=True)
            rows.append(f'<div style="margin-left:{depth}em"><a href="{link}"{mark}>'
                        f"{html.escape(path)}</a> {percent:.0f}%</div>")
        form = (f'<form method="GET">Base <input name="base" value="{html.escape(base, True)}" '
                f'size="40"> Mark below <input name="pct" value="{html.escape(pct, True)}" '
                f'size="3">% <label><input type="checkbox" name="showpct" value="1"'
                f'{" checked" if showpct else ""}> only those</label> Exclude <input '
                f'name="exclude" value="{html.escape(exclude, True)}" size="30"> '
                '<input type="submit" value="Show"></form>')
        return ("<html><head><title>Coverage</title></head><body><h1>Coverage</h1>"
                f"{form}{''.join(rows) or '<p>No measured files here.</p>'}</body></html>")

    @expose
    def report(self, name: str) -> Any:
        if name not in self.coverage.get_data().measured_files():
            raise NotFound()
        filename, statements, excluded, missing, _ = self.coverage.analysis2(name)
        head = (f"<html><head><title>{html.escape(name)}</title><style>"
                ".covered{background:#efe}.missed{background:#fcc}.excluded{color:#888}"
                "pre{margin:0}</style></head><body><h1>"
                f"{html.escape(name)}</h1><p>{self._percent(name):.0f}% covered; missed lines "
                "in red.</p><table>")
        body = "".join(self.annotated_file(filename, statements, excluded, missing))
        return head + body + "</table></body></html>"

    def annotated_file(self, filename: str, statements: Any, excluded: Any,
                       missing: Any) -> Iterator[str]:
        """Yield a table row per source line, marked covered, missed or excluded."""
        statements, excluded, missing = set(statements), set(excluded), set(missing)
        with open(filename, encoding="utf-8", errors="replace") as source:
            for lineno, line in enumerate(source, 1):
                kind = "missed" if lineno in missing else "excluded" if lineno in excluded \
                    else "covered" if lineno in statements else ""
                yield (f'<tr class="{kind}"><td>{lineno}</td><td><pre>'
                       f"{html.escape(line.rstrip())}</pre></td></tr>")


def _walk(tree: dict[str, Any], base: str, depth: int = 0
          ) -> Iterator[tuple[str, int, str | None]]:
    for name, sub in sorted(tree.items(), key=lambda item: (item[1] is None, item[0])):
        path = os.path.join(base, name)
        if sub is None:
            yield name, depth, path
        else:
            yield name, depth, None
            yield from _walk(sub, path, depth + 1)


def serve(path: str | None = None, port: int = 8080, root: str | None = None) -> None:
    """Serve the coverage data saved in ``path`` on 127.0.0.1:``port`` until interrupted."""
    import services.web as cherrypy

    cherrypy.config.update({"server.socket_port": int(port), "server.thread_pool": 10,
                            "environment": "production"})
    cherrypy.quickstart(CoverStats(path or default_path(), root))


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    serve(args[0] if args else None, int(args[1]) if len(args) > 1 else 8080)
