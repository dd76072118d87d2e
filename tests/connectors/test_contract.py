"""The connector contract: base operations for every store, optional capabilities asked for.

What a new store type relies on: it implements ``Connector`` (and whichever optional
protocols it can), is registered with one line, and everything else asks the registry
for a capability: a missing one is refused with one clear error (``Unsupported``), and a
retention sweep leaves its targets out (audited as skipped) rather than failing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit.ledger import Ledger
from config.loader import load_config
from config.schema import Policy
from config.schema.model import LifecycleConfig
from connectors import registry
from connectors.base import (
    BatchResult,
    Capabilities,
    Connector,
    ExportItem,
    Findings,
    Identities,
    OnBatch,
    OnPrepared,
    Rectifying,
    StorePlan,
    SubjectScanning,
    Sweeper,
    SweepFinishing,
    Sweeping,
    TransactionalSweeper,
    Verification,
)
from connectors.registry import Unsupported, connector_for, require, supports
from connectors.s3.config import S3Store
from connectors.s3.connector import S3Connector
from connectors.s3.sweep import S3Sweeper
from connectors.sql.config import SqlStore
from connectors.sql.connector import SqlConnector
from connectors.sql.sweep import SqlSweeper
from core.errors import TerminalError
from core.keys import KeyRing
from core.pseudonym import Pseudonym
from tests.flows.fakes import FakeConnector

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo"
KEYS = KeyRing.from_master(b"c" * 32)
AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
OPTIONAL: list[tuple[Callable[..., object], str]] = [
    (Rectifying, "rectification"),
    (Sweeping, "sweeping"),
    (SweepFinishing, "sweep finishing"),
    (SubjectScanning, "subject scans"),
]


# What mypy checks: each connector implements the protocols it claims (structurally).


def _sql_conforms(c: SqlConnector) -> tuple[Connector, Rectifying, Sweeping]:
    finishing: SweepFinishing = c
    scanning: SubjectScanning = c
    del finishing, scanning
    return c, c, c


def _s3_conforms(c: S3Connector) -> tuple[Connector, Sweeping]:
    return c, c


def _fake_conforms(c: FakeConnector) -> tuple[Connector, Rectifying]:
    return c, c  # the flow tests' stand-in for SQL stores (it does not sweep)


def _sweepers_conform(sql: SqlSweeper, s3: S3Sweeper) -> tuple[TransactionalSweeper, Sweeper]:
    return sql, s3


class MinimalConnector:
    """A store type with the base operations only (as a third-party processor might be)."""

    capabilities = Capabilities(
        kind="minimal", transactional=False, can_mask=False, versioned=False,
        derives_identities=False,
    )  # fmt: skip

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def factory(cls, store: SqlStore | S3Store, policy: Policy, keys: KeyRing) -> Connector:
        return cls(store.name)

    def locate(self, identities: Identities) -> Findings:
        return Findings(self.name)

    def export(self, findings: Findings) -> Iterator[ExportItem]:
        return iter(())

    def plan_erasure(
        self, findings: Findings, today: str, subject: Pseudonym | None = None
    ) -> StorePlan:
        return StorePlan(self.name)

    def execute(
        self, plan: StorePlan, on_batch: OnBatch, on_prepared: OnPrepared | None = None
    ) -> list[BatchResult]:
        return []

    def in_effect(self, plan: StorePlan, batches: Sequence[BatchResult]) -> list[BatchResult]:
        return []

    def verify(self, identities: Identities, plan: StorePlan) -> Verification:
        return Verification(self.name, remaining={}, deferred={}, masked={})

    def close(self) -> None:
        pass


def _minimal() -> Connector:
    return MinimalConnector("crm")


@pytest.fixture
def demo_config(isolated_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo configuration (the ``crm`` SQL store and the ``files`` S3 store), in use."""
    folder = tmp_path / "config"
    shutil.copytree(DEMO_CONFIG, folder)
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
    isolated_settings.mkdir(parents=True, exist_ok=True)
    from config.settings import get_settings

    get_settings.cache_clear()
    return folder


def _connectors(config: LifecycleConfig) -> tuple[Connector, Connector]:
    sql = connector_for(config.store("crm"), config.policy, KEYS)
    s3 = connector_for(config.store("files"), config.policy, KEYS)
    return sql, s3


# -- the capability helper ---------------------------------------------------------------


@pytest.mark.parametrize(("capability", "what"), OPTIONAL)
def test_a_connector_with_only_the_base_operations_is_refused_each_optional_one(
    capability: Callable[..., object], what: str
) -> None:
    connector = _minimal()
    assert not supports(connector, capability)
    with pytest.raises(Unsupported) as info:
        require(connector, capability, what)
    error = info.value
    assert isinstance(error, TerminalError)  # stops the work, audited and reported
    assert str(error) == f"store 'crm' (type minimal) does not support {what}"
    assert error.fields == {"store": "crm", "store_type": "minimal", "capability": what}


def test_require_returns_the_connector_as_the_capability() -> None:
    connector = SqlConnector(_sql_store(), _policy(), keys=KEYS)
    sweeping = require(connector, Sweeping, "sweeping")
    assert sweeping is connector
    rectifying = require(connector, Rectifying, "rectification")
    assert rectifying.changes_for({"customers.email": "x", "nowhere.y": "z"}) == {
        "customers.email": "x"
    }


def test_supports_takes_only_capability_protocols() -> None:
    with pytest.raises(TypeError, match="not a capability protocol"):
        supports(_minimal(), len)


def test_unsupported_is_the_registry_error() -> None:
    assert registry.Unsupported is Unsupported
    assert issubclass(Unsupported, TerminalError)


# -- what each real connector declares ---------------------------------------------------


def test_the_sql_connector_rectifies_sweeps_finishes_sweeps_and_scans_subjects(
    demo_config: Path,
) -> None:
    sql, _ = _connectors(load_config())
    assert isinstance(sql, SqlConnector)
    assert [what for capability, what in OPTIONAL if supports(sql, capability)] == [
        "rectification",
        "sweeping",
        "sweep finishing",
        "subject scans",
    ]


def test_the_s3_connector_sweeps_but_does_not_rectify(demo_config: Path) -> None:
    _, s3 = _connectors(load_config())
    assert isinstance(s3, S3Connector)
    assert [what for capability, what in OPTIONAL if supports(s3, capability)] == ["sweeping"]
    with pytest.raises(Unsupported, match=r"^store 'files' \(type s3\) does not support rectif"):
        require(s3, Rectifying, "rectification")


def test_the_sweepers_state_their_batch_size_and_whether_their_counts_are_exact(
    demo_config: Path, isolated_settings: Path
) -> None:
    """What the sweep runner reads from a sweeper instead of branching on the store type."""
    from demo.seed_sql import seed_crm
    from retention.targets import resolve_targets

    seed_crm(f"sqlite:///{isolated_settings / 'crm.db'}", customers=5)
    config = load_config()
    sql, s3 = _connectors(config)
    today = AS_OF.date()
    try:
        for target in resolve_targets(config, AS_OF):
            connector = sql if target.store == "crm" else s3
            sweeper = require(connector, Sweeping, "sweeping").sweeper(target, today=today)
            if target.store == "crm":  # keyset reads, rows per batch as asked
                assert sweeper.exact_counts and sweeper.batch_size(500) == 500
                assert isinstance(sweeper, TransactionalSweeper)
                assert not sweeper.deletes_in_one_transaction  # PostgreSQL only
            else:  # a listing; one DeleteObjects call's worth of versions
                assert not sweeper.exact_counts and sweeper.batch_size(500) == 1000
                assert not isinstance(sweeper, TransactionalSweeper)
    finally:
        sql.close()
        s3.close()


# -- sweeps skip stores that cannot sweep ------------------------------------------------


def test_a_sweep_skips_the_targets_of_a_store_that_cannot_sweep(
    demo_config: Path, isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's ``files`` store served by a connector without ``Sweeping``: the sweep plans,
    runs and closes the SQL targets, and audits the S3 target as skipped."""
    from demo.seed_sql import seed_crm
    from engine.sweep_holds import held_keys_by_target
    from engine.sweep_runner import (
        finish_target,
        plan_sweep,
        run_range,
        summarise,
        sweep_context,
        verify_and_rewind,
    )

    seed_crm(f"sqlite:///{isolated_settings / 'crm.db'}", customers=20)
    monkeypatch.setitem(registry.CONNECTORS, "s3", MinimalConnector.factory)

    with sweep_context() as ctx:
        run = plan_sweep(ctx, as_of=AS_OF, rules=(), dry_run=False)
        planned = {p["store"] for p in run.plan}
        targets = ctx.targets(run)
        assert planned == {"crm"} and targets
        assert {t.store for t in targets} == {"crm"}
        assert {p["store_type"] for p in run.plan} == {"sql"}
        assert held_keys_by_target(ctx, targets) == {}  # no subject holds in the demo
        for target in targets:
            while not run_range(ctx, run, target, batch_size=500).finished:
                pass
            assert verify_and_rewind(ctx, run, target) == 0
            finish_target(ctx, run, target)
        summary = summarise(ctx, run)

    assert summary["status"] == "completed"
    assert {t["store"] for t in summary["targets"]} == {"crm"}
    events = list(Ledger.open().events())
    skipped = [e for e in events if e.kind == "sweep.skipped"]
    assert skipped and {e.connector for e in skipped} == {"files"}
    for event in skipped:
        assert event.status == "skipped"
        assert event.detail["reason"] == "store 'files' (type minimal) does not support sweeping"
    (planned_event,) = [e for e in events if e.kind == "sweep.planned"]
    assert planned_event.detail["skipped"] == [e.target for e in skipped]


def test_a_sweep_with_no_store_that_can_sweep_plans_nothing_and_runs_nothing(
    demo_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.sweep_runner import plan_sweep, summarise, sweep_context

    monkeypatch.setitem(registry.CONNECTORS, "sql", MinimalConnector.factory)
    monkeypatch.setitem(registry.CONNECTORS, "s3", MinimalConnector.factory)
    with sweep_context() as ctx:
        run = plan_sweep(ctx, as_of=AS_OF, rules=(), dry_run=False)
        assert run.plan == [] and ctx.targets(run) == []  # an empty plan is not "every target"
        summary = summarise(ctx, run)
    assert summary["status"] == "completed" and summary["targets"] == []
    skipped = list(Ledger.open().events(kinds=["sweep.skipped"]))
    assert {e.connector for e in skipped} == {"crm", "files"}


def test_subject_holds_are_resolved_only_through_stores_that_scan_and_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every store without ``SubjectScanning``/``Sweeping``: a subject hold finds nothing to
    resolve and no target keys, rather than failing."""
    from config.schema.policy import LegalHold
    from engine.sweep_holds import held_keys_by_target
    from retention.targets import SweepTarget

    hold = LegalHold.model_validate(
        {"id": "H1", "reason": "dispute", "scope": {"subject": "psn_" + "a" * 32},
         "starts": "2020-01-01"}
    )  # fmt: skip
    target = SweepTarget(
        id="crm.customers:delete",
        kind="sql",
        store="crm",
        label="crm.customers",
        action="delete",
        conditions=(),
        table="customers",
        partial_holds=(hold,),
    )
    config = load_config(DEMO_CONFIG)

    class Context:
        def __init__(self) -> None:
            self.config = config
            self.keys = KEYS

        def connector(self, store: str) -> Connector:
            return MinimalConnector(store)

    assert held_keys_by_target(Context(), [target]) == {}


def _sql_store() -> SqlStore:
    return SqlStore.model_validate(
        {
            "type": "sql",
            "name": "crm",
            "url": "sqlite://",
            "region": "eu-central-1",
            "tables": [{"name": "customers", "identity": [{"column": "email", "kind": "email"}]}],
        }
    )


def _policy() -> Policy:
    return load_config(DEMO_CONFIG).policy
