"""Legal holds on a subject (by pseudonym) turned into the keys a sweep must leave alone.

A hold names a subject only by pseudonym, and a pseudonym cannot be reversed. So every
store that can scan for subjects (``SubjectScanning``: it reads its identity values and
pseudonymizes each) is asked for the held subjects' identities; the subject is then
located across every store exactly as a request would be (derived identities from one
store feed the next), and each sweeping store says which of those keys fall within its
targets (``Sweeping.target_keys``). Only the held subjects' keys are kept in memory; the
identities themselves never leave this function.

The scan costs one pass over the identity values, and runs only when a sweep target has
a subject hold in force.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from config.schema.model import LifecycleConfig
from connectors.base import (
    Connector,
    Findings,
    Identities,
    Key,
    SubjectScanning,
    SubjectValues,
    Sweeping,
    merge_identities,
)
from connectors.registry import supports
from core.keys import KeyRing
from core.pseudonym import Pseudonymizer
from retention.targets import SweepTarget


class HoldsContext(Protocol):
    """What the hold resolution needs from a sweep (``engine.sweep_runner.SweepContext``)."""

    config: LifecycleConfig
    keys: KeyRing

    def connector(self, store: str) -> Connector: ...


def _scan(ctx: HoldsContext, held: frozenset[str]) -> SubjectValues:
    """Pseudonym -> identity kind -> values, from every store that scans for subjects."""
    maker = Pseudonymizer(ctx.keys.pseudonym_hmac)
    subjects: SubjectValues = {}
    for store in ctx.config.inventory.stores:
        connector = ctx.connector(store.name)
        if not supports(connector, SubjectScanning):
            continue
        for psn, kinds in connector.scan_subjects(held, maker).items():
            into = subjects.setdefault(psn, {})
            for kind, values in kinds.items():
                into.setdefault(kind, set()).update(values)
    return subjects


def held_keys_by_target(
    ctx: HoldsContext, targets: Sequence[SweepTarget]
) -> dict[str, frozenset[Key]]:
    """Per target id, the keys (as its store's sweeper takes them) of subjects under a hold."""
    wanted = {h.scope.subject for t in targets for h in t.subject_holds if h.scope.subject}
    if not wanted:
        return {}
    subjects = _scan(ctx, frozenset(str(p) for p in wanted))
    keys: dict[str, set[Key]] = {}
    for psn, kinds in subjects.items():
        identities: Identities = {k: frozenset(v) for k, v in kinds.items()}
        for findings in _locate_everywhere(ctx, identities):
            for target in targets:
                if findings.store != target.store:
                    continue
                if not any(h.scope.subject == psn for h in target.subject_holds):
                    continue
                connector = ctx.connector(target.store)
                if supports(connector, Sweeping):  # else the sweep skips the target
                    keys.setdefault(target.id, set()).update(
                        connector.target_keys(target, findings)
                    )
    return {t: frozenset(k) for t, k in keys.items()}


def _locate_everywhere(ctx: HoldsContext, identities: Identities) -> Iterator[Findings]:
    """Locate the subject store by store, feeding derived identities forward."""
    known = dict(identities)
    for store in ctx.config.inventory.stores:
        findings = ctx.connector(store.name).locate(known)
        known = merge_identities(known, findings.derived)
        yield findings
