"""The statistics page of ``lib.cpstats``: ``StatsPage``, its formatting, and extrapolation.

Kept apart from the gathering (``cpstats``, which re-exports these names): reporting reads
``logging.statistics`` through ``extrapolate_statistics`` (a copy with every function
evaluated) and formats it as HTML or JSON; nothing here runs per request.
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from services.web._helper import expose
from services.web._serving import serving

__all__ = ["APPS", "SITE", "StatsPage", "extrapolate_statistics", "iso_format", "locale_date",
           "pause_resume"]

APPS = "CherryPy Applications"
"""The namespace of tools.cpstats."""

SITE = "Site"
"""The namespace showing the site's bus."""


def extrapolate_statistics(scope: dict[Any, Any]) -> dict[Any, Any]:
    """Return an extrapolated copy of ``scope``: functions replaced by their value.

    A function that fails is replaced by a description of its error, so one broken value
    (a server's rate before it has run, say) never hides the others.
    """
    copy: dict[Any, Any] = {}
    for key, value in list(scope.items()):
        if isinstance(value, dict):
            value = extrapolate_statistics(value)
        elif isinstance(value, (list, tuple)):
            value = [extrapolate_statistics(r) if isinstance(r, dict) else r for r in value]
        elif callable(value):
            try:
                value = value(scope)
            except Exception as error:
                value = f"<{type(error).__name__}: {error}>"
        copy[key] = value
    return copy


def iso_format(v: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v))


def locale_date(v: float) -> str:
    return time.strftime("%c", time.localtime(v))


def pause_resume(ns: str) -> Callable[[Any], str]:
    """Return a formatter showing a namespace's Enabled flag with a Pause/Resume button."""

    def _pause_resume(enabled: Any) -> str:
        action = "pause" if enabled else "resume"
        return (f'{"Yes" if enabled else "No"} <form action="{action}" method="POST" '
                'style="display:inline">'
                f'<input type="hidden" name="namespace" value="{html.escape(ns, quote=True)}">'
                f'<input type="submit" value="{action.title()}"></form>')

    return _pause_resume


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Statistics</title>
<style>
body {{ font: 14px sans-serif; margin: 1em 2em; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.15em; margin-top: 1.5em; }}
h3 {{ font-size: 1em; color: #444; }}
table {{ border-collapse: collapse; margin: .3em 0 1em; }}
th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top; }}
th {{ background: #eee; }}
td.value {{ font-family: monospace; }}
</style></head>
<body><h1>Statistics</h1>
<p>Taken {now}. <a href="data">As JSON</a>.</p>
{sections}
</body></html>
"""


class StatsPage:
    """The statistics as an HTML page (``index``) and as JSON (``data``)."""

    formatting: dict[str, Any] = {
        APPS: {
            "Enabled": pause_resume(APPS),
            "Bytes Read/Request": "%.3f",
            "Bytes Read/Second": "%.3f",
            "Bytes Written/Request": "%.3f",
            "Bytes Written/Second": "%.3f",
            "Current Time": iso_format,
            "Requests/Second": "%.3f",
            "Requests/Second (last minute)": "%.3f",
            "Start Time": iso_format,
            "Total Time": "%.3f",
            "Uptime": "%.3f",
            "Slow Queries": {"End Time": None, "Processing Time": "%.3f",
                             "Start Time": iso_format},
            "URI Set Tracking": {"Avg": "%.3f", "Max": "%.3f", "Min": "%.3f", "Sum": "%.3f"},
            "Requests": {"Bytes Read": "%s", "Bytes Written": "%s", "End Time": None,
                         "Processing Time": "%.3f", "Start Time": None},
            "Applications": {"Total Time": "%.3f", "Average Time": "%.4f"},
        },
        SITE: {"Start Time": iso_format, "Uptime": "%.3f"},
    }

    @expose
    def index(self) -> str:
        _ensure_namespaces()
        sections = []
        for title, scalars, collections in self.get_namespaces():
            parts = [f"<h2>{html.escape(str(title))}</h2>", "<table>"]
            for name, value in scalars:
                parts.append(f"<tr><th>{html.escape(str(name))}</th>"
                             f'<td class="value">{value}</td></tr>')
            parts.append("</table>")
            for subtitle, headers, rows in collections:
                if not rows:
                    parts.append(f"<h3>{html.escape(str(subtitle))}</h3><p>(none)</p>")
                    continue
                parts.append(f"<h3>{html.escape(str(subtitle))}</h3><table><tr>")
                parts.extend(f"<th>{html.escape(str(h))}</th>" for h in headers)
                parts.append("</tr>")
                for row in rows:
                    parts.append("<tr>" + "".join(f'<td class="value">{cell}</td>'
                                                  for cell in row) + "</tr>")
                parts.append("</table>")
            sections.append("\n".join(parts))
        return _PAGE.format(now=html.escape(iso_format(time.time())),
                            sections="\n".join(sections))

    def get_namespaces(self) -> Any:
        """For each namespace: its title, then its scalars and its collections, as HTML pieces."""
        stats = extrapolate_statistics(logging.statistics)  # type: ignore[attr-defined]
        first = {SITE: 0, APPS: 1}  # ours first, then the others by name
        for title, ns in sorted(stats.items(), key=lambda item: (first.get(item[0], 2),
                                                                 str(item[0]))):
            if not isinstance(ns, dict):
                continue
            formatting = self.formatting.get(title, {})
            scalars = []
            collections = []
            for key, value in sorted(ns.items(), key=lambda item: str(item[0])):
                fmt = formatting.get(key, "")
                if isinstance(value, dict):
                    headers, rows = self.get_dict_collection(value, fmt or {})
                    collections.append((key, headers, rows))
                elif isinstance(value, list):
                    headers, rows = self.get_list_collection(value, fmt or {})
                    collections.append((key, headers, rows))
                elif fmt is not None:
                    scalars.append((key, _format(value, fmt)))
            yield title, scalars, collections

    def get_dict_collection(self, v: dict[Any, Any], formatting: dict[str, Any]) -> Any:
        """Table headers and rows for a collection kept as a dict of records."""
        return self.get_list_collection([r for _, r in sorted(v.items(), key=lambda i: str(i[0]))
                                         if isinstance(r, dict)], formatting)

    def get_list_collection(self, v: list[Any], formatting: dict[str, Any]) -> Any:
        """Table headers and rows for a collection kept as a list of records."""
        headers: list[str] = []
        for record in v:
            for key in record if isinstance(record, dict) else ():
                if key not in headers and formatting.get(key, "") is not None:
                    headers.append(key)
        rows = [[_format(record.get(h, ""), formatting.get(h, "")) for h in headers]
                for record in v if isinstance(record, dict)]
        return headers, rows

    @expose
    def data(self) -> bytes:
        """The extrapolated statistics as JSON."""
        _ensure_namespaces()
        serving.response.headers["Content-Type"] = "application/json"
        stats = extrapolate_statistics(logging.statistics)  # type: ignore[attr-defined]
        return json.dumps(stats, default=str, sort_keys=True, indent=1).encode("utf-8")

    def _set_enabled(self, namespace: str, enabled: bool) -> None:
        from services.web._cperror import HTTPError, HTTPRedirect

        if serving.request.method != "POST":
            serving.response.headers["Allow"] = "POST"
            raise HTTPError(405)
        ns = logging.statistics.get(namespace)  # type: ignore[attr-defined]
        if not isinstance(ns, dict):
            raise HTTPError(404, f"No statistics namespace named {namespace!r}.")
        if "Enabled" in ns:
            ns["Enabled"] = enabled
        raise HTTPRedirect("./")

    @expose
    def pause(self, namespace: str) -> None:
        self._set_enabled(namespace, False)

    @expose
    def resume(self, namespace: str) -> None:
        self._set_enabled(namespace, True)


def _format(value: Any, fmt: Any) -> str:
    """Return a value as HTML: through a callable (its HTML), a format string, or escaped."""
    if callable(fmt):
        return str(fmt(value))
    if value is None:
        return ""
    if fmt:
        try:
            value = fmt % value
        except (TypeError, ValueError):
            pass
    if isinstance(value, dict):
        value = ", ".join(f"{k}: {v}" for k, v in value.items())
    return html.escape(str(value))


def _ensure_namespaces() -> None:
    from services.web.lib.cpstats import _namespaces

    _namespaces()
