"""CherryPy's own test suite on services.web, beside the same files on CherryPy itself.

    python bench/cherrypy_suite.py [-k SUBSTRING ...] [--no-reference] [--failures]
                                   [--timeout SECONDS]

The suite is the ``cherrypy/test`` directory of the cherrypy package installed in bench/.venv
(never copied into this repository). Each ``test_*.py`` file runs in a pytest process of its
own, twice: once as released (on CherryPy), once with bench/cpsuite first on PYTHONPATH, whose
``sitecustomize`` installs an import hook answering ``cherrypy[.x]`` with ``services.web[.x]``
(the test files and the demo apps they start excepted; the test helpers are services.web's).
The table gives passed/failed per file for both; ``--failures`` names each test that fails on
services.web. Tests that skip (on either side) count in neither column.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.env import ROOT, reexec_in_venv, table  # noqa: E402

HOOK_DIR = ROOT / "bench" / "cpsuite"
SUITE_DEPS = {"pytest": "pytest", "requests": "requests", "requests_toolbelt": "requests_toolbelt",
              "path": "path", "objgraph": "objgraph"}
"""Modules the suite imports (beyond CherryPy's own dependencies) and their distributions."""


@dataclass
class Outcome:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    note: str = ""


def ensure_suite_deps() -> None:
    """Install what the suite imports into bench/.venv, if missing."""
    import importlib.util

    missing = [dist for mod, dist in SUITE_DEPS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *missing], check=True)


def suite_dir() -> Path:
    sys.path.insert(0, str(HOOK_DIR))
    try:
        import alias
    finally:
        sys.path.pop(0)
    return alias.installed_suite_dir()


def run_file(test_file: Path, on_web: bool, workdir: Path, timeout: float) -> Outcome:
    """Run one test file in its own pytest process; return its per-test outcomes."""
    report = workdir / "report.xml"
    report.unlink(missing_ok=True)
    env = dict(os.environ)
    paths = [str(ROOT)]
    if on_web:
        paths.insert(0, str(HOOK_DIR))
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    argv = [sys.executable, "-m", "pytest", "-c", str(workdir / "pytest.ini"),
            "--rootdir", str(workdir), "-p", "no:cacheprovider", "-q",
            f"--junitxml={report}", str(test_file)]
    # A session of its own, so a timeout ends the test run and every process it started.
    proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return Outcome(note=f"timed out after {timeout:.0f} s")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what the tests left running
        except ProcessLookupError:
            pass
    outcome = Outcome()
    if not report.exists():
        outcome.note = f"no report (exit {proc.returncode}): {output[-300:]!r}"
        return outcome
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        if case.find("skipped") is not None:
            outcome.skipped.append(name)
        elif case.find("failure") is not None or case.find("error") is not None:
            outcome.failed.append(name)
        else:
            outcome.passed.append(name)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="only", action="append", default=[],
                        help="run only the files whose name contains this (repeatable)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the run on CherryPy itself")
    parser.add_argument("--failures", action="store_true",
                        help="name each test that fails on services.web")
    parser.add_argument("--timeout", type=float, default=600, help="per file, in seconds")
    args = parser.parse_args()
    reexec_in_venv()
    ensure_suite_deps()
    files = sorted(suite_dir().glob("test_*.py"))
    if args.only:
        files = [f for f in files if any(s in f.name for s in args.only)]
    rows = []
    totals = [0, 0, 0, 0]
    failures: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="cherrypy-suite-") as tmp:
        workdir = Path(tmp)
        (workdir / "pytest.ini").write_text("[pytest]\n")
        for test_file in files:
            web = run_file(test_file, True, workdir, args.timeout)
            ref = None if args.no_reference else run_file(test_file, False, workdir, args.timeout)
            totals[0] += len(web.passed)
            totals[1] += len(web.failed)
            if ref is not None:
                totals[2] += len(ref.passed)
                totals[3] += len(ref.failed)
            failures[test_file.name] = web
            row = [test_file.name, len(web.passed), len(web.failed)]
            if ref is not None:
                row += [len(ref.passed), len(ref.failed)]
            row.append("; ".join(n for n in (web.note, ref.note if ref else "") if n))
            rows.append(row)
            print(f"{test_file.name}: {len(web.passed)} passed, {len(web.failed)} failed"
                  + (f" (CherryPy {len(ref.passed)}/{len(ref.failed)})" if ref else ""),
                  file=sys.stderr, flush=True)
    headers = ["file", "web passed", "web failed"]
    total_row: list[object] = ["total", totals[0], totals[1]]
    if not args.no_reference:
        headers += ["CherryPy passed", "CherryPy failed"]
        total_row += [totals[2], totals[3]]
    headers.append("note")
    total_row.append("")
    print(table(headers, [*rows, total_row]))
    if args.failures:
        for name, outcome in failures.items():
            for test in outcome.failed:
                print(f"FAILED on services.web: {name}::{test}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
