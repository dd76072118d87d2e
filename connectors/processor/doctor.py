"""The live check of a processor store (``lifecycle doctor``, ``config validate --live``).

api mode: the secret is set and the endpoint answers a signed ``ping`` (one attempt per
retry setting, as any call); a refusal names the HTTP status (401/403: the secret is
wrong). manual mode: configuration only, nothing to reach (reported reachable, with a
note). Either way an agreement that has expired or is missing is a warning here; the
transfer check reports it as a finding.
"""

from __future__ import annotations

from datetime import date

from connectors.doctor_report import DoctorLine, DoctorReport
from connectors.processor.client import ProcessorClient
from connectors.processor.config import ProcessorStore
from core.errors import LifecycleError


def _agreement_lines(store: ProcessorStore, today: date) -> list[DoctorLine]:
    agreement = store.agreement
    if agreement is None:
        return [DoctorLine("agreement", "no data processing agreement declared", "warning")]
    if agreement.expires < today:
        text = f"{agreement.reference} expired on {agreement.expires.isoformat()}"
        return [DoctorLine("agreement", text, "warning")]
    return [DoctorLine("agreement", f"{agreement.reference} until {agreement.expires}")]


def doctor_report(
    store: ProcessorStore, *, client: ProcessorClient | None = None, today: date | None = None
) -> DoctorReport:
    """The processor store type's ``doctor`` hook (``connectors.catalog``)."""
    lines = _agreement_lines(store, today or date.today())
    warnings = tuple(
        f"{store.name}: agreement: {ln.text}" for ln in lines if ln.severity == "warning"
    )
    details = {"provider": store.provider, "mode": store.mode}
    if store.mode == "manual":
        note = DoctorLine("mode", "manual: an operator carries out and confirms each request")
        return DoctorReport(
            store.name,
            "processor",
            "manual",
            reachable=True,
            ok=True,
            lines=(note, *lines),
            warnings=warnings,
            details=details,
        )
    location = store.endpoint or "(no endpoint)"
    try:
        (client or ProcessorClient(store)).call("ping", {})
    except LifecycleError as e:
        reachable = e.fields.get("status") is not None  # it answered, and refused
        line = DoctorLine("error", e.message, "problem")
        return DoctorReport(
            store.name,
            "processor",
            location,
            reachable=reachable,
            ok=False,
            lines=(line, *lines),
            problems=(f"{store.name}: {e.message}",),
            warnings=warnings,
            details=details,
        )
    ping = DoctorLine("ping", "the provider answered a signed request")
    return DoctorReport(
        store.name,
        "processor",
        location,
        reachable=True,
        ok=True,
        lines=(ping, *lines),
        warnings=warnings,
        details=details,
    )
