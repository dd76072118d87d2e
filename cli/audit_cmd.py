"""``lifecycle audit``: verify the ledger, show events, record and export checkpoints.

``verify`` exits 0 when the chain, its checkpoints and the optional anchor file are
intact and 1 naming the first bad event otherwise, so schedulers and CI can act on the
exit code alone. Events only ever show pseudonyms: the ledger holds no raw identities.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from audit.events import StoredEvent, VerifyReport
from audit.ledger import Ledger, load_anchor
from cli.output import JsonOption, console, emit, err_console, handled_errors, print_json
from config.durations import Duration, DurationError
from core.errors import ConfigError

app = typer.Typer(no_args_is_help=True)

PROGRESS_MIN_EVENTS = 50_000
"""Show a progress bar (on stderr) when verifying at least this many events."""

SHOW_COLUMNS = [
    "seq",
    "time",
    "kind",
    "status",
    "request",
    "connector",
    "target",
    "subject",
    "counts",
]

AnchorOption = typer.Option(
    None,
    "--anchor",
    help="A checkpoint file from 'audit checkpoint --export' to check the ledger against.",
    dir_okay=False,
)
KindOption = typer.Option(None, "--kind", help="Only events of this kind (repeatable).")
ExportOption = typer.Option(
    None,
    "--export",
    help="Also write the checkpoint (with the public key) to this JSON file; keep it "
    "outside the database and pass it to 'audit verify --anchor'.",
    dir_okay=False,
)


def _verify_with_progress(ledger: Ledger, anchor_path: Path | None, quiet: bool) -> VerifyReport:
    anchor = load_anchor(anchor_path) if anchor_path is not None else None
    total = ledger.count()
    if quiet or total < PROGRESS_MIN_EVENTS:
        return ledger.verify(anchor)
    with Progress(
        TextColumn("verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("verify", total=total)
        return ledger.verify(anchor, progress=lambda done: bar.update(task, completed=done))


@app.command("verify")
def verify(
    anchor: Path | None = AnchorOption,
    as_json: bool = JsonOption,
) -> None:
    """Verify the hash chain, every signed checkpoint and (optionally) an anchor file."""
    with handled_errors():
        report = _verify_with_progress(Ledger.open(), anchor, quiet=as_json)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "events_checked": report.events_checked,
                "checkpoints_checked": report.checkpoints_checked,
                "first_bad_seq": report.first_bad_seq,
                "problem": report.problem,
            }
        )
    elif report.ok:
        console.print(
            f"intact: {report.events_checked} events, {report.checkpoints_checked} checkpoints",
            highlight=False,
            markup=False,
        )
    else:
        console.print(
            f"ledger broken at event {report.first_bad_seq}: {report.problem}",
            highlight=False,
            markup=False,
        )
    if not report.ok:
        raise typer.Exit(1)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO 8601 instant (UTC if no zone) or a span back from now (7d, 2w)."""
    now = now or datetime.now(UTC)
    try:
        return Duration.parse(text).before(now)
    except DurationError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since: '{text}' is neither an ISO 8601 date/time nor a span like 7d or 2w"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _counts_text(counts: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _show_row(event: StoredEvent, as_json: bool) -> dict[str, Any]:
    if as_json:
        return {
            "seq": event.seq,
            "event_id": event.event_id,
            "occurred_at": event.occurred_at,
            "kind": event.kind,
            "status": event.status.value,
            "actor": event.actor,
            "request_id": event.request_id,
            "flow_run_id": event.flow_run_id,
            "task_run_id": event.task_run_id,
            "connector": event.connector,
            "target": event.target,
            "subject": event.subject,
            "counts": dict(event.counts),
            "detail": dict(event.detail),
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        }
    return {
        "seq": event.seq,
        "time": event.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
        "kind": event.kind,
        "status": event.status.value,
        "request": event.request_id,
        "connector": event.connector,
        "target": event.target,
        "subject": event.subject,
        "counts": _counts_text(event.counts),
    }


@app.command("show")
def show(
    request: str | None = typer.Option(None, "--request", help="Only events of this request."),
    since: str | None = typer.Option(
        None, "--since", help="Only events since an ISO 8601 time or a span back (7d, 2w)."
    ),
    kind: list[str] | None = KindOption,
    limit: int = typer.Option(50, "--limit", min=1, help="Show at most the N most recent."),
    as_json: bool = JsonOption,
) -> None:
    """List ledger events, oldest first (the most recent N; times in UTC)."""
    with handled_errors():
        start = parse_since(since) if since is not None else None
        ledger = Ledger.open()
        newest = list(
            ledger.events(
                request_id=request, since=start, kinds=kind, limit=limit, newest_first=True
            )
        )
    rows = [_show_row(e, as_json) for e in reversed(newest)]
    emit(rows, SHOW_COLUMNS, as_json, title=None if as_json else "audit events (UTC)")


@app.command("checkpoint")
def checkpoint(
    export: Path | None = ExportOption,
) -> None:
    """Sign and record a checkpoint of the chain head (after verifying the new events)."""
    with handled_errors():
        ledger = Ledger.open()
        recorded = ledger.checkpoint()
        exported = ledger.export_checkpoint(export) if export is not None else None
    console.print(
        f"checkpoint at event {recorded.seq} (head {recorded.head_hash[:16]})",
        highlight=False,
        markup=False,
    )
    if export is not None and exported is not None:
        # Appends between the two steps make the export sign a newer head; say which.
        console.print(
            f"exported checkpoint at event {exported.seq} to {export}",
            highlight=False,
            markup=False,
        )
