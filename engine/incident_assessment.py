"""Assessing a declared breach from the stores, and the affected-subjects package.

Prefect-free, so the CLI and the ``incident-assessment`` flow share it: the flow runs each
step below as a task (parts counted concurrently), ``assess_incident`` runs them in turn.

1. ``assessable``: the incident must be a declared breach with a scope the inventory accepts.
2. ``store_at_rest``: each store's encryption at rest, from its type's posture hook (one
   read per store, not per part); ``part_at_rest`` picks the facts of the part's resource
   (its bucket, or the store itself).
3. ``count_part``: records, distinct subjects, categories, region of one part, counted by
   the store's connector (``ImpactCounting``: set-based statements or one listing).
4. ``subjects_by_identity``: distinct subjects across parts (one part: its own count).
5. ``record``: combined, judged by the policy's risk rules, the notifications due (the
   authority's 72 h run from ``aware_at``) and recorded with the ledger event.

Nothing here returns, logs or raises a key or value: counts, names of stores, tables,
categories and regions only. Affected subjects leave the stores only in the encrypted
package of ``subjects_package``, whose ledger event holds its digest and counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import cast

from audit.events import EventStatus
from audit.ledger import Ledger
from config.schema.model import LifecycleConfig
from connectors.base import Connector, ImpactCounting
from connectors.catalog import spec_for
from connectors.hooks import load_hook
from connectors.registry import connector_for, has, require, supports
from core.errors import LifecycleError, TerminalError
from core.keys import KeyRing
from core.package import Destination, PackageInfo, Recipient
from engine.events import ledger_event
from incidents.assess import assess_part as _assess_part
from incidents.assess import check_scope, combine, distinct_subjects, write_subjects_package
from incidents.assessment import Assessment, AtRestFact, PartAssessment
from incidents.rules import NotificationDue, notifications
from incidents.scope import IncidentScope, ScopePart
from state.incidents import BREACH, Incident, IncidentRegister
from transfers.at_rest import AtRest, at_rest_of
from transfers.posture import NO_POSTURE, PostureHook

ASSESSMENT = "incident assessment"
"""The capability in words, as ``Unsupported`` names it."""

Connectors = Callable[[str], Connector]
"""A store's connector by store name, owned by the caller (``StoreConnectors``)."""


class StoreConnectors:
    """Each store's connector, made on first use and shared by every part of the store
    (and by threads: engines pool connections, reflected schemas are read only); all
    closed when the block ends. Call it with a store name."""

    def __init__(self, config: LifecycleConfig, keys: KeyRing) -> None:
        self._config = config
        self._keys = keys
        self._open: dict[str, Connector] = {}
        self._lock = threading.Lock()

    def __call__(self, store: str) -> Connector:
        with self._lock:
            if store not in self._open:
                declared = self._config.store(store)
                self._open[store] = connector_for(declared, self._config.policy, self._keys)
            return self._open[store]

    def close(self) -> None:
        """Close every connector made (errors closing one do not stop the others)."""
        with self._lock:
            made, self._open = list(self._open.values()), {}
        for connector in made:
            try:
                connector.close()
            except Exception:
                continue

    def __enter__(self) -> StoreConnectors:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def counter(connectors: Connectors, store: str) -> ImpactCounting:
    """The store's connector as ``ImpactCounting`` (``Unsupported`` naming the store if not)."""
    return require(connectors(store), ImpactCounting, ASSESSMENT)


# -- the steps ----------------------------------------------------------------------------


def assessable(config: LifecycleConfig, register: IncidentRegister, incident_id: str) -> Incident:
    """The incident, if it can be assessed: a declared breach whose scope the inventory
    accepts; TerminalError (or InvalidInput listing the scope's problems) otherwise."""
    incident = register.get(incident_id)
    if incident.state != BREACH:
        raise TerminalError(
            f"incident {incident_id} is '{incident.state}': only a declared breach is assessed "
            "(declare it first)"
        )
    if incident.scope is None:
        raise TerminalError(f"incident {incident_id} has no scope yet: record its scope first")
    if incident.aware_at is None:  # declare() always sets it; a hand-edited row may not
        raise TerminalError(f"incident {incident_id} has no time of awareness")
    check_scope(config, incident.scope)
    return incident


def store_at_rest(config: LifecycleConfig, store: str) -> dict[str, AtRest]:
    """Encryption at rest of each resource of ``store`` (by posture key: the store itself,
    or each bucket), read by its type's posture hook; empty when the type has none."""
    declared = config.store(store)
    ref = spec_for(declared).posture
    if ref is None:
        return {}
    hook = cast(PostureHook, load_hook(ref))
    return {f.posture_key: at_rest_of(f) for f in hook(config, declared, account_wide=False)}


def _resource(posture_key: str) -> str:
    """The resource a posture key names: ``s3://bucket`` -> bucket, ``store:crm`` -> crm."""
    scheme, sep, rest = posture_key.partition("://")
    return rest if sep else posture_key.partition(":")[2] or scheme


def part_at_rest(found: Mapping[str, AtRest], part: ScopePart) -> AtRestFact:
    """The encryption-at-rest fact of ``part``'s resource among its store's facts: the
    part's bucket, else the store itself (or its one resource)."""
    if not found:
        return AtRestFact(None, None, NO_POSTURE)
    wanted = part.bucket if part.bucket is not None else part.store
    matches = [fact for key, fact in found.items() if _resource(key) == wanted]
    if not matches and part.bucket is None and len(found) == 1:
        matches = list(found.values())
    if not matches:
        return AtRestFact(None, None, f"the posture facts say nothing of {part.label}")
    fact = matches[0]
    return AtRestFact(fact.encrypted, fact.key_held_by, fact.evidence)


def scope_stores(incident: Incident) -> list[str]:
    """The stores the incident's scope names, each once, in scope order."""
    return list(dict.fromkeys(p.store for p in _scope(incident).parts))


def count_part(connectors: Connectors, part: ScopePart, at_rest: AtRestFact) -> PartAssessment:
    """One part counted by its store's connector."""
    return _assess_part(counter(connectors, part.store), part.store, part, at_rest)


def subjects_by_identity(
    incident: Incident, parts: Sequence[PartAssessment], connectors: Connectors
) -> dict[str, int]:
    """Distinct subjects per identity over every part (a second read of subject keys only
    when more than one part holds subjects)."""
    scope = _scope(incident)
    counters = [counter(connectors, p.store) for p in scope.parts]
    return distinct_subjects(parts, counters, scope)


@dataclass(frozen=True)
class AssessmentOutcome:
    """A recorded assessment and the notifications it requires (counts, names, times)."""

    incident_id: str
    assessment: Assessment
    notifications: tuple[NotificationDue, ...]
    assessed_at: datetime


def record(
    config: LifecycleConfig,
    register: IncidentRegister,
    incident: Incident,
    parts: Sequence[PartAssessment],
    subjects: Mapping[str, int],
    *,
    actor: str,
    assessed_at: datetime | None = None,
) -> AssessmentOutcome:
    """Combine the parts, judge the risk, work out the notifications due and record them."""
    assessed_at = assessed_at or datetime.now(UTC)
    assessment = combine(
        config, parts, subjects, kinds=incident.kinds, key_compromised=incident.key_compromised
    )
    aware_at = incident.aware_at or assessed_at
    due = notifications(config.policy.incidents, assessment, aware_at, assessed_at)
    register.record_assessment(incident.id, assessment, due, actor=actor, assessed_at=assessed_at)
    return AssessmentOutcome(incident.id, assessment, tuple(due), assessed_at)


def assess_incident(
    config: LifecycleConfig,
    register: IncidentRegister,
    incident_id: str,
    *,
    actor: str,
    connectors: Connectors,
) -> AssessmentOutcome:
    """Assess the declared breach from the stores and record the result (every step above,
    one part after another)."""
    incident = assessable(config, register, incident_id)
    scope = _scope(incident)
    facts = {store: store_at_rest(config, store) for store in scope_stores(incident)}
    parts = [count_part(connectors, p, part_at_rest(facts[p.store], p)) for p in scope.parts]
    subjects = subjects_by_identity(incident, parts, connectors)
    return record(config, register, incident, parts, subjects, actor=actor)


def failure_text(error: BaseException) -> str:
    """What the ledger may say of a failed assessment: the product error's message if it
    holds no personal data, else only its type."""
    from engine.request_support import safe_message

    message = safe_message(error) if isinstance(error, LifecycleError) else None
    return message or f"{type(error).__name__} (message withheld: see the run's log)"


def record_failure(ledger: Ledger, incident_id: str, error: str, *, actor: str) -> None:
    """``incident.assessment-failed`` in the ledger: the timeline shows the attempt."""
    event = ledger_event(
        "incident.assessment-failed",
        EventStatus.FAILED,
        incident_id,
        actor=actor,
        detail={"error": error},
    )
    ledger.append_many([event])


# -- the affected-subjects package --------------------------------------------------------


def subjects_package(  # noqa: PLR0917 - the CLI's call: incident, recipient, where, who
    config: LifecycleConfig,
    register: IncidentRegister,
    incident_id: str,
    recipient: Recipient,
    destination: Path | Destination,
    actor: str,
    *,
    connectors: Connectors | None = None,
) -> PackageInfo:
    """Write the encrypted package of the assessed breach's affected subjects (one record
    each, with the identities the stores give back for it) for ``recipient``, and record
    ``incident.subjects-package`` in the ledger (SHA-256, subjects, bytes: never a value)."""
    incident = register.get(incident_id)
    if incident.state != BREACH:
        raise TerminalError(f"incident {incident_id} is '{incident.state}', not a declared breach")
    scope = _scope(incident)
    assessment = incident.assessment
    if assessment is None or [p.label for p in assessment.parts] != [p.label for p in scope.parts]:
        raise TerminalError(
            f"incident {incident_id}: its scope has no assessment (or changed since): "
            "assess it first"
        )
    if connectors is None:
        from audit.keystore import keyring_from_settings

        with StoreConnectors(config, keyring_from_settings()) as made:
            return subjects_package(
                config, register, incident_id, recipient, destination, actor, connectors=made
            )
    counters = [counter(connectors, p.store) for p in scope.parts]
    resolvers = [
        (store.name, connector)
        for store in config.inventory.stores
        if has(store.type) and supports(connector := connectors(store.name), ImpactCounting)
    ]
    identities = [p.identity for p in assessment.parts]
    info = write_subjects_package(
        incident_id,
        scope,
        counters,
        identities,
        resolvers,
        destination=destination,
        recipient=recipient,
    )
    register.record_subjects_package(
        incident_id, sha256=info.sha256, subjects=info.records, size=info.size, actor=actor
    )
    return info


# -- helpers ------------------------------------------------------------------------------


def _scope(incident: Incident) -> IncidentScope:
    if incident.scope is None:
        raise TerminalError(f"incident {incident.id} has no scope yet: record its scope first")
    return incident.scope
