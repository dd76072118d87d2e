"""The loaded configuration: inventory and policy together, with lookups used everywhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, SecretStr

from config.schema.common import Strict
from config.schema.inventory import Inventory, Store
from config.schema.policy import Category, Policy
from config.schema.stores import StoreConfig
from core.engines import safe_url
from core.errors import ConfigError, NotFoundError

MASK = "**********"

StoreT = TypeVar("StoreT", bound=StoreConfig)


def _masked_secret(key: str, secret: SecretStr) -> str:
    if key.endswith("url"):
        try:
            return safe_url(secret.get_secret_value())
        except ConfigError:
            return MASK
    return MASK


def _masked(value: Any, key: str = "") -> Any:
    """``value`` made printable: secrets masked, tuples as lists."""
    if isinstance(value, SecretStr):
        return _masked_secret(key, value)
    if isinstance(value, Mapping):
        return {k: _masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_masked(v, key) for v in value]
    return value


class LifecycleConfig(Strict):
    """Inventory (the stores) and policy (what to do with their data), loaded and checked."""

    inventory: Inventory
    policy: Policy
    source: Path | None = Field(default=None, description="The folder the files came from.")

    def store(self, name: str) -> Store:
        """The store called ``name``; NotFoundError if none is declared."""
        for store in self.inventory.stores:
            if store.name == name:
                return store
        raise NotFoundError(f"no store named '{name}' in the inventory", store=name)

    def stores_of(self, model: type[StoreT]) -> tuple[StoreT, ...]:
        """The stores of the type whose configuration model is ``model``, in inventory order."""
        return tuple(s for s in self.inventory.stores if isinstance(s, model))

    def category(self, name: str) -> Category:
        """The data category called ``name``; NotFoundError if none is declared."""
        for category in self.policy.categories:
            if category.name == name:
                return category
        raise NotFoundError(f"no data category named '{name}' in the policy", category=name)

    def identity_kinds(self) -> frozenset[str]:
        """Every identity kind some table is searched by (email, customer_number, ...)."""
        return self.inventory.identity_kinds()

    def derived_identity_names(self) -> frozenset[str]:
        """Every derived identity name (customer_id, ...) some table provides."""
        return self.inventory.derived_identity_names()

    def masked_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain data with every secret masked.

        URLs keep their shape with the password hidden; other secrets become asterisks.
        Dates stay ``date`` objects (YAML and ``cli.output.print_json`` render them).
        """
        return {
            "inventory": _masked(self.inventory.model_dump(by_alias=True)),
            "policy": _masked(self.policy.model_dump(by_alias=True)),
        }
