"""The keyed hash chain: computing links and checking a stream of stored events.

Each event's ``hash`` is HMAC-SHA256 under the ledger key over ``prev_hash`` followed by
the event's canonical content (which includes its ``seq``), so any edit, deletion,
insertion or reordering breaks the chain at the first affected event. The checks here
are pure: audit/verify.py streams rows in and gets a ``Problem`` back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Text, cast, type_coerce

from audit.canonical import (
    EVENT_FORMAT,
    canonical_json,
    event_content_from_texts,
    format_naive_utc,
    format_time,
)
from audit.tables import GENESIS_HASH, audit_events

# Rows are checked in this column order: positions 0..11 are the event's scalar
# fields in canonical order (seq .. subject), then the JSON texts and the two hashes.
_E = audit_events.c
VERIFY_COLUMNS: tuple[ColumnElement[Any], ...] = (
    _E.seq,
    _E.event_id,
    # Naive UTC as stored: skips the aware-datetime conversion on a million rows.
    type_coerce(_E.occurred_at, DateTime()).label("occurred_at"),
    _E.kind,
    _E.status,
    _E.actor,
    _E.request_id,
    _E.flow_run_id,
    _E.task_run_id,
    _E.connector,
    _E.target,
    _E.subject,
    # As text: hashing the stored text directly avoids parsing on backends that keep it.
    cast(_E.counts, Text).label("counts_text"),
    cast(_E.detail, Text).label("detail_text"),
    _E.prev_hash,
    _E.hash,
)
_KIND, _COUNTS, _DETAIL, _PREV, HASH_INDEX = 3, 12, 13, 14, 15

_SEQ_PREFIX = f'["{EVENT_FORMAT}",'.encode()


def link_hash(key: bytes, prev_hash: str, content: bytes) -> str:
    """HMAC-SHA256(key, prev_hash || content) as hex: one link of the chain."""
    return hmac.digest(key, prev_hash.encode() + content, "sha256").hex()


ROTATION_KIND = "keys.rotated"
"""The event that switches the chain to the next key epoch's chain key."""
_BRIDGE_CONTEXT = b"lifecycle/keys.rotated/v1"


def rotation_bridge(
    old_key: bytes, seq: int, prev_hash: str, new_fingerprint: str, new_epoch: int
) -> str:
    """HMAC under the retiring chain key vouching for the key that continues the chain.

    A ``keys.rotated`` event is linked under the *new* chain key; its ``bridge`` (this
    value, in its detail) proves that whoever held the old chain key handed over to
    the new key at exactly this position (seq and predecessor's hash).
    """
    message = "\x1f".join((str(seq), prev_hash, new_fingerprint, str(new_epoch))).encode()
    return hmac.digest(old_key, _BRIDGE_CONTEXT + message, "sha256").hex()


@dataclass(frozen=True)
class Problem:
    """Where verification failed (the first bad event's seq) and why."""

    seq: int
    message: str


def _scalars(row: Sequence[Any], seq: int | None = None) -> list[Any]:
    occurred_at = row[2]
    if not isinstance(occurred_at, datetime):
        when = occurred_at
    elif occurred_at.tzinfo is None:
        when = format_naive_utc(occurred_at)
    else:
        when = format_time(occurred_at)
    return [EVENT_FORMAT, row[0] if seq is None else seq, row[1], when, *row[3:12]]


def _recanonical(text: Any) -> str | None:
    """Canonical text of stored JSON text, or None when it is not JSON at all."""
    try:
        return canonical_json(json.loads(text))
    except (TypeError, ValueError):
        return None


def row_content(row: Sequence[Any], seq: int | None = None) -> bytes | None:
    """The canonical content of a stored row (with ``seq`` substituted if given).

    Re-canonicalizes the JSON texts, so it works whatever key order the backend keeps.
    """
    counts, detail = _recanonical(row[_COUNTS]), _recanonical(row[_DETAIL])
    if counts is None or detail is None:
        return None
    return event_content_from_texts(_scalars(row, seq), counts, detail)


def row_is_authentic(key: bytes, row: Sequence[Any]) -> bool:
    """True when the row's stored hash is the HMAC of its stored prev_hash and content."""
    stored = row[HASH_INDEX]
    fast = event_content_from_texts(_scalars(row), row[_COUNTS], row[_DETAIL])
    if hmac.compare_digest(link_hash(key, row[_PREV], fast), stored):
        return True
    # The stored JSON text may be valid but not canonical (key order, spacing).
    content = row_content(row)
    return content is not None and hmac.compare_digest(link_hash(key, row[_PREV], content), stored)


def signed_position(
    key: bytes, row: Sequence[Any], candidates: Sequence[int] | range
) -> int | None:
    """The seq (among ``candidates``) for which the row's own hash is valid, if any.

    An event moved to another position fails its HMAC because seq is part of the
    content; finding the position it was signed for tells a reordering or a renumbered
    deletion from an edit. Only run after a failure, so a linear search is affordable.
    """
    content = row_content(row, seq=0)
    try:
        stored = bytes.fromhex(row[HASH_INDEX])
    except (TypeError, ValueError):
        return None
    if content is None or not content.startswith(_SEQ_PREFIX + b"0,"):
        return None
    suffix = content[len(_SEQ_PREFIX) + 1 :]
    base = hmac.new(key, row[_PREV].encode() + _SEQ_PREFIX, hashlib.sha256)
    for seq in candidates:
        h = base.copy()
        h.update(str(seq).encode() + suffix)
        if hmac.compare_digest(h.digest(), stored):
            return seq
    return None


def _nearest_first(center: int, low: int, high: int) -> list[int]:
    out = [center] if low <= center <= high else []
    for d in range(1, max(center - low, high - center) + 1):
        if center + d <= high:
            out.append(center + d)
        if center - d >= low:
            out.append(center - d)
    return out


class ChainWalker:
    """Checks rows arriving in seq order: contiguity, prev_hash linkage and HMAC.

    ``key`` is the chain key in force after ``after_seq``; ``rotations`` maps key epochs
    to their chain keys, for the ``keys.rotated`` events that switch to them.
    """

    def __init__(
        self,
        key: bytes,
        after_seq: int = 0,
        after_hash: str = GENESIS_HASH,
        rotations: Mapping[int, bytes] | None = None,
    ) -> None:
        self.key = key
        self.expected = after_seq + 1
        self.prev_hash = after_hash
        self.checked = 0
        self.rotations = dict(rotations or {})
        self._rotation_problem: str | None = None

    @property
    def last_seq(self) -> int:
        """Seq of the last event that verified (``after_seq`` if none did)."""
        return self.expected - 1

    def step(self, row: Sequence[Any]) -> bool:
        """Accept one row; False when it breaks the chain (call ``diagnose`` next)."""
        if row[0] != self.expected or row[_PREV] != self.prev_hash:
            return False
        key = self.key
        if row[_KIND] == ROTATION_KIND:
            rotated = self._rotated_key(row)
            if rotated is None:
                return False
            key = rotated
        if not row_is_authentic(key, row):
            self._rotation_problem = None
            return False
        self.key = key
        self.expected += 1
        self.prev_hash = row[HASH_INDEX]
        self.checked += 1
        return True

    def _rotated_key(self, row: Sequence[Any]) -> bytes | None:
        """The chain key a linked ``keys.rotated`` row switches to, if its bridge holds."""
        try:
            detail = json.loads(row[_DETAIL])
            epoch, fingerprint, bridge = detail["to_epoch"], detail["to_key"], detail["bridge"]
        except (TypeError, ValueError, KeyError):
            return None  # not a well-formed rotation: reported as an edit
        new_key = self.rotations.get(epoch) if isinstance(epoch, int) else None
        if new_key is None:
            self._rotation_problem = (
                f"the ledger was rotated to key epoch {epoch} (key fp {fingerprint}), whose "
                "chain key this key ring does not hold (wrong key)"
            )
            return None
        expected = rotation_bridge(self.key, int(row[0]), self.prev_hash, str(fingerprint), epoch)
        if not isinstance(bridge, str) or not hmac.compare_digest(expected, bridge):
            self._rotation_problem = (
                "key rotation not vouched for by the previous key (bridge mismatch)"
            )
            return None
        return new_key

    def diagnose(
        self, row: Sequence[Any], next_row: Sequence[Any] | None, max_seq: int, head_seq: int
    ) -> Problem:
        """Explain why ``row`` broke the chain; ``head_seq`` is the head read afterwards."""
        k = self.expected
        seq = int(row[0])
        if self._rotation_problem is not None and seq == k:
            return Problem(k, self._rotation_problem)
        if seq > k:
            return Problem(k, f"event {k} is missing (deleted)")
        if seq < k:
            return Problem(seq, f"event {seq} appears out of sequence (inserted)")
        if seq > head_seq:
            # Appends move the head in the same transaction, so this row bypassed them.
            return Problem(k, "event inserted outside the ledger (beyond the chain head)")
        signed_for = signed_position(self.key, row, _nearest_first(k, 1, max(max_seq, k) + 1))
        next_signed_here = (
            next_row is not None and signed_position(self.key, next_row, [k]) is not None
        )
        return Problem(k, _explain(k, row[_PREV] == self.prev_hash, signed_for, next_signed_here))


def _explain(k: int, linked: bool, signed_for: int | None, next_signed_here: bool) -> str:
    """Name what happened at position ``k`` from where its event (and the next) was signed."""
    if signed_for is None:
        if next_signed_here:
            return "forged event inserted (later events renumbered)"
        if linked:
            return "hash mismatch (event edited)"
        return "hash mismatch (event edited: it no longer links to its predecessor)"
    if signed_for == k:
        return f"event {k} does not link to event {k - 1} (chain spliced)"
    if signed_for == k + 1 and not next_signed_here:
        return f"event {k} is missing (deleted; later events renumbered)"
    return f"event signed for position {signed_for} found at {k} (reordered)"
