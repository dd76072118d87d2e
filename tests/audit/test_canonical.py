"""Canonical encoding: deterministic, key-order independent, injective, and strict."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.canonical import (
    InvalidEvent,
    canonical_json,
    checkpoint_content,
    event_content,
    event_content_from_texts,
    event_scalars,
    format_time,
    normalize_counts,
    normalize_detail,
)

keys = st.text(max_size=8).filter(lambda s: "\x00" not in s)
texts = st.text(max_size=12).filter(lambda s: "\x00" not in s)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
details = st.dictionaries(keys, json_values, max_size=5)


def _reordered(value: Any) -> Any:
    """The same JSON value with every object's keys in reverse insertion order."""
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def _scalars(seq: int = 1, **overrides: Any) -> list[Any]:
    fields: dict[str, Any] = {
        "seq": seq,
        "event_id": "e" * 32,
        "occurred_at": "2024-05-01T10:00:00.000001Z",
        "kind": "k",
        "status": "planned",
        "actor": "cli",
        "request_id": None,
        "flow_run_id": None,
        "task_run_id": None,
        "connector": None,
        "target": None,
        "subject": None,
    }
    fields.update(overrides)
    return event_scalars(**fields)


@settings(max_examples=150, deadline=None)
@given(details)
def test_encoding_is_deterministic_and_key_order_independent(detail: dict[str, Any]) -> None:
    normalized = normalize_detail(detail)
    again = normalize_detail(_reordered(detail))
    assert canonical_json(normalized) == canonical_json(again)
    assert event_content(_scalars(), {}, normalized) == event_content(_scalars(), {}, again)


@settings(max_examples=150, deadline=None)
@given(details)
def test_encoding_round_trips_through_json_text(detail: dict[str, Any]) -> None:
    # What a backend hands back (parsed from any key order/spacing) encodes identically.
    normalized = normalize_detail(detail)
    stored_text = json.dumps(_reordered(normalized), indent=1)
    assert canonical_json(json.loads(stored_text)) == canonical_json(normalized)


def _tagged(value: Any) -> Any:
    """A structural key that tells JSON-distinct values apart (Python has True == 1)."""
    if isinstance(value, dict):
        return ("object", sorted((k, _tagged(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", [_tagged(v) for v in value])
    return (type(value).__name__, value)


@settings(max_examples=200, deadline=None)
@given(details, details)
def test_encoding_is_injective(a: dict[str, Any], b: dict[str, Any]) -> None:
    na, nb = normalize_detail(a), normalize_detail(b)
    same_bytes = event_content(_scalars(), {}, na) == event_content(_scalars(), {}, nb)
    assert same_bytes == (_tagged(na) == _tagged(nb))


@settings(max_examples=50, deadline=None)
@given(details)
def test_any_change_to_a_value_changes_the_bytes(detail: dict[str, Any]) -> None:
    normalized = normalize_detail(detail)
    changed = dict(normalized) | {"extra": None}
    flipped = {k: [v] for k, v in normalized.items()}
    base = event_content(_scalars(), {}, normalized)
    assert event_content(_scalars(), {}, changed) != base
    if normalized:
        assert event_content(_scalars(), {}, flipped) != base


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10**9), st.integers(1, 10**9), texts, texts)
def test_scalar_fields_are_unambiguous(s1: int, s2: int, t1: str, t2: str) -> None:
    # Moving text between adjacent fields, or changing seq, always changes the bytes.
    a = event_content(_scalars(s1, kind=t1, actor=t2), {}, {})
    b = event_content(_scalars(s2, kind=t1 + t2, actor=""), {}, {})
    assert (a == b) == (s1 == s2 and t2 == "")


@settings(max_examples=100, deadline=None)
@given(details, st.dictionaries(keys, st.integers(0, 10**12), max_size=4))
def test_spliced_stored_texts_equal_the_canonical_content(
    detail: dict[str, Any], counts: dict[str, int]
) -> None:
    d, c = normalize_detail(detail), normalize_counts(counts)
    assert event_content_from_texts(
        _scalars(), canonical_json(c), canonical_json(d)
    ) == event_content(_scalars(), c, d)


def test_encoding_is_compact_sorted_utf8() -> None:
    assert canonical_json({"b": [1, None, True], "a": "é\n"}) == '{"a":"é\\n","b":[1,null,true]}'


@pytest.mark.parametrize(
    ("detail", "path"),
    [
        ({"ratio": 0.5}, "detail.ratio"),
        ({"nested": {"x": [1, 2.0]}}, "detail.nested.x[1]"),
        ({"when": datetime(2024, 1, 1, tzinfo=UTC)}, "detail.when"),
        ({"raw": b"bytes"}, "detail.raw"),
        ({"set": {1, 2}}, "detail.set"),
        ({"big": 2**63}, "detail.big"),
        ({"nul": "a\x00b"}, "detail.nul"),
        ({"surrogate": "\ud800"}, "detail.surrogate"),
        ({"inf": float("inf")}, "detail.inf"),
    ],
)
def test_non_json_values_are_refused_naming_the_path(detail: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        normalize_detail(detail)
    assert path in str(info.value)


def test_non_string_keys_and_deep_nesting_are_refused() -> None:
    with pytest.raises(InvalidEvent, match="keys must be strings"):
        normalize_detail({1: "x"})  # type: ignore[dict-item]
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(40):
        cursor["d"] = {}
        cursor = cursor["d"]
    with pytest.raises(InvalidEvent, match="nested deeper"):
        normalize_detail(deep)


def test_counts_must_be_integers_not_bools_or_floats() -> None:
    assert normalize_counts({"rows": 3}) == {"rows": 3}
    bad_counts: list[dict[str, Any]] = [{"rows": True}, {"rows": 1.0}, {"rows": "3"}]
    for bad in bad_counts:
        with pytest.raises(InvalidEvent, match=r"counts\.rows"):
            normalize_counts(bad)


def test_tuples_become_lists_and_str_subclasses_plain_str() -> None:
    class Tag(str):
        pass

    normalized = normalize_detail({"t": (1, Tag("x"))})
    assert normalized == {"t": [1, "x"]}
    items = normalized["t"]
    assert isinstance(items, list)
    assert type(items[1]) is str


def test_time_format_is_fixed_utc_with_microseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2024, 5, 1, 12, 0, tzinfo=plus_two)) == (
        "2024-05-01T10:00:00.000000Z"
    )
    assert format_time(datetime(2024, 5, 1, 10, 0, 0, 7, tzinfo=UTC)).endswith(".000007Z")
    with pytest.raises(InvalidEvent, match="timezone-aware"):
        format_time(datetime(2024, 5, 1))


def test_checkpoint_content_covers_every_field() -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    base = checkpoint_content(5, "a" * 64, 5, at)
    assert base != checkpoint_content(6, "a" * 64, 5, at)
    assert base != checkpoint_content(5, "b" * 64, 5, at)
    assert base != checkpoint_content(5, "a" * 64, 6, at)
    assert base != checkpoint_content(5, "a" * 64, 5, at + timedelta(microseconds=1))
