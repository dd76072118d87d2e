"""``SqlConnector``: one SQL store of the inventory behind the ``Connector`` protocol.

It owns one engine (``core.engines.make_engine`` with the store URL, disposed on
``close``), reflects and checks the schema once, computes the index warnings once, and
delegates each job to the module that does it: ``locate``, ``export``, ``planning``,
``execute``, ``verify`` and ``rectify``. SQLAlchemy errors are translated at this
boundary: lost connections, lock timeouts and other operational errors become
``TransientError`` (a retry may succeed), everything else ``TerminalError``; messages
name store, table and operation only, never ``str(e)`` (it carries bound parameters).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from config.schema import Policy
from config.schema.inventory import IdentityColumn
from connectors.base import (
    Action,
    BatchResult,
    Capabilities,
    ExportItem,
    Findings,
    Identities,
    ImpactCount,
    Key,
    OnBatch,
    OnPrepared,
    StorePlan,
    SubjectValues,
    Verification,
)
from connectors.sql.config import SqlStore
from connectors.sql.doctor import missing_indexes
from connectors.sql.export import export_rows
from connectors.sql.locate import locate
from connectors.sql.schema import StoreSchema, reflect_store, sql_errors
from core.engines import make_engine
from core.keys import KeyRing
from core.pseudonym import Pseudonym, Pseudonymizer
from retention.targets import SweepTarget

if TYPE_CHECKING:
    from connectors.sql.sweep import SqlSweeper
    from incidents.scope import ScopePart

_TOUCHING = (Action.DELETE, Action.MASK, Action.UNLINK)


def store_changes(store: SqlStore, changes: Mapping[str, str]) -> dict[str, str]:
    """The corrections that name one of ``store``'s tables (``table.column``) or fields."""
    picked: dict[str, str] = {}
    for name, value in changes.items():
        table, _, column = name.rpartition(".")
        if table:
            if any(t.name == table for t in store.tables):
                picked[name] = value
        elif any(
            column in t.fields or column in {i.column for i in t.identity} for t in store.tables
        ):
            picked[name] = value
    return picked


def named_identity_columns(store: SqlStore, name: str) -> tuple[IdentityColumn, ...]:
    """The identity columns the correction ``name`` (``table.column`` or column) writes."""
    table, _, column = name.rpartition(".")
    return tuple(
        ident
        for t in store.tables
        if not table or t.name == table
        for ident in t.identity
        if ident.column == column
    )


def corrected_identities(
    store: SqlStore, identities: Identities, changes: Mapping[str, str]
) -> dict[str, frozenset[str]]:
    """``identities`` with corrected identity columns' new values added (for re-locating)."""
    updated = dict(identities)
    for table in store.tables:
        for ident in table.identity:
            for name in (f"{table.name}.{ident.column}", ident.column):
                if changes.get(name):
                    updated[ident.kind] = updated.get(ident.kind, frozenset()) | {changes[name]}
    return updated


class SqlConnector:
    """A SQL store: locate, export, plan, execute, verify and rectify a subject's rows.

    Optional capabilities (``connectors.base``): ``Rectifying``, ``Sweeping``,
    ``SweepFinishing``, ``SubjectScanning``, ``BatchLocating`` and ``ImpactCounting``.
    """

    capabilities = Capabilities(
        kind="sql", transactional=True, can_mask=True, versioned=False, derives_identities=True
    )

    def __init__(
        self,
        store: SqlStore,
        policy: Policy,
        *,
        keys: KeyRing,
        batch_size: int = 500,
        engine: Engine | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.name = store.name
        self.store = store
        self.policy = policy
        self.batch_size = batch_size
        self._keys = keys
        self._engine = engine
        self._owns_engine = engine is None
        self._schema: StoreSchema | None = None
        self._warnings: tuple[str, ...] | None = None
        self._lock = threading.Lock()  # tasks on a thread pool may share one connector

    def __repr__(self) -> str:
        return f"SqlConnector({self.name!r})"

    @property
    def engine(self) -> Engine:
        """The store's engine, created on first use."""
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self.store.url.get_secret_value())
            return self._engine

    @property
    def schema(self) -> StoreSchema:
        """The reflected, checked schema (reflected once; ConfigError if config mismatches)."""
        engine = self.engine
        with self._lock:
            if self._schema is None:
                self._schema = reflect_store(engine, self.store)
            return self._schema

    def index_warnings(self) -> tuple[str, ...]:
        """Missing-index warnings for locate, computed once per connector."""
        schema, engine = self.schema, self.engine
        with self._lock:
            if self._warnings is None:
                with sql_errors(self.name, "checking indexes"):
                    advice = missing_indexes(engine, schema, self.store)
                self._warnings = tuple(a.warning for a in advice)
            return self._warnings

    def locate(self, identities: Identities) -> Findings:
        """The subject's rows and derived identities in this store."""
        schema, warnings = self.schema, self.index_warnings()
        with sql_errors(self.name, "locate"):
            return locate(
                self.engine, schema, self.store, identities, self.batch_size, warnings=warnings
            )

    def locate_many(self, subjects: Sequence[Identities]) -> list[Findings]:
        """Per subject, what ``locate`` finds, in set-based statements (``sql.locate_many``)."""
        from connectors.sql.locate_many import locate_many

        schema, warnings = self.schema, self.index_warnings()
        with sql_errors(self.name, "locate"):
            return locate_many(
                self.engine, schema, self.store, subjects, self.batch_size, warnings=warnings
            )

    def export(self, findings: Findings) -> Iterator[ExportItem]:
        """Every found row, all columns, JSON-safe, streamed by key batches."""
        return export_rows(self.engine, self.schema, findings, self.batch_size)

    def plan_erasure(
        self, findings: Findings, today: str, subject: Pseudonym | None = None
    ) -> StorePlan:
        """Delete, mask, defer or keep per found row, under the policy and legal holds.

        Rows that rows outside the request reference are read first (``shared``) and kept;
        execution checks them again in its own transaction.
        """
        from connectors.sql.planning import plan_erasure
        from connectors.sql.shared import findings_shared

        schema = self.schema
        with sql_errors(self.name, "checking shared rows"), self.engine.connect() as conn:
            shared = findings_shared(conn, schema, findings, self.batch_size)
        return plan_erasure(
            schema,
            self.store,
            findings,
            self.policy.requests.erasure,
            self.policy.legal_holds,
            date.fromisoformat(today),
            subject,
            shared,
        )

    def execute(
        self, plan: StorePlan, on_batch: OnBatch, on_prepared: OnPrepared | None = None
    ) -> list[BatchResult]:
        """Carry out ``plan`` in one transaction, then make the erased values unrecoverable.

        ``on_prepared`` gets every batch just before the COMMIT (see ``Connector.execute``).
        """
        from connectors.sql.execute import execute_plan, finish_secure_erasure
        from connectors.sql.masks import Masker

        schema = self.schema
        with sql_errors(self.name, "erasure"):
            results = execute_plan(
                self.engine,
                schema,
                plan,
                Masker(self._keys),
                on_batch,
                self.batch_size,
                on_prepared,
            )
        touched = sorted({s.target for s in plan.steps if s.action in _TOUCHING and s.keys})
        with sql_errors(self.name, "secure erasure"):
            finish_secure_erasure(
                self.engine, schema, touched, bool(self.store.vacuum_after_erasure)
            )
        return results

    def in_effect(self, plan: StorePlan, batches: Sequence[BatchResult]) -> list[BatchResult]:
        """Per prepared batch, the keys whose effect is in the store (``sql.effects``)."""
        from connectors.sql.effects import in_effect

        with sql_errors(self.name, "checking an interrupted erasure"):
            return in_effect(self.engine, self.schema, plan, batches)

    def verify(self, identities: Identities, plan: StorePlan) -> Verification:
        """Locate again and report anything the plan said would be gone."""
        from connectors.sql.masks import Masker
        from connectors.sql.verify import verify_erasure

        after = self.locate(identities)
        with sql_errors(self.name, "verify"):
            return verify_erasure(self.engine, self.schema, plan, after, Masker(self._keys))

    # -- Rectifying ------------------------------------------------------------------------

    def changes_for(self, changes: Mapping[str, str]) -> dict[str, str]:
        """The corrections naming this store's tables (``table.column``) or fields."""
        return store_changes(self.store, changes)

    def identity_columns_for(self, name: str) -> tuple[IdentityColumn, ...]:
        """The identity columns the correction ``name`` writes."""
        return named_identity_columns(self.store, name)

    def identities_after(
        self, identities: Identities, changes: Mapping[str, str]
    ) -> dict[str, frozenset[str]]:
        """``identities`` plus the corrected identity columns' new values."""
        return corrected_identities(self.store, identities, changes)

    def rectify(self, findings: Findings, changes: Mapping[str, str]) -> list[BatchResult]:
        """Correct the subject's found rows (``changes``: ``table.column`` or column -> text)."""
        from connectors.sql.rectify import rectify

        with sql_errors(self.name, "rectify"):
            return rectify(self.engine, self.schema, self.store, findings, changes, self.batch_size)

    def check_changes(self, changes: Mapping[str, str]) -> list[str]:
        """Corrections checked against the reflected columns, as ``rectify`` checks them."""
        from connectors.sql.rectify import check_changes

        return check_changes(self.schema, self.store, changes)

    # -- Sweeping, SweepFinishing, SubjectScanning -----------------------------------------

    def sweeper(
        self, target: SweepTarget, *, today: date, held_keys: frozenset[Key] = frozenset()
    ) -> SqlSweeper:
        """A retention sweeper for one table target (``today`` is unused: no object locks)."""
        from connectors.sql.masks import Masker
        from connectors.sql.sweep import SqlSweeper

        del today
        with sql_errors(self.name, "sweep", target.table):
            return SqlSweeper(self.engine, self.schema, target, Masker(self._keys), held_keys)

    def target_keys(self, target: SweepTarget, findings: Findings) -> frozenset[Key]:
        """Row keys of ``findings`` in the target's table (held keys for ``sweeper``)."""
        if findings.store != self.name or target.store != self.name:
            return frozenset()
        return frozenset(
            k for found in findings.targets if found.target == target.table for k in found.keys
        )

    def finish_sweep(self, target: SweepTarget) -> None:
        """After a sweep target: make what it removed unrecoverable (as after an erasure)."""
        from connectors.sql.execute import finish_secure_erasure

        with sql_errors(self.name, "secure erasure after sweep", target.table):
            finish_secure_erasure(
                self.engine,
                self.schema,
                [target.table or ""],
                bool(self.store.vacuum_after_erasure),
            )

    def scan_subjects(self, held: frozenset[str], pseudonymizer: Pseudonymizer) -> SubjectValues:
        """The held subjects' identities, read from every identity column (``sql.holds``)."""
        from connectors.sql.holds import scan_subjects

        schema = self.schema
        with sql_errors(self.name, "subject scan for legal holds"):
            return scan_subjects(self.engine, schema, self.store, held, pseudonymizer)

    # -- ImpactCounting ---------------------------------------------------------------------

    def count_impact(self, part: ScopePart) -> ImpactCount:
        """Records, distinct subjects and clients of an incident scope part (``sql.impact``)."""
        from connectors.sql.impact import count_impact, part_query

        schema = self.schema
        return count_impact(self.engine, schema, part_query(schema, self.store, part))

    def affected_keys(self, part: ScopePart) -> Generator[str, None, None]:
        """Each distinct subject of ``part`` once, by ``count_impact``'s identity, streamed."""
        from connectors.sql.impact import affected_keys, part_query

        schema = self.schema
        return affected_keys(self.engine, schema, part_query(schema, self.store, part))

    def subject_identities(self, identity: str, values: Sequence[str]) -> Iterator[ExportItem]:
        """The identity columns of the subject rows holding ``values`` of ``identity``."""
        from connectors.sql.impact_identities import subject_identities

        return subject_identities(self.engine, self.schema, self.store, identity, values)

    def close(self) -> None:
        """Dispose of the engine this connector created (an injected one is the caller's)."""
        with self._lock:
            if self._engine is not None and self._owns_engine:
                self._engine.dispose()
                self._engine = None
