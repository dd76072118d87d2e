"""inventory.yaml: the data stores, where they live, and where personal data sits in them.

Each store type's model lives with its connector (``connectors/<type>/config.py``) and is
listed in ``connectors.catalog``; ``stores`` accepts any of them, chosen by ``type``. The
models every type shares (identity columns, derived identities, key-template helpers)
are in ``config.schema.stores``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from config.schema.common import NonEmpty, Strict
from config.schema.stores import (
    DerivedIdentity,
    IdentityColumn,
    Reference,
    StoreConfig,
    template_placeholders,
)
from connectors.catalog import STORE_TYPES, StoreSpec

# Re-exported while callers still import the store models from here; they move to
# importing ``connectors.<type>.config`` (or the generic ``StoreConfig``).
from connectors.s3.config import Bucket, Replica, S3Store
from connectors.sql.config import SqlStore, Table, TableReference, Timestamps

__all__ = [
    "Bucket",
    "DerivedIdentity",
    "IdentityColumn",
    "Inventory",
    "Reference",
    "Replica",
    "S3Store",
    "SqlStore",
    "Store",
    "StoreConfig",
    "Table",
    "TableReference",
    "Timestamps",
    "store_union",
    "template_placeholders",
]


def store_union(specs: Iterable[StoreSpec[Any]]) -> Any:
    """The discriminated union of the specs' models, chosen by ``type``."""
    models = tuple(spec.config for spec in specs)
    if len(models) == 1:
        return models[0]  # pydantic needs two members for a union; one model is itself
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007


if TYPE_CHECKING:
    # What type checkers see while callers still narrow a store to one of the two
    # original types; at run time the union is whatever the catalog lists.
    Store = SqlStore | S3Store
else:
    Store = store_union(STORE_TYPES)


class Inventory(Strict):
    """The root of inventory.yaml."""

    stores: Annotated[tuple[Store, ...], NonEmpty]

    def identity_kinds(self) -> frozenset[str]:
        """Every identity kind some store is searched by (email, customer_number, ...)."""
        return frozenset(ident.kind for store in self.stores for ident in store.identity_columns())

    def derived_identity_names(self) -> frozenset[str]:
        """Every derived identity name (customer_id, ...) some store provides."""
        return frozenset(name for store in self.stores for name in store.derived_names())
