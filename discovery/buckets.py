"""Propose key templates for S3 buckets from a bounded listing of their keys.

At most ``MAX_KEYS`` keys per bucket are listed (one ListObjectsV2 page). Keys are split
at ``/``; where keys under a common prefix differ in one folder segment that looks like a
subject's identifier (a number, a UUID, an e-mail address), the prefix with a placeholder
there is proposed (``tickets/{customer_id}/``), with the share of keys matching as
evidence. Keys and variable segments are never written or logged; a common prefix is shown
only if no detector finds personal data in it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from discovery.detectors import classify, is_email

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAX_KEYS = 1000
"""Keys listed per bucket: one page, never the whole bucket."""

MIN_KEYS = 3
"""Keys a prefix needs before a pattern under it counts as evidence."""

SEGMENT_SHARE = 0.8
"""The share of keys under a prefix whose segment must look like an identifier."""

MAX_DEPTH = 4
"""Folder depth searched for the varying segment."""

_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_NUMBER = re.compile(r"^\d{1,19}$")


@dataclass(frozen=True)
class KeyTemplate:
    """A proposed key template: a safe prefix, the segment's kind, and the evidence."""

    prefix: str
    kind: str  # "number" | "uuid" | "email"
    evidence: str


@dataclass(frozen=True)
class BucketDraft:
    """What the listing of one bucket suggests."""

    name: str
    listed: int
    templates: tuple[KeyTemplate, ...]


def _segment_kind(segment: str) -> str | None:
    if _NUMBER.match(segment):
        return "number"
    if _UUID.match(segment):
        return "uuid"
    if is_email(segment):
        return "email"
    return None


def _safe_prefix(parts: Sequence[str]) -> bool:
    """A constant prefix may be written only if nothing in it looks personal."""
    return all(classify("segment", [p]) is None and _segment_kind(p) is None for p in parts)


def propose_templates(keys: Sequence[str]) -> tuple[KeyTemplate, ...]:
    """Key templates suggested by ``keys`` (shallowest first; none nested in another)."""
    folders = [k.split("/")[:-1] for k in keys]  # the last segment is the object's name
    found: list[KeyTemplate] = []
    for depth in range(MAX_DEPTH):
        groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for parts in folders:
            if len(parts) > depth:
                groups[tuple(parts[:depth])].append(parts[depth])
        for prefix, segments in sorted(groups.items()):
            taken = any(("/".join(prefix) + "/").startswith(t.prefix) for t in found)
            if len(segments) < MIN_KEYS or len(set(segments)) < 2 or taken:
                continue
            if not _safe_prefix(prefix):
                continue
            kinds = [_segment_kind(s) for s in segments]
            for kind in ("number", "uuid", "email"):
                share = kinds.count(kind) / len(segments)
                if share >= SEGMENT_SHARE:
                    place = "/".join(prefix) + "/" if prefix else ""
                    evidence = (
                        f"{share * 100:.0f}% of {len(segments):,} listed keys under "
                        f"'{place or '(the bucket root)'}' have a {kind} as their next folder"
                    )
                    found.append(KeyTemplate(place, kind, evidence))
                    break
    return tuple(found)


def list_keys(client: S3Client, bucket: str, limit: int = MAX_KEYS) -> list[str]:
    """At most ``limit`` keys of ``bucket`` (one page, no pagination)."""
    answer = client.list_objects_v2(Bucket=bucket, MaxKeys=min(limit, MAX_KEYS))
    return [str(item["Key"]) for item in answer.get("Contents", [])]


def draft_bucket(client: S3Client, bucket: str, limit: int = MAX_KEYS) -> BucketDraft:
    """List ``bucket`` (bounded) and propose its key templates; the keys are then dropped."""
    keys = list_keys(client, bucket, limit)
    return BucketDraft(bucket, len(keys), propose_templates(keys))


def _commented(lines: list[str], indent: int) -> list[str]:
    """``lines`` commented out at ``indent``: valid YAML again once uncommented."""
    return [line[:indent] + "# " + line[indent:] for line in lines]


def render_buckets(
    drafts: Sequence[BucketDraft], placeholders: dict[str, str | None], region: str
) -> list[str]:
    """The lines of an S3 store entry. ``placeholders`` maps a segment kind (number, uuid,
    email) to the identity or derived name the SQL draft offers for it, None if none.

    A bucket without a key template is written commented out (the inventory refuses a
    bucket it cannot search), and so is the whole store when no bucket has one.
    """
    lines = [
        "  - name: files   # TODO: a short name for this object storage",
        "    type: s3",
        f"    region: {region}   # TODO: the region the buckets live in",
        '    endpoint_url: "${LIFECYCLE_S3_ENDPOINT:-}"   # empty: the AWS default endpoint',
        "    buckets:",
    ]
    entries = [_bucket_lines(draft, placeholders) for draft in drafts]
    if any(usable for _, usable in entries):
        for entry, usable in entries:
            lines += entry if usable else _commented(entry, 6)
        return lines
    lines += [line for entry, _ in entries for line in entry]
    note = "  # TODO: no bucket had a key template to propose; uncomment once one has one"
    return [note, *_commented(lines, 2)]


def _bucket_lines(
    draft: BucketDraft, placeholders: dict[str, str | None]
) -> tuple[list[str], bool]:
    lines = [
        f"      - name: {draft.name}",
        "        categories: [documents]   # TODO: what the objects hold (a policy category)",
    ]
    usable = [(t, placeholders.get(t.kind)) for t in draft.templates]
    written = [f'"{t.prefix}{{{name}}}/"' for t, name in usable if name]
    personal = any(t.kind == "email" for t, name in usable if name)
    if written:
        lines.append(f"        key_templates: [{', '.join(written)}]")
        lines += [
            f"        # {t.prefix}{{{name}}}/: {t.evidence}; TODO: confirm the folder holds {name}"
            for t, name in usable
            if name
        ]
    else:
        lines.append(
            f"        # TODO: no folder of the {draft.listed:,} listed keys looked like an "
            "identifier the SQL store offers; add key_templates: or subject_tag:, uncomment"
        )
    for t, name in usable:
        if not name:
            lines.append(
                f"        # {t.prefix}{{...}}/: {t.evidence}, but no identity or derived "
                "name in the draft holds such values; TODO: declare one"
            )
    lines.append(
        f"        keys_contain_personal_data: {'true' if personal else 'false'}"
        + ("   # the keys hold e-mail addresses" if personal else "")
    )
    return lines, bool(written)
