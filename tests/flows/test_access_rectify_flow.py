"""Access (encrypted package) and rectification through the subject-request flow."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import TerminalError
from core.package import (
    PassphraseRecipient,
    X25519Recipient,
    generate_keypair,
    load_private_key,
    load_public_key,
    read_package,
)
from engine.intake import submit
from engine.request_support import request_context
from flows.subject_request import subject_request
from state.register import RequestStatus
from tests.flows.support import (
    REQUESTER,
    SUBJECT_EMAIL,
    SUBJECT_NUMBER,
    events,
    kinds,
    store_rows,
)

Configure = Callable[..., Path]
PASSPHRASE = b"a long passphrase for the subject"


def _access(recipient: PassphraseRecipient | X25519Recipient) -> str:
    return submit(
        request_context(),
        kind="access",
        identity={"customer_number": SUBJECT_NUMBER},
        requested_by=REQUESTER,
        recipient=recipient,
    ).id


def test_access_writes_an_encrypted_package_of_the_subjects_data(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure()
    before = {s: store_rows(isolated_settings, s) for s in ("crm", "shop")}
    rid = _access(PassphraseRecipient(PASSPHRASE))

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed" and outcome.exit_code == 0
    assert outcome.package is not None
    path = Path(outcome.package.location)
    assert path == isolated_settings / "exports" / f"{rid}.lcpkg"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == outcome.package.sha256
    assert b"robin" not in raw.lower() and b"quill" not in raw.lower()

    manifest, records = read_package(path, PASSPHRASE)
    rows = list(records)
    assert manifest["request_id"] == rid and manifest["records"] == 7
    assert manifest["counts"] == {
        "crm": {"customers": 1, "orders": 3, "invoices": 1},
        "shop": {"carts": 1, "wishlists": 1},
    }
    assert manifest["stores_skipped"] == ["files"]
    assert {r["data"]["id"] for r in rows} == {1, 10, 11, 12, 20, 30, 40}  # no bystander
    customer = next(r for r in rows if r["target"] == "customers")
    assert customer["data"]["email"] == SUBJECT_EMAIL and customer["categories"] == ["contact"]

    # Nothing changed in the stores; the ledger has the package's digest and counts only.
    assert {s: store_rows(isolated_settings, s) for s in ("crm", "shop")} == before
    [package] = [e for e in events(rid) if e.kind == "access.package"]
    assert package.counts == {"records": 7, "bytes": len(raw)}
    assert package.detail["sha256"] == outcome.package.sha256
    assert kinds(rid).count("access.verified") == 2 and kinds(rid).count("request.completed") == 1
    record = request_context().register.get(rid)
    assert record.status is RequestStatus.COMPLETED and record.identity_destroyed


def test_access_package_for_a_public_key(
    prefect_server: None, configure: Configure, tmp_path: Path
) -> None:
    configure()
    public_path, _ = generate_keypair(tmp_path / "subject.key")
    rid = _access(X25519Recipient(load_public_key(public_path)))

    outcome = subject_request(request_id=rid)

    assert outcome.package is not None
    manifest, records = read_package(
        Path(outcome.package.location), load_private_key(tmp_path / "subject.key")
    )
    assert manifest["records"] == 7 and len(list(records)) == 7


def test_access_needs_a_recipient(prefect_server: None, configure: Configure) -> None:
    configure()
    with pytest.raises(TerminalError, match="needs a package recipient"):
        submit(
            request_context(),
            kind="access",
            identity={"email": SUBJECT_EMAIL},
            requested_by=REQUESTER,
        )
    assert request_context().register.list() == []


def _rectify(changes: dict[str, str]) -> str:
    return submit(
        request_context(),
        kind="rectification",
        identity={"email": SUBJECT_EMAIL},
        requested_by=REQUESTER,
        changes=changes,
    ).id


def test_rectification_corrects_the_subjects_rows_only(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure()
    rid = _rectify({"customers.full_name": "Robin Q. Quill", "shipping_address": "3 New Road"})

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed"
    crm = store_rows(isolated_settings, "crm")
    assert [c["full_name"] for c in crm["customers"]] == ["Robin Q. Quill", "Sam Birch"]
    assert [o["shipping_address"] for o in crm["orders"]] == ["3 New Road"] * 3 + ["9 Birch Road"]
    batches = [e for e in events(rid) if e.kind == "rectification.batch"]
    assert {(e.target, e.counts["affected"]) for e in batches} == {("customers", 1), ("orders", 3)}
    assert kinds(rid).count("rectification.verified") == 2
    assert "robin q." not in str([e.detail for e in events(rid)]).lower()
    ctx = request_context()
    assert ctx.register.get(rid).identity_destroyed
    with pytest.raises(TerminalError, match="destroyed"):
        ctx.register.open_changes(rid)


def test_rectifying_the_email_still_finds_the_subject(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure()
    rid = _rectify({"customers.email": "robin.new@example.com"})

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed"  # verified by re-locating with the new e-mail
    assert store_rows(isolated_settings, "crm")["customers"][0]["email"] == "robin.new@example.com"
    # One event per store, in the order the stores finished verifying: they run
    # concurrently (flows.store_steps), so pick each by its store, never by position.
    verified = {e.connector: e for e in events(rid) if e.kind == "rectification.verified"}
    assert set(verified) == {"crm", "shop"}
    assert verified["crm"].counts["found_after"] == verified["crm"].counts["found_before"] == 5
    assert verified["shop"].counts["found_after"] == verified["shop"].counts["found_before"] == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"payments.card": "x"}, "names no declared table or field"),
        ({"nickname": "x"}, "names no declared table or field"),
    ],
)
def test_rectification_refuses_unknown_targets_before_registering(
    prefect_server: None, configure: Configure, changes: dict[str, str], message: str
) -> None:
    configure()
    with pytest.raises(TerminalError, match=message):
        _rectify(changes)
    assert request_context().register.list() == []
