"""List the long string literals of sitebus/ and services/ that also appear in cherrypy or gunicorn.

`duplicates` (run by .ci/own-words) only sees places of 6+ lines, so a docstring or a message
copied alone slips past it. This reads every string constant with `ast`, squeezes its whitespace,
and prints each of ours (path:line) whose text is also a constant in the packages installed in
bench/.venv, unless .ci/own-words-facts.txt keeps it as a fact: a message a test asserts or users
grep for. Exit 1 if any is left, or if a kept fact no longer matches anything (the list stays
exact); 0 if none. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ("sitebus", "services")
THEIRS = ("cherrypy", "gunicorn")


def literals(path: Path, shortest: int) -> list[tuple[str, int]]:
    """Each string constant of a file, whitespace squeezed, if `shortest` long; with its line."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return []  # the packages ship a few templates named .py; they hold no Python to compare
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = re.sub(r"\s+", " ", node.value).strip()
            if len(text) >= shortest:
                found.append((text, node.lineno))
    return found


def read_facts(path: Path) -> dict[str, str]:
    """The kept texts: one per line as `TEXT | REASON`; blank lines and `#` lines are skipped."""
    facts = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text, bar, reason = line.rpartition(" | ")
        if not bar or not text.strip() or not reason.strip():
            print(f"{path}, line {number}: expected 'TEXT | REASON', got {line!r}", file=sys.stderr)
            raise SystemExit(65)  # EX_DATAERR
        facts[re.sub(r"\s+", " ", text).strip()] = reason.strip()
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shortest", type=int, default=40, metavar="N",
                        help="compare literals of at least N characters (default 40)")
    parser.add_argument("--facts", type=Path, default=ROOT / ".ci" / "own-words-facts.txt",
                        help="the kept texts (default .ci/own-words-facts.txt)")
    args = parser.parse_args()

    site_packages = sorted(ROOT.glob("bench/.venv/lib/python3*/site-packages"))
    packages = [site_packages[0] / name for name in THEIRS] if site_packages else []
    if not packages or not all(p.is_dir() for p in packages):
        print("own-literals: no cherrypy and gunicorn in bench/.venv"
              " (run python bench/env.py first)", file=sys.stderr)
        return 69  # EX_UNAVAILABLE, as .ci/own-words
    theirs: dict[str, str] = {}
    for package in packages:
        for path in sorted(package.rglob("*.py")):
            for text, line in literals(path, args.shortest):
                theirs.setdefault(text, f"{path.relative_to(package.parent)}:{line}")
    facts = read_facts(args.facts) if args.facts.exists() else {}

    left, kept = [], set()
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            for text, line in literals(path, args.shortest):
                if text not in theirs:
                    continue
                if text in facts:
                    kept.add(text)
                    continue
                left.append(f"{path.relative_to(ROOT)}:{line} = {theirs[text]}\n    {text[:150]!r}")
    stale = [text for text in facts if text not in kept]

    for row in left:
        print(row)
    for text in stale:
        print(f"{args.facts.name}: kept text matches nothing now: {text[:150]!r}")
    if left or stale:
        print(f"own-literals: {len(left)} literal(s) of {args.shortest}+ characters shared with"
              f" cherrypy/gunicorn, {len(stale)} stale fact(s)", file=sys.stderr)
        return 1
    print(f"own-literals: no literal of {args.shortest}+ characters shared with cherrypy or"
          f" gunicorn beyond the {len(kept)} kept facts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
