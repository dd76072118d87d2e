"""``lifecycle request``: submit, run and track data-subject requests.

``submit`` registers a request and runs the subject-request flow in this process (only
the request id reaches Prefect); ``status`` shows one request with its history and
per-store progress; ``list`` shows deadlines (days left, negative once overdue);
``extend`` grants the one extension the policy allows; ``cancel`` ends an open or failed
request (identity destroyed, its flow runs cancelled); ``keygen`` makes the X25519 key
pair an access package can be encrypted for; ``confirm`` and ``identity`` serve stores an
operator works on by hand (``cli.request_confirm``). Identities are never printed, but by
``identity`` to the operator of such a store (recorded in the ledger): the register only
shows pseudonyms.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from cli.output import (
    JsonOption,
    console,
    emit,
    err_console,
    handled_errors,
    print_json,
    print_table,
)
from cli.request_confirm import confirm_command, identity_command
from cli.request_submit import submit_command
from state.register_model import HistoryEntry, RequestRecord, RequestStatus

if TYPE_CHECKING:
    from state.register import RequestRegister

app = typer.Typer(no_args_is_help=True)

LIST_COLUMNS = ["id", "kind", "status", "received", "due", "days_left", "extended"]
HISTORY_COLUMNS = ["at", "action", "from", "to", "actor", "note"]
StatusOption = typer.Option(None, "--status", case_sensitive=False, help="Only this status.")


def _keys() -> Any:
    from audit.keystore import keyring_from_settings

    return keyring_from_settings()


def open_register() -> RequestRegister:
    """The register on the configured audit database, with the policy's deadlines."""
    # Imported when a command runs, not when the CLI starts: keeps --help fast.
    from audit.keystore import keyring_from_settings
    from audit.ledger import Ledger
    from config.loader import load_config
    from state.register import RequestRegister

    requests_policy = load_config().policy.requests
    keys = keyring_from_settings()
    return RequestRegister(
        Ledger.open(keys=keys),
        keys,
        deadline_days=requests_policy.deadline_days,
        max_deadline_days=requests_policy.max_deadline_days,
    )


def _when(moment: datetime | None, as_json: bool) -> datetime | str | None:
    # JSON keeps the full ISO instant; the table shows minutes in UTC.
    if moment is None or as_json:
        return moment
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _summary(record: RequestRecord, now: datetime | None, as_json: bool) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": record.kind.value,
        "status": record.status.value,
        "received": _when(record.received_at, as_json),
        "due": _when(record.due_at, as_json),
        "days_left": record.days_left(now),
        "extended": record.extended,
        "overdue": record.overdue(now),
    }


def _detail(record: RequestRecord, as_json: bool) -> dict[str, Any]:
    return _summary(record, None, as_json) | {
        "subject": str(record.subject),
        "requested_by": record.requested_by,
        "extension_reason": record.extension_reason,
        "closed": _when(record.closed_at, as_json),
        "identity_destroyed": record.identity_destroyed,
    }


def _history_row(entry: HistoryEntry, as_json: bool) -> dict[str, Any]:
    return {
        "at": _when(entry.at, as_json),
        "action": entry.action,
        "from": None if entry.from_status is None else entry.from_status.value,
        "to": entry.to_status.value,
        "actor": entry.actor,
        "note": entry.note,
    }


@app.command("list")
def list_requests(
    overdue: bool = typer.Option(False, "--overdue", help="Only open requests past due."),
    status: RequestStatus | None = StatusOption,
    as_json: bool = JsonOption,
) -> None:
    """List requests by due date with days left (negative when overdue)."""
    with handled_errors():
        records = open_register().list(overdue_only=overdue, status=status)
    now = datetime.now(UTC)  # one instant for every row
    emit([_summary(r, now, as_json) for r in records], LIST_COLUMNS, as_json, title="Requests")


@app.command("status")
def show_status(
    request_id: str = typer.Argument(..., metavar="ID", help="Request id (req_...)."),
    as_json: bool = JsonOption,
) -> None:
    """Show one request: status, due date, days left, history, and per store and table what
    was found, deleted, masked, kept (and why), deferred (and until when) and left."""
    from cli.request_outcome import print_outcome
    from engine.request_summary import build_outcome, exported_counts
    from state.progress import RequestProgress

    with handled_errors():
        register = open_register()
        record = register.get(request_id)
        entries = register.history(request_id)
        progress = RequestProgress(register.ledger.engine, _keys())
        exported = None
        if record.kind.value == "access":
            exported = exported_counts(register.ledger, request_id)
        outcome = build_outcome(progress, record, progress.stores(request_id), exported)
    detail = _detail(record, as_json)
    rows = [_history_row(e, as_json) for e in entries]
    stores = [
        s.model_dump(exclude={"skipped_reason"}) | {"note": s.skipped_reason}
        for s in outcome.stores
    ]
    extra = {
        "tables": [t.model_dump() for t in outcome.tables],
        "deferrals": [d.model_dump() for d in outcome.deferrals],
        "kept": [k.model_dump() for k in outcome.kept],
        "package": None if outcome.package is None else outcome.package.model_dump(),
    }
    if as_json:
        print_json({"request": detail, "history": rows, "progress": stores} | extra)
        return
    print_table(
        [{"field": k, "value": v} for k, v in detail.items()],
        ["field", "value"],
        title=f"Request {record.id}",
    )
    print_table(rows, HISTORY_COLUMNS, title="History")
    print_outcome(outcome)
    if outcome.package is not None:
        console.print(f"package sha256: {outcome.package.sha256}", highlight=False)


@app.command("extend")
def extend(
    request_id: str = typer.Argument(..., metavar="ID", help="Request id (req_...)."),
    days: int = typer.Option(..., "--days", min=1, help="Days to add to the deadline."),
    reason: str = typer.Option(..., "--reason", help="Why the extension is needed."),
    as_json: bool = JsonOption,
) -> None:
    """Extend a request's deadline once, within the policy's maximum."""
    from config.settings import get_settings
    from core.free_text import check_free_text

    with handled_errors():
        check_free_text("--reason", reason)
        record = open_register().extend(
            request_id, days=days, reason=reason, actor=get_settings().actor
        )
    if as_json:
        print_json(_detail(record, as_json=True))
        return
    due = _when(record.due_at, as_json=False)
    console.print(
        f"{record.id} extended by {days} days; due {due} ({record.days_left()} days left)"
    )


@app.command("cancel")
def cancel(
    request_id: str = typer.Argument(..., metavar="ID", help="Request id (req_...)."),
    reason: str = typer.Option(
        ..., "--reason", help="Why it ends (kept in the register; no personal data)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """End an open or failed request: cancelled, identity destroyed, its flow runs cancelled.

    Exit codes: 0 cancelled; 1 refused (already closed, unknown id); 2 a reason holding
    personal data. Flow runs are cancelled through the Prefect API when PREFECT_API_URL is
    set; a run that could not be is named (it can do nothing more: the request is closed).
    """
    from config.settings import get_settings
    from state.progress import RequestProgress
    from tasks.cancellation import cancel_request, check_reason, ledger_flow_runs

    with handled_errors():
        check_reason("--reason", reason)
        register = open_register()
        progress = RequestProgress(register.ledger.engine, _keys())
        record = cancel_request(
            register,
            progress,
            request_id,
            reason=reason,
            actor=get_settings().actor,
            field="--reason",
        )
        known = ledger_flow_runs(register.ledger, request_id)
    runs, warning = _cancel_flow_runs(request_id, known)
    from ops.intake.callback import notify_help_desk

    notify_help_desk(record.id)  # its ticket, if any, hears it ended; never raises
    if as_json:
        detail = _detail(record, as_json=True)
        print_json({"request": detail, "flow_runs": runs, "warning": warning})
    else:
        console.print(f"{record.id} cancelled; identity destroyed", highlight=False)
        for run in runs:
            outcome = "cancelled" if run["cancelled"] else f"not cancelled: {run['problem']}"
            console.print(f"flow run {run['flow_run_id']} ({run['state']}): {outcome}")
    if warning is not None:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


def _cancel_flow_runs(request_id: str, known: list[str]) -> tuple[list[dict[str, Any]], str | None]:
    """The request's unfinished flow runs cancelled through Prefect (only with a server)."""
    from ops.api_target import reach_server

    if not reach_server():
        if not known:
            return [], None
        return [], (
            "Prefect was not asked (no Prefect server runs here and PREFECT_API_URL is not "
            "set): if flow run "
            f"{', '.join(known)} is still paused or running, cancel it in the Prefect UI"
        )
    from core.errors import TerminalError
    from tasks.cancellation import cancel_flow_runs

    try:
        runs = cancel_flow_runs(request_id, known)
    except TerminalError as e:
        return [], f"{e.message}; cancel them in the Prefect UI"
    return [asdict(r) for r in runs], None


app.command("submit")(submit_command)
app.command("confirm")(confirm_command)
app.command("identity")(identity_command)


@app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Private key file to create (mode 0600).")],
) -> None:
    """Make an X25519 key pair for access packages; the public key goes beside it (.pub)."""
    from core.package import generate_keypair

    with handled_errors():
        public_path, public_text = generate_keypair(out)
    console.print(f"private key: {out} (keep it secret)")
    console.print(f"public key:  {public_path}")
    console.print(public_text, highlight=False, soft_wrap=True)
