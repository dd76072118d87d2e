"""Rotating the master key: re-seal what is open, continue the chain, keep pseudonyms.

Key epochs. Epoch 1 is the key the database was created with; each rotation adds one.
What must outlive a key is carried forward, sealed under the new key in the new epoch's
``audit_keys`` row: the earlier epochs' chain keys and checkpoint public keys (so the
older part of the ledger still verifies with the current key alone) and the first
epoch's pseudonym key (so ``psn_`` pseudonyms in the ledger, the register and legal
holds keep matching). Earlier identity and export keys are *not* carried: every sealed
value of an open request is re-sealed under the new key, and a database backup from
before the rotation stays closed to the new key.

The chain. The ``keys.rotated`` event is linked under the new chain key and carries a
``bridge``: an HMAC under the old chain key over its position, its predecessor's hash
and the new key's fingerprint, so the hand-over itself is vouched for by the old key.
``audit verify`` switches keys at that event (``audit.chain.ChainWalker``).

Crash safety. The new key is written next to the key file (``<key file>.new``) and the
old one kept as ``<key file>.old-<fp>`` before anything changes in the database; the
switch (re-sealing, the event and the new epoch) is one transaction; only after it
committed is the new key moved over the key file and the backup removed. A crash before
the commit leaves the old key in force (the ``.new`` file is ignored); a crash after it
is finished by the next command that loads the key (``audit.keystore``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, Connection, Table, and_, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from audit.chain import ROTATION_KIND, rotation_bridge
from audit.database import audit_engine, translate_db_error
from audit.events import EventStatus, NewEvent
from audit.guard import prepare_event
from audit.key_tables import audit_keys
from audit.keystore import load_keyring, require_in_force
from audit.tables import HEAD_ROW_ID, audit_events, audit_head
from audit.writer import chain_event
from config.settings import get_settings
from core.engines import IMMEDIATE, safe_url
from core.errors import ConfigError, IntegrityError
from core.keys import (
    KeyRing,
    KeySource,
    new_secret,
    read_key_file,
    seal_carried,
    sync_dir,
    write_key_file,
)
from state.identity_box import IdentityBox, Sealed
from state.progress_tables import request_progress, request_runs
from state.register_tables import requests
from state.request_runs import seal, seal_aad, unseal


@dataclass(frozen=True)
class Rotation:
    """What a rotation did."""

    old_fingerprint: str
    new_fingerprint: str
    epoch: int
    event_seq: int
    resealed: dict[str, int]
    key_file: Path | None  # the key file now holding the new key (None: from the environment)
    new_key_file: Path | None  # where the new key was read from or written to


def _new_key(source: KeySource, new_key_file: Path | None) -> tuple[bytes, bool]:
    """The new master secret, and whether this call created ``new_key_file``."""
    if new_key_file is None:
        if source.from_env:
            raise ConfigError(
                "LIFECYCLE_MASTER_KEY is set, so the new key cannot replace a key file: pass "
                "--new-key-file PATH (created with a new key if missing), then set the variable "
                "to it; nothing was changed"
            )
        return new_secret(), False
    if not source.from_env and new_key_file.resolve() == source.path.resolve():
        raise ConfigError(f"--new-key-file {new_key_file} is the current key file")
    secret = read_key_file(new_key_file)
    if secret is not None:
        return secret, False
    secret = new_secret()
    write_key_file(new_key_file, secret, exclusive=True)
    return secret, True


def _reseal_rows(
    conn: Connection,
    table: Table,
    key_columns: Sequence[Column[Any]],
    *,
    prefix: str,
    keys: tuple[bytes, bytes],
    aad_of: Callable[[Any], bytes],
) -> int:
    """Re-seal ``<prefix>_nonce``/``<prefix>_ciphertext`` of every row that has them."""
    nonce_col, ct_col = table.c[f"{prefix}_nonce"], table.c[f"{prefix}_ciphertext"]
    rows = conn.execute(select(*key_columns, nonce_col, ct_col).where(ct_col.is_not(None))).all()
    if not rows:
        return 0
    old, new = AESGCM(keys[0]), AESGCM(keys[1])
    params = []
    for row in rows:
        aad = aad_of(row)
        try:
            plain = unseal(old, aad, row[len(key_columns)], row[len(key_columns) + 1])
        except IntegrityError as e:
            raise IntegrityError(
                f"a sealed value of request {row.request_id} ({table.name}) does not open "
                "under the current key; resolve it before rotating; nothing was changed"
            ) from e
        nonce, sealed = seal(new, aad, plain)
        params.append(
            {f"k_{c.name}": row[i] for i, c in enumerate(key_columns)}
            | {"v_n": nonce, "v_c": sealed}
        )
    match = and_(*(c == bindparam(f"k_{c.name}") for c in key_columns))
    stmt = (
        update(table).where(match).values({nonce_col: bindparam("v_n"), ct_col: bindparam("v_c")})
    )
    conn.execute(stmt, params)
    return len(params)


def _reseal_identities(conn: Connection, old: KeyRing, new: KeyRing) -> int:
    r = requests.c
    rows = conn.execute(
        select(r.id, r.kind, r.identity_nonce, r.identity_ciphertext).where(
            r.identity_ciphertext.is_not(None)
        )
    ).all()
    if not rows:
        return 0
    old_box, new_box = IdentityBox(old.identity_aes), IdentityBox(new.identity_aes)
    params = []
    for row in rows:
        sealed = Sealed(bytes(row.identity_nonce), bytes(row.identity_ciphertext))
        again = old_box.reseal(row.id, row.kind, sealed, new_box)
        params.append({"k_id": row.id, "v_n": again.nonce, "v_c": again.ciphertext})
    stmt = (
        update(requests)
        .where(r.id == bindparam("k_id"))
        .values({r.identity_nonce: bindparam("v_n"), r.identity_ciphertext: bindparam("v_c")})
    )
    conn.execute(stmt, params)
    return len(params)


def reseal_open_requests(conn: Connection, old: KeyRing, new: KeyRing) -> dict[str, int]:
    """Re-seal every sealed value of open requests from ``old``'s keys to ``new``'s."""
    p, runs = request_progress.c, request_runs.c
    return {
        "identities": _reseal_identities(conn, old, new),
        "derived_identities": _reseal_rows(
            conn,
            request_progress,
            (p.request_id, p.store),
            prefix="derived",
            keys=(old.identity_aes, new.identity_aes),
            aad_of=lambda row: seal_aad("request-derived", row.request_id, row.store),
        ),
        "passphrases": _reseal_rows(
            conn,
            request_runs,
            (runs.request_id,),
            prefix="recipient",
            keys=(old.export_aes, new.export_aes),
            aad_of=lambda row: seal_aad("package-passphrase", row.request_id),
        ),
    }


def _switch(
    conn: Connection, old: KeyRing, fresh: KeyRing, actor: str
) -> tuple[KeyRing, dict[str, int]]:
    """In the caller's transaction: re-seal, chain ``keys.rotated``, record the new epoch."""
    head = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash)
        .where(audit_head.c.id == HEAD_ROW_ID)
        .with_for_update()
    ).one_or_none()
    if head is None:
        raise IntegrityError("the audit chain head row is missing (audit_head was altered)")
    require_in_force(conn, old)  # another rotation got here first
    seq, prev = int(head.seq) + 1, str(head.hash)
    new = fresh.in_epoch(old.epoch + 1, seq, old.pseudonym_hmac, (*old.earlier, old.as_epoch()))
    resealed = reseal_open_requests(conn, old, new)
    detail = {
        "from_epoch": old.epoch,
        "to_epoch": new.epoch,
        "from_key": old.fingerprint,
        "to_key": new.fingerprint,
        "bridge": rotation_bridge(old.ledger_hmac, seq, prev, new.fingerprint, new.epoch),
    }
    event = NewEvent(
        kind=ROTATION_KIND, status=EventStatus.SUCCEEDED, counts=resealed, detail=detail
    )
    stored = chain_event(new.ledger_hmac, seq, prev, prepare_event(event, actor))
    conn.execute(insert(audit_events).values(asdict(stored) | {"status": stored.status.value}))
    conn.execute(
        update(audit_head).where(audit_head.c.id == HEAD_ROW_ID).values(seq=seq, hash=stored.hash)
    )
    nonce, carried = seal_carried(new)
    conn.execute(
        insert(audit_keys).values(
            epoch=new.epoch,
            fingerprint=new.fingerprint,
            since_seq=seq,
            created_at=datetime.now(UTC),
            carried_nonce=nonce,
            carried=carried,
        )
    )
    return new, resealed


def install(source: KeySource, old_fingerprint: str) -> None:
    """After the switch committed: the new key replaces the key file, the backup goes."""
    os.replace(source.pending_path, source.path)
    sync_dir(source.path.parent)
    source.backup_path(old_fingerprint).unlink(missing_ok=True)


def rotate(new_key_file: Path | None = None, *, actor: str | None = None) -> Rotation:
    """Replace the master key of the configured audit database (see the module docstring).

    ``new_key_file``: take the new key from this file (created with a fresh key when it
    does not exist); required when the key comes from ``LIFECYCLE_MASTER_KEY``.
    """
    settings = get_settings()
    url = settings.resolved_audit_url()
    where = safe_url(url)
    source = KeySource.from_settings(settings)
    old = load_keyring(url)  # a missing or wrong key stops here
    old_secret = source.read()
    assert old_secret is not None  # load_keyring just read it
    secret, created = _new_key(source, new_key_file)
    fresh = KeyRing.from_master(secret)
    if fresh.fingerprint in {old.fingerprint, *(e.fingerprint for e in old.earlier)}:
        raise ConfigError(
            f"the new key (fp {fresh.fingerprint}) is the current or a retired key; "
            "nothing was changed"
        )
    engine = audit_engine(url)
    staged = not source.from_env
    try:
        if staged:
            write_key_file(source.backup_path(old.fingerprint), old_secret)
            write_key_file(source.pending_path, secret)
        with engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
            new, resealed = _switch(conn, old, fresh, actor or settings.actor)
    except BaseException as e:
        # Not switched: the old key stays in force; tidy what was staged for it.
        if staged:
            source.pending_path.unlink(missing_ok=True)
            source.backup_path(old.fingerprint).unlink(missing_ok=True)
        if created and new_key_file is not None:
            new_key_file.unlink(missing_ok=True)
        if isinstance(e, SQLAlchemyError):
            raise translate_db_error(e, f"rotating the key of the audit database at {where}") from e
        raise
    if staged:
        install(source, old.fingerprint)
    return Rotation(
        old_fingerprint=old.fingerprint,
        new_fingerprint=new.fingerprint,
        epoch=new.epoch,
        event_seq=new.since_seq,
        resealed=resealed,
        key_file=None if source.from_env else source.path,
        new_key_file=new_key_file,
    )
