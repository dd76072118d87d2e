"""Canonical, unambiguous byte encodings of ledger events and checkpoints.

The chain HMAC and the checkpoint signatures are computed over these bytes, so the
encoding must give the same bytes for what a backend hands back as for what was
written: JSON objects with sorted keys and no whitespace, no floats (their text form
is not stable across backends and languages), datetimes as fixed-format UTC strings
with microseconds. Only JSON-native types are accepted (str, int, bool, None, lists,
string-keyed mappings), so distinct contents always encode to distinct bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.errors import TerminalError

EVENT_FORMAT = "lifecycle-ledger-event/v1"
CHECKPOINT_FORMAT = "lifecycle-ledger-checkpoint/v1"

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
MAX_DEPTH = 32

JsonValue = None | bool | int | str | list["JsonValue"] | dict[str, "JsonValue"]


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _make_encoder() -> Callable[[Any], str]:
    """``json.dumps(sort_keys, compact, ensure_ascii=False, allow_nan=False)``, made once.

    ``JSONEncoder.encode`` builds a new C encoder on every call; verification encodes
    a million rows, so reuse one C encoder when the interpreter has it (same output).
    """
    slow = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:
        return slow
    # (markers, default, encoder, indent, key_sep, item_sep, sort_keys, skipkeys, allow_nan);
    # no circular-reference markers: canonical values are trees.
    chunks = c_make_encoder(
        None, _refuse, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )

    def fast(value: Any) -> str:
        return "".join(chunks(value, 0))

    return fast


_encode = _make_encoder()


class InvalidEvent(TerminalError):
    """An event (or a value in it) cannot be stored in the ledger as given."""


def format_time(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, always with microseconds)."""
    if moment.tzinfo is None:
        raise InvalidEvent("ledger timestamps must be timezone-aware")
    return format_naive_utc(moment.astimezone(UTC).replace(tzinfo=None))


def format_naive_utc(moment: datetime) -> str:
    """``format_time`` for a naive datetime already in UTC (as the database returns it)."""
    return moment.isoformat(timespec="microseconds") + "Z"


def check_unicode(value: str, path: str) -> str:
    if "\x00" in value:
        # PostgreSQL cannot store NUL in text or JSON; refuse it everywhere alike.
        raise InvalidEvent(f"{path}: text contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidEvent(f"{path}: text is not valid Unicode (lone surrogate)") from e
    return str(value)


def normalize_json(value: Any, path: str, depth: int = 0) -> JsonValue:
    """A plain-JSON copy of ``value``; raise InvalidEvent naming ``path`` if it is not JSON.

    Floats, bytes, datetimes, sets and non-string keys are refused (not converted) so
    that what is hashed is exactly what will be read back. Tuples become lists.
    """
    if depth > MAX_DEPTH:
        raise InvalidEvent(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return check_unicode(value, path)
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT_MIN <= value <= INT_MAX:
            raise InvalidEvent(f"{path}: integer outside the signed 64-bit range")
        return int(value)
    if isinstance(value, float):
        raise InvalidEvent(f"{path}: floats are not allowed (use an integer or a string)")
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidEvent(f"{path}: mapping keys must be strings")
            name = check_unicode(key, path)
            out[name] = normalize_json(item, f"{path}.{name}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [normalize_json(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise InvalidEvent(f"{path}: values of type {type(value).__name__} are not allowed")


def normalize_counts(counts: Mapping[str, Any] | None) -> dict[str, int]:
    """Counts as a plain dict of string keys to (non-bool) integers."""
    if counts is None:
        return {}
    if not isinstance(counts, Mapping):
        raise InvalidEvent("counts must be a mapping of names to integers")
    out: dict[str, int] = {}
    for key, item in counts.items():
        if not isinstance(key, str):
            raise InvalidEvent("counts: keys must be strings")
        if isinstance(item, bool) or not isinstance(item, int):
            raise InvalidEvent(f"counts.{check_unicode(key, 'counts')}: counts must be integers")
        normalized = normalize_json(item, f"counts.{key}")
        assert isinstance(normalized, int)
        out[check_unicode(key, "counts")] = normalized
    return out


def normalize_detail(detail: Mapping[str, Any] | None) -> dict[str, JsonValue]:
    """Detail as a plain JSON object."""
    if detail is None:
        return {}
    if not isinstance(detail, Mapping):
        raise InvalidEvent("detail must be a mapping")
    normalized = normalize_json(detail, "detail")
    assert isinstance(normalized, dict)
    return normalized


def canonical_json(value: Any) -> str:
    """The canonical text of a JSON value (sorted keys, no whitespace, UTF-8 as is)."""
    return _encode(value)


def event_scalars(
    *,
    seq: int,
    event_id: str,
    occurred_at: str,
    kind: str,
    status: str,
    actor: str,
    request_id: str | None,
    flow_run_id: str | None,
    task_run_id: str | None,
    connector: str | None,
    target: str | None,
    subject: str | None,
) -> list[Any]:
    """The fixed-position scalar part of an event's canonical content."""
    return [
        EVENT_FORMAT,
        seq,
        event_id,
        occurred_at,
        kind,
        status,
        actor,
        request_id,
        flow_run_id,
        task_run_id,
        connector,
        target,
        subject,
    ]


def event_content_from_texts(scalars: Sequence[Any], counts_text: str, detail_text: str) -> bytes:
    """Canonical content from the scalar part and the canonical texts of counts and detail.

    Equal to ``canonical_json(scalars + [counts, detail])``: a JSON array's text is its
    elements' texts joined by commas, so splicing the stored JSON text in is the same
    encoding, and lets verification skip parsing when a backend keeps JSON verbatim.
    """
    head = _encode(list(scalars))
    return f"{head[:-1]},{counts_text},{detail_text}]".encode()


def event_content(
    scalars: Sequence[Any], counts: Mapping[str, JsonValue], detail: Mapping[str, JsonValue]
) -> bytes:
    """Canonical content of an event: its scalar fields in fixed order, then counts, detail."""
    return _encode([*scalars, counts, detail]).encode()


def checkpoint_content(seq: int, head_hash: str, count: int, created_at: datetime) -> bytes:
    """The bytes a checkpoint signature covers."""
    return _encode([CHECKPOINT_FORMAT, seq, head_hash, count, format_time(created_at)]).encode()
