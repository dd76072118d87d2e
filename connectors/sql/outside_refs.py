"""Foreign keys that undeclared tables hold into the inventory's tables.

Reflection and planning see only the declared tables, so a table left out of the
inventory that references one of them is invisible until an erasure deletes a row it
references: then the database refuses the DELETE (the default ``NO ACTION``/``RESTRICT``),
or worse, acts on rows nobody planned, exported or audited (``ON DELETE CASCADE`` deletes
them, ``SET NULL``/``SET DEFAULT`` rewrites them). ``outside_references`` finds every
such foreign key before anything runs, with one read-only pass of SQLAlchemy's inspector
over the current schema (PostgreSQL: ``current_schema()``; MySQL/MariaDB: the URL's
database; SQLite: ``main``). Names only, never values.

``violation`` reads the same names from a driver's integrity error (constraint and
referencing table), so a failed erasure can say which reference stopped it without
passing on the driver's message, which quotes key values.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors.sql.schema import StoreSchema, driver_code
from core.errors import TerminalError

# ON DELETE actions with which the database changes the holder's rows itself.
ACTING = frozenset({"CASCADE", "SET NULL", "SET DEFAULT"})
_REMEDY = "declare the table in the inventory (with follow:) or drop the constraint"


@dataclass(frozen=True)
class OutsideReference:
    """An enforced foreign key of an undeclared table (``holder``) into a declared one."""

    holder: str
    constraint: str | None  # None where the backend names none (an unnamed SQLite FK)
    columns: tuple[str, ...]
    target: str
    to_columns: tuple[str, ...]
    not_null: bool  # every holder column is NOT NULL
    on_delete: str | None  # as reflected, upper case; None for the default (NO ACTION)

    @property
    def acting(self) -> bool:
        """Whether deleting a target row makes the database delete or rewrite holder rows."""
        return self.on_delete in ACTING

    @property
    def consequence(self) -> str:
        """What an erasure deleting referenced target rows does here."""
        cols = ", ".join(self.columns)
        if self.on_delete == "CASCADE":
            return (
                f"ON DELETE CASCADE: an erasure that deletes {self.target} rows makes the "
                f"database silently delete the {self.holder} rows referencing them, which the "
                "inventory does not know about (worse than a failure)"
            )
        if self.on_delete in ("SET NULL", "SET DEFAULT"):
            value = "NULL" if self.on_delete == "SET NULL" else "its default"
            return (
                f"ON DELETE {self.on_delete}: an erasure that deletes {self.target} rows makes "
                f"the database set {self.holder} ({cols}) to {value} in rows the inventory "
                "does not know about"
            )
        return f"an erasure that deletes {self.target} rows referenced there fails"

    @property
    def detail(self) -> str:
        """The reference and its consequence, after the holder's name."""
        key = f"foreign key {self.constraint}" if self.constraint else "an unnamed foreign key"
        nullability = "NOT NULL" if self.not_null else "nullable"
        return (
            f"holds {key} ({', '.join(self.columns)}) -> "
            f"{self.target}({', '.join(self.to_columns)}), {nullability}: "
            f"{self.consequence}; {_REMEDY}"
        )

    def problem(self, store: str) -> str:
        """The doctor's problem line: names store, tables, columns and constraint only."""
        return f"store '{store}': undeclared table '{self.holder}' {self.detail}"

    def located(self, store: str) -> str:
        """The same as a ``store.table: ...`` line (``config validate --live``)."""
        return f"{store}.{self.holder}: undeclared table {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "constraint": self.constraint,
            "columns": list(self.columns),
            "target": self.target,
            "to_columns": list(self.to_columns),
            "not_null": self.not_null,
            "on_delete": self.on_delete,
            "acting": self.acting,
        }


def _in_current_schema(fk: dict[str, Any], default_schema: str | None) -> bool:
    return fk.get("referred_schema") in (None, default_schema)


def outside_references(engine: Engine, declared: Collection[str]) -> list[OutsideReference]:
    """Every enforced FK an undeclared table holds into a table in ``declared``.

    Read-only: table names, then the foreign keys of the undeclared tables and the
    columns of those that hold one (one query each on PostgreSQL; per table elsewhere).
    Sorted by holder, target and columns. Raises ``SQLAlchemyError`` (callers translate).
    """
    wanted = set(declared)
    inspector = sa.inspect(engine)
    undeclared = [t for t in inspector.get_table_names() if t not in wanted]
    if not undeclared or not wanted:
        return []
    default_schema = inspector.default_schema_name
    found: list[tuple[str, dict[str, Any]]] = []
    multi = inspector.get_multi_foreign_keys(filter_names=undeclared)
    for (_schema, holder), fks in multi.items():
        for fk in fks:
            if fk["referred_table"] in wanted and _in_current_schema(dict(fk), default_schema):
                found.append((holder, dict(fk)))
    if not found:
        return []
    holders = sorted({holder for holder, _ in found})
    nullable = {
        (holder, col["name"]): bool(col["nullable"])
        for (_schema, holder), cols in inspector.get_multi_columns(filter_names=holders).items()
        for col in cols
    }
    refs = [
        OutsideReference(
            holder=holder,
            constraint=fk.get("name") or None,
            columns=tuple(fk["constrained_columns"]),
            target=fk["referred_table"],
            to_columns=tuple(fk["referred_columns"]),
            not_null=not any(nullable.get((holder, c), True) for c in fk["constrained_columns"]),
            on_delete=_action(fk),
        )
        for holder, fk in found
    ]
    return sorted(refs, key=lambda r: (r.holder, r.target, r.columns, r.constraint or ""))


def _action(fk: dict[str, Any]) -> str | None:
    action = (fk.get("options") or {}).get("ondelete")
    if not action:
        return None
    normalized = " ".join(str(action).upper().split())
    return None if normalized == "NO ACTION" else normalized


def referencing(engine: Engine, declared: Collection[str], table: str) -> list[OutsideReference]:
    """The undeclared holders of foreign keys into ``table`` (for an error that names none)."""
    return [r for r in outside_references(engine, declared) if r.target == table]


# --- what a failed statement's integrity error names --------------------------------------

# MySQL/MariaDB 1451 (a parent row is still referenced) and 1452 (a child row without its
# parent): "... a foreign key constraint fails (`db`.`child`, CONSTRAINT `name` FOREIGN KEY
# (`col`) REFERENCES `parent` (`id`))". Only the names are taken from it; nothing else of
# the message is ever passed on.
_MYSQL_PARENT, _MYSQL_CHILD = 1451, 1452
_MYSQL_FK = re.compile(
    r"\(`[^`]*`\.`(?P<holder>[^`]+)`, CONSTRAINT `(?P<constraint>[^`]+)` FOREIGN KEY "
    r"\([^)]*\) REFERENCES `(?P<target>[^`]+)`"
)
_PG_FOREIGN_KEY = "23503"
_SQLITE_FOREIGN_KEY = "SQLITE_CONSTRAINT_FOREIGNKEY"


@dataclass(frozen=True)
class Violation:
    """The names a driver gives for a violated constraint: never values."""

    foreign_key: bool
    constraint: str | None = None
    holder: str | None = None  # the table holding the constraint (the referencing one)
    parent_side: bool | None = None  # a referenced row went (True), a reference dangles (False)


def violation(error: BaseException, table: str | None) -> Violation | None:
    """What the driver says about the constraint ``error`` violates, or None if nothing.

    ``table`` is the table the failing statement changed: on PostgreSQL a foreign key held
    by another table was violated from its referenced (parent) side.
    """
    orig = getattr(error, "orig", None)
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg 3
        constraint, holder = diag.constraint_name, diag.table_name
        if getattr(orig, "sqlstate", None) == _PG_FOREIGN_KEY:
            # Held by another table: a referenced row went. Held by the changed table
            # itself (a self-reference, or a new dangling value): the driver does not say.
            parent_side = True if table is not None and holder != table else None
            return Violation(True, constraint, holder, parent_side)
        return Violation(False, constraint, holder) if constraint else None
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if len(args) >= 2 and args[0] in (_MYSQL_PARENT, _MYSQL_CHILD) and isinstance(args[1], str):
        match = _MYSQL_FK.search(args[1])
        parent_side = args[0] == _MYSQL_PARENT
        if match is None:
            return Violation(True, parent_side=parent_side)
        return Violation(True, match["constraint"], match["holder"], parent_side)
    if getattr(orig, "sqlite_errorname", None) == _SQLITE_FOREIGN_KEY:
        return Violation(True)  # SQLite names neither table nor constraint
    return None


def _holders_hint(engine: Engine | None, schema: StoreSchema | None, table: str | None) -> str:
    """Which tables may hold the references, where the driver names none (SQLite)."""
    if engine is None or schema is None or table is None:
        return "the database does not say which table holds them"
    try:
        refs = referencing(engine, schema.tables, table)
    except SQLAlchemyError:
        refs = []  # the error being reported matters more than this hint
    outside = [
        f"{r.holder} ({r.constraint})" if r.constraint else r.holder
        for r in refs
        if not r.acting  # CASCADE and SET NULL never refuse a delete
    ]
    if outside:
        return (
            f"undeclared tables referencing {table}: {', '.join(outside)}; declare them in "
            "the inventory or remove the reference"
        )
    inside = sorted({e.child for e in schema.edges_into(table) if e.enforced})
    if inside:
        return f"tables referencing {table}: {', '.join(inside)}; plan the erasure again"
    return "the database does not say which table holds them"


def integrity_error(
    e: SQLAlchemyError,
    store: str,
    operation: str,
    *,
    table: str | None,
    schema: StoreSchema | None,
    engine: Engine | None,
) -> TerminalError | None:
    """``e`` as an error naming table, constraint and referencing table, or None if the
    driver names no constraint. The driver's message is never used: it quotes values."""
    found = violation(e, table)
    if found is None:
        return None
    parts = driver_code(e).split(" ", 1)  # the driver's class, then its code
    code = f"{type(e).__name__} {parts[1]}" if len(parts) == 2 else type(e).__name__
    via = f"foreign key {found.constraint}" if found.constraint else "a foreign key"
    declared = schema is not None and found.holder in schema.tables
    rows = f"rows of {table}" if table else "rows"
    of = f" of {found.holder}" if found.holder else ""
    if not found.foreign_key:
        detail = f"constraint {found.constraint}{of} refused the change ({code})"
    elif found.parent_side is False:
        detail = f"{rows} would reference missing rows through {via} ({code})"
    elif found.holder is not None and found.parent_side is None:
        detail = f"{via}{of} refused the change to {rows} ({code})"
    elif found.holder is not None:
        remedy = (
            "plan the erasure again"
            if declared
            else f"declare {found.holder} in the inventory or remove the reference"
        )
        detail = f"{rows} are still referenced by {found.holder} through {via} ({code}); {remedy}"
    else:
        hint = _holders_hint(engine, schema, table)
        detail = f"{rows} are still referenced through {via} ({code}); {hint}"
    return TerminalError(
        f"store '{store}': {operation} failed: {detail}",
        store=store,
        operation=operation,
        table=table,
        constraint=found.constraint,
        referencing_table=found.holder,
    )
