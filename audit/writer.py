"""Writing events: chaining a batch onto the head, and in-process group commit.

A batch is chained and committed in one transaction that first locks the one-row
chain head (``SELECT ... FOR UPDATE``; ``BEGIN IMMEDIATE`` on SQLite), so writers in
other processes serialize on it. Within a process, concurrent appends queue on a
``GroupCommitter``: whoever finds no write in progress becomes the leader and writes
everything queued in one transaction, amortizing the commit (and its fsync) over the
batch. Each caller still returns only once its own event is committed.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from audit.canonical import event_content, event_scalars, format_time
from audit.chain import link_hash
from audit.database import translate_db_error
from audit.events import EventStatus, StoredEvent
from audit.guard import PreparedEvent
from audit.tables import HEAD_ROW_ID, audit_events, audit_head
from core.engines import IMMEDIATE
from core.errors import IntegrityError, LifecycleError, TerminalError

MAX_BATCH = 1000
"""Most events one group-commit transaction writes (bounds lock hold time)."""


def chain_event(key: bytes, seq: int, prev_hash: str, event: PreparedEvent) -> StoredEvent:
    scalars = event_scalars(
        seq=seq,
        event_id=event.event_id,
        occurred_at=format_time(event.occurred_at),
        kind=event.kind,
        status=event.status,
        actor=event.actor,
        request_id=event.request_id,
        flow_run_id=event.flow_run_id,
        task_run_id=event.task_run_id,
        connector=event.connector,
        target=event.target,
        subject=event.subject,
    )
    return StoredEvent(
        seq=seq,
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        kind=event.kind,
        status=EventStatus(event.status),
        actor=event.actor,
        request_id=event.request_id,
        flow_run_id=event.flow_run_id,
        task_run_id=event.task_run_id,
        connector=event.connector,
        target=event.target,
        subject=event.subject,
        counts=event.counts,
        detail=event.detail,
        prev_hash=prev_hash,
        hash=link_hash(key, prev_hash, event_content(scalars, event.counts, event.detail)),
    )


# Built once: appends are hot, and a reused statement skips construction and cache keys.
_LOCK_HEAD = (
    select(audit_head.c.seq, audit_head.c.hash)
    .where(audit_head.c.id == HEAD_ROW_ID)
    .with_for_update()
)
_INSERT = insert(audit_events)
_MOVE_HEAD = (
    update(audit_head)
    .where(audit_head.c.id == HEAD_ROW_ID)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


def write_batch(
    engine: Engine,
    key: bytes,
    events: Sequence[PreparedEvent],
    also: Callable[[Connection], None] | None = None,
) -> list[StoredEvent]:
    """Chain ``events`` onto the head and commit them in one transaction.

    ``also`` runs in the same transaction (progress bookkeeping that must commit exactly
    when its events do: a sweep batch is marked audited together with its event).
    """
    try:
        with engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
            head = conn.execute(_LOCK_HEAD).one_or_none()
            if head is None:
                raise IntegrityError("the audit chain head row is missing (audit_head was altered)")
            stored: list[StoredEvent] = []
            seq, prev = int(head.seq), str(head.hash)
            for event in events:
                seq += 1
                chained = chain_event(key, seq, prev, event)
                stored.append(chained)
                prev = chained.hash
            rows = [_row(e) for e in stored]
            conn.execute(_INSERT, rows[0] if len(rows) == 1 else rows)
            conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev})
            if also is not None:
                also(conn)
    except SQLAlchemyError as e:
        raise translate_db_error(e, "appending to the audit ledger") from e
    return stored


def _row(event: StoredEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        "request_id": event.request_id,
        "flow_run_id": event.flow_run_id,
        "task_run_id": event.task_run_id,
        "actor": event.actor,
        "kind": event.kind,
        "connector": event.connector,
        "target": event.target,
        "subject": event.subject,
        "status": event.status.value,
        "counts": event.counts,
        "detail": event.detail,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


_Writer = Callable[[list[PreparedEvent]], list[StoredEvent]]


@dataclass(eq=False)
class _Slot:
    event: PreparedEvent
    done: bool = False
    result: StoredEvent | None = None
    error: BaseException | None = field(default=None, repr=False)


class GroupCommitter:
    """Queues concurrent appends of one process; one leader at a time writes a batch."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._queue: list[_Slot] = []
        self._leading = False

    def submit(self, event: PreparedEvent, write: _Writer) -> StoredEvent:
        """Queue ``event``; lead a batch write when no one else is; return once committed."""
        slot = _Slot(event)
        with self._cv:
            self._queue.append(slot)
        while True:
            with self._cv:
                while self._leading and not slot.done:
                    self._cv.wait()
                if slot.done:
                    return _outcome(slot)
                self._leading = True
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
            results: list[StoredEvent] | None = None
            error: BaseException | None = None
            try:
                results = write([s.event for s in batch])
                if len(results) != len(batch):
                    results = None
                    raise TerminalError("audit ledger write returned the wrong number of events")
            except BaseException as e:
                error = e
            finally:
                with self._cv:
                    for i, s in enumerate(batch):
                        s.result = None if results is None else results[i]
                        s.error = error
                        s.done = True
                    self._leading = False
                    self._cv.notify_all()
            if error is not None and not isinstance(error, Exception):
                raise error  # KeyboardInterrupt, SystemExit: the leader's own thread stops


def _outcome(slot: _Slot) -> StoredEvent:
    if slot.error is not None:
        error = slot.error
        # Each caller raises its own copy; the shared original is the cause.
        if isinstance(error, LifecycleError):
            raise copy.copy(error) from error
        raise TerminalError(f"audit ledger write failed ({type(error).__name__})") from error
    assert slot.result is not None
    return slot.result


_committers: weakref.WeakKeyDictionary[Engine, dict[bytes, GroupCommitter]] = (
    weakref.WeakKeyDictionary()
)
_committers_lock = threading.Lock()


def committer_for(engine: Engine, key: bytes) -> GroupCommitter:
    """The one committer per engine and chain key in this process (shared by Ledgers)."""
    with _committers_lock:
        per_key = _committers.setdefault(engine, {})
        return per_key.setdefault(key, GroupCommitter())
