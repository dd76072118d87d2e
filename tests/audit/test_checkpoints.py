"""Signed checkpoints and exported anchors: what they prove and what they catch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from audit.checkpoints import public_key_hex, sign_checkpoint, write_anchor
from audit.database import audit_engine, dispose_engines
from audit.events import Checkpoint
from audit.ledger import Ledger, load_anchor
from audit.tables import GENESIS_HASH, audit_checkpoints
from core.errors import ConfigError, IntegrityError
from tests.audit.ledger_support import (
    KEYS,
    OTHER_KEYS,
    checkpoint_rows,
    edit,
    fill,
    remove,
    row,
    set_head,
    unguard,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield Ledger(audit_engine(f"sqlite:///{tmp_path / 'audit.db'}"), KEYS, actor="tester")
    dispose_engines()


@pytest.fixture
def other_ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield Ledger(audit_engine(f"sqlite:///{tmp_path / 'other.db'}"), KEYS, actor="tester")
    dispose_engines()


def test_checkpoint_signs_the_head(ledger: Ledger) -> None:
    empty = ledger.checkpoint()
    assert (empty.seq, empty.count, empty.head_hash) == (0, 0, GENESIS_HASH)
    fill(ledger, 7)
    cp = ledger.checkpoint()
    assert (cp.seq, cp.count) == (7, 7)
    assert cp.head_hash == row(ledger.engine, 7)["hash"]
    assert ledger.latest_checkpoint() == cp
    assert ledger.checkpoint_count() == 2
    report = ledger.verify()
    assert report.ok and report.checkpoints_checked == 2


def test_checkpoint_refuses_to_sign_a_broken_chain(ledger: Ledger) -> None:
    fill(ledger, 5)
    unguard(ledger.engine)
    edit(ledger.engine, 4, kind="tampered")
    with pytest.raises(IntegrityError, match="ledger broken at event 4"):
        ledger.checkpoint()
    assert checkpoint_rows(ledger.engine) == []


def test_checkpoint_refuses_a_rewound_head(ledger: Ledger) -> None:
    fill(ledger, 5)
    ledger.checkpoint()
    set_head(ledger.engine, seq=3, hash=row(ledger.engine, 3)["hash"])
    with pytest.raises(IntegrityError):
        ledger.checkpoint()


def test_forged_checkpoint_signature_is_detected(ledger: Ledger) -> None:
    fill(ledger, 6)
    genuine = sign_checkpoint(KEYS, 4, row(ledger.engine, 4)["hash"], 4, _now())
    forged = replace(genuine, count=40)  # claims more events than were signed
    _insert(ledger, forged)
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == 4
    assert "bad signature" in (report.problem or "")
    with pytest.raises(IntegrityError, match="bad signature"):
        ledger.checkpoint()


def test_checkpoint_signed_with_another_key_is_detected(ledger: Ledger) -> None:
    fill(ledger, 3)
    _insert(ledger, sign_checkpoint(OTHER_KEYS, 3, row(ledger.engine, 3)["hash"], 3, _now()))
    report = ledger.verify()
    assert (report.ok, report.first_bad_seq) == (False, 3)


def test_export_and_verify_against_the_anchor(ledger: Ledger, tmp_path: Path) -> None:
    fill(ledger, 5)
    path = tmp_path / "anchors" / "head.json"
    exported = ledger.export_checkpoint(path)  # records one, since none exists yet
    assert ledger.checkpoint_count() == 1
    doc = json.loads(path.read_text())
    assert doc["public_key"] == public_key_hex(KEYS.verify_key)
    assert doc["seq"] == 5 and doc["head_hash"] == exported.head_hash
    anchor = load_anchor(path)
    assert anchor == exported
    fill(ledger, 3)
    report = ledger.verify(anchor)
    assert report.ok and report.checkpoints_checked == 2


def test_export_always_anchors_the_current_head(ledger: Ledger, tmp_path: Path) -> None:
    fill(ledger, 2)
    first = ledger.export_checkpoint(tmp_path / "a.json")
    assert ledger.export_checkpoint(tmp_path / "b.json") == first  # nothing new to sign
    assert ledger.checkpoint_count() == 1
    fill(ledger, 3)
    later = ledger.export_checkpoint(tmp_path / "c.json")
    assert (later.seq, ledger.checkpoint_count()) == (5, 2)
    assert load_anchor(tmp_path / "c.json") == later


def test_anchor_catches_what_the_database_alone_cannot(ledger: Ledger, tmp_path: Path) -> None:
    fill(ledger, 6)
    anchor_path = tmp_path / "anchor.json"
    ledger.checkpoint()
    ledger.export_checkpoint(anchor_path)
    # A thorough attacker: drops the tail, rewinds the head and erases the checkpoints.
    unguard(ledger.engine)
    unguard(ledger.engine, "audit_checkpoints")
    with ledger.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints"))
    remove(ledger.engine, 6)
    remove(ledger.engine, 5)
    set_head(ledger.engine, seq=4, hash=row(ledger.engine, 4)["hash"])
    assert ledger.verify().ok  # nothing inside the database contradicts this
    report = ledger.verify(load_anchor(anchor_path))
    assert not report.ok and report.first_bad_seq == 5
    assert "truncated" in (report.problem or "") and "anchor" in (report.problem or "")


def test_anchor_from_a_different_chain_does_not_match(
    ledger: Ledger, other_ledger: Ledger, tmp_path: Path
) -> None:
    fill(ledger, 4)
    other_ledger.append("something.else", status="planned")
    fill(other_ledger, 3)
    path = tmp_path / "other.json"
    other_ledger.export_checkpoint(path)
    report = ledger.verify(load_anchor(path))
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "does not match the anchor" in (report.problem or "")


def test_anchor_signed_by_another_key_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    fill(ledger, 2)
    path = tmp_path / "foreign.json"
    head = row(ledger.engine, 2)["hash"]
    write_anchor(path, sign_checkpoint(OTHER_KEYS, 2, head, 2, _now()), OTHER_KEYS.verify_key)
    report = ledger.verify(load_anchor(path))
    assert not report.ok and "bad signature" in (report.problem or "")


def test_bad_anchor_files_are_refused_naming_the_file(ledger: Ledger, tmp_path: Path) -> None:
    fill(ledger, 2)
    good = tmp_path / "good.json"
    ledger.export_checkpoint(good)
    doc = json.loads(good.read_text())

    with pytest.raises(ConfigError, match=r"missing\.json"):
        load_anchor(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json.*not valid JSON"):
        load_anchor(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not an audit checkpoint"):
        load_anchor(wrong)
    missing_field = tmp_path / "field.json"
    missing_field.write_text(json.dumps({k: v for k, v in doc.items() if k != "count"}))
    with pytest.raises(ConfigError, match="'count'"):
        load_anchor(missing_field)
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(doc | {"seq": 1, "count": 1}))
    with pytest.raises(IntegrityError, match=r"altered\.json"):
        load_anchor(altered)


def _now() -> datetime:
    return datetime.now(UTC)


def _insert(ledger: Ledger, cp: Checkpoint) -> None:
    """Store a checkpoint row directly (inserting is all the triggers allow, and enough)."""
    with ledger.engine.begin() as conn:
        conn.execute(
            insert(audit_checkpoints).values(
                seq=cp.seq,
                head_hash=cp.head_hash,
                count=cp.count,
                created_at=cp.created_at,
                signature=cp.signature,
            )
        )
