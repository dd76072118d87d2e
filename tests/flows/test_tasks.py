"""Task conventions: retry only transient errors, clean errors, and counts-only artifacts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from core.errors import TerminalError, TransientError
from engine.intake import submit
from engine.request_summary import artifact_key
from engine.request_support import clean_errors, request_context
from flows.subject_request import subject_request
from tasks.lifecycle_task import lifecycle_task
from tests.flows.support import REQUESTER, SUBJECT_EMAIL

Configure = Callable[..., Path]


def test_only_transient_errors_are_retried(prefect_server: None) -> None:
    calls: list[str] = []

    @lifecycle_task("flaky")
    def flaky(kind: str) -> int:
        calls.append(kind)
        if kind == "terminal":
            raise TerminalError("store 'crm': refused")
        if calls.count(kind) < 3:
            raise TransientError("store 'crm': lock timeout")
        return calls.count(kind)

    quick = flaky.with_options(retry_delay_seconds=0)

    @flow(persist_result=False)
    def run(kind: str) -> int:
        return quick(kind)

    assert run("transient") == 3  # two retries, then success
    with pytest.raises(TerminalError):
        run("terminal")
    assert calls.count("terminal") == 1


def test_clean_errors_drop_causes_and_foreign_messages() -> None:
    with pytest.raises(TerminalError) as caught, clean_errors("locating in store 'crm'"):
        raise ValueError("duplicate key robin.quill@example.com")
    assert str(caught.value) == "locating in store 'crm' failed (ValueError)"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

    with pytest.raises(TransientError) as kept, clean_errors("x"):
        try:
            raise OSError("parameters: robin.quill@example.com")
        except OSError as e:
            raise TransientError("store 'crm': connection lost") from e
    assert kept.value.__cause__ is None and kept.value.__suppress_context__


def test_the_flow_publishes_counts_only_artifacts(
    prefect_server: None, configure: Configure
) -> None:
    configure(auto_approve=True, hold=True)
    rid = submit(
        request_context(), kind="erasure", identity={"email": SUBJECT_EMAIL}, requested_by=REQUESTER
    ).id
    subject_request(request_id=rid)

    keys = [artifact_key(rid, "summary"), artifact_key(rid, "steps")]
    assert all(k.replace("-", "").isalnum() and k == k.lower() for k in keys)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == set(keys)
    markdown = str(by_key[keys[0]].data)
    assert "**Status:** completed" in markdown and "| crm | verified | 5 | 5 |" in markdown
    assert "shop.wishlists: 1 (Litigation hold: wishlist dispute until 2099-12-31)" in markdown
    table = by_key[keys[1]].data
    assert isinstance(table, str)  # Prefect stores table artifacts as JSON text
    rows = json.loads(table)
    by_table = {(r["store"], r["table"]): r for r in rows}  # the per-table outcome
    assert by_table[("shop", "wishlists")] | {"phase": None} == {
        "store": "shop",
        "table": "wishlists",
        "phase": None,
        "found": 1,
        "deleted": 0,
        "masked": 0,
        "kept": 0,
        "deferred": 1,
        "left": 0,
        "why": "deferred: Litigation hold: wishlist dispute until 2099-12-31",
    }
    assert by_table[("crm", "invoices")]["masked"] == 1
    assert by_table[("files", "*")]["why"] == "no connector for store type 's3' yet"
    assert "| crm | invoices |" in markdown  # the markdown's per-table section
    assert "quill" not in (markdown + json.dumps(rows)).lower()
