"""The demo's data-subject requests, run the way ``lifecycle request submit`` runs them.

Each request is registered through ``engine.intake.submit`` (the identity sealed in the
register) and carried out by the ``subject_request`` flow, which receives the request id
only. The per-table summary is read back from our own progress tables: counts, actions
and reasons, never keys or values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.package import Recipient, X25519Recipient, generate_keypair, load_public_key
from engine.request_models import RequestOutcome
from state.register import RequestRecord

OPERATOR = "demo-operator"
"""Who registers the demo's requests (the erasure is auto-approved by the demo policy)."""

ROW_COLUMNS = ["store", "target", "action", "count", "affected", "left", "reason"]


def package_recipient(folder: Path) -> tuple[Recipient, Path]:
    """The demo subject's X25519 key (made once) to encrypt access packages for.

    Returns the recipient and the private key file that opens the packages.
    """
    private = folder / "demo-subject-x25519.pem"
    public = private.with_name(private.name + ".pub")
    if not public.exists():
        private.unlink(missing_ok=True)  # a half-made pair from an interrupted run
        public, _text = generate_keypair(private)
    return X25519Recipient(load_public_key(public)), private


def submit_request(
    kind: str, identity: Mapping[str, str], recipient: Recipient | None = None
) -> RequestRecord:
    """Register a request exactly as ``lifecycle request submit`` does; its record."""
    from engine.intake import submit
    from engine.request_support import request_context

    return submit(
        request_context(), kind=kind, identity=identity, requested_by=OPERATOR, recipient=recipient
    )


def run_request(request_id: str) -> RequestOutcome:
    """Run the subject-request flow for a registered request (raises on failure)."""
    from flows.subject_request import subject_request

    return subject_request(request_id=request_id)


def request_rows(request_id: str) -> list[dict[str, Any]]:
    """Per store and table: the planned action and count, rows affected, rows left, reason.

    ``affected`` and ``left`` (rows that should be gone but were found again) apply to
    erasures; an access request's count is the records exported.
    """
    from engine.request_summary import table_rows
    from engine.request_support import request_context

    ctx = request_context()
    kind = ctx.record(request_id).kind.value
    stores = ctx.progress.stores(request_id)
    affected: dict[tuple[str, str], int] = {}
    left: dict[tuple[str, str], int] = {}
    for row in stores:
        for batch in ctx.progress.batches(request_id, row.store):
            key = (row.store, batch.target)
            affected[key] = affected.get(key, 0) + batch.affected
        if row.verification is not None and kind == "erasure":
            for target in row.plan_summary:
                remaining = row.verification.get("remaining", {})
                left[(row.store, target["target"])] = remaining.get(target["target"], 0)
    rows = []
    for line in table_rows(kind, stores):
        key = (line["store"], line["target"])
        touched = kind == "erasure" and line["action"] != "skip"
        rows.append(
            line
            | {
                "affected": affected.get(key, 0) if touched else "",
                "left": left.get(key, "") if touched else "",
            }
        )
    return rows
