"""What the processor connector sends and reads: idempotency keys, answers, confirmation.

Answers are checked field by field: a record reference, a hold code or a request reference
that is not a short token is refused (``ProviderAnswerInvalid``), so nothing a provider
writes into free text (possibly an identity) reaches our keys, plans or the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from connectors.base import Action, Key, StorePlan, TargetPlan
from connectors.processor.client import Answer, ProcessorClient, ProviderAnswerInvalid
from core.crash_points import crash_point
from core.errors import TerminalError, TransientError

_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,199}$")
STATES = frozenset({"pending", "confirmed", "failed", "unknown"})


class ConfirmationPending(TransientError):
    """The provider took the request but did not confirm it before ``confirm_within``.

    Nothing is recorded as done; a re-run asks again with the same idempotency key.
    """


def token(store: str, what: str, value: object) -> str:
    """``value`` if it is a short opaque token (a record or request reference), else refused."""
    if isinstance(value, str) and _TOKEN.match(value):
        return value
    raise ProviderAnswerInvalid(
        f"store '{store}': the provider's answer has an invalid {what} "
        "(expected a token of letters, digits and ._:/+=-, at most 200)",
        store=store,
    )


def idempotency_key(
    store: str, action: Action, target: str, keys: Sequence[Key], extra: bytes = b""
) -> str:
    """A deterministic key for one request: store, action and the digest of the one-step
    plan it carries (plus ``extra``, e.g. a keyed digest of corrections).

    A resend after a crash is the same request; the key reveals no reference or value.
    """
    plan = StorePlan(store, (TargetPlan(target, action, tuple(keys)),))
    material = f"{store}|{action}|{plan.digest()}|".encode() + extra
    return "lc-" + hashlib.sha256(material).hexdigest()[:48]


def changes_digest(secret: bytes, changes: Mapping[str, str]) -> bytes:
    """A keyed digest of corrections: part of an idempotency key, never a guessable hash."""
    canonical = json.dumps(sorted(changes.items()), separators=(",", ":")).encode()
    return hmac.new(secret, canonical, hashlib.sha256).digest()


def refs_of(store: str, answer: Answer) -> tuple[Key, ...]:
    """The record references of a ``locate`` answer, as sorted one-value keys."""
    records = answer.data.get("records")
    if not isinstance(records, list):
        raise ProviderAnswerInvalid(
            f"store '{store}': the provider's locate answer has no records list", store=store
        )
    refs = {
        token(store, "record reference", r.get("ref") if isinstance(r, dict) else None)
        for r in records
    }
    return tuple((ref,) for ref in sorted(refs))


@dataclass(frozen=True)
class Hold:
    """A provider's hold on a record: a code (e.g. ``litigation``) and an end date, if any."""

    code: str
    until: str | None

    @property
    def reason(self) -> str:
        return f"held by the provider ({self.code})"


def holds_of(store: str, answer: Answer) -> dict[str, Hold]:
    """Record reference -> the provider's hold, from a ``holds`` answer."""
    entries = answer.data.get("holds", [])
    if not isinstance(entries, list):
        raise ProviderAnswerInvalid(
            f"store '{store}': the provider's holds answer is not a list", store=store
        )
    out: dict[str, Hold] = {}
    for entry in entries:
        item: Mapping[str, Any] = entry if isinstance(entry, dict) else {}
        ref = token(store, "record reference", item.get("ref"))
        until = item.get("until")
        if until is not None:
            try:
                until = date.fromisoformat(str(until)).isoformat()
            except ValueError:
                raise ProviderAnswerInvalid(
                    f"store '{store}': the provider's hold end is not an ISO date", store=store
                ) from None
        code = item.get("reason")
        # The code reaches the plan (and the ledger): free text is replaced, not shown.
        out[ref] = Hold(code if isinstance(code, str) and _TOKEN.match(code) else "hold", until)
    return out


@dataclass(frozen=True)
class Status:
    """Where a request stands at the provider."""

    state: str
    reference: str | None


def status_of(store: str, answer: Answer) -> Status:
    """The ``status`` (and ``reference``) of an erasure, rectification or status answer."""
    state = answer.data.get("status")
    if state not in STATES:
        raise ProviderAnswerInvalid(
            f"store '{store}': the provider's answer has no valid status "
            f"(expected one of {', '.join(sorted(STATES))})",
            store=store,
        )
    reference = answer.data.get("reference")
    return Status(
        str(state), None if reference is None else token(store, "request reference", reference)
    )


def ask_status(client: ProcessorClient, key: str) -> Status:
    """Where the request sent with idempotency key ``key`` stands (``unknown``: never seen)."""
    return status_of(client.name, client.call("status", {"idempotency_key": key}))


def await_confirmation(
    client: ProcessorClient,
    key: str,
    first: Status,
    *,
    what: str,
    within: timedelta,
    poll_interval: float,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Status:
    """Poll the provider until it confirms the request ``key``; ``first`` is its first answer.

    ``ConfirmationPending`` once ``within`` has passed, ``TerminalError`` if the provider
    reports the request failed. Each poll answered "pending" passes the crash point
    ``awaiting-confirmation:<store>`` (tests kill a run there, then resume it).
    """
    deadline = monotonic() + within.total_seconds()
    status = first
    while True:
        ref = status.reference or "none given"
        if status.state == "confirmed":
            return status
        if status.state == "failed":
            raise TerminalError(
                f"store '{client.name}': the provider reports the {what} failed "
                f"(reference {ref}); nothing was recorded as done",
                store=client.name,
                reference=status.reference,
            )
        left = deadline - monotonic()
        if left <= 0:
            raise ConfirmationPending(
                f"store '{client.name}': the provider did not confirm the {what} within "
                f"{within} (reference {ref}); nothing was recorded as done, and a re-run "
                "asks again with the same idempotency key",
                store=client.name,
                reference=status.reference,
            )
        sleep(min(poll_interval, left))
        status = ask_status(client, key)
        if status.state == "pending":
            crash_point("awaiting-confirmation", client.name)  # sent, the provider not done
