"""Autoreload in a real site: edits are served at once, a syntax error never takes it down."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sites import get, ready_addresses, run_site, tcp_port
from tests.processes import wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

APP = '''\
def app(environ, start_response):
    body = b"{text}"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def serves(port: int, text: bytes) -> bool:
    try:
        return get(port, "/")[1] == text
    except OSError:
        return False


def test_edits_in_place_and_by_rename_are_served_and_a_syntax_error_is_survived(
    spawn: Any, tmp_path: Path
) -> None:
    module = tmp_path / "editable.py"
    module.write_text(APP.format(text="first"))
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      "tree.app = '', 'editable:app'\n", "-P", str(tmp_path))
    port = tcp_port(ready_addresses(child))
    assert get(port, "/")[1] == b"first"

    module.write_text(APP.format(text="edited in place"))
    wait_until(lambda: serves(port, b"edited in place"), 30, "the in-place edit to be served")

    swap = tmp_path / ".editable.py.swp"
    swap.write_text(APP.format(text="saved by rename"))
    os.replace(swap, module)
    wait_until(lambda: serves(port, b"saved by rename"), 30, "the renamed save to be served")

    module.write_text("def app(environ, start_response:\n")  # a syntax error
    child.wait_for_output(r"syntax error in .*editable\.py, line 1")
    assert get(port, "/")[1] == b"saved by rename"  # the running code keeps serving

    module.write_text(APP.format(text="fixed"))
    wait_until(lambda: serves(port, b"fixed"), 30, "the fix to be served")
    restarts = re.findall(r"Restarting because .*editable\.py changed", child.output)
    assert len(restarts) == 3  # in place, by rename, the fix: one restart each
