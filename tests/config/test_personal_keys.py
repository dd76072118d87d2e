"""Buckets whose key templates are built from identities must declare personal keys.

A placeholder naming an identity kind always makes keys personal; a derived identity does
when its column is an identity column or a declared personal field of its table. The demo
(``customers.id`` as ``customer_id``, a surrogate key) passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config.crossref_keys import personal_placeholders
from config.loader import load_config
from core.errors import ConfigError
from tests.config.conftest import DEMO_DIR, MakeConfig, line_of

INV = "inventory.yaml"
TICKETS_FLAG = "        replicas: []\n        keys_contain_personal_data: false"
ARCHIVE_FLAG = '["contracts/{customer_id}/"]\n        keys_contain_personal_data: false'
ADVICE = "set keys_contain_personal_data: true so keys stay out of the ledger and logs"


def _problems(config_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(config_dir)
    return raised.value.problems


def _line(config_dir: Path, anchor: str) -> int:
    text = (config_dir / INV).read_text(encoding="utf-8")
    return line_of(text, anchor) + anchor.count("\n")  # the anchor's last line


def test_the_demo_inventory_passes() -> None:
    config = load_config(DEMO_DIR)
    assert "customer_id" not in personal_placeholders(config.inventory)
    assert {"email", "customer_number"} <= personal_placeholders(config.inventory).keys()


def test_an_identity_kind_placeholder_is_refused_with_file_line_and_template(
    make_config: MakeConfig,
) -> None:
    config_dir = make_config((INV, "tickets/{customer_id}/", "tickets/{email}/"))

    assert _problems(config_dir) == [
        f"{INV}:{_line(config_dir, TICKETS_FLAG)} stores[1].buckets[0].keys_contain_personal_data:"
        " is false, but key template 'tickets/{email}/' builds keys from personal data "
        f"({{email}} is an identity kind); {ADVICE}"
    ]


def test_an_omitted_flag_is_false_and_refused_at_the_bucket(make_config: MakeConfig) -> None:
    config_dir = make_config(
        (INV, ARCHIVE_FLAG, '["contracts/{customer_number}/{customer_id}/"]'),
    )

    [problem] = _problems(config_dir)

    bucket = line_of((config_dir / INV).read_text(encoding="utf-8"), "- name: demo-legal-archive")
    assert problem.startswith(f"{INV}:{bucket} stores[1].buckets[1].keys_contain_personal_data:")
    assert "'contracts/{customer_number}/{customer_id}/'" in problem
    assert "{customer_number} is an identity kind" in problem
    assert "customer_id}" + " is" not in problem  # the surrogate key is not named


@pytest.mark.parametrize(
    ("column", "why"),
    [
        ("customer_number", "crm.customers.customer_number, an identity column"),
        ("phone", "crm.customers.phone, a personal field"),
    ],
)
def test_a_derived_identity_from_a_personal_column_is_refused(
    make_config: MakeConfig, column: str, why: str
) -> None:
    config_dir = make_config(
        (INV, "{column: id, as: customer_id}", f"{{column: {column}, as: customer_id}}")
    )

    problems = _problems(config_dir)

    assert problems == [
        f"{INV}:{_line(config_dir, flag)} stores[1].buckets[{j}].keys_contain_personal_data: "
        f"is false, but key template '{template}' builds keys from personal data "
        f"({{customer_id}} is derived from {why}); {ADVICE}"
        for j, (flag, template) in enumerate(
            [(TICKETS_FLAG, "tickets/{customer_id}/"), (ARCHIVE_FLAG, "contracts/{customer_id}/")]
        )
    ]


def test_declared_personal_keys_pass(make_config: MakeConfig) -> None:
    config_dir = make_config(
        (INV, "tickets/{customer_id}/", "tickets/{email}/"),
        (INV, TICKETS_FLAG, TICKETS_FLAG.replace("false", "true")),
    )
    load_config(config_dir)
