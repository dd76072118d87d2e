"""Verifying a stored ledger: streaming events through the chain checks.

Events are read in keyset pages by a reader thread (never the whole table, no long
transaction or server-side cursor) and fed to ``ChainWalker``; signed checkpoints, the
optional anchor and the chain head row add claims about particular events and about
the ledger's length, which catch what the chain alone cannot: a truncated tail.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, select
from sqlalchemy.exc import SQLAlchemyError

from audit.chain import HASH_INDEX, VERIFY_COLUMNS, ChainWalker, Problem
from audit.checkpoints import load_checkpoints, signature_valid
from audit.database import translate_db_error
from audit.events import Checkpoint, VerifyReport
from audit.keystore import require_in_force
from audit.tables import GENESIS_HASH, HEAD_ROW_ID, audit_events, audit_head
from core.errors import IntegrityError
from core.keys import KeyRing

PAGE_SIZE = 10_000


@dataclass(frozen=True)
class Head:
    """The chain head row: the last appended event's seq and hash."""

    seq: int
    hash: str


def read_head(conn: Connection, *, for_update: bool = False) -> Head:
    """The head row; IntegrityError when it has been removed."""
    h = audit_head.c
    query = select(h.seq, h.hash).where(h.id == HEAD_ROW_ID)
    row = conn.execute(query.with_for_update() if for_update else query).one_or_none()
    if row is None:
        raise IntegrityError("the audit chain head row is missing (audit_head was altered)")
    return Head(int(row.seq), row.hash)


def _page(conn: Connection, after: int, upto: int | None) -> list[Row[Any]]:
    seq = audit_events.c.seq
    query = select(*VERIFY_COLUMNS).where(seq > after)
    if upto is not None:
        query = query.where(seq <= upto)
    rows = list(conn.execute(query.order_by(seq).limit(PAGE_SIZE)).all())
    conn.rollback()
    return rows


def iter_rows(
    engine: Engine, after_seq: int, upto: int | None = None
) -> Generator[Row[Any], None, None]:
    """Events after ``after_seq`` in seq order, in keyset pages (never the whole table).

    Each page is its own short read, so a long verification holds no transaction or
    server-side cursor open and appends may continue meanwhile. A reader thread fetches
    the next page while the caller hashes this one (the driver waits without the GIL).
    """
    pages: queue.Queue[list[Row[Any]] | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: list[Row[Any]] | BaseException | None) -> None:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            with engine.connect() as conn:
                last = after_seq
                while not stop.is_set():
                    rows = _page(conn, last, upto)
                    put(rows)
                    if len(rows) < PAGE_SIZE:
                        break
                    last = rows[-1][0]
            put(None)
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(e)

    reader = threading.Thread(target=produce, name="ledger-verify-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = pages.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        stop.set()
        reader.join()


def max_seq(conn: Connection) -> int:
    """The highest seq stored (0 when empty)."""
    return int(conn.execute(select(func.coalesce(func.max(audit_events.c.seq), 0))).scalar_one())


def walk(
    conn: Connection,
    walker: ChainWalker,
    *,
    upto: int | None = None,
    stop_after: int | None = None,
    expected: Mapping[int, Sequence[tuple[str, str]]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Problem | None:
    """Feed stored events to ``walker`` and return the first problem, if any.

    ``expected`` maps a seq to (label, hash) pairs that the event there must match
    (checkpoints, the anchor, the head row). Stops at the first problem or past
    ``stop_after`` (a later problem could not be the first one).
    """
    expected = expected or {}
    rows = iter_rows(conn.engine, walker.last_seq, upto)
    try:
        for row in rows:
            seq = row[0]
            if stop_after is not None and seq > stop_after:
                break
            if not walker.step(row):
                next_row = next(rows, None)
                head = read_head(conn)
                return walker.diagnose(row, next_row, max_seq(conn), head.seq)
            for label, head_hash in expected.get(seq, ()):
                if head_hash != row[HASH_INDEX]:
                    return Problem(seq, f"event {seq} does not match the {label} (head hash)")
            if progress is not None and walker.checked % PAGE_SIZE == 0:
                progress(walker.checked)
    finally:
        rows.close()
    if progress is not None:
        progress(walker.checked)
    return None


def _claims(
    keys: KeyRing, checkpoints: Sequence[Checkpoint], anchor: Checkpoint | None
) -> tuple[list[Problem], dict[int, list[tuple[str, str]]], list[tuple[int, str]]]:
    """Check signatures; return problems, hashes expected at seqs, and minimum lengths."""
    problems: list[Problem] = []
    expected: dict[int, list[tuple[str, str]]] = {}
    lengths: list[tuple[int, str]] = []
    claims = [(f"checkpoint at event {c.seq}", c) for c in checkpoints]
    if anchor is not None:
        claims.append((f"anchor at event {anchor.seq}", anchor))
    for label, cp in claims:
        # Each checkpoint is checked under the key epoch in force at its event.
        if not signature_valid(keys.verify_key_at(cp.seq), cp):
            problems.append(
                Problem(cp.seq, f"{label} has a bad signature (forged, altered or another key)")
            )
            continue
        if cp.seq == 0 and cp.head_hash != GENESIS_HASH:
            problems.append(Problem(1, f"{label} does not start from the genesis hash"))
        elif cp.seq > 0:
            expected.setdefault(cp.seq, []).append((label, cp.head_hash))
        lengths.append((cp.count, label))
    return problems, expected, lengths


def verify_chain(
    engine: Engine,
    keys: KeyRing,
    anchor: Checkpoint | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify the whole ledger at ``engine``: chain, checkpoints, head row and anchor."""
    try:
        with engine.connect() as conn:
            # A key that is not the database's own is named as such, not as a broken chain.
            require_in_force(conn, keys, lock=False)
            head = read_head(conn)
            checkpoints = load_checkpoints(conn)
            conn.rollback()
            problems, expected, lengths = _claims(keys, checkpoints, anchor)
            if head.seq > 0:
                expected.setdefault(head.seq, []).append(("chain head row", head.hash))
            lengths.append((head.seq, "chain head row"))
            walker = ChainWalker(keys.chain_key_at(0), rotations=keys.rotation_keys())
            stop = min((p.seq for p in problems), default=None)
            problem = walk(conn, walker, stop_after=stop, expected=expected, progress=progress)
            if problem is not None:
                problems.append(problem)
            last = walker.last_seq
            for count, label in lengths:
                if count > last:
                    message = f"ledger truncated: the {label} records {count} events, found {last}"
                    problems.append(Problem(last + 1, message))
            head_after = read_head(conn)
            if problem is None and last > head_after.seq:
                # Appends move the head in the same transaction: this row bypassed them.
                message = "event inserted outside the ledger (beyond the chain head)"
                problems.append(Problem(head_after.seq + 1, message))
    except SQLAlchemyError as e:
        raise translate_db_error(e, "verifying the audit ledger") from e
    first = min(problems, key=lambda p: p.seq, default=None)
    return VerifyReport(
        ok=first is None,
        events_checked=walker.checked,
        checkpoints_checked=len(checkpoints) + (anchor is not None),
        first_bad_seq=None if first is None else first.seq,
        problem=None if first is None else first.message,
    )
