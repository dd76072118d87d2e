"""What the demo needs to know about the concrete stores of its inventory.

``config/demo/inventory.yaml`` declares a SQL store ``crm`` (a SQLite file the demo seeds)
and an S3 store ``files`` (served by a local S3 unless ``LIFECYCLE_S3_ENDPOINT`` is set).
``lifecycle demo`` (``cli.demo_cmd``), ``lifecycle server start`` (``ops.demo_setup``) and
the served local S3 (``ops.local_s3``) ask these functions, so that cli/ and ops/ name no
store type (``tests/test_store_type_names.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from connectors.s3.config import S3Store
from connectors.sql.config import SqlStore
from core.errors import ConfigError

if TYPE_CHECKING:
    from config.schema.model import LifecycleConfig
    from connectors.s3.lifecycle import Rule

    BucketRules = dict[str, list[Rule]]
    """The S3 lifecycle rules the retention policy renders, per bucket."""

CRM_STORE = "crm"
"""The demo CRM's store name in ``config/demo/inventory.yaml``."""


def crm_url(config: LifecycleConfig) -> str | None:
    """The URL of the demo CRM, or None when the inventory has no SQL store ``crm``."""
    store = next((s for s in config.inventory.stores if s.name == CRM_STORE), None)
    if not isinstance(store, SqlStore):
        return None
    return store.url.get_secret_value()


def require_crm_url(config: LifecycleConfig) -> str:
    """The URL of the demo CRM; ConfigError when the inventory has no SQL store ``crm``."""
    url = crm_url(config)
    if url is None:
        raise ConfigError(
            f"the demo needs the SQL store '{CRM_STORE}' (config/demo/inventory.yaml)"
        )
    return url


def needs_local_s3(config: LifecycleConfig) -> bool:
    """Whether an S3 store of ``config`` has no endpoint (so the demo serves a local S3)."""
    return any(s.endpoint_url is None for s in config.inventory.stores if isinstance(s, S3Store))


def served_stores(config: LifecycleConfig) -> set[str]:
    """The demo stores that need a local service running (``lifecycle demo`` runs them for
    its own run, ``make serve`` for as long as it is up): the S3 stores without an endpoint
    and the provider reached over HTTP."""
    from demo.provider import provider_store

    names = {
        s.name for s in config.inventory.stores if isinstance(s, S3Store) and s.endpoint_url is None
    }
    provider = provider_store(config)
    return names | ({provider.name} if provider is not None else set())


def lifecycle_rules(config: LifecycleConfig, now: datetime | None = None) -> BucketRules:
    """The S3 lifecycle rules ``config``'s retention policy renders, per bucket."""
    from connectors.s3.lifecycle import desired_rules
    from retention.targets import resolve_targets

    targets = resolve_targets(config, now or datetime.now(UTC))
    return dict(desired_rules(targets).rules)
