"""``lifecycle retention explain TARGET``: which rules and holds apply to a table, field or key.

TARGET is ``store.table``, ``store.table.column``, ``store/bucket`` or
``store/bucket/key-or-prefix``. The answer lists every sweep target covering it, each
with its rules (the governing, longest one first), the cut-off those rules give today,
the legal holds in force over all or part of it, and the holds that match but are not
in force (expired or not yet started), so an operator can see why data is or is not
going.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from config.schema import LifecycleConfig, S3Store, SqlStore
from config.schema.policy import LegalHold
from core.errors import NotFoundError
from retention.targets import SweepTarget, hold_reach, resolve_targets, utc_naive


@dataclass(frozen=True)
class Subject:
    """The parsed TARGET argument."""

    store: str
    table: str | None = None
    column: str | None = None
    bucket: str | None = None
    key: str | None = None


def parse_subject(config: LifecycleConfig, text: str) -> Subject:
    """Parse TARGET against the inventory; NotFoundError names what does not exist."""
    if "/" in text:
        store_name, _, rest = text.partition("/")
        bucket, _, key = rest.partition("/")
        store = config.store(store_name)
        if not isinstance(store, S3Store):
            raise NotFoundError(f"store '{store_name}' is not an S3 store (use store.table)")
        if bucket not in {b.name for b in store.buckets}:
            known = ", ".join(b.name for b in store.buckets)
            raise NotFoundError(f"no bucket '{bucket}' in store '{store_name}' (known: {known})")
        return Subject(store_name, bucket=bucket, key=key or None)
    parts = text.split(".")
    if len(parts) not in (2, 3):
        raise NotFoundError(
            f"'{text}' is not a target: use store.table, store.table.column or store/bucket/key"
        )
    store = config.store(parts[0])
    if not isinstance(store, SqlStore):
        raise NotFoundError(f"store '{parts[0]}' is not a SQL store (use store/bucket/key)")
    tables = {t.name: t for t in store.tables}
    table = tables.get(parts[1])
    if table is None:
        known = ", ".join(sorted(tables))
        raise NotFoundError(f"no table '{parts[1]}' in store '{parts[0]}' (known: {known})")
    column = parts[2] if len(parts) == 3 else None
    if column is not None and column not in table.fields:
        raise NotFoundError(f"'{column}' is not a declared field of {parts[0]}.{parts[1]}")
    return Subject(parts[0], table=parts[1], column=column)


def _covers(target: SweepTarget, subject: Subject) -> bool:
    if target.store != subject.store:
        return False
    if target.kind == "sql":
        if target.table != subject.table:
            return False
        return (
            subject.column is None or target.action == "delete" or subject.column in target.fields
        )
    if target.bucket != subject.bucket:
        return False
    key = subject.key
    if key is None:
        return True
    inside = target.prefix is None or key.startswith(target.prefix)
    return inside and not any(key.startswith(p) for p in target.exclude_prefixes)


def _hold_view(hold: LegalHold, reach: str, active: bool) -> dict[str, Any]:
    return {
        "id": hold.id,
        "reason": hold.reason,
        "covers": reach,
        "in_force": active,
        "starts": hold.starts.isoformat(),
        "ends": hold.ends.isoformat() if hold.ends else None,
    }


def explain(config: LifecycleConfig, text: str, now: datetime) -> dict[str, Any]:
    """What applies to TARGET at ``now``: rules, cut-offs, holds, and what a sweep does."""
    subject = parse_subject(config, text)
    today = utc_naive(now).date()
    targets = [t for t in resolve_targets(config, now) if _covers(t, subject)]
    out: list[dict[str, Any]] = []
    for target in targets:
        governing = target.governing
        rules = [
            {
                "id": c.rule_id,
                "age": c.age,
                "clock": c.clock.describe(),
                "cutoff": c.cutoff.isoformat(),
                "governing": c is governing,
            }
            for c in sorted(target.conditions, key=lambda c: -c.approx_days)
        ]
        holds = []
        for hold in config.policy.legal_holds:
            reach = hold_reach(hold, target)
            if reach != "none":
                holds.append(_hold_view(hold, reach, hold.active_on(today)))
        out.append(
            {
                "target": target.id,
                "action": target.action,
                "fields": list(target.fields),
                "rules": rules,
                "holds": holds,
                "verdict": _verdict(target, holds),
            }
        )
    probe = SweepTarget(
        id=text,
        kind="sql" if subject.table else "s3",
        store=subject.store,
        action="delete",
        conditions=(),
        table=subject.table,
        bucket=subject.bucket,
        prefix=subject.key,
    )
    holds = [
        _hold_view(h, reach, h.active_on(today))
        for h in config.policy.legal_holds
        if (reach := hold_reach(h, probe)) != "none"
    ]
    return {"subject": text, "as_of": utc_naive(now).isoformat(), "targets": out, "holds": holds}


def _verdict(target: SweepTarget, holds: list[dict[str, Any]]) -> str:
    g = target.governing
    what = "rows are deleted" if target.kind == "sql" else "objects (every version) are deleted"
    if target.action == "anonymize":
        what = f"{', '.join(target.fields)} are anonymized"
    text = f"{what} once {g.clock.describe()} is older than {g.age} (rule {g.rule_id})"
    if len(target.conditions) > 1:
        others = ", ".join(c.rule_id for c in target.conditions if c is not g)
        text += f"; overlapping rules ({others}) also have to have passed: the longest wins"
    in_force = [h for h in holds if h["in_force"]]
    if any(h["covers"] == "whole" for h in in_force):
        ids = ", ".join(h["id"] for h in in_force if h["covers"] == "whole")
        return f"nothing is removed while {ids} is in force; otherwise {text}"
    if in_force:
        ids = ", ".join(h["id"] for h in in_force)
        text += f"; data within the scope of {ids} is kept"
    return text
