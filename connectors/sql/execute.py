"""Carrying out a SQL erasure plan: one transaction per store, set-based batches.

Every step runs in bounded batches of keys (``tuple(key columns) IN (batch)``): DELETE;
UPDATE for masks (null and redact are constants, one statement per batch; hash and
pseudonym depend on the original, so a batch reads the originals once and writes them
with one executemany UPDATE); UPDATE ... SET NULL for UNLINK steps (the FK columns of the
rows referencing the batch). Masks skip rows already masked, so running a committed plan
again changes nothing and reports 0 rows.

The whole plan is one transaction: on any failure nothing is changed. Just before the
COMMIT, ``on_prepared`` receives every batch (counts, digests and keys), so the caller can
write them down as intents while an exception can still roll everything back; ``on_batch``
is called only after the commit, so the ledger never records work that was rolled back,
and a crash between the commit and the caller's bookkeeping leaves intents to reconcile
(``connectors.sql.effects``).
Database errors are translated at this boundary (lock and connection problems are
``TransientError``, the rest ``TerminalError``) with messages naming the store, step and
batch, never SQLAlchemy's ``str(e)``: it carries the bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from connectors.base import (
    Action,
    BatchResult,
    Key,
    OnBatch,
    OnPrepared,
    StorePlan,
    TargetPlan,
    keys_digest,
)
from connectors.sql.edges import Edge
from connectors.sql.masks import MASK_KINDS, PER_ROW, Masker, is_masked_value, masked_clause
from connectors.sql.outside_refs import integrity_error
from connectors.sql.schema import StoreSchema, batches, driver_code, key_clause
from connectors.sql.shared import checked_edges, shared_keys
from core.engines import IMMEDIATE, checkpoint_wal, reclaim_storage
from core.errors import LifecycleError, TerminalError, TransientError

# Lock and connection problems, which a retry may clear. PostgreSQL SQLSTATE classes 08
# (connection), 40 (serialization failure, deadlock), 53 (insufficient resources) and 57P
# (server shutting down), plus lock_not_available and query_canceled (lock/statement
# timeouts); MySQL/MariaDB error numbers for lock wait timeout, deadlock, too many
# connections, shutdown and lost connections; SQLite BUSY and LOCKED.
_PG_CLASSES = ("08", "40", "53", "57P")
_PG_CODES = frozenset({"55P03", "57014"})
_MYSQL_CODES = frozenset({1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055})
_SQLITE_CODES = frozenset({5, 6})


def _error_code(e: SQLAlchemyError) -> str | int | None:
    orig = getattr(e, "orig", None)
    for attr in ("sqlstate", "sqlite_errorcode"):
        code = getattr(orig, attr, None)
        if isinstance(code, str | int):
            return code
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _transient_code(e: sa.exc.DBAPIError, code: str | int | None) -> bool:
    if hasattr(e.orig, "sqlite_errorcode"):
        return isinstance(code, int) and code & 0xFF in _SQLITE_CODES
    if isinstance(code, str):
        return code.startswith(_PG_CLASSES) or code in _PG_CODES
    if isinstance(code, int):
        return code in _MYSQL_CODES
    # psycopg reports a lost or refused connection without a SQLSTATE.
    return isinstance(e, sa.exc.OperationalError)


def is_transient(e: SQLAlchemyError) -> bool:
    """Whether a database error is a lock or connection problem (worth a retry)."""
    if isinstance(e, sa.exc.DisconnectionError | sa.exc.TimeoutError):
        return True
    if not isinstance(e, sa.exc.DBAPIError):
        return False
    return e.connection_invalidated or _transient_code(e, _error_code(e))


def translate_error(
    e: SQLAlchemyError,
    store: str,
    operation: str,
    *,
    table: str | None = None,
    schema: StoreSchema | None = None,
    engine: Engine | None = None,
) -> LifecycleError:
    """The product error for a database error: class and code only, never ``str(e)``.

    An integrity error also names the constraint and the referencing table where the
    driver gives them (``table`` is the one the statement changed); where it gives none
    (SQLite), ``engine`` and ``schema`` let it list the undeclared tables referencing
    ``table``.
    """
    if isinstance(e, sa.exc.IntegrityError):
        named = integrity_error(e, store, operation, table=table, schema=schema, engine=engine)
        if named is not None:
            return named
    kind = TransientError if is_transient(e) else TerminalError
    return kind(
        f"store '{store}': {operation} failed ({type(e).__name__}: {driver_code(e)})",
        store=store,
        operation=operation,
    )


def unlink_edge(schema: StoreSchema, step: TargetPlan) -> Edge:
    """The enforced reference an UNLINK step clears (its child table and FK columns)."""
    columns = tuple(m.column for m in step.masks)
    for edge in schema.edges:
        if edge.enforced and edge.child == step.target and edge.columns == columns:
            return edge
    raise TerminalError(
        f"store '{schema.store}': no enforced reference {step.target}.{','.join(columns)}",
        store=schema.store,
        target=step.target,
    )


def _check_plan(schema: StoreSchema, plan: StorePlan) -> None:
    """Refuse a plan (possibly read back from storage) that does not fit the schema."""
    problems: list[str] = []
    if plan.store != schema.store:
        problems.append(f"plan is for store '{plan.store}'")
    for step in plan.steps:
        table = schema.tables.get(step.target)
        if table is None or step.target not in schema.keys:
            problems.append(f"{step.target}: not in the reflected schema")
            continue
        width = len(schema.keys[step.target])
        if step.action != Action.UNLINK and any(len(k) != width for k in step.keys):
            problems.append(f"{step.target}: keys do not match its {width} key column(s)")
        if step.action in (Action.MASK, Action.UNLINK) and not step.masks:
            problems.append(f"{step.target}: {step.action} step with no masks")
        for mask in step.masks:
            if mask.column not in table.c or mask.mask not in MASK_KINDS:
                problems.append(f"{step.target}.{mask.column}: unknown column or mask kind")
        if step.action == Action.UNLINK:
            try:
                edge = unlink_edge(schema, step)
            except TerminalError as e:
                problems.append(e.message)
                continue
            if any(len(k) != len(schema.keys[edge.parent]) for k in step.keys):
                problems.append(f"{step.target}: keys do not match {edge.parent}'s key")
    if problems:
        raise TerminalError(
            f"store '{schema.store}': plan does not fit the schema: " + "; ".join(problems),
            store=schema.store,
        )


def _delete(conn: Connection, schema: StoreSchema, step: TargetPlan, batch: Sequence[Key]) -> int:
    table = schema.tables[step.target]
    stmt = sa.delete(table).where(key_clause(table, schema.keys[step.target], batch))
    return conn.execute(stmt).rowcount


def _unlink(conn: Connection, schema: StoreSchema, step: TargetPlan, batch: Sequence[Key]) -> int:
    edge = unlink_edge(schema, step)
    child, parent = schema.tables[edge.child], schema.tables[edge.parent]
    parent_key = schema.keys[edge.parent]
    where: ColumnElement[bool]
    if set(edge.to_columns) == set(parent_key):
        # The FK holds the parent's key values: match them directly. (A subquery on the
        # same table would be refused by MySQL for self-references.)
        order = [parent_key.index(c) for c in edge.to_columns]
        where = key_clause(child, edge.columns, [tuple(k[i] for i in order) for k in batch])
    else:
        referenced = sa.select(*(parent.c[c] for c in edge.to_columns)).where(
            key_clause(parent, parent_key, batch)
        )
        cols = [child.c[c] for c in edge.columns]
        where = (cols[0] if len(cols) == 1 else sa.tuple_(*cols)).in_(referenced)
    stmt = sa.update(child).where(where).values(dict.fromkeys(edge.columns))
    return conn.execute(stmt).rowcount


def mask_batch(
    conn: Connection, schema: StoreSchema, step: TargetPlan, batch: Sequence[Key], masker: Masker
) -> int:
    table = schema.tables[step.target]
    specs = [(table.c[m.column], m.mask) for m in step.masks]
    unmasked = sa.not_(sa.and_(*(masked_clause(kind, col) for col, kind in specs)))
    where = sa.and_(key_clause(table, schema.keys[step.target], batch), unmasked)
    constants = {
        col.name: masker.value(kind, col, None) for col, kind in specs if kind not in PER_ROW
    }
    per_row = [(col, kind) for col, kind in specs if kind in PER_ROW]
    if not per_row:
        return conn.execute(sa.update(table).where(where).values(constants)).rowcount
    key_cols = [table.c[c] for c in schema.keys[step.target]]
    # Lock the rows read so their originals cannot change before the write.
    found = conn.execute(
        sa.select(*key_cols, *(col for col, _ in per_row)).where(where).with_for_update()
    ).all()
    params: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in found:
        originals = row[len(key_cols) :]
        item = {f"lc_k{i}": row[i] for i in range(len(key_cols))}
        for i, ((col, kind), original) in enumerate(zip(per_row, originals, strict=True)):
            item[f"lc_o{i}"] = original
            keep = is_masked_value(kind, original)
            item[f"lc_v{i}"] = original if keep else masker.value(kind, col, original)
        params[tuple(row)] = item
    if not params:
        return 0
    # Matching the originals too makes this exact for tables keyed by non-unique columns.
    stmt = (
        sa.update(table)
        .where(*(col == sa.bindparam(f"lc_k{i}") for i, col in enumerate(key_cols)))
        .where(
            *(
                col.is_not_distinct_from(sa.bindparam(f"lc_o{i}"))
                for i, (col, _) in enumerate(per_row)
            )
        )
        .values(
            constants | {col.name: sa.bindparam(f"lc_v{i}") for i, (col, _) in enumerate(per_row)}
        )
    )
    result = conn.execute(stmt, list(params.values()))
    return result.rowcount if conn.dialect.supports_sane_multi_rowcount else len(found)


def own_rows(plan: StorePlan) -> dict[str, set[Key]]:
    """The rows this erasure deletes or masks, per table: not "outside" for the shared check."""
    own: dict[str, set[Key]] = {}
    for step in plan.steps:
        if step.action in (Action.DELETE, Action.MASK):
            own.setdefault(step.target, set()).update(step.keys)
    return own


def _unshared(  # noqa: PLR0917 - one batch of one step, in its transaction
    conn: Connection,
    schema: StoreSchema,
    store: str,
    step: TargetPlan,
    batch: Sequence[Key],
    own: dict[str, set[Key]],
    results: list[BatchResult],
) -> Sequence[Key]:
    """``batch`` without the rows that rows outside the erasure now reference.

    Checked inside the erasure's transaction, so a reference added while the plan waited
    for approval is seen; such rows are kept (reported as a KEEP batch) and stop counting
    as the erasure's own rows for the tables they reference.
    """
    if step.action not in (Action.DELETE, Action.MASK) or not checked_edges(schema, step.target):
        return batch
    kept = shared_keys(conn, schema, step.target, batch, own, len(batch))
    if not kept:
        return batch
    own[step.target] -= kept
    results.append(
        BatchResult(store, step.target, Action.KEEP, len(kept), keys_digest(sorted(kept, key=repr)))
    )
    return [k for k in batch if k not in kept]


def execute_plan(  # noqa: PLR0917 - the connector's fixed call signature
    engine: Engine,
    schema: StoreSchema,
    plan: StorePlan,
    masker: Masker,
    on_batch: OnBatch,
    batch_size: int,
    on_prepared: OnPrepared | None = None,
) -> list[BatchResult]:
    """Run ``plan`` in one transaction; report each batch to ``on_batch`` after the commit.

    ``on_prepared`` gets all batches inside the transaction, just before the COMMIT.
    """
    _check_plan(schema, plan)
    results: list[BatchResult] = []
    own = own_rows(plan)
    where = "start"
    target: str | None = None  # the table the failing statement changed
    try:
        with engine.execution_options(**{IMMEDIATE: True}).begin() as conn:
            for step in plan.steps:
                if step.action not in (Action.DELETE, Action.MASK, Action.UNLINK):
                    continue  # KEEP and DEFER touch nothing
                for number, planned in enumerate(batches(step.keys, batch_size), 1):
                    where = f"{step.action} {step.target} batch {number}"
                    target = step.target
                    batch = _unshared(conn, schema, plan.store, step, planned, own, results)
                    if not batch:
                        continue
                    if step.action == Action.DELETE:
                        affected = _delete(conn, schema, step, batch)
                    elif step.action == Action.UNLINK:
                        affected = _unlink(conn, schema, step, batch)
                    else:
                        affected = mask_batch(conn, schema, step, batch, masker)
                    results.append(
                        BatchResult(
                            plan.store,
                            step.target,
                            step.action,
                            affected,
                            keys_digest(batch),
                            keys=tuple(batch),
                        )
                    )
            if on_prepared is not None:
                where, target = "recording intents", None
                on_prepared(results)  # raising here rolls the whole plan back
            where, target = "commit", None
    except SQLAlchemyError as e:
        operation = f"erasure ({where})"
        raise translate_error(
            e, schema.store, operation, table=target, schema=schema, engine=engine
        ) from e
    for result in results:
        on_batch(result)
    return results


def _finish_sqlite(engine: Engine, vacuum: bool) -> None:
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        checkpoint_wal(engine, vacuum=vacuum)
    except dbapi_error as e:
        code = getattr(e, "sqlite_errorcode", 0)
        kind = TransientError if int(code) & 0xFF in _SQLITE_CODES else TerminalError
        raise kind(f"secure erasure: SQLite maintenance failed ({type(e).__name__})") from e


def finish_secure_erasure(
    engine: Engine, schema: StoreSchema, tables: Sequence[str], vacuum: bool
) -> None:
    """Make erased values unrecoverable from the store's files, after the erasure committed.

    SQLite: the engine runs with ``secure_delete=ON``, so deleted and overwritten content
    is zeroed in the pages; the old page images still sit in the WAL until a checkpoint,
    so a ``wal_checkpoint(TRUNCATE)`` copies the zeroed pages into the database file and
    empties the WAL. ``vacuum`` also rewrites the file, which clears free pages left by
    writers that ran without ``secure_delete``.

    PostgreSQL: a DELETE or UPDATE leaves the old row version as a dead tuple in the heap
    (and index entries) until VACUUM. ``vacuum=True`` runs ``VACUUM (ANALYZE)`` on each
    touched table at once (autocommit: VACUUM cannot run in a transaction), so the dead
    tuples' space is reclaimed and reused; it costs I/O proportional to the table.
    Without it, autovacuum does the same later. Either way, WAL archives and backups keep
    the old values until they expire: retention of those is an operational policy.

    MySQL/MariaDB (InnoDB): old row versions live in the undo log and delete-marked
    records in the pages until the purge thread removes them, shortly after the commit
    once no read view needs them; there is nothing to call for that. ``vacuum=True``
    additionally rebuilds each table (``OPTIMIZE TABLE``) so freed space in the pages is
    rewritten, at the cost of copying the table. Binary logs and backups keep old values
    until they expire.
    """
    unknown = sorted(set(tables) - set(schema.tables))
    if unknown:
        raise TerminalError(
            f"store '{schema.store}': secure erasure of undeclared tables: {', '.join(unknown)}",
            store=schema.store,
        )
    names = sorted(set(tables))
    if engine.dialect.name == "sqlite":
        _finish_sqlite(engine, vacuum)
        return
    if not vacuum or not names:
        return
    try:
        reclaim_storage(engine, [schema.tables[name] for name in names])
    except SQLAlchemyError as e:
        raise translate_error(e, schema.store, "secure erasure (vacuum)") from e
