"""What every subject-request step shares: the request context, clean errors, data forms.

Steps take a request id and a store name, never identities or keys: they read what they
need from our own tables (register, progress) through ``RequestContext``, and record
ledger events through ``RequestContext.event`` (``engine.events.ledger_event``).
``clean_errors`` strips exception chains before they leave a step, since a driver's
message can quote row values and Prefect stores tracebacks in its logs. Prefect-free:
the Prefect task decorator lives in ``tasks.lifecycle_task``.

A context is made per task, in the task's thread (a request's stores run concurrently):
nothing in it is shared between threads but the configuration, frozen models that every
context reuses while its files and the environment are unchanged (``current_config``),
and the process's cached, thread-safe audit engine.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from audit.events import EventStatus, NewEvent
from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.loader import INVENTORY_FILE, POLICY_FILE, interpolation_env, load_config
from config.schema.model import LifecycleConfig
from connectors.base import (
    Action,
    BatchResult,
    Connector,
    Findings,
    Identities,
    StorePlan,
    TargetFinding,
)
from core.errors import LifecycleError, PersonalDataRefused, TerminalError
from core.keys import KeyRing
from core.pseudonym import Pseudonym
from engine.events import ledger_event, run_ids
from state.progress import BatchIntent, BatchRecord, RequestProgress
from state.register import RequestRecord, RequestRegister, RequestStatus

FLOW_ACTOR = "flow:subject-request"
"""Who the ledger and register name for the flow's own steps."""


@contextmanager
def clean_errors(what: str) -> Iterator[None]:
    """Let only product errors out, without their causes; anything else becomes one line."""
    try:
        yield
    except LifecycleError as e:
        e.__cause__ = None
        e.__suppress_context__ = True
        raise
    except Exception as e:
        raise TerminalError(f"{what} failed ({type(e).__name__})") from None


def lease_owner() -> str:
    """Who a lease names: the Prefect flow run or the operator, with pid and host."""
    from config.settings import get_settings

    flow_run_id = run_ids()["flow_run_id"]
    who = f"flow run {flow_run_id}" if flow_run_id else get_settings().actor
    return f"{who} (pid {os.getpid()} on {socket.gethostname()})"


@dataclass(frozen=True)
class RequestContext:
    """Configuration, keys, ledger, register and progress for one task's work."""

    config: LifecycleConfig
    keys: KeyRing
    ledger: Ledger
    register: RequestRegister
    progress: RequestProgress
    _subjects: dict[str, Pseudonym] = field(default_factory=dict, repr=False)

    def record(self, request_id: str) -> RequestRecord:
        return self.register.get(request_id)

    def subject(self, request_id: str) -> Pseudonym:
        """The request's subject pseudonym (read once per context)."""
        if request_id not in self._subjects:
            self._subjects[request_id] = self.record(request_id).subject
        return self._subjects[request_id]

    def event(
        self,
        kind: str,
        status: EventStatus,
        request_id: str,
        *,
        connector: str | None = None,
        target: str | None = None,
        counts: Mapping[str, int] | None = None,
        detail: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> NewEvent:
        """A ledger event about the request, with its subject pseudonym and run ids."""
        return ledger_event(
            kind,
            status,
            request_id,
            actor=actor or FLOW_ACTOR,
            subject=self.subject(request_id),
            connector=connector,
            target=target,
            counts=counts,
            detail=detail,
        )

    def audit(self, *events: NewEvent) -> None:
        """Append ``events`` in one transaction (all or none)."""
        self.ledger.append_many(list(events))

    def identities(self, request_id: str, before: int | None = None) -> Identities:
        """The subject's identity plus identities derived by stores before ``before``."""
        own = {k: frozenset({v}) for k, v in self.register.open_identity(request_id).items()}
        derived = self.progress.derived_identities(request_id, before)
        merged = dict(own)
        for kind, values in derived.items():
            merged[kind] = merged.get(kind, frozenset()) | values
        return merged

    def store_names(self) -> list[str]:
        return [store.name for store in self.config.inventory.stores]

    def position(self, store: str) -> int:
        return self.store_names().index(store)

    @contextmanager
    def connector(self, store: str) -> Iterator[Connector]:
        """The connector of ``store``, closed afterwards; inside ``shared_connectors()`` the
        one connector of the store for the whole block (closed when the block ends)."""
        from connectors.registry import connector_for

        shared = _shared.get()
        if shared is not None:
            yield shared.get(
                store,
                lambda: connector_for(self.config.store(store), self.config.policy, self.keys),
            )
            return
        connector = connector_for(self.config.store(store), self.config.policy, self.keys)
        try:
            yield connector
        finally:
            connector.close()


class _Batch:
    """What a block of many requests shares (``shared_connectors``): one connector per
    store, and the configuration and key ring read once."""

    def __init__(self) -> None:
        self._open: dict[str, Connector] = {}
        self._lock = threading.Lock()
        self.subjects: dict[str, Pseudonym] = {}
        self._config: LifecycleConfig | None = None
        self._keys: KeyRing | None = None

    def get(self, store: str, make: Callable[[], Connector]) -> Connector:
        with self._lock:  # stores run in threads: one connector each, made once
            if store not in self._open:
                self._open[store] = make()
            return self._open[store]

    def config_and_keys(self) -> tuple[LifecycleConfig, KeyRing]:
        """The block's configuration and key ring, read by its first context.

        A key rotated meanwhile still stops every write: the ledger checks the key in
        force inside each writing transaction (``audit.keystore.require_in_force``).
        """
        with self._lock:
            if self._config is None or self._keys is None:
                self._config, self._keys = current_config(), keyring_from_settings()
            return self._config, self._keys

    def close(self) -> None:
        for connector in self._open.values():
            with suppress(Exception):  # closing must not hide what the block raised
                connector.close()
        self._open.clear()


_shared: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar(
    "lifecycle_shared_connectors", default=None
)


@contextmanager
def shared_connectors() -> Iterator[None]:
    """Within the block, each store's connector is made once and reused (a batch's many
    requests): its engine, reflected schema and index checks serve every request, instead
    of being made again for every request and step. The configuration and the key ring
    are read once too, and each request's subject pseudonym once. Threads started with a
    copy of this context share them; connectors are safe to share between threads
    (engines pool their connections, reflected schemas are read only)."""
    if _shared.get() is not None:
        yield
        return
    batch = _Batch()
    token = _shared.set(batch)
    try:
        yield
    finally:
        _shared.reset(token)
        batch.close()


def has_connector(store_type: str) -> bool:
    """Whether a connector is registered for the store type (else the flow skips the store)."""
    from connectors.registry import has

    return has(store_type)


_configs: dict[str, LifecycleConfig] = {}
_configs_lock = threading.Lock()
_CONFIGS_KEPT = 4


def current_config() -> LifecycleConfig:
    """``load_config()``, reused while the files and the environment it reads are unchanged.

    Loading (YAML, validation, cross-reference checks) takes tens of milliseconds with a
    few dozen stores, and every task makes a context: concurrent stores' tasks would take
    turns holding the GIL for it. The configuration's models are frozen, so threads share
    one; an edited file or a changed variable loads anew, as ``load_config`` always did.
    """
    from config.settings import get_settings

    directory = get_settings().config_dir
    digest = hashlib.sha256(str(directory.resolve()).encode())
    try:
        for name in (INVENTORY_FILE, POLICY_FILE):
            digest.update(b"\0" + (directory / name).read_bytes())
    except OSError:
        return load_config()  # missing or unreadable: load_config explains
    for name, value in sorted(interpolation_env().items()):
        digest.update(f"\0{name}={value}".encode())
    key = digest.hexdigest()
    with _configs_lock:
        config = _configs.get(key)
    if config is None:
        config = load_config()
        with _configs_lock:
            while len(_configs) >= _CONFIGS_KEPT:
                del _configs[next(iter(_configs))]
            _configs[key] = config
    return config


def request_context() -> RequestContext:
    """The context from settings: the configured policy, keys and audit database."""
    batch = _shared.get()
    if batch is not None:
        config, keys = batch.config_and_keys()
        subjects = batch.subjects
    else:
        config, keys, subjects = current_config(), keyring_from_settings(), {}
    ledger = Ledger.open(keys=keys, actor=FLOW_ACTOR)
    policy = config.policy.requests
    register = RequestRegister(
        ledger, keys, deadline_days=policy.deadline_days, max_deadline_days=policy.max_deadline_days
    )
    progress = RequestProgress(ledger.engine, keys)
    return RequestContext(config, keys, ledger, register, progress, subjects)


def safe_message(error: LifecycleError) -> str | None:
    """The error's message if the ledger would accept it (no personal data), else None."""
    from audit.guard import check_text

    try:
        check_text(error.message, "message")
    except PersonalDataRefused:
        return None
    return error.message[:500]


_FORWARD = (
    RequestStatus.RECEIVED,
    RequestStatus.PLANNED,
    RequestStatus.AWAITING_APPROVAL,
    RequestStatus.APPROVED,
    RequestStatus.EXECUTING,
    RequestStatus.VERIFYING,
    RequestStatus.COMPLETED,
)


def status_past(current: RequestStatus, target: RequestStatus) -> bool:
    """Whether a request at ``current`` has moved beyond ``target`` on the normal path.

    ``failed`` counts as past approval (it failed while executing or verifying).
    """
    if current is RequestStatus.FAILED:
        return target in _FORWARD[:4]
    if current not in _FORWARD or target not in _FORWARD:
        return current.terminal
    return _FORWARD.index(current) > _FORWARD.index(target)


def today() -> str:
    """Today's date in UTC, ISO format (erasure plans compare hold dates to it)."""
    return datetime.now(UTC).date().isoformat()


# -- JSON forms of connector data, stored in our own tables ---------------------------------


def findings_data(findings: Findings) -> dict[str, Any]:
    """Findings without derived identities (those are sealed separately)."""
    return {
        "warnings": list(findings.warnings),
        "targets": [
            {
                "target": t.target,
                "keys": [list(k) for k in t.keys],
                "categories": list(t.categories),
                "via": t.via,
                "records": t.records,
                "linked": [list(k) for k in t.linked],
                "withheld": [list(k) for k in t.withheld],
            }
            for t in findings.targets
        ],
    }


def findings_from_data(
    store: str, data: Mapping[str, Any], derived: Mapping[str, frozenset[str]]
) -> Findings:
    return Findings(
        store=store,
        targets=tuple(
            TargetFinding(
                target=t["target"],
                keys=tuple(tuple(k) for k in t["keys"]),
                categories=tuple(t["categories"]),
                via=t["via"],
                records=t.get("records"),
                linked=tuple(tuple(k) for k in t.get("linked", ())),
                withheld=tuple(tuple(k) for k in t.get("withheld", ())),
            )
            for t in data["targets"]
        ),
        derived=dict(derived),
        warnings=tuple(data["warnings"]),
    )


def batch_record(batch: BatchResult) -> BatchRecord:
    """A connector's batch result as the progress tables record it."""
    return BatchRecord(
        store=batch.store,
        target=batch.target,
        action=str(batch.action),
        affected=batch.affected,
        keys_digest=batch.keys_digest,
        reference=batch.reference,
    )


def intent_batch(store: str, intent: BatchIntent) -> BatchResult:
    """A recorded intent as the connector's batch it stands for (keys and reference too)."""
    r = intent.record
    return BatchResult(
        store,
        r.target,
        Action(r.action),
        r.affected,
        r.keys_digest,
        keys=tuple(tuple(k) for k in intent.keys),
        intent=intent.intent,
        reference=r.reference,
    )


def plan_summary(plan: StorePlan) -> list[dict[str, Any]]:
    """The plan's steps with counts only: what the approver, the ledger and status show."""
    return [
        {
            "target": s.target,
            "action": str(s.action),
            "count": s.count,
            "reason": s.reason,
            "until": s.until,
        }
        for s in plan.steps
    ]
