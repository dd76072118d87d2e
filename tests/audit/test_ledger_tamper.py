"""Every kind of tampering is detected, and the report names the first bad event."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from audit.database import audit_engine, dispose_engines
from audit.ledger import Ledger
from tests.audit.ledger_support import (
    KEYS,
    edit,
    fill,
    forge,
    remove,
    renumber_from,
    row,
    set_head,
    subject,
    swap,
    unguard,
)

N = 10


def _filled(url: str) -> Ledger:
    ledger = Ledger(audit_engine(url), KEYS, actor="tester")
    fill(ledger, N)
    assert ledger.verify().ok
    unguard(ledger.engine)
    return ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield _filled(f"sqlite:///{tmp_path / 'audit.db'}")
    dispose_engines()


@pytest.fixture
def any_backend(db_url: str) -> Iterator[Ledger]:
    yield _filled(db_url)
    dispose_engines()


def _broken_at(ledger: Ledger, seq: int, *words: str) -> None:
    report = ledger.verify()
    assert not report.ok
    assert report.first_bad_seq == seq, report
    for word in words:
        assert word in (report.problem or ""), report


def test_edit_is_detected_on_every_backend(any_backend: Ledger) -> None:
    edit(any_backend.engine, 4, target="public.invoices")
    _broken_at(any_backend, 4, "hash mismatch", "edited")


def test_json_edit_is_detected_on_every_backend(any_backend: Ledger) -> None:
    stored = row(any_backend.engine, 6)
    edit(any_backend.engine, 6, counts=dict(stored["counts"], rows=999))
    _broken_at(any_backend, 6, "edited")


@pytest.mark.parametrize(
    "values",
    [
        {"kind": "connector.plan"},
        {"status": "failed"},
        {"actor": "mallory"},
        {"request_id": "req-9"},
        {"request_id": None},
        {"flow_run_id": "flow-2"},
        {"task_run_id": None},
        {"connector": "other_db"},
        {"subject": None},
        {"event_id": "0" * 32},
        {"detail": {"strategy": "delete", "step": 5, "tables": ["orders", "customers"]}},
        {"counts": {"rows": 5}},
        {"hash": "0" * 64},
    ],
)
def test_every_field_edit_is_detected(ledger: Ledger, values: dict[str, Any]) -> None:
    edit(ledger.engine, 5, **values)
    _broken_at(ledger, 5, "edited")


def test_edited_time_and_subject_are_detected(ledger: Ledger) -> None:
    stored = row(ledger.engine, 3)
    edit(ledger.engine, 3, occurred_at=stored["occurred_at"] + timedelta(microseconds=1))
    _broken_at(ledger, 3, "edited")
    edit(ledger.engine, 2, subject=subject(99))
    _broken_at(ledger, 2, "edited")


def test_edited_prev_hash_is_detected(ledger: Ledger) -> None:
    edit(ledger.engine, 7, prev_hash="1" * 64)
    _broken_at(ledger, 7, "edited")


def test_deleted_event_is_detected(ledger: Ledger) -> None:
    remove(ledger.engine, 4)
    _broken_at(ledger, 4, "missing", "deleted")


def test_deleted_event_with_renumbering_is_detected(ledger: Ledger) -> None:
    remove(ledger.engine, 4)
    renumber_from(ledger.engine, 5, -1)
    _broken_at(ledger, 4, "missing", "renumbered")


def test_forged_event_inserted_in_the_middle_is_detected(ledger: Ledger) -> None:
    renumber_from(ledger.engine, 4, +1)
    forge(ledger.engine, 4, like=3, prev_hash=row(ledger.engine, 3)["hash"])
    _broken_at(ledger, 4, "inserted")


def test_forged_event_appended_at_the_end_is_detected(ledger: Ledger) -> None:
    forge(ledger.engine, N + 1, like=N, prev_hash=row(ledger.engine, N)["hash"])
    _broken_at(ledger, N + 1, "inserted outside the ledger")


def test_swapped_events_are_detected(ledger: Ledger) -> None:
    swap(ledger.engine, 3, 7)
    _broken_at(ledger, 3, "reordered")


def test_swapped_neighbours_are_detected(ledger: Ledger) -> None:
    swap(ledger.engine, 5, 6)
    _broken_at(ledger, 5, "reordered")


def test_truncated_tail_is_caught_by_the_head_row(ledger: Ledger) -> None:
    remove(ledger.engine, N)
    _broken_at(ledger, N, "truncated", "head")


def test_truncated_tail_behind_a_checkpoint_is_detected(ledger: Ledger) -> None:
    ledger.checkpoint()
    # The attacker also rewinds the head row, so only the checkpoint remembers.
    head = row(ledger.engine, N - 3)
    for seq in range(N - 2, N + 1):
        remove(ledger.engine, seq)
    set_head(ledger.engine, seq=N - 3, hash=head["hash"])
    _broken_at(ledger, N - 2, "truncated", f"checkpoint at event {N}")


def test_emptied_table_is_detected_by_checkpoint(ledger: Ledger) -> None:
    ledger.checkpoint()
    with ledger.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events"))
    _broken_at(ledger, 1, "truncated")


@pytest.mark.service
def test_mariadb_truncate_bypasses_triggers_but_not_checkpoints(mariadb_url: str) -> None:
    ledger = Ledger(audit_engine(mariadb_url), KEYS)
    try:
        fill(ledger, 5)
        ledger.checkpoint()
        with ledger.engine.begin() as conn:
            conn.execute(text("TRUNCATE TABLE audit_events"))
        assert ledger.count() == 0
        _broken_at(ledger, 1, "truncated")
    finally:
        dispose_engines()


def test_the_first_of_several_problems_is_reported(ledger: Ledger) -> None:
    edit(ledger.engine, 8, kind="late")
    remove(ledger.engine, 6)
    edit(ledger.engine, 3, kind="early")
    _broken_at(ledger, 3, "edited")


def test_rewound_head_alone_is_detected(ledger: Ledger) -> None:
    set_head(ledger.engine, seq=N - 1, hash=row(ledger.engine, N - 1)["hash"])
    _broken_at(ledger, N, "outside the ledger")


def test_a_ledger_key_change_breaks_everything(ledger: Ledger) -> None:
    from tests.audit.ledger_support import OTHER_KEYS

    report = Ledger(ledger.engine, OTHER_KEYS).verify()
    assert not report.ok and report.first_bad_seq == 1
