"""One behavioural suite for every connector: what a data-subject request relies on.

Parametrised over the store types (``behaviour_cases``): SQL on SQLite (and on PostgreSQL
and MariaDB, marked ``service``), S3 on moto in-process, and a processor behind the stub
provider. Each test judges the connector from the outside, through ``Connector`` and the
optional capabilities it declares, against a snapshot of everything the store holds:

- locate finds exactly the subject's data, and nothing for a subject never seen;
- export yields the subject's records and no one else's;
- an erasure removes the subject's data and leaves every other item as it was;
- a crash after the intents are recorded (before or after the store acted) is reported
  exactly by ``in_effect``, and the rerun ends as an uninterrupted run, acting once;
- verify reports what is left before the erasure, clean after it, and deferred steps;
- sweeps (``Sweeping``) remove expired data only, and leave held subjects' data;
- rectification (``Rectifying``) corrects the subject's data only.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pytest
from moto import mock_aws

from connectors.base import (
    Action,
    BatchLocating,
    BatchResult,
    Findings,
    Key,
    Rectifying,
    StorePlan,
    SweepBatch,
    Sweeper,
    SweepFinishing,
    Sweeping,
    TransactionalSweeper,
)
from connectors.registry import Unsupported, require, supports
from core.errors import TerminalError
from demo.processor_server import StubProvider
from tests.conftest import _fresh_database
from tests.connectors.behaviour_cases import (
    GONE,
    Case,
    Item,
    ProcessorCase,
    S3Case,
    SqlCase,
    Who,
    stub_records,
)
from tests.connectors.processor.conftest import SECRET, SECRET_ENV
from tests.connectors.s3.conftest import REGION

TODAY = "2026-03-15"
CAPABILITIES: list[tuple[Callable[..., object], str]] = [
    (Rectifying, "rectification"),
    (Sweeping, "sweeping"),
    (BatchLocating, "batch locating"),
]

CASES = [
    pytest.param("sql-sqlite", id="sql-sqlite"),
    pytest.param("sql-postgresql", marks=pytest.mark.service, id="sql-postgresql"),
    pytest.param("sql-mariadb", marks=pytest.mark.service, id="sql-mariadb"),
    pytest.param("s3", id="s3"),
    pytest.param("processor", id="processor"),
]


@pytest.fixture(scope="module")
def server_database() -> Iterator[Callable[[str], str]]:
    """One database per server backend for the module, created when first asked for.

    Creating a database costs a second or two; each case empties and seeds it again.
    """
    urls: dict[str, str] = {}
    with ExitStack() as stack:

        def url(backend: str) -> str:
            if backend not in urls:
                databases = _fresh_database(backend)  # skips (fails under CI) if down
                urls[backend] = next(databases)
                if isinstance(databases, Generator):
                    stack.callback(databases.close)  # dropped at the end of the module
            return urls[backend]

        yield url


@pytest.fixture(params=CASES)
def case(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Case]:
    """A freshly seeded store of one type behind its connector."""
    name = str(request.param)
    with ExitStack() as stack:
        built: Case
        if name == "sql-sqlite":
            built = SqlCase(f"sqlite:///{tmp_path / 'crm.db'}")
        elif name.startswith("sql-"):
            database: Callable[[str], str] = request.getfixturevalue("server_database")
            built = SqlCase(database(name.removeprefix("sql-")))
        elif name == "s3":
            for var, value in {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION,
            }.items():
                monkeypatch.setenv(var, value)
            stack.enter_context(mock_aws())
            built = S3Case()
        else:
            monkeypatch.setenv(SECRET_ENV, SECRET)
            stub = stack.enter_context(StubProvider(SECRET.encode(), stub_records()).running())
            built = ProcessorCase(stub)
        stack.callback(built.close)
        yield built


class Crash(Exception):
    """The worker died here (what a kill between two lines of the caller looks like)."""


def ignore(_batch: BatchResult) -> None:
    """An ``on_batch`` that records nothing."""


def located_items(findings: Findings) -> set[Item]:
    return {(t.target, k) for t in findings.targets for k in t.keys}


def nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts without zero entries (S3 reports every bucket it searched)."""
    return {target: n for target, n in counts.items() if n}


def plan_for(case: Case) -> StorePlan:
    connector = case.connector
    return connector.plan_erasure(connector.locate(case.identities("alice")), TODAY)


def touched(plan: StorePlan) -> dict[str, int]:
    """Per target, the keys the plan deletes or masks (what verify must see gone or masked)."""
    counts: dict[str, int] = {}
    for step in plan.steps:
        if step.action in (Action.DELETE, Action.MASK):
            counts[step.target] = counts.get(step.target, 0) + step.count
    return counts


# -- capabilities ------------------------------------------------------------------------


def test_the_connector_declares_exactly_the_capabilities_of_its_store_type(case: Case) -> None:
    """So that a capability test below cannot pass by skipping a capability that was lost."""
    declared = {what for capability, what in CAPABILITIES if supports(case.connector, capability)}
    assert declared == case.capabilities
    for capability, what in CAPABILITIES:
        if what in declared:
            assert require(case.connector, capability, what) is case.connector
            continue
        with pytest.raises(Unsupported) as info:
            require(case.connector, capability, what)
        kind = case.connector.capabilities.kind
        assert (
            str(info.value)
            == f"store '{case.connector.name}' (type {kind}) does not support {what}"
        )


# -- locate and export -------------------------------------------------------------------


def test_locate_finds_exactly_each_subjects_data(case: Case) -> None:
    snapshot = case.snapshot()
    for who in ("alice", "bob"):
        findings = case.connector.locate(case.identities(who))
        assert findings.store == case.connector.name
        assert nonzero(findings.counts()) == case.located[who], who
        assert located_items(findings) == set(case.items_of(snapshot, who)), who


def test_locate_finds_nothing_for_a_subject_the_store_never_saw(case: Case) -> None:
    before = case.snapshot()
    findings = case.connector.locate(case.identities("nobody"))
    assert findings.total == 0 and nonzero(findings.counts()) == case.located["nobody"]
    plan = case.connector.plan_erasure(findings, TODAY)
    assert not any(step.keys for step in plan.steps)
    assert case.connector.execute(plan, ignore) == []
    assert case.snapshot() == before  # an erasure of no one erases nothing


def test_locate_many_finds_for_each_subject_what_locate_finds_alone(case: Case) -> None:
    batch = case.connector
    if not supports(batch, BatchLocating):
        pytest.skip(f"{case.connector.capabilities.kind} stores locate one subject at a time")
    who_all: list[Who] = ["alice", "bob", "nobody", "alice"]  # one twice: found twice, the same
    together = batch.locate_many([case.identities(who) for who in who_all])
    assert len(together) == len(who_all)
    for who, found in zip(who_all, together, strict=True):
        alone = case.connector.locate(case.identities(who))
        assert located_items(found) == located_items(alone), who
        assert found.counts() == alone.counts() and found.derived == alone.derived, who


def test_export_yields_the_subjects_records_and_no_one_elses(case: Case) -> None:
    snapshot = case.snapshot()
    findings = case.connector.locate(case.identities("alice"))
    records = list(case.connector.export(findings))
    exported = [case.exported(r) for r in records]
    assert len(exported) == len(set(exported))  # each record once
    alice = {i for i in case.items_of(snapshot, "alice") if case.is_record(i)}
    assert set(exported) == alice
    assert all(case.owner(i, snapshot[i]) == "alice" for i in exported)
    assert {r.store for r in records} == {case.connector.name}
    assert all(r.categories for r in records)
    per_target: dict[str, int] = {}
    for target, _ in exported:
        per_target[target] = per_target.get(target, 0) + 1
    assert per_target == nonzero(findings.record_counts())
    assert case.snapshot() == snapshot  # read-only


# -- erasure -----------------------------------------------------------------------------


def test_erasure_removes_the_subjects_data_and_nothing_else(case: Case) -> None:
    before = case.snapshot()
    bob = case.items_of(before, "bob")
    assert bob  # the comparison below is not vacuous
    plan = plan_for(case)
    assert plan.store == case.connector.name and plan.steps
    seen: list[BatchResult] = []
    results = case.connector.execute(plan, seen.append)
    after = case.snapshot()
    assert after == case.after_erasure(before)
    assert case.items_of(after, "bob") == bob  # the other subject's data, unchanged
    assert case.items_of(after, "alice") == {}
    assert seen == results and results
    assert sum(r.affected for r in results if r.action is Action.DELETE) == sum(
        s.count for s in plan.steps if s.action is Action.DELETE
    )
    assert nonzero(case.connector.locate(case.identities("bob")).counts()) == case.located["bob"]


CRASH_POINTS = ["before-effect", "after-effect"]


@pytest.mark.parametrize("crash_point", CRASH_POINTS)
def test_a_rerun_after_a_crash_ends_as_an_uninterrupted_run(case: Case, crash_point: str) -> None:
    """The intents are recorded (``on_prepared``); then the worker dies, either before the
    store acted (``on_prepared`` raises: a transaction rolls back, nothing is sent) or just
    after (``on_batch`` raises once the store acted). ``in_effect`` tells which keys took
    effect; the rerun of the same plan finishes the job, and the store acts once."""
    connector = case.connector
    before = case.snapshot()
    final = case.after_erasure(before)
    plan = StorePlan.from_json(plan_for(case).to_json())  # as the rerun reads it back
    prepared: list[BatchResult] = []
    crashed_with: list[BatchResult] = []

    def record_intents(batches: Sequence[BatchResult]) -> None:
        prepared.extend(batches)
        if crash_point == "before-effect":
            raise Crash

    def die_after(batch: BatchResult) -> None:
        crashed_with.append(batch)
        raise Crash

    on_batch = die_after if crash_point == "after-effect" else ignore
    with pytest.raises(Crash):
        connector.execute(plan, on_batch, record_intents)
    assert prepared and all(b.keys for b in prepared)
    at_crash = case.snapshot()

    effect = connector.in_effect(plan, prepared)
    assert len(effect) == len(prepared)
    for intent, found in zip(prepared, effect, strict=True):
        assert (found.target, found.action) == (intent.target, intent.action)
        assert set(found.keys) <= set(intent.keys) and found.affected == len(found.keys)
        if intent.action in (Action.DELETE, Action.MASK):  # UNLINK keys are the parents'
            changed = {
                k
                for k in intent.keys
                if at_crash.get((intent.target, k), GONE) != before[(intent.target, k)]
            }
            assert set(found.keys) == changed, intent.target  # exactly what the store shows
    if crash_point == "before-effect":
        assert at_crash == before
        assert all(f.affected == 0 for f in effect)
    else:
        (batch,) = crashed_with
        done = [f for i, f in zip(prepared, effect, strict=True) if set(i.keys) == set(batch.keys)]
        assert done and all(f.affected == len(f.keys) == len(batch.keys) for f in done)

    sent = case.deletes_sent() if isinstance(case, S3Case) else []
    rerun = connector.execute(plan, ignore)
    assert case.snapshot() == final
    assert connector.verify(case.identities("alice"), plan).clean
    assert_acted_once(case, crash_point, prepared, rerun, sent)


def assert_acted_once(
    case: Case,
    crash_point: str,
    prepared: Sequence[BatchResult],
    rerun: Sequence[BatchResult],
    sent: Sequence[Item],
) -> None:
    """What the rerun did in the store: only what the interrupted run had not done."""
    if isinstance(case, SqlCase):
        if crash_point == "after-effect":  # committed already: the rerun changes no row
            assert sum(r.affected for r in rerun) == 0
        else:
            assert sum(r.affected for r in rerun) == sum(b.affected for b in prepared)
    if isinstance(case, S3Case):
        # Deletes by version id only (a delete without one would add a marker), of the
        # planned versions only: re-deleting a gone version is a no-op.
        intents = {(b.target, k[:2]) for b in prepared for k in b.keys}
        assert sent and set(sent) <= intents
    if isinstance(case, ProcessorCase):
        requests = case.erasure_requests()
        assert len(requests) == 1  # one idempotency key: the resend was the same request
        assert sorted(requests[0][1]) == ["rec-1", "rec-2"]
        assert case.stub.erased == ["rec-1", "rec-2"]  # each record erased once
        keys = {k for op, k in case.stub.calls if op == "erasures"}
        assert keys == {requests[0][0]}
        assert [r.reference for r in rerun] == ["REQ-0001"]


# -- verify ------------------------------------------------------------------------------


def test_verify_reports_the_data_left_before_the_erasure_and_clean_after(case: Case) -> None:
    connector, alice = case.connector, case.identities("alice")
    plan = plan_for(case)
    expected = touched(plan)
    assert expected and all(expected.values())

    pending = connector.verify(alice, plan)
    assert not pending.clean
    assert nonzero(pending.remaining) == expected
    assert not any(pending.deferred.values())

    connector.execute(plan, ignore)
    done = connector.verify(alice, plan)
    assert done.clean and not any(done.remaining.values())
    assert not any(done.deferred.values())
    masked = {s.target: s.count for s in plan.steps if s.action is Action.MASK}
    assert nonzero(done.masked) == masked


def test_verify_reports_a_deferred_step_as_deferred_not_remaining(case: Case) -> None:
    connector, alice = case.connector, case.identities("alice")
    plan = plan_for(case)
    held = [s for s in plan.steps if s.target in case.deferrable]
    assert [(s.target, s.action) for s in held] == [(s.target, Action.DELETE) for s in held] and {
        s.target for s in held
    } == set(case.deferrable)
    deferred = replace(
        plan,
        steps=tuple(
            replace(s, action=Action.DEFER, reason="legal hold T1: dispute") if s in held else s
            for s in plan.steps
        ),
    )
    before = case.snapshot()
    connector.execute(deferred, ignore)
    after = case.snapshot()
    kept = {(s.target, k) for s in held for k in s.keys}
    assert {i: after.get(i, GONE) for i in kept} == {i: before[i] for i in kept}  # untouched
    final = case.after_erasure(before)
    assert {i: c for i, c in after.items() if i not in kept} == {
        i: c for i, c in final.items() if i not in kept
    }
    result = connector.verify(alice, deferred)
    assert result.clean
    assert nonzero(result.deferred) == {s.target: s.count for s in held}
    assert not any(result.remaining.get(s.target, 0) for s in held)
    # The full plan still sees the deferred data as left to erase.
    remaining = connector.verify(alice, plan).remaining
    assert {s.target: remaining.get(s.target) for s in held} == {s.target: s.count for s in held}


# -- sweeps ------------------------------------------------------------------------------


def sweep(sweeper: Sweeper) -> list[SweepBatch]:
    """Every batch, as the sweep runner takes them (in one transaction where offered)."""
    batches: list[SweepBatch] = []
    cursor: Key | None = None
    size = sweeper.batch_size(2)
    if isinstance(sweeper, TransactionalSweeper) and sweeper.deletes_in_one_transaction:
        while (batch := sweeper.delete_next(cursor, size, batches.append)) is not None:
            cursor = batch.hi
        return batches
    while (batch := sweeper.next_batch(cursor, size)) is not None:
        assert sweeper.apply(batch) == batch.count
        batches.append(batch)
        cursor = batch.hi
    return batches


@pytest.mark.parametrize("hold_alice", [False, True], ids=["no-hold", "alice-held"])
def test_a_sweep_removes_only_expired_data(case: Case, hold_alice: bool) -> None:
    connector = case.connector
    if "sweeping" not in case.capabilities:
        assert not supports(connector, Sweeping)
        with pytest.raises(Unsupported, match=rf"^store '{connector.name}' \(type "):
            require(connector, Sweeping, "sweeping")
        return
    sweeping = require(connector, Sweeping, "sweeping")
    spec = case.sweep_case()
    assert spec is not None
    before = case.snapshot()
    held_keys: frozenset[Key] = frozenset()
    if hold_alice:
        findings = connector.locate(case.identities("alice"))
        held_keys = sweeping.target_keys(spec.target, findings)
        assert held_keys
    removed = {i for i in spec.expired if not (hold_alice and case.owner(i, before[i]) == "alice")}
    held = len(spec.expired) - len(removed)
    assert removed and (held > 0) == hold_alice
    sweeper = sweeping.sweeper(spec.target, today=spec.today, held_keys=held_keys)
    assert sweeper.counts() == (len(removed), held)

    batches = sweep(sweeper)
    if supports(connector, SweepFinishing):
        connector.finish_sweep(spec.target)

    assert sum(b.count for b in batches) == len(removed)
    assert case.snapshot() == {i: c for i, c in before.items() if i not in removed}
    assert sweeper.counts() == (0, held)
    assert sweep(sweeper) == []  # a second night finds nothing


# -- rectification -----------------------------------------------------------------------


def test_rectification_corrects_the_subjects_data_only(case: Case) -> None:
    connector = case.connector
    if "rectification" not in case.capabilities:
        assert not supports(connector, Rectifying)
        with pytest.raises(Unsupported, match=rf"^store '{connector.name}' \(type "):
            require(connector, Rectifying, "rectification")
        return
    rectifying = require(connector, Rectifying, "rectification")
    changes = dict(case.rectify_changes)
    assert rectifying.changes_for({**changes, "nowhere.at_all": "x"}) == changes
    assert rectifying.check_changes(changes) == []
    before = case.snapshot()
    findings = connector.locate(case.identities("alice"))

    refused = dict(case.bad_changes)
    assert rectifying.check_changes(refused)
    with pytest.raises(TerminalError):
        rectifying.rectify(findings, refused)
    assert case.snapshot() == before  # refused before anything was written

    results = rectifying.rectify(findings, changes)
    after = case.snapshot()
    expected = {
        i: case.rectified(i, c) if case.owner(i, c) == "alice" else c for i, c in before.items()
    }
    assert after == expected
    changed = {i for i in before if before[i] != after[i]}
    assert changed and all(case.owner(i, before[i]) == "alice" for i in changed)
    assert all(r.action is Action.RECTIFY for r in results)
    assert sum(r.affected for r in results) == len(changed)
