"""The incident register (``state.incidents``) on SQLite, PostgreSQL and MariaDB.

Every step is one register change committed with its ledger event (the incident id as the
event's request id), a compare-and-set on the state read, so of two operators making
conflicting moves one wins and the other changes nothing. A breach closes only once every
required notification is sent or exempt and every corrective action is done or waived.
Free text holding personal data is refused before anything is written; the ledger keeps
its length and digest, never the text. Rules that do not depend on the backend run on
SQLite only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.schema.incidents import IncidentPolicy
from core.errors import InvalidInput, LifecycleError, NotFoundError, TerminalError, TransientError
from incidents.assessment import Assessment, AtRestFact, PartAssessment
from incidents.rules import EXEMPT, NOT_REQUIRED, REQUIRED, SENT, judge_risk, notifications
from incidents.scope import IncidentScope, ScopePart, TimeWindow
from state.incident_tables import incident_actions, incidents
from state.incidents import BREACH, CLOSED, DISMISSED, DONE, OPEN, TRIAGE, WAIVED, IncidentRegister

SUMMARY = "Backup copy of the CRM found on a file share open to all staff"
ACTOR = "ops-lead"
AWARE = datetime(2026, 3, 2, 8, 15, 30, 123456, tzinfo=UTC)
WINDOW = TimeWindow(
    start=datetime(2026, 3, 1, tzinfo=UTC), end=datetime(2026, 3, 2, tzinfo=UTC), column="seen_at"
)
SCOPE = IncidentScope(
    parts=(
        ScopePart(store="crm", table="login_events", window=WINDOW),
        ScopePart(store="files", bucket="demo-ticket-attachments", prefix="tickets/"),
    )
)
POLICY = IncidentPolicy(clients={"acme": 24})
Step = Callable[[IncidentRegister, str], object]


def open_register(url: str) -> IncidentRegister:
    return IncidentRegister(Ledger.open(url, keys=keyring_from_settings(), actor="tests"))


@pytest.fixture
def reg(db_url: str) -> Iterator[IncidentRegister]:
    register = open_register(db_url)
    yield register
    register._engine.dispose()


@pytest.fixture
def sqlite_reg(tmp_path: Path) -> Iterator[IncidentRegister]:
    """For rules that do not depend on the backend: SQLite only, to keep the suite fast."""
    register = open_register(f"sqlite:///{tmp_path / 'audit.db'}")
    yield register
    register._engine.dispose()


def assessment(*, subjects: int = 40, high: bool = False, clients: int = 0) -> Assessment:
    """An assessment of ``SCOPE`` judged by ``POLICY``'s (default) rules."""
    part = PartAssessment(
        label=SCOPE.parts[0].label,
        store="crm",
        records=subjects + 3,
        subjects=subjects,
        identity="customer_id",
        categories=("billing", "telemetry") if high else ("telemetry",),
        region="eu-central-1",
        clients={"acme": clients} if clients else {},
        at_rest=AtRestFact(encrypted=False, evidence="declared"),
    )
    empty = PartAssessment(
        label=SCOPE.parts[1].label,
        store="files",
        records=0,
        subjects=0,
        identity=None,
        categories=("support",),
        region="eu-central-1",
    )
    combined = Assessment(
        parts=(part, empty),
        records=part.records,
        subjects=subjects,
        subjects_by=("customer_id",),
        categories=part.categories,
        high_risk_categories=("billing",) if high else (),
        regions=("eu-central-1",),
        clients=dict(part.clients),
        key_compromised=False,
        unintelligible=False,
    )
    return judge_risk(POLICY, combined, ("confidentiality",))


def declared(register: IncidentRegister) -> str:
    iid = register.report(SUMMARY, reported_by="help-desk", actor=ACTOR).id
    register.declare(iid, kinds=["confidentiality"], actor=ACTOR, aware_at=AWARE)
    register.set_scope(iid, SCOPE, key_compromised=False, actor=ACTOR)
    return iid


def assessed(register: IncidentRegister, a: Assessment | None = None) -> str:
    iid = declared(register)
    a = a or assessment()
    at = AWARE + timedelta(hours=5)
    due = notifications(POLICY, a, AWARE, at)
    register.record_assessment(iid, a, due, actor=ACTOR, assessed_at=at)
    return iid


def events(register: IncidentRegister, iid: str) -> list[tuple[str, str, dict[str, object]]]:
    return [(e.kind, e.actor, dict(e.detail)) for e in register._ledger.events(request_id=iid)]


def ledger_text(register: IncidentRegister) -> str:
    return json.dumps([[e.kind, dict(e.detail)] for e in register._ledger.events()])


def test_a_breach_from_report_to_closed_is_a_verifiable_timeline(reg: IncidentRegister) -> None:
    found = reg.report(SUMMARY, reported_by="help-desk", actor=ACTOR, detected_at=AWARE)
    assert (found.state, found.summary, found.reported_by) == (TRIAGE, SUMMARY, "help-desk")
    assert found.id.startswith("inc_") and found.open

    declared_ = reg.declare(
        found.id, kinds=["confidentiality", "integrity"], actor=ACTOR, aware_at=AWARE
    )
    assert declared_.state == BREACH
    assert declared_.aware_at == AWARE and declared_.detected_at == AWARE  # microseconds kept
    assert declared_.kinds == ("confidentiality", "integrity")

    scoped = reg.set_scope(found.id, SCOPE, key_compromised=False, actor=ACTOR)
    assert scoped.scope == SCOPE and scoped.key_compromised is False

    a = assessment(high=True, clients=7)
    at = AWARE + timedelta(hours=5)
    reg.record_assessment(
        found.id, a, notifications(POLICY, a, AWARE, at), actor=ACTOR, assessed_at=at
    )
    got = reg.get(found.id)
    assert got.assessment == a and got.risk == "high" and got.assessed_at == at
    due = {n.audience: n for n in reg.notifications(found.id)}
    assert [n.audience for n in reg.notifications(found.id)] == [
        "authority",
        "subjects",
        "client:acme",
    ]
    assert due["authority"].status == REQUIRED
    assert due["authority"].due_at == AWARE + timedelta(hours=72)
    assert due["client:acme"].due_at == AWARE + timedelta(hours=24)

    sent = reg.notified(
        found.id,
        "authority",
        recipient_role="supervisory authority",
        reference="DPA-77",
        actor=ACTOR,
    )
    assert (sent.status, sent.recipient_role, sent.reference) == (
        SENT,
        "supervisory authority",
        "DPA-77",
    )
    reg.notified(found.id, "subjects", recipient_role="subjects", reference="MAIL-1", actor=ACTOR)
    reg.exempt(found.id, "client:acme", reason="acme's contract waives notices", actor=ACTOR)
    first = reg.add_action(
        found.id, title="Close the share", owner="it-ops", due=date(2026, 3, 9), actor=ACTOR
    )
    second = reg.add_action(
        found.id, title="Audit all shares", owner="security", due=None, actor=ACTOR
    )
    assert (first.number, second.number, first.status) == (1, 2, OPEN)
    assert reg.finish_action(found.id, 1, status=DONE, actor=ACTOR).status == DONE
    waived = reg.finish_action(
        found.id, 2, status=WAIVED, actor=ACTOR, reason="covered by the annual audit"
    )
    assert (waived.status, waived.reason) == (WAIVED, "covered by the annual audit")

    closed = reg.close(found.id, actor=ACTOR, reason="share removed, access reviewed")
    assert closed.state == CLOSED and closed.closed_at is not None and not closed.open

    assert [k for k, _, _ in events(reg, found.id)] == [
        "incident.reported",
        "incident.declared",
        "incident.scoped",
        "incident.assessed",
        "incident.notified",
        "incident.notified",
        "incident.notification-exempt",
        "incident.action-added",
        "incident.action-added",
        "incident.action-done",
        "incident.action-waived",
        "incident.closed",
    ]
    assert {who for _, who, _ in events(reg, found.id)} == {ACTOR}
    text = ledger_text(reg)
    for free_text in (
        SUMMARY,
        "acme's contract",
        "Close the share",
        "annual audit",
        "share removed",
    ):
        assert free_text not in text  # a length and digest only
    assert reg._ledger.verify().ok


def test_closing_is_refused_while_an_action_is_open_or_a_notice_is_pending(
    reg: IncidentRegister,
) -> None:
    iid = assessed(reg, assessment(high=True))
    reg.add_action(iid, title="Rotate the keys", owner="security", due=None, actor=ACTOR)
    before = reg._ledger.count()

    with pytest.raises(TerminalError) as refused:
        reg.close(iid, actor=ACTOR)

    assert "the authority notification is still required" in refused.value.message
    assert "the subjects notification is still required" in refused.value.message
    assert "action 1 is still open" in refused.value.message
    assert reg.get(iid).state == BREACH
    assert reg._ledger.count() == before  # nothing recorded
    reg.notified(iid, "authority", recipient_role="authority", reference="A-1", actor=ACTOR)
    reg.exempt(iid, "subjects", reason="Art. 34(3)(b): measures taken since", actor=ACTOR)
    assert reg.closing_problems(iid) == [
        "action 1 is still open (mark it done or waived with a reason)"
    ]
    with pytest.raises(TerminalError):
        reg.close(iid, actor=ACTOR)
    reg.finish_action(iid, 1, status=DONE, actor=ACTOR)
    assert reg.closing_problems(iid) == []
    assert reg.close(iid, actor=ACTOR).state == CLOSED
    assert [k for k, _, _ in events(reg, iid)].count("incident.closed") == 1
    assert reg._ledger.verify().ok


def test_of_two_conflicting_moves_one_wins_and_the_other_changes_nothing(db_url: str) -> None:
    first, second = open_register(db_url), open_register(db_url)
    try:
        iid = first.report(SUMMARY, reported_by="help-desk", actor=ACTOR).id
        barrier = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        def move(name: str, act: Callable[[], object]) -> None:
            barrier.wait()
            try:
                outcomes[name] = act()
            except LifecycleError as e:
                outcomes[name] = e

        threads = [
            threading.Thread(
                target=move,
                args=("declare", lambda: first.declare(iid, kinds=["availability"], actor="a")),
            ),
            threading.Thread(
                target=move,
                args=("dismiss", lambda: second.dismiss(iid, reason="a test alarm", actor="b")),
            ),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed = [n for n, o in outcomes.items() if isinstance(o, LifecycleError)]
        assert len(failed) == 1, outcomes
        assert isinstance(outcomes[failed[0]], TerminalError | TransientError)
        state = first.get(iid).state
        assert state == (DISMISSED if failed == ["declare"] else BREACH)
        kinds = [k for k, _, _ in events(first, iid)]
        assert kinds.count("incident.declared") + kinds.count("incident.dismissed") == 1

        # A move decided on a state read before another's commit: refused by the
        # compare-and-set in the event's transaction, so neither row nor event is written.
        other = first.report(SUMMARY, reported_by="help-desk", actor=ACTOR).id
        stale = second.get(other)
        first.dismiss(other, reason="a test alarm", actor="a")
        before = first._ledger.count()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(IncidentRegister, "_require", lambda *_a, **_k: stale)
            with pytest.raises(TransientError, match="changed meanwhile"):
                second.declare(other, kinds=["integrity"], actor="b")
        assert first.get(other).state == DISMISSED
        assert first._ledger.count() == before
        assert first._ledger.verify().ok
    finally:
        first._engine.dispose()
        second._engine.dispose()


@pytest.mark.parametrize(
    ("step", "field"),
    [
        (lambda r, i: r.report("call +44 20 7946 0958", reported_by="ops", actor=ACTOR), "summary"),
        (
            lambda r, i: r.dismiss(i, reason="sent to robin.quill@example.com", actor=ACTOR),
            "reason",
        ),
        (
            lambda r, i: r.add_action(
                i, title="mail sam.birch@example.com", owner="ops", due=None, actor=ACTOR
            ),
            "title",
        ),
        (
            lambda r, i: r.report(SUMMARY, reported_by="robin.quill@example.com", actor=ACTOR),
            "reported by",
        ),
    ],
    ids=["summary", "dismiss reason", "action title", "reporter"],
)
def test_free_text_holding_personal_data_is_refused_and_nothing_recorded(
    sqlite_reg: IncidentRegister, step: Step, field: str
) -> None:
    iid = sqlite_reg.report(SUMMARY, reported_by="help-desk", actor=ACTOR).id
    before = sqlite_reg._ledger.count()
    with sqlite_reg._engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(incidents)).scalar()

    with pytest.raises(InvalidInput) as refused:
        step(sqlite_reg, iid)

    assert refused.value.message.startswith(field)
    for value in ("robin.quill", "sam.birch", "7946"):
        assert value not in refused.value.message  # named, never echoed
    assert sqlite_reg._ledger.count() == before
    with sqlite_reg._engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(incidents)).scalar() == rows
        assert conn.execute(select(func.count()).select_from(incident_actions)).scalar() == 0
    assert sqlite_reg.get(iid).state == TRIAGE


def test_moves_out_of_order_are_refused_naming_the_state(sqlite_reg: IncidentRegister) -> None:
    r = sqlite_reg
    iid = r.report(SUMMARY, reported_by="help-desk", actor=ACTOR).id
    with pytest.raises(TerminalError, match="is 'triage': cannot set its scope"):
        r.set_scope(iid, SCOPE, key_compromised=None, actor=ACTOR)
    with pytest.raises(TerminalError, match="only a declared breach closes"):
        r.close(iid, actor=ACTOR)
    with pytest.raises(InvalidInput, match="kind"):
        r.declare(iid, kinds=[], actor=ACTOR)
    with pytest.raises(InvalidInput, match="kind"):
        r.declare(iid, kinds=["theft"], actor=ACTOR)
    with pytest.raises(InvalidInput, match="future"):
        r.declare(
            iid, kinds=["integrity"], actor=ACTOR, aware_at=datetime.now(UTC) + timedelta(hours=1)
        )
    with pytest.raises(InvalidInput, match="zone"):
        r.declare(iid, kinds=["integrity"], actor=ACTOR, aware_at=datetime(2026, 3, 1))
    with pytest.raises(InvalidInput, match="detected at"):
        r.declare(
            iid,
            kinds=["integrity"],
            actor=ACTOR,
            aware_at=AWARE,
            detected_at=AWARE + timedelta(minutes=1),
        )
    r.declare(iid, kinds=["integrity"], actor=ACTOR, aware_at=AWARE)
    with pytest.raises(TerminalError, match="is 'breach': cannot dismiss it"):
        r.dismiss(iid, reason="not a breach after all", actor=ACTOR)
    with pytest.raises(NotFoundError, match="assess it first"):
        r.notified(iid, "authority", recipient_role="authority", reference="A-1", actor=ACTOR)
    with pytest.raises(TerminalError, match="no assessment"):
        r.close(iid, actor=ACTOR)
    r.add_action(iid, title="Check the backups", owner="it-ops", due=None, actor=ACTOR)
    with pytest.raises(NotFoundError):
        r.finish_action(iid, 9, status=DONE, actor=ACTOR)
    with pytest.raises(InvalidInput, match="reason"):
        r.finish_action(iid, 1, status=WAIVED, actor=ACTOR)
    r.finish_action(iid, 1, status=DONE, actor=ACTOR)
    with pytest.raises(TerminalError, match="already done"):
        r.finish_action(iid, 1, status=WAIVED, actor=ACTOR, reason="changed our mind")
    with pytest.raises(InvalidInput, match="incident id"):
        r.get("inc_robin.quill@example.com")
    with pytest.raises(NotFoundError):
        r.get("inc_0000000000000000")

    other = r.report(SUMMARY, reported_by="help-desk", actor=ACTOR).id
    r.dismiss(other, reason="a drill", actor=ACTOR)
    assert r.get(other).state == DISMISSED and r.get(other).close_reason == "a drill"
    for move in (
        lambda: r.declare(other, kinds=["integrity"], actor=ACTOR),
        lambda: r.dismiss(other, reason="again", actor=ACTOR),
        lambda: r.add_action(other, title="Anything", owner="ops", due=None, actor=ACTOR),
    ):
        with pytest.raises(TerminalError, match="is 'dismissed'"):
            move()
    assert r._ledger.verify().ok


def test_notifications_are_recorded_once_and_a_later_assessment_keeps_them(
    sqlite_reg: IncidentRegister,
) -> None:
    r = sqlite_reg
    iid = assessed(r, assessment(high=True, clients=5))
    with pytest.raises(InvalidInput, match="future"):
        r.notified(
            iid,
            "authority",
            recipient_role="authority",
            reference="A-1",
            actor=ACTOR,
            sent_at=datetime.now(UTC) + timedelta(days=1),
        )
    late = AWARE + timedelta(hours=80)
    sent = r.notified(
        iid, "authority", recipient_role="authority", reference="A-1", actor=ACTOR, sent_at=late
    )
    assert sent.sent_at == late
    with pytest.raises(TerminalError, match="already recorded as sent"):
        r.notified(iid, "authority", recipient_role="authority", reference="A-2", actor=ACTOR)
    with pytest.raises(TerminalError, match="already sent"):
        r.exempt(iid, "authority", reason="changed", actor=ACTOR)
    r.exempt(iid, "subjects", reason="Art. 34(3)(c): public communication instead", actor=ACTOR)
    [notified] = [d for k, _, d in events(r, iid) if k == "incident.notified"]
    assert notified["late"] is True and notified["reference"] == "A-1"

    # Re-assessed: fewer subjects, no client affected any more.
    again = assessment(subjects=3)
    at = AWARE + timedelta(hours=90)
    r.record_assessment(
        iid, again, notifications(POLICY, again, AWARE, at), actor=ACTOR, assessed_at=at
    )
    now = {n.audience: n for n in r.notifications(iid)}
    assert (now["authority"].status, now["authority"].reference) == (SENT, "A-1")
    assert (now["subjects"].status, now["subjects"].reason) == (
        EXEMPT,
        "Art. 34(3)(c): public communication instead",
    )
    assert (now["client:acme"].status, now["client:acme"].because) == (
        NOT_REQUIRED,
        "no longer affected",
    )
    assert r.closing_problems(iid) == []


def test_due_lists_required_notifications_of_open_breaches_soonest_first(
    sqlite_reg: IncidentRegister,
) -> None:
    r = sqlite_reg
    iid = assessed(r, assessment(high=True, clients=2))
    triage = r.report(SUMMARY, reported_by="help-desk", actor=ACTOR).id
    listed = r.due()
    assert [(i.id, n.audience) for i, n in listed] == [
        (iid, "client:acme"),  # 24 h from awareness
        (iid, "authority"),  # 72 h from awareness
        (iid, "subjects"),  # 72 h from the assessment, 5 h later
    ]
    assert all(n.overdue(datetime.now(UTC)) for _, n in listed)  # AWARE is long past
    assert not listed[0][1].overdue(AWARE)
    assert triage not in {i.id for i, _ in listed}
    r.notified(iid, "client:acme", recipient_role="acme security", reference="C-1", actor=ACTOR)
    assert [n.audience for _, n in r.due()] == ["authority", "subjects"]
    assert [i.id for i in r.list(states=[TRIAGE])] == [triage]


def test_a_notification_recorded_twice_at_once_is_recorded_once(db_url: str) -> None:
    # Two operators both read "required", then each records it sent: the second's
    # compare-and-set on the status it read finds "sent" and writes neither row nor event.
    first, second = open_register(db_url), open_register(db_url)
    try:
        iid = assessed(first)
        stale = next(n for n in second.notifications(iid) if n.audience == "authority")
        assert stale.status == REQUIRED
        first.notified(iid, "authority", recipient_role="CNIL", reference="REF-1", actor="a")
        before = first._ledger.count()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(IncidentRegister, "_notification_row", lambda *_a, **_k: stale)
            with pytest.raises(TerminalError, match="changed meanwhile"):
                second.notified(
                    iid, "authority", recipient_role="CNIL", reference="REF-2", actor="b"
                )
            with pytest.raises(TerminalError, match="changed meanwhile"):
                second.exempt(iid, "authority", reason="not needed after all", actor="b")
        (row,) = [n for n in first.notifications(iid) if n.audience == "authority"]
        assert (row.status, row.reference) == (SENT, "REF-1")
        assert first._ledger.count() == before
        kinds = [k for k, _, _ in events(first, iid)]
        assert kinds.count("incident.notified") == 1 and "incident.notification-exempt" not in kinds
    finally:
        first._engine.dispose()
        second._engine.dispose()
