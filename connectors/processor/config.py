"""The inventory model of a processor store (``type: processor``): a provider and its API.

A processor is a third party the company shares personal data with. The store declares
the provider (name, purpose, the data categories and fields it receives, its region, the
data processing agreement) and how it is asked: ``mode: api`` (the default) sends signed
JSON requests to ``endpoint`` with the HMAC secret named by ``secret_env``; ``mode:
manual`` has an operator do the work and confirm it. ``identities`` names the identity
kinds (declared by other stores, or derived identities) the provider is asked with.

Imports only the configuration layer: loading the configuration never imports the client.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator

from config.schema.common import IdentName, Name, NonEmpty, Region, SqlIdent, Strict
from config.schema.stores import CategorySite, StoreConfig

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts an ``http://`` endpoint may name (tests and the demo): nothing crosses a network."""

_WAIT = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|min|h|d)$")
_WAIT_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_ISO_WAIT = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
WAIT_FORMS = "use Ns, Nmin, Nh, Nd or ISO 8601 such as PT10M"


def parse_wait(value: Any) -> timedelta:
    """``30s``, ``10min``, ``2h``, ``1d`` or ISO 8601 ``PT10M`` / ``P1DT2H`` as a timedelta.

    Unlike retention periods (``config.durations``), these are clock times: ``m`` alone is
    refused, since there it means months.
    """
    if isinstance(value, timedelta):
        wait = value
    elif isinstance(value, str):
        text = value.strip()
        short, iso = _WAIT.match(text.lower()), _ISO_WAIT.match(text.upper())
        if short:
            wait = timedelta(seconds=float(short.group(1)) * _WAIT_UNITS[short.group(2)])
        elif iso and text.upper() not in ("P", "PT"):
            days, hours, minutes, seconds = (float(g) if g else 0.0 for g in iso.groups())
            wait = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        elif re.match(r"^\d+\s*m$", text.lower()):
            raise ValueError(f"'{text}' is ambiguous: write min for minutes ({WAIT_FORMS})")
        else:
            raise ValueError(f"invalid duration '{text}' ({WAIT_FORMS})")
    else:
        raise ValueError(f"invalid duration: expected text ({WAIT_FORMS})")
    if wait <= timedelta(0):
        raise ValueError("must be longer than zero")
    return wait


Wait = Annotated[timedelta, BeforeValidator(parse_wait)]
"""A clock duration (``10min``, ``PT10M``): how long to wait for a provider."""


class Agreement(Strict):
    """The data processing agreement (GDPR Art. 28) the provider signed."""

    reference: str = Field(min_length=1, max_length=128, description="Contract reference.")
    expires: date = Field(description="Last day the agreement covers the processing.")


class ProcessorField(Strict):
    """A field of the subject's data the provider receives (and can be asked to correct)."""

    name: SqlIdent = Field(description="The provider's field name, e.g. email.")
    category: Name = Field(description="Its data category (declared in policy.yaml).")
    identity: IdentName | None = Field(
        default=None,
        description="The identity kind the field holds, if any (one of the store's identities).",
    )
    max_length: int | None = Field(
        default=None, ge=1, description="Longest value the provider accepts (checked at intake)."
    )


class ProcessorStore(StoreConfig):
    """A third-party provider personal data is shared with, asked over HTTPS or by hand."""

    type: Literal["processor"]
    provider: str = Field(min_length=1, max_length=200, description="The provider's name.")
    purpose: str = Field(min_length=1, max_length=500, description="Why data is shared.")
    region: Region = Field(description="Where the provider processes the data.")
    categories: Annotated[tuple[Name, ...], NonEmpty] = Field(
        description="The data categories the provider receives."
    )
    agreement: Agreement | None = Field(
        default=None, description="The data processing agreement; missing is a finding."
    )
    identities: Annotated[tuple[IdentName, ...], NonEmpty] = Field(
        description="Identity kinds (or derived identity names) the provider is asked with."
    )
    fields: tuple[ProcessorField, ...] = Field(
        default=(), description="Fields the provider receives; corrections may name them."
    )
    mode: Literal["api", "manual"] = Field(
        default="api",
        description="api: signed requests to endpoint; manual: an operator acts and confirms.",
    )
    endpoint: str | None = Field(
        default=None,
        description=(
            "Base HTTPS URL of the provider's privacy API (http:// only for 127.0.0.1 or "
            "localhost, in tests and the demo). Required in api mode."
        ),
    )
    secret_env: str | None = Field(
        default=None,
        description="Environment variable holding the HMAC secret. Required in api mode.",
    )
    ca_bundle: str | None = Field(
        default=None, description="CA bundle (PEM file) to verify the endpoint with."
    )
    timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds per HTTP call.")
    retries: int = Field(
        default=3, ge=0, le=10, description="Retries of a call on connection errors, 429, 5xx."
    )
    backoff: float = Field(
        default=0.5, ge=0, le=60, description="Seconds before the first retry; doubles each time."
    )
    confirm_within: Wait = Field(
        default=timedelta(minutes=10),
        description="How long execute waits for the provider to confirm an erasure.",
    )
    poll_interval: float = Field(
        default=5.0, gt=0, le=3600, description="Seconds between status polls."
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_https(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an https URL such as https://api.example.com/privacy")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must hold no credentials, query or fragment (use secret_env)")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError("must be https (http:// is allowed for 127.0.0.1 and localhost only)")
        return value.rstrip("/")

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Z_][A-Z0-9_]{0,127}$", value):
            raise ValueError("must be an environment variable name such as MAILER_SECRET")
        return value

    def field_named(self, name: str) -> ProcessorField | None:
        """The declared field ``name``, if any."""
        return next((f for f in self.fields if f.name == name), None)

    def searched_by(self) -> frozenset[str]:
        """A provider is asked with the identity kinds it declares, nothing else."""
        return frozenset(self.identities)

    def category_sites(self) -> tuple[CategorySite, ...]:
        own = tuple(CategorySite(("categories", k), c) for k, c in enumerate(self.categories))
        return own + tuple(
            CategorySite(("fields", j, "category"), f.category) for j, f in enumerate(self.fields)
        )
