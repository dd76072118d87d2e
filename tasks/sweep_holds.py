"""Legal holds on a subject (by pseudonym) turned into the keys a sweep must leave alone.

A hold names a subject only by pseudonym, and a pseudonym cannot be reversed. So the
identity columns of the SQL stores' subject tables are read in keyset pages and each
value is pseudonymized; the values that match a held pseudonym become that subject's
identities, and the subject is then located across every store exactly as a request
would be (derived identities from SQL feed S3 key templates). Only the held subjects'
keys are kept in memory; the identities themselves never leave this function.

The scan costs one pass over the identity columns of the subject tables, and runs only
when a sweep target has a subject hold in force.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from config.schema import SqlStore
from connectors.base import Findings, Identities, Key, merge_identities
from core.pseudonym import Pseudonymizer
from retention.targets import SweepTarget

if TYPE_CHECKING:
    from tasks.sweep_runner import SweepContext

_PAGE = 10_000


def _pages(conn: sa.Connection, table: sa.Table, key: list[Any], cols: list[Any]) -> Iterator[Any]:
    """Rows of (key..., identity columns...) in key order, one page at a time."""
    last: tuple[Any, ...] | None = None
    key_expr = key[0] if len(key) == 1 else sa.tuple_(*key)
    while True:
        query = sa.select(*key, *cols).order_by(*key).limit(_PAGE)
        if last is not None:
            bound = last[0] if len(last) == 1 else sa.tuple_(*(sa.literal(v) for v in last))
            query = query.where(key_expr > bound)
        rows = conn.execute(query).all()
        yield from rows
        if len(rows) < _PAGE:
            return
        last = tuple(rows[-1][: len(key)])


def _scan_store(
    ctx: SweepContext, store: SqlStore, held: frozenset[str], maker: Pseudonymizer
) -> dict[str, dict[str, set[str]]]:
    """Pseudonym -> identity kind -> values, for held subjects found in ``store``."""
    connector: Any = ctx.connector(store.name)
    schema = connector.schema
    found: dict[str, dict[str, set[str]]] = {}
    with connector.engine.connect() as conn:
        for decl in store.tables:
            if not decl.identity:
                continue
            table = schema.tables[decl.name]
            key = [table.c[c] for c in schema.keys[decl.name]]
            cols = [table.c[i.column] for i in decl.identity]
            for row in _pages(conn, table, key, cols):
                for ident, value in zip(decl.identity, row[len(key) :], strict=True):
                    if value is None:
                        continue
                    text = str(value)
                    psn = maker.of_value(ident.kind, text)
                    if psn in held:
                        found.setdefault(psn, {}).setdefault(ident.kind, set()).add(text)
    return found


def held_keys_by_target(
    ctx: SweepContext, targets: Sequence[SweepTarget]
) -> dict[str, frozenset[Key]]:
    """Per target id, the keys (row keys; S3 ``(object key,)``) of subjects under a hold."""
    wanted = {h.scope.subject for t in targets for h in t.subject_holds if h.scope.subject}
    if not wanted:
        return {}
    held = frozenset(str(p) for p in wanted)
    maker = Pseudonymizer(ctx.keys.pseudonym_hmac)
    subjects: dict[str, dict[str, set[str]]] = {}
    for store in ctx.config.sql_stores():
        for psn, kinds in _scan_store(ctx, store, held, maker).items():
            into = subjects.setdefault(psn, {})
            for kind, values in kinds.items():
                into.setdefault(kind, set()).update(values)
    keys: dict[str, set[Key]] = {}
    for psn, kinds in subjects.items():
        identities: Identities = {k: frozenset(v) for k, v in kinds.items()}
        for findings in _locate_everywhere(ctx, identities):
            for target in targets:
                if not any(h.scope.subject == psn for h in target.subject_holds):
                    continue
                keys.setdefault(target.id, set()).update(_target_keys(target, findings))
    return {t: frozenset(k) for t, k in keys.items()}


def _locate_everywhere(ctx: SweepContext, identities: Identities) -> Iterator[Findings]:
    """Locate the subject store by store, feeding derived identities forward."""
    known = dict(identities)
    for store in ctx.config.inventory.stores:
        findings = ctx.connector(store.name).locate(known)
        known = merge_identities(known, findings.derived)
        yield findings


def _target_keys(target: SweepTarget, findings: Findings) -> set[Key]:
    if findings.store != target.store:
        return set()
    name = target.table if target.kind == "sql" else target.bucket
    out: set[Key] = set()
    for found in findings.targets:
        if found.target != name:
            continue
        if target.kind == "sql":
            out.update(found.keys)
        else:
            out.update((k[0],) for k in found.keys)  # (object key, version, marker)
    return out
