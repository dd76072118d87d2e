"""A small connector implementing ``connectors.base.Connector`` over a JSON file per store.

It behaves like the SQL connector where the flow can tell: identity columns and derived
identities from the inventory, links inside a store, erasure rules and legal holds from
the policy, one all-or-nothing "transaction" per execution (the file is replaced
atomically, and ``on_batch`` is called only after that), re-scans for verification, and
rectification (``Rectifying``, claiming corrections as the SQL connector does). It does
not sweep. It survives process restarts, so crash tests can kill a subprocess and run it
again.

Install it for SQL stores with ``install(monkeypatch)`` (in-process) or by importing
``tests.flows.crash_runner`` (a subprocess). ``fail`` in a store's file makes a method
raise, to test failure reporting.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from config.schema import Policy, StoreConfig
from config.schema.inventory import IdentityColumn
from connectors.base import (
    Action,
    BatchResult,
    Capabilities,
    ExportItem,
    Findings,
    Identities,
    Key,
    MaskSpec,
    OnBatch,
    OnPrepared,
    StorePlan,
    TargetFinding,
    TargetPlan,
    Verification,
    keys_digest,
)
from connectors.sql.config import SqlStore
from connectors.sql.connector import corrected_identities, named_identity_columns, store_changes
from core.errors import TerminalError, TransientError
from core.keys import KeyRing
from core.pseudonym import Pseudonym

BATCH = 2
REDACTED = "[redacted]"
Rows = dict[str, list[dict[str, Any]]]


def data_file(store: SqlStore) -> Path:
    """The JSON file standing in for the store's database (next to its SQLite URL)."""
    database = make_url(store.url.get_secret_value()).database
    assert database, "fake stores need a sqlite:/// URL naming a file"
    return Path(database).with_suffix(".json")


def write_store(path: Path, data: Mapping[str, Any]) -> None:
    """Replace the store's file atomically: the fake's commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_store(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


class FakeConnector:
    """A store whose tables are lists of rows (each with an ``id`` key) in a JSON file."""

    capabilities = Capabilities(
        kind="fake", transactional=True, can_mask=True, versioned=False, derives_identities=True
    )

    def __init__(self, store: SqlStore, policy: Policy) -> None:
        self.name = store.name
        self.store = store
        self.policy = policy
        self.path = data_file(store)

    @classmethod
    def factory(cls, store: StoreConfig, policy: Policy, keys: KeyRing) -> FakeConnector:
        assert isinstance(store, SqlStore)
        return cls(store, policy)

    def _data(self, method: str) -> dict[str, Any]:
        data = read_store(self.path)
        failure = data.get("fail", {}).get(method)
        if failure == "transient":
            raise TransientError(f"store '{self.name}': {method} timed out", store=self.name)
        if failure:
            raise TerminalError(f"store '{self.name}': {failure}", store=self.name)
        return data

    # -- locate ---------------------------------------------------------------------------

    def _find(
        self, rows: Rows, links: Mapping[str, list[str]], identities: Identities
    ) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for table in self.store.tables:
            matched = []
            for row in rows.get(table.name, []):
                by_identity = any(
                    _matches(
                        row.get(i.column), identities.get(i.kind, frozenset()), i.case_insensitive
                    )
                    for i in table.identity
                )
                # A column named like a derived identity (customer_id) is how another
                # store's identity reaches this one.
                by_derived = not table.identity and any(
                    str(row.get(kind)) in values
                    for kind, values in identities.items()
                    if kind in row
                )
                if by_identity or by_derived:
                    matched.append(row)
            if matched:
                found[table.name] = matched
        changed = True
        while changed:  # follow links inside the store to a fixed point
            changed = False
            for child, (column, parent) in links.items():
                parent_ids = {r["id"] for r in found.get(parent, [])}
                have = {r["id"] for r in found.get(child, [])}
                for row in rows.get(child, []):
                    if row.get(column) in parent_ids and row["id"] not in have:
                        found.setdefault(child, []).append(row)
                        changed = True
        return found

    def locate(self, identities: Identities) -> Findings:
        data = self._data("locate")
        found = self._find(data["tables"], data.get("links", {}), identities)
        derived: dict[str, frozenset[str]] = {}
        for table in self.store.tables:
            for d in table.derives:
                values = {str(r[d.column]) for r in found.get(table.name, [])}
                if values:
                    derived[d.name] = derived.get(d.name, frozenset()) | values
        targets = tuple(
            TargetFinding(
                target=table.name,
                keys=tuple(sorted((r["id"],) for r in found[table.name])),
                categories=tuple(sorted({c for cats in table.fields.values() for c in cats})),
                via="fake",
            )
            for table in self.store.tables
            if table.name in found
        )
        return Findings(store=self.name, targets=targets, derived=derived)

    def export(self, findings: Findings) -> Iterator[ExportItem]:
        rows = self._data("export")["tables"]
        for target in findings.targets:
            wanted = {k[0] for k in target.keys}
            for row in rows.get(target.target, []):
                if row["id"] in wanted:
                    yield ExportItem(self.name, target.target, target.categories, dict(row))

    # -- erasure --------------------------------------------------------------------------

    def plan_erasure(
        self, findings: Findings, today: str, subject: Pseudonym | None = None
    ) -> StorePlan:
        day = date.fromisoformat(today)
        steps = []
        for target in reversed(findings.targets):  # children (declared later) first
            table = self.store.table(target.target)
            hold = next(
                (
                    h
                    for h in self.policy.holds_active_on(day)
                    if h.scope.store in (None, self.name)
                    and h.scope.table in (None, target.target)
                    and h.scope.subject in (None, subject)
                ),
                None,
            )
            if hold is not None:
                until = None if hold.ends is None else hold.ends.isoformat()
                steps.append(
                    TargetPlan(
                        target.target, Action.DEFER, target.keys, reason=hold.reason, until=until
                    )
                )
                continue
            masks = []
            reason = None
            for column, categories in table.fields.items():
                for category in categories:
                    rule = self.policy.requests.erasure.rule_for(category)
                    if rule.action == "mask":
                        masks.append(MaskSpec(column, rule.mask or "redact"))
                        reason = rule.reason
            if masks:
                steps.append(
                    TargetPlan(
                        target.target, Action.MASK, target.keys, masks=tuple(masks), reason=reason
                    )
                )
            else:
                steps.append(TargetPlan(target.target, Action.DELETE, target.keys))
        return StorePlan(store=self.name, steps=tuple(steps))

    def execute(
        self, plan: StorePlan, on_batch: OnBatch, on_prepared: OnPrepared | None = None
    ) -> list[BatchResult]:
        data = self._data("execute")
        rows: Rows = data["tables"]
        results: list[BatchResult] = []
        for step in plan.steps:
            if step.action not in (Action.DELETE, Action.MASK):
                continue
            for start in range(0, len(step.keys), BATCH):
                batch = step.keys[start : start + BATCH]
                results.append(self._apply(rows, step, batch))
        from core.crash_points import crash_point  # only when needed

        if on_prepared is not None:
            on_prepared(results)  # the intents, just before the "commit"
        crash_point("executing", self.name)  # before the commit: nothing is changed
        write_store(self.path, data)
        for result in results:  # reported only once committed
            on_batch(result)
        return results

    def _apply(self, rows: Rows, step: TargetPlan, batch: tuple[Key, ...]) -> BatchResult:
        ids = {k[0] for k in batch}
        table = rows.get(step.target, [])
        if step.action is Action.DELETE:
            kept = [r for r in table if r["id"] not in ids]
            affected = len(table) - len(kept)
            rows[step.target] = kept
        else:
            affected = 0
            for row in table:
                if row["id"] in ids and any(row.get(m.column) != REDACTED for m in step.masks):
                    for m in step.masks:
                        row[m.column] = REDACTED
                    affected += 1
        return BatchResult(
            self.name, step.target, step.action, affected, keys_digest(batch), keys=batch
        )

    def in_effect(self, plan: StorePlan, batches: Sequence[BatchResult]) -> list[BatchResult]:
        rows: Rows = self._data("verify")["tables"]
        out = []
        for batch in batches:
            by_id = {r["id"]: r for r in rows.get(batch.target, [])}
            masks = next((s.masks for s in plan.steps if s.target == batch.target and s.masks), ())
            kept = tuple(
                k
                for k in batch.keys
                if (row := by_id.get(k[0])) is None
                or (
                    batch.action is Action.MASK
                    and all(row.get(m.column) == REDACTED for m in masks)
                )
            )
            out.append(
                BatchResult(
                    self.name,
                    batch.target,
                    batch.action,
                    len(kept),
                    keys_digest(kept),
                    keys=kept,
                    intent=batch.intent,
                )
            )
        return out

    def verify(self, identities: Identities, plan: StorePlan) -> Verification:
        data = self._data("verify")
        rows: Rows = data["tables"]
        remaining: dict[str, int] = {}
        deferred: dict[str, int] = {}
        masked: dict[str, int] = {}
        for step in plan.steps:
            ids = {k[0] for k in step.keys}
            present = [r for r in rows.get(step.target, []) if r["id"] in ids]
            if step.action is Action.DELETE:
                remaining[step.target] = len(present)
            elif step.action is Action.MASK:
                bad = [r for r in present if any(r.get(m.column) != REDACTED for m in step.masks)]
                remaining[step.target] = len(bad)
                masked[step.target] = len(present) - len(bad)
            elif step.action is Action.DEFER:
                deferred[step.target] = len(present)
        # Anything of the subject's found again that the plan did not cover also remains.
        covered = {s.target for s in plan.steps}
        for table, matched in self._find(rows, data.get("links", {}), identities).items():
            if table not in covered:
                remaining[table] = len(matched)
        return Verification(self.name, remaining=remaining, deferred=deferred, masked=masked)

    def changes_for(self, changes: Mapping[str, str]) -> dict[str, str]:
        return store_changes(self.store, changes)

    def identity_columns_for(self, name: str) -> tuple[IdentityColumn, ...]:
        return named_identity_columns(self.store, name)

    def identities_after(
        self, identities: Identities, changes: Mapping[str, str]
    ) -> dict[str, frozenset[str]]:
        return corrected_identities(self.store, identities, changes)

    def rectify(self, findings: Findings, changes: Mapping[str, str]) -> list[BatchResult]:
        data = self._data("rectify")
        rows: Rows = data["tables"]
        results = []
        for target in findings.targets:
            ids = {k[0] for k in target.keys}
            updates = {
                name.rpartition(".")[2]: value
                for name, value in changes.items()
                if name.rpartition(".")[0] in ("", target.target)
            }
            table = self.store.table(target.target)
            editable = set(table.fields) | {i.column for i in table.identity}
            updates = {c: v for c, v in updates.items() if c in editable}
            if not updates:
                continue
            affected = 0
            for row in rows.get(target.target, []):
                if row["id"] in ids:
                    row.update(updates)
                    affected += 1
            results.append(
                BatchResult(
                    self.name, target.target, Action.RECTIFY, affected, keys_digest(target.keys)
                )
            )
        write_store(self.path, data)
        return results

    def check_changes(self, changes: Mapping[str, str]) -> list[str]:
        """Names checked as the SQL connector does (no types here): tables, fields, keys."""
        problems = []
        for name in sorted(changes):
            table_name, _, column = name.rpartition(".")
            tables = [t for t in self.store.tables if t.name == table_name or not table_name]
            for table in tables:
                editable = set(table.fields) | {i.column for i in table.identity}
                if column == "id":
                    problems.append(f"{self.name}.{table.name}.id: key columns cannot be rectified")
                elif table_name and column not in editable:
                    problems.append(f"{self.name}.{table.name}.{column}: no such column")
        return problems

    def close(self) -> None:
        pass


def _matches(value: Any, wanted: frozenset[str], case_insensitive: bool) -> bool:
    if value is None:
        return False
    if case_insensitive:
        return str(value).lower() in {w.lower() for w in wanted}
    return str(value) in wanted


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve every SQL store with the fake (S3 stays unregistered: skipped by the flow)."""
    from connectors import registry

    monkeypatch.setitem(registry.CONNECTORS, "sql", FakeConnector.factory)
    monkeypatch.delitem(registry.CONNECTORS, "s3", raising=False)
