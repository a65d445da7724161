"""contrib's balancer files pass their own checkers (nginx -t, haproxy -c) with only addresses
and paths replaced; the systemd drop-in for several instances passes systemd-analyze verify.
(tests/integration/test_cluster_process.py runs them in front of real instances.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.frontends import (
    CONTRIB,
    HAPROXY,
    HAPROXY_GLOBAL,
    NGINX,
    contrib_haproxy,
    contrib_nginx,
    needs_haproxy,
    needs_nginx,
    nginx_main_config,
)

ANALYZE = shutil.which("systemd-analyze")


@needs_nginx
def test_contrib_nginx_passes_nginx_t(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    cert = trustme.CA().issue_cert("www.example.com")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    site = tmp_path / "sitebus.conf"
    site.write_text(contrib_nginx(["127.0.0.1:1", f"unix:{tmp_path}/b.sock"], 2, 3, tmp_path))
    text = site.read_text()
    for gone in ("/var/log", "/etc/ssl", "/srv/", "127.0.0.1:808", "listen 80;"):
        assert gone not in text
    main = tmp_path / "nginx.conf"
    main.write_text(nginx_main_config(tmp_path, site))
    assert NGINX is not None
    result = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(main),
                             "-e", str(tmp_path / "error.log")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr


def test_contrib_nginx_has_what_several_instances_need() -> None:
    text = (CONTRIB / "nginx" / "sitebus.conf").read_text()
    for line in ("proxy_set_header Host $host;", "proxy_set_header X-Real-IP $remote_addr;",
                 "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                 "proxy_set_header X-Forwarded-Proto $scheme;",
                 "proxy_next_upstream error timeout http_502 http_503 http_504;",
                 "proxy_redirect off;", "location = /health {", "deny all;",
                 "keepalive 8;", "proxy_http_version 1.1;", 'proxy_set_header Connection "";'):
        assert line in text, line
    assert "non_idempotent" not in text.replace("(non_idempotent would", "")


@needs_haproxy
def test_contrib_haproxy_passes_haproxy_c(tmp_path: Path) -> None:
    (tmp_path / "global.cfg").write_text(HAPROXY_GLOBAL)
    site = tmp_path / "sitebus.cfg"
    site.write_text(contrib_haproxy(["127.0.0.1:1", f"unix:{tmp_path}/b.sock"], 2))
    assert HAPROXY is not None
    result = subprocess.run([HAPROXY, "-c", "-f", str(tmp_path / "global.cfg"), "-f", str(site)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr and "ALERT" not in result.stderr
    text = (CONTRIB / "haproxy" / "sitebus.cfg").read_text()
    assert "http-check send meth GET uri /health" in text
    assert "http-check expect status 200" in text


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (Debian "
                    "package systemd)")
def test_the_instances_drop_in_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = (CONTRIB / "systemd" / "sitebus@.service").read_text()
    (tmp_path / "sitebus@8081.service").write_text(unit)  # as shipped
    drop_in = (CONTRIB / "systemd" / "instances.conf").read_text()
    assert ("ExecStart=/usr/bin/env sitebus run -e production -c /etc/sitebus/site.conf "
            "-c /etc/sitebus/%i.conf" in drop_in)
    (tmp_path / "sitebus@8081.service.d").mkdir()
    (tmp_path / "sitebus@8081.service.d" / "instances.conf").write_text(drop_in)
    assert ANALYZE is not None
    result = subprocess.run([ANALYZE, "verify", "--man=no", "./sitebus@8081.service"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""
    # The drop-in is read: a mistake in it is reported.
    (tmp_path / "sitebus@8081.service.d" / "instances.conf").write_text(
        drop_in.replace("ExecStart=\n", "ExecStrat=\n"))
    result = subprocess.run([ANALYZE, "verify", "--man=no", "./sitebus@8081.service"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "ExecStrat" in result.stderr
