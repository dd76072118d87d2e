"""The audit database's record of its master key: one row per key epoch.

Epoch 1 is written when the database is first keyed (a new ledger, or an existing one
the first time a key is checked against it); each rotation adds the next epoch in the
same transaction as its ``keys.rotated`` event. The row with the highest epoch names
the key in force. ``carried_*`` (NULL for epoch 1) holds, sealed under that epoch's own
key, what it carries from earlier epochs: their chain keys and checkpoint public keys,
and the first epoch's pseudonym key. Nothing here helps recover a master key: the
fingerprint is a hash of a separate HKDF output. Migration ``0007_keys`` creates it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, String, Table

from audit.tables import MYSQL_TABLE_ARGS, UTCDateTime, metadata
from core.keys import FINGERPRINT_HEX

audit_keys = Table(
    "audit_keys",
    metadata,
    Column("epoch", Integer(), primary_key=True, autoincrement=False),
    Column("fingerprint", String(FINGERPRINT_HEX), nullable=False),
    Column("since_seq", BigInteger(), nullable=False),  # first event chained under it
    Column("created_at", UTCDateTime(), nullable=False),
    Column("carried_nonce", LargeBinary(), nullable=True),
    Column("carried", LargeBinary(), nullable=True),
    **MYSQL_TABLE_ARGS,
)
