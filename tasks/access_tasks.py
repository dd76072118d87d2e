"""Access requests: stream every store's findings into one encrypted package, then check it.

The package is one file, so one task writes it, reading each store through its connector
in inventory order (connectors opened one at a time, exports streamed in batches). The
ledger records only the package's SHA-256, size and counts. A rerun rewrites the package
at the same path (atomically), so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from audit.events import EventStatus
from config.settings import get_settings
from connectors.base import ExportItem
from core.crash_points import crash_point
from core.errors import TerminalError
from core.package import write_package
from engine.request_support import (
    RequestContext,
    clean_errors,
    findings_from_data,
    request_context,
)
from state.progress import Phase
from tasks.lifecycle_task import lifecycle_task


def exports_dir() -> Path:
    """Where access packages are written: ``<data_dir>/exports``."""
    return get_settings().data_dir / "exports"


def _items(ctx: RequestContext, request_id: str, stores: list[str]) -> Iterator[ExportItem]:
    for store in stores:
        findings = findings_from_data(store, ctx.progress.findings(request_id, store), {})
        if not findings.total:
            continue
        with ctx.connector(store) as connector:
            yield from connector.export(findings)


@lifecycle_task("write-access-package")
def write_access_package(request_id: str) -> int:
    """Write the subject's encrypted package; returns the number of records in it."""
    with clean_errors("writing the access package"):
        ctx = request_context()
        recipient = ctx.progress.runs.recipient(request_id)
        if recipient is None:
            raise TerminalError(
                f"request {request_id} has no package recipient (a public key or passphrase)"
            )
        rows = ctx.progress.stores(request_id)
        stores = [r.store for r in rows if r.phase is not Phase.SKIPPED]
        run = ctx.progress.runs.run(request_id)
        if run.package_sha256 and all(
            r.phase.reached(Phase.EXECUTED) for r in rows if r.phase is not Phase.SKIPPED
        ):
            return sum(r.found for r in rows)  # written and recorded before a rerun
        audited = [
            e
            for e in ctx.ledger.events(request_id=request_id, kinds=["access.package"])
            if run.package_sha256 and e.detail.get("sha256") == run.package_sha256
        ]
        if audited:  # written, recorded and audited; a crash came before the stores' marks
            for store in stores:
                ctx.progress.mark_executed(request_id, store)
            return int(audited[-1].counts.get("records", 0))
        record = ctx.record(request_id)
        manifest = {
            "request_id": request_id,
            "kind": record.kind.value,
            "received": record.received_at.isoformat(),
            "stores_searched": stores,
            "stores_skipped": [r.store for r in rows if r.phase is Phase.SKIPPED],
        }
        info = write_package(_items(ctx, request_id, stores), manifest, exports_dir(), recipient)
        crash_point("package-written", "package")
        ctx.progress.runs.record_package(
            request_id,
            location=info.location,
            sha256=info.sha256,
            size=info.size,
            records=info.records,
        )
        crash_point("package-recorded", "package")
        ctx.audit(
            ctx.event(
                "access.package",
                EventStatus.SUCCEEDED,
                request_id,
                counts={"records": info.records, "bytes": info.size},
                detail={
                    "sha256": info.sha256,
                    "counts": {s: dict(t) for s, t in info.counts.items()},
                    "categories": dict(info.categories),
                },
            )
        )
        crash_point("package-appended", "package")
        for store in stores:
            ctx.progress.mark_executed(request_id, store)
        crash_point("executed", "package")
        return info.records


@lifecycle_task("verify-access-package")
def verify_access_package(request_id: str) -> int:
    """Check the package holds every record found; returns how many are missing."""
    with clean_errors("verifying the access package"):
        ctx = request_context()
        events = list(ctx.ledger.events(request_id=request_id, kinds=["access.package"]))
        if not events:
            raise TerminalError(f"request {request_id} has no access package recorded")
        exported = events[-1].detail.get("counts", {})
        missing_total = 0
        for row in ctx.progress.stores(request_id):
            if row.phase is Phase.SKIPPED or row.phase is Phase.VERIFIED:
                continue
            written = exported.get(row.store, {})
            # What export must have written: one record per found row, but per object
            # version on S3 (delete markers hold no data), as the connector says.
            expected = findings_from_data(
                row.store, ctx.progress.findings(request_id, row.store), {}
            ).record_counts()
            missing = {t: n - written.get(t, 0) for t, n in expected.items()}
            missing = {t: n for t, n in missing.items() if n > 0}
            missing_total += sum(missing.values())
            recorded = ctx.progress.verification_step(
                request_id, row.store, {"remaining": missing}, clean=not missing
            )
            ctx.ledger.append_many(  # the event and the progress row commit together
                [
                    ctx.event(
                        "access.verified",
                        EventStatus.FAILED if missing else EventStatus.SUCCEEDED,
                        request_id,
                        connector=row.store,
                        counts={"found": row.found, "missing": sum(missing.values())},
                        detail={"missing": missing},
                    )
                ],
                also=recorded,
            )
        return missing_total
