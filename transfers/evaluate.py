"""Judge posture facts against the transfer policy and the security promises (pure).

Where data may be: its home region group always; elsewhere only along a route declared
for each of its categories, under a safeguard that has not expired. A region reached
only by expired routes is a ``transfer.safeguard-expired`` finding (the route existed,
its legal basis lapsed); a region no route reaches is a finding of the caller's
``*-region`` rule (``region_findings``). What else a resource must promise (encryption
at rest and in transit, ...) is judged by its store type: each fact judges itself
(``transfers.posture.PostureFacts``), with these helpers; ``evaluate`` collects them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import TYPE_CHECKING

from config.schema.transfers import TransferPolicy, TransferRoute
from transfers.findings import Finding, ordered

if TYPE_CHECKING:
    from transfers.posture import PostureFacts


def _route_text(route: TransferRoute) -> str:
    ref = f" {route.reference}" if route.reference else ""
    until = f" (expires {route.expires.isoformat()})" if route.expires else ""
    return f"{route.safeguard}{ref}{until}"


def region_findings(
    policy: TransferPolicy | None,
    *,
    rule: str,
    store: str | None,
    resource: str,
    region: str,
    categories: Sequence[str],
    today: date,
    what: str,
) -> list[Finding]:
    """Findings for data of ``categories`` held in ``region`` (none when every route holds)."""
    if policy is None or region in policy.home_regions():
        return []
    missing: list[str] = []
    expired: list[tuple[str, TransferRoute]] = []
    for category in categories:
        routes = [
            r for r in policy.routes_for(category) if region in policy.regions_of(r.destination)
        ]
        valid = [r for r in routes if r.expires is None or r.expires >= today]
        if valid:
            continue
        if routes:
            expired.append((category, max(routes, key=lambda r: r.expires or date.min)))
        else:
            missing.append(category)
    out: list[Finding] = []
    if missing:
        out.append(
            Finding(
                rule=rule,
                severity="high",
                store=store,
                resource=resource,
                evidence=f"{what} is in {region}, outside {policy.home} with no route for "
                f"{', '.join(missing)}",
                categories=tuple(missing),
                safeguard=f"none: {region} is not an allowed destination",
            )
        )
    if expired:
        out.append(
            Finding(
                rule="transfer.safeguard-expired",
                severity="high",
                store=store,
                resource=resource,
                evidence=f"{what} is in {region}; the only route there has expired: "
                + "; ".join(f"{c}: {_route_text(r)}" for c, r in expired),
                categories=tuple(c for c, _ in expired),
                safeguard="; ".join(_route_text(r) for _, r in expired),
            )
        )
    return out


def evaluate(
    facts: Iterable[PostureFacts], policy: TransferPolicy | None, today: date
) -> list[Finding]:
    """All findings of the facts, high severity first, whatever their store type."""
    found: list[Finding] = []
    for fact in facts:
        found += fact.findings(policy, today)
    return ordered(found)
