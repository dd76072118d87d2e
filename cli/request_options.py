"""The options of ``lifecycle request submit`` (``cli.request_submit``), typed for typer.

``--verbose`` is shared with the other commands that run a flow (``cli.flow_commands``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
BatchOpt = Annotated[
    Path | None,
    typer.Option(
        "--batch",
        metavar="FILE",
        help="Many requests: a CSV (kind,identity,requested_by) or JSON-lines file, one "
        "request per line; each is registered on its own, then one run carries them out.",
    ),
]
ResumeBatchOpt = Annotated[
    str | None,
    typer.Option(
        "--resume-batch",
        metavar="BATCH",
        help="Run batch BATCH again (with --approve: approve its waiting requests first).",
    ),
]
NoRunOpt = Annotated[
    bool,
    typer.Option(
        "--no-run", help="--batch: register only; run later (--resume-batch, deployment)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
