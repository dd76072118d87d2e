"""``lifecycle retention explain TARGET``: which rules and holds apply to a table, field or key.

TARGET is ``store.table``, ``store.table.column``, ``store/bucket`` or
``store/bucket/key-or-prefix``. The answer lists every sweep target covering it, each
with its rules (the governing, longest one first), the cut-off those rules give today,
the legal holds in force over all or part of it, and the holds that match but are not
in force (expired or not yet started), so an operator can see why data is or is not
going.

How a part of a store is named, which targets cover it and how their deletion is worded
come from the store type's ``sweep_targets`` hook (``retention.targets.SweepTargets``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from config.schema import LifecycleConfig
from config.schema.policy import LegalHold
from connectors import catalog
from core.errors import NotFoundError
from retention.targets import (
    Subject,
    SweepTarget,
    SweepTargets,
    hold_reach,
    resolve_targets,
    sweep_targets_for,
    sweep_targets_of,
    utc_naive,
)

__all__ = ["Subject", "explain", "parse_subject"]


def _hooks() -> list[tuple[catalog.StoreSpec[Any], SweepTargets]]:
    """The store types with a ``sweep_targets`` hook, in catalog order, with it."""
    return [
        (spec, hook) for spec in catalog.STORE_TYPES if (hook := sweep_targets_of(spec)) is not None
    ]


def parse_subject(config: LifecycleConfig, text: str) -> Subject:
    """Parse TARGET against the inventory; NotFoundError names what does not exist."""
    hooks = _hooks()
    for spec, hook in hooks:
        store_name = hook.store_of(text)
        if store_name is None:
            continue
        store = config.store(store_name)
        if not isinstance(store, spec.config):
            own = sweep_targets_of(catalog.spec_for(store))
            use = f" (use {own.syntax[0]})" if own is not None else ""
            raise NotFoundError(f"store '{store_name}' is not {hook.noun}{use}")
        return hook.subject(store, text)
    forms = [form for _, hook in hooks for form in hook.syntax]
    either = [", ".join(forms[:-1]), forms[-1]] if len(forms) > 1 else forms
    raise NotFoundError(f"'{text}' is not a target: use {' or '.join(either)}")


def _covers(target: SweepTarget, subject: Subject) -> bool:
    if target.store != subject.store:
        return False
    return sweep_targets_for(target.kind).covers(target, subject)


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
        kind=subject.kind,
        store=subject.store,
        label=text,
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
    what = sweep_targets_for(target.kind).deletes
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
