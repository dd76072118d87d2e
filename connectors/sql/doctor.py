"""Which indexes a SQL store lacks for locating subjects, and a health check per store.

Locate compares identity columns and follows references with ``IN`` over batches; each
such column set needs an index whose leading columns cover it, or every batch scans the
table. The primary key, unique constraints and indexes count (MariaDB/InnoDB indexes
foreign key columns itself; PostgreSQL and SQLite do not). Case-insensitive identity
columns are compared with ``lower(column)`` on PostgreSQL and SQLite, which only an
expression index on ``lower(column)`` serves (found in ``pg_indexes`` / ``sqlite_master``,
since reflection does not report expression indexes reliably). MySQL/MariaDB compare
such columns as they are when their collation is ``_ci`` (the default), so a plain index
serves them; ``lower()`` there would prevent index use.

Every advice carries the exact ``CREATE INDEX`` statement, compiled by SQLAlchemy for the
store's dialect.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors.doctor_report import DoctorLine, DoctorReport
from connectors.sql.config import SqlStore
from connectors.sql.graph import (
    describe_edges,
    holders_edges,
    reach_notes,
    reachable,
    target_edges,
)
from connectors.sql.locate import mysql_case_insensitive
from connectors.sql.outside_refs import OutsideReference, outside_references
from connectors.sql.schema import (
    StoreSchema,
    driver_code,
    reflect_store,
    sql_errors,
    type_family,
)
from connectors.sql.shared import checked_edges
from core.engines import make_engine, normalize_url, safe_url
from core.errors import ConfigError, LifecycleError

_MAX_NAME = 60  # below PostgreSQL's 63 and MySQL's 64 identifier limits


@dataclass(frozen=True)
class IndexAdvice:
    """A column set locate searches without a usable index, and the statement to add one."""

    store: str
    table: str
    columns: tuple[str, ...]
    reason: str
    statement: str | None  # None when no index can serve it (see reason)

    @property
    def warning(self) -> str:
        """One line for ``Findings.warnings``: names table and columns, never values."""
        return (
            f"store '{self.store}', table '{self.table}': no usable index on "
            f"({', '.join(self.columns)}): {self.reason}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "table": self.table,
            "columns": list(self.columns),
            "reason": self.reason,
            "statement": self.statement,
        }


def _leading_sets(table: sa.Table) -> list[tuple[str | None, ...]]:
    """Column lists of the PK, unique constraints and indexes (None for an expression)."""
    lists: list[tuple[str | None, ...]] = [tuple(c.name for c in table.primary_key.columns)]
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            lists.append(tuple(c.name for c in constraint.columns))
    for index in table.indexes:
        lists.append(tuple(e.name if isinstance(e, sa.Column) else None for e in index.expressions))
    return [cols for cols in lists if cols]


def covered(table: sa.Table, columns: Sequence[str]) -> bool:
    """Whether an index's leading columns are exactly ``columns`` (in any order)."""
    wanted = set(columns)
    return any(
        None not in cols[: len(wanted)] and set(cols[: len(wanted)]) == wanted
        for cols in _leading_sets(table)
    )


def _index_name(table: str, parts: Iterable[str]) -> str:
    name = "_".join(["ix", table, *parts])
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_NAME - 9]}_{digest}"


def create_index(engine: Engine, table: sa.Table, columns: Sequence[str], lower: bool) -> str:
    """The dialect's ``CREATE INDEX`` for ``columns`` (or ``lower(column)``) of ``table``."""
    # A detached copy: building an Index on the reflected table would add it to the schema.
    copy = sa.Table(
        table.name,
        sa.MetaData(),
        *(sa.Column(c, table.c[c].type) for c in columns),
        schema=table.schema,
    )
    if lower:
        elements: list[Any] = [sa.func.lower(copy.c[columns[0]])]
        name = _index_name(table.name, ["lower", columns[0]])
    else:
        elements = [copy.c[c] for c in columns]
        name = _index_name(table.name, columns)
    ddl = sa.schema.CreateIndex(sa.Index(name, *elements)).compile(dialect=engine.dialect)
    return str(ddl).strip()


def _normalized(sql: str) -> str:
    return re.sub(r"[\s\"`\[\]]", "", sql.lower())


def has_lower_index(engine: Engine, schema: StoreSchema, table: str, column: str) -> bool:
    """Whether an expression index leads with ``lower(column)`` (PostgreSQL and SQLite)."""
    if schema.backend == "postgresql":
        pg = sa.table(
            "pg_indexes", sa.column("schemaname"), sa.column("tablename"), sa.column("indexdef")
        )
        stmt: sa.Select[Any] = sa.select(pg.c.indexdef).where(
            pg.c.tablename == table, pg.c.schemaname == sa.func.current_schema()
        )
    elif schema.backend == "sqlite":
        master = sa.table(
            "sqlite_master", sa.column("type"), sa.column("tbl_name"), sa.column("sql")
        )
        stmt = sa.select(master.c.sql).where(master.c.type == "index", master.c.tbl_name == table)
    else:
        return False
    with sql_errors(schema.store, "doctor", table), engine.connect() as conn:
        definitions = [d for d in conn.execute(stmt).scalars() if d]
    # The column list starts at the first "(" after " on <table>"; its first element must
    # be lower(column), with PostgreSQL's cast to text allowed.
    pattern = re.compile(rf"^lower\(\(?{re.escape(column.lower())}\)?(::[a-z]+)*\)")
    for definition in definitions:
        text = definition.lower()
        on = text.find(" on ")
        start = text.find("(", on) if on >= 0 else -1
        if start >= 0 and pattern.match(_normalized(text[start + 1 :])):
            return True
    return False


def _identity_advice(
    engine: Engine, schema: StoreSchema, store: SqlStore, table: str
) -> list[IndexAdvice]:
    advice: list[IndexAdvice] = []
    t = schema.tables[table]
    for ident in store.table(table).identity:
        col = ident.column
        lowered = ident.case_insensitive and type_family(t.c[col]) == "string"
        if lowered and schema.is_mysql and not mysql_case_insensitive(t, col):
            advice.append(
                IndexAdvice(
                    store.name,
                    table,
                    (col,),
                    "case-insensitive identity column with a case-sensitive collation: it is "
                    "compared with lower(), which no index serves; give it a _ci collation",
                    None,
                )
            )
        elif lowered and not schema.is_mysql:
            if not has_lower_index(engine, schema, table, col):
                advice.append(
                    IndexAdvice(
                        store.name,
                        table,
                        (col,),
                        f"identity '{ident.kind}' is compared case-insensitively with lower(), "
                        "which only an expression index serves",
                        create_index(engine, t, (col,), lower=True),
                    )
                )
        elif not covered(t, (col,)):
            advice.append(
                IndexAdvice(
                    store.name,
                    table,
                    (col,),
                    f"identity '{ident.kind}' is searched on this column",
                    create_index(engine, t, (col,), lower=False),
                )
            )
    return advice


def _searched_columns(
    schema: StoreSchema, store: SqlStore
) -> list[tuple[str, tuple[str, ...], str]]:
    """(table, columns, why) for every column set locate or the shared-row check searches."""
    searched: list[tuple[str, tuple[str, ...], str]] = []
    for edge in holders_edges(schema.edges, store):
        searched.append(
            (edge.child, edge.columns, f"rows are found through this reference to {edge.parent}")
        )
    for edge in target_edges(schema.edges, store):
        searched.append((edge.parent, edge.to_columns, f"linked rows are found from {edge.label}"))
    for table in reachable(schema.edges, store):
        for edge in checked_edges(schema, table):
            searched.append(
                (edge.child, edge.columns, f"erasing {table} rows checks who else references them")
            )
    return searched


def missing_indexes(engine: Engine, schema: StoreSchema, store: SqlStore) -> list[IndexAdvice]:
    """Identity columns and reference columns locate searches without a usable index."""
    advice: list[IndexAdvice] = []
    for table in schema.tables:
        advice += _identity_advice(engine, schema, store, table)
    seen: set[tuple[str, frozenset[str]]] = set()
    for table, columns, reason in _searched_columns(schema, store):
        key = (table, frozenset(columns))
        if key in seen:
            continue
        seen.add(key)
        sa_table = schema.tables[table]
        if not covered(sa_table, columns):
            advice.append(
                IndexAdvice(
                    store.name,
                    table,
                    columns,
                    reason,
                    create_index(engine, sa_table, columns, lower=False),
                )
            )
    return advice


def case_notes(schema: StoreSchema, store: SqlStore) -> list[str]:
    """How case-insensitive identity columns are compared on MySQL/MariaDB (informational)."""
    if not schema.is_mysql:
        return []
    return [
        f"store '{store.name}', table '{t.name}': identity column '{i.column}' is compared "
        "without lower(): its _ci collation already ignores case, and lower() would prevent "
        "index use"
        for t in store.tables
        for i in t.identity
        if i.case_insensitive and mysql_case_insensitive(schema.tables[t.name], i.column)
    ]


@dataclass(frozen=True)
class StoreCheck:
    """The health of one SQL store: reachable, schema matching the inventory, indexes."""

    store: str
    url: str  # password hidden
    reachable: bool
    error: str | None = None
    problems: tuple[str, ...] = ()
    advice: tuple[IndexAdvice, ...] = ()
    notes: tuple[str, ...] = ()
    outside_references: tuple[OutsideReference, ...] = ()
    """Undeclared tables' foreign keys into declared ones (each also a line in problems)."""
    references: tuple[str, ...] = ()
    """Every reference with the way locate follows it (README, "References")."""
    warnings: tuple[str, ...] = ()
    """Worth a look, not failing: declared tables no identity reaches."""

    @property
    def ok(self) -> bool:
        """Nothing to fix (notes are informational)."""
        return self.reachable and self.error is None and not self.problems and not self.advice

    def located_problems(self) -> list[str]:
        """The error and problems as ``store.table: message`` lines (advice excluded)."""
        lines = [f"{self.store}: {self.error}"] if self.error else []
        outside = {r.problem(self.store): r.located(self.store) for r in self.outside_references}
        for problem in self.problems:
            match = _WHERE.match(problem)
            if problem in outside:
                lines.append(outside[problem])
            elif match and match["table"]:
                lines.append(f"{match['store']}.{match['table']}: {match['rest']}")
            elif match:
                lines.append(f"{match['store']}: {match['rest']}")
            else:
                lines.append(f"{self.store}: {problem}")
        return lines

    def lines(self) -> tuple[DoctorLine, ...]:
        """What ``lifecycle doctor`` prints: error, schema and reference problems, index
        advice (with its statement), warnings, notes, then how each reference is followed."""
        lines = [DoctorLine("error", self.error, "problem")] if self.error else []
        outside = {r.problem(self.store) for r in self.outside_references}
        for problem in self.problems:
            label = "reference" if problem in outside else "schema"
            lines.append(DoctorLine(label, problem, "problem"))
        for advice in self.advice:
            where = f"{advice.table} ({', '.join(advice.columns)}): {advice.reason}"
            statement = (f"{advice.statement};",) if advice.statement else ()
            lines.append(DoctorLine("index", where, "advice", statement))
        lines += [DoctorLine("warning", warning, "warning") for warning in self.warnings]
        lines += [DoctorLine("note", note) for note in self.notes]
        lines += [DoctorLine("reference", reference) for reference in self.references]
        return tuple(lines)

    def report(self) -> DoctorReport:
        """The generic form every command prints (``connectors.doctor_report``)."""
        details = {k: v for k, v in self.to_json().items() if k not in ("store", "ok", "reachable")}
        return DoctorReport(
            store=self.store,
            type="sql",
            location=self.url,
            reachable=self.reachable,
            ok=self.ok,
            lines=self.lines(),
            problems=tuple(self.located_problems()),
            warnings=self.warnings,
            details=details,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "url": self.url,
            "reachable": self.reachable,
            "ok": self.ok,
            "error": self.error,
            "problems": list(self.problems),
            "advice": [a.to_json() for a in self.advice],
            "notes": list(self.notes),
            "references": list(self.references),
            "warnings": list(self.warnings),
            "outside_references": [r.to_json() for r in self.outside_references],
        }


# How schema problems start: "store 'crm', table 'orders': ..." or "store 'crm': ...".
_WHERE = re.compile(
    r"^store '(?P<store>[^']*)'(?:, table '(?P<table>[^']*)')?(?::|,) (?P<rest>.*)$", re.S
)


def _missing_sqlite_file(url: str) -> bool:
    # Connecting would create an empty database file: the doctor must change nothing.
    parsed = normalize_url(url)
    database = parsed.database
    return (
        parsed.get_backend_name() == "sqlite"
        and bool(database)
        and database != ":memory:"
        and not Path(str(database)).exists()
    )


def _check_schema(engine: Engine, store: SqlStore, shown: str) -> StoreCheck:
    """Schema against inventory, foreign keys from undeclared tables, indexes (doctor and
    ``config validate --live``)."""
    try:
        with sql_errors(store.name, "doctor (foreign keys of undeclared tables)"):
            outside = tuple(outside_references(engine, [t.name for t in store.tables]))
    except LifecycleError as e:
        return StoreCheck(store.name, shown, True, error=e.message)
    found = tuple(r.problem(store.name) for r in outside)
    try:
        schema = reflect_store(engine, store)
        advice = missing_indexes(engine, schema, store)
    except ConfigError as e:
        problems = tuple(e.problems) + found
        return StoreCheck(store.name, shown, True, problems=problems, outside_references=outside)
    except LifecycleError as e:
        return StoreCheck(
            store.name, shown, True, error=e.message, problems=found, outside_references=outside
        )
    notes = tuple(case_notes(schema, store))
    return StoreCheck(
        store.name,
        shown,
        True,
        problems=found,
        advice=tuple(advice),
        notes=notes,
        outside_references=outside,
        references=tuple(describe_edges(schema.edges)),
        warnings=tuple(reach_notes(schema.edges, store)),
    )


def check_store(store: SqlStore) -> StoreCheck:
    """Connect, reflect and check ``store``, and list the indexes it lacks. Read-only."""
    url = store.url.get_secret_value()
    try:
        shown = safe_url(url)
    except ConfigError as e:
        return StoreCheck(store.name, "(invalid URL)", False, error=e.message)
    if _missing_sqlite_file(url):
        return StoreCheck(store.name, shown, False, error="database file does not exist")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(1))
    except SQLAlchemyError as e:
        engine.dispose()
        # Never str(e): driver messages may echo the URL or parameters.
        error = f"cannot connect ({type(e).__name__}: {driver_code(e)})"
        return StoreCheck(store.name, shown, False, error=error)
    try:
        return _check_schema(engine, store, shown)
    finally:
        engine.dispose()


def doctor_report(store: SqlStore) -> DoctorReport:
    """The SQL store type's ``doctor`` hook (``connectors.catalog``): ``check_store``'s
    result in the generic form."""
    return check_store(store).report()
