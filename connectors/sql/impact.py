"""Incident impact on one SQL table: records, distinct subjects and clients, as counts.

A scope part (``incidents.scope.ScopePart``) names a declared table, optionally the columns
that leaked (rows where any of them holds a value) and a time window (``start <= column <
end``, by default on the table's ``timestamps.created``). Its subjects are counted by the
identity that reaches the table (``connectors.sql.impact_reach``):

- the subject table itself, or a table holding the reference into it (``orders.customer_id
  -> customers.id``, counted as ``customer_id``): ONE statement, no join,
  ``SELECT count(*), count(DISTINCT customer_id) FROM orders WHERE <window>``, the query
  one would write by hand;
- a longer chain (``order_items -> orders -> customers``): the records on the table alone,
  the subjects over the joins up to the table holding the reference into the subject table
  (``count(DISTINCT orders.customer_id) FROM order_items JOIN orders ...``); several paths
  to the same subject table: the distinct keys of their UNION;
- no identity: records only, 0 subjects.

A window on a column up the part's holders chain (``orders.ordered_at`` on ``order_items``,
``connectors.sql.impact_window``): the records by ``count(*) FROM order_items WHERE EXISTS
(SELECT 1 FROM orders AS o WHERE o.id = order_items.order_id AND <window>)``, each row once;
the subjects over the joins up to that table at least, filtered there
(``count(DISTINCT orders.customer_id) FROM order_items JOIN orders ... WHERE <window on
orders>``), or by the same EXISTS for a path that does not go through it.

Clients (``client_column`` on the part's table, else on the subject table, joined for it):
distinct subjects per client value, NULL as ``unassigned``. ``affected_keys`` streams the
same keys the count counted (``SELECT DISTINCT``, server-side cursor), as text.

Every read runs in one read-only transaction (PostgreSQL ``SET TRANSACTION READ ONLY``,
MySQL/MariaDB ``START TRANSACTION READ ONLY``, SQLite ``PRAGMA query_only`` for the
connection's turn) built with SQLAlchemy Core from reflected tables; errors are translated
by ``schema.sql_errors``, which never quotes a value.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from connectors.base import UNASSIGNED, ImpactCount
from connectors.sql.config import SqlStore
from connectors.sql.impact_reach import Path, Reach, SubjectKey, holder_routes, reach
from connectors.sql.impact_window import ChainWindow, chain_window, route_text, window_condition
from connectors.sql.locate import mysql_binary_collation, mysql_case_insensitive, table_categories
from connectors.sql.schema import StoreSchema, json_value, sql_errors, type_family
from core.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from incidents.scope import ScopePart

"""The client of rows whose client column is NULL."""

YIELD_PER = 5000
"""Keys fetched per round trip while streaming ``affected_keys``."""


@dataclass(frozen=True)
class PartQuery:
    """One scope part resolved against the reflected schema: what to count, and where."""

    store: str
    label: str
    table: sa.Table
    where: tuple[sa.ColumnElement[bool], ...]
    reach: Reach
    categories: tuple[str, ...]
    region: str | None
    client: tuple[Literal["part", "subject"], str] | None
    chain: ChainWindow | None = None  # a window on a column up the holders chain

    @property
    def rows(self) -> tuple[sa.ColumnElement[bool], ...]:
        """The conditions that select the part's rows on its table alone (no join)."""
        return self.where if self.chain is None else (*self.where, self.chain.exists)

    def along(self, path: Path) -> tuple[tuple[sa.ColumnElement[bool], ...], int]:
        """The conditions of a statement joining ``path``, and how many of its hops it must
        join: the chain window's route when the path goes through its table (filtered
        there), else none (the window as EXISTS on the part's rows)."""
        if self.chain is not None and self.chain.joined_by(path):
            return (*self.where, self.chain.condition), len(self.chain.route)
        return self.rows, 0


@contextmanager
def read_only(engine: Engine, store: str, operation: str) -> Iterator[Connection]:
    """A connection in a read-only transaction (where the backend has one), rolled back."""
    with sql_errors(store, operation), engine.connect() as conn:
        backend = engine.dialect.name
        if backend == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        elif backend in ("mysql", "mariadb"):
            conn.exec_driver_sql("START TRANSACTION READ ONLY")
        elif backend == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = ON")
        try:
            yield conn
        finally:
            try:
                conn.rollback()
                if backend == "sqlite":  # pooled connections go back writable
                    conn.exec_driver_sql("PRAGMA query_only = OFF")
                    conn.rollback()
            except BaseException:
                conn.invalidate()  # never back to the pool half reset
                raise


def _column(schema: StoreSchema, table: str, column: str, what: str) -> sa.Column[Any]:
    t = schema.tables[table]
    if column not in t.c:
        raise ConfigError(
            f"store '{schema.store}', table '{table}': unknown column '{column}' in {what}"
        )
    return t.c[column]


def _categories(store: SqlStore, part: ScopePart) -> tuple[str, ...]:
    if not part.columns:
        return table_categories(store, part.table or "")
    fields = store.table(part.table or "").fields
    return tuple(sorted({c for col in part.columns for c in fields.get(col, ())}))


def part_query(schema: StoreSchema, store: SqlStore, part: ScopePart) -> PartQuery:
    """``part`` checked (InvalidInput listing every problem) and resolved for counting."""
    up = part.window.column_table if part.window is not None else None
    qualified = part.table is not None and up not in (None, part.table)
    routes = holder_routes(schema, store, part.table or "") if qualified else {}
    holders = {t: [route_text(p) for p in paths] for t, paths in routes.items()}
    problems = store.scope_problems(part, holders if qualified else None)
    if problems or part.table is None:
        raise InvalidInput("; ".join(problems), store=store.name, part=part.label)
    decl = store.table(part.table)
    table = schema.tables[part.table]
    where: list[sa.ColumnElement[bool]] = []
    chain: ChainWindow | None = None
    if part.window is not None:
        holder = up or part.table
        name = part.window.column_name or (decl.timestamps.created if decl.timestamps else None)
        column = _column(schema, holder, name or "", "the incident window")
        if holder == part.table:
            where.append(window_condition(part.label, column, part.window))
        else:  # exactly one route: scope_problems refused the others
            chain = chain_window(schema, part.label, table, routes[holder][0], part.window)
    if part.columns:
        where.append(sa.or_(*(table.c[c].is_not(None) for c in part.columns)))
    reached = reach(schema, store, part.table)
    client: tuple[Literal["part", "subject"], str] | None = None
    if decl.client_column:
        client = ("part", decl.client_column)
        _column(schema, part.table, decl.client_column, "client_column")
    elif reached.subject is not None:
        owner = store.table(reached.subject.table)
        if owner.client_column:
            client = ("subject", owner.client_column)
            _column(schema, owner.name, owner.client_column, "client_column")
    return PartQuery(
        store=store.name,
        label=part.label,
        table=table,
        where=tuple(where),
        reach=reached,
        categories=_categories(store, part),
        region=store.region,
        client=client,
        chain=chain,
    )


def key_expression(
    schema: StoreSchema, table: sa.Table, column: str, casefold: bool
) -> sa.ColumnElement[Any]:
    """A subject key as it is counted: exact, or lower-cased for a case-insensitive identity.

    On MySQL/MariaDB in the column's binary collation, as locate matches (``casefold``):
    a ``_ci`` collation would merge ``jürgen`` and ``jurgen``, two people.
    """
    col = table.c[column]
    if type_family(col) != "string":
        return col
    expr: sa.ColumnElement[Any] = sa.func.lower(col) if casefold else col
    if schema.is_mysql and (casefold or mysql_case_insensitive(table, column)):
        expr = expr.collate(mysql_binary_collation(table, column))
    return expr


def _joined(
    schema: StoreSchema,
    base: sa.Table,
    path: Path,
    key: SubjectKey,
    *,
    to_subject: bool,
    through: int = 0,
) -> tuple[sa.FromClause, sa.ColumnElement[Any], sa.Table | None]:
    """The joins along ``path``, the subject key over them, and the subject table if joined.

    The last hop into the subject table is not joined when the referencing columns hold
    the key already (``orders.customer_id`` is ``customers.id``), unless ``to_subject`` or
    it is one of the first ``through`` hops (a chain window's table, filtered there).
    """
    joined: sa.FromClause = base
    current = base
    for i, hop in enumerate(path):
        edge = hop.edge
        last = i == len(path) - 1 and i >= through
        if hop.up and last and not to_subject and key.column in edge.to_columns:
            held = edge.columns[edge.to_columns.index(key.column)]
            return joined, key_expression(schema, current, held, key.casefold), None
        nxt = schema.tables[hop.to_table]
        child, parent = (current, nxt) if hop.up else (nxt, current)
        on = sa.and_(
            *(child.c[c] == parent.c[p] for c, p in zip(edge.columns, edge.to_columns, strict=True))
        )
        joined = joined.join(nxt, on)
        current = nxt
    return joined, key_expression(schema, current, key.column, key.casefold), current


def _keys(
    schema: StoreSchema, q: PartQuery, key: SubjectKey
) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """Each distinct subject key of the part once (NULL keys are no subject)."""
    selects = []
    for path in q.reach.paths:
        where, through = q.along(path)
        joined, expr, _ = _joined(schema, q.table, path, key, to_subject=False, through=through)
        selects.append(
            sa.select(expr.label("k")).select_from(joined).where(*where, expr.is_not(None))
        )
    if len(selects) == 1:
        return selects[0].distinct()
    return sa.union(*selects)


def _counts(conn: Connection, schema: StoreSchema, q: PartQuery) -> tuple[int, int]:
    base, key = q.table, q.reach.subject
    records = sa.select(sa.func.count()).select_from(base).where(*q.rows)
    if key is None:
        return int(conn.execute(records).scalar_one()), 0
    if len(q.reach.paths) == 1:
        where, through = q.along(q.reach.paths[0])
        joined, expr, _ = _joined(
            schema, base, q.reach.paths[0], key, to_subject=False, through=through
        )
        if joined is base:  # the subject table, or the reference into it: one statement
            stmt = sa.select(sa.func.count(), sa.func.count(sa.distinct(expr)))
            row = conn.execute(stmt.select_from(base).where(*where)).one()
            return int(row[0]), int(row[1])
        subjects = sa.select(sa.func.count(sa.distinct(expr))).select_from(joined)
        subjects = subjects.where(*where)
    else:
        subjects = sa.select(sa.func.count()).select_from(_keys(schema, q, key).subquery())
    return int(conn.execute(records).scalar_one()), int(conn.execute(subjects).scalar_one())


def _client_name(value: Any) -> str:
    return UNASSIGNED if value is None else str(json_value(value))


def _clients(conn: Connection, schema: StoreSchema, q: PartQuery) -> dict[str, int]:
    if q.client is None:
        return {}
    where, column = q.client
    key = q.reach.subject
    stmt: sa.Select[Any]
    if key is None:  # the clients whose rows are in scope; no subject can be counted
        col = q.table.c[column]
        found = conn.execute(sa.select(col).where(*q.rows).distinct())
        return dict(sorted((_client_name(client), 0) for (client,) in found))
    else:
        to_subject = where == "subject"
        selects = []
        for path in q.reach.paths:
            along, through = q.along(path)
            joined, expr, subject = _joined(
                schema, q.table, path, key, to_subject=to_subject, through=through
            )
            owner = subject if to_subject and subject is not None else q.table
            conditions = along if len(q.reach.paths) == 1 else (*along, expr.is_not(None))
            selects.append(
                sa.select(owner.c[column].label("c"), expr.label("k"))
                .select_from(joined)
                .where(*conditions)
            )
        pairs = (selects[0] if len(selects) == 1 else sa.union(*selects)).subquery()
        stmt = sa.select(pairs.c.c, sa.func.count(sa.distinct(pairs.c.k))).group_by(pairs.c.c)
    clients: dict[str, int] = {}
    for client, subjects in conn.execute(stmt):
        name = _client_name(client)
        clients[name] = clients.get(name, 0) + int(subjects)
    return dict(sorted(clients.items()))


def count_impact(engine: Engine, schema: StoreSchema, q: PartQuery) -> ImpactCount:
    """Records, distinct subjects and clients of the part, in one read-only transaction."""
    with read_only(engine, q.store, "incident impact count") as conn:
        records, subjects = _counts(conn, schema, q)
        clients = _clients(conn, schema, q)
    return ImpactCount(
        records=records,
        subjects=subjects,
        identity=q.reach.identity,
        categories=q.categories,
        region=q.region,
        clients=clients,
    )


def affected_keys(engine: Engine, schema: StoreSchema, q: PartQuery) -> Generator[str, None, None]:
    """Each distinct subject key of the part once, as text, streamed (bounded memory).

    A generator: ``close()`` it when stopping early, which closes the server-side cursor
    and ends the transaction at once instead of when it is garbage-collected.
    """
    key = q.reach.subject
    if key is None:
        return
    stmt = _keys(schema, q, key)
    with (
        read_only(engine, q.store, "listing affected subjects") as conn,
        conn.execute(stmt, execution_options={"yield_per": YIELD_PER}) as result,
    ):
        for (value,) in result:
            yield str(json_value(value))
