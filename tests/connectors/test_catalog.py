"""The store-type catalog: the inventory's union, its messages and checks come from it.

A new store type is a package under ``connectors/`` plus one ``StoreSpec`` line; these
tests add a fake fourth type ("webhook") the way that line would and check that the
union, the problem messages and the cross-reference checks pick it up, and that loading
the configuration imports no connector implementation (nor boto3).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from pydantic import BaseModel, ValidationError, create_model

import config.schema
from config.crossref import check, check_inventory
from config.loader import load_config
from config.problems import LineMap, Problem, Reporter, YamlPath, allowed_keys, validation_problems
from config.schema import Inventory, RetentionRule
from config.schema.inventory import store_union
from config.schema.stores import StoreConfig
from connectors import catalog
from connectors.catalog import InventoryFacts, StoreSpec, owner_of_part, spec_for, type_names
from connectors.processor.config import ProcessorStore
from connectors.s3.config import S3Store
from connectors.sql.config import SqlStore
from tests.config.conftest import DEMO_DIR

REPO = Path(__file__).resolve().parents[2]


class WebhookStore(StoreConfig):
    """A store reached through a webhook: no tables, no buckets."""

    type: Literal["webhook"]
    endpoint: str


SQL = {
    "type": "sql",
    "name": "crm",
    "url": "sqlite://",
    "region": "eu-central-1",
    "tables": [{"name": "customers", "identity": [{"column": "email", "kind": "email"}]}],
}
WEBHOOK = {"type": "webhook", "name": "mailer", "endpoint": "https://mailer.example.com"}


def _with_webhook() -> type[BaseModel]:
    """An inventory model whose union has the catalog's types plus the webhook."""
    union = store_union((*catalog.STORE_TYPES, StoreSpec(WebhookStore)))
    stores: Any = tuple.__class_getitem__((union, ...))  # tuple[union, ...]
    return create_model("WebhookInventory", stores=(stores, ...))


def _problems(model: type[BaseModel], data: dict[str, Any]) -> list[str]:
    sink: list[Problem] = []
    with pytest.raises(ValidationError) as raised:
        model.model_validate(data)
    validation_problems(raised.value, model, data, Reporter("inventory.yaml", LineMap({}), sink))
    return [str(p) for p in sink]


def test_the_catalog_lists_sql_s3_and_processor_in_order() -> None:
    assert type_names() == ("sql", "s3", "processor")
    assert [spec.config for spec in catalog.STORE_TYPES] == [SqlStore, S3Store, ProcessorStore]
    assert [spec.noun for spec in catalog.STORE_TYPES] == [
        "a sql store",
        "an s3 store",
        "a processor store",
    ]


def test_every_spec_is_a_store_config_with_a_single_type_literal() -> None:
    for spec in catalog.STORE_TYPES:
        assert issubclass(spec.config, StoreConfig)
        assert spec.name  # the Literal's one value
        assert set(spec.config.global_parts) <= set(spec.config.policy_parts)
    with pytest.raises(TypeError, match="Literal of one string"):
        _ = StoreSpec(StoreConfig).name


def test_policy_parts_have_one_owner() -> None:
    owner = owner_of_part("table")
    assert owner is not None and owner.config is SqlStore
    owner = owner_of_part("bucket")
    assert owner is not None and owner.config is S3Store
    assert owner_of_part("queue") is None


def test_an_unknown_type_lists_the_catalog_types() -> None:
    problems = _problems(Inventory, {"stores": [{"type": "gcs", "name": "x"}]})
    assert problems == [
        "inventory.yaml:1 stores[0]: unknown type 'gcs' (expected one of 'sql', 's3', 'processor')"
    ]


def test_another_type_is_one_spec_away() -> None:
    model = _with_webhook()
    loaded = model.model_validate({"stores": [SQL, WEBHOOK]})
    stores = loaded.model_dump()["stores"]
    assert [s["type"] for s in stores] == ["sql", "webhook"]

    problems = _problems(model, {"stores": [{"type": "gcs", "name": "x"}]})
    assert problems == [
        "inventory.yaml:1 stores[0]: unknown type 'gcs' "
        "(expected one of 'sql', 's3', 'processor', 'webhook')"
    ]
    # Problems inside the new type are located and explained like any other's.
    problems = _problems(model, {"stores": [SQL, {**WEBHOOK, "endpiont": "x"}]})
    assert problems == [
        "inventory.yaml:1 stores[1].endpiont: unknown field (did you mean 'endpoint'?)"
    ]
    assert allowed_keys(model, ("stores", 1, "webhook")) == [
        "type",
        "name",
        "description",
        "retention_audit",
        "endpoint",
    ]


def _report() -> tuple[Reporter, list[Problem]]:
    sink: list[Problem] = []
    return Reporter("inventory.yaml", LineMap({}), sink), sink


def test_crossref_runs_each_types_hooks_with_its_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[list[tuple[YamlPath, WebhookStore]], InventoryFacts]] = []

    def check_stores(
        stores: Sequence[tuple[YamlPath, WebhookStore]], facts: InventoryFacts, report: Reporter
    ) -> None:
        seen.append((list(stores), facts))
        for path, store in stores:
            if not store.endpoint.startswith("https://"):
                report.add((*path, "endpoint"), "must be an https URL")

    spec = StoreSpec(WebhookStore, check_stores=check_stores)
    monkeypatch.setattr(catalog, "STORE_TYPES", (*catalog.STORE_TYPES, spec))
    sql = SqlStore.model_validate(SQL)
    processor = WebhookStore.model_validate({**WEBHOOK, "endpoint": "http://mailer"})
    # The union was assembled at import; model_construct stands in for a rebuilt one.
    inventory = Inventory.model_construct(stores=cast(Any, (sql, processor)))
    report, sink = _report()
    check_inventory(inventory, report)

    assert [[(path, s.name) for path, s in stores] for stores, _ in seen] == [
        [(("stores", 1), "mailer")]
    ]
    assert seen[0][1].placeholders == frozenset({"email"})
    assert seen[0][1].personal == {"email": "an identity kind"}
    assert [(p.path, p.message) for p in sink] == [
        (("stores", 1, "endpoint"), "must be an https URL")
    ]
    assert spec_for(processor) is spec


def test_a_policy_naming_a_table_of_another_type_says_which_type_has_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(catalog, "STORE_TYPES", (*catalog.STORE_TYPES, StoreSpec(WebhookStore)))
    demo = load_config(DEMO_DIR)
    processor = WebhookStore.model_validate(WEBHOOK)
    inventory = Inventory.model_construct(stores=cast(Any, (*demo.inventory.stores, processor)))
    rule = RetentionRule.model_validate(
        {"id": "r", "store": "mailer", "table": "customers", "age": "30d", "action": "delete"}
    )
    policy = demo.policy.model_copy(update={"retention": (rule,)})
    inventory_report, inventory_problems = _report()
    sink: list[Problem] = []
    check(inventory, policy, inventory_report, Reporter("policy.yaml", LineMap({}), sink))
    assert inventory_problems == []
    assert [(p.path, p.message) for p in sink] == [
        (
            ("retention", 0, "table"),
            "store 'mailer' is a webhook store; a table target needs a sql store",
        )
    ]


def test_stores_answer_the_generic_questions() -> None:
    demo = load_config(DEMO_DIR)
    crm, files = demo.store("crm"), demo.store("files")
    assert {c.kind for c in crm.identity_columns()} == demo.identity_kinds()
    assert crm.derived_names() == demo.derived_identity_names() == {"customer_id"}
    assert files.identity_columns() == () and files.derived_names() == frozenset()
    assert ("buckets", 0, "categories", 0) in {site.path for site in files.category_sites()}
    assert crm.part_names("table") == tuple(t.name for t in demo.stores_of(SqlStore)[0].tables)
    assert files.part_names("table") == ()


def test_config_schema_re_exports_no_store_type_model_and_loads_lazily() -> None:
    """A store type's model is imported from its own package, never from config.schema."""
    assert config.schema.StoreConfig is StoreConfig
    for spec in catalog.STORE_TYPES:
        name = spec.config.__name__
        assert name not in config.schema.__all__
        with pytest.raises(AttributeError, match=f"no attribute '{name}'"):
            getattr(config.schema, name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = config.schema.Nope


ALLOWED_CONNECTOR_MODULES = ("catalog", "config", "config_checks")


@pytest.mark.parametrize(
    "entry",
    [
        "config.loader",
        "connectors.catalog",
        "connectors.sql.config",
        "connectors.s3.config",
        "connectors.sql.config_checks, config.schema.model",
    ],
)
def test_loading_the_configuration_imports_no_connector_or_driver(entry: str) -> None:
    """Each import order works in a fresh process, and loads only models and checks."""
    code = (
        f"import sys, {entry}\n"
        "import config.loader\n"  # whatever came first, the loader imports after it
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert not {m for m in loaded if m.split(".")[0] in ("boto3", "botocore", "prefect")}
    connector_modules = {m for m in loaded if m.startswith("connectors.")}
    assert {m for m in connector_modules if m.count(".") == 1} <= {
        "connectors.catalog",
        *(f"connectors.{spec.name}" for spec in catalog.STORE_TYPES),
    }
    assert {m.rsplit(".", 1)[1] for m in connector_modules if m.count(".") == 2} <= set(
        ALLOWED_CONNECTOR_MODULES
    )


def test_connector_modules_import_first_in_a_fresh_process() -> None:
    """No cycle when a connector (which imports its own config) is imported before config."""
    for entry in ("connectors.sql.connector", "connectors.s3.connector, connectors.registry"):
        result = subprocess.run(
            [sys.executable, "-c", f"import {entry}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
