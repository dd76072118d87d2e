"""Registering a subject request: check everything, then register; a refusal changes nothing.

Shared by ``lifecycle request submit`` and the intake service (``ops.intake``).
Checks: identity kinds some store searches, each identity value by its kind's format
(``core.identity_values``; the normalized value is what gets registered), corrections
that name a declared table or field (a corrected identity column passes the same format
check) and that every store they name can hold (``Rectifying.check_changes``: column
declared, not a key, type, length, NOT NULL; ``CorrectionError``); only stores whose
connector can rectify (``Rectifying``) claim corrections. Then a package recipient
for access requests, and the four-eyes rule for a pre-approval. Errors name fields, never values.

Corrections are ``table.column`` (or a bare field) -> new value. The register keys sealed
values by lowercase identifiers, so corrections travel as numbered entries whose sealed
value is ``[name, value]`` in JSON (``encode_changes``/``decode_changes``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager

from sqlalchemy import Connection

from connectors.base import Rectifying
from connectors.registry import supports
from core.errors import InvalidInput, LifecycleError, TerminalError
from core.free_text import check_free_text
from core.identity_values import (
    IdentityFormat,
    IdentityValueError,
    check_case_insensitive,
    normalize_identity,
)
from core.package import Recipient
from engine.approval import Signer, four_eyes_problem, pre_approve
from engine.request_support import RequestContext, has_connector
from state.register import RequestKind, RequestRecord
from state.register_model import check_actor

_CHANGE_NAME = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z_][A-Za-z0-9_$]*$")
_CHANGE_KEY = "change_{}"


def parse_changes(lines: Sequence[str]) -> dict[str, str]:
    """``table.column=value`` lines as a mapping; errors name the line number, not its text."""
    changes: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _CHANGE_NAME.match(name):
            raise InvalidInput(f"correction {number}: expected table.column=value (or field=value)")
        if name in changes:
            raise InvalidInput(f"correction {number}: '{name}' is given twice")
        changes[name] = value
    return changes


def encode_changes(changes: Mapping[str, str]) -> dict[str, str]:
    """Corrections in the register's sealed form (numbered entries)."""
    return {
        _CHANGE_KEY.format(n): json.dumps([name, value])
        for n, (name, value) in enumerate(sorted(changes.items()), start=1)
    }


def decode_changes(sealed: Mapping[str, str]) -> dict[str, str]:
    """Corrections back from the register's sealed form."""
    changes: dict[str, str] = {}
    for entry in sealed.values():
        name, value = json.loads(entry)
        changes[str(name)] = str(value)
    return changes


RectifyingStores = list[tuple[str, Rectifying]]
"""(store name, its connector) for every store whose connector can rectify."""


@contextmanager
def _rectifying_stores(ctx: RequestContext) -> Iterator[RectifyingStores]:
    """The stores that can take corrections, their connectors open for the block.

    Opening a connector does not reach its store; a store type without a connector is
    skipped, as the request flow skips it.
    """
    with ExitStack() as stack:
        found: RectifyingStores = []
        for store in ctx.config.inventory.stores:
            if not has_connector(store.type):
                continue
            connector = stack.enter_context(ctx.connector(store.name))
            if supports(connector, Rectifying):
                found.append((store.name, connector))
        yield found


def check_identity(ctx: RequestContext, identity: Mapping[str, str]) -> dict[str, str]:
    """The identity with each value checked and normalized by its kind's format.

    The inventory gives every column of a kind the same format (a config check), so the
    first column found decides.
    """
    known = ctx.config.identity_kinds()
    formats: dict[str, IdentityFormat] = {}
    folded: set[str] = set()
    for store in ctx.config.inventory.stores:
        for ident in store.identity_columns():
            formats.setdefault(ident.kind, ident.value_format())
            if ident.case_insensitive:
                folded.add(ident.kind)
    checked: dict[str, str] = {}
    for kind, value in identity.items():
        if kind not in known:
            choices = ", ".join(sorted(known)) or "none"
            raise InvalidInput(
                f"no store is searched by identity kind '{kind}' (inventory has: {choices})"
            )
        checked[kind] = normalize_identity(kind, value, formats[kind])
        if kind in folded:
            check_case_insensitive(kind, checked[kind])
    return checked


def _check_corrected_identities(
    stores: RectifyingStores, changes: Mapping[str, str]
) -> dict[str, str]:
    """Corrections with values aimed at identity columns checked by those columns' format.

    A rectified identity must be findable afterwards and must not be a mask token, so it
    passes the same check as a request's identity, and is stored normalized.
    """
    checked = dict(changes)
    for name, value in changes.items():
        targets = [ident for _, c in stores for ident in c.identity_columns_for(name)]
        results: set[str] = set()
        for ident in targets:
            try:
                results.add(normalize_identity(ident.kind, value, ident.value_format()))
            except IdentityValueError as e:
                raise IdentityValueError(e.kind, e.problem, correction=name) from None
        if len(results) > 1:
            raise InvalidInput(
                f"correction '{name}' names identity columns of different formats; "
                "name the table (table.column)"
            )
        if results:
            checked[name] = results.pop()
    return checked


def _check_changes(
    ctx: RequestContext, kind: RequestKind, changes: Mapping[str, str]
) -> dict[str, str]:
    if kind is not RequestKind.RECTIFICATION:
        if changes:
            raise InvalidInput(f"only rectification requests take corrections, not {kind}")
        return {}
    if not changes:
        raise InvalidInput("a rectification request needs corrections (table.column=value)")
    with _rectifying_stores(ctx) as stores:
        for name in changes:
            if not any(connector.changes_for({name: ""}) for _, connector in stores):
                raise CorrectionError([f"correction '{name}' names no declared table or field"])
        checked = _check_corrected_identities(stores, changes)
        _check_with_stores(stores, checked)
    return checked


class CorrectionError(TerminalError):
    """Corrections a store's columns cannot take; a usage error (CLI exit 2).

    ``problems``: one line each, naming ``store.table.column`` and what the column
    expects, never the value.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems), problems=list(problems))
        self.problems = list(problems)


def _check_with_stores(stores: RectifyingStores, changes: Mapping[str, str]) -> None:
    """Ask every store a correction names whether its columns can hold the values.

    The stores check what rectification would check when it runs (``check_changes``:
    declared field or identity column, not a key, type, length, NOT NULL). A store that
    cannot be reached refuses the request too: nothing is registered unchecked.
    """
    problems: list[str] = []
    unreachable: list[str] = []
    for store, connector in stores:
        picked = connector.changes_for(changes)
        if not picked:
            continue
        try:
            problems += connector.check_changes(picked)
        except LifecycleError as e:
            unreachable.append(f"store '{store}' could not check the corrections: {e}")
        except Exception as e:  # a driver error's text may quote values: its type only
            unreachable.append(
                f"store '{store}' could not check the corrections ({type(e).__name__})"
            )
    if problems:
        raise CorrectionError(problems + unreachable)
    if unreachable:
        raise TerminalError("; ".join(unreachable) + "; nothing was registered")


def submit(
    ctx: RequestContext,
    *,
    kind: str,
    identity: Mapping[str, str],
    requested_by: str,
    changes: Mapping[str, str] | None = None,
    recipient: Recipient | None = None,
    reviewer: Signer | None = None,
    note: str = "",
    within: Callable[[Connection, str], None] | None = None,
) -> RequestRecord:
    """Check and register a request; record its package recipient and pre-approval.

    ``reviewer`` (an approver's signer: name and private key) pre-approves the plans the
    flow will make, signed, under the same four-eyes rule as any approval (an approver
    whose key the policy lists, not the requester).
    ``within(conn, request_id)`` runs in the transaction that registers the request
    (``RequestRegister.register``); the intake service records its duplicate guards there.
    """
    try:
        request_kind = RequestKind(kind)
    except ValueError:
        raise InvalidInput(
            "unknown request kind; expected one of " + ", ".join(k.value for k in RequestKind)
        ) from None
    check_actor(requested_by, "requested_by")
    if note:
        check_free_text("note", note)  # kept in the register verbatim: no personal data
    identity = check_identity(ctx, identity)
    changes = _check_changes(ctx, request_kind, changes or {})
    if request_kind is RequestKind.ACCESS and recipient is None:
        raise InvalidInput(
            "an access request needs a package recipient: a public key or a passphrase"
        )
    if request_kind is not RequestKind.ACCESS and recipient is not None:
        raise InvalidInput("only access requests produce a package; drop the recipient")
    if reviewer is not None:
        problem = four_eyes_problem(ctx.config.policy.requests.approval, reviewer, requested_by)
        if problem is not None:
            raise TerminalError(f"pre-approval refused: {problem}")
    record = ctx.register.register(
        request_kind,
        identity,
        changes=encode_changes(changes) if changes else None,
        requested_by=requested_by,
        within=within,
    )
    ctx.progress.runs.ensure_run(record.id)
    if recipient is not None:
        ctx.progress.runs.set_recipient(record.id, recipient)
    if reviewer is not None:
        pre_approve(ctx, record.id, reviewer, note)
    return record
