"""``lifecycle approver``: approvers' signing keys and signed decisions.

``keygen`` makes an Ed25519 key pair and prints the line that lists its public key in the
policy; ``list`` shows the policy's approvers, their key fingerprints and how each may
decide; ``sign`` signs a decision on a request's current plans and prints the line to
paste into the approval form of the Prefect UI. None of these runs a flow or imports
Prefect; ``sign`` records nothing (the decision is taken when the form is submitted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.output import console, err_console, fail, handled_errors, print_json, print_table

app = typer.Typer(no_args_is_help=True)

LIST_COLUMNS = ["name", "key", "may_decide"]


@app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Private key file to create (mode 0600).")],
    name: Annotated[
        str, typer.Option("--name", help="The approver's name, for the policy line.")
    ] = "NAME",
) -> None:
    """Make an approver's Ed25519 key pair; prints the policy line with the public key."""
    from core.approver_keys import fingerprint, generate_signing_key, public_key_text

    with handled_errors():
        public = generate_signing_key(out)
    console.print(f"private key: {out} (keep it secret: it signs your decisions)", highlight=False)
    console.print(f"fingerprint: {fingerprint(public)}", highlight=False)
    console.print("add to policy.yaml under requests.approval.approvers:", highlight=False)
    console.print(
        f'  - {{name: {name}, public_key: "{public_key_text(public)}"}}',
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


@app.command("list")
def list_approvers(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The policy's approvers, their key fingerprints and how each may decide."""
    from config.loader import load_config
    from core.approver_keys import fingerprint, parse_public_key

    with handled_errors():
        approval = load_config().policy.requests.approval
    rows: list[dict[str, Any]] = []
    for entry in approval.approvers:
        if entry.public_key is not None:
            key = fingerprint(parse_public_key(entry.public_key))
            how = "signed decisions (CLI, UI)"
        else:
            key = "none (deprecated plain name)"
            how = "unsigned in the UI only" if approval.unverified_ui else "nothing: no key"
        rows.append({"name": entry.name, "key": key, "may_decide": how})
    if as_json:
        print_json(
            {
                "approvers": rows,
                "unverified_ui": approval.unverified_ui,
                "auto_approve": approval.auto_approve,
            }
        )
        return
    print_table(rows, LIST_COLUMNS, title="Approvers (requests.approval.approvers)")
    ui = "accepted, recorded as unverified" if approval.unverified_ui else "refused"
    console.print(f"unsigned decisions in the Prefect UI: {ui}", highlight=False)
    if approval.auto_approve:
        console.print("auto_approve is on: the policy approves every request", highlight=False)


@app.command("sign")
def sign(
    request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID", help="Request id (req_...).")],
    key: Annotated[Path, typer.Option("--key", help="Your Ed25519 private key file.")],
    reviewer: Annotated[
        str | None,
        typer.Option(
            "--reviewer", help="Your name in the policy (default: the one listing this key)."
        ),
    ] = None,
    reject: Annotated[bool, typer.Option("--reject", help="Sign a rejection instead.")] = False,
) -> None:
    """Sign a decision on the request's plans as they are now; prints the line to paste
    as the signature in the Prefect UI's approval form (the plan summary goes to stderr)."""
    from core.approver_keys import PRE_APPROVAL, SigningKeyError, load_signing_key
    from state.approvals import (
        SIGNATURE_MAX_AGE,
        DecisionRefused,
        current_scope,
        plans_digest,
        signer_for,
    )

    with handled_errors():
        ctx = _context()
        try:
            private = load_signing_key(key)
        except SigningKeyError as e:
            raise fail(e.message, 2) from None
        approval = ctx["policy"]
        name = reviewer or _name_of(approval, private)
        try:
            signer = signer_for(approval, name, private)
        except DecisionRefused as refused:
            raise fail(refused.problem, 2) from None
        record = ctx["register"].get(request_id)
        if record.status.terminal:
            raise fail(f"request {request_id} is {record.status}; there is nothing to decide")
        scope = current_scope(record, ctx["progress"])
        if scope == PRE_APPROVAL:
            raise fail(f"request {request_id} has no plans yet; sign once it awaits approval")
        signed = signer.sign(request_id, scope, "rejected" if reject else "approved")
    err_console.print(
        f"{signed.decision} by {signed.approver}: request {request_id}, plans digest "
        f"{plans_digest(ctx['progress'], request_id)}; usable for "
        f"{int(SIGNATURE_MAX_AGE.total_seconds() // 3600)} hours",
        highlight=False,
    )
    console.print(signed.token(), highlight=False, soft_wrap=True, markup=False)


def _context() -> dict[str, Any]:
    """The policy's approval section, the register and progress (no Prefect import)."""
    from audit.keystore import keyring_from_settings
    from audit.ledger import Ledger
    from config.loader import load_config
    from state.progress import RequestProgress
    from state.register import RequestRegister

    config = load_config()
    keys = keyring_from_settings()
    ledger = Ledger.open(keys=keys)
    return {
        "policy": config.policy.requests.approval,
        "register": RequestRegister(ledger, keys),
        "progress": RequestProgress(ledger.engine, keys),
    }


def _name_of(approval: Any, private: Any) -> str:
    from core.approver_keys import public_key_text

    text = public_key_text(private.public_key())
    for entry in approval.approvers:
        if entry.public_key is not None and entry.public_key.strip() == text:
            return str(entry.name)
    raise fail("no approver in the policy has this key's public key (lifecycle approver list)", 2)
