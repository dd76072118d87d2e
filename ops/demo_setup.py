"""What ``lifecycle server start`` adds for the shipped demo configuration (``config/demo``).

The demo inventory's S3 store has no endpoint unless ``LIFECYCLE_S3_ENDPOINT`` is set; run
as a service, its flows then need a local S3 (``ops.local_s3``) and the dummy credentials
``demo.s3_server.LocalS3`` uses. Its CRM is a SQLite file that ``lifecycle demo`` seeds; on a
fresh clone it does not exist yet, so it is seeded here (never re-seeded: existing data stays).
Any other configuration is left alone: its stores are real and configured by their owners.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from config.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from config.schema.model import LifecycleConfig

DEMO_CONFIG_DIR = PROJECT_ROOT / "config" / "demo"


def demo_config() -> LifecycleConfig | None:
    """The configuration if it is the shipped demo's, otherwise None (ConfigError if invalid)."""
    from config.loader import load_config
    from config.settings import get_settings

    if get_settings().config_dir.resolve() != DEMO_CONFIG_DIR.resolve():
        return None
    return load_config()


def needs_local_s3(environ: Mapping[str, str]) -> bool:
    """True for the demo configuration when its S3 store has no endpoint and none is set."""
    if environ.get("LIFECYCLE_S3_ENDPOINT", "").strip():
        return False
    config = demo_config()
    return config is not None and any(s.endpoint_url is None for s in config.s3_stores())


def s3_env(endpoint: str) -> dict[str, str]:
    """What flow runs need to use the local S3 at ``endpoint`` (as ``LocalS3.env()``)."""
    from demo.s3_server import DEFAULT_REGION, DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY

    return {
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
        "AWS_DEFAULT_REGION": DEFAULT_REGION,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "LIFECYCLE_S3_ENDPOINT": endpoint,
    }


def seed_demo_crm(say: Callable[[str], None]) -> Path | None:
    """Seed the demo CRM as ``lifecycle demo`` does when its SQLite file does not exist yet.

    Returns the file seeded, or None when there was nothing to do.
    """
    from config.schema import SqlStore
    from core.engines import normalize_url
    from core.private_files import private_dir
    from demo.seed_sql import seed_crm

    config = demo_config()
    stores = [] if config is None else [s for s in config.inventory.stores if s.name == "crm"]
    if not stores or not isinstance(stores[0], SqlStore):
        return None
    url = stores[0].url.get_secret_value()
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    path = Path(parsed.database)
    if path.exists():
        return None
    private_dir(path.parent)  # seed_crm creates the file itself, mode 0600 (make_engine)
    data = seed_crm(url)
    say(f"seeded the demo CRM (it did not exist yet): {data.total:,} rows in {path}")
    return path
