"""``demo.provider``: the demo's newsletter provider, its subscribers from the CRM, and what
``lifecycle demo`` reports of it (a signed erasure, confirmed late, by its reference)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli.demo_cmd import SUBMITTED_EMAIL, _provider_erasure
from config.loader import load_config
from connectors.base import Action
from connectors.processor.connector import ProcessorConnector
from core.keys import KeyRing
from demo.fake import EMAIL_DOMAIN
from demo.provider import (
    CONFIRM_AFTER_POLLS,
    ENDPOINT_ENV,
    LocalProvider,
    ping,
    provider_store,
    subscriber_records,
)
from demo.seed_sql import DEMO_PROFILE, SECOND_PROFILE, seed_crm
from engine.request_models import RequestOutcome, StoreOutcome

DEMO_DIR = Path(__file__).resolve().parents[2] / "config" / "demo"
CUSTOMERS = 30


@pytest.fixture
def crm_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    seed_crm(url, customers=CUSTOMERS)
    return url


def test_subscribers_come_from_the_crm(crm_url: str) -> None:
    records = subscriber_records(crm_url)
    emails = [r.identities["email"] for r in records]
    assert all(e == e.lower() and e.endswith("@" + EMAIL_DOMAIN) for e in emails)
    assert emails.count(DEMO_PROFILE.email.lower()) == 2  # newsletter and offers
    assert emails.count(SECOND_PROFILE.email.lower()) == 1
    others = set(emails) - {DEMO_PROFILE.email.lower(), SECOND_PROFILE.email.lower()}
    assert len(others) == 9  # ids 3, 6, ..., 30 but the demo subject's, 15
    assert len({r.ref for r in records}) == len(records)  # references are unique
    assert subscriber_records(crm_url)[0].ref == records[0].ref  # and stable


def test_the_demo_erasure_reaches_the_stub_signed_and_is_confirmed_late(
    crm_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(DEMO_DIR)
    store = provider_store(config)
    assert store is not None and store.name == "newsletter"
    # Not the session's empty stub (tests/conftest.py): the run's own variables, restored after.
    assert store.secret_env is not None
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    monkeypatch.delenv(store.secret_env, raising=False)
    with LocalProvider(store, subscriber_records(crm_url)) as provider:
        assert provider.held_for(SUBMITTED_EMAIL) == 2
        with provider.applied_env() as env:
            assert env[ENDPOINT_ENV] == provider.url
            assert store.secret_env is not None and os.environ[store.secret_env]
            # The flows load the configuration again: it now points at this stub.
            moved = provider_store(load_config(DEMO_DIR))
            assert moved is not None and moved.endpoint == provider.url
            connector = ProcessorConnector(
                moved, config.policy, keys=KeyRing.from_master(b"k" * 32), sleep=lambda _s: None
            )
            findings = connector.locate({"email": frozenset({SUBMITTED_EMAIL})})
            plan = connector.plan_erasure(findings, "2026-06-01")
            assert [(s.action, s.count) for s in plan.steps] == [(Action.DELETE, 2)]
            (batch,) = connector.execute(plan, on_batch=lambda _b: None)
            assert batch.affected == 2 and batch.reference == "REQ-0001"
            assert not ping(provider.url, "not-the-secret")  # unsigned for it: refused
        assert store.secret_env not in os.environ  # restored after the run
    (taken,) = provider.taken()
    assert (taken.kind, taken.records, taken.reference, taken.state, taken.polls) == (
        "erasures",
        2,
        "REQ-0001",
        "confirmed",
        CONFIRM_AFTER_POLLS,
    )
    assert provider.stub.rejected_signatures == 1  # the wrong-secret ping only
    assert provider.held_for(SUBMITTED_EMAIL) == 0

    outcome = RequestOutcome(
        request_id="req_1",
        kind="erasure",
        status="completed",
        stores=[StoreOutcome(store="newsletter", phase="verified", found=2, affected=2)],
    )
    assert _provider_erasure(provider, outcome) == (
        "provider Example Mail: 2 records erased by signed request "
        f"(REQ-0001 confirmed after {CONFIRM_AFTER_POLLS} status polls, every 0.5 s)"
    )


def test_each_run_signs_with_a_secret_of_its_own(crm_url: str) -> None:
    store = provider_store(load_config(DEMO_DIR))
    assert store is not None and store.secret_env is not None
    first, second = LocalProvider(store, []), LocalProvider(store, [])
    with first, second:
        a, b = first.env()[store.secret_env], second.env()[store.secret_env]
        assert a != b and len(a) >= 32
        assert ping(first.url, a) and not ping(first.url, b)
