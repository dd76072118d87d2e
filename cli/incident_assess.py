"""``lifecycle incident assess | subjects``: a breach's impact from the stores, and who.

``assess`` runs the ``incident-assessment`` flow in this process, as other flow commands
do (a running Prefect API reused, Prefect's logs in the log file, ``--verbose``), then
prints what the register recorded: per scope part the records, subjects, categories,
region and encryption at rest, the totals, the risk with its reasons and each
notification with its deadline. ``subjects`` writes the encrypted package of the affected
subjects (no Prefect: the engine's ``subjects_package``), for sending the subject notice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from cli.flow_commands import VerboseOpt, failure_reason, log_failure, quiet_prefect
from cli.incident_common import (
    IdArg,
    actor,
    config,
    next_step,
    notification_json,
    notification_row,
    open_register,
    say,
    what_next,
    when,
)
from cli.output import JsonOption, fail, handled_errors, print_failure, print_json, print_table

if TYPE_CHECKING:
    from incidents.assessment import Assessment, PartAssessment
    from state.incidents import IncidentRegister

PART_COLUMNS = ["part", "records", "subjects", "by", "categories", "region", "encrypted"]
NOTIFICATION_COLUMNS = ["audience", "status", "because"]


def _encrypted(p: PartAssessment) -> str:
    fact = p.at_rest
    if fact.encrypted is None:
        return "unknown"
    if not fact.encrypted:
        return "no"
    return f"yes ({fact.key_held_by})" if fact.key_held_by else "yes"


def part_rows(a: Assessment) -> list[dict[str, Any]]:
    """The parts and a total row, as ``assess`` and ``show`` print them."""
    rows = [
        {
            "part": p.label,
            "records": f"{p.records:,}",
            "subjects": f"{p.subjects:,}" if p.identity else "not counted",
            "by": p.identity or "-",
            "categories": ", ".join(p.categories) or "-",
            "region": p.region or "-",
            "encrypted": _encrypted(p),
        }
        for p in a.parts
    ]
    rows.append(
        {
            "part": "total",
            "records": f"{a.records:,}",
            "subjects": f"{a.subjects:,}",
            "by": ", ".join(a.subjects_by) or "-",
            "categories": ", ".join(a.categories) or "-",
            "region": ", ".join(a.regions) or "-",
            "encrypted": "unintelligible" if a.unintelligible else "readable",
        }
    )
    return rows


def print_assessment(register: IncidentRegister, incident_id: str, as_json: bool) -> None:
    """The recorded assessment, its notifications and what to do next."""
    incident = register.get(incident_id)
    a = incident.assessment
    now = datetime.now(UTC)
    notes = register.notifications(incident_id)
    steps = what_next(register, incident)
    if as_json:
        print_json(
            {
                "incident_id": incident_id,
                "assessed_at": when(incident.assessed_at, True),
                "assessment": a.to_json() if a is not None else None,
                "notifications": [notification_json(n, now) for n in notes],
                "next": steps,
            }
        )
        return
    if a is None:
        say(f"{incident_id} has no assessment")
        return
    print_table(part_rows(a), PART_COLUMNS, title=f"Assessment of {incident_id}")
    high = f" (high-risk: {', '.join(a.high_risk_categories)})" if a.high_risk_categories else ""
    key = {True: "compromised", False: "not compromised", None: "not known"}[a.key_compromised]
    say(
        f"{a.records:,} records, {a.subjects:,} distinct subjects; categories "
        f"{', '.join(a.categories) or 'none'}{high}; regions {', '.join(a.regions) or 'none'}"
    )
    if a.clients:
        say("clients: " + ", ".join(f"{c} ({n:,} subjects)" for c, n in a.clients.items()))
    say(f"encryption keys {key}; data {'unintelligible' if a.unintelligible else 'readable'}")
    say(f"risk: {a.risk}")
    for reason in a.reasons:
        say(f"  because {reason}")
    print_table(
        [notification_row(n, now) for n in notes], NOTIFICATION_COLUMNS, title="Notifications"
    )
    for step in steps:
        next_step(step)


def _failed(incident_id: str, error: Exception, as_json: bool) -> NoReturn:
    line = (
        f"incident assessment of {incident_id} failed: {failure_reason(error)}; once that is "
        f"fixed, run `lifecycle incident assess {incident_id}` again"
    )
    log = log_failure(error, line)
    if as_json:
        print_json({"error": line, "log": log})
    print_failure(line, log)
    raise typer.Exit(1)


def assess_command(
    incident_id: IdArg, *, as_json: bool = JsonOption, verbose: VerboseOpt = False
) -> None:
    """Assess a declared breach from the stores (runs the incident-assessment flow).

    Prints per scope part the records, distinct subjects, categories, region and
    encryption at rest; the totals; the risk with its reasons; the notifications due.

    Exit codes: 0 assessed; 1 refused (not a declared breach, no scope) or the assessment
    failed (one line, the log file); 2 invalid configuration or a scope the inventory no
    longer accepts.
    """
    from engine.incident_assessment import assessable

    with handled_errors():  # before any Prefect work: a wrong id answers at once
        register = open_register(actor())
        assessable(config(), register, incident_id)
    quiet_prefect(verbose)
    from flows.incident_assessment import incident_assessment

    try:
        incident_assessment(incident_id=incident_id)
    except Exception as e:  # one line and the log file; the traceback goes there
        _failed(incident_id, e, as_json)
    print_assessment(register, incident_id, as_json)


RecipientKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--recipient-key",
        metavar="FILE",
        dir_okay=False,
        help="X25519 public key (lifecycle request keygen) to encrypt the package for.",
    ),
]
PassphraseFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        metavar="FILE",
        dir_okay=False,
        help="A file holding the passphrase to encrypt the package with.",
    ),
]
OutDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        metavar="DIR",
        file_okay=False,
        help="Folder to write the package to (default: the exports folder, var/exports).",
    ),
]


def _recipient(passphrase_file: Path | None, recipient_key: Path | None) -> Any:
    from core.package import PackageError, PassphraseRecipient, X25519Recipient, load_public_key

    if (passphrase_file is None) == (recipient_key is None):
        raise fail("give --recipient-key FILE or --passphrase-file FILE (one of them)", 2)
    if recipient_key is not None:
        return X25519Recipient(load_public_key(recipient_key))
    assert passphrase_file is not None
    try:
        text = passphrase_file.read_text().rstrip("\r\n")
    except OSError as e:
        raise PackageError(f"cannot read {passphrase_file} ({e.strerror})") from None
    if not text:
        raise fail(f"{passphrase_file} holds no passphrase", 2)
    return PassphraseRecipient(text.encode())


def subjects_command(
    incident_id: IdArg,
    *,
    recipient_key: RecipientKeyOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    out: OutDirOpt = None,
    as_json: bool = JsonOption,
) -> None:
    """Write the affected subjects of an assessed breach as an encrypted package.

    One record per subject, with the identities the stores give back, for sending the
    subject notice; `lifecycle package open` opens it.

    Only the package's digest and counts reach the ledger. Exit codes: 0 written; 1 refused
    (not assessed, scope changed since) or a store failed; 2 no key or passphrase.
    """
    from core.private_files import private_dir
    from engine.incident_assessment import subjects_package
    from engine.package_expiry import packages_dir

    with handled_errors():
        recipient = _recipient(passphrase_file, recipient_key)
        folder = out if out is not None else packages_dir()
        private_dir(folder)
        info = subjects_package(
            config(), open_register(actor()), incident_id, recipient, folder, actor()
        )
    if as_json:
        print_json(
            {
                "incident_id": incident_id,
                "package": info.location,
                "sha256": info.sha256,
                "bytes": info.size,
                "subjects": info.records,
            }
        )
        return
    say(f"{info.records:,} affected subjects written, encrypted: {info.location}")
    say(f"  sha256 {info.sha256} ({info.size:,} bytes); the ledger holds the digest and count")
    key = "--key FILE" if recipient_key is not None else "--passphrase-file FILE"
    next_step(
        f"open it where the notice is sent: `lifecycle package open {info.location} {key} "
        f"--out DIR`; then `lifecycle incident draft {incident_id} --to subjects`"
    )
