"""Assessing an incident's scope from the stores: counts, categories, regions, encryption.

Each scope part is counted by its store (``ImpactCounting``: a set-based statement or one
listing); the parts are combined here. Distinct subjects across parts are counted per
identity (``customer_id``, ``email``): one part's own count when only one part holds
subjects, else the union of the parts' subject keys, streamed into a set per identity
(memory grows with the affected subjects, not the records). Whether the data was
intelligible comes from each store's encryption at rest (its posture facts, or what the
inventory declares) and whether the key was compromised (the incident says). The affected
subjects themselves leave the stores only in an encrypted package (``write_subjects_package``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import cast

from config.schema.model import LifecycleConfig
from connectors.base import ExportItem, ImpactCounting
from core.errors import InvalidInput, NotFoundError
from core.package import Destination, PackageInfo, Recipient, write_package
from incidents.assessment import Assessment, AtRestFact, PartAssessment
from incidents.rules import judge_risk
from incidents.scope import IncidentScope, ScopePart

UNRESOLVED = "unresolved"
"""The package target of a subject whose identities no store could give back (only the
key it was counted by is known)."""


def scope_problems(config: LifecycleConfig, scope: IncidentScope) -> list[str]:
    """Every problem with ``scope`` against the inventory (empty: it can be assessed)."""
    problems: list[str] = []
    for part in scope.parts:
        try:
            store = config.store(part.store)
        except NotFoundError:
            problems.append(f"{part.label}: no store named '{part.store}' in the inventory")
            continue
        problems += store.scope_problems(part)
    return problems


def check_scope(config: LifecycleConfig, scope: IncidentScope) -> None:
    """InvalidInput listing every problem with ``scope`` (nothing is recorded then)."""
    problems = scope_problems(config, scope)
    if problems:
        raise InvalidInput("scope: " + "; ".join(problems))


def assess_part(
    counter: ImpactCounting, store: str, part: ScopePart, at_rest: AtRestFact
) -> PartAssessment:
    """One part counted by its store."""
    count = counter.count_impact(part)
    return PartAssessment(
        label=part.label,
        store=store,
        records=count.records,
        subjects=count.subjects,
        identity=count.identity,
        categories=tuple(sorted(count.categories)),
        region=count.region,
        clients=dict(count.clients),
        at_rest=at_rest,
    )


def distinct_subjects(
    parts: Sequence[PartAssessment],
    counters: Sequence[ImpactCounting],
    scope: IncidentScope,
) -> dict[str, int]:
    """Distinct subjects per identity over every part (``counters`` and ``scope.parts``
    in the order of ``parts``). One part holding subjects: its own count, no extra read."""
    holding = [i for i, p in enumerate(parts) if p.subjects and p.identity]
    if len(holding) == 1:
        only = parts[holding[0]]
        return {cast(str, only.identity): only.subjects}
    seen: dict[str, set[str]] = {}
    for i in holding:
        keys = seen.setdefault(cast(str, parts[i].identity), set())
        keys.update(counters[i].affected_keys(scope.parts[i]))
    return {identity: len(keys) for identity, keys in seen.items()}


def combine(
    config: LifecycleConfig,
    parts: Sequence[PartAssessment],
    subjects: Mapping[str, int],
    *,
    kinds: Sequence[str],
    key_compromised: bool | None,
) -> Assessment:
    """The whole assessment, judged by the policy's risk rules."""
    categories = sorted({c for p in parts if p.records for c in p.categories})
    high = [c for c in categories if _high_risk(config, c)]
    clients: dict[str, int] = {}
    for p in parts:
        for client, count in p.clients.items():
            clients[client] = max(clients.get(client, 0), count)  # a lower bound across parts
    affected = [p for p in parts if p.records]
    unintelligible = key_compromised is False and all(p.unintelligible for p in affected)
    assessment = Assessment(
        parts=tuple(parts),
        records=sum(p.records for p in parts),
        subjects=sum(subjects.values()),
        subjects_by=tuple(sorted(subjects)),
        categories=tuple(categories),
        high_risk_categories=tuple(high),
        regions=tuple(sorted({p.region for p in affected if p.region})),
        clients=dict(sorted(clients.items())),
        key_compromised=key_compromised,
        unintelligible=unintelligible,
    )
    return judge_risk(config.policy.incidents, assessment, tuple(kinds))


def _high_risk(config: LifecycleConfig, category: str) -> bool:
    try:
        return config.category(category).high_risk
    except NotFoundError:
        return False


def affected_subjects(
    scope: IncidentScope,
    counters: Sequence[ImpactCounting],
    identities: Sequence[str | None],
    resolvers: Sequence[tuple[str, ImpactCounting]],
    *,
    chunk: int = 1000,
) -> Iterator[ExportItem]:
    """Each affected subject once, with the identities a store gives back for it.

    ``identities`` are what the assessment counted each part's subjects by.

    Keys are gathered per identity (deduplicated across parts), then resolved in chunks
    by every store that holds that identity's subjects (``subject_identities``); a key no
    store resolves is still listed, with only that key."""
    keys: dict[str, set[str]] = {}
    for part, counter, identity in zip(scope.parts, counters, identities, strict=True):
        if identity is None:
            continue
        keys.setdefault(identity, set()).update(counter.affected_keys(part))
    for identity, values in sorted(keys.items()):
        ordered = sorted(values)
        for start in range(0, len(ordered), chunk):
            batch = ordered[start : start + chunk]
            resolved: set[str] = set()
            for _store, resolver in resolvers:
                for item in resolver.subject_identities(identity, batch):
                    value = str(item.data.get(identity))
                    if value in resolved or value not in values:
                        continue
                    resolved.add(value)
                    yield item
            for value in batch:
                if value not in resolved:
                    yield ExportItem(UNRESOLVED, UNRESOLVED, (), {identity: value})


def write_subjects_package(
    incident_id: str,
    scope: IncidentScope,
    counters: Sequence[ImpactCounting],
    identities: Sequence[str | None],
    resolvers: Sequence[tuple[str, ImpactCounting]],
    *,
    destination: Path | Destination,
    recipient: Recipient,
) -> PackageInfo:
    """The encrypted package of the affected subjects (one record each), for notifying them."""
    manifest = {
        "incident_id": incident_id,
        "kind": "incident-affected-subjects",
        "parts": [p.label for p in scope.parts],
    }
    return write_package(
        affected_subjects(scope, counters, identities, resolvers),
        manifest,
        destination,
        recipient,
        name=f"{incident_id}-subjects.lcpkg",
    )
