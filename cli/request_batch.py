"""``lifecycle request submit --batch FILE`` and ``--resume-batch ID``: many requests at once.

Each valid line of the file is registered as its own request (``engine.batch_intake``);
refused lines are reported by number with what was wrong, never their content. Then one
flow run (``flows.subject_batch``) carries the batch out, here, or, with ``--no-run``,
later through the ``subject-batch`` deployment given the batch id. ``--resume-batch``
runs a batch again (each request continues where it stopped), after taking an approver's
signed decision for every request of the batch that awaits one, when ``--approve`` is given.

Exit codes: 0 every request completed; 4 completed, some data deferred (legal holds);
1 a request failed, was rejected or awaits approval, or the run itself failed (one line and
the log file holding the traceback); 2 a line was refused, or invalid usage.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from cli.output import (
    console,
    err_console,
    print_error,
    print_failure,
    print_json,
    print_table,
)


def submit_batch(
    ctx: Any,
    path: Path,
    *,
    requested_by: str,
    approval: tuple[str, Path] | None,
    recipient: Any,
    run: bool,
    as_json: bool,
) -> int:
    """Register the file's requests as one batch, then run it unless ``run`` is False."""
    from cli.request_approval import load_signer
    from engine.batch_file import BatchFileError, read_batch
    from engine.batch_intake import register_batch

    try:
        batch = read_batch(path)
    except BatchFileError as e:
        return _error(e.message, 2)
    signer = None if approval is None else load_signer(ctx, *approval)
    with _progress(len(batch.lines), "registering") as advance:
        registered = register_batch(
            ctx,
            batch,
            requested_by=requested_by,
            reviewer=signer,
            recipient=recipient,
            progress=advance,
        )
    for number, problem in registered.refused:
        print_error(f"{path.name} line {number}: {problem}")
    err_console.print(
        f"batch {registered.batch_id}: {len(registered.accepted)} request(s) registered, "
        f"{len(registered.refused)} line(s) refused",
        highlight=False,
    )
    if not run:
        hint = (
            f"lifecycle request submit --resume-batch {registered.batch_id}, or the "
            f"subject-batch deployment with batch_id {registered.batch_id}"
        )
        if as_json:
            print_json(
                {
                    "batch_id": registered.batch_id,
                    "registered": [{"line": n, "request_id": r} for n, r in registered.accepted],
                    "refused": [{"line": n, "problem": p} for n, p in registered.refused],
                    "next": hint,
                }
            )
        else:
            console.print(f"run it with: {hint}", highlight=False)
        return 2 if registered.refused else 0
    if not registered.accepted:
        return 2
    return run_batch(registered.batch_id, as_json, refused=registered.refused)


def approve_batch(ctx: Any, batch_id: str, reviewer: str, signing_key: Path) -> None:
    """Take the approver's signed decision for every request of the batch awaiting one;
    each decision is recorded (or refused) per request."""
    from core.approver_keys import SigningKeyError, load_signing_key, sign_decision
    from engine.approval import take_decision
    from state.approvals import Attempt, DecisionRefused, current_scope
    from state.batches import RequestBatches

    try:
        key = load_signing_key(signing_key)
    except SigningKeyError as e:
        raise typer.Exit(_error(f"approval refused: {e.message}", 2)) from None
    entry = ctx.config.policy.requests.approval.approver(reviewer)
    approved = refused = 0
    for member in RequestBatches(ctx.ledger.engine).members(batch_id):
        record = ctx.register.get(member.request_id)
        if record.status.value not in ("received", "planned", "awaiting_approval"):
            continue
        signed = None
        if entry is not None:
            scope = current_scope(record, ctx.progress)
            signed = sign_decision(
                key,
                request_id=record.id,
                scope=scope,
                decision="approved",
                approver=entry.name,
            )
        try:
            take_decision(ctx, record.id, Attempt("approved", "cli", reviewer, signed))
        except DecisionRefused as e:
            refused += 1
            print_error(f"request {record.id} (line {member.line}): approval refused: {e.problem}")
        else:
            approved += 1
    err_console.print(
        f"batch {batch_id}: {approved} request(s) approved by {reviewer}, {refused} refused",
        highlight=False,
    )


def run_batch(batch_id: str, as_json: bool, refused: list[tuple[int, str]] | None = None) -> int:
    """Run the batch flow here and print its outcome; returns the exit code (2 when
    ``refused`` lists lines refused at this submission, else the outcome's)."""
    from cli.flow_commands import failure_reason, log_failure
    from flows.subject_batch import subject_batch

    try:
        outcome = subject_batch(batch_id=batch_id)
    except Exception as e:  # one line and the log file's path; the traceback goes there
        line = (
            f"batch {batch_id} failed: {failure_reason(e)}; once that is fixed, continue it "
            f"with lifecycle request submit --resume-batch {batch_id} (nothing done is repeated)"
        )
        log = log_failure(e, line)
        if as_json:
            print_json({"batch_id": batch_id, "error": line, "log": log, "exit_code": 1})
        print_failure(line, log)
        return 1
    code = 2 if refused else outcome.exit_code
    if as_json:
        print_json(
            outcome.model_dump()
            | {"refused": [{"line": n, "problem": p} for n, p in refused or []], "exit_code": code}
        )
        return code
    counts = ", ".join(f"{n} {status}" for status, n in outcome.counts().items())
    console.print(f"batch {batch_id}: {counts or 'no requests'}", highlight=False)
    open_items = [i for i in outcome.items if i.status != "completed"]
    groups: dict[tuple[str, str], list[int]] = {}
    for item in open_items:  # one row per status and reason: a store down stops them all alike
        groups.setdefault((item.status, item.error or ""), []).append(item.line)
    rows = [
        {"requests": len(lines), "status": status, "lines": _ranges(lines), "why": why}
        for (status, why), lines in sorted(groups.items(), key=lambda g: g[1][0])
    ]
    if rows:
        print_table(rows, ["requests", "status", "lines", "why"], title="Requests not completed")
        console.print("request ids per line: --json", highlight=False)
    for hint in {_hint(why) for _, why in groups} - {None}:
        console.print(f"hint: {hint}", highlight=False)
    if any(i.status == "awaiting_approval" for i in open_items):
        console.print(
            f"next: approve the waiting requests with lifecycle request submit --resume-batch "
            f"{batch_id} --approve --reviewer NAME --signing-key FILE (or one by one with "
            "--resume ID --approve ...)",
            highlight=False,
        )
    if any(i.status != "awaiting_approval" for i in open_items):
        console.print(
            f"next: once the cause is fixed, continue them with lifecycle request submit "
            f"--resume-batch {batch_id} (nothing done is repeated)",
            highlight=False,
        )
    return code


def _hint(why: str) -> str | None:
    """How to fix a failure every request of a group met, where the CLI knows (the demo)."""
    from cli.request_submit import demo_hint

    return demo_hint(re.findall(r"store '([^']+)'", why), why)


def _ranges(numbers: list[int]) -> str:
    """``2-6, 8, 10-12``: line numbers, runs collapsed."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _error(message: str, code: int) -> int:
    print_error(message)
    return code


class _progress:
    """A progress line on stderr while lines are registered (nothing when not a terminal)."""

    def __init__(self, total: int, what: str) -> None:
        self._total = total
        self._what = what
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not err_console.is_terminal or self._total < 20:
            return lambda _done: None
        from rich.progress import Progress

        self._bar = Progress(console=err_console, transient=True)
        self._bar.start()
        task = self._bar.add_task(self._what, total=self._total)
        return lambda done: self._bar.update(task, completed=done)

    def __exit__(self, *_: object) -> None:
        if self._bar is not None:
            self._bar.stop()
