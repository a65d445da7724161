"""``sitebus.privileges``: a public path README documents, kept for the module
now at ``sitebus.process.privileges``."""

from sitebus.process.privileges import (
    DropPrivileges,
    Plan,
    User,
    parse_umask,
    plan_drop,
    resolve_group,
    resolve_user,
)

__all__ = [
    "DropPrivileges",
    "Plan",
    "User",
    "parse_umask",
    "plan_drop",
    "resolve_group",
    "resolve_user",
]
