"""Process settings from the environment (prefix ``LIFECYCLE_``).

Settings say *where* things are (config folder, data folder, audit database, keys);
the policy and inventory (what to do) live in the YAML files under ``config_dir``.

The data folder defaults to ``var/`` in the working directory (``LIFECYCLE_DATA_DIR``
overrides it), never to a folder inside the installed package: an installed product
writes nothing next to its code. ``PROJECT_ROOT`` locates files shipped with the code
(the demo configuration), which are only ever read.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""Where the code is: the checkout, or site-packages when installed. Read from, never written."""
DATA_DIR_ENV = "LIFECYCLE_DATA_DIR"
DATA_DIR_NAME = "var"


def default_data_dir() -> Path:
    """The data folder when ``LIFECYCLE_DATA_DIR`` is unset: ``var/`` in the working directory.

    Absolute, taken when the settings are read (in the checkout, ``make`` and ``lifecycle``
    run from the repository root, so that is the repository's ``var/``).
    """
    return Path.cwd() / DATA_DIR_NAME


def data_dir_from(environ: Mapping[str, str]) -> Path:
    """The data folder ``environ`` selects, as an absolute path, without reading the settings.

    ``LIFECYCLE_DATA_DIR`` (``~`` expanded) when set and not empty, else ``default_data_dir()``:
    the rule ``Settings.data_dir`` follows, for building the environment of other processes.
    """
    value = environ.get(DATA_DIR_ENV, "").strip()
    return (Path(value).expanduser() if value else default_data_dir()).resolve()


class Settings(BaseSettings):
    """Where the product finds its config, keeps its data and gets its keys."""

    model_config = SettingsConfigDict(env_prefix="LIFECYCLE_", extra="ignore")

    config_dir: Path = Field(
        default=PROJECT_ROOT / "config" / "demo",
        description="Folder holding inventory.yaml and policy.yaml.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder for embedded SQLite databases, key files, exports and checkpoints; "
        "default: var/ in the working directory.",
    )
    audit_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of the audit ledger and request register; "
        "default: SQLite file audit.db in data_dir.",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="Base64 master secret (32+ bytes) from which every key is derived (HKDF).",
    )
    key_file: Path | None = Field(
        default=None,
        description="File holding the base64 master secret; default data_dir/master.key, "
        "created with mode 0600 on first use when master_key is not set.",
    )
    actor: str = Field(
        default="cli",
        description="Who is acting, recorded in the audit ledger (operator name or service).",
    )
    sweep_lease_seconds: int = Field(
        default=900,
        ge=60,
        description="How long a retention sweep's lease lasts without renewal: a sweep renews "
        "it at every step (a batch range takes seconds), so a crashed holder's lease expires "
        "after this and the next sweep resumes its work. Raise it when one step (a VACUUM of "
        "a huge table) can take longer.",
    )
    request_lease_seconds: int = Field(
        default=120,
        ge=30,
        description="How long a request run's lease lasts without renewal: the run renews it "
        "every quarter of this from a background thread, so a crashed holder on another host "
        "frees the request after this (on this host, at once).",
    )
    request_lease_wait_seconds: int = Field(
        default=3600,
        ge=0,
        description="How long a run of a request waits for another run of the same request "
        "(a CLI --resume beside a deployment run) to finish before it gives up.",
    )
    plan_fresh_seconds: int = Field(
        default=60,
        ge=0,
        description="How long after a store was located its erasure plan executes without "
        "locating it again: a plan made moments ago in the same run (a batch's, or one "
        "approved at once by the policy) runs as made; one that waited longer for approval "
        "is located and planned again first (the rows may have changed). Verification after "
        "the erasure checks the outcome either way. 0: always locate again.",
    )
    store_concurrency: int = Field(
        default=20,
        ge=1,
        le=64,
        description="How many stores one subject request works on at once (locate, plan, "
        "execute, verify): stores that do not depend on each other run in parallel, so a "
        "request waits for its slowest processor rather than for all of them in turn. "
        "1: one store after another.",
    )
    intake_port: int = Field(
        default=4210,
        ge=1,
        le=65535,
        description="Port of the intake service (help-desk webhook and intake page) that "
        "`lifecycle server start` runs on 127.0.0.1.",
    )
    intake_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret the help desk signs webhooks with (HMAC-SHA256) and the "
        "callback is signed with; default: the file intake-webhook.secret in data_dir, "
        "generated (mode 0600) by `lifecycle server start`.",
    )
    intake_signature_tolerance_seconds: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="How far a webhook's signed timestamp may be from now, either way; "
        "older deliveries are refused as replays.",
    )
    helpdesk_callback_url: SecretStr | None = Field(
        default=None,
        description="URL the result of a help-desk request is POSTed to (signed JSON, no "
        "identity) when the request ends; unset: no callback. Secret: it may carry a token.",
    )

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value: object) -> object:
        """``~`` expanded; an empty ``LIFECYCLE_DATA_DIR`` means the default, as in
        ``data_dir_from``."""
        if isinstance(value, str | Path):
            text = str(value).strip()
            return Path(text).expanduser() if text else default_data_dir()
        return value

    def resolved_audit_url(self) -> str:
        """The ledger URL, defaulting to a SQLite file in the data folder."""
        if self.audit_url is not None:
            return self.audit_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'audit.db'}"

    def resolved_key_file(self) -> Path:
        return self.key_file if self.key_file is not None else self.data_dir / "master.key"

    def private_data_dir(self) -> Path:
        """The data folder, created with mode 0700, or tightened to it if others can enter.

        It holds the ledger, keys and access packages: the product's user only.
        """
        from core.private_files import private_dir, tighten_dir

        private_dir(self.data_dir)
        tighten_dir(self.data_dir)
        return self.data_dir


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
