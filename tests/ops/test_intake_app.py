"""The intake service in-process: the signed webhook, the basic-auth page, refusals.

Prefect is replaced by ``FakeRuns`` (what the service asked it for is what is checked);
``tests/flows/test_intake_prefect.py`` checks the real flow run. Every refusal must
leave the register and ledger empty and never echo a submitted value.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import Client as Http
from pydantic import BaseModel

from ops.intake.reference import get_reference
from ops.intake.signing import signed_headers
from tests.ops.intake_support import (
    EMAIL,
    SECRET,
    FakeRuns,
    basic,
    client,
    configure,
    context,
    erasure,
    post_signed,
)


@pytest.fixture(autouse=True)
def _config(isolated_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return configure(tmp_path, isolated_settings, monkeypatch)


@pytest.fixture
def runs() -> FakeRuns:
    return FakeRuns()


@pytest.fixture
def api(runs: FakeRuns) -> Iterator[Http]:
    with client(runs) as test_client:
        yield test_client


def _nothing_registered() -> None:
    ctx = context()
    assert ctx.register.list() == []
    assert list(ctx.ledger.events()) == []


# -- the webhook -------------------------------------------------------------------------------


def test_a_signed_webhook_registers_and_starts_a_run_with_the_request_id_only(
    api: Http, runs: FakeRuns
) -> None:
    response = post_signed(api, erasure(ticket="ZD-4711", requested_by="help-desk"))
    assert response.status_code == 201, response.text
    answer = response.json()
    assert set(answer) == {"request_id", "flow_run_id", "status"}
    assert answer["status"] == "received"
    assert EMAIL not in response.text
    assert runs.requested == [answer["request_id"]]  # the run gets the request id, no more

    ctx = context()
    record = ctx.register.get(answer["request_id"])
    assert (record.kind.value, record.requested_by) == ("erasure", "help-desk")
    assert ctx.register.open_identity(record.id) == {"email": EMAIL}  # sealed, as the CLI does
    assert get_reference(ctx.ledger.engine, record.id) == "ZD-4711"
    events = list(ctx.ledger.events(request_id=record.id))
    assert [(e.kind, e.actor) for e in events] == [("request.received", "help-desk")]
    assert EMAIL not in json.dumps([e.detail for e in events])


def _stale(api: Http) -> Any:
    return post_signed(api, erasure(), now=time.time() - 3600)


def _future(api: Http) -> Any:
    return post_signed(api, erasure(), now=time.time() + 3600)


def _forged(api: Http) -> Any:
    return post_signed(api, erasure(), secret=b"someone else's secret")


def _tampered(api: Http) -> Any:
    headers = signed_headers(SECRET, json.dumps(erasure()).encode())  # signed for one body,
    body = json.dumps(erasure(identity={"email": EMAIL.replace("robin", "sam")})).encode()
    return api.post("/webhook/requests", content=body, headers=headers)  # sent with another


def _unsigned(api: Http) -> Any:
    return api.post("/webhook/requests", json=erasure())


def _malformed(api: Http) -> Any:
    return post_signed(api, erasure(), headers={"X-Lifecycle-Timestamp": "yesterday"})


@pytest.mark.parametrize(
    ("send", "reason"),
    [
        (_stale, "stale"),
        (_future, "stale"),
        (_forged, "does not match"),
        (_tampered, "does not match"),
        (_unsigned, "missing"),
        (_malformed, "malformed"),
    ],
)
def test_a_bad_signature_is_refused_and_logged_without_the_body(
    api: Http,
    runs: FakeRuns,
    caplog: pytest.LogCaptureFixture,
    send: Any,
    reason: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="lifecycle.intake"):
        response = send(api)
    assert response.status_code == 401
    assert reason in response.json()["error"]
    assert runs.requested == []
    _nothing_registered()
    refusals = [r.getMessage() for r in caplog.records if "webhook refused" in r.getMessage()]
    assert len(refusals) == 1 and reason in refusals[0]
    assert "example.com" not in caplog.text


def test_a_repeated_delivery_is_registered_once(api: Http, runs: FakeRuns) -> None:
    body = json.dumps(erasure(ticket="ZD-1")).encode()
    headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
    first = api.post("/webhook/requests", content=body, headers=headers)
    again = api.post("/webhook/requests", content=body, headers=headers)
    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json()["request_id"] == first.json()["request_id"]
    assert len(context().register.list()) == 1
    assert len(runs.requested) == 1


def test_without_a_secret_the_webhook_is_closed(runs: FakeRuns) -> None:
    with client(runs, secret=None) as api:
        response = post_signed(api, erasure())
    assert response.status_code == 503
    _nothing_registered()


def test_an_oversized_body_is_refused_unread(api: Http) -> None:
    response = post_signed(api, erasure(note="x" * 70_000))
    assert response.status_code == 413
    _nothing_registered()


# -- refusals: fields named, values never echoed --------------------------------------------

_CASES: list[tuple[dict[str, Any], str]] = [
    (erasure(identity={"email": "robin.quill@@example.com"}), "identity.email"),
    (erasure(kind=EMAIL), "kind"),
    ({"kind": "erasure", "requested_by": "help-desk"}, "identity"),
    (erasure(identity={}), "identity"),
    (erasure(identity={"shoe_size": EMAIL}), "identity"),
    (erasure(note=f"the subject wrote from {EMAIL}"), "note"),
    (erasure(ticket="+44 20 7946 0000"), "ticket"),
    (erasure(ticket="call 020 7946 0000"), "ticket"),
    (erasure(requested_by=EMAIL), "requested_by"),
    (erasure(**{EMAIL: "yes"}), "(a key)"),
    (erasure(identity={EMAIL: "x"}), "identity.(a key)"),
    ({"kind": "rectification", "identity": {"email": EMAIL}}, "changes"),
    (
        {"kind": "rectification", "identity": {"email": EMAIL}, "changes": {"nope.col": EMAIL}},
        "changes",
    ),
    (
        {
            "kind": "rectification",
            "identity": {"email": EMAIL},
            "changes": {"customers.email": "not an address " + EMAIL},
        },
        "changes.customers.email",
    ),
    (erasure(changes={"customers.email": EMAIL}), "changes"),
    ({"kind": "access", "identity": {"email": EMAIL}}, "recipient_public_key"),
    (
        {"kind": "access", "identity": {"email": EMAIL}, "recipient_public_key": EMAIL},
        "recipient_public_key",
    ),
]


@pytest.mark.parametrize(("payload", "field"), _CASES)
def test_a_refusal_names_the_field_and_never_echoes_the_value(
    api: Http, runs: FakeRuns, payload: dict[str, Any], field: str
) -> None:
    response = post_signed(api, payload)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "request refused; nothing was registered"
    assert field in [p["field"] for p in answer["problems"]], answer
    assert all(p["message"] for p in answer["problems"])
    assert "example.com" not in response.text
    assert runs.requested == []
    _nothing_registered()


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_refused(api: Http, body: bytes) -> None:
    response = post_signed(api, body)
    assert response.status_code in (400, 422)
    assert response.json()["problems"][0]["field"] is None
    _nothing_registered()


class Probe(BaseModel):
    count: int


def probe(item: Probe) -> dict[str, int]:
    return {"count": item.count}


def test_fastapis_own_validation_errors_do_not_echo_the_input(api: Http) -> None:
    # A route with a declared body: FastAPI validates it itself.
    app: Any = getattr(api, "app")  # noqa: B009 (set by intake_support.client)
    app.add_api_route("/probe", probe, methods=["POST"])
    response = api.post("/probe", json={"count": EMAIL})
    assert response.status_code == 422
    assert "example.com" not in response.text
    assert response.json()["problems"][0]["field"] == "body.count"


def test_a_run_that_cannot_be_created_leaves_the_request_to_resume(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = FakeRuns(fail=True)
    with client(runs) as api, caplog.at_level(logging.ERROR, logger="lifecycle.intake"):
        response = post_signed(api, erasure())
    assert response.status_code == 201
    answer = response.json()
    assert answer["flow_run_id"] is None
    assert f"lifecycle request submit --resume {answer['request_id']}" in answer["problem"]
    ctx = context()
    assert ctx.register.get(answer["request_id"]).status.value == "received"
    [failed] = ctx.ledger.events(kinds=["request.intake_run_failed"])
    assert (failed.status.value, failed.detail) == ("failed", {"error": "ConnectionError"})
    assert "flow run not created" in caplog.text


# -- the page ------------------------------------------------------------------------------


def test_the_page_needs_the_servers_basic_auth(api: Http, runs: FakeRuns) -> None:
    assert api.get("/").status_code == 401
    assert api.get("/").headers["WWW-Authenticate"].startswith("Basic ")
    assert api.get("/", headers=basic("admin:wrong")).status_code == 401
    assert api.get("/", headers={"Authorization": "Bearer x"}).status_code == 401
    page = api.get("/", headers=basic())
    assert page.status_code == 200
    assert 'name="identity.email"' in page.text and 'name="identity.customer_number"' in page.text
    assert page.headers["Cache-Control"] == "no-store"

    form = {"kind": "erasure", "identity.email": EMAIL, "requested_by": "desk"}
    assert api.post("/requests", data=form).status_code == 401
    assert api.post("/requests", data=form, headers=basic("admin:wrong")).status_code == 401
    assert runs.requested == []
    _nothing_registered()


def test_the_page_form_registers(api: Http, runs: FakeRuns) -> None:
    form = {
        "kind": "erasure",
        "identity.email": EMAIL,
        "identity.customer_number": "",
        "changes": "",
        "requested_by": "desk-operator",
        "ticket": "FD-88",
        "note": "",
    }
    response = api.post("/requests", data=form, headers=basic())
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("text/html")
    [request_id] = runs.requested
    assert request_id in response.text
    assert EMAIL not in response.text
    ctx = context()
    assert ctx.register.get(request_id).requested_by == "desk-operator"
    assert get_reference(ctx.ledger.engine, request_id) == "FD-88"


def test_the_page_takes_json_too_and_refuses_naming_fields(api: Http) -> None:
    payload = erasure(identity={"email": "robin.quill@"}, requested_by="desk")
    response = api.post("/requests", json=payload, headers=basic())
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "identity.email"
    assert "robin.quill@" not in response.text
    _nothing_registered()


def test_a_refused_form_shows_the_field_not_the_value(api: Http) -> None:
    form = {"kind": "erasure", "identity.email": "robin.quill@@example.com", "requested_by": "d"}
    response = api.post("/requests", data=form, headers=basic())
    assert response.status_code == 422
    assert "identity.email" in response.text
    assert "example.com" not in response.text
    _nothing_registered()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example.com"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_a_cross_site_form_post_is_refused(
    api: Http, runs: FakeRuns, headers: dict[str, str]
) -> None:
    form = {"kind": "erasure", "identity.email": EMAIL, "requested_by": "desk"}
    response = api.post("/requests", data=form, headers=basic() | headers)
    assert response.status_code == 403
    assert runs.requested == []
    _nothing_registered()


def test_a_same_origin_form_post_is_accepted(api: Http, runs: FakeRuns) -> None:
    form = {"kind": "erasure", "identity.email": EMAIL, "requested_by": "desk"}
    same = {"Origin": str(api.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    response = api.post("/requests", data=form, headers=basic() | same)
    assert response.status_code == 201
    assert len(runs.requested) == 1
