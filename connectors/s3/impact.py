"""What an incident's bucket part holds: current objects and distinct subjects, counted.

**Records** are the *current* objects under the part's bucket and prefix, as one paginated
``ListObjectsV2`` pass shows them (the listing a breach of the bucket exposes), narrowed by
the part's window on ``LastModified`` (``start <= t < end``). Noncurrent versions and
delete markers are not counted: reading them takes ``s3:ListBucketVersions`` and
``s3:GetObjectVersion``, and listing them is ``ListObjectVersions``, several times the
pages of a bucket with history. An object whose current version is a delete marker is not
listed, so not counted. Zero-byte "folder" keys are objects and count like any other.

**Subjects** are parsed from each counted key by the bucket's key templates, exactly as
``connectors.s3.locate`` expands them: ``tickets/{customer_id}/`` holds the keys starting
with ``tickets/<value>/``, a template ending in a placeholder (``archive/{customer_id}``)
the key ``archive/<value>`` and the keys under ``archive/<value>/``. A placeholder's value is
one path segment's worth of text (no ``/``); where a segment holds two placeholders or a
placeholder and literal text, the split is the rightmost possible. The part's ``identity``
is one placeholder name: among the templates that can produce keys under the prefix, the
one most of them use (the first used on a tie), so ``tickets/{customer_id}/`` plus
``orders/{customer_id}/{order_id}/`` count customers. A key no such template matches is a
record but no subject. A bucket found by ``subject_tag`` alone has no identity here
(``identity=None``, ``subjects=0``): reading tags costs one request per object, which the
incident budget (a listing and nothing more) does not allow; the assessment must show such
a part's subjects as not counted, not as none.

Object keys never reach an exception, a log or the result: only counts and, for the
encrypted affected-subjects package, the parsed identity values (``affected_keys``).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from config.schema.stores import template_placeholders
from connectors.base import ImpactCount
from connectors.s3.client import s3_errors
from connectors.s3.config import Bucket, S3Store
from core.errors import InvalidInput

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from incidents.scope import ScopePart

OPERATION = "count incident impact"


@dataclass(frozen=True)
class KeyTemplate:
    """A key template read backwards: the placeholder values a key was built from."""

    template: str
    names: tuple[str, ...]  # distinct placeholders, in order of first use
    head: str  # the literal text before the first placeholder: every key starts with it
    pattern: re.Pattern[str]

    @classmethod
    def of(cls, template: str) -> KeyTemplate:
        """Compile ``template`` (already validated by the inventory model)."""
        names = tuple(dict.fromkeys(template_placeholders(template)))
        parts: list[str] = []
        literals: list[str] = []  # unescaped text ("{{" is "{"), as str.format renders it
        head: str | None = None
        seen: set[str] = set()
        name: str | None = None
        for literal, name, _spec, _conversion in string.Formatter().parse(template):
            parts.append(re.escape(literal))
            literals.append(literal)
            if name is None:
                continue
            head = "".join(literals) if head is None else head
            # A repeated placeholder holds the same value (``str.format`` in locate).
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+)")
            seen.add(name)
        if name is not None:  # the template ends in a placeholder
            # Open-ended: ``t/{id}`` as prefix ``t/1`` must not take ``t/12`` (locate._within).
            parts.append("(?:/|$)")
        return cls(template, names, head or "", re.compile("".join(parts)))

    def reaches(self, prefix: str) -> bool:
        """Whether this template can produce keys under ``prefix``."""
        return self.head.startswith(prefix) or prefix.startswith(self.head)

    def value(self, key: str, name: str) -> str | None:
        """``name``'s value in ``key``, or None when the key is not one of this template's."""
        if not key.startswith(self.head):
            return None
        found = self.pattern.match(key)
        return None if found is None else found.group(name)


def part_identity(templates: list[KeyTemplate]) -> str | None:
    """The placeholder most ``templates`` use (the first used on a tie); None without any."""
    counts = Counter(name for t in templates for name in t.names)
    # most_common sorts stably: ties keep the order of first use.
    return counts.most_common(1)[0][0] if counts else None


@dataclass(frozen=True)
class BucketScope:
    """One bucket part resolved against the inventory: where to list and how to parse."""

    store: str
    bucket: Bucket
    region: str
    prefix: str
    start: datetime | None
    end: datetime | None
    identity: str | None
    templates: tuple[KeyTemplate, ...]  # those reaching the prefix and using ``identity``

    @classmethod
    def of(cls, store: S3Store, part: ScopePart) -> BucketScope:
        """``part`` of ``store``; InvalidInput naming the part when the inventory refuses it."""
        problems = store.scope_problems(part)
        if problems or part.bucket is None:
            raise InvalidInput("; ".join(problems), store=store.name, part=part.label)
        bucket = store.bucket(part.bucket)
        prefix = part.prefix or ""
        reaching = [t for t in map(KeyTemplate.of, bucket.key_templates) if t.reaches(prefix)]
        identity = part_identity(reaching)
        return cls(
            store=store.name,
            bucket=bucket,
            region=store.bucket_region(bucket),
            prefix=prefix,
            start=part.window.start if part.window else None,
            end=part.window.end if part.window else None,
            identity=identity,
            templates=tuple(t for t in reaching if identity in t.names),
        )

    def subject(self, key: str) -> str | None:
        """The subject ``key`` belongs to (its identity value), or None."""
        for template in self.templates:
            value = template.value(key, self.identity or "")
            if value is not None:
                return value
        return None

    def keys(self, client: S3Client, page_size: int) -> Iterator[str]:
        """Every current object's key under the prefix within the window: one listing."""
        start, end = self.start, self.end
        with s3_errors(self.store, OPERATION, self.bucket.name):
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket.name,
                Prefix=self.prefix,
                PaginationConfig={"PageSize": page_size},
            )
            for page in pages:
                contents = page.get("Contents", [])
                if start is None or end is None:
                    yield from (obj["Key"] for obj in contents)
                else:
                    yield from (o["Key"] for o in contents if start <= o["LastModified"] < end)


def count_impact(client: S3Client, store: S3Store, part: ScopePart, page_size: int) -> ImpactCount:
    """Records (current objects) and distinct subjects of ``part`` in one listing pass."""
    scope = BucketScope.of(store, part)
    records = 0
    subjects: set[str] = set()
    if scope.templates:
        subject = scope.subject
        for key in scope.keys(client, page_size):
            records += 1
            value = subject(key)
            if value is not None:
                subjects.add(value)
    else:
        records = sum(1 for _ in scope.keys(client, page_size))
    return ImpactCount(
        records=records,
        subjects=len(subjects),
        identity=scope.identity,
        categories=tuple(scope.bucket.categories),
        region=scope.region,
        clients={},
    )


def affected_keys(
    client: S3Client, store: S3Store, part: ScopePart, page_size: int
) -> Iterator[str]:
    """Each distinct subject of ``part`` once (its ``identity`` value), as listed.

    The part is checked at once (InvalidInput); the listing runs as the result is read."""
    scope = BucketScope.of(store, part)
    return _distinct_subjects(scope, client, page_size) if scope.templates else iter(())


def _distinct_subjects(scope: BucketScope, client: S3Client, page_size: int) -> Iterator[str]:
    seen: set[str] = set()
    for key in scope.keys(client, page_size):
        value = scope.subject(key)
        if value is not None and value not in seen:
            seen.add(value)
            yield value
