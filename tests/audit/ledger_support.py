"""Helpers for the ledger tests: keys, sample events, and tampering that bypasses triggers.

Tampering goes around the append-only triggers the way an attacker with database
rights would (dropping or disabling them), then edits rows with plain Core statements,
so the tests show what ``verify`` catches when the database no longer protects itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, delete, insert, select, text, update

from audit.events import EventStatus, NewEvent
from audit.ledger import Ledger
from audit.tables import audit_checkpoints, audit_events, audit_head
from core.engines import make_engine
from core.keys import KeyRing
from core.pseudonym import Pseudonym, Pseudonymizer

KEYS = KeyRing.from_master(b"k" * 32)  # the conftest's LIFECYCLE_MASTER_KEY
OTHER_KEYS = KeyRing.from_master(b"o" * 32)
_TRIGGERS = {
    "audit_events": ("audit_events_no_update", "audit_events_no_delete"),
    "audit_checkpoints": ("audit_checkpoints_no_update", "audit_checkpoints_no_delete"),
}


def subject(n: int = 0) -> Pseudonym:
    """A pseudonym for test subject ``n`` (from an example.com address)."""
    return Pseudonymizer(KEYS.pseudonym_hmac).of_value("email", f"subject{n}@example.com")


def sample(i: int, **overrides: Any) -> NewEvent:
    """A realistic event: a connector step of request ``req-<i % 3>``."""
    fields: dict[str, Any] = {
        "kind": "connector.erase",
        "status": EventStatus.SUCCEEDED,
        "request_id": f"req-{i % 3}",
        "connector": "orders_db",
        "target": "public.customers",
        "subject": subject(i % 5),
        "counts": {"rows": i, "batches": 1},
        "detail": {"strategy": "delete", "step": i, "tables": ["customers", "orders"]},
        "flow_run_id": str(uuid.UUID(int=1)),
        "task_run_id": str(uuid.UUID(int=1_000_000 + i)),
    }
    fields.update(overrides)
    return NewEvent(**fields)


def fill(ledger: Ledger, n: int) -> None:
    """Append ``n`` sample events."""
    ledger.append_many([sample(i) for i in range(n)])


def unguard(engine: Engine, table: str = "audit_events") -> None:
    """Remove the append-only triggers on ``table`` (what an attacker with DDL rights does)."""
    backend = engine.dialect.name
    with engine.begin() as conn:
        if backend == "postgresql":
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            for trigger in _TRIGGERS[table]:
                conn.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))


def edit(engine: Engine, seq: int, **values: Any) -> None:
    """Overwrite columns of event ``seq`` (triggers must be out of the way)."""
    with engine.begin() as conn:
        conn.execute(update(audit_events).where(audit_events.c.seq == seq).values(**values))


def remove(engine: Engine, seq: int) -> None:
    """Delete event ``seq``."""
    with engine.begin() as conn:
        conn.execute(delete(audit_events).where(audit_events.c.seq == seq))


def renumber_from(engine: Engine, start: int, delta: int) -> None:
    """Shift the seq of every event at or after ``start`` by ``delta``.

    Two steps through negative numbers, since backends check the primary key per row.
    """
    seq = audit_events.c.seq
    with engine.begin() as conn:
        conn.execute(update(audit_events).where(seq >= start).values(seq=-(seq + delta)))
        conn.execute(update(audit_events).where(seq < 0).values(seq=-seq))


def swap(engine: Engine, a: int, b: int) -> None:
    """Exchange the positions of events ``a`` and ``b``."""
    seq = audit_events.c.seq
    with engine.begin() as conn:
        conn.execute(update(audit_events).where(seq == a).values(seq=-1))
        conn.execute(update(audit_events).where(seq == b).values(seq=a))
        conn.execute(update(audit_events).where(seq == -1).values(seq=b))


def row(engine: Engine, seq: int) -> dict[str, Any]:
    """The stored columns of event ``seq``."""
    with engine.connect() as conn:
        found = conn.execute(select(audit_events).where(audit_events.c.seq == seq)).one()
    return dict(found._mapping)


def forge(engine: Engine, seq: int, like: int, **values: Any) -> None:
    """Insert a forged event at ``seq``, copied from event ``like`` with a new id."""
    forged = row(engine, like)
    forged.update(seq=seq, event_id="f" * 32, hash="ab" * 32, **values)
    with engine.begin() as conn:
        conn.execute(insert(audit_events).values(**forged))


def set_head(engine: Engine, **values: Mapping[str, Any] | int | str) -> None:
    """Overwrite the chain head row."""
    with engine.begin() as conn:
        conn.execute(update(audit_head).values(**values))


def checkpoint_rows(engine: Engine) -> list[dict[str, Any]]:
    """The stored checkpoints as dicts."""
    with engine.connect() as conn:
        rows = conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.id)).all()
    return [dict(r._mapping) for r in rows]


def fresh_engine(url: str) -> Engine:
    """A new engine on ``url`` (not the cached, migrated one)."""
    return make_engine(url)


def append_as_writer(url: str, writer: int, count: int, ready: Any = None, go: Any = None) -> None:
    """Append ``count`` events tagged with ``writer`` (run in a spawned process).

    With ``ready`` (a multiprocessing queue) and ``go`` (an event): once the ledger is
    open, put ``writer`` on ``ready`` and wait for ``go``, so every writer begins together
    however long the process took to start.
    """
    from audit.database import audit_engine, dispose_engines

    ledger = Ledger(audit_engine(url), KEYS, actor=f"writer-{writer}")
    try:
        if ready is not None and go is not None:
            ready.put(writer)
            go.wait()
        for i in range(count):
            ledger.append("load.test", status="succeeded", detail={"writer": writer, "i": i})
    finally:
        dispose_engines()
