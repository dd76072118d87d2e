"""Each store type's ``sweep_targets`` hook, as the catalog names it: it resolves, it reads only
its own type's stores, and a type without one has no sweep targets (nor explain syntax)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from config.loader import load_config
from connectors import catalog
from connectors.catalog import StoreSpec
from core.errors import NotFoundError
from retention.explain import explain
from retention.targets import SweepTargets, resolve_targets, sweep_targets_for, sweep_targets_of
from tests.config.conftest import DEMO_DIR

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_the_sql_and_s3_types_name_a_hook_that_resolves() -> None:
    refs = {spec.name: spec.sweep_targets for spec in catalog.STORE_TYPES}
    assert refs["sql"] == "connectors.sql.retention_targets:SqlSweepTargets"
    assert refs["s3"] == "connectors.s3.retention_targets:S3SweepTargets"
    for spec in catalog.STORE_TYPES:
        hook = sweep_targets_of(spec)
        assert (hook is None) == (spec.sweep_targets is None)
        assert hook is None or isinstance(hook, SweepTargets)


def test_a_hook_refuses_a_store_of_another_type() -> None:
    demo = load_config(DEMO_DIR)
    for spec in catalog.STORE_TYPES:
        hook = sweep_targets_of(spec)
        if hook is None:
            continue
        other = next(s for s in demo.inventory.stores if not isinstance(s, spec.config))
        with pytest.raises(TypeError, match=f"store '{other.name}' is not"):
            hook.resolve(other, demo.policy.retention, NOW)


def test_targets_carry_their_store_type_and_the_hooks_label() -> None:
    demo = load_config(DEMO_DIR)
    targets = resolve_targets(demo, NOW)
    assert {(t.store, t.kind) for t in targets} == {
        (s.name, s.type) for s in demo.inventory.stores if s.name in {t.store for t in targets}
    }
    labels = {t.id: t.label for t in targets}
    assert labels["crm.login_events:delete"] == "crm.login_events"
    assert labels["files/demo-ticket-attachments/tickets/"] == (
        "files/demo-ticket-attachments/tickets/"
    )


def test_a_type_without_the_hook_has_no_sweep_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = load_config(DEMO_DIR)
    before = resolve_targets(demo, NOW)
    without_sql = tuple(
        replace(spec, sweep_targets=None) if spec.name == "sql" else spec
        for spec in catalog.STORE_TYPES
    )
    monkeypatch.setattr(catalog, "STORE_TYPES", without_sql)

    after = resolve_targets(demo, NOW)

    assert after == [t for t in before if t.kind != "sql"] and after
    with pytest.raises(LookupError, match="store type 'sql' has no sweep targets"):
        sweep_targets_for("sql")
    with pytest.raises(NotFoundError, match=r"is not a target: use store/bucket/key$"):
        explain(demo, "crm.customers", NOW)
    with pytest.raises(NotFoundError, match=r"^store 'crm' is not an S3 store$"):
        explain(demo, "crm/customers", NOW)


def test_a_hook_that_is_not_sweep_targets_is_refused() -> None:
    spec = replace(catalog.STORE_TYPES[0], sweep_targets="collections:OrderedDict")
    with pytest.raises(TypeError, match=r"gave a OrderedDict, not a retention\.targets"):
        sweep_targets_of(spec)


def test_a_spec_without_the_hook_defaults_to_none() -> None:
    assert StoreSpec(catalog.STORE_TYPES[0].config).sweep_targets is None
