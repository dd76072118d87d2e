"""Batches of requests: each line its own request, one run for all, approvals per request.

On fake stores (``tests.flows.fakes``, which locate one subject at a time: the batch falls
back to each request's own locate) the approval paths; on the demo CRM with the real SQL
connector (set-based locate) the erasure of many subjects at once, with refused lines
reported by number and bystanders untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from cli.main import app
from core.engines import make_engine
from demo.crm_schema import crm_metadata
from demo.s3_server import LocalS3
from demo.seed_sql import DemoData, seed_crm
from engine.request_support import request_context
from state.batches import RequestBatches
from state.register import RequestStatus
from tests.flows.support import (
    OTHER_EMAIL,
    REQUESTER,
    SUBJECT_EMAIL,
    key_file,
    kinds,
    set_failure,
    store_rows,
)

Configure = Callable[..., Path]
CUSTOMERS = 60


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    yield


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["request", *args], env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _members(batch_id: str) -> list[str]:
    return [m.request_id for m in RequestBatches(request_context().ledger.engine).members(batch_id)]


def test_batch_waits_for_approval_then_one_decision_per_request(
    prefect_server: None, configure: Configure, isolated_settings: Path, tmp_path: Path
) -> None:
    configure(auto_approve=False)
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        json.dumps({"kind": "erasure", "identity": {"email": SUBJECT_EMAIL}})
        + "\n"
        + json.dumps({"kind": "erasure", "identity": {"email": OTHER_EMAIL}})
        + "\n"
    )

    code, out, err = invoke("submit", "--batch", str(batch), "--requested-by", REQUESTER, "--json")

    assert code == 1, err  # nothing completed: both await a decision
    payload = json.loads(out)
    batch_id = payload["batch_id"]
    assert [i["status"] for i in payload["items"]] == ["awaiting_approval"] * 2
    assert store_rows(isolated_settings, "crm")["customers"]  # nothing erased yet
    rids = _members(batch_id)
    assert len(rids) == 2

    # The requester may not approve their own requests: refused per request, recorded.
    keys = tmp_path / "keys"
    code, out, err = invoke(
        "submit",
        "--resume-batch",
        batch_id,
        "--approve",
        "--reviewer",
        "privacy-officer",
        "--signing-key",
        str(key_file(keys, "intruder")),
    )
    assert code != 0
    assert all(
        request_context().register.get(r).status is RequestStatus.AWAITING_APPROVAL for r in rids
    )

    code, out, err = invoke(
        "submit",
        "--resume-batch",
        batch_id,
        "--approve",
        "--reviewer",
        "privacy-officer",
        "--signing-key",
        str(key_file(keys, "privacy-officer")),
        "--json",
    )

    assert code == 0, err
    assert [i["status"] for i in json.loads(out)["items"]] == ["completed", "completed"]
    assert "2 request(s) approved by privacy-officer" in err
    for rid in rids:
        seen = kinds(rid)
        assert seen.count("approval.decided") == 1 and seen.count("request.completed") == 1
    crm = store_rows(isolated_settings, "crm")
    assert crm["customers"] == []  # both subjects erased, each by its own request
    text = (out + err).lower()
    assert SUBJECT_EMAIL.lower() not in text and OTHER_EMAIL not in text


def test_batch_registered_without_running_then_run_by_its_id(
    prefect_server: None, configure: Configure, isolated_settings: Path, tmp_path: Path
) -> None:
    from flows.subject_batch import subject_batch

    configure(auto_approve=True)
    batch = tmp_path / "batch.csv"
    batch.write_text(f"kind,identity\nerasure,email={SUBJECT_EMAIL}\n")

    code, out, err = invoke("submit", "--batch", str(batch), "--no-run", "--json")

    assert code == 0, err
    batch_id = json.loads(out)["batch_id"]
    assert "--resume-batch " + batch_id in out
    (rid,) = _members(batch_id)
    assert request_context().register.get(rid).status is RequestStatus.RECEIVED
    assert len(store_rows(isolated_settings, "crm")["customers"]) == 2

    outcome = subject_batch(batch_id=batch_id)  # as the deployment runs it: the id only

    assert [(i.request_id, i.status) for i in outcome.items] == [(rid, "completed")]
    assert outcome.exit_code == 0
    trail = kinds(rid)
    assert trail.count("request.completed") == 1 and "erasure.batch" in trail
    again = subject_batch(batch_id=batch_id)  # a rerun repeats nothing
    assert [i.status for i in again.items] == ["completed"]
    assert kinds(rid) == trail


def test_a_failing_store_fails_each_request_alone_and_a_rerun_finishes_them(
    prefect_server: None, configure: Configure, isolated_settings: Path, tmp_path: Path
) -> None:
    configure(auto_approve=True)
    batch = tmp_path / "batch.csv"
    batch.write_text(f"kind,identity\nerasure,email={SUBJECT_EMAIL}\nerasure,email={OTHER_EMAIL}\n")
    set_failure(isolated_settings, "shop", "execute", "disk full")

    code, out, err = invoke("submit", "--batch", str(batch), "--json")

    assert code == 1
    payload = json.loads(out)
    assert [i["status"] for i in payload["items"]] == ["failed", "failed"]
    assert all(i["error"] for i in payload["items"])  # why, per request
    for item in payload["items"]:
        assert kinds(item["request_id"]).count("request.failed") == 1

    set_failure(isolated_settings, "shop", "execute", None)
    code, out, err = invoke("submit", "--resume-batch", payload["batch_id"], "--json")

    assert code == 0, err
    assert [i["status"] for i in json.loads(out)["items"]] == ["completed", "completed"]
    for item in payload["items"]:
        trail = kinds(item["request_id"])
        assert trail.count("request.completed") == 1 and trail.count("request.failed") == 1
    assert store_rows(isolated_settings, "shop")["carts"] == []


def test_batch_usage_errors_change_nothing(
    prefect_server: None, configure: Configure, tmp_path: Path
) -> None:
    configure(auto_approve=True)
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,who\nerasure,x\n")
    assert invoke("submit", "--batch", str(bad))[0] == 2
    assert invoke("submit", "--batch", str(tmp_path / "missing.csv"))[0] == 2
    code, _, err = invoke("submit", "--batch", str(bad), "--kind", "erasure")
    assert code == 2 and "--batch" in err
    code, _, err = invoke("submit", "--resume-batch", "bat_0000000000000000")
    assert code != 0 and "no batch" in err
    assert request_context().register.list() == []


@pytest.fixture
def crm(isolated_settings: Path, prefect_server: None, local_s3: LocalS3) -> tuple[str, DemoData]:
    """The demo CRM at the demo inventory's SQLite URL, with the demo policy."""
    url = f"sqlite:///{isolated_settings / 'crm.db'}"
    return url, seed_crm(url, customers=CUSTOMERS)


def _customers(url: str) -> dict[int, str]:
    table = crm_metadata().tables["customers"]
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(table.c.id, table.c.email)).all()
    engine.dispose()
    return {int(r.id): str(r.email) for r in rows}


def _count(url: str, table_name: str) -> int:
    table = crm_metadata().tables[table_name]
    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.scalar(select(func.count()).select_from(table))
    engine.dispose()
    return int(n or 0)


def test_batch_erases_many_subjects_located_together(
    crm: tuple[str, DemoData], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.sql.connector import SqlConnector

    url, data = crm
    customers = _customers(url)
    keep = {data.subject.customer_id, data.second.customer_id}
    chosen = [cid for cid in sorted(customers) if cid not in keep][:12]
    calls: list[int] = []
    original = SqlConnector.locate_many

    def counting(self: SqlConnector, subjects: object) -> object:
        calls.append(len(subjects))  # type: ignore[arg-type]
        return original(self, subjects)  # type: ignore[arg-type]

    monkeypatch.setattr(SqlConnector, "locate_many", counting)
    lines = ["kind,identity,requested_by"]
    lines += [f"erasure,email={customers[cid]},help-desk" for cid in chosen]
    lines.append("erasure,email=not-an-address,help-desk")  # line 14: refused
    lines.append(f"erasure,email={customers[chosen[1]].upper()},help-desk")  # line 15: repeat
    lines.append(f"rectification,email={customers[chosen[0]]},help-desk")  # line 16: no changes
    batch = tmp_path / "batch.csv"
    batch.write_text("\n".join(lines) + "\n")
    invoices = _count(url, "invoices")

    code, out, err = invoke("submit", "--batch", str(batch), "--json")

    assert code == 2, err  # three lines refused; the twelve others carried out
    payload = json.loads(out)
    assert [i["status"] for i in payload["items"]] == ["completed"] * 12
    assert [i["line"] for i in payload["items"]] == list(range(2, 14))
    assert "line 14: identity 'email'" in err
    assert "line 15: same kind and identity as line 3" in err
    assert "line 16:" in err and "corrections" in err
    assert calls and max(calls) == 12  # the CRM's subjects located in one call
    after = _customers(url)
    assert not set(chosen) & set(after)
    assert set(after) == set(customers) - set(chosen)  # every other customer is still there
    assert _count(url, "invoices") == invoices  # invoices are masked, never deleted
    for item in payload["items"]:
        seen = kinds(item["request_id"])
        assert seen.count("request.completed") == 1
        assert request_context().register.get(item["request_id"]).identity_destroyed
    text = (out + err).lower()
    assert not any(customers[cid].lower() in text for cid in chosen)
