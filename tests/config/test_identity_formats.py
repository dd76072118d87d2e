"""Identity formats in inventory.yaml: declared or inferred, and one format per kind."""

from __future__ import annotations

import pytest

from config.loader import load_config
from connectors.sql.config import SqlStore
from core.errors import ConfigError
from tests.config.conftest import MakeConfig, demo_text, line_of

INV = "inventory.yaml"
NUMBER = "          - {column: customer_number, kind: customer_number}\n"


def test_formats_default_from_the_kind_and_can_be_declared(make_config: MakeConfig) -> None:
    folder = make_config(
        (
            INV,
            NUMBER,
            NUMBER.replace("}", ", format: text}") + "          - {column: phone, kind: phone}\n",
        )
    )
    customers = load_config(folder).stores_of(SqlStore)[0].table("customers")

    assert {i.kind: i.value_format() for i in customers.identity} == {
        "email": "email",
        "customer_number": "text",
        "phone": "phone",
    }


def test_one_kind_with_two_formats_names_both_places(make_config: MakeConfig) -> None:
    second = "          - {column: phone, kind: customer_number}\n"
    folder = make_config((INV, NUMBER, NUMBER.replace("}", ", format: integer}") + second))
    with pytest.raises(ConfigError) as caught:
        load_config(folder)

    line = line_of(demo_text(INV).replace(NUMBER, NUMBER + second), second.strip())
    assert caught.value.problems == [
        f"{INV}:{line} stores[0].tables[0].identity[2]: identity kind 'customer_number' is "
        "format text at crm.customers.phone but integer at crm.customers.customer_number; "
        "every column of a kind needs the same format"
    ]


def test_unknown_format_is_a_schema_problem(make_config: MakeConfig) -> None:
    folder = make_config((INV, NUMBER, NUMBER.replace("}", ", format: emial}")))
    with pytest.raises(ConfigError) as caught:
        load_config(folder)

    [problem] = caught.value.problems
    line = line_of(demo_text(INV), NUMBER.strip())
    assert problem.startswith(f"{INV}:{line} stores[0].tables[0].identity[1].format: ")
    assert "'email'" in problem and "'integer'" in problem
