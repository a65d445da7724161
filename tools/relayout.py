"""Group sitebus/'s flat modules into packages by concern, and rewrite every reference to them.

    python tools/relayout.py --check    # validate the table against the tree, change nothing
    python tools/relayout.py            # check, then move and rewrite (in a clean git work tree)

``TABLE`` maps each module of ``sitebus/`` (``sitebus/<name>.py``) to its new dotted path;
``STAYS`` lists the modules that stay where they are. The run is check-first: it changes nothing
unless every module of ``sitebus/`` is in one of the two (a module that landed from another
branch fails the check, by name: add its row), every row's source exists, no target exists, and
the git work tree is clean (so ``git checkout . && git clean -fd sitebus`` undoes a run).

Then it ``git mv``s each module, writes each package's ``__init__.py`` (its docstring says what
the package holds and what it may import), and rewrites the references in every tracked text
file: ``from sitebus.x import``, ``import sitebus.x``, ``from sitebus import x``, dotted paths
in strings and docs (``"sitebus.x:Name"``, monkeypatch and mock targets, ``-m sitebus.x``,
entry points), and ``sitebus/x.py`` paths. The public paths README documents (``PUBLIC``) keep
working through thin modules that re-export the moved module's ``__all__``; README keeps naming
them. Last, it sorts the rewritten imports (``ruff check --select I --fix``) and deletes the
lines marked ``# relayout: delete this line`` (the guard that skips tests/test_layout.py on the
flat layout). Every change is staged (``git add``), so the index and the tree agree; review
with ``git diff --cached``. The layout and its rule are explained in docs/architecture.md.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sitebus"

STAYS = {"__init__", "__main__", "bus", "plugins", "errors", "names", "cli"}
"""The core, at the top of sitebus/: the bus and its plugin base, errors, names, and the CLI."""

TABLE: dict[str, str] = {
    # process services: what a daemon owes the system
    "signals": "sitebus.process.signals",
    "pidfile": "sitebus.process.pidfile",
    "pidowner": "sitebus.process.pidowner",
    "privileges": "sitebus.process.privileges",
    "daemon": "sitebus.process.daemon",
    "reaper": "sitebus.process.reaper",
    "status": "sitebus.process.status",
    # servers and listeners
    "servers": "sitebus.servers.server",
    "servertypes": "sitebus.servers.registry",
    "adapter": "sitebus.servers.adapter",
    "listeners": "sitebus.servers.listeners",
    "handover": "sitebus.servers.handover",
    "wsgiserver": "sitebus.servers.wsgiserver",
    "headreader": "sitebus.servers.headreader",
    "connection": "sitebus.servers.connection",
    "framing": "sitebus.servers.framing",
    "strictgateway": "sitebus.servers.strictgateway",
    "drain": "sitebus.servers.drain",
    "gateways": "sitebus.servers.gateways",
    "asgiserver": "sitebus.servers.asgiserver",
    "asgi": "sitebus.servers.asgi",
    "wsgibridge": "sitebus.servers.wsgibridge",
    "observe": "sitebus.servers.observe",
    "asgiobserve": "sitebus.servers.asgiobserve",
    # pre-fork workers
    "workers": "sitebus.workers.master",
    "worker": "sitebus.workers.worker",
    "supervisor": "sitebus.workers.supervisor",
    "supervision": "sitebus.workers.supervision",
    "forkbus": "sitebus.workers.forkbus",
    # reload on code changes
    "autoreload": "sitebus.reload.autoreload",
    "watchers": "sitebus.reload.watchers",
    "watchlist": "sitebus.reload.watchlist",
    # the site container
    "site": "sitebus.site.container",
    "launch": "sitebus.site.launch",
    "config": "sitebus.site.config",
    "tree": "sitebus.site.tree",
    "apps": "sitebus.site.apps",
    "logs": "sitebus.site.logs",
    "accesslog": "sitebus.site.accesslog",
    "logfailures": "sitebus.site.logfailures",
    "health": "sitebus.site.health",
    "metrics": "sitebus.site.metrics",
    "proxyheaders": "sitebus.site.proxyheaders",
    "welcome": "sitebus.site.welcome",
    "unitfile": "sitebus.site.unitfile",
}

SUBPACKAGES = {"systemd"}
"""Packages of sitebus/ that already exist and stay as they are."""

PUBLIC = ("signals", "pidfile", "privileges", "daemon")
"""Old paths README documents as public: a thin module there re-exports the moved one."""

EXCLUDE = {"docs/architecture.md", "tests/test_layout.py"}
"""Files written for the new layout already: their references are not rewritten."""

DELETE_MARK = "# relayout: delete this line"

PACKAGES: dict[str, str] = {
    "process": '''The process services: what a daemon owes the system it runs on.

Signals (``signals``), the PID file and who owns it (``pidfile``, ``pidowner``), privileges
(``privileges``), daemonizing (``daemon``), reaping orphans as PID 1 (``reaper``) and the status
file the control commands read (``status``). Each is a plugin on the bus or a pure helper.

May import: the standard library, third-party packages, and the core (``sitebus.bus``,
``sitebus.plugins``, ``sitebus.errors``, ``sitebus.names``). Nothing else of sitebus.
See docs/architecture.md for the layers.
''',
    "servers": '''Servers and listeners: sockets in, WSGI or ASGI calls out.

The server plugin (``server``: one per address, on the bus at priority 75) and its registry of
server types (``registry``: cheroot, FastCGI, SCGI, CGI, uvicorn); listening sockets
(``listeners``) and their hand-over to the next image (``handover``); the cheroot WSGI server
(``wsgiserver``) with its epoll head reader (``headreader``, ``connection``), strict framing
(``framing``, ``strictgateway``) and keep-alive drain (``drain``); flup gateways
(``gateways``); the ASGI side (``asgiserver``, ``asgi``, ``wsgibridge``); what is noted of each
request for the access log and metrics (``observe``, ``asgiobserve``); the ServerAdapter base
(``adapter``).

May import: the core (``sitebus.bus``, ``sitebus.plugins``, ``sitebus.errors``,
``sitebus.names``), the standard library and the server libraries. Not the site, the workers
or the reloader: the site hands a server its WSGI app. See docs/architecture.md.
''',
    "workers": '''Pre-fork workers: the master's plugin, the child's side, supervision.

``master`` (the Workers plugin on the master's bus), ``supervisor`` (the master's thread that
forks and watches), ``worker`` (a child's side: reset the bus, serve, beat), ``supervision``
(the decisions, as pure functions) and ``forkbus`` (the bus the site uses, which can be split
between master and workers and reset after a fork).

May import: ``sitebus.servers``, ``sitebus.reload``, ``sitebus.process`` and the core. Not the
site: the site creates the Workers plugin and passes itself in. See docs/architecture.md.
''',
    "reload": '''Reload on code changes: the autoreloader, its watchers, what it watches.

``autoreload`` (the Autoreloader plugin: restart, or roll the workers, when a file changes),
``watchers`` (the file-system watcher backends, by name: inotify through watchdog, polling)
and ``watchlist`` (which files: those of the imported modules, and the config files).

May import: the core and the standard library (watchdog inside the function that uses it).
See docs/architecture.md.
''',
    "site": '''The site container: config in, a running bus with mounted apps out.

``container`` (the Site, its Engine and the process-wide ``site``, ``bus``, ``config``,
``log``, ``tree``), ``launch`` (the one start-up path ``sitebus run`` takes), ``config`` (the
config files' format, namespaces, environments), ``tree`` and ``apps`` (apps by prefix and how
they are mounted), the logs (``logs``, ``accesslog``, ``logfailures``), what the tree wraps
around a request (``proxyheaders``, ``health``, ``metrics``), the default site
(``welcome``) and its systemd units (``unitfile``).

May import: every other package of sitebus (``workers``, ``servers``, ``reload``,
``process``, ``systemd``) and the core. Only the CLI imports the site. See docs/architecture.md.
''',
}


class RelayoutError(Exception):
    """The tree is not what the table expects; nothing was changed."""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, text=True,
                          capture_output=True).stdout


def problems(applying: bool) -> list[str]:
    """Everything that keeps the table from applying to this tree, one line each."""
    found: list[str] = []
    on_disk = {path.stem for path in PACKAGE.glob("*.py")}
    for name in sorted(on_disk - STAYS - set(TABLE)):
        found.append(f"sitebus/{name}.py: not in tools/relayout.py's TABLE (add a row) "
                     "or STAYS")
    for name in sorted(set(TABLE) - on_disk):
        found.append(f"sitebus/{name}.py: in the TABLE but not in the tree (remove the row?)")
    for target in sorted(TABLE.values()):
        package, module = target.split(".")[1:]
        if package not in PACKAGES:
            found.append(f"{target}: package {package!r} has no docstring in PACKAGES")
        if (PACKAGE / package / f"{module}.py").exists():
            found.append(f"{target}: already exists (has the relayout run?)")
    for directory in sorted(p for p in PACKAGE.iterdir() if p.is_dir()):
        if any(directory.rglob("*.py")) and directory.name not in SUBPACKAGES:
            found.append(f"sitebus/{directory.name}/: a package the table does not know "
                         "(has the relayout run? else add it to SUBPACKAGES)")
    for relative in git("ls-files", "*.py").splitlines():
        if relative in EXCLUDE or not (ROOT / relative).exists():
            continue
        for number, line in enumerate((ROOT / relative).read_text().splitlines(), 1):
            if re.match(r"\s*from sitebus import \(", line):
                found.append(f"{relative}:{number}: 'from sitebus import (' over several lines: "
                             "write it on one line (or as 'from sitebus.x import y'), which "
                             "the rewriting knows")
    dirty = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    if dirty and applying:
        found.append(f"the git work tree has uncommitted changes ({dirty[0].strip()} ...): "
                     "commit or stash them first")
    return found


def rewriter() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    names = "|".join(sorted(TABLE, key=len, reverse=True))
    dotted = re.compile(rf"(?<![\w.])sitebus\.({names})\b(?!\.py\b)")
    path = re.compile(rf"(?<![\w.])sitebus/({names})\.py\b")
    from_sitebus = re.compile(r"^(?P<indent>[ \t]*)from sitebus import (?P<names>[\w ,]+?)[ \t]*$",
                              re.MULTILINE)
    return dotted, path, from_sitebus


def rewrite_from_sitebus(match: re.Match[str]) -> str:
    """``from sitebus import a, b as c``: each moved name from its new package."""
    indent = match["indent"]
    kept: list[str] = []
    lines: list[str] = []
    for item in (part.strip() for part in match["names"].split(",")):
        name, _, alias = item.partition(" as ")
        name, alias = name.strip(), alias.strip()
        if name not in TABLE:
            kept.append(item)
            continue
        package, module = TABLE[name].rsplit(".", 1)
        local = alias or name
        suffix = f" as {local}" if local != module else ""
        lines.append(f"{indent}from {package} import {module}{suffix}")
    if kept:
        lines.insert(0, f"{indent}from sitebus import {', '.join(kept)}")
    return "\n".join(lines)


def rewrite_text(text: str, public_kept: bool) -> str:
    dotted, path, from_sitebus = rewriter()

    def dotted_name(match: re.Match[str]) -> str:
        if public_kept and match[1] in PUBLIC:
            return match[0]
        return TABLE[match[1]]

    text = path.sub(lambda m: TABLE[m[1]].replace(".", "/") + ".py", text)
    text = dotted.sub(dotted_name, text)
    return from_sitebus.sub(rewrite_from_sitebus, text)  # last: its output is new already


def wrap_long_lines(text: str, limit: int = 100) -> str:
    """Rewrap the docstring and comment lines that a longer path pushed past ``limit``.

    The words past the limit go to the start of the paragraph's next line (which may push
    that one over in turn), or onto a line of their own at the end of a paragraph.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text
    inside = {row for token in tokens
              if token.type == tokenize.STRING and token.string.endswith(('"""', "'''"))
              for row in range(token.start[0] - 1, token.end[0])}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.lstrip()
        comment = stripped.startswith("#")
        indent = line[:len(line) - len(stripped)]
        cut = line.rfind(" ", len(indent) + 2, limit + 1)
        if len(line) <= limit or not (comment or index in inside) or cut < 0:
            index += 1
            continue
        head, tail = line[:cut], line[cut + 1:]
        if stripped[:2] in ("- ", "* ") or re.match(r"\d+\. ", stripped):
            indent += " " * (stripped.index(" ") + 1)  # a list item's hanging indent
        following = lines[index + 1] if index + 1 < len(lines) else ""
        same_paragraph = (
            following.strip() and not tail.endswith(('"""', "'''"))
            and following[:len(indent)] == indent and not following[len(indent)].isspace()
            and not following.lstrip().startswith(("-", "*", '"""', "'''", "``", ">>>"))
            and (following.lstrip().startswith("#") == comment)
            and (comment or index + 1 in inside)
        )
        lines[index] = head
        if same_paragraph:
            rest = following.lstrip()[2:] if comment else following.lstrip()
            lines[index + 1] = f"{indent}{'# ' if comment else ''}{tail} {rest}"
        else:
            lines.insert(index + 1, f"{indent}{'# ' if comment else ''}{tail}")
            inside = {row + 1 if row > index else row for row in inside} | (
                {index + 1} if index in inside else set())
        index += 1
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def public_module(name: str) -> str:
    """The thin module left at ``sitebus/<name>.py``: the moved module's ``__all__``."""
    target = TABLE[name]
    source = (ROOT / (target.replace(".", "/") + ".py")).read_text()
    exported: list[str] | None = None
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            exported = list(ast.literal_eval(node.value))
    if not exported:
        raise RelayoutError(f"{target} has no __all__ to re-export at sitebus.{name}")
    listed = "".join(f"    {item},\n" for item in sorted(exported))
    quoted = "".join(f"    {item!r},\n" for item in sorted(exported))
    return (f'"""``sitebus.{name}``: a public path README documents, kept for the module\n'
            f'now at ``{target}``."""\n\n'
            f"from {target} import (\n{listed})\n\n"
            f"__all__ = [\n{quoted.replace(chr(39), chr(34))}]\n")


def apply() -> list[Path]:
    """Move, write the packages, rewrite the references; return the Python files changed."""
    for package, doc in PACKAGES.items():
        if package in {TABLE[name].split(".")[1] for name in TABLE}:
            init = PACKAGE / package / "__init__.py"
            init.parent.mkdir(exist_ok=True)
            init.write_text(f'"""{doc}"""\n')
            git("add", str(init.relative_to(ROOT)))
    for name, target in TABLE.items():
        git("mv", f"sitebus/{name}.py", target.replace(".", "/") + ".py")
    changed: list[Path] = []
    for relative in git("ls-files").splitlines():
        path = ROOT / relative
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        new = text
        if relative not in EXCLUDE:
            new = rewrite_text(text, public_kept=relative == "README.md")
        new = "".join(line for line in new.splitlines(keepends=True)
                      if not line.rstrip().endswith(DELETE_MARK))
        if path.suffix == ".py" and new != text:
            new = wrap_long_lines(new)
        if new != text:
            path.write_text(new)
            git("add", relative)
            if path.suffix == ".py":
                changed.append(path)
    for name in PUBLIC:
        compat = PACKAGE / f"{name}.py"
        compat.write_text(public_module(name))
        git("add", str(compat.relative_to(ROOT)))
    return changed


def sort_imports(paths: list[Path]) -> None:
    """Put the rewritten imports back in ruff's order (isort's rule, as the project runs it)."""
    if not paths:
        return
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "I", "--fix",
                             "--quiet", *map(str, paths)], cwd=ROOT, text=True,
                            capture_output=True)
    if result.returncode not in (0, 1):
        print(f"relayout: could not sort imports with ruff: {result.stderr.strip()}",
              file=sys.stderr)
    git("add", *(str(path.relative_to(ROOT)) for path in paths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="validate the table against the tree and change nothing")
    args = parser.parse_args(argv)
    found = problems(applying=not args.check)
    if found:
        for line in found:
            print(f"relayout: {line}", file=sys.stderr)
        print("relayout: nothing was changed", file=sys.stderr)
        return 65  # EX_DATAERR
    if args.check:
        print(f"relayout: the table applies: {len(TABLE)} modules move, "
              f"{len(STAYS)} stay, {len(PUBLIC)} public paths kept")
        return 0
    try:
        changed = apply()
    except (RelayoutError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or ""
        print(f"relayout: {error} {detail}".rstrip(), file=sys.stderr)
        print("relayout: undo with: git checkout . && git clean -fd sitebus", file=sys.stderr)
        return 70  # EX_SOFTWARE
    sort_imports(changed)
    print(f"relayout: moved {len(TABLE)} modules into {len(PACKAGES)} packages, rewrote "
          f"{len(changed)} Python files; next: ruff, mypy, the whole suite, then commit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
