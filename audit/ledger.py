"""The audit ledger: an append-only, HMAC-chained, checkpointed event log.

``Ledger`` is the one entry point the tasks, flows, register and CLI use. Appends lock
the one-row chain head (``SELECT ... FOR UPDATE``; ``BEGIN IMMEDIATE`` on SQLite) so
writers in any number of processes extend one chain; within a process, concurrent
``append()`` calls are group-committed: one leader writes everything queued in a single
transaction, and each caller returns once its own event is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, func, select
from sqlalchemy.exc import SQLAlchemyError

from audit import guard
from audit.chain import ChainWalker
from audit.checkpoints import (
    insert_checkpoint,
    latest_checkpoint,
    load_anchor,
    sign_checkpoint,
    signature_valid,
    write_anchor,
)
from audit.database import audit_engine, translate_db_error
from audit.events import Checkpoint, EventStatus, NewEvent, StoredEvent, VerifyReport
from audit.guard import PreparedEvent, prepare_event
from audit.keystore import keyring_from_settings, load_keyring, require_in_force
from audit.tables import GENESIS_HASH, audit_checkpoints, audit_events
from audit.verify import Head, read_head, verify_chain, walk
from audit.writer import committer_for, write_batch
from core.engines import safe_url
from core.errors import IntegrityError, TerminalError
from core.keys import KeyRing
from core.pseudonym import Pseudonym

__all__ = ["Ledger", "load_anchor"]

_PAGE = 1000


def _stored(row: Row[Any]) -> StoredEvent:
    try:
        status = EventStatus(row.status)
    except ValueError as e:
        raise IntegrityError(f"event {row.seq} has an unknown status", seq=row.seq) from e
    return StoredEvent(
        seq=int(row.seq),
        event_id=row.event_id,
        occurred_at=row.occurred_at,
        kind=row.kind,
        status=status,
        actor=row.actor,
        request_id=row.request_id,
        flow_run_id=row.flow_run_id,
        task_run_id=row.task_run_id,
        connector=row.connector,
        target=row.target,
        subject=row.subject,
        counts=row.counts,
        detail=row.detail,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class Ledger:
    """Append-only, tamper-evident audit ledger over an audit database ``engine``."""

    def __init__(self, engine: Engine, keys: KeyRing, actor: str = "system") -> None:
        self.engine = engine
        self._keys = keys
        self.actor = guard.check_field("actor", actor, required=True, scan=False) or ""
        self._committer = committer_for(engine, keys.ledger_hmac)

    def __repr__(self) -> str:
        return f"Ledger({safe_url(self.engine.url)!r})"

    @classmethod
    def open(
        cls, url: str | None = None, keys: KeyRing | None = None, actor: str | None = None
    ) -> Ledger:
        """The ledger at ``url`` (default: settings), migrated once per URL per process."""
        from config.settings import get_settings

        # The key is checked before the database is migrated: a missing key changes nothing.
        if keys is None:
            keys = keyring_from_settings() if url is None else load_keyring(url)
        return cls(audit_engine(url), keys, actor if actor is not None else get_settings().actor)

    def _key_in_force(self, conn: Connection) -> None:
        require_in_force(conn, self._keys)

    def _write(self, events: list[PreparedEvent]) -> list[StoredEvent]:
        return write_batch(self.engine, self._keys.ledger_hmac, events, self._key_in_force)

    def append(
        self,
        kind: str,
        *,
        status: EventStatus | str,
        request_id: str | None = None,
        connector: str | None = None,
        target: str | None = None,
        subject: Pseudonym | None = None,
        counts: Mapping[str, int] | None = None,
        detail: Mapping[str, Any] | None = None,
        flow_run_id: str | None = None,
        task_run_id: str | None = None,
        actor: str | None = None,
    ) -> StoredEvent:
        """Record one event; returns once it is committed, with its seq and hash.

        Refuses raw personal data (PersonalDataRefused) and non-JSON or float values
        (InvalidEvent) before anything is written.
        """
        event = NewEvent(
            kind=kind,
            status=status,  # type: ignore[arg-type]  # validated by _prepare
            request_id=request_id,
            connector=connector,
            target=target,
            subject=subject,
            counts=counts if counts is not None else {},
            detail=detail if detail is not None else {},
            flow_run_id=flow_run_id,
            task_run_id=task_run_id,
            actor=actor,
        )
        return self._committer.submit(prepare_event(event, self.actor), self._write)

    def append_many(
        self, events: Sequence[NewEvent], also: Callable[[Connection], None] | None = None
    ) -> list[StoredEvent]:
        """Record ``events`` in order, all in one transaction (all or none).

        ``also`` runs inside that transaction, for bookkeeping in the audit database that
        must commit exactly when the events do.
        """
        prepared = [prepare_event(e, self.actor) for e in events]
        if not prepared:
            return []

        def bookkeeping(conn: Connection) -> None:
            self._key_in_force(conn)
            if also is not None:
                also(conn)

        return write_batch(self.engine, self._keys.ledger_hmac, prepared, bookkeeping)

    def events(
        self,
        *,
        request_id: str | None = None,
        since: datetime | None = None,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[StoredEvent]:
        """Stored events matching the filters, in seq order (newest first if asked).

        Reads in keyset pages, so iterating a large ledger never loads it whole.
        """
        e = audit_events.c
        query = select(audit_events)
        if request_id is not None:
            query = query.where(e.request_id == request_id)
        if since is not None:
            if since.tzinfo is None:
                raise TerminalError("events(since=...) needs a timezone-aware datetime")
            query = query.where(e.occurred_at >= since)
        if kinds:
            query = query.where(e.kind.in_(list(kinds)))
        remaining = limit
        last: int | None = None
        while remaining is None or remaining > 0:
            page = _PAGE if remaining is None else min(_PAGE, remaining)
            q = query
            if last is not None:
                q = q.where(e.seq < last if newest_first else e.seq > last)
            q = q.order_by(e.seq.desc() if newest_first else e.seq).limit(page)
            rows = self._fetch(q)
            for row in rows:
                yield _stored(row)
            if len(rows) < page:
                return
            last = int(rows[-1].seq)
            if remaining is not None:
                remaining -= len(rows)

    def _fetch(self, query: Select[Any]) -> list[Row[Any]]:
        return list(self._read(lambda conn: conn.execute(query).all()))

    def _read(self, fn: Callable[[Connection], Any]) -> Any:
        try:
            with self.engine.connect() as conn:
                return fn(conn)
        except SQLAlchemyError as e:
            raise translate_db_error(e, "reading the audit ledger") from e

    def count(self) -> int:
        """Number of events stored."""
        query = select(func.count()).select_from(audit_events)
        return int(self._read(lambda conn: conn.execute(query).scalar_one()))

    def verify(
        self, anchor: Checkpoint | None = None, progress: Callable[[int], None] | None = None
    ) -> VerifyReport:
        """Check the whole chain, every stored checkpoint, the head row and ``anchor``.

        ``progress`` is called with the number of events checked so far.
        """
        return verify_chain(self.engine, self._keys, anchor, progress)

    def checkpoint(self) -> Checkpoint:
        """Sign and store a checkpoint of the current head.

        The events added since the latest checkpoint are verified first, so a broken
        chain is never signed (IntegrityError instead).
        """
        try:
            with self.engine.connect() as conn:
                checkpoint = self._verified_head_checkpoint(conn)
                with conn.begin():
                    self._key_in_force(conn)
                    insert_checkpoint(conn, checkpoint)
        except SQLAlchemyError as e:
            raise translate_db_error(e, "recording an audit checkpoint") from e
        return checkpoint

    def _verified_head_checkpoint(self, conn: Connection) -> Checkpoint:
        latest = latest_checkpoint(conn)
        keys = self._keys
        if latest is not None and not signature_valid(keys.verify_key_at(latest.seq), latest):
            raise IntegrityError(
                f"the latest checkpoint (event {latest.seq}) has a bad signature; "
                "run 'audit verify'",
                seq=latest.seq,
            )
        head = read_head(conn)
        conn.rollback()
        after, after_hash = (0, GENESIS_HASH) if latest is None else (latest.seq, latest.head_hash)
        walker = ChainWalker(keys.chain_key_at(after), after, after_hash, keys.rotation_keys())
        problem = walk(conn, walker, upto=head.seq)
        if problem is not None:
            raise IntegrityError(
                f"ledger broken at event {problem.seq}: {problem.message}; checkpoint not recorded",
                seq=problem.seq,
            )
        if walker.last_seq != head.seq or walker.prev_hash != head.hash:
            raise IntegrityError(
                f"ledger broken at event {walker.last_seq + 1}: the chain head does not match "
                "the stored events; checkpoint not recorded",
                seq=walker.last_seq + 1,
            )
        return sign_checkpoint(self._keys, head.seq, head.hash, head.seq, datetime.now(UTC))

    def latest_checkpoint(self) -> Checkpoint | None:
        """The most recently recorded checkpoint, or None."""
        result: Checkpoint | None = self._read(latest_checkpoint)
        return result

    def checkpoint_count(self) -> int:
        """Number of stored checkpoints."""
        query = select(func.count()).select_from(audit_checkpoints)
        return int(self._read(lambda conn: conn.execute(query).scalar_one()))

    def export_checkpoint(self, path: Path) -> Checkpoint:
        """Write the latest checkpoint to ``path`` as JSON, signing the head first if needed.

        When the latest checkpoint does not cover the current head (or there is none), a
        new one is recorded, so the file always anchors the head as it is now. Keep the
        file outside the database (another host, WORM storage): passed back to
        ``verify`` as an anchor it detects even a wholesale rewrite of the tables.
        """

        def latest_and_head(conn: Connection) -> tuple[Checkpoint | None, Head]:
            return latest_checkpoint(conn), read_head(conn)

        state: tuple[Checkpoint | None, Head] = self._read(latest_and_head)
        latest, head = state
        if latest is None or (latest.seq, latest.head_hash) != (head.seq, head.hash):
            latest = self.checkpoint()
        elif not signature_valid(self._keys.verify_key_at(latest.seq), latest):
            raise IntegrityError(
                f"the latest checkpoint (event {latest.seq}) has a bad signature; "
                "run 'audit verify'",
                seq=latest.seq,
            )
        try:
            write_anchor(path, latest, self._keys.verify_key_at(latest.seq))
        except OSError as e:
            raise TerminalError(f"cannot write checkpoint file {path} ({e.strerror})") from e
        return latest
