"""The intake service's webhook secret (where it comes from; its file generated when
missing) and its health check, for the local service (``ops.server``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from config.settings import data_dir_from
from ops.prefect_api import request


def secret_location(environ: Mapping[str, str]) -> tuple[str, Path | None]:
    """Where the webhook secret comes from: its variable, or its file (and that path)."""
    from ops.intake.signing import SECRET_ENV, secret_file

    if environ.get(SECRET_ENV, "").strip():
        return SECRET_ENV, None
    path = secret_file(data_dir_from(environ))
    return str(path), path


def webhook_secret(env: Mapping[str, str]) -> tuple[str, bool]:
    """Where the webhook secret is (its file generated when missing); made now or not."""
    from ops.intake.signing import ensure_secret_file

    where, path = secret_location(env)
    return where, path is not None and ensure_secret_file(path)


def intake_answers(url: str) -> bool:
    """Whether the intake service answers its health check."""
    try:
        return bool(request(f"{url}/healthz", timeout=2.0)[0] == 200)
    except (OSError, ValueError):
        return False
