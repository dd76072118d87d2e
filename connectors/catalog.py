"""The store types: one ``StoreSpec`` line per type, its configuration model and its hooks.

A store type is a package under ``connectors/`` with a configuration model (a
``config.schema.stores.StoreConfig`` subclass whose ``type`` is a Literal) and, where it
has type-specific configuration checks, a ``config_checks`` module. Adding a type is one
line in ``STORE_TYPES`` (plus its imports): the inventory's ``stores`` union
(``config.schema.inventory``) and the cross-reference checks (``config.crossref``) are
assembled from this list, and an unknown ``type:`` lists the types registered here.

Importing this module loads the configuration models and checks only: no driver, no
boto3, no connector implementation (``connectors.registry`` maps types to those).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args

from config.problems import Reporter, YamlPath
from config.schema.stores import StoreConfig
from connectors.processor import config_checks as processor_checks
from connectors.processor.config import ProcessorStore
from connectors.s3 import config_checks as s3_checks
from connectors.s3.config import S3Store
from connectors.sql import config_checks as sql_checks
from connectors.sql.config import SqlStore

if TYPE_CHECKING:
    from config.schema.policy import RetentionRule

StoreT = TypeVar("StoreT", bound=StoreConfig)


@dataclass(frozen=True)
class InventoryFacts:
    """What a type's inventory checks may need to know about the other stores."""

    placeholders: frozenset[str]
    """Names a key template may use: every identity kind and derived identity name."""
    personal: Mapping[str, str] = field(default_factory=dict)
    """Placeholder -> why values of it are personal data (``config.crossref_keys``)."""


@dataclass(frozen=True)
class StoreSpec(Generic[StoreT]):
    """One store type: its configuration model and its configuration-check hooks.

    The hooks are optional; each is called with stores of this type only:

    - ``check_stores(stores, facts, report)``: every store of the type in the inventory,
      each with the YAML path it is declared at (checks across them, such as unique
      bucket names, see them all at once);
    - ``check_rule(store, rule, path, report)``: a retention rule targeting a part of
      ``store`` (a ``policy_parts`` key naming a declared part);
    - ``check_category_rule(store, rule, path, report)``: a retention rule on a data
      category, once per store of the type.
    """

    config: type[StoreT]
    article: Literal["a", "an"] = "a"
    """For messages: "a sql store", "an s3 store"."""
    check_stores: (
        Callable[[Sequence[tuple[YamlPath, StoreT]], InventoryFacts, Reporter], None] | None
    ) = None
    check_rule: Callable[[StoreT, RetentionRule, YamlPath, Reporter], None] | None = None
    check_category_rule: Callable[[StoreT, RetentionRule, YamlPath, Reporter], None] | None = None
    doctor: str | None = None
    """``"package.module:function"``, imported when run (``connectors.hooks``): the live
    checks of one store, ``(store) -> connectors.doctor_report.DoctorReport``, for
    ``lifecycle doctor`` and ``config validate --live``. None: the type has no live checks."""
    retention_commands: str | None = None
    """``"package.module:function"``, imported when the CLI starts: ``(app: typer.Typer)
    -> None`` adds the type's own commands to ``lifecycle retention`` (S3: s3-lifecycle)."""
    posture: str | None = None
    """``"package.module:function"``, imported when run (``connectors.hooks``): the
    ``transfers.posture.PostureHook`` reading one store's posture facts for the transfer
    check. None: the check reports the type's stores as having no posture facts."""
    sweep_targets: str | None = None
    """``"package.module:Class"``, imported when run (``connectors.hooks``): a class whose
    instances are ``retention.targets.SweepTargets``, resolving the type's retention
    sweep targets, the reach of legal holds into them and ``retention explain``'s
    subjects. None: the type's stores have no sweep targets."""

    @property
    def name(self) -> str:
        """The ``type:`` value of this type's stores (the model's ``type`` Literal)."""
        annotation = self.config.model_fields["type"].annotation
        values = get_args(annotation)
        if len(values) != 1 or not isinstance(values[0], str):
            raise TypeError(f"{self.config.__name__}.type must be a Literal of one string")
        return values[0]

    @property
    def noun(self) -> str:
        """``a sql store``: the type named in a message."""
        return f"{self.article} {self.name} store"

    def run_store_checks(
        self,
        stores: Sequence[tuple[YamlPath, StoreConfig]],
        facts: InventoryFacts,
        report: Reporter,
    ) -> None:
        """Run ``check_stores`` on the stores of this type among ``stores``."""
        if self.check_stores is not None:
            mine = [(path, store) for path, store in stores if isinstance(store, self.config)]
            self.check_stores(mine, facts, report)

    def run_rule_check(
        self, store: StoreConfig, rule: RetentionRule, path: YamlPath, report: Reporter
    ) -> None:
        """Run ``check_rule`` if ``store`` is of this type."""
        if self.check_rule is not None and isinstance(store, self.config):
            self.check_rule(store, rule, path, report)

    def run_category_rule_check(
        self, store: StoreConfig, rule: RetentionRule, path: YamlPath, report: Reporter
    ) -> None:
        """Run ``check_category_rule`` if ``store`` is of this type."""
        if self.check_category_rule is not None and isinstance(store, self.config):
            self.check_category_rule(store, rule, path, report)


STORE_TYPES: tuple[StoreSpec[Any], ...] = (
    StoreSpec(
        SqlStore,
        check_stores=sql_checks.check_stores,
        check_rule=sql_checks.check_rule,
        check_category_rule=sql_checks.check_category_rule,
        doctor="connectors.sql.doctor:doctor_report",
        posture="connectors.sql.posture:gather_posture",
        sweep_targets="connectors.sql.retention_targets:SqlSweepTargets",
    ),
    StoreSpec(
        S3Store,
        article="an",
        check_stores=s3_checks.check_stores,
        retention_commands="connectors.s3.cli:add_retention_commands",
        posture="connectors.s3.posture:gather_posture",
        sweep_targets="connectors.s3.retention_targets:S3SweepTargets",
    ),
    StoreSpec(
        ProcessorStore,
        check_stores=processor_checks.check_stores,
        doctor="connectors.processor.doctor:doctor_report",
        posture="connectors.processor.posture:gather_posture",
    ),
)
"""Every store type, in the order an unknown ``type:`` lists them."""


def type_names() -> tuple[str, ...]:
    """The registered ``type:`` values, in catalog order."""
    return tuple(spec.name for spec in STORE_TYPES)


def spec_for(store: StoreConfig) -> StoreSpec[Any]:
    """The spec of ``store``'s type; LookupError for a model no spec lists."""
    for spec in STORE_TYPES:
        if isinstance(store, spec.config):
            return spec
    raise LookupError(f"store '{store.name}': type '{store.type}' is not in the catalog")


def owner_of_part(key: str) -> StoreSpec[Any] | None:
    """The store type whose stores have parts named by ``key`` (``table``, ``bucket``)."""
    for spec in STORE_TYPES:
        if key in spec.config.policy_parts:
            return spec
    return None
