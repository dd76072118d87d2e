"""The explicit registry of connector types, and the one way to ask for a capability.

``connector_for(store, policy, keys)`` builds the connector of a store's ``type``; a store
type without a registered connector is a clear ``ConfigError``. Code outside
``connectors/`` then asks for what it needs, never for a store type:
``require(connector, Sweeping, "sweeping")`` returns the connector as that capability or
raises ``Unsupported`` ("store 'crm' (type processor) does not support sweeping"), and
``supports(connector, Sweeping)`` only tells (and narrows, for mypy). Connector modules are
imported when first needed, so importing the registry stays cheap (the CLI's ``--help``
does not load drivers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard, TypeVar

from config.schema.policy import Policy
from config.schema.stores import StoreConfig
from connectors.base import Connector, Unsupported
from connectors.processor.config import ProcessorStore
from connectors.s3.config import S3Store
from connectors.sql.config import SqlStore
from core.errors import ConfigError
from core.keys import KeyRing

__all__ = [
    "CONNECTORS",
    "Factory",
    "Unsupported",
    "connector_for",
    "has",
    "require",
    "supports",
]

Factory = Callable[[StoreConfig, Policy, KeyRing], Connector]

Cap = TypeVar("Cap")


def _sql(store: StoreConfig, policy: Policy, keys: KeyRing) -> Connector:
    from connectors.sql.connector import SqlConnector

    if not isinstance(store, SqlStore):  # the registry key and the model disagree
        raise ConfigError(f"store '{store.name}' is not a SQL store")
    return SqlConnector(store, policy, keys=keys)


def _s3(store: StoreConfig, policy: Policy, keys: KeyRing) -> Connector:
    from connectors.s3.connector import S3Connector

    if not isinstance(store, S3Store):  # the registry key and the model disagree
        raise ConfigError(f"store '{store.name}' is not an S3 store")
    return S3Connector(store, policy, keys=keys)


def _processor(store: StoreConfig, policy: Policy, keys: KeyRing) -> Connector:
    from connectors.processor.connector import ProcessorConnector

    if not isinstance(store, ProcessorStore):  # the registry key and the model disagree
        raise ConfigError(f"store '{store.name}' is not a processor store")
    return ProcessorConnector(store, policy, keys=keys)


CONNECTORS: dict[str, Factory] = {
    "sql": _sql,
    "s3": _s3,
    "processor": _processor,
}
"""Store type -> factory (tests replace entries: the seam for fake connectors)."""


def has(store_type: str) -> bool:
    """Whether a connector is registered for ``store_type``."""
    return store_type in CONNECTORS


def connector_for(store: StoreConfig, policy: Policy, keys: KeyRing) -> Connector:
    """A connector for ``store``; ConfigError when its type has no connector."""
    factory = CONNECTORS.get(store.type)
    if factory is None:
        known = ", ".join(sorted(CONNECTORS))
        raise ConfigError(
            f"store '{store.name}': no connector for store type '{store.type}' (known: {known})"
        )
    return factory(store, policy, keys)


# ``capability`` is typed ``Callable[..., Cap]`` rather than ``type[Cap]``: mypy refuses a
# protocol class where ``type[...]`` is expected ("only concrete class", type-abstract),
# but accepts it here and still infers ``Cap`` from it. At run time it must be one of the
# runtime-checkable protocols of ``connectors.base``.


def supports(connector: object, capability: Callable[..., Cap]) -> TypeGuard[Cap]:
    """Whether ``connector`` offers ``capability`` (a protocol of ``connectors.base``)."""
    if not isinstance(capability, type):
        raise TypeError(f"not a capability protocol: {capability!r}")
    return isinstance(connector, capability)


def require(connector: Connector, capability: Callable[..., Cap], what: str) -> Cap:
    """``connector`` as ``capability``; ``Unsupported`` naming the store and ``what`` if not.

    ``what`` is the capability in words, as the error shows it ("sweeping",
    "rectification").
    """
    if supports(connector, capability):
        return connector
    raise Unsupported(connector.name, connector.capabilities.kind, what)
