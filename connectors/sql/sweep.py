"""Retention sweeps on one SQL table: count, then delete or anonymize in keyset batches.

A batch is found by a keyset read (``pk > cursor ORDER BY pk LIMIT n`` over the expired
rows), then acted on by a *range* statement in its own short transaction:
``DELETE ... WHERE expired AND pk > lo AND pk <= hi``. The range statement touches exactly
the keys that were read (no expired row lies between them, by construction), costs one
index range scan, and binds four values however large the batch, so it works within every
driver's parameter limit. The read's keys give the batch's count and digest before
anything changes, which is what the caller records first: a crash between the commit and
the audit record is then finished from that record, and re-running a range whose rows
are gone touches nothing.

On PostgreSQL with a single integer key, ``delete_next`` finds, deletes and (``audit:
keys``) digests a batch in one transaction, with no key sent to Python (see there); rows
written in time order take its *dense* form, which reads the batch's keys from the key
index alone. In ``audit: range`` mode no key is read at all where the keys are dense: a
batch is the DELETE of the next ``size`` key values after the cursor (a *key span*), its
count what the DELETE took; the key range is read once per sweeper. On the benchmark's
2,000,000-row table (``benchmarks/retention_floor.py``, a shared machine) spans of 50,000
cost 1.07-1.34x one raw DELETE of the same rows; reading each batch's last key from the
index first cost about 0.3x more.

The verification's count after the batches (``recount``) is planned for a table whose
expired rows were just deleted (on PostgreSQL without index-only scans): where expired
rows lie among the rest it costs about half what the default plan does (0.19x / 0.37x the
raw DELETE against 0.35x / 0.68x in two runs), and about as much where they lie together.

Expiry is the conjunction of the target's conditions (the longest retention wins); a clock
reached through references is an ``IN (SELECT ...)`` chain, which every backend runs as a
semi-join. Rows of subjects under a legal hold are excluded by key. Anonymizing skips
rows whose fields already hold their mask, so sweeps are idempotent night after night.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import partial
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.sql.elements import ColumnElement

from config.schema.inventory import Reference
from connectors.base import Action, Key, MaskSpec, SweepBatch, TargetPlan, keys_digest
from connectors.sql.execute import mask_batch
from connectors.sql.masks import Masker, mask_problem, masked_clause
from connectors.sql.planning import identity_mask
from connectors.sql.schema import StoreSchema, coerce_key, json_key, key_clause, sql_errors
from core.engines import IMMEDIATE
from core.errors import ConfigError, TerminalError, TransientError
from retention.targets import Condition, SweepTarget


class _Dense(Enum):
    NOT = "not dense"
    """``SqlSweeper._read_and_delete``: the DELETE did not take every key read; rolled back."""


DENSE_SHARE = 4
"""``range`` mode: a key span or dense window whose DELETE took under 1/DENSE_SHARE of its
keys sends the next batches to the next form (see ``SqlSweeper._delete_range_next``)."""

_Delete = Callable[[Key | None, int, Callable[[SweepBatch], None]], SweepBatch | None]
"""A range-mode batch form: (cursor, size, before_commit) -> the batch, None past the end."""


@dataclass
class _Backoff:
    """A batch form that did not fit is tried again ever more rarely (after 1, 2, .. 64)."""

    skips: int = 0
    wait: int = 1

    def due(self) -> bool:
        """Whether to try the form for this batch (else one skip is used up)."""
        if self.skips:
            self.skips -= 1
            return False
        return True

    def worked(self, fits: bool) -> None:
        """The form fitted (tried next time too) or not (skipped for a while, longer each time)."""
        if fits:
            self.wait = 1
        else:
            self.skips = self.wait
            self.wait = min(self.wait * 2, 64)


MAX_HELD_KEYS = 10_000
"""Held rows are excluded by binding their keys; drivers cap bound values (PostgreSQL at
65,535), and a subject hold covers one person's rows, far fewer than this."""


def cutoff_value(column: sa.ColumnElement[Any], cutoff: datetime) -> Any:
    """``cutoff`` (naive UTC) as the column compares: aware for TIMESTAMPTZ, a date for DATE."""
    typ = column.type
    if isinstance(typ, sa.DateTime):
        return cutoff.replace(tzinfo=UTC) if typ.timezone else cutoff
    if isinstance(typ, sa.Date):
        return cutoff.date()  # a DATE is expired from the day after the cut-off's day
    return cutoff


def _via(
    schema: StoreSchema, table: sa.Table, hops: Sequence[Reference], column: str, cutoff: datetime
) -> ColumnElement[bool]:
    ref, rest = hops[0], hops[1:]
    parent = schema.tables[ref.table]
    if rest:
        inner = _via(schema, parent, rest, column, cutoff)
    else:
        inner = parent.c[column] < cutoff_value(parent.c[column], cutoff)
    sub = sa.select(*(parent.c[c] for c in ref.to_columns)).where(inner)
    cols = [table.c[c] for c in ref.columns]
    clause: ColumnElement[bool] = (cols[0] if len(cols) == 1 else sa.tuple_(*cols)).in_(sub)
    return clause


def expired_clause(
    schema: StoreSchema, table: sa.Table, condition: Condition
) -> ColumnElement[bool]:
    """SQL true for rows whose clock is before the condition's cut-off (NULL: no clock yet)."""
    clock = condition.clock
    if clock.column is None:
        raise TerminalError(f"rule '{condition.rule_id}' has no column clock for a SQL table")
    if clock.via:
        return _via(schema, table, clock.via, clock.column, condition.cutoff)
    column = table.c[clock.column]
    expired: ColumnElement[bool] = column < cutoff_value(column, condition.cutoff)
    return expired


def anonymize_masks(table: sa.Table, fields: Sequence[str]) -> tuple[MaskSpec, ...]:
    """The mask per field: NULL where allowed, else a keyed hash (distinct, so UNIQUE holds).

    Refused with a ConfigError naming each column when no mask fits.
    """
    specs, problems = [], []
    for name in fields:
        column = table.c[name]
        if column.primary_key or column.foreign_keys:
            problems.append(f"{table.name}.{name}: a key column cannot be anonymized")
            continue
        kind = identity_mask(column)
        problem = mask_problem(kind, column)
        if problem:
            problems.append(f"{table.name}.{name}: {problem}")
        specs.append(MaskSpec(name, kind))
    if problems:
        raise ConfigError(
            "cannot anonymize: " + "; ".join(problems), problems=[str(p) for p in problems]
        )
    return tuple(specs)


class SqlSweeper:
    """One sweep target on one table: counts, keyset batches and their execution.

    A ``connectors.base.TransactionalSweeper``: ``delete_next`` where
    ``deletes_in_one_transaction``, ``next_batch`` and ``apply`` elsewhere.
    """

    exact_counts = True
    """Keyset queries see every expired row: a first pass may stop at the planned count."""

    def __init__(
        self,
        engine: Engine,
        schema: StoreSchema,
        target: SweepTarget,
        masker: Masker,
        held_keys: frozenset[Key] = frozenset(),
    ) -> None:
        if target.kind != "sql" or target.table is None:
            raise ValueError("SqlSweeper needs a SQL target")
        if target.table in schema.unkeyed:
            raise TerminalError(
                f"table {target.label} has no primary key; retention sweeps page by it",
                store=target.store,
                table=target.table,
            )
        self.engine = engine
        self.schema = schema
        self.target = target
        self.masker = masker
        self.table = schema.tables[target.table]
        self.key_columns = [self.table.c[c] for c in schema.keys[target.table]]
        self.masks = (
            anonymize_masks(self.table, target.fields) if target.action == "anonymize" else ()
        )
        if len(held_keys) > MAX_HELD_KEYS:
            raise TerminalError(
                f"{target.label}: subject holds cover {len(held_keys)} rows, more than the "
                f"{MAX_HELD_KEYS} a sweep excludes by key; hold the table instead, or narrow it",
                store=target.store,
                table=target.table,
            )
        self.held_keys = held_keys
        expired = [expired_clause(schema, self.table, c) for c in target.conditions]
        if self.masks:
            done = sa.and_(*(masked_clause(m.mask, self.table.c[m.column]) for m in self.masks))
            expired.append(sa.not_(done))
        self._expired = sa.and_(*expired)
        self.digests = target.audit == "keys"
        """``keys`` audit mode: every batch carries ``keys_digest`` (else it is empty)."""
        self._dense = _Backoff()  # delete_next: the dense window, while it keeps failing
        self._span = _Backoff()  # range mode: the key span, likewise
        self._first_key: int | None = None  # range mode: the key range, read once
        self._last_key: int | None = None

    def _errors(self, operation: str) -> AbstractContextManager[None]:
        # As at the connector boundary: transient errors retry, the rest stop; no values.
        return sql_errors(self.target.store, operation, self.target.table)

    def _key_expr(self) -> ColumnElement[Any]:
        cols = self.key_columns
        return cols[0] if len(cols) == 1 else sa.tuple_(*cols)

    def _bound(self, key: Key) -> Any:
        values = coerce_key(self.key_columns, key)
        if values is None:
            raise TerminalError(f"sweep cursor does not fit the key of {self.target.label}")
        return values[0] if len(values) == 1 else sa.tuple_(*(sa.literal(v) for v in values))

    def _not_held(self) -> list[ColumnElement[bool]]:
        if not self.held_keys:
            return []
        return [sa.not_(key_clause(self.table, self.schema.keys[self.table.name], self.held_keys))]

    def _range(self, lo: Key | None, hi: Key | None) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = [self._expired, *self._not_held()]
        key = self._key_expr()
        if lo is not None:
            where.append(key > self._bound(lo))
        if hi is not None:
            where.append(key <= self._bound(hi))
        return where

    def batch_size(self, requested: int) -> int:
        """Rows per batch: as the sweep asks (each batch is one short transaction)."""
        return requested

    def counts(self) -> tuple[int, int]:
        """(expired rows the sweep will act on, expired rows held by a legal hold)."""
        return self._counts(after_deletes=False)

    def recount(self) -> tuple[int, int]:
        """``counts`` again, right after the sweep's batches (the verification).

        The same counts, planned for a table whose expired rows were just deleted: on
        PostgreSQL without index-only scans. The planner's idea of which pages are all
        visible dates from the last VACUUM, but every page a batch deleted from is no
        longer so: an index-only scan would fetch each deleted row from the heap in index
        order (random for rows not written in time order, about 2x slower than reading those
        pages in order); without it, the planner weighs an index scan (the clock's order
        is the pages' order) against a bitmap or sequential scan.
        """
        return self._counts(after_deletes=True)

    def _counts(self, *, after_deletes: bool) -> tuple[int, int]:
        total_q = sa.select(sa.func.count()).select_from(self.table).where(self._expired)
        with self._errors("sweep count"), self.engine.connect() as conn:
            if after_deletes and self.schema.backend == "postgresql":
                conn.execute(sa.text("SET LOCAL enable_indexonlyscan = off"))  # this transaction
            total = int(conn.execute(total_q).scalar_one())
            if self.target.held:
                return 0, total
            held = 0
            if self.held_keys and total:
                key_cols = self.schema.keys[self.table.name]
                held_q = total_q.where(key_clause(self.table, key_cols, self.held_keys))
                held = int(conn.execute(held_q).scalar_one())
        return total - held, held

    def next_batch(self, cursor: Key | None, size: int) -> SweepBatch | None:
        """The next ``size`` expired, unheld keys after ``cursor``; None when none are left."""
        if self.target.held:
            return None
        query = (
            sa.select(*self.key_columns)
            .where(*self._range(cursor, None))
            .order_by(*self.key_columns)
            .limit(size)
        )
        if not self.digests and len(self.key_columns) == 1:
            # Range audit: the count and last key, aggregated in the database.
            window = query.subquery()
            column = window.c[self.key_columns[0].name]
            with self._errors("sweep read"), self.engine.connect() as conn:
                count, last = conn.execute(sa.select(sa.func.count(), sa.func.max(column))).one()
            if not count:
                return None
            return SweepBatch(lo=cursor, hi=json_key((last,)), count=int(count), keys_digest="")
        with self._errors("sweep read"), self.engine.connect() as conn:
            keys = [json_key(row) for row in conn.execute(query)]
        if not keys:
            return None
        digest = keys_digest(keys) if self.digests else ""
        return SweepBatch(lo=cursor, hi=keys[-1], count=len(keys), keys_digest=digest)

    @property
    def deletes_in_one_transaction(self) -> bool:
        """PostgreSQL, a delete target and a single integer key: ``delete_next`` applies."""
        return (
            self.schema.backend == "postgresql"
            and self.target.action == "delete"
            and len(self.key_columns) == 1
            and isinstance(self.key_columns[0].type, sa.Integer)
        )

    def delete_next(
        self, cursor: Key | None, size: int, before_commit: Callable[[SweepBatch], None]
    ) -> SweepBatch | None:
        """Find and delete the next batch on PostgreSQL; ``before_commit`` records it.

        Only where ``deletes_in_one_transaction``. One REPEATABLE READ transaction reads the
        batch's keys (count, last key and ``keys_digest``, aggregated in the database: no
        key travels to Python), deletes their key range, and checks that the DELETE took as
        many rows as were read. ``before_commit`` runs while it is still open (the caller
        writes the batch's intent there), so a crash leaves nothing done or a recorded batch.

        Where the expired rows lie together in key order (a table written in time order,
        its old rows first), the *dense* read applies: the next ``size`` keys from the key
        index alone, whether expired or not; when the DELETE takes every one of them, the
        deleted set is exactly the keys read. Otherwise nothing changed, and the *search*
        read finds the next ``size`` expired keys (reading the rows to test them).
        """
        if self.target.held:
            return None
        if not self.digests:
            return self._delete_range_next(cursor, size, before_commit)
        if self._dense.due():
            dense = self._read_and_delete(cursor, size, before_commit, dense=True)
            # Interleaved rows: try the dense read again later, ever more rarely.
            self._dense.worked(dense is not _Dense.NOT)
            if dense is not _Dense.NOT:
                return dense
        searched = self._read_and_delete(cursor, size, before_commit, dense=False)
        if searched is _Dense.NOT:  # the same snapshot and predicate: cannot differ
            raise TransientError(
                f"sweep of {self.target.label}: a batch changed while it was deleted",
                store=self.target.store,
                table=self.target.table,
            )
        return searched

    def _delete_range_next(
        self, cursor: Key | None, size: int, before_commit: Callable[[SweepBatch], None]
    ) -> SweepBatch | None:
        """``delete_next`` in ``range`` audit mode: no key is read or digested.

        The batch's count is what its range DELETE took. The range is first a *span*:
        the next ``size`` key values after the cursor, by arithmetic (``_span_delete``),
        so the DELETE is the batch's only statement and, keys being distinct integers,
        touches at most ``size`` rows. Where few rows of a span are expired (keys with wide
        gaps, or expired rows sparse), the next batches take an index *window*: the last of
        the next ``size`` keys, expired or not (the *dense* window), or of the next ``size``
        expired keys (the *search* window, reading rows to test them); spans, then dense
        windows, are tried again ever more rarely.
        """
        forms: tuple[tuple[_Backoff, _Delete], ...] = (
            (self._span, self._span_delete),
            (self._dense, partial(self._window_delete, dense=True)),
        )
        for backoff, delete in forms:
            if not backoff.due():
                continue
            batch = delete(cursor, size, before_commit)
            if batch is None:
                return None  # no key at all after the cursor
            backoff.worked(batch.count * DENSE_SHARE >= size)
            if batch.count:
                return batch  # (if sparse, deleted all the same: a rollback would waste it)
        return self._window_delete(cursor, size, before_commit, dense=False)

    def _key_span(self, conn: sa.Connection, *, first: bool) -> None:
        """Read the last key (and with ``first`` the first) from the key index."""
        key = self.key_columns[0]
        if first:
            lo, hi = conn.execute(sa.select(sa.func.min(key), sa.func.max(key))).one()
            self._first_key = None if lo is None else int(lo)
        else:
            hi = conn.execute(sa.select(sa.func.max(key))).scalar_one()
        self._last_key = None if hi is None else int(hi)

    def _span_delete(
        self, cursor: Key | None, size: int, before_commit: Callable[[SweepBatch], None]
    ) -> SweepBatch | None:
        """The range DELETE of the next ``size`` key values after the cursor, up to the last
        key; None when no key lies after the cursor. The key range is read once per sweeper
        (the last key again once a span reaches it: rows may have been added meanwhile). A
        span with nothing expired is rolled back (count 0)."""
        with self._errors("sweep delete"), self.engine.connect() as conn, conn.begin() as tx:
            if cursor is None and self._first_key is None:
                self._key_span(conn, first=True)
            if cursor is not None:
                after = int(self._bound(cursor))
            elif self._first_key is not None:
                after = self._first_key - 1
            else:
                return None  # an empty table
            if self._last_key is None or after >= self._last_key:
                self._key_span(conn, first=False)
                if self._last_key is None or after >= self._last_key:
                    return None
            hi: Key = (min(after + size, self._last_key),)
            deleted = int(
                conn.execute(sa.delete(self.table).where(*self._range(cursor, hi))).rowcount
            )
            batch = SweepBatch(lo=cursor, hi=hi, count=deleted, keys_digest="")
            if not deleted:
                tx.rollback()
                return batch
            before_commit(batch)
        return batch

    def _window_delete(
        self,
        cursor: Key | None,
        size: int,
        before_commit: Callable[[SweepBatch], None],
        *,
        dense: bool,
    ) -> SweepBatch | None:
        """The window's last key, then its range DELETE, in one transaction; None if the
        window is empty. A dense window with nothing expired is rolled back (count 0)."""
        key = self.key_columns[0]
        if dense:
            where = [key > self._bound(cursor)] if cursor is not None else []
        else:
            where = self._range(cursor, None)
        window = sa.select(key.label("k")).where(*where).order_by(key).limit(size).subquery()
        read = sa.select(sa.func.max(window.c.k))
        with self._errors("sweep delete"), self.engine.connect() as conn, conn.begin() as tx:
            last = conn.execute(read).scalar_one()
            if last is None:
                return None
            hi: Key = (int(last),)
            deleted = int(
                conn.execute(sa.delete(self.table).where(*self._range(cursor, hi))).rowcount
            )
            batch = SweepBatch(lo=cursor, hi=hi, count=deleted, keys_digest="")
            if not deleted and dense:
                tx.rollback()
                return batch
            before_commit(batch)
        return batch

    def _read_and_delete(
        self,
        cursor: Key | None,
        size: int,
        before_commit: Callable[[SweepBatch], None],
        *,
        dense: bool,
    ) -> SweepBatch | Literal[_Dense.NOT] | None:
        """One batch: read, delete the range, compare counts; ``_Dense.NOT`` rolls back.

        Both statements see one snapshot (REPEATABLE READ): a row another session changes
        meanwhile makes the DELETE fail with a serialization error (retried as transient)
        rather than go uncounted. The aggregate takes the keys in the order of its
        ``ORDER BY ... LIMIT`` subquery, which is ``keys_digest``'s order for integer keys,
        so nothing is sorted.
        """
        key = self.key_columns[0]
        if dense:
            where = [key > self._bound(cursor)] if cursor is not None else []
        else:
            where = self._range(cursor, None)
        window = sa.select(key.label("k")).where(*where).order_by(key).limit(size).subquery()
        # keys_digest's canonical text, [[k1],[k2],...], hashed in the database.
        joined = sa.func.string_agg(sa.cast(window.c.k, sa.Text), sa.literal_column("'],['"))
        canonical = sa.literal("[[") + joined + sa.literal("]]")
        digest = sa.func.encode(sa.func.sha256(sa.func.convert_to(canonical, "UTF8")), "hex")
        read = sa.select(sa.func.count(), sa.func.max(window.c.k), digest)
        engine = self.engine.execution_options(isolation_level="REPEATABLE READ")
        with self._errors("sweep delete"), engine.connect() as conn, conn.begin() as tx:
            count, last, hexdigest = conn.execute(read).one()
            if not count:
                return None  # nothing (dense: no row at all) after the cursor
            hi: Key = (int(last),)
            stmt = sa.delete(self.table).where(*self._range(cursor, hi))
            if int(conn.execute(stmt).rowcount) != count:
                tx.rollback()
                return _Dense.NOT
            batch = SweepBatch(lo=cursor, hi=hi, count=int(count), keys_digest=hexdigest)
            before_commit(batch)
        return batch

    def apply(self, batch: SweepBatch) -> int:
        """Delete or anonymize the batch's range in one short transaction; rows changed."""
        where = self._range(batch.lo, batch.hi)
        engine = self.engine.execution_options(**{IMMEDIATE: True})
        with self._errors(f"sweep {self.target.action}"), engine.begin() as conn:
            if self.target.action == "delete":
                return int(conn.execute(sa.delete(self.table).where(*where)).rowcount)
            keys = [json_key(r) for r in conn.execute(sa.select(*self.key_columns).where(*where))]
            if not keys:
                return 0
            step = TargetPlan(self.target.table or "", Action.MASK, tuple(keys), self.masks)
            return mask_batch(conn, self.schema, step, keys, self.masker)
