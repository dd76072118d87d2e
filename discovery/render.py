"""Render a draft plan as inventory.yaml text, every proposal with its evidence as a comment.

The YAML is valid as written: questions are comments (``# TODO: ...``), alternatives the
reviewer may want are commented-out lines that stay valid once uncommented. No sampled
value is ever written: evidence comes from ``Detection.evidence`` (counts and shares) and
names only tables and columns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from connectors.sql.config import SqlStore
from discovery.detectors import Detection
from discovery.draft import DraftPlan, Reference, TablePlan, identity_kind

_SAFE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_YAML_WORDS = frozenset(
    {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
)  # plain scalars YAML 1.1 reads as booleans or null
_CREATED = ("created_at", "created", "creation_date", "created_on", "inserted_at")
_WAYS = {
    "holders": "rows holding it belong to the subject of the row it points at",
    "target": "the row it points at is linked to the subject (exported; erased if unshared)",
    "none": "not followed (both tables have identities of their own: another person)",
}


@dataclass(frozen=True)
class StoreHeader:
    """What the draft says about the store itself."""

    name: str
    url: str
    url_note: str | None
    region: str
    region_known: bool
    dialect: str
    sample_rows: int
    schema: str | None = None


def scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when safe, else double-quoted (JSON is valid YAML)."""
    if _SAFE.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)


def _flow_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(scalar(i) for i in items) + "]"


def _needs_confirming(d: Detection) -> bool:
    return d.share == 0.0 or d.kind == "person_name"


def _field_line(column: str, d: Detection) -> str:
    todo = "; TODO: confirm the column and its category" if _needs_confirming(d) else ""
    return f"          {scalar(column)}: [{d.category}]   # {d.kind}: {d.evidence}{todo}"


def _identity_entry(column: str, d: Detection) -> str:
    kind = identity_kind(column, d)
    extra = ", case_insensitive: true" if kind == "email" else ""
    return f"{{column: {scalar(column)}, kind: {kind}{extra}}}"


def _identity_lines(plan: TablePlan) -> list[str]:
    if plan.identity:
        lines = ["        identity:   # a subject is found by these columns"]
        for column, d in plan.identity.items():
            note = d.evidence
            if d.kind == "phone":
                note += "; TODO: confirm it holds E.164 numbers (+4930...), the form looked up"
            lines.append(f"          - {_identity_entry(column, d)}   # {note}")
        return lines
    if not plan.held_back:
        return []
    owner = next((r for r in plan.references if r.follow == "holders"), None)
    through = f" through {', '.join(owner.columns)} -> {owner.table}" if owner else ""
    lines = [
        f"        # TODO: these columns could find a subject, but its rows are owned{through};",
        "        # uncomment to also find rows by them (the table is then entered only through",
        "        # its own identities, never through a reference):",
        "        # identity:",
    ]
    lines += [
        f"        #   - {_identity_entry(c, d)}   # {d.evidence}" for c, d in plan.held_back.items()
    ]
    return lines


def _reference_lines(plan: TablePlan) -> list[str]:
    chosen = [r for r in plan.references if r.chosen]
    lines: list[str] = []
    if chosen:
        header = "        references:"
        if any(not r.why for r in chosen):
            header += (
                "   # TODO: these references are equally near a subject; "
                "confirm which one makes a row the subject's (holders)"
            )
        lines.append(header)
        lines += [
            f"          - {{columns: {_flow_list(r.columns)}, table: {scalar(r.table)}, "
            f"to_columns: {_flow_list(r.to_columns)}, follow: {r.follow}}}"
            + (f"   # {r.why}" if r.why else "")
            for r in chosen
        ]
    shown = [r for r in plan.references if not r.chosen]
    owners = sorted({r.table for r in shown if r.follow == "holders"})
    if len(owners) > 1:
        # A rental names its customer and the clerk who served it: erasing the clerk must
        # not take the customer's rentals. The connector cannot tell; the operator can.
        lines.append(
            f"        # TODO: its rows belong to every one of {', '.join(owners)} (holders), so "
            "erasing any of them deletes the row; if a row is one subject's (the others "
            "only point at it), list the others under references: with follow: none"
        )
    if shown:
        lines.append(
            "        # reflected foreign keys, followed by default as shown (to change one, list "
            "it under references: with follow:):"
        )
        lines += [f"        #   {_describe(r)}" for r in shown]
    return lines


def _describe(ref: Reference) -> str:
    cols = ", ".join(ref.columns)
    to = ", ".join(ref.to_columns)
    return f"{cols} -> {ref.table}.{to}: {ref.follow} ({_WAYS[ref.follow]})"


def _reach_lines(plan: TablePlan) -> list[str]:
    lines: list[str] = []
    if plan.reached == "unreached":
        lines += [
            "        # TODO: no identity reaches this table, so an erasure never finds its rows:",
            "        # add an identity column or a reference (references:), or cover it by a",
            "        # retention rule in policy.yaml.",
        ]
    for column, d in plan.identifiers.items():
        lines.append(
            f"        # TODO: {column} may identify a person ({d.evidence}); if it refers to "
            "another table, declare it under references:"
        )
    if not plan.info.primary_key and not plan.identity:
        lines.append(
            "        # TODO: no primary key was reflected; declare primary_key: [...] unless "
            "one reference identifies its rows"
        )
    return lines


def _timestamps(plan: TablePlan) -> str | None:
    for column in plan.info.columns:
        if column.name.lower() in _CREATED and any(
            t in column.type_name.upper() for t in ("DATE", "TIME")
        ):
            return (
                f"        timestamps: {{created: {scalar(column.name)}}}   "
                "# column name and type: the default retention clock"
            )
    return None


def _fate(plan: TablePlan) -> str:
    """What an erasure does to the rows of a table without personal fields (README)."""
    required = {c.name for c in plan.info.columns if not c.nullable}
    for ref in plan.references:
        if ref.follow == "holders" and set(ref.columns) <= required:
            return (
                f"an erasure deletes its rows with the {ref.table} row they reference "
                f"({', '.join(ref.columns)} is NOT NULL)"
            )
    return "an erasure keeps its rows (a row without personal fields stays)"


def table_lines(plan: TablePlan) -> list[str]:
    """One table entry of the draft."""
    info = plan.info
    lines = [f"      - name: {scalar(info.name)}"]
    if info.primary_key:
        lines.append(f"        primary_key: {_flow_list(info.primary_key)}   # reflected")
    lines += _identity_lines(plan)
    if plan.derives is not None:
        column, name = plan.derives
        lines += [
            "        derives:   # other stores (bucket keys) can find the subject by it",
            f"          - {{column: {scalar(column)}, as: {name}}}",
        ]
    lines += _reference_lines(plan)
    lines += _reach_lines(plan)
    if plan.fields:
        lines.append("        fields:   # personal columns and their proposed categories")
        lines += [_field_line(c, d) for c, d in plan.fields.items()]
    else:
        lines.append(f"        # no personal-data candidates: {_fate(plan)}")
        lines.append("        # TODO: list its personal columns under fields:, if it has any")
    stamp = _timestamps(plan)
    if stamp is not None:
        lines.append(stamp)
    return lines


def categories_used(plan: DraftPlan) -> tuple[str, ...]:
    """The categories the draft's fields propose (policy.yaml must define each)."""
    return tuple(sorted({d.category for t in plan.tables for d in t.fields.values()}))


def render_sql_store(plan: DraftPlan, header: StoreHeader) -> list[str]:
    """The lines of one SQL store entry (under ``stores:``)."""
    url_note = f"   # {header.url_note}" if header.url_note else ""
    region_note = "" if header.region_known else "   # TODO: the region the database lives in"
    lines = [
        f"  - name: {header.name}   # TODO: a short name for this database, if not this one",
        "    type: sql",
        f"    description: Drafted from the live {header.dialect} database; review before use",
        f"    url: {json.dumps(header.url)}{url_note}",
        f"    region: {header.region}{region_note}",
    ]
    if header.schema:
        lines.append(
            f"    # TODO: reflected in schema {header.schema}; the store reads the connection's "
            "default schema, so make it the default in the url (PostgreSQL: "
            "?options=-csearch_path%3D<schema>)"
        )
    lines += [
        "    tables:",
    ]
    for table in plan.tables:
        lines += table_lines(table)
        lines.append("")
    return lines + _left_out_lines(plan)


def _left_out_lines(plan: DraftPlan) -> list[str]:
    """Tables left out: as drift exclusions (``ignore:``, each with its reason) where the
    store model has them and the name can be written, else as comments."""
    if not plan.left_out:
        return []
    listed = {n: why for n, why in plan.left_out.items() if _SAFE.match(n)}
    lines: list[str] = []
    if listed and "ignore" in SqlStore.model_fields:
        lines.append(
            "    ignore:   # left out of the draft; TODO: delete an entry if its table holds "
            "personal data after all, and declare the table"
        )
        lines += [
            f"      - {{table: {scalar(n)}, reason: {json.dumps('drafted: ' + why)}}}"
            for n, why in listed.items()
        ]
        rest = {n: why for n, why in plan.left_out.items() if n not in listed}
    else:
        rest = dict(plan.left_out)
    if rest:
        lines.append("    # Left out (declare them if they hold personal data after all):")
        lines += [f"    #   {name}: {why}" for name, why in rest.items()]
    return lines


def render(sql: DraftPlan, header: StoreHeader, extra: Sequence[str] = ()) -> str:
    """The whole draft inventory.yaml; ``extra`` are further store entries (buckets)."""
    categories = ", ".join(categories_used(sql)) or "none"
    lines = [
        "# Draft inventory written by `lifecycle inventory draft`.",
        f"# Up to {header.sample_rows:,} rows were sampled per table, read-only; no sampled "
        "value is written here.",
        "# Every proposal says why in a comment. Review each TODO: fix the line or delete the",
        "# comment. policy.yaml must define the categories used:",
        f"#   {categories}",
        "# Then run `lifecycle config validate` and `lifecycle doctor`.",
        "stores:",
    ]
    lines += render_sql_store(sql, header)
    lines += list(extra)
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"
