"""Property: any single mutation of a verified chain is detected at the right event.

A ledger is built once; each example copies its SQLite file, removes the triggers as an
attacker would, applies one random mutation (edit a random field of a random event,
swap two events, delete one, or insert a forged one) and checks ``verify`` names the
first affected seq.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.database import audit_engine, dispose_engines
from audit.ledger import Ledger
from audit.tables import GENESIS_HASH
from tests.audit.ledger_support import (
    KEYS,
    edit,
    fill,
    forge,
    fresh_engine,
    remove,
    renumber_from,
    row,
    subject,
    swap,
    unguard,
)

N = 12


def _other_status(value: str) -> str:
    return "failed" if value != "failed" else "skipped"


def _flip_hex(value: str) -> str:
    return ("1" if value[0] != "1" else "2") + value[1:]


def _optional(value: str | None) -> str | None:
    return "changed" if value is None else None if value.endswith("1") else value + "1"


ALTERNATIVES: dict[str, Callable[[Any], Any]] = {
    "event_id": lambda v: "0" * 32,
    "occurred_at": lambda v: v + timedelta(microseconds=1),
    "kind": lambda v: v + ".x",
    "status": _other_status,
    "actor": lambda v: v + "x",
    "request_id": _optional,
    "flow_run_id": _optional,
    "task_run_id": _optional,
    "connector": _optional,
    "target": _optional,
    "subject": lambda v: str(subject(77)) if v != str(subject(77)) else None,
    "counts": lambda v: dict(v, rows=v.get("rows", 0) + 1),
    "detail": lambda v: dict(v, extra=True),
    "prev_hash": _flip_hex,
    "hash": _flip_hex,
}

mutations = st.one_of(
    st.tuples(st.just("edit"), st.integers(1, N), st.sampled_from(sorted(ALTERNATIVES))),
    st.tuples(st.just("swap"), st.integers(1, N), st.integers(1, N)).filter(lambda m: m[1] != m[2]),
    st.tuples(st.just("delete"), st.integers(1, N)),
    st.tuples(st.just("insert"), st.integers(1, N + 1)),
)


@pytest.fixture(scope="module")
def base_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("base") / "audit.db"
    ledger = Ledger(audit_engine(f"sqlite:///{path}"), KEYS, actor="tester")
    fill(ledger, N)
    assert ledger.verify().ok
    dispose_engines()  # the last close folds the WAL into the file we copy
    yield path


def _mutate(engine: Any, mutation: tuple[Any, ...]) -> int:
    """Apply ``mutation``; return the seq verify must report first."""
    kind = mutation[0]
    if kind == "edit":
        _, seq, field = mutation
        edit(engine, seq, **{field: ALTERNATIVES[field](row(engine, seq)[field])})
        return int(seq)
    if kind == "swap":
        _, a, b = mutation
        swap(engine, a, b)
        return int(min(a, b))
    if kind == "delete":
        remove(engine, mutation[1])
        return int(mutation[1])
    seq = mutation[1]
    if seq <= N:
        renumber_from(engine, seq, +1)
    # The forger links to the real predecessor (the genesis hash for the first event).
    prev = row(engine, seq - 1)["hash"] if seq > 1 else GENESIS_HASH
    forge(engine, seq, like=seq + 1 if seq == 1 else seq - 1, prev_hash=prev)
    return int(seq)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(mutation=mutations)
def test_any_single_mutation_is_detected(base_ledger: Path, mutation: tuple[Any, ...]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "audit.db"
        shutil.copyfile(base_ledger, copy)
        engine = fresh_engine(f"sqlite:///{copy}")
        try:
            unguard(engine)
            expected = _mutate(engine, mutation)
            report = Ledger(engine, KEYS).verify()
        finally:
            engine.dispose()
    assert not report.ok, mutation
    assert report.first_bad_seq == expected, (mutation, report)
