"""``lifecycle inventory draft``: write a draft inventory.yaml from a live database.

Reflects the database, samples a bounded number of rows per table read-only, and writes
tables, keys, references with their direction, identity and personal-field candidates,
each with its evidence as a comment (never a sampled value). Usage errors exit 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.output import console, err_console

app = typer.Typer(no_args_is_help=True, help="Draft the inventory from live stores.")

MAX_SAMPLE = 100_000
"""The most rows per table the command will read (the sample, not the table, is bounded)."""

_REACHED = {
    "identity": "found by its own identities",
    "reference": "reached through references",
    "unreached": "no identity reaches it (TODO)",
}


@app.command()
def draft(
    *,
    url: Annotated[
        str,
        typer.Option(
            "--url",
            envvar="LIFECYCLE_DRAFT_URL",
            show_envvar=True,
            help="SQLAlchemy URL of the database (the variable keeps a password off the "
            "command line).",
        ),
    ],
    bucket: Annotated[
        list[str] | None,
        typer.Option("--bucket", help="An S3 bucket to list (bounded) for key templates."),
    ] = None,
    sample: Annotated[
        int,
        typer.Option("--sample", min=1, max=MAX_SAMPLE, help="Rows sampled per table, read-only."),
    ] = 1000,
    out: Annotated[
        Path | None,
        typer.Option("--out", dir_okay=False, help="Write the draft here (default: stdout)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    schema: Annotated[str | None, typer.Option("--schema", help="Schema to reflect.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Store name (default: the database's name).")
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="Where the stores live (default: AWS_REGION, else a TODO)."),
    ] = None,
    s3_endpoint: Annotated[
        str | None,
        typer.Option(
            "--s3-endpoint", help="S3 endpoint (default: LIFECYCLE_S3_ENDPOINT, else AWS)."
        ),
    ] = None,
) -> None:
    """Write a draft inventory.yaml for the database at --url (and --bucket buckets)."""
    from config.schema.common import is_region
    from core.errors import InvalidInput
    from discovery.pipeline import draft_inventory

    if out is not None and out.exists() and not force:
        raise InvalidInput(f"{out} exists; choose another --out or pass --force")
    if name is not None and not re.match(r"^[a-z][a-z0-9_-]{0,62}$", name):
        raise InvalidInput(f"--name {name!r}: lowercase letters, digits, '_' or '-'")
    if region is not None and not is_region(region):
        raise InvalidInput(f"--region {region!r} is not a region name such as eu-central-1")
    result = draft_inventory(
        url,
        buckets=tuple(bucket or ()),
        rows=sample,
        schema=schema,
        name=name,
        region=region,
        s3_endpoint=s3_endpoint,
    )
    report = console
    if out is None:
        typer.echo(result.text, nl=False)
        report = err_console  # the draft owns standard output
    else:
        out.write_text(result.text, encoding="utf-8")
        report.print(f"wrote {escape(str(out))}", highlight=False)
    for table in result.tables:
        report.print(
            f"  {escape(table.name)}: {table.identities} identity, {table.fields} personal-field "
            f"candidates; {_REACHED[table.reached]}",
            highlight=False,
            soft_wrap=True,
        )
    if result.left_out:
        left = ", ".join(result.left_out)
        report.print(f"  left out (see the draft's end): {escape(left)}", soft_wrap=True)
    for name_, listed, templates in result.buckets:
        report.print(
            f"  bucket {escape(name_)}: {listed} keys listed, {templates} key templates proposed",
            highlight=False,
            soft_wrap=True,
        )
    target = escape(str(out.parent)) if out is not None else "<config folder>"
    report.print(
        "next: review the TODO comments, add the categories to policy.yaml, then "
        f"`lifecycle config validate --config {target}` and `lifecycle doctor`",
        highlight=False,
        soft_wrap=True,
    )
