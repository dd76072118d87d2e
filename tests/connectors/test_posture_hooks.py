"""Each store type's posture hook, as the catalog names it: it resolves, it reads only its
own type's stores, and its facts carry what the generic check needs (key, kind, judging)."""

from __future__ import annotations

from datetime import date

import pytest

from config.loader import load_config
from connectors import catalog
from connectors.hooks import load_hook
from connectors.sql.posture import gather_posture
from tests.config.conftest import DEMO_DIR

TODAY = date(2026, 11, 26)


def test_every_posture_reference_in_the_catalog_resolves_to_a_function() -> None:
    refs = {spec.name: spec.posture for spec in catalog.STORE_TYPES}
    assert refs == {
        "sql": "connectors.sql.posture:gather_posture",
        "s3": "connectors.s3.posture:gather_posture",
        "processor": "connectors.processor.posture:gather_posture",
    }
    for ref in refs.values():
        assert ref is not None and callable(load_hook(ref))


def test_a_hook_refuses_a_store_of_another_type() -> None:
    demo = load_config(DEMO_DIR)
    for spec in catalog.STORE_TYPES:
        assert spec.posture is not None
        hook = load_hook(spec.posture)
        other = next(s for s in demo.inventory.stores if not isinstance(s, spec.config))
        with pytest.raises(TypeError, match=f"store '{other.name}' is not"):
            hook(demo, other, account_wide=False)


def test_the_sql_hook_reads_one_database_on_an_engine_of_its_own() -> None:
    demo = load_config(DEMO_DIR)
    crm = demo.store("crm")
    assert load_hook(catalog.spec_for(crm).posture or "") is gather_posture
    (facts,) = gather_posture(demo, crm, account_wide=True)
    assert (facts.posture_key, facts.counted_as) == ("store:crm", "databases")
    assert facts.backend == "sqlite" and facts.tls_required is None
    assert facts.findings(demo.policy.transfers, TODAY) == []
