"""``lifecycle request submit``: register a data-subject request and run its flow here.

The identity is registered (sealed) in the request register; the flow, run in this
process against Prefect's API (``PREFECT_API_URL``, else the local service when it runs,
else the local API commands share: ``ops.api_target``), receives only the request id.
Prefect's own logs go to the log file, and to stderr too with ``--verbose``. A failed run
is one line (store, step, reason, how to resume) and the log file holding the traceback.
Exit codes: 0 completed, 1 failed or rejected, 4 completed with deferrals (legal holds),
2 invalid configuration or usage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from cli.flow_commands import VerboseOpt, quiet_prefect
from cli.output import console, fail, handled_errors, print_failure, print_json
from cli.request_options import (
    ApproveOpt,
    BatchOpt,
    IdentityOpt,
    JsonOpt,
    KindOpt,
    NoRunOpt,
    PassphraseOpt,
    RecipientOpt,
    RequestedByOpt,
    ResumeBatchOpt,
    ResumeOpt,
    ReviewerOpt,
    SetOpt,
    SigningKeyOpt,
)
from cli.request_outcome import print_outcome


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
    """Whether the request would wait for a reviewer no one could reach: no Prefect server,
    or the local API commands share (``ops.api_target.reviewer_reachable``)."""
    from ops.api_target import reviewer_reachable

    approval = ctx.config.policy.requests.approval
    waits = kind in approval.required_for and not approval.auto_approve and not pre_approved
    return waits and not reviewer_reachable()


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
    batch: BatchOpt = None,
    resume_batch: ResumeBatchOpt = None,
    no_run: NoRunOpt = False,
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
    if batch is not None or resume_batch is not None:
        if kind or identity or changes or resume or (batch and resume_batch):
            raise typer.BadParameter(
                "--batch and --resume-batch take no --kind, --identity, --set or --resume, "
                "and not each other"
            )
        raise typer.Exit(
            _batch(
                path=batch,
                batch_id=resume_batch,
                approval=approval,
                requested_by=requested_by,
                no_run=no_run,
                as_json=as_json,
                recipient=_recipient(passphrase_file, recipient_key),
            )
        )
    if no_run:
        raise typer.BadParameter("--no-run goes with --batch")
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


def _batch(
    *,
    path: Path | None,
    batch_id: str | None,
    approval: tuple[str, Path] | None,
    requested_by: str | None,
    no_run: bool,
    as_json: bool,
    recipient: Any,
) -> int:
    """Submit a batch file, or run a registered batch again (see ``cli.request_batch``)."""
    from cli.request_batch import approve_batch, run_batch, submit_batch
    from config.settings import get_settings

    with handled_errors():
        from engine.request_support import request_context

        ctx = request_context()
        if path is not None:
            return submit_batch(
                ctx,
                path,
                requested_by=requested_by or get_settings().actor,
                approval=approval,
                recipient=recipient,
                run=not no_run,
                as_json=as_json,
            )
        assert batch_id is not None
        from state.batches import RequestBatches

        RequestBatches(ctx.ledger.engine).get(batch_id)  # a clear error before anything runs
        if approval is not None:
            approve_batch(ctx, batch_id, *approval)
        return run_batch(batch_id, as_json)
    return 1  # not reached: handled_errors exits


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
        print_outcome(outcome)
    return int(outcome.exit_code)


def _run(request_id: str, as_json: bool) -> int:
    """Run the flow for ``request_id`` and print the outcome; returns the exit code."""
    from flows.subject_request import subject_request
    from tasks.request_tasks import summarize_request

    failure = None
    since = datetime.now(UTC)
    try:
        outcome = subject_request(request_id=request_id)
    except Exception as e:  # one line and the log file's path; the traceback goes there
        failure = _failure(request_id, since, e)
        outcome = summarize_request.fn(request_id)
    payload = outcome.model_dump() | {"request_id": request_id, "exit_code": outcome.exit_code}
    if failure is not None:
        payload |= {"error": failure.reason, "failure": failure.model_dump()}
    if as_json:
        print_json(payload)
    else:
        print_outcome(outcome)
    if failure is not None:
        print_failure(failure.line(), failure.log)
    return outcome.exit_code


def _failure(request_id: str, since: datetime, error: Exception) -> Any:
    """Where and why the run stopped (``engine.request_summary.failure_report``), with the
    log file now holding the traceback."""
    from cli.logfile import log_exception
    from core.errors import LifecycleError
    from engine.request_models import FailureReport
    from engine.request_summary import failure_report
    from engine.request_support import request_context

    if isinstance(error, LifecycleError):
        reason = error.message
    else:
        reason = f"unexpected error ({type(error).__name__}); nothing more is known here"
    log = str(log_exception(error, f"request {request_id}: {reason}"))
    try:
        report = failure_report(request_context(), request_id, since, reason)
    except LifecycleError:  # the audit database is unreachable too: what is known
        report = FailureReport(request_id=request_id, reason=reason)
    return report.model_copy(update={"log": log, "hint": demo_hint(report.stores, reason)})


def demo_hint(stores: list[str], reason: str) -> str | None:
    """For a demo store served by a local service that is not running (its S3 or its
    provider, up during ``lifecycle demo`` and under ``make serve`` only)."""
    if not stores or not ("is unreachable" in reason or "is not set" in reason):
        return None
    from core.errors import LifecycleError

    try:
        from demo.stores import served_stores
        from ops.demo_setup import demo_config

        config = demo_config()
    except (LifecycleError, ImportError):
        return None
    if config is None or not served_stores(config) & set(stores):
        return None
    return (
        "the demo's local S3 and provider are not running (they run during `lifecycle demo` "
        "and under `make serve`): `make serve` starts them and later commands find them, or "
        "set LIFECYCLE_S3_ENDPOINT (and the provider's endpoint and secret)"
    )
