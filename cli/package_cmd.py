"""``lifecycle package``: open an access package for the subject; delete expired packages.

``open`` decrypts a package (``core.package_open``) into a folder of JSON and CSV files
per table and the subject's stored files as they were. Exit codes: 0 written; 1 the
package cannot be opened (wrong passphrase or key, altered, truncated, an unsafe name in
it) or written, and nothing was written; 2 usage (no secret or both, a non-empty output
folder without ``--force``).

``expire`` deletes the packages kept longer than the policy's
``requests.package_retention_days`` (``engine.package_expiry``), each deletion recorded
as ``package.expired`` in the ledger; ``--dry-run`` lists them and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.output import JsonOption, console, emit, fail, handled_errors, print_json

app = typer.Typer(no_args_is_help=True)

PackageArg = Annotated[
    Path,
    typer.Argument(
        metavar="FILE", exists=True, dir_okay=False, readable=True, help="The .lcpkg package."
    ),
]
PassphraseOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        metavar="FILE",
        dir_okay=False,
        help="A file holding the passphrase the package was encrypted with.",
    ),
]
KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key",
        metavar="FILE",
        dir_okay=False,
        help="The X25519 private key (lifecycle request keygen) the package was encrypted for.",
    ),
]
OutOpt = Annotated[
    Path,
    typer.Option("--out", metavar="DIR", file_okay=False, help="Folder to write (mode 0700)."),
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Write into a non-empty folder, replacing an earlier opening."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="List the packages due; delete and record nothing.")
]

EXPIRED_COLUMNS = ["package", "request_id", "bytes", "age_days", "partial"]


def _say(text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _secret(passphrase_file: Path | None, key: Path | None) -> Any:
    """The passphrase (bytes, its trailing newline dropped) or the X25519 private key."""
    from core.package import PackageError, load_private_key

    if (passphrase_file is None) == (key is None):
        raise fail("give --passphrase-file FILE or --key FILE (one of them)", 2)
    if key is not None:
        return load_private_key(key)
    assert passphrase_file is not None
    try:
        text = passphrase_file.read_text().rstrip("\r\n")
    except OSError as e:
        raise PackageError(f"cannot read {passphrase_file} ({e.strerror})") from None
    if not text:
        raise fail(f"{passphrase_file} holds no passphrase", 2)
    return text.encode()


def _refuse_non_empty(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise fail(f"{out} is not a folder", 2)
    if not force and out.is_dir() and any(out.iterdir()):
        raise fail(f"{out} is not empty; choose an empty folder or add --force", 2)


@app.command("open")
def open_command(
    package: PackageArg,
    *,
    out: OutOpt,
    passphrase_file: PassphraseOpt = None,
    key: KeyOpt = None,
    force: ForceOpt = False,
    as_json: bool = JsonOption,
) -> None:
    """Decrypt an access package into readable files for the subject.

    Writes tables/<store>/<table>.json and .csv (columns as exported), the subject's
    stored objects under objects/<store>/<bucket>/<key> byte for byte, objects.json,
    manifest.json and README.txt. Nothing is written when the secret is wrong, the
    package was altered or a name in it would leave the folder (exit 1).
    """
    from core.package_open import open_package

    _refuse_non_empty(out, force)
    with handled_errors():
        opened = open_package(package, _secret(passphrase_file, key), out, force=force)
    if as_json:
        print_json(
            {
                "out": str(opened.out),
                "request_id": opened.request_id,
                "incident_id": opened.incident_id,
                "kind": opened.kind or "access",
                "files": opened.files,
                "tables": [
                    {
                        "store": t.store,
                        "table": t.table,
                        "rows": t.rows,
                        "files": [t.json_file, t.csv_file],
                    }
                    for t in opened.tables
                ],
                "buckets": [
                    {
                        "store": b.store,
                        "bucket": b.bucket,
                        "files": b.written,
                        "without_content": b.without_content,
                    }
                    for b in opened.buckets
                ],
            }
        )
        return
    _say(f"opened {opened.label}: {opened.files} files in {opened.out}")
    if opened.affected_subjects:
        for t in opened.tables:
            _say(f"  {t.store}.{t.table}: {t.rows} subject(s) -> {t.json_file}, {t.csv_file}")
        _say(
            "next: send the subject notice from there (`lifecycle incident draft "
            f"{opened.incident_id} --to subjects`), then delete {opened.out} (personal data in "
            "clear)"
        )
        return
    for t in opened.tables:
        _say(f"  {t.store}.{t.table}: {t.rows} row(s) -> {t.json_file}, {t.csv_file}")
    for b in opened.buckets:
        extra = f" ({b.without_content} without content, see objects.json)"
        _say(
            f"  {b.store}/{b.bucket}: {b.written} object file(s) -> objects/{b.store}/{b.bucket}/"
            + (extra if b.without_content else "")
        )
    if not opened.tables and not opened.buckets:
        _say("  no records: nothing about the subject was found")
    _say(
        "next: read README.txt there, hand the folder to the subject over a secure channel "
        f"(it is personal data in clear), then delete {opened.out}"
    )


@app.command("expire")
def expire_command(dry_run: DryRunOpt = False, as_json: bool = JsonOption) -> None:
    """Delete access packages kept longer than the policy's package_retention_days.

    Each deletion is recorded as package.expired in the ledger (request id, size, age).
    """
    from audit.ledger import Ledger
    from config.settings import get_settings
    from engine.package_expiry import due_packages, expire_packages, packages_dir
    from engine.request_support import current_config

    with handled_errors():
        keep_days = current_config().policy.requests.package_retention_days
        if dry_run:  # no ledger needed: nothing is deleted or recorded
            done = due_packages(packages_dir(), keep_days)
        else:
            actor = get_settings().actor
            done = expire_packages(Ledger.open(actor=actor), keep_days, actor=actor)
    rows = [
        {
            "package": p.name,
            "request_id": p.request_id,
            "bytes": p.size,
            "age_days": p.age_days,
            "partial": p.partial,
        }
        for p in done
    ]
    if as_json:
        print_json({"dry_run": dry_run, "keep_days": keep_days, "packages": rows})
        return
    verb = "due (dry run, nothing deleted)" if dry_run else "deleted"
    _say(f"{len(rows)} package(s) older than {keep_days} days {verb} in {packages_dir()}")
    if rows:
        emit(rows, EXPIRED_COLUMNS, as_json=False)
