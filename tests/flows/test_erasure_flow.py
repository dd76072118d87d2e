"""Erasure through the subject-request flow on fake stores: what users rely on.

Every store is searched in inventory order with identities derived by earlier ones; the
subject's rows go (or are masked, or deferred under a legal hold), a bystander's never;
every step is in the ledger without personal data; the request completes exactly once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from core.errors import TerminalError
from engine.intake import submit
from engine.request_support import request_context
from flows.subject_request import subject_request
from state.progress_tables import request_progress, request_runs
from state.register import RequestStatus
from tests.flows.support import (
    OTHER_EMAIL,
    REQUESTER,
    SUBJECT_EMAIL,
    events,
    kinds,
    seed_stores,
    set_failure,
    store_rows,
)

Configure = Callable[..., Path]


def erasure(email: str = SUBJECT_EMAIL, **extra: str) -> str:
    """Register an erasure request (the CLI's way: only the id goes to the flow)."""
    record = submit(
        request_context(),
        kind="erasure",
        identity={"email": email},
        requested_by=REQUESTER,
    )
    return record.id


def ledger_text(request_id: str) -> str:
    return json.dumps([e.__dict__ for e in events(request_id)], default=str).lower()


def test_erasure_across_stores_with_derived_identities(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure(auto_approve=True)
    rid = erasure(SUBJECT_EMAIL.upper())  # e-mail matched without case

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed" and outcome.exit_code == 0
    assert outcome.deferrals == []
    crm = store_rows(isolated_settings, "crm")
    assert [c["id"] for c in crm["customers"]] == [2]
    assert [o["id"] for o in crm["orders"]] == [13]
    assert [i["billing_name"] for i in crm["invoices"]] == ["[redacted]", "Sam Birch"]
    shop = store_rows(isolated_settings, "shop")  # reached only through customer_id
    assert [c["id"] for c in shop["carts"]] == [31] and shop["wishlists"] == []
    stores = {s.store: s for s in outcome.stores}
    assert (stores["crm"].found, stores["crm"].affected, stores["crm"].remaining) == (5, 5, 0)
    assert (stores["shop"].found, stores["shop"].affected) == (2, 2)
    assert stores["files"].phase == "skipped" and "s3" in (stores["files"].skipped_reason or "")

    record = request_context().register.get(rid)
    assert record.status is RequestStatus.COMPLETED and record.identity_destroyed
    seen = kinds(rid)
    assert seen.count("request.completed") == 1
    assert seen.count("store.located") == 2 and seen.count("store.skipped") == 1
    assert seen.count("erasure.planned") == 2 and seen.count("erasure.verified") == 2
    assert seen.index("approval.decided") < seen.index("erasure.batch")
    batches = [e for e in events(rid) if e.kind == "erasure.batch"]
    assert sum(e.counts["affected"] for e in batches) == 7
    assert all(len(e.detail["keys_digest"]) == 64 for e in batches)
    located = next(e for e in events(rid) if e.kind == "store.located" and e.connector == "crm")
    assert located.counts == {"customers": 1, "orders": 3, "invoices": 1}
    text = ledger_text(rid)
    assert "robin" not in text and "quill lane" not in text and "sam birch" not in text


def test_closing_forgets_keys_identities_and_plans(
    prefect_server: None, configure: Configure
) -> None:
    configure(auto_approve=True)
    rid = erasure()
    subject_request(request_id=rid)

    ctx = request_context()
    with ctx.ledger.engine.connect() as conn:
        rows = conn.execute(
            select(request_progress).where(request_progress.c.request_id == rid)
        ).all()
        run = conn.execute(select(request_runs).where(request_runs.c.request_id == rid)).one()
    assert len(rows) == 3
    for row in rows:
        assert row.findings is None and row.plan is None and row.derived_ciphertext is None
    assert {r.store: r.phase for r in rows} == {
        "crm": "verified",
        "shop": "verified",
        "files": "skipped",
    }
    assert run.completion_claimed_at is not None and run.approval_source == "policy:auto-approve"


def test_legal_hold_defers_and_completes_with_deferrals(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure(auto_approve=True, hold=True)
    rid = erasure()

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed" and outcome.exit_code == 4
    [deferral] = outcome.deferrals
    assert (deferral.store, deferral.target, deferral.count) == ("shop", "wishlists", 1)
    assert deferral.reason == "Litigation hold: wishlist dispute" and deferral.until == "2099-12-31"
    assert store_rows(isolated_settings, "shop")["wishlists"] == [
        {"id": 40, "customer_id": 1, "items": "quills"}
    ]
    [deferred] = [e for e in events(rid) if e.kind == "erasure.deferred"]
    assert deferred.status == "deferred" and deferred.target == "wishlists"
    assert deferred.detail == {"reason": "Litigation hold: wishlist dispute", "until": "2099-12-31"}
    verified = next(
        e for e in events(rid) if e.kind == "erasure.verified" and e.connector == "shop"
    )
    assert verified.counts["deferred"] == 1 and verified.counts["remaining"] == 0


def test_unknown_subject_completes_with_nothing_found(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure(auto_approve=False)  # nothing to approve: no pause either
    before = {s: store_rows(isolated_settings, s) for s in ("crm", "shop")}
    rid = erasure("nobody@example.com")

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed" and outcome.exit_code == 0
    assert all(s.found == 0 for s in outcome.stores)
    assert {s: store_rows(isolated_settings, s) for s in ("crm", "shop")} == before
    seen = kinds(rid)
    assert seen.count("request.nothing_found") == 1 and seen.count("request.completed") == 1
    assert not {"erasure.planned", "erasure.batch", "approval.decided"} & set(seen)
    nothing = next(e for e in events(rid) if e.kind == "request.nothing_found")
    assert nothing.detail == {"searched": ["crm", "shop"], "skipped": ["files"]}


def test_failing_store_is_reported_with_what_was_done_then_resumes(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure(auto_approve=True)
    set_failure(isolated_settings, "shop", "execute", "disk full")
    rid = erasure()

    with pytest.raises(TerminalError, match="store 'shop': disk full"):
        subject_request(request_id=rid)

    ctx = request_context()
    assert ctx.register.get(rid).status is RequestStatus.FAILED
    [failed] = [e for e in events(rid) if e.kind == "request.failed"]
    assert failed.connector == "shop" and failed.detail["error"] == "TerminalError"
    assert failed.detail["done_before"] == [{"store": "crm", "phase": "executed"}]
    assert [c["id"] for c in store_rows(isolated_settings, "crm")["customers"]] == [2]
    assert len(store_rows(isolated_settings, "shop")["carts"]) == 2  # untouched
    assert "request.completed" not in kinds(rid)
    report = _latest_markdown("request-failure")
    assert "**Failing store:** shop" in report and "disk full" in report
    assert "| crm | executed |" in report
    assert f"lifecycle request submit --resume {rid}" in report

    set_failure(isolated_settings, "shop", "execute", None)
    outcome = subject_request(request_id=rid)  # the same request id resumes

    assert outcome.status == "completed"
    assert [c["id"] for c in store_rows(isolated_settings, "shop")["carts"]] == [31]
    seen = kinds(rid)
    assert seen.count("request.completed") == 1
    assert seen.count("erasure.executed") == 2  # crm audited once, shop once
    digests = Counter(
        (e.connector, e.target, e.detail["keys_digest"])
        for e in events(rid)
        if e.kind == "erasure.batch"
    )
    assert digests and max(digests.values()) == 1


def test_a_completed_request_is_not_run_again(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure(auto_approve=True)
    rid = erasure()
    subject_request(request_id=rid)
    seed_stores(isolated_settings)  # the subject's data reappears (e.g. restored backup)
    before = kinds(rid)

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed"
    assert kinds(rid) == before  # no second search, erasure or completion
    assert len(store_rows(isolated_settings, "crm")["customers"]) == 2


def test_bystander_erasure_leaves_the_subject_alone(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure(auto_approve=True)
    subject_request(request_id=erasure(OTHER_EMAIL))
    crm = store_rows(isolated_settings, "crm")
    assert [c["id"] for c in crm["customers"]] == [1]
    assert [o["id"] for o in crm["orders"]] == [10, 11, 12]


def _latest_markdown(key: str) -> str:
    """The newest artifact under ``key`` as the Prefect UI shows it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no artifact {key}"
    return str(found[0].data)
