"""The typed schema of inventory.yaml and policy.yaml (frozen pydantic models).

Import models from here (a store type's own model from ``connectors/<type>/config.py``,
which this package does not re-export); ``config.loader.load_config`` builds them from
the YAML files.

The names are loaded on first use (PEP 562): a store type's model
(``connectors/<type>/config.py``) imports ``config.schema.common`` and
``config.schema.stores``, while ``config.schema.inventory`` imports every store type
through ``connectors.catalog``. Importing this package itself must therefore not import
the inventory, or importing a store type's model first would be circular.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.schema.common import is_region
    from config.schema.inventory import (
        Bucket,
        DerivedIdentity,
        IdentityColumn,
        Inventory,
        Reference,
        Replica,
        Store,
        Table,
        TableReference,
        Timestamps,
        template_placeholders,
    )
    from config.schema.model import LifecycleConfig
    from config.schema.policy import (
        Approval,
        Category,
        ErasurePolicy,
        ErasureRule,
        HoldScope,
        LegalHold,
        MeasuredFrom,
        Policy,
        RequestPolicy,
        RetentionRule,
    )
    from config.schema.stores import StoreConfig
    from config.schema.transfers import Adequacy, TransferPolicy, TransferRoute

_HOMES = {
    "config.schema.common": ("is_region",),
    "config.schema.inventory": (
        "Bucket",
        "DerivedIdentity",
        "IdentityColumn",
        "Inventory",
        "Reference",
        "Replica",
        "Store",
        "Table",
        "TableReference",
        "Timestamps",
        "template_placeholders",
    ),
    "config.schema.model": ("LifecycleConfig",),
    "config.schema.policy": (
        "Approval",
        "Category",
        "ErasurePolicy",
        "ErasureRule",
        "HoldScope",
        "LegalHold",
        "MeasuredFrom",
        "Policy",
        "RequestPolicy",
        "RetentionRule",
    ),
    "config.schema.stores": ("StoreConfig",),
    "config.schema.transfers": ("Adequacy", "TransferPolicy", "TransferRoute"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "Adequacy",
    "Approval",
    "Bucket",
    "Category",
    "DerivedIdentity",
    "ErasurePolicy",
    "ErasureRule",
    "HoldScope",
    "IdentityColumn",
    "Inventory",
    "LegalHold",
    "LifecycleConfig",
    "MeasuredFrom",
    "Policy",
    "Reference",
    "Replica",
    "RequestPolicy",
    "RetentionRule",
    "Store",
    "StoreConfig",
    "Table",
    "TableReference",
    "Timestamps",
    "TransferPolicy",
    "TransferRoute",
    "is_region",
    "template_placeholders",
]


def __getattr__(name: str) -> object:
    home = _HOME_OF.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
