"""Finding a subject's object versions in an S3 store.

Per bucket, the key templates are expanded with the subject's identity values (derived
identities such as ``customer_id`` come from SQL stores earlier in the inventory); a
template whose placeholder has no value is skipped. Each expanded prefix is listed with
``ListObjectVersions`` page by page, collecting every version and delete marker: only the
subject's keys are held in memory, never a bucket listing.

Optionally (a bucket with ``subject_tag``) objects tagged with the subject's pseudonym are
found too. S3 cannot search by tag, so this lists the whole bucket and asks
``GetObjectTagging`` once per current object: O(objects in the bucket) requests (at AWS
prices, one LIST per 1,000 objects plus one GET per object) and the slowest part of a
request on a large bucket. Prefer key templates; use an S3 Inventory report with tags
for buckets of millions of objects.

Replication destinations (declared ``replicas`` and those in the bucket's replication
configuration) are searched for the same keys; each is a target of its own, with its own
version ids. A destination the inventory does not declare is reported as a warning.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from config.schema import Bucket
from config.schema.inventory import template_placeholders
from connectors.base import Findings, Identities, Key, TargetFinding
from connectors.s3.client import error_code, s3_errors
from connectors.s3.config import S3Store
from core.errors import TerminalError
from core.pseudonym import Pseudonymizer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPLICA_VIA = "replica-of:"


@dataclass(frozen=True)
class Version:
    """One object version or delete marker found in a listing."""

    key: str
    version_id: str
    is_delete_marker: bool
    is_latest: bool

    def as_key(self) -> Key:
        """The plan's key form: ``(object key, version id, is delete marker)``."""
        return (self.key, self.version_id, self.is_delete_marker)


def expand_templates(bucket: Bucket, identities: Identities) -> list[str]:
    """The bucket's prefixes for this subject; templates lacking an identity are skipped."""
    prefixes: set[str] = set()
    for template in bucket.key_templates:
        names = list(dict.fromkeys(template_placeholders(template)))
        choices = [sorted(v for v in identities.get(name, ()) if v) for name in names]
        if not all(choices):
            continue  # a placeholder without a value: this template cannot name the subject
        for combo in itertools.product(*choices):
            prefixes.add(template.format(**dict(zip(names, combo, strict=True))))
    return sorted(prefixes)


def _segment_prefixes(bucket: Bucket, identities: Identities) -> frozenset[str]:
    """The prefixes that must end at a key segment: those of templates ending in a
    placeholder (``t/{id}`` as prefix ``t/1`` would match ``t/12``). Decided per template:
    ``tickets/{id}/`` in the same bucket keeps matching every key under ``tickets/1/``. A
    prefix another template also yields as a plain prefix stays plain (the wider match)."""
    open_ended = [t for t in bucket.key_templates if t.endswith("}")]
    closed = [t for t in bucket.key_templates if not t.endswith("}")]
    segment = set(
        expand_templates(bucket.model_copy(update={"key_templates": tuple(open_ended)}), identities)
    )
    plain = set(
        expand_templates(bucket.model_copy(update={"key_templates": tuple(closed)}), identities)
    )
    return frozenset(segment - plain)


def _within(key: str, prefix: str, exact_segment: bool) -> bool:
    if not key.startswith(prefix):
        return False
    return not exact_segment or len(key) == len(prefix) or key[len(prefix)] == "/"


def list_versions(client: S3Client, bucket: str, prefix: str, page_size: int) -> Iterator[Version]:
    """Every version and delete marker under ``prefix``, streamed page by page."""
    paginator = client.get_paginator("list_object_versions")
    pages = paginator.paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        for v in page.get("Versions", []):
            yield Version(v["Key"], v.get("VersionId") or "null", False, bool(v.get("IsLatest")))
        for m in page.get("DeleteMarkers", []):
            yield Version(m["Key"], m.get("VersionId") or "null", True, bool(m.get("IsLatest")))


def subject_pseudonyms(pseudonym_key: bytes, identities: Identities) -> frozenset[str]:
    """Pseudonyms a ``subject_tag`` may carry: one per identity value.

    ``of_value(kind, v)`` equals the request register's ``of_identity({kind: v})``, so a
    subject registered with one identity value matches the pseudonym the ledger shows.
    """
    maker = Pseudonymizer(pseudonym_key)
    return frozenset(maker.of_value(kind, v) for kind, vals in identities.items() for v in vals)


def tagged_keys(
    client: S3Client, bucket: str, tag: str, values: frozenset[str], page_size: int
) -> Iterator[str]:
    """Current objects whose tag ``tag`` is one of ``values`` (one GET per object: costly)."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": page_size}):
        for obj in page.get("Contents", []):
            tags = client.get_object_tagging(Bucket=bucket, Key=obj["Key"])["TagSet"]
            if any(t["Key"] == tag and t["Value"] in values for t in tags):
                yield obj["Key"]


def replication_destinations(client: S3Client, bucket: str) -> list[str]:
    """Destination buckets of the bucket's enabled replication rules (none if unconfigured)."""
    try:
        config = client.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
    except ClientError as e:
        if error_code(e) == "ReplicationConfigurationNotFoundError":
            return []
        raise
    names = []
    for rule in config.get("Rules", []):
        if rule.get("Status") == "Enabled":
            arn = rule["Destination"]["Bucket"]
            names.append(arn.rsplit(":", 1)[-1])
    return sorted(set(names))


class Locator:
    """Finds one subject's versions in the store's buckets and their replicas."""

    def __init__(self, client: S3Client, store: S3Store, pseudonym_key: bytes, page_size: int):
        self.client = client
        self.store = store
        self.pseudonym_key = pseudonym_key
        self.page_size = page_size

    def _versions(
        self, bucket: str, prefixes: Iterable[str], segment: frozenset[str], exact: Iterable[str]
    ) -> list[Key]:
        found: dict[Key, None] = {}
        for prefix in prefixes:
            for v in list_versions(self.client, bucket, prefix, self.page_size):
                if _within(v.key, prefix, prefix in segment):
                    found[v.as_key()] = None
        for key in exact:
            for v in list_versions(self.client, bucket, key, self.page_size):
                if v.key == key:
                    found[v.as_key()] = None
        return list(found)

    def _replica(
        self,
        dest: str,
        declared: bool,
        prefixes: list[str],
        segment: frozenset[str],
        tagged: list[str],
    ) -> list[Key] | None:
        """The subject's versions in a replica; None when an undeclared one is unreachable."""
        try:
            with s3_errors(self.store.name, "locate replica", dest):
                return self._versions(dest, prefixes, segment, tagged)
        except TerminalError:
            if declared:
                raise  # a declared replica must be searchable: stop and report
            return None  # undeclared (another account?): reported as a warning

    def locate(self, identities: Identities) -> Findings:
        """Every version and delete marker of the subject, per bucket and replica."""
        keys: dict[str, dict[Key, None]] = {}
        vias: dict[str, str] = {}
        categories: dict[str, tuple[str, ...]] = {}
        warnings: list[str] = []
        pseudonyms = subject_pseudonyms(self.pseudonym_key, identities)
        for bucket in self.store.buckets:
            prefixes = expand_templates(bucket, identities)
            segment = _segment_prefixes(bucket, identities)
            tagged: list[str] = []
            with s3_errors(self.store.name, "locate", bucket.name):
                if bucket.subject_tag:
                    tagged = list(
                        tagged_keys(
                            self.client, bucket.name, bucket.subject_tag, pseudonyms, self.page_size
                        )
                    )
                found = self._versions(bucket.name, prefixes, segment, tagged)
                discovered = replication_destinations(self.client, bucket.name)
            via = "key_templates" + ("+subject_tag" if bucket.subject_tag else "")
            keys.setdefault(bucket.name, {}).update(dict.fromkeys(found))
            vias.setdefault(bucket.name, via)
            categories.setdefault(bucket.name, bucket.categories)
            named = {r.bucket for r in bucket.replicas}
            for dest in sorted(named | set(discovered)):
                replica = self._replica(dest, dest in named, prefixes, segment, tagged)
                if dest not in named:
                    warnings.append(
                        f"bucket '{bucket.name}' replicates to '{dest}', which the inventory "
                        "does not declare as a replica; "
                        + ("searched and purged too" if replica is not None else "not searched")
                    )
                if replica is None:
                    continue
                keys.setdefault(dest, {}).update(dict.fromkeys(replica))
                vias.setdefault(dest, REPLICA_VIA + bucket.name)
                categories.setdefault(dest, bucket.categories)
        targets = tuple(
            TargetFinding(
                target=name,
                keys=tuple(found),
                categories=categories[name],
                via=vias[name],
                records=_access_records(vias[name], found),
            )
            for name, found in keys.items()
        )
        return Findings(store=self.store.name, targets=targets, warnings=tuple(warnings))


def _access_records(via: str, found: Iterable[Key]) -> int:
    """What an access package holds for a target: every object version, no delete markers.

    Old versions are personal data held too; replicas hold copies of the source's, so
    they add no records of their own.
    """
    if via.startswith(REPLICA_VIA):
        return 0
    return sum(1 for key in found if not key[2])
