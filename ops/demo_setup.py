"""What ``lifecycle server start`` adds for the shipped demo configuration (``config/demo``).

The demo inventory's S3 store has no endpoint unless ``LIFECYCLE_S3_ENDPOINT`` is set; run
as a service, its flows then need a local S3 (``ops.local_s3``, over TLS with its own CA)
and the dummy credentials ``demo.s3_server.LocalS3`` uses. Its CRM is a SQLite file that
``lifecycle demo`` seeds; on a fresh clone it does not exist yet, so it is seeded here
(never re-seeded: existing data stays), and with it the local S3's demo objects, for the same
customers as ``lifecycle demo`` (``seed_demo_crm``).

Its processor store ``newsletter`` is reached at ``LIFECYCLE_NEWSLETTER_ENDPOINT``; unless
that is set, the served demo runs a local stub provider (``ops.local_provider``) whose
subscribers are read from that CRM file, and flow runs get its endpoint and the signing
secret (generated once in the state folder) through ``provider_env``.

The served demo's policy differs from the one-shot ``lifecycle demo``'s in one respect:
erasures wait for an approver (the README's operator's day), where the one-shot run, with
nobody there to approve, approves them automatically. ``config/demo/policy.yaml`` is the
one-shot's; ``config/demo/policy.served.yaml`` says what the service changes.
``served_config`` writes the two merged, with the demo inventory, to ``config/`` in the
state folder; that folder is the ``LIFECYCLE_CONFIG_DIR`` of the worker, its flow runs and
the sourceable ``env`` file (``served_env``), and is recognised as the demo's here.
Any other configuration is left alone: its stores are real and configured by their owners.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from config.settings import PROJECT_ROOT
from core.errors import ConfigError
from demo import customers

DEMO_CUSTOMERS = customers.DEMO_CUSTOMERS
"""Customers in the served demo's CRM: as many as ``lifecycle demo`` seeds."""
DEMO_S3_CUSTOMERS = customers.DEMO_S3_CUSTOMERS
"""Customers with objects in the served demo's S3: a window of ids around the subject, as
``lifecycle demo`` uploads."""

if TYPE_CHECKING:
    from config.schema.model import LifecycleConfig

DEMO_CONFIG_DIR = PROJECT_ROOT / "config" / "demo"
SERVED_OVERLAY = "policy.served.yaml"
"""In ``config/demo``: what the served demo changes in ``policy.yaml``."""
SERVED_MARKER = "SERVED-DEMO"
"""In a served demo configuration folder: says it is generated, and from what."""
_BOOL_TAG = "tag:yaml.org,2002:bool"


def is_demo_dir(folder: Path) -> bool:
    """Whether ``folder`` is ``config/demo`` or a served demo configuration made from it."""
    return folder.resolve() == DEMO_CONFIG_DIR.resolve() or (folder / SERVED_MARKER).is_file()


def demo_config() -> LifecycleConfig | None:
    """The configuration if it is the shipped demo's, otherwise None (ConfigError if invalid)."""
    from config.loader import load_config
    from config.settings import get_settings

    if not is_demo_dir(get_settings().config_dir):
        return None
    return load_config()


def needs_local_s3(environ: Mapping[str, str]) -> bool:
    """True for the demo configuration when its S3 store has no endpoint and none is set."""
    if environ.get("LIFECYCLE_S3_ENDPOINT", "").strip():
        return False
    from demo.stores import needs_local_s3 as demo_needs_local_s3

    config = demo_config()
    return config is not None and demo_needs_local_s3(config)


def needs_local_provider(environ: Mapping[str, str]) -> bool:
    """True for the demo configuration (with its provider store and a SQLite CRM file) when
    no provider endpoint is set: the served demo then runs ``ops.local_provider``."""
    from demo.provider import ENDPOINT_ENV, provider_store

    if environ.get(ENDPOINT_ENV, "").strip():
        return False
    config = demo_config()
    return config is not None and provider_store(config) is not None and demo_crm_file() is not None


def provider_env(endpoint: str, secret: str) -> dict[str, str]:
    """What flow runs need to use the local provider at ``endpoint``: its URL and the secret,
    in the variable the demo's provider store names (``secret_env``)."""
    from demo.provider import provider_env as env_for
    from demo.provider import provider_store

    config = demo_config()
    store = None if config is None else provider_store(config)
    if store is None:
        raise ConfigError("the demo configuration declares no provider store")
    return env_for(store, endpoint, secret)


def demo_crm_file() -> Path | None:
    """The demo CRM's SQLite file (it may not exist yet), or None when it is not one."""
    from core.engines import normalize_url
    from demo.stores import crm_url

    config = demo_config()
    url = None if config is None else crm_url(config)
    if url is None:
        return None
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def s3_env(endpoint: str, ca_bundle: Path | None = None) -> dict[str, str]:
    """What flow runs need to use the local S3 at ``endpoint`` (as ``LocalS3.env()``).

    ``ca_bundle``: the CA certificate of a local S3 that speaks TLS (``AWS_CA_BUNDLE``,
    which botocore reads for every client it makes).
    """
    from demo.s3_server import DEFAULT_REGION, DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY

    values = {
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
        "AWS_DEFAULT_REGION": DEFAULT_REGION,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "LIFECYCLE_S3_ENDPOINT": endpoint,
    }
    if ca_bundle is not None:
        values["AWS_CA_BUNDLE"] = str(ca_bundle)
    return values


def s3_customer_ids(subject_customer_id: int) -> list[int]:
    """The served demo's customers with objects (``demo.customers``)."""
    return customers.s3_customer_ids(subject_customer_id, DEMO_CUSTOMERS, DEMO_S3_CUSTOMERS)


# -- the served demo's configuration ---------------------------------------------------------


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, as ``config.yaml_lines`` reads (``NO`` stays text)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_Yaml12Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _read(path: Path) -> Any:
    """``path`` as plain data, ``${...}`` references left as written (the loader expands them)."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {path}: {type(e).__name__}") from None


def merged(base: Any, overlay: Any) -> Any:
    """``overlay`` over ``base``: mappings merged key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merged(base[key], value) if key in base else value
        return out
    return overlay


def served_policy_text(source: Path = DEMO_CONFIG_DIR) -> str:
    """``policy.yaml`` of ``source`` with its ``policy.served.yaml`` merged in, as YAML."""
    overlay = _read(source / SERVED_OVERLAY)
    if not isinstance(overlay, dict):
        raise ConfigError(f"{source / SERVED_OVERLAY}: expected a mapping like policy.yaml")
    policy = merged(_read(source / "policy.yaml"), overlay)
    header = (
        f"# Generated by `lifecycle server start` from {source}/policy.yaml and "
        f"{SERVED_OVERLAY}:\n# edit those, not this file (it is rewritten at every start).\n"
    )
    return header + yaml.safe_dump(policy, sort_keys=False, allow_unicode=True, width=100)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def served_config(folder: Path, source: Path = DEMO_CONFIG_DIR) -> Path:
    """Write the served demo's configuration to ``folder``; the folder.

    The demo's ``inventory.yaml`` as it is, ``policy.yaml`` merged with the served overlay,
    and the marker. It is loaded and checked before it is used: ConfigError when invalid,
    or when an erasure would not wait for an approver.
    """
    from config.loader import load_config
    from core.private_files import private_dir

    private_dir(folder)
    # Each file replaced whole: a flow run may be reading the configuration meanwhile.
    _replace(folder / "inventory.yaml", (source / "inventory.yaml").read_text(encoding="utf-8"))
    _replace(folder / "policy.yaml", served_policy_text(source))
    _replace(
        folder / SERVED_MARKER,
        f"The served demo's configuration, made by `lifecycle server start` from {source}.\n",
    )
    approval = load_config(folder).policy.requests.approval
    if "erasure" not in approval.required_for or approval.auto_approve:
        raise ConfigError(
            f"{source / SERVED_OVERLAY}: the served demo must make erasures wait for an "
            "approver (requests.approval: erasure in required_for, auto_approve: false)"
        )
    return folder


def served_env(state_root: Path) -> dict[str, str]:
    """For the demo configuration: ``LIFECYCLE_CONFIG_DIR`` of the served demo's configuration
    (written to ``config/`` in the state folder ``state_root``); otherwise nothing."""
    from config.settings import get_settings

    if not is_demo_dir(get_settings().config_dir):
        return {}
    return {"LIFECYCLE_CONFIG_DIR": str(served_config(state_root / "config"))}


def seed_demo_crm(say: Callable[[str], None], s3: Mapping[str, str] | None = None) -> Path | None:
    """Seed the demo CRM as ``lifecycle demo`` does when its SQLite file does not exist yet,
    and first the demo objects in the local S3 that ``s3`` (``s3_env``) reaches, if given.

    The missing CRM file is the one trigger for both, so they stay consistent and neither is
    ever re-seeded over data an operator has worked on (an erased subject must not come
    back). S3 goes first: should the CRM seed then fail, the next start seeds both again
    (``seed_s3`` replaces what it seeded before; locked versions stay, as on AWS).
    Returns the file seeded, or None when there was nothing to do.
    """
    from core.engines import normalize_url
    from core.private_files import private_dir
    from demo.seed_sql import seed_crm
    from demo.stores import crm_url

    config = demo_config()
    url = None if config is None else crm_url(config)
    if url is None:
        return None
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    path = Path(parsed.database)
    if path.exists():
        return None
    if s3:
        seed_demo_s3(s3, say)
    private_dir(path.parent)  # seed_crm creates the file itself, mode 0600 (make_engine)
    data = seed_crm(url, customers=DEMO_CUSTOMERS)
    say(f"seeded the demo CRM (it did not exist yet): {data.total:,} rows in {path}")
    return path


def seed_demo_s3(s3: Mapping[str, str], say: Callable[[str], None]) -> None:
    """Upload the demo objects (``demo.seed_s3``) of the customers ``lifecycle demo`` gives
    objects, around the subject the CRM seed names, to the S3 that ``s3`` reaches."""
    from demo.s3_server import s3_client
    from demo.seed_s3 import seed_s3
    from demo.seed_sql import named_subject_ids

    subject = named_subject_ids(DEMO_CUSTOMERS)[0]
    ids = s3_customer_ids(subject)
    client = s3_client(
        s3["AWS_ENDPOINT_URL_S3"],
        region=s3["AWS_DEFAULT_REGION"],
        ca=s3.get("AWS_CA_BUNDLE"),
        max_pool_connections=16,
    )
    try:
        data = seed_s3(
            client, customer_ids=ids, subject_customer_id=subject, region=s3["AWS_DEFAULT_REGION"]
        )
    finally:
        client.close()
    say(
        f"seeded the demo S3 with the objects of {len(ids)} customers "
        f"({data.total_versions:,} versions in {len(data.buckets)} buckets)"
    )
