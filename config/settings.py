"""Process settings from the environment (prefix ``LIFECYCLE_``).

Settings say *where* things are (config folder, data folder, audit database, keys);
the policy and inventory (what to do) live in the YAML files under ``config_dir``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Where the product finds its config, keeps its data and gets its keys."""

    model_config = SettingsConfigDict(env_prefix="LIFECYCLE_", extra="ignore")

    config_dir: Path = Field(
        default=PROJECT_ROOT / "config" / "demo",
        description="Folder holding inventory.yaml and policy.yaml.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / "var",
        description="Folder for embedded SQLite databases, key files, exports and checkpoints.",
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
