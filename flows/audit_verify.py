"""Daily audit verification: prove the ledger intact, then sign and anchor its head."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from config.settings import get_settings
from core.errors import IntegrityError
from tasks.audit_tasks import anchor_head, verify_ledger


@flow(name="audit-verify", log_prints=False)
def audit_verify(anchor_file: str | None = None) -> dict[str, int]:
    """Verify the whole chain; fail loudly (so automations notify) when it is broken.

    ``anchor_file`` is a checkpoint exported earlier (kept outside the database); without it
    the stored checkpoints are checked. On success a new signed checkpoint is exported to
    ``<data_dir>/anchors``.
    """
    report = verify_ledger(anchor_file)
    if not report.ok:
        create_markdown_artifact(
            key="audit-verify",
            markdown=f"# Audit ledger BROKEN\n\nFirst bad event: **{report.first_bad_seq}**"
            f"\n\n{report.problem}\n",
            description="Audit ledger verification",
        )
        raise IntegrityError(
            f"ledger broken at event {report.first_bad_seq}: {report.problem}",
            first_bad_seq=report.first_bad_seq,
        )
    checkpoint = anchor_head(get_settings().data_dir / "anchors")
    create_markdown_artifact(
        key="audit-verify",
        markdown=(
            "# Audit ledger intact\n\n"
            f"| events | checkpoints | head seq | head hash |\n|---|---|---|---|\n"
            f"| {report.events_checked} | {report.checkpoints_checked} | {checkpoint.seq} "
            f"| `{checkpoint.head_hash[:16]}…` |\n"
        ),
        description="Audit ledger verification",
    )
    return {"events": report.events_checked, "checkpoints": report.checkpoints_checked}
