"""Loading the key ring against the audit database it keys: never a silent new key.

The audit database records the fingerprint of its master key per key epoch
(``audit_keys``). Loading the key ring first reads that record without migrating or
writing anything, then:

- the key's fingerprint matches the epoch in force: the ring, with what that epoch
  carries from earlier ones (``core.keys.open_carried``);
- the key is missing, or is another key (a mistyped ``LIFECYCLE_KEY_FILE``, a retired
  key): ``MasterKeyError`` naming the expected fingerprint and what to restore; no key
  file is created, no migration runs, no event is written;
- nothing is recorded yet and the ledger is empty: a new ledger; the key is created if
  there is none, and its fingerprint recorded as epoch 1;
- nothing is recorded yet but the ledger has events (a database from before
  fingerprints): the key must be present and must authenticate the ledger's events,
  then its fingerprint is recorded.

A rotation whose switch committed but whose new key file was not yet moved into place
(a crash in between) is finished here: the pending file holds the recorded key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, insert, inspect, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.exc import SQLAlchemyError

from audit.chain import VERIFY_COLUMNS, row_is_authentic
from audit.database import audit_engine, cached_engine, translate_db_error
from audit.key_tables import audit_keys
from audit.tables import audit_events, audit_head
from config.settings import get_settings
from core.engines import IMMEDIATE, make_engine, normalize_url, safe_url
from core.errors import ConfigError
from core.keys import (
    KeyRing,
    KeySource,
    MasterKeyError,
    open_carried,
    read_key_file,
    sync_dir,
)


@dataclass(frozen=True)
class EpochRecord:
    """One row of ``audit_keys``."""

    epoch: int
    fingerprint: str
    since_seq: int
    created_at: datetime
    carried_nonce: bytes | None
    carried: bytes | None


@dataclass(frozen=True)
class KeyState:
    """What the audit database says about its key, read without changing anything."""

    epochs: tuple[EpochRecord, ...]
    events: int  # the chain head's seq: how many events the ledger holds

    @property
    def current(self) -> EpochRecord | None:
        return self.epochs[-1] if self.epochs else None


def read_epochs(conn: Connection) -> tuple[EpochRecord, ...]:
    """Every recorded key epoch, oldest first."""
    rows = conn.execute(select(audit_keys).order_by(audit_keys.c.epoch)).all()
    return tuple(
        EpochRecord(
            epoch=int(r.epoch),
            fingerprint=r.fingerprint,
            since_seq=int(r.since_seq),
            created_at=r.created_at,
            carried_nonce=None if r.carried_nonce is None else bytes(r.carried_nonce),
            carried=None if r.carried is None else bytes(r.carried),
        )
        for r in rows
    )


def _state(conn: Connection, migrated: bool) -> KeyState:
    names = None if migrated else set(inspect(conn).get_table_names())
    epochs = read_epochs(conn) if names is None or "audit_keys" in names else ()
    events = 0
    if names is None or "audit_head" in names:
        events = int(conn.execute(select(audit_head.c.seq)).scalar() or 0)
    if not events and (names is None or "audit_events" in names):
        # A head row removed or rewound must not make a ledger look new.
        found = conn.execute(select(audit_events.c.seq).limit(1)).first()
        events = 0 if found is None else 1
    conn.rollback()
    return KeyState(epochs, events)


def probe(url: str) -> KeyState:
    """The audit database's key record and size, read without migrating or writing."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError(
                "the audit ledger needs a database file; in-memory SQLite is not usable"
            )
        if not Path(parsed.database).exists():
            return KeyState((), 0)
    cached = cached_engine(url)
    engine = cached if cached is not None else make_engine(url)
    try:
        with engine.connect() as conn:
            return _state(conn, migrated=cached is not None)
    except SQLAlchemyError as e:
        raise translate_db_error(e, f"reading the audit database at {safe_url(url)}") from e
    finally:
        if cached is None:
            engine.dispose()


def _restore(source: KeySource, fingerprint: str | None) -> str:
    """What to do about it: restore the key file, or set the variable to the right key."""
    if source.from_env:
        which = "the key it was created with" if fingerprint is None else f"key fp {fingerprint}"
        return f"set LIFECYCLE_MASTER_KEY to {which} (or unset it and restore {source.path})"
    return f"restore {source.path} from your backup or set LIFECYCLE_MASTER_KEY"


def missing_key(source: KeySource, expected: str, where: str) -> MasterKeyError:
    return MasterKeyError(
        f"the master key is missing (expected key fp {expected}, recorded in the audit "
        f"database at {where}): {_restore(source, expected)}; nothing was changed"
    )


def wrong_key(state: KeyState, source: KeySource, actual: str, where: str) -> MasterKeyError:
    current = state.current
    assert current is not None
    retired = next((e for e in state.epochs[:-1] if e.fingerprint == actual), None)
    held = f"{source.describe()} holds key fp {actual}"
    if retired is not None:
        successor = state.epochs[retired.epoch] if retired.epoch < len(state.epochs) else current
        held = (
            f"{source.describe()} holds the retired key fp {actual} (key epoch "
            f"{retired.epoch}, rotated out on {successor.created_at:%Y-%m-%d})"
        )
    return MasterKeyError(
        f"wrong key: {held}, but the audit database at {where} is keyed with fp "
        f"{current.fingerprint}: {_restore(source, current.fingerprint)}; nothing was changed"
    )


def keyed(ring: KeyRing, record: EpochRecord) -> KeyRing:
    """``ring`` (whose fingerprint is ``record``'s) in its epoch, with what it carries."""
    if record.carried is None or record.carried_nonce is None:
        return ring.in_epoch(record.epoch, record.since_seq, ring.pseudonym_hmac, ())
    return open_carried(ring, record.epoch, record.since_seq, record.carried_nonce, record.carried)


def _finish_rotation(source: KeySource, expected: str) -> KeyRing | None:
    """Move a committed rotation's new key into place (a crash came in between)."""
    if source.from_env:
        return None
    pending = source.pending_path
    secret = read_key_file(pending)
    if secret is None:
        return None
    ring = KeyRing.from_master(secret)
    if ring.fingerprint != expected:
        return None  # a rotation that never committed: its file is ignored
    old = read_key_file(source.path)
    os.replace(pending, source.path)
    sync_dir(source.path.parent)
    if old is not None:
        source.backup_path(KeyRing.from_master(old).fingerprint).unlink(missing_ok=True)
    return ring


def _in_force(state: KeyState, source: KeySource, where: str) -> KeyRing:
    current = state.current
    assert current is not None
    secret = source.read()
    if secret is None:
        finished = _finish_rotation(source, current.fingerprint)
        if finished is None:
            raise missing_key(source, current.fingerprint, where)
        return keyed(finished, current)
    ring = KeyRing.from_master(secret)
    if ring.fingerprint != current.fingerprint:
        finished = _finish_rotation(source, current.fingerprint)
        if finished is None:
            raise wrong_key(state, source, ring.fingerprint, where)
        ring = finished
    return keyed(ring, current)


def _check_chained(url: str, ring: KeyRing, source: KeySource, where: str, head: int) -> None:
    """A ledger from before fingerprints: its first or last event must verify under ``ring``."""
    seq = audit_events.c.seq
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(*VERIFY_COLUMNS).where(seq.in_({1, max(head, 1)})).order_by(seq)
            ).all()
    except SQLAlchemyError as e:
        raise translate_db_error(e, f"reading the audit database at {where}") from e
    finally:
        engine.dispose()
    if rows and not any(row_is_authentic(ring.ledger_hmac, r) for r in rows):
        raise MasterKeyError(
            f"wrong key: the ledger in the audit database at {where} was not chained under "
            f"{source.describe()} (key fp {ring.fingerprint}); it records no key fingerprint "
            f"yet: {_restore(source, None)}; nothing was changed"
        )


def _record_first(url: str, ring: KeyRing, source: KeySource, where: str) -> KeyRing:
    """Migrate the database and record ``ring`` as key epoch 1 (unless a racer did)."""
    engine = audit_engine(url)
    try:
        with engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
            recorded = read_epochs(conn)
            if not recorded:
                conn.execute(
                    insert(audit_keys).values(
                        epoch=1,
                        fingerprint=ring.fingerprint,
                        since_seq=1,
                        created_at=datetime.now(UTC),
                    )
                )
                return ring
    except DbIntegrityError:
        with engine.connect() as conn:
            recorded = read_epochs(conn)
    except SQLAlchemyError as e:
        raise translate_db_error(e, f"recording the key fingerprint at {where}") from e
    state = KeyState(recorded, 0)
    if recorded[-1].fingerprint != ring.fingerprint:
        raise wrong_key(state, source, ring.fingerprint, where)
    return keyed(ring, recorded[-1])


def load_keyring(url: str | None = None) -> KeyRing:
    """The key ring for the audit database at ``url`` (default: settings), checked.

    Raises MasterKeyError (exit 2) when the key is missing or is not the database's key.
    """
    settings = get_settings()
    url = url if url is not None else settings.resolved_audit_url()
    source = KeySource.from_settings(settings)
    where = safe_url(url)
    state = probe(url)
    if state.current is not None:
        return _in_force(state, source, where)
    secret = source.read()
    if state.events:
        if secret is None:
            raise MasterKeyError(
                f"the master key is missing (the audit database at {where} holds a ledger "
                "keyed before key fingerprints were recorded, so its fingerprint is unknown): "
                f"{_restore(source, None)}; nothing was changed"
            )
        ring = KeyRing.from_master(secret)
        _check_chained(url, ring, source, where, state.events)
    else:
        ring = KeyRing.from_master(secret if secret is not None else source.create())
    return _record_first(url, ring, source, where)


_IN_FORCE = select(audit_keys.c.fingerprint).order_by(audit_keys.c.epoch.desc()).limit(1)
_IN_FORCE_LOCKED = _IN_FORCE.with_for_update(read=True)


def require_in_force(conn: Connection, ring: KeyRing, *, lock: bool = True) -> None:
    """Refuse to write or verify with a key that is not the database's key in force.

    Run inside the writing transaction (after the chain head is locked), so a process
    still holding a key that a rotation replaced cannot chain events under it.
    """
    recorded = conn.execute(_IN_FORCE_LOCKED if lock else _IN_FORCE).scalar()
    if recorded is not None and recorded != ring.fingerprint:
        raise MasterKeyError(
            f"wrong key: this process holds key fp {ring.fingerprint}, but the audit database "
            f"at {safe_url(conn.engine.url)} is keyed with fp {recorded} (rotated since this "
            "process started?): restart it with the current key; nothing was changed"
        )


def keyring_from_settings() -> KeyRing:
    """The key ring for this process, checked against the audit database it keys.

    From ``LIFECYCLE_MASTER_KEY`` or the key file. A key is created only with a new,
    empty ledger; a missing or different key raises MasterKeyError and changes nothing.
    """
    return load_keyring()
