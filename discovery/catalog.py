"""Reflect a live SQL database: tables, columns, primary and foreign keys, row estimates.

Pure reflection through SQLAlchemy's inspector plus one catalog read for the row
estimate (PostgreSQL ``pg_class.reltuples``, MySQL/MariaDB ``information_schema.tables``);
no table is scanned. Driver errors become product errors without their message, which
can carry connection details (``connectors.sql.schema.sql_errors``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine.interfaces import (
    ReflectedColumn,
    ReflectedForeignKeyConstraint,
    ReflectedPrimaryKeyConstraint,
)

from connectors.sql.schema import sql_errors

T = TypeVar("T")

_STORE = "discovery"  # the name errors carry: a draft has no store name yet


@dataclass(frozen=True)
class ColumnInfo:
    """One column as reflected."""

    name: str
    type_name: str
    nullable: bool


@dataclass(frozen=True)
class ForeignKeyInfo:
    """``columns`` of the holding table point at ``referred_columns`` of ``referred_table``."""

    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]


@dataclass(frozen=True)
class TableInfo:
    """A table: its columns, keys, the references it holds and its estimated size."""

    name: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKeyInfo, ...]
    row_estimate: int | None
    schema: str | None = None

    def column(self, name: str) -> ColumnInfo | None:
        """The column ``name``, or None."""
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class Catalog:
    """Every table of one schema, by name."""

    tables: dict[str, TableInfo]

    def referenced_by(self, table: str) -> tuple[tuple[str, ForeignKeyInfo], ...]:
        """The (holding table, foreign key) pairs pointing at ``table``."""
        return tuple(
            (holder.name, fk)
            for holder in self.tables.values()
            for fk in holder.foreign_keys
            if fk.referred_table == table
        )


def _type_name(column_type: object) -> str:
    try:
        return str(column_type)
    except Exception:  # some reflected types cannot render without a dialect
        return type(column_type).__name__


def _row_estimates(conn: sa.Connection, schema: str | None) -> dict[str, int]:
    """Row estimates from the database's own statistics; empty where it keeps none."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        query = sa.text(
            "SELECT c.relname, c.reltuples FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname = :schema"
        )
        params = {"schema": schema or "public"}
    elif dialect in ("mysql", "mariadb"):
        query = sa.text(
            "SELECT table_name, table_rows FROM information_schema.tables "
            "WHERE table_schema = COALESCE(NULLIF(:schema, ''), DATABASE())"
        )
        params = {"schema": schema or ""}
    else:
        return {}  # SQLite keeps no estimate; sampling bounds its read by LIMIT instead
    estimates: dict[str, int] = {}
    for name, rows in conn.execute(query, params):
        # reltuples is -1 for a table never analyzed (PostgreSQL 14+): unknown, not empty.
        if rows is not None and float(rows) >= 0:
            estimates[str(name)] = int(float(rows))
    return estimates


def _table(
    name: str,
    schema: str | None,
    *,
    columns: list[ReflectedColumn],
    pk: ReflectedPrimaryKeyConstraint | None,
    fks: list[ReflectedForeignKeyConstraint],
    rows: int | None,
) -> TableInfo:
    return TableInfo(
        name=name,
        columns=tuple(
            ColumnInfo(str(c["name"]), _type_name(c["type"]), bool(c.get("nullable", True)))
            for c in columns
        ),
        primary_key=tuple((pk.get("constrained_columns") if pk else None) or ()),
        foreign_keys=tuple(
            ForeignKeyInfo(
                tuple(fk["constrained_columns"]),
                str(fk["referred_table"]),
                tuple(fk["referred_columns"]),
            )
            for fk in fks
            if fk.get("referred_table")
        ),
        row_estimate=rows,
        schema=schema,
    )


def read_catalog(engine: Engine, schema: str | None = None) -> Catalog:
    """Reflect every table of ``schema`` (the connection's default when None).

    Columns, primary keys and foreign keys are read for the whole schema at once
    (``Inspector.get_multi_*``: a few catalog queries on PostgreSQL, whatever the number
    of tables; the dialect's per-table reflection where it has nothing better), the row
    estimates in one more query.
    """
    with sql_errors(_STORE, "reflect the database"), engine.connect() as conn:
        inspector = sa.inspect(conn)
        names = sorted(inspector.get_table_names(schema=schema))
        estimates = _row_estimates(conn, schema)
        columns = _by_name(inspector.get_multi_columns(schema=schema))
        pks = _by_name(inspector.get_multi_pk_constraint(schema=schema))
        fks = _by_name(inspector.get_multi_foreign_keys(schema=schema))
        tables = {
            n: _table(
                n,
                schema,
                columns=columns.get(n, []),
                pk=pks.get(n),
                fks=fks.get(n, []),
                rows=estimates.get(n),
            )
            for n in names
        }
        conn.rollback()
    return Catalog(tables)


def _by_name(reflected: Mapping[tuple[str | None, str], T]) -> dict[str, T]:
    """``get_multi_*`` answers keyed by (schema, table), for one schema: by table."""
    return {table: value for (_schema, table), value in reflected.items()}
