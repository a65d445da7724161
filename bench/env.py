"""The benchmarks' own environment: a virtualenv in bench/.venv with the peers installed.

The peers (CherryPy, gunicorn) are installed there, never as dependencies of sitebus. Every
benchmark script re-executes itself inside that environment, so one command does it all.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".venv"
PEERS = ["cherrypy==18.10.0", "gunicorn==27.0.1", "inotify", "psutil", "flask",
         "prometheus-client", "uvicorn[standard]", "uvicorn-worker==0.4.0"]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> None:
    """Create bench/.venv with sitebus (this checkout) and the peers; top it up when PEERS grows."""
    marker = VENV / ".ready"
    wanted = "\n".join(PEERS) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        return
    pip = [str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not venv_python().exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        subprocess.run([*pip, "-e", str(ROOT)], check=True)
    # The marker lists the peers it was made with, so a peer added later gets installed.
    subprocess.run([*pip, *PEERS], check=True)
    marker.write_text(wanted)


def reexec_in_venv() -> None:
    """Run the calling script again inside bench/.venv unless it already runs there."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    ensure_venv()
    os.execv(str(venv_python()), [str(venv_python()), *sys.orig_argv[1:]])


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return a plain-text table with right-aligned columns."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
