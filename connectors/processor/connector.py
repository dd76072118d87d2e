"""``ProcessorConnector``: a third-party provider behind the ``Connector`` protocol.

One target per store, named by the provider; its keys are the provider's opaque record
references (``locate``), never identities. An erasure is one signed request per DELETE
step with an idempotency key derived from the store and the step's plan digest, so a resend
after a crash is the same request; ``on_prepared`` receives the intents before anything is
sent, and ``on_batch`` follows the provider's confirmation (polled until ``confirm_within``),
with the provider's reference in ``BatchResult.reference``. ``in_effect`` asks the
provider's status for the same key, and waits for a request still pending (a resumed run
polls again, it does not send again). Corrections (``Rectifying``) go the same way, for the
fields the store declares. No retention sweeps: the provider's retention is the agreement's.

``mode: manual``: nothing is sent. Locate finds one key standing for "the subject's data
at the provider"; execute records the intent and raises ``AwaitingConfirmation``; an
operator does the work and the flow records it with ``confirm`` (``ManualConfirmation``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import date

from config.schema.policy import LegalHold, Policy
from config.schema.stores import IdentityColumn
from connectors.base import (
    Action,
    AwaitingConfirmation,
    BatchResult,
    Capabilities,
    ExportItem,
    Findings,
    Identities,
    Key,
    OnBatch,
    OnPrepared,
    StorePlan,
    TargetFinding,
    TargetPlan,
    Verification,
    keys_digest,
)
from connectors.processor.client import ProcessorClient, ProviderAnswerInvalid
from connectors.processor.config import ProcessorStore
from connectors.processor.corrections import (
    change_problems,
    corrected_identities,
    identity_columns,
    provider_changes,
    store_changes,
)
from connectors.processor.protocol import (
    Hold,
    Status,
    ask_status,
    await_confirmation,
    changes_digest,
    holds_of,
    idempotency_key,
    refs_of,
    status_of,
    token,
)
from core.errors import TerminalError
from core.keys import KeyRing
from core.pseudonym import Pseudonym

MANUAL_KEY: Key = ("subject",)
"""In manual mode, the one key standing for the subject's data at the provider."""
MANUAL_VIA = "manual"
PAGE = 500
"""Record references per export or holds request."""
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


class ProcessorConnector:
    """A processor store: locate, export, erase and rectify at the provider.

    Optional capabilities (``connectors.base``): ``Rectifying`` and ``ManualConfirmation``;
    not ``Sweeping``.
    """

    capabilities = Capabilities(
        kind="processor",
        transactional=False,
        can_mask=False,
        versioned=False,
        derives_identities=False,
    )

    def __init__(
        self,
        store: ProcessorStore,
        policy: Policy,
        *,
        keys: KeyRing,
        client: ProcessorClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = store.name
        self.store = store
        self.policy = policy
        self.target = store.provider
        self._keys = keys
        self._client = client
        self._sleep = sleep
        self._monotonic = monotonic

    def __repr__(self) -> str:
        return f"ProcessorConnector({self.name!r})"

    @property
    def manual(self) -> bool:
        return self.store.mode == "manual"

    @property
    def client(self) -> ProcessorClient:
        """The store's signed-request client (api mode), created on first use."""
        if self._client is None:
            self._client = ProcessorClient(self.store, sleep=self._sleep)
        return self._client

    def _refs(self, findings: Findings) -> list[str]:
        return [str(k[0]) for t in findings.targets if t.target == self.target for k in t.keys]

    # -- Connector ----------------------------------------------------------------------

    def locate(self, identities: Identities) -> Findings:
        """Ask the provider which records it holds for the identities of the store's kinds."""
        asked = {k: sorted(identities[k]) for k in self.store.identities if identities.get(k)}
        if not asked:
            return Findings(self.name)
        if self.manual:
            keys: tuple[Key, ...] = (MANUAL_KEY,)
            via = MANUAL_VIA
        else:
            keys = refs_of(self.name, self.client.call("locate", {"identities": asked}))
            via = "identity:" + ",".join(sorted(asked))
        if not keys:
            return Findings(self.name)
        found = TargetFinding(self.target, keys, tuple(self.store.categories), via=via)
        return Findings(self.name, (found,))

    def export(self, findings: Findings) -> Iterator[ExportItem]:
        """The provider's copy of each located record (manual: who holds what, for Art. 15)."""
        refs = self._refs(findings)
        categories = tuple(self.store.categories)
        if self.manual:
            if refs:
                yield ExportItem(self.name, self.target, categories, self._recipient())
            return
        for start in range(0, len(refs), PAGE):
            answer = self.client.call("export", {"refs": refs[start : start + PAGE]})
            records = answer.data.get("records")
            if not isinstance(records, list):
                raise ProviderAnswerInvalid(
                    f"store '{self.name}': the provider's export answer has no records list",
                    store=self.name,
                )
            for record in records:
                item = record if isinstance(record, dict) else {}
                ref = token(self.name, "record reference", item.get("ref"))
                data = item.get("data")
                yield ExportItem(
                    self.name,
                    self.target,
                    categories,
                    {"ref": ref, "data": data if isinstance(data, dict) else {}},
                )

    def _recipient(self) -> dict[str, object]:
        return {
            "provider": self.store.provider,
            "purpose": self.store.purpose,
            "categories": list(self.store.categories),
            "region": self.store.region,
            "note": "this provider is asked by an operator; its copy is provided separately",
        }

    def _policy_hold(self, today: date, subject: Pseudonym | None) -> LegalHold | None:
        """The policy's longest active hold on this store (store or subject scopes only)."""
        found = [
            h
            for h in self.policy.legal_holds
            if h.active_on(today)
            and all(v is None for v in (h.scope.table, h.scope.bucket, h.scope.prefix, h.scope.tag))
            and h.scope.store in (None, self.name)
            and (h.scope.subject is None or (subject is not None and h.scope.subject == subject))
        ]
        if not found:
            return None
        return min(found, key=lambda h: (h.ends is not None, -(h.ends or date.min).toordinal()))

    def plan_erasure(
        self, findings: Findings, today: str, subject: Pseudonym | None = None
    ) -> StorePlan:
        """Delete the located records; defer those a policy hold or the provider holds.

        Reads the provider's holds (by reference only); writes nothing.
        """
        keys = tuple(k for t in findings.targets if t.target == self.target for k in t.keys)
        if not keys:
            return StorePlan(self.name, warnings=findings.warnings)
        held = self._policy_hold(date.fromisoformat(today), subject)
        if held is not None:
            until = held.ends.isoformat() if held.ends else None
            reason = f"legal hold {held.id}: {held.reason}"
            step = TargetPlan(self.target, Action.DEFER, keys, reason=reason, until=until)
            return StorePlan(self.name, (step,), findings.warnings)
        provider_holds: dict[str, Hold] = {}
        if not self.manual:
            refs = [str(k[0]) for k in keys]
            for start in range(0, len(refs), PAGE):
                answer = self.client.call("holds", {"refs": refs[start : start + PAGE]})
                provider_holds.update(holds_of(self.name, answer))
        groups: dict[Hold | None, list[Key]] = {}
        for key in keys:
            groups.setdefault(provider_holds.get(str(key[0])), []).append(key)
        steps = []
        if None in groups:
            steps.append(TargetPlan(self.target, Action.DELETE, tuple(groups.pop(None))))
        for hold, held_keys in sorted(groups.items(), key=lambda kv: repr(kv[0])):
            assert hold is not None
            steps.append(
                TargetPlan(
                    self.target,
                    Action.DEFER,
                    tuple(held_keys),
                    reason=hold.reason,
                    until=hold.until,
                )
            )
        return StorePlan(self.name, tuple(steps), findings.warnings)

    def _intents(self, plan: StorePlan) -> list[BatchResult]:
        steps = [s for s in plan.steps if s.action is Action.DELETE and s.keys]
        return [
            BatchResult(
                self.name,
                s.target,
                Action.DELETE,
                len(s.keys),
                keys_digest(s.keys),
                keys=s.keys,
                intent=i,
            )
            for i, s in enumerate(steps)
        ]

    def _confirmed(self, batch: BatchResult, status: Status) -> BatchResult:
        return replace(batch, reference=status.reference)

    def execute(
        self, plan: StorePlan, on_batch: OnBatch, on_prepared: OnPrepared | None = None
    ) -> list[BatchResult]:
        """Send each DELETE step, then wait for the provider's confirmation of it.

        Not transactional: ``on_prepared`` gets every intent before the first request.
        """
        intents = self._intents(plan)
        if not intents:
            return []
        if on_prepared is not None:
            on_prepared(intents)
        if self.manual:
            raise self._awaiting("erasure", intents)
        results: list[BatchResult] = []
        for intent in intents:
            key = idempotency_key(self.name, Action.DELETE, intent.target, intent.keys)
            refs = [str(k[0]) for k in intent.keys]
            first = status_of(
                self.name, self.client.call("erasures", {"refs": refs}, idempotency_key=key)
            )
            status = self._await(key, first, "erasure")
            result = self._confirmed(intent, status)
            on_batch(result)
            results.append(result)
        return results

    def _await(self, key: str, first: Status, what: str) -> Status:
        return await_confirmation(
            self.client,
            key,
            first,
            what=what,
            within=self.store.confirm_within,
            poll_interval=self.store.poll_interval,
            sleep=self._sleep,
            monotonic=self._monotonic,
        )

    def in_effect(self, plan: StorePlan, batches: Sequence[BatchResult]) -> list[BatchResult]:
        """Per prepared erasure batch, whether the provider confirmed its request.

        Asks the provider's status for the batch's idempotency key (what ``execute``
        sent it with): confirmed is in effect; pending (taken, not yet confirmed: a run
        died while it waited) is waited for as ``execute`` waits, so it ends confirmed,
        ``ConfirmationPending`` or failed, never "not in effect" (the rerun would then
        re-locate, and a provider that hides or has just erased the records would leave
        the erasure unsent, unrecorded and without its reference); anything else is not
        in effect (a re-run sends the same request). Manual mode cannot tell:
        ``AwaitingConfirmation``.
        """
        del plan  # each batch's keys determine its idempotency key
        if self.manual and any(b.keys for b in batches):
            raise self._awaiting("erasure", batches)
        out = []
        for batch in batches:
            key = idempotency_key(self.name, batch.action, batch.target, batch.keys)
            status = ask_status(self.client, key) if batch.keys else Status("unknown", None)
            if status.state == "pending":
                status = self._await(key, status, "erasure")
            if status.state == "confirmed":
                out.append(self._confirmed(replace(batch, affected=len(batch.keys)), status))
            else:
                out.append(replace(batch, affected=0, keys=(), keys_digest=keys_digest(())))
        return out

    def verify(self, identities: Identities, plan: StorePlan) -> Verification:
        """Locate again: records the plan deleted that the provider still reports remain."""
        deferred_keys = {k for s in plan.steps if s.action is Action.DEFER for k in s.keys}
        deferred = {self.target: len(deferred_keys)} if deferred_keys else {}
        remaining = {self.target: 0}
        if not self.manual:  # manual: the operator's confirmation is the evidence
            for found in self.locate(identities).targets:
                left = sum(1 for k in found.keys if k not in deferred_keys)
                remaining[found.target] = remaining.get(found.target, 0) + left
        return Verification(self.name, remaining=remaining, deferred=deferred, masked={})

    def close(self) -> None:
        """Nothing to release: each call opens and closes its own connection."""

    # -- ManualConfirmation -------------------------------------------------------------

    def _awaiting(self, action: str, batches: Sequence[BatchResult]) -> AwaitingConfirmation:
        count = sum(len(b.keys) or b.affected for b in batches)
        return AwaitingConfirmation(
            self.name,
            action,
            batches,
            f"ask {self.store.provider} to carry out the {action} of the subject's data "
            f"({count} item(s); identities from the request register), then confirm with "
            "the provider's reference",
        )

    def confirm(self, batches: Sequence[BatchResult], reference: str) -> list[BatchResult]:
        """The operator confirmed ``batches`` done at the provider, under ``reference``."""
        if not _REFERENCE.match(reference):
            raise TerminalError(
                f"store '{self.name}': a confirmation reference is a token of letters, "
                "digits and ._:/- (at most 128), such as the provider's ticket number",
                store=self.name,
            )
        return [
            replace(b, affected=len(b.keys) or b.affected, reference=reference) for b in batches
        ]

    # -- Rectifying ---------------------------------------------------------------------

    def changes_for(self, changes: Mapping[str, str]) -> dict[str, str]:
        """Corrections naming a declared field: ``<store>.<field>`` or a bare ``<field>``."""
        return store_changes(self.store, changes)

    def identity_columns_for(self, name: str) -> tuple[IdentityColumn, ...]:
        """The identity kind the correction ``name`` writes, as an identity column."""
        return identity_columns(self.store, name)

    def identities_after(
        self, identities: Identities, changes: Mapping[str, str]
    ) -> dict[str, frozenset[str]]:
        """``identities`` plus the new values of corrected identity fields."""
        return corrected_identities(self.store, identities, changes)

    def check_changes(self, changes: Mapping[str, str]) -> list[str]:
        """Corrections the provider's declared fields cannot take (never the value)."""
        return change_problems(self.store, changes)

    def rectify(self, findings: Findings, changes: Mapping[str, str]) -> list[BatchResult]:
        """Send the corrections of the found records and wait for the provider's confirmation."""
        problems = self.check_changes(changes)
        if problems:
            raise TerminalError("; ".join(problems), store=self.name)
        keys = tuple(k for t in findings.targets if t.target == self.target for k in t.keys)
        if not keys or not changes:
            return []
        fields = provider_changes(self.store, changes)
        batch = BatchResult(
            self.name, self.target, Action.RECTIFY, len(keys), keys_digest(keys), keys=keys
        )
        if self.manual:
            raise self._awaiting("rectification", [batch])
        extra = changes_digest(self._keys.pseudonym_hmac, fields)
        key = idempotency_key(self.name, Action.RECTIFY, self.target, keys, extra)
        payload = {"refs": [str(k[0]) for k in keys], "changes": fields}
        answer = self.client.call("rectifications", payload, idempotency_key=key)
        status = self._await(key, status_of(self.name, answer), "rectification")
        return [self._confirmed(batch, status)]
