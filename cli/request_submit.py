"""``lifecycle request submit``: register a data-subject request and run its flow here.

The identity is registered (sealed) in the request register; the flow, run in this
process against Prefect's API (a temporary local server unless ``PREFECT_API_URL`` is
set), receives only the request id. Prefect's own logging is kept at WARNING unless
``--verbose``. Exit codes: 0 completed, 1 failed or rejected, 4 completed with
deferrals (legal holds), 2 invalid configuration or usage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.output import (
    console,
    fail,
    handled_errors,
    print_error,
    print_json,
    print_table,
)

OUTCOME_COLUMNS = ["store", "phase", "found", "affected", "deferred", "remaining", "note"]

KindOpt = Annotated[
    str | None,
    typer.Option("--kind", help="access, rectification or erasure (not with --resume)."),
]
IdentityOpt = Annotated[
    list[str] | None,
    typer.Option("--identity", metavar="KIND=VALUE", help="An identity, e.g. email=a@example.com."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="TABLE.COLUMN=VALUE", help="Rectification: a corrected value."),
]
ApproveOpt = Annotated[
    bool, typer.Option("--approve", help="Approve (needs --reviewer and --signing-key).")
]
ReviewerOpt = Annotated[
    str | None,
    typer.Option("--reviewer", help="The approver, as the policy lists them; not the requester."),
]
SigningKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--signing-key",
        metavar="FILE",
        help="The approver's Ed25519 private key (lifecycle approver keygen): signs the decision.",
    ),
]
RequestedByOpt = Annotated[
    str | None,
    typer.Option("--requested-by", help="Who registers the request (default: LIFECYCLE_ACTOR)."),
]
PassphraseOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="Access: encrypt the package with this passphrase."),
]
RecipientOpt = Annotated[
    Path | None,
    typer.Option("--recipient-key", help="Access: encrypt the package for this public key."),
]
ResumeOpt = Annotated[
    str | None,
    typer.Option("--resume", metavar="ID", help="Continue request ID from where it stopped."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="Show Prefect's own logs.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def quiet_prefect(verbose: bool) -> None:
    """Prefect reads these when it is first imported: set them before that happens."""
    if not verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    # The temporary server's usage statistics write races its own startup ("database is
    # locked" tracebacks on SQLite); they are not needed to run a request.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A fresh Prefect home builds its database first: give a busy machine time for that.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _parse_identity(pairs: list[str]) -> dict[str, str]:
    identity: dict[str, str] = {}
    for number, pair in enumerate(pairs, start=1):
        kind, sep, value = pair.partition("=")
        kind = kind.strip()
        if not sep or not kind or not value.strip():
            raise typer.BadParameter(f"--identity #{number}: expected KIND=VALUE")
        identity[kind] = value.strip()
    if not identity:
        raise typer.BadParameter("give at least one --identity KIND=VALUE")
    return identity


def _recipient(passphrase_file: Path | None, recipient_key: Path | None) -> Any:
    from core.package import PackageError, PassphraseRecipient, X25519Recipient, load_public_key

    if passphrase_file is not None and recipient_key is not None:
        raise typer.BadParameter("give --passphrase-file or --recipient-key, not both")
    if recipient_key is not None:
        return X25519Recipient(load_public_key(recipient_key))
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text().rstrip("\r\n")
        except OSError as e:
            raise PackageError(f"cannot read {passphrase_file} ({e.strerror})") from None
        return PassphraseRecipient(text.encode())
    return None


def _needs_ui(ctx: Any, kind: str, pre_approved: bool) -> bool:
    """Whether the request would wait for a reviewer no one could reach (no Prefect server)."""
    approval = ctx.config.policy.requests.approval
    waits = kind in approval.required_for and not approval.auto_approve and not pre_approved
    return waits and not os.environ.get("PREFECT_API_URL")


def submit_command(
    *,
    kind: KindOpt = None,
    identity: IdentityOpt = None,
    changes: SetOpt = None,
    approve: ApproveOpt = False,
    reviewer: ReviewerOpt = None,
    signing_key: SigningKeyOpt = None,
    requested_by: RequestedByOpt = None,
    passphrase_file: PassphraseOpt = None,
    recipient_key: RecipientOpt = None,
    resume: ResumeOpt = None,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Register a data-subject request and run it; prints the request id and final status.

    Exit codes: 0 completed; 1 failed or rejected; 4 completed with deferrals (data kept
    under a legal hold, recorded in the ledger); 2 invalid configuration or usage.
    """
    quiet_prefect(verbose)
    if approve != (reviewer is not None) or (signing_key is not None and not approve):
        raise typer.BadParameter("--approve, --reviewer and --signing-key go together")
    if approve and signing_key is None:
        raise fail(
            "approval refused: the decision is not signed; give the approver's --signing-key "
            "FILE (lifecycle approver keygen makes one, the policy lists its public key)",
            2,
        )
    approval = None if reviewer is None or signing_key is None else (reviewer, signing_key)
    handed_to: str | None = None
    with handled_errors():
        from engine.request_support import request_context

        ctx = request_context()
        if resume is not None:
            if kind or identity or changes or passphrase_file or recipient_key:
                raise typer.BadParameter("--resume takes the registered request as it is")
            request_id, handed_to = _prepare_resume(ctx, resume, approval)
        else:
            request_id = _register(
                ctx,
                kind=kind,
                identity=identity or [],
                changes=changes or [],
                approval=approval,
                requested_by=requested_by,
                recipient=_recipient(passphrase_file, recipient_key),
            )
    if handed_to is not None:  # the run that waited carries on: follow it, run nothing here
        raise typer.Exit(_follow(request_id, handed_to, as_json))
    raise typer.Exit(_run(request_id, as_json))


def _register(
    ctx: Any,
    *,
    kind: str | None,
    identity: list[str],
    changes: list[str],
    approval: tuple[str, Path] | None,
    requested_by: str | None,
    recipient: Any,
) -> str:
    from cli.request_approval import load_signer
    from config.settings import get_settings
    from core.identity_values import IdentityValueError
    from engine.intake import CorrectionError, parse_changes, submit

    if kind is None:
        raise typer.BadParameter("--kind is required (access, rectification or erasure)")
    if _needs_ui(ctx, kind, approval is not None):
        raise fail(
            f"{kind} requests need approval: pass --approve --reviewer NAME --signing-key FILE "
            "(an approver other than the requester), or set PREFECT_API_URL to a Prefect "
            "server and approve there"
        )
    requested_by = requested_by or get_settings().actor
    signer = None
    if approval is not None:  # checked before anything is registered
        from engine.approval import four_eyes_problem

        signer = load_signer(ctx, *approval)
        problem = four_eyes_problem(ctx.config.policy.requests.approval, signer, requested_by)
        if problem is not None:
            raise fail(f"approval refused: {problem}", 2)
    try:
        record = submit(
            ctx,
            kind=kind,
            identity=_parse_identity(identity),
            requested_by=requested_by,
            changes=parse_changes(changes) or None,
            recipient=recipient,
            reviewer=signer,
        )
    except IdentityValueError as e:
        # A malformed value is a usage error (exit 2), named by its option, never shown.
        option = f"--set {e.correction}" if e.correction else f"--identity {e.kind}"
        raise fail(f"{option}: {e.problem}", 2) from None
    except CorrectionError as e:  # a value its column cannot hold: usage, named, never shown
        exits = [fail(f"--set: {problem}", 2) for problem in e.problems]
        raise exits[-1] from None
    return str(record.id)


def _prepare_resume(
    ctx: Any, request_id: str, approval: tuple[str, Path] | None
) -> tuple[str, str | None]:
    """Take the CLI's decision, if given, and hand it to the run that waits for it.

    Returns the request id and the flow run now carrying the request on (None: run it
    here, as ``--resume`` always did: no run waits, or it is gone).
    """
    from cli.request_approval import decide, hand_over, paused_run

    record = ctx.register.get(request_id)
    if approval is not None:
        run_input = decide(ctx, request_id, *approval)
        return request_id, hand_over(ctx, request_id, run_input)
    waiting = paused_run(ctx, request_id)
    if waiting is not None:
        raise fail(
            f"request {request_id} awaits a decision in flow run {waiting} (paused): decide "
            "there, or add --approve --reviewer NAME --signing-key FILE to resume it"
        )
    if record.status.value in ("received", "planned", "awaiting_approval") and _needs_ui(
        ctx, record.kind.value, ctx.progress.runs.run(request_id).approval is not None
    ):
        raise fail(
            f"request {request_id} needs approval: add --approve --reviewer NAME "
            "--signing-key FILE, or set PREFECT_API_URL to a Prefect server and approve there"
        )
    return request_id, None


def _follow(request_id: str, flow_run_id: str, as_json: bool) -> int:
    """Wait for the resumed run that carries the request on; print its outcome."""
    from cli.request_approval import wait_for_run
    from tasks.request_tasks import summarize_request

    final = wait_for_run(flow_run_id)
    outcome = summarize_request.fn(request_id)
    payload = outcome.model_dump() | {
        "request_id": request_id,
        "exit_code": outcome.exit_code,
        "flow_run_id": flow_run_id,
        "flow_run_state": final,
    }
    if as_json:
        print_json(payload)
    else:
        console.print(f"flow run {flow_run_id}: {final}", highlight=False)
        _print(outcome)
    return int(outcome.exit_code)


def _run(request_id: str, as_json: bool) -> int:
    """Run the flow for ``request_id`` and print the outcome; returns the exit code."""
    from core.errors import LifecycleError
    from flows.subject_request import subject_request
    from tasks.request_tasks import summarize_request

    error: str | None = None
    try:
        outcome = subject_request(request_id=request_id)
    except LifecycleError as e:
        error = e.message
        outcome = summarize_request.fn(request_id)
    payload = outcome.model_dump() | {"request_id": request_id, "exit_code": outcome.exit_code}
    if error is not None:
        payload["error"] = error
    if as_json:
        print_json(payload)
    else:
        _print(outcome)
    if error is not None:
        print_error(error)
    return outcome.exit_code


def _print(outcome: Any) -> None:
    rows = [
        s.model_dump(exclude={"skipped_reason"}) | {"note": s.skipped_reason}
        for s in outcome.stores
    ]
    if rows:
        print_table(rows, OUTCOME_COLUMNS, title=f"Request {outcome.request_id} ({outcome.kind})")
    for d in outcome.deferrals:
        until = f" until {d.until}" if d.until else ""
        console.print(f"deferred: {d.store}.{d.target} ({d.count}): {d.reason or ''}{until}")
    for k in outcome.kept:
        console.print(f"kept {k.count} {k.store}.{k.target} rows: {k.reason or ''}")
    if outcome.package is not None:
        console.print(f"package: {outcome.package.location}", highlight=False, soft_wrap=True)
    console.print(f"request {outcome.request_id}: {outcome.status}", highlight=False)
