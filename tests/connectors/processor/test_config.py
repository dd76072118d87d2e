"""Processor store configuration: loaded from inventory.yaml with the demo's other stores,
every problem located by file, line and field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from config.loader import load_config
from connectors.processor.config import WAIT_FORMS, ProcessorStore, parse_wait
from core.errors import ConfigError
from tests.config.conftest import MakeConfig, line_of, make_config

__all__ = ["make_config"]  # the fixture, used here

INV = "inventory.yaml"
PROCESSOR = """\
  - name: mailer
    type: processor
    provider: Example Mail
    purpose: newsletter delivery
    region: eu-west-1
    categories: [contact]
    agreement: {reference: DPA-2025-7, expires: 2030-12-31}
    identities: [email, customer_id]
    fields:
      - {name: email, category: contact, identity: email}
    endpoint: https://privacy.example.com/api/
    secret_env: MAILER_SECRET
    confirm_within: 15min
"""


def _load(make_config: MakeConfig, text: str, folder: str = "cfg") -> tuple[Path, str]:
    path = make_config((INV, "stores:\n", "stores:\n" + text), folder=folder)
    return path, (path / INV).read_text(encoding="utf-8")


def _problems(make_config: MakeConfig, text: str) -> tuple[list[str], str]:
    folder, inventory = _load(make_config, text)
    with pytest.raises(ConfigError) as raised:
        load_config(folder)
    return raised.value.problems, inventory


def test_a_processor_loads_with_the_demo_stores(make_config: MakeConfig) -> None:
    folder, _ = _load(make_config, PROCESSOR)
    config = load_config(folder)
    store = config.store("mailer")
    assert isinstance(store, ProcessorStore)
    assert store.endpoint == "https://privacy.example.com/api"
    assert store.confirm_within == timedelta(minutes=15)
    assert store.identity_columns() == () and store.derived_names() == frozenset()
    # Its kinds come from the other stores; it adds none of its own.
    assert config.identity_kinds() == {"email", "customer_number"}


@pytest.mark.parametrize(
    ("old", "new", "anchor", "message"),
    [
        (
            "endpoint: https://privacy.example.com/api/",
            "endpoint: http://privacy.example.com/api",
            "endpoint: http://",
            "stores[0].endpoint: must be https "
            "(http:// is allowed for 127.0.0.1 and localhost only)",
        ),
        (
            "endpoint: https://privacy.example.com/api/",
            "endpoint: https://user:pw@example.com/api",
            "endpoint: https://user",
            "stores[0].endpoint: must hold no credentials, query or fragment (use secret_env)",
        ),
        (
            "secret_env: MAILER_SECRET",
            "secret_env: mailer-secret",
            "secret_env:",
            "stores[0].secret_env: must be an environment variable name such as MAILER_SECRET",
        ),
        (
            "confirm_within: 15min",
            "confirm_within: 15m",
            "confirm_within:",
            f"stores[0].confirm_within: '15m' is ambiguous: write min for minutes ({WAIT_FORMS})",
        ),
        (
            "region: eu-west-1",
            "region: europe",
            "region: europe",
            "stores[0].region: must be a region name such as eu-central-1",
        ),
        (
            "    secret_env: MAILER_SECRET\n",
            "",
            "  - name: mailer",
            "stores[0].secret_env: required when mode is api (the default)",
        ),
        (
            "    identities: [email, customer_id]",
            "    identities: [email, shoe_size]",
            "identities:",
            "stores[0].identities[1]: 'shoe_size' is neither an identity kind nor a derived "
            "identity name of another store (known: customer_id, customer_number, email)",
        ),
        (
            "{name: email, category: contact, identity: email}",
            "{name: email, category: billing, identity: phone}",
            "{name: email, category: billing",
            "stores[0].fields[0].category: 'billing' is not among the categories store "
            "'mailer' receives (contact)",
        ),
        (
            "categories: [contact]",
            "categories: [contakt]",
            "categories: [contakt]",
            "stores[0].categories[0]: unknown category 'contakt' (did you mean 'contact'?)",
        ),
    ],
)
def test_problems_name_the_field(
    make_config: MakeConfig, old: str, new: str, anchor: str, message: str
) -> None:
    assert PROCESSOR.count(old) == 1
    problems, inventory = _problems(make_config, PROCESSOR.replace(old, new))
    assert f"{INV}:{line_of(inventory, anchor)} {message}" in problems


def test_manual_mode_takes_no_endpoint(make_config: MakeConfig) -> None:
    text = PROCESSOR.replace("    confirm_within: 15min\n", "    mode: manual\n")
    problems, inventory = _problems(make_config, text)
    assert problems == [
        f"{INV}:{line_of(inventory, 'endpoint:')} stores[0].endpoint: is set, but mode is "
        "manual: an operator confirms instead",
        f"{INV}:{line_of(inventory, 'secret_env:')} stores[0].secret_env: is set, but mode "
        "is manual: an operator confirms instead",
    ]
    manual = text.replace("    endpoint: https://privacy.example.com/api/\n", "").replace(
        "    secret_env: MAILER_SECRET\n", ""
    )
    folder, _ = _load(make_config, manual, folder="manual")
    assert isinstance(load_config(folder).store("mailer"), ProcessorStore)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1.5 min", 90), ("2h", 7200), ("1d", 86400), ("PT10M", 600), ("P1DT1H", 90000)],
)
def test_waits(text: str, seconds: float) -> None:
    assert parse_wait(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["0s", "PT", "P", "soon", "10 months"])
def test_bad_waits(text: str) -> None:
    with pytest.raises(ValueError):
        parse_wait(text)
