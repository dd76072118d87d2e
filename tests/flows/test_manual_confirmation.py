"""A manual processor through the subject-request flow: the run asks an operator.

One request spans the demo CRM (SQLite), the demo S3 store and ``mailer``, a processor in
``mode: manual``. The CRM and S3 work is done by the flow; the mailer's is done by an
operator, who answers the paused run's form (a background thread here): confirmed with
the provider's reference (the request completes, the reference is in the mailer's
``erasure.batch``), declined or unanswered (the request fails naming the store, nothing
recorded as done there). A crash after the answer is recorded asks nothing again and
audits nothing twice. Without a Prefect server the run stops saying how to confirm from
the CLI, and ``lifecycle request confirm`` carries it.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest
import yaml
from typer.testing import CliRunner

from config.settings import PROJECT_ROOT, get_settings
from demo.s3_server import LocalS3
from demo.seed_s3 import seed_s3
from demo.seed_sql import DemoData, seed_crm
from engine.intake import submit
from engine.request_support import request_context
from flows import confirmation_wait
from flows import subject_request as flow_module
from flows.subject_request import ConfirmationNeeded, RequestFailed, subject_request
from state.register import RequestStatus
from tests.flows.support import REQUESTER, answering_pauses, events

pytestmark = pytest.mark.slow  # whole flows against a temporary Prefect server

CUSTOMERS = 12
STORE = "mailer"
REFERENCE = "EM-TICKET-4711"
OPERATOR = "Ops Operator"
NEEDLES = ("@example.com", "demo.subject")


def _mailer() -> dict[str, Any]:
    return {
        "name": STORE,
        "type": "processor",
        "mode": "manual",
        "description": "Newsletter provider, asked by hand",
        "provider": "Example Mail",
        "purpose": "newsletter delivery",
        "region": "eu-west-1",
        "categories": ["contact"],
        "agreement": {"reference": "DPA-TEST-1", "expires": "2030-12-31"},
        "identities": ["email"],
        "fields": [{"name": "email", "category": "contact", "identity": "email"}],
    }


@pytest.fixture
def world(
    prefect_server: None,
    isolated_settings: Path,
    local_s3: LocalS3,
    monkeypatch: pytest.MonkeyPatch,
) -> DemoData:
    """The demo CRM and S3 seeded; the demo inventory with ``mailer`` as its processor."""
    data = seed_crm(f"sqlite:///{isolated_settings / 'crm.db'}", customers=CUSTOMERS)
    seed_s3(
        local_s3.client(),
        customer_ids=range(1, CUSTOMERS + 1),
        subject_customer_id=data.subject.customer_id,
        region=local_s3.region,
    )
    folder = isolated_settings.parent / "config"
    shutil.copytree(PROJECT_ROOT / "config" / "demo", folder)
    inventory = yaml.safe_load((folder / "inventory.yaml").read_text())
    stores = [s for s in inventory["stores"] if s["type"] != "processor"]
    inventory["stores"] = [*stores, _mailer()]
    (folder / "inventory.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
    get_settings.cache_clear()
    monkeypatch.setattr(confirmation_wait, "CONFIRMATION_POLL_SECONDS", 1)
    return data


def _request(data: DemoData, kind: str = "erasure", **extra: Any) -> str:
    identity = {"email": data.subject.email.lower()}
    return submit(
        request_context(), kind=kind, identity=identity, requested_by=REQUESTER, **extra
    ).id


def _operator(*answers: dict[str, Any], request_id: str) -> Any:
    return answering_pauses(lambda n, _run: answers[n], len(answers), request_id=request_id)


def _of(rid: str, kind: str, store: str | None = STORE) -> list[Any]:
    return [e for e in events(rid) if e.kind == kind and (store is None or e.connector == store)]


def _keys(run_id: UUID) -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return sorted(client.read_flow_run(run_id).empirical_policy.pause_keys or ())


def _run_input(run_id: UUID, key: str, part: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run_input(run_id, f"paused-{key}-{part}")


def _assert_no_identity(rid: str) -> None:
    ledger = json.dumps([vars(e) for e in events(rid)], default=str).lower()
    assert not [n for n in NEEDLES if n in ledger]


def _customer_rows(data: DemoData) -> int:
    from sqlalchemy import func, select

    from core.engines import make_engine
    from demo.crm_schema import crm_metadata

    customers = crm_metadata().tables["customers"]
    engine = make_engine(f"sqlite:///{Path(get_settings().data_dir) / 'crm.db'}")
    try:
        with engine.connect() as conn:
            query = select(func.count()).where(customers.c.id == data.subject.customer_id)
            return int(conn.scalar(query) or 0)
    finally:
        engine.dispose()


def test_an_operator_confirms_the_erasure_with_the_providers_reference(world: DemoData) -> None:
    from prefect.exceptions import PrefectHTTPStatusError

    rid = _request(world)
    answer = {"confirmed": True, "reference": REFERENCE, "reviewer": OPERATOR, "note": "done"}
    with _operator(answer, request_id=rid) as resumed:
        outcome = subject_request(request_id=rid)

    assert len(resumed) == 1 and outcome.status == "completed"
    assert _customer_rows(world) == 0
    [mailer] = [s for s in outcome.stores if s.store == STORE]
    assert (mailer.found, mailer.affected, mailer.remaining) == (1, 1, 0)
    [batch] = _of(rid, "erasure.batch")
    assert batch.detail["reference"] == REFERENCE and batch.counts == {"affected": 1}
    assert len(_of(rid, "erasure.executed")) == 1
    [recorded] = _of(rid, "confirmation.recorded")
    assert recorded.actor == OPERATOR and recorded.detail["reference"] == REFERENCE
    assert recorded.detail["source"] == "ui" and "note_sha256" in recorded.detail
    assert "done" not in json.dumps(recorded.detail)  # the note only as its digest
    kinds = [e.kind for e in events(rid)]
    assert Counter(kinds)["request.completed"] == 1 and "request.failed" not in kinds
    [progress] = request_context().progress.batches(rid, STORE)
    assert progress.reference == REFERENCE

    [key] = _keys(resumed[0])
    description = _run_input(resumed[0], key, "description")
    assert "mailer" in description and "Example Mail" in description
    assert "1 item(s)" in description and "erasure" in description
    assert "7 days" in description and "as if declined" in description
    assert f"lifecycle request identity {rid} --store mailer" in description
    assert f"lifecycle request confirm {rid} --store mailer" in description
    assert not [n for n in NEEDLES if n in description.lower()]
    with pytest.raises(PrefectHTTPStatusError):  # recorded, then deleted from Prefect
        _run_input(resumed[0], key, "response")
    _assert_no_identity(rid)


def test_a_declined_erasure_fails_the_request_naming_the_store(world: DemoData) -> None:
    rid = _request(world)
    answer = {"confirmed": False, "reviewer": OPERATOR}
    with _operator(answer, request_id=rid), pytest.raises(RequestFailed) as failed:
        subject_request(request_id=rid)

    assert "store 'mailer'" in failed.value.message and "declined" in failed.value.message
    assert request_context().register.get(rid).status is RequestStatus.FAILED
    assert not _of(rid, "erasure.batch") and not _of(rid, "erasure.executed")
    assert request_context().progress.batches(rid, STORE) == []
    assert request_context().progress.intents(rid, STORE) == []  # discarded
    [declined] = _of(rid, "confirmation.declined")
    assert declined.detail["outcome"] == "declined"
    [failure] = _of(rid, "request.failed")
    assert "declined" in failure.detail["message"]
    assert {e.connector for e in _of(rid, "erasure.executed", None)} == {"crm", "files"}
    assert _customer_rows(world) == 0  # the CRM's work stands, as recorded
    _assert_no_identity(rid)


def test_an_unanswered_confirmation_times_out_as_declined(
    world: DemoData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(confirmation_wait, "CONFIRMATION_TIMEOUT_SECONDS", 2)
    rid = _request(world)
    with pytest.raises(RequestFailed, match="nobody confirmed it in time"):
        subject_request(request_id=rid)

    [declined] = _of(rid, "confirmation.declined")
    assert declined.detail["outcome"] == "timed out"
    assert not _of(rid, "erasure.batch")


def test_a_refused_answer_is_asked_again_under_a_new_key(world: DemoData) -> None:
    rid = _request(world)
    answers = (
        {"confirmed": True, "reference": "", "reviewer": OPERATOR},  # no reference
        {"confirmed": True, "reference": "bad reference!", "reviewer": OPERATOR},
        {"confirmed": True, "reference": REFERENCE, "reviewer": OPERATOR},
    )
    with _operator(*answers, request_id=rid) as resumed:
        outcome = subject_request(request_id=rid)

    assert outcome.status == "completed" and len(resumed) == 3
    assert len(_keys(resumed[0])) == 3  # each question its own key
    problems = [e.detail["problem"] for e in _of(rid, "confirmation.refused")]
    assert problems[0].startswith("a confirmation needs the provider's reference")
    assert "a confirmation reference is a token" in problems[1]
    assert len(_of(rid, "erasure.batch")) == 1


@pytest.mark.parametrize("crash", ["before-audit", "before-forget"])
def test_a_rerun_after_the_answer_asks_nothing_and_audits_once(
    world: DemoData, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    """The answer is recorded, then the run dies (before auditing the batch, or before
    deleting the answer from Prefect): the rerun neither asks again nor audits twice."""
    from tasks import confirmation_tasks

    def die(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("killed")

    owner: ModuleType = confirmation_tasks
    name = "audit_batches"
    if crash == "before-forget":
        owner, name = flow_module, "forget_confirmation"
    rid = _request(world)
    answer = {"confirmed": True, "reference": REFERENCE, "reviewer": OPERATOR}
    with (
        pytest.MonkeyPatch.context() as dying,
        _operator(answer, request_id=rid),
        pytest.raises(Exception, match=r"killed|failed"),
    ):
        dying.setattr(owner, name, die)
        subject_request(request_id=rid)
    monkeypatch.setattr(confirmation_wait, "CONFIRMATION_TIMEOUT_SECONDS", 3)  # never hang

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed"
    assert len(_of(rid, "confirmation.recorded")) == 1
    [batch] = _of(rid, "erasure.batch")
    assert batch.detail["reference"] == REFERENCE
    assert len(_of(rid, "erasure.executed")) == 1
    assert not _of(rid, "confirmation.declined")  # not asked again (it would time out)


def test_a_rectification_at_the_provider_is_confirmed(world: DemoData) -> None:
    rid = _request(world, "rectification", changes={"mailer.email": "renamed@example.com"})
    answer = {"confirmed": True, "reference": REFERENCE, "reviewer": OPERATOR}
    with _operator(answer, request_id=rid) as resumed:
        outcome = subject_request(request_id=rid)

    assert len(resumed) == 1 and outcome.status == "completed"
    [batch] = _of(rid, "rectification.batch")
    assert batch.detail["reference"] == REFERENCE and batch.counts == {"affected": 1}
    [recorded] = _of(rid, "confirmation.recorded")
    assert recorded.detail["action"] == "rectification"
    [key] = _keys(resumed[0])
    description = _run_input(resumed[0], key, "description")
    assert "rectification" in description and "renamed" not in description
    _assert_no_identity(rid)


def test_without_a_server_the_cli_confirms_and_the_resume_completes(
    world: DemoData, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import app

    monkeypatch.setattr(flow_module, "_reviewer_reachable", lambda: False)
    rid = _request(world)
    with pytest.raises(ConfirmationNeeded) as needed:
        subject_request(request_id=rid)
    assert f"lifecycle request confirm {rid} --store mailer" in needed.value.message
    assert not _of(rid, "request.failed")  # waiting is no failure

    runner = CliRunner()
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # no run to hand over to
    shown = runner.invoke(app, ["request", "identity", rid, "--store", STORE])
    assert shown.exit_code == 0, shown.output
    assert f"email: {world.subject.email.lower()}" in shown.output
    refused = runner.invoke(
        app, ["request", "confirm", rid, "--store", STORE, "--reviewer", OPERATOR,
              "--reference", "not a token"],
    )  # fmt: skip
    assert refused.exit_code == 2
    args = ["request", "confirm", rid, "--store", STORE, "--reviewer", OPERATOR]
    confirmed = runner.invoke(app, [*args, "--reference", REFERENCE])
    assert confirmed.exit_code == 0, confirmed.output
    again = runner.invoke(app, [*args, "--reference", REFERENCE])
    assert again.exit_code == 1  # nothing awaits any more

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed"
    [batch] = _of(rid, "erasure.batch")
    assert batch.detail["reference"] == REFERENCE
    [recorded] = _of(rid, "confirmation.recorded")
    assert recorded.detail["source"] == "cli"
    [disclosed] = _of(rid, "identity.disclosed")
    assert disclosed.detail["kinds"] == ["email"]
    _assert_no_identity(rid)
