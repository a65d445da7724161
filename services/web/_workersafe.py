"""Refuse, at start, per-process session storage on a site that serves from several workers.

``RamSession`` (the default store of ``tools.sessions``) keeps sessions in the memory of the
process that made them; with pre-fork workers each request may land on another worker,
which does not know the session, so logins and carts vanish at random. So when the site has
workers and any config enables sessions without a shared store, the start fails with a
ConfigError naming the app, the section and the stores that work across processes.

What is checked: for each mounted application, the site config, its root's ``_cp_config``
and its ``[/]`` section merged, and each other section that sets ``tools.sessions.*``. A
``_cp_config`` deeper in the tree is not walked (that would mean visiting every handler);
sessions turned on only there are not caught.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sitebus.errors import ConfigError

__all__ = ["check_session_storage", "register"]

SHARED_STORES = ("services.web.lib.sessions.FileSession (with tools.sessions.storage_path) or "
                 "services.web.lib.sessions.MemcachedSession (with tools.sessions.servers)")


def _is_per_process(storage_class: Any, storage_type: Any) -> bool:
    from services.web.lib.sessions import RamSession, _storage_class

    if storage_class is None and storage_type in (None, "", "ram", "RAM"):
        return True
    try:
        chosen = _storage_class(None, storage_class) if storage_class else RamSession
    except Exception:
        return False  # a store that cannot be resolved is reported when it is used
    return isinstance(chosen, type) and issubclass(chosen, RamSession)


def _sessions_sections(site_config: Mapping[str, Any], apps: Mapping[str, Any]
                       ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, merged config) for each place whose requests have sessions on."""
    framework_apps = [(name, app) for name, app in apps.items()
                      if isinstance(getattr(app, "config", None), Mapping)]
    if not framework_apps:
        yield "the site config [global]", dict(site_config)
    for script_name, app in framework_apps:
        mount = script_name or "/"
        root_conf = getattr(getattr(app, "root", None), "_cp_config", None) or {}
        merged = {**site_config, **root_conf, **app.config.get("/", {})}
        yield f"the app at {mount!r}", merged
        for section, entries in app.config.items():
            if section != "/" and isinstance(entries, Mapping) and \
                    any(str(key).startswith("tools.sessions.") for key in entries):
                yield f"the app at {mount!r}, section [{section}]", {**merged, **entries}


def check_session_storage(site_config: Mapping[str, Any], apps: Mapping[str, Any],
                          workers: int) -> None:
    """Raise ConfigError if sessions use a per-process store while ``workers`` > 0."""
    if workers <= 0:
        return
    for where, merged in _sessions_sections(site_config, apps):
        if merged.get("tools.sessions.on") is not True:
            continue
        if _is_per_process(merged.get("tools.sessions.storage_class"),
                           merged.get("tools.sessions.storage_type")):
            raise ConfigError(
                f"sessions are on in {where} with the default RamSession, which keeps each "
                f"session in one process's memory; with server.workers = {workers}, requests "
                f"served by another worker would not find it. Set "
                f"tools.sessions.storage_class to {SHARED_STORES}",
                key="tools.sessions.storage_class")


def register(engine: Any) -> None:
    """Check the session stores each time the site starts (in each worker, too)."""

    def check() -> None:
        from sitebus.site.container import site

        workers = site.workers.workers if site.has_workers else 0
        check_session_storage(site.config, site.tree.apps, workers)

    check.priority = 5  # type: ignore[attr-defined]  # before servers and workers start
    engine.subscribe("start", check)
