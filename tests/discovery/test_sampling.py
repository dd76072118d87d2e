"""Sampling is bounded (LIMIT or TABLESAMPLE, never more than N rows) and read-only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from core.engines import make_engine
from discovery.catalog import read_catalog
from discovery.pipeline import draft_inventory, read_only_engine
from discovery.sampling import sample_table
from tests.discovery.conftest import Shop
from tests.discovery.shop import VISITS

_WRITES = ("INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE", "REPLACE")


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every statement any engine sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()).upper())

    event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(sa.Engine, "before_cursor_execute", record)


def _sampling(seen: list[str]) -> list[str]:
    return [s for s in seen if "WEB_VISITS" in s and "IP_ADDRESS" in s]


def test_a_sample_reads_at_most_n_rows_with_a_bounded_statement(shop: Shop) -> None:
    engine = read_only_engine(shop.url)
    try:
        table = read_catalog(engine).tables["web_visits"]
        with statements() as seen:
            values = sample_table(engine, table, ["ip_address", "path"], rows=7)
    finally:
        engine.dispose()
    assert [len(v) for v in values.values()] == [7, 7]
    reads = _sampling(seen)
    assert reads and all("LIMIT" in s for s in reads)
    assert not any("RAND" in s for s in seen)
    assert not [s for s in seen if s.startswith(_WRITES)]


def test_a_whole_draft_sends_no_write(shop: Shop) -> None:
    with statements() as seen:
        draft_inventory(shop.url)
    assert seen
    assert not [s for s in seen if s.startswith(_WRITES)]
    assert all("LIMIT" in s or "TABLESAMPLE" in s for s in seen if "SHOPPER" in s)


@pytest.mark.service
def test_postgresql_samples_with_tablesample_in_a_read_only_transaction(pg_url: str) -> None:
    from tests.discovery.shop import seed

    setup = make_engine(pg_url)
    try:
        seed(setup)
        with setup.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE web_visits")  # the catalog's row estimate
    finally:
        setup.dispose()
    engine = read_only_engine(pg_url)
    try:
        table = read_catalog(engine).tables["web_visits"]
        assert table.row_estimate == VISITS
        with statements() as seen:
            values = sample_table(engine, table, ["ip_address"], rows=5)
    finally:
        engine.dispose()
    assert len(values["ip_address"]) <= 5
    read_only = seen.index("SET TRANSACTION READ ONLY")
    sampled = next(i for i, s in enumerate(seen) if "TABLESAMPLE SYSTEM" in s)
    assert read_only < sampled and "LIMIT" in seen[sampled]


def test_the_sampling_transaction_is_read_only(shop: Shop) -> None:
    """Asked from inside the sampling transaction: PostgreSQL says it is read-only; on
    SQLite and MariaDB a write slipped into it is refused (without ending it)."""
    engine = read_only_engine(shop.url)
    table = read_catalog(engine).tables["web_visits"]
    answers: list[object] = []

    def probe(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "web_visits" not in statement or "ip_address" not in statement or answers:
            return
        cursor = conn.connection.cursor()
        try:
            if conn.dialect.name == "postgresql":
                cursor.execute("SHOW transaction_read_only")
                answers.append(cursor.fetchone()[0] == "on")
            else:
                try:
                    cursor.execute("DELETE FROM web_visits")
                    answers.append(False)
                except Exception:  # the driver's own error class: refused
                    answers.append(True)
        finally:
            cursor.close()

    event.listen(engine, "before_cursor_execute", probe)
    try:
        values = sample_table(engine, table, ["ip_address"], rows=3)
    finally:
        event.remove(engine, "before_cursor_execute", probe)
        engine.dispose()
    assert answers == [True]
    assert len(values["ip_address"]) == 3


def test_no_value_is_logged_even_with_sqlalchemy_logging_rows(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    """``sqlalchemy.engine`` at DEBUG logs every fetched row; sampling filters them out."""
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    draft_inventory(shop.url)
    assert caplog.records  # the engine did log (reflection, outside sampling)
    assert not [v for v in shop.planted.values if v in caplog.text]


def test_a_key_range_wraps_round_from_a_random_start(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting at the highest key, the sample continues from the lowest: still N rows,
    each read once, through two bounded index ranges."""
    if shop.url.startswith("postgresql"):
        pytest.skip("PostgreSQL samples with TABLESAMPLE or LIMIT, not key ranges")
    monkeypatch.setattr("discovery.sampling.random.randint", lambda _low, high: high)
    engine = read_only_engine(shop.url)
    try:
        table = read_catalog(engine).tables["web_visits"]
        with statements() as seen:
            values = sample_table(engine, table, ["path"], rows=5)
    finally:
        engine.dispose()
    assert len(values["path"]) == 5
    ranges = [s for s in seen if "WEB_VISITS" in s and "ORDER BY" in s]
    assert len(ranges) == 2 and all("LIMIT" in s for s in ranges)
