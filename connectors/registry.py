"""The explicit registry of connector types: store ``type`` in the inventory -> connector.

Flows ask ``connector_for(store, policy, keys)`` and then branch on the connector's
``capabilities``, never on its class. A store type without a registered connector is a
clear ``ConfigError``. Connector modules are imported when first needed, so importing
the registry stays cheap (the CLI's ``--help`` does not load drivers).
"""

from __future__ import annotations

from collections.abc import Callable

from config.schema import Policy, S3Store, SqlStore
from connectors.base import Connector
from core.errors import ConfigError
from core.keys import KeyRing

Factory = Callable[[SqlStore | S3Store, Policy, KeyRing], Connector]


def _sql(store: SqlStore | S3Store, policy: Policy, keys: KeyRing) -> Connector:
    from connectors.sql.connector import SqlConnector

    if not isinstance(store, SqlStore):  # the registry key and the model disagree
        raise ConfigError(f"store '{store.name}' is not a SQL store")
    return SqlConnector(store, policy, keys=keys)


def _s3(store: SqlStore | S3Store, policy: Policy, keys: KeyRing) -> Connector:
    from connectors.s3.connector import S3Connector

    if not isinstance(store, S3Store):  # the registry key and the model disagree
        raise ConfigError(f"store '{store.name}' is not an S3 store")
    return S3Connector(store, policy, keys=keys)


CONNECTORS: dict[str, Factory] = {
    "sql": _sql,
    "s3": _s3,
}
"""Store type -> factory."""


def connector_for(store: SqlStore | S3Store, policy: Policy, keys: KeyRing) -> Connector:
    """A connector for ``store``; ConfigError when its type has no connector."""
    factory = CONNECTORS.get(store.type)
    if factory is None:
        known = ", ".join(sorted(CONNECTORS))
        raise ConfigError(
            f"store '{store.name}': no connector for store type '{store.type}' (known: {known})"
        )
    return factory(store, policy, keys)
