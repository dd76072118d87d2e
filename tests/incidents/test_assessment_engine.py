"""The incident assessment engine end to end on SQLite: counts, risk, deadlines, package.

``engine.incident_assessment`` without Prefect: a declared breach over the shop
(``tests.incidents.conftest``) is counted by the SQL store's connector, its encryption at
rest read from the store's posture facts (the inventory's ``encryption_at_rest``), judged
by the policy's risk rules and recorded with its notifications. Expected counts come from
the seeded rows; no seeded address may reach the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.loader import load_config
from core.errors import InvalidInput, TerminalError
from core.package import PassphraseRecipient, read_package
from engine.incident_assessment import (
    AssessmentOutcome,
    StoreConnectors,
    assess_incident,
    subjects_package,
)
from incidents.rules import EXEMPT, NOT_REQUIRED, REQUIRED
from incidents.scope import IncidentScope, ScopePart, TimeWindow
from tests.incidents.conftest import ACTOR, WINDOW, Shop, declared, email, ledger_text, register

ORDERS_IN_WINDOW = ScopePart(
    store="shop", table="orders", window=TimeWindow(start=WINDOW[0], end=WINDOW[1])
)
CUSTOMER_EMAILS = ScopePart(store="shop", table="customers", columns=("email",))


def assess(incident_id: str) -> AssessmentOutcome:
    config = load_config()
    with StoreConnectors(config, keyring_from_settings()) as connectors:
        return assess_incident(config, register(), incident_id, actor=ACTOR, connectors=connectors)


def test_a_windowed_table_part_is_counted_judged_and_recorded(shop: Shop) -> None:
    incident = declared(ORDERS_IN_WINDOW)
    outcome = assess(incident.id)
    a = outcome.assessment

    window_customers = shop.window_customers()
    assert (a.records, a.subjects) == (len(shop.window_orders()), len(window_customers))
    assert (a.records, a.subjects) == (10, 10)  # the fixture's arithmetic, stated once
    (part,) = a.parts
    assert (part.label, part.identity, part.region) == (
        "shop.orders",
        "customer_id",
        "eu-central-1",
    )
    assert a.categories == ("payment",) and a.high_risk_categories == ("payment",)
    tenants = [shop.tenants[c] for c in window_customers]
    assert dict(a.clients) == {t: tenants.count(t) for t in set(tenants)}
    assert part.at_rest.encrypted is None  # SQLite reports nothing, nothing declared
    assert not a.unintelligible
    assert (a.risk, a.reasons) == ("high", ("data of a high-risk category was affected",))

    aware = incident.aware_at
    assert aware is not None
    due = {n.audience: n for n in outcome.notifications}
    assert due["authority"].status == REQUIRED
    assert due["authority"].due_at == aware + timedelta(hours=72)
    assert due["subjects"].status == REQUIRED
    assert due["subjects"].due_at == outcome.assessed_at + timedelta(hours=72)
    assert due["client:acme"].due_at == aware + timedelta(hours=24)  # its contract
    assert due["client:globex"].due_at == aware + timedelta(hours=48)  # the default terms

    recorded = register().get(incident.id)
    assert recorded.risk == "high" and recorded.assessment == a
    stored = {n.audience: n for n in register().notifications(incident.id)}
    assert set(stored) == set(due)
    assert stored["authority"].due_at == aware + timedelta(hours=72)
    assert all(stored[k].status == due[k].status for k in due)

    (event,) = Ledger.open().events(request_id=incident.id, kinds=["incident.assessed"])
    assert event.counts["records"] == 10 and event.counts["subjects"] == 10
    assert event.detail["risk"] == "high"
    assert not any(address in ledger_text(incident.id) for address in shop.emails)


def test_distinct_subjects_across_parts_are_a_union(shop: Shop) -> None:
    incident = declared(ORDERS_IN_WINDOW, CUSTOMER_EMAILS)
    a = assess(incident.id).assessment
    by_part = {p.label: (p.records, p.subjects) for p in a.parts}
    assert by_part == {"shop.orders": (10, 10), "shop.customers[email]": (20, 20)}
    assert a.records == 30
    assert a.subjects == 20  # the window's customers are among the 20, counted once
    assert a.categories == ("contact", "payment")


def test_encryption_at_rest_exempts_the_subject_notice(make_shop: Callable[..., Shop]) -> None:
    """The same breach on a store declared encrypted at rest with a key we hold: still high
    risk (the policy's rule), but no subject notice while the key is not compromised
    (Art. 34(3)(a)); a compromised key makes the data readable again."""
    shop = make_shop(encrypted=True)
    safe = assess(declared(ORDERS_IN_WINDOW, key_compromised=False).id)
    (part,) = safe.assessment.parts
    assert (part.at_rest.encrypted, part.at_rest.key_held_by) == (True, "us (LUKS, platform team)")
    assert safe.assessment.unintelligible and safe.assessment.risk == "high"
    due = {n.audience: n for n in safe.notifications}
    assert due["subjects"].status == EXEMPT and due["subjects"].due_at is None
    assert due["authority"].status == REQUIRED  # the authority is told either way

    leaked_key = assess(declared(ORDERS_IN_WINDOW, key_compromised=True).id)
    assert not leaked_key.assessment.unintelligible
    due = {n.audience: n for n in leaked_key.notifications}
    assert due["subjects"].status == REQUIRED
    assert due["subjects"].due_at == leaked_key.assessed_at + timedelta(hours=72)
    assert not any(address in ledger_text(safe.incident_id) for address in shop.emails)


def test_an_empty_window_is_low_risk_and_needs_no_notification(shop: Shop) -> None:
    before = ScopePart(
        store="shop",
        table="orders",
        window=TimeWindow(
            start=WINDOW[0] - timedelta(days=300), end=WINDOW[0] - timedelta(days=200)
        ),
    )
    outcome = assess(declared(before).id)
    assert (outcome.assessment.records, outcome.assessment.subjects) == (0, 0)
    assert outcome.assessment.risk == "low"
    assert {n.audience: n.status for n in outcome.notifications} == {
        "authority": NOT_REQUIRED,
        "subjects": NOT_REQUIRED,
    }


def test_only_a_declared_breach_with_an_accepted_scope_is_assessed(shop: Shop) -> None:
    reg = register()
    concern = reg.report(
        "Suspicious login alerts on the shop", reported_by="help-desk", actor=ACTOR
    )
    with pytest.raises(TerminalError, match="only a declared breach"):
        assess(concern.id)
    reg.declare(concern.id, kinds=["confidentiality"], actor=ACTOR)
    with pytest.raises(TerminalError, match="no scope"):
        assess(concern.id)
    undeclared = ScopePart(store="shop", table="invoices")
    reg.set_scope(concern.id, IncidentScope(parts=(undeclared,)), key_compromised=None, actor=ACTOR)
    with pytest.raises(InvalidInput, match="invoices"):
        assess(concern.id)
    assert register().get(concern.id).assessment is None
    assert not list(Ledger.open().events(request_id=concern.id, kinds=["incident.assessed"]))


def test_the_subjects_package_decrypts_to_exactly_the_affected_subjects(
    shop: Shop, tmp_path: Path
) -> None:
    incident = declared(ORDERS_IN_WINDOW)
    assess(incident.id)
    secret = b"correct horse battery staple"
    out = tmp_path / "packages"
    info = subjects_package(
        load_config(), register(), incident.id, PassphraseRecipient(secret), out, ACTOR
    )
    manifest, records = read_package(Path(info.location), secret)
    found = list(records)
    wanted = {email(c).lower() for c in shop.window_customers()}
    assert {str(r["data"]["email"]).lower() for r in found} == wanted
    assert len(found) == info.records == len(wanted)
    assert manifest["incident_id"] == incident.id

    (event,) = Ledger.open().events(request_id=incident.id, kinds=["incident.subjects-package"])
    assert event.detail == {"sha256": info.sha256}
    assert dict(event.counts) == {"subjects": len(wanted), "bytes": info.size}
    assert not any(address in ledger_text(incident.id) for address in shop.emails)


def test_a_package_needs_a_current_assessment(shop: Shop, tmp_path: Path) -> None:
    incident = declared(ORDERS_IN_WINDOW)
    recipient = PassphraseRecipient(b"another long passphrase")
    out = tmp_path / "packages"
    with pytest.raises(TerminalError, match="assess it first"):
        subjects_package(load_config(), register(), incident.id, recipient, out, ACTOR)
    assess(incident.id)
    register().set_scope(
        incident.id,
        IncidentScope(parts=(ORDERS_IN_WINDOW, CUSTOMER_EMAILS)),
        key_compromised=False,
        actor=ACTOR,
    )
    with pytest.raises(TerminalError, match="assess it first"):
        subjects_package(load_config(), register(), incident.id, recipient, out, ACTOR)
    assert not out.exists() or not list(out.iterdir())
