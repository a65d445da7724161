"""Config parsing under the reference's module name (``sitebus.site.config``)."""

from sitebus.site.config import (
    Config,
    NamespaceSet,
    Parser,
    as_dict,
    attributes,
    modules,
    unrepr,
)

__all__ = ["Config", "NamespaceSet", "Parser", "as_dict", "attributes", "modules", "unrepr"]
