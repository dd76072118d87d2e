"""Tasks over the audit ledger: verify the chain, sign and anchor its head."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task

from audit.events import Checkpoint, VerifyReport
from audit.ledger import Ledger
from core.private_files import private_dir


@task(name="verify-ledger")
def verify_ledger(anchor_file: str | None = None) -> VerifyReport:
    """Verify every event and checkpoint; an anchor file adds an outside reference."""
    from audit.ledger import load_anchor

    anchor = load_anchor(Path(anchor_file)) if anchor_file else None
    return Ledger.open().verify(anchor=anchor)


@task(name="anchor-ledger-head")
def anchor_head(anchor_dir: Path) -> Checkpoint:
    """Sign the current head and export it, so truncation can be proven later."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    private_dir(anchor_dir)
    return Ledger.open().export_checkpoint(anchor_dir / f"checkpoint-{stamp}.json")
