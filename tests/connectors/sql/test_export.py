"""export_rows: every found row, whole, JSON-safe, with its table's categories."""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections import Counter
from datetime import date, datetime, time
from decimal import Decimal

from connectors.base import ExportItem, Findings
from connectors.sql.connector import SqlConnector
from connectors.sql.export import export_rows, json_safe
from connectors.sql.locate import locate
from connectors.sql.schema import reflect_store
from core.keys import KeyRing
from tests.connectors.sql.conftest import SqlWorld, count_statements, normalize

KEYS = KeyRing.from_master(b"k" * 32)


def _export(world: SqlWorld, batch_size: int = 500) -> tuple[Findings, list[ExportItem]]:
    schema = reflect_store(world.engine, world.store)
    findings = locate(world.engine, schema, world.store, world.subject)
    return findings, list(export_rows(world.engine, schema, findings, batch_size))


def test_exports_every_found_row_whole_with_categories(shared_world: SqlWorld) -> None:
    findings, items = _export(shared_world)
    snapshot = shared_world.snapshot()

    by_table: dict[str, list[tuple[object, ...]]] = {}
    for item in items:
        assert item.store == "crm"
        columns = [c.name for c in shared_world.metadata.tables[item.target].columns]
        assert list(item.data) == columns  # every column, in table order
        by_table.setdefault(item.target, []).append(tuple(item.data[c] for c in columns))
    # Exactly the subject's rows: the snapshot's rows whose key was found (consents has
    # two rows under its one key, customer_id 1).
    for target in findings.targets:
        table = shared_world.metadata.tables[target.target]
        idx = [list(table.c.keys()).index(c) for c in shared_world.key_columns[target.target]]
        keys = {tuple(normalize(v) for v in k) for k in target.keys}
        expected = [r for r in snapshot[target.target] if tuple(r[i] for i in idx) in keys]
        assert sorted(by_table[target.target], key=repr) == expected, target.target
    assert Counter(i.target for i in items)["consents"] == 2
    categories = {i.target: i.categories for i in items}
    assert categories == {t.target: t.categories for t in findings.targets}
    assert categories["invoices"] == ("billing",)


def test_values_are_json_safe_on_every_backend(shared_world: SqlWorld) -> None:
    _, items = _export(shared_world)
    order = next(i.data for i in items if i.target == "orders" and i.data["id"] == 101)
    customer = next(i.data for i in items if i.target == "customers")
    invoice = next(i.data for i in items if i.target == "invoices" and i.data["id"] == 101)

    json.dumps([dict(i.data) for i in items])  # no default= needed
    assert order["total"] == "120.99"  # Decimal as text: no float rounding
    assert order["ordered_at"] == "2025-01-19T14:30:00"
    assert invoice["issued_at"] == "2025-02-18"
    assert customer["email"] == "Alice.Example@Example.COM"  # as stored
    assert customer["contract_ended_at"] is None


def test_batching_and_statements(shared_world: SqlWorld) -> None:
    schema = reflect_store(shared_world.engine, shared_world.store)
    findings = locate(shared_world.engine, schema, shared_world.store, shared_world.subject)
    with count_statements(shared_world.engine) as statements:
        whole = list(export_rows(shared_world.engine, schema, findings, 500))
    selects = [s for s in statements if s.strip().upper() != "BEGIN"]
    assert len(selects) == len(findings.targets)  # one statement per table and batch

    with count_statements(shared_world.engine) as statements:
        single = list(export_rows(shared_world.engine, schema, findings, 1))
    selects = [s for s in statements if s.strip().upper() != "BEGIN"]
    assert len(selects) == findings.total
    assert single == whole


def test_exports_nothing_of_other_subjects_and_nothing_for_empty_findings(
    shared_world: SqlWorld,
) -> None:
    _, items = _export(shared_world)
    schema = reflect_store(shared_world.engine, shared_world.store)

    text = json.dumps([dict(i.data) for i in items]).lower()
    assert "bob.other" not in text and "person3@" not in text
    assert list(export_rows(shared_world.engine, schema, Findings(store="crm"))) == []


def test_connector_export_matches(shared_world: SqlWorld) -> None:
    _, items = _export(shared_world)
    connector = SqlConnector(
        shared_world.store, shared_world.policy, keys=KEYS, engine=shared_world.engine
    )
    findings = connector.locate(shared_world.subject)

    assert list(connector.export(findings)) == items


def test_json_safe_conversions() -> None:
    assert json_safe(None) is None
    assert json_safe(True) is True
    assert json_safe(7) == 7
    assert json_safe(1.5) == 1.5
    assert json_safe(math.nan) == "nan"
    assert json_safe(Decimal("10.10")) == "10.10"
    assert json_safe(datetime(2025, 1, 2, 3, 4, 5)) == "2025-01-02T03:04:05"
    assert json_safe(date(2025, 1, 2)) == "2025-01-02"
    assert json_safe(time(3, 4)) == "03:04:00"
    assert json_safe(b"\x00\xff") == base64.b64encode(b"\x00\xff").decode()
    assert json_safe(memoryview(b"ab")) == "YWI="
    assert json_safe(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
