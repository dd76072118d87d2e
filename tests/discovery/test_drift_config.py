"""``ignore:`` in inventory.yaml: every entry names something and says why, or the
configuration is refused with the file, line and entry at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import load_config
from connectors.s3.config import S3Store
from connectors.sql.config import SqlStore
from core.errors import ConfigError
from tests.discovery.drift_helpers import sql_store_yaml, write_config

S3_STORE = """\
  - name: files
    type: s3
    region: eu-central-1
    buckets:
      - name: acme-tickets
        categories: [support]
        key_templates: ["tickets/{customer_id}/"]
    ignore:
"""


def _problems(tmp_path: Path, sql_ignore: str, s3_ignore: str) -> list[str]:
    stores = sql_store_yaml(f"sqlite:///{tmp_path / 'shop.db'}", ignore=sql_ignore)
    folder = write_config(tmp_path / "cfg", stores + S3_STORE + s3_ignore)
    with pytest.raises(ConfigError) as refused:
        load_config(folder)
    return refused.value.problems


def test_valid_entries_load(tmp_path: Path) -> None:
    stores = sql_store_yaml(
        f"sqlite:///{tmp_path / 'shop.db'}",
        ignore="      - {table: audit_copy, reason: our own audit copy}\n"
        "      - {column: updated_by, reason: staff account ids}\n",
    )
    s3 = "      - {bucket: acme-logs, prefix: tmp/, reason: scratch}\n"
    config = load_config(write_config(tmp_path / "cfg", stores + S3_STORE + s3))
    sql, files = config.inventory.stores
    assert isinstance(sql, SqlStore) and isinstance(files, S3Store)
    assert [(e.table, e.column) for e in sql.ignore] == [("audit_copy", None), (None, "updated_by")]
    assert [(e.bucket, e.prefix) for e in files.ignore] == [("acme-logs", "tmp/")]


def test_an_entry_naming_nothing_or_without_reason_is_refused_where_it_is(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        "      - {reason: names nothing}\n"
        "      - {table: gift_cards}\n"
        "      - {column: notes, reason: '   '}\n",
        "      - {reason: names nothing either}\n      - {prefix: tmp/, reason: ok, tabel: x}\n",
    )
    assert problems == [
        "inventory.yaml:20 stores[0].ignore[0]: an ignore entry must name a table, a column, "
        "or both",
        "inventory.yaml:21 stores[0].ignore[1].reason: required field is missing",
        "inventory.yaml:22 stores[0].ignore[2].reason: must say why the finding was reviewed "
        "and excluded",
        "inventory.yaml:31 stores[1].ignore[0]: an ignore entry must name a bucket, a prefix, "
        "or both",
        "inventory.yaml:32 stores[1].ignore[1].tabel: unknown field (expected one of: reason, "
        "bucket, prefix)",
    ]
