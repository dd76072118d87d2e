"""Retention sweeps on one bucket prefix: count, then delete every version of expired keys.

A key is expired when its newest entry (current version or delete marker) was written
before every condition's cut-off; then all of its versions and delete markers go, so
nothing of it stays recoverable. The listing (``ListObjectVersions``; ``ListObjectsV2`` on
a bucket whose versioning was never enabled, which has nothing else: see ``_versioned``)
is read page by page and grouped per key, never held whole in memory; a key's versions
may span pages.

Batches mirror the SQL sweep: ``next_batch`` reads whole keys after a cursor, one listed
page's worth, and returns the range with the count of its versions (and, in ``keys`` audit
mode, their digest), recorded before anything changes; ``apply`` deletes the versions that
listing found by version id with DeleteObjects (at most 1,000 per call), so every page is
listed once. A range applied without that listing (a batch resumed after a crash) is
listed again, its expiry and holds re-checked. Deleting only listed version ids means a
version written in between survives, and re-applying a range whose objects are gone
deletes nothing.

Held versions are counted, never deleted: a hold covering the whole target, a hold on a
prefix or tag inside it (tags read from the key's newest version, only when such a hold
exists), subjects' keys the caller resolved (``held_keys``), and Object Lock (legal hold,
COMPLIANCE retention, GOVERNANCE retention unless the bucket allows the bypass). A key's
other versions still go, but a latest delete marker stays with held versions, so that
deleted data does not come back into view.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from connectors.base import Key, SweepBatch, keys_digest
from connectors.s3.client import error_code, s3_errors
from connectors.s3.config import S3Store
from connectors.s3.locate import Version
from connectors.s3.locks import hold_deferral, lock_deferral, lock_enabled, lock_state, version_tags
from connectors.s3.purge import MAX_KEYS_PER_CALL, Chunk, ChunkOutcome, Purger
from retention.targets import SweepTarget, utc_naive

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        DeleteMarkerEntryTypeDef,
        ListObjectVersionsOutputTypeDef,
        ObjectVersionTypeDef,
    )

_Row = tuple[str, str, bool, bool, datetime]  # key, version id, is marker, is latest, modified


@dataclass
class _Group:
    """Every version and delete marker of one object key, in listing order."""

    key: str
    versions: list[Version] = field(default_factory=list)
    newest: datetime | None = None  # LastModified (naive UTC) of the latest entry
    latest_seen: bool = False

    def add(self, row: _Row) -> None:
        _, version_id, marker, latest, modified = row
        self.versions.append(Version(self.key, version_id, marker, latest))
        modified = utc_naive(modified)
        if latest:
            self.newest, self.latest_seen = modified, True
        elif not self.latest_seen and (self.newest is None or modified > self.newest):
            self.newest = modified  # until the latest entry is seen (see _complete)


@dataclass
class _Verdict:
    """What a sweep does to one expired key's versions."""

    delete: list[Key] = field(default_factory=list)
    bypass: list[Key] = field(default_factory=list)  # GOVERNANCE retention, bypass allowed
    held: int = 0

    @property
    def keys(self) -> list[Key]:
        return self.delete + self.bypass


def _row(entry: ObjectVersionTypeDef | DeleteMarkerEntryTypeDef, marker: bool) -> _Row:
    return (
        entry.get("Key", ""),
        entry.get("VersionId") or "null",
        marker,
        bool(entry.get("IsLatest")),
        entry.get("LastModified", datetime.max),  # no date: never taken as expired
    )


def _rows(page: ListObjectVersionsOutputTypeDef) -> list[_Row]:
    """The page's versions and markers merged in key order (stable: newest first per list)."""
    rows = [_row(v, False) for v in page.get("Versions", [])]
    rows += [_row(m, True) for m in page.get("DeleteMarkers", [])]
    rows.sort(key=itemgetter(0))
    return rows


BATCH_SIZE = MAX_KEYS_PER_CALL
"""Object versions per sweep batch, whatever the sweep asks for rows: one DeleteObjects
call's worth (tests lower it to make many resumed listings)."""


def _cut(keys: Sequence[Key]) -> Iterator[tuple[Key, ...]]:
    for start in range(0, len(keys), MAX_KEYS_PER_CALL):
        yield tuple(keys[start : start + MAX_KEYS_PER_CALL])


class S3Sweeper:
    """One sweep target on one bucket prefix: counts, whole-key batches and their deletion."""

    exact_counts = False
    """A resumed listing may skip a key (moto does, after a deleted marker key): a pass
    reads on until nothing is left rather than stopping at the planned count."""

    def __init__(
        self,
        client: S3Client,
        store: S3Store,
        target: SweepTarget,
        *,
        today: date,
        held_keys: frozenset[str] = frozenset(),
        purger: Purger,
        page_size: int = 1000,
    ) -> None:
        if target.kind != "s3" or target.bucket is None or target.store != store.name:
            raise ValueError("S3Sweeper needs an S3 target of this store")
        self.client = client
        self.store = store
        self.target = target
        self.bucket = store.bucket(target.bucket)
        self.today = today
        self.held_keys = held_keys
        self.purger = purger
        self.page_size = page_size
        # Subject holds arrive resolved as held_keys; matching them here by prefix or tag
        # alone would hold every subject's objects.
        self._holds = tuple(h for h in target.partial_holds if h.scope.subject is None)
        self._cutoff = min((utc_naive(c.cutoff) for c in target.conditions), default=None)
        self._listed: tuple[Key | None, Key, list[Key], list[Key]] | None = None
        """The last ``next_batch``: its range and the versions it listed, for ``apply``."""
        self._page_end: tuple[_Group | None, dict[str, Any]] = (None, {})
        self._carried: tuple[str, _Group | None, dict[str, Any]] | None = None
        """Where the last batch's listing stopped (its last key, the group carried over
        and the next page's parameters): the next batch after that key goes on from it."""

    @cached_property
    def _locked(self) -> bool:
        """Whether versions may be locked: only then is each version's HeadObject read."""
        if not self._versioned:
            return False  # Object Lock needs versioning Enabled, and keeps it so
        with s3_errors(self.store.name, "GetObjectLockConfiguration", self.bucket.name):
            return lock_enabled(self.client, self.bucket.name)

    @cached_property
    def _versioned(self) -> bool:
        """Whether the bucket's versioning is or ever was on: it is then listed by versions.

        Versioning cannot be switched off once enabled, only suspended, so a bucket whose
        GetBucketVersioning answer has no ``Status`` never had it: each of its keys is one
        object, version id ``"null"``, and it has no delete markers (nor Object Lock, which
        needs versioning). ``ListObjectsV2`` then lists everything there is, and cheaper
        than ``ListObjectVersions`` (moto copies the whole bucket for every page of the
        latter). Asked once per sweeper; deleting by version id keeps this safe if
        versioning is switched on mid-sweep: versions written since have other ids, and
        they are newer, so their keys are not expired, and the next sweeper (the
        verification's) lists versions.
        """
        with s3_errors(self.store.name, "GetBucketVersioning", self.bucket.name):
            try:
                answer = self.client.get_bucket_versioning(Bucket=self.bucket.name)
            except ClientError as e:
                if error_code(e) != "AccessDenied":
                    raise
                return True  # cannot tell: list versions, which finds everything
        return bool(answer.get("Status"))  # "Enabled" or "Suspended"

    def _pages(
        self, after: str | None, prefix: str | None, resume: dict[str, Any] | None = None
    ) -> Iterator[tuple[list[_Row], dict[str, Any] | None]]:
        """Each page's rows in key order, with the parameters of the next page (None after
        the last): from the keys after ``after``, or ``resume`` (a listing's continuation)."""
        params: dict[str, Any] | None = resume
        if params is None:
            params = {"Bucket": self.bucket.name, "MaxKeys": self.page_size}
            if prefix:
                params["Prefix"] = prefix
            if after is not None:  # without a version marker: the keys after it
                params["KeyMarker" if self._versioned else "StartAfter"] = after
        while params is not None:
            rows, params = self._list(params)
            yield rows, params

    def _list(self, params: dict[str, Any]) -> tuple[list[_Row], dict[str, Any] | None]:
        """One page (ListObjectVersions, or ListObjectsV2 on a never-versioned bucket)."""
        if self._versioned:
            with s3_errors(self.store.name, "ListObjectVersions", self.bucket.name):
                page = self.client.list_object_versions(**params)
            if not page.get("IsTruncated"):
                return _rows(page), None
            following = dict(params)
            following["KeyMarker"] = page.get("NextKeyMarker")
            following["VersionIdMarker"] = page.get("NextVersionIdMarker")
            return _rows(page), following
        with s3_errors(self.store.name, "ListObjectsV2", self.bucket.name):
            objects = self.client.list_objects_v2(**params)
        rows = [
            (o.get("Key", ""), "null", False, True, o.get("LastModified", datetime.max))
            for o in objects.get("Contents", [])
        ]
        if not objects.get("IsTruncated"):
            return rows, None
        following = {k: v for k, v in params.items() if k != "StartAfter"}
        following["ContinuationToken"] = objects.get("NextContinuationToken")
        return rows, following

    def _groups(self, after: str | None) -> Iterator[_Group | None]:
        """Every key's group after ``after``, and None after each truncated page's complete
        groups (where a batch may end without listing the next page)."""
        # A key is complete once a later key is seen: its versions may continue on the
        # next page, so the last key of a page is carried over.
        group: _Group | None = None
        resume: dict[str, Any] | None = None
        carried, self._carried = self._carried, None
        if carried is not None and carried[0] == after:
            # The batch before ended at a page's end: go on where that listing stopped,
            # with the key it carried over, rather than list from ``after`` again (moto
            # also drops the first entry after a KeyMarker-only request).
            _, group, resume = carried
        for rows, following in self._pages(after, self.target.prefix, resume):
            for row in rows:
                if after is not None and row[0] <= after:
                    continue  # AWS starts after the marker key; moto returns part of it
                if group is not None and group.key != row[0]:
                    yield self._complete(group)
                    group = None
                group = group or _Group(row[0])
                group.add(row)
            if following is not None:
                self._page_end = (group, following)
                yield None  # the next page is listed only if the caller reads on
        if group is not None:
            yield self._complete(group)

    def _complete(self, group: _Group) -> _Group:
        """``group``, read again by itself if its latest entry is missing.

        Every key has exactly one latest entry; without it the expiry would be judged on
        older versions. moto 5.2.5 drops the first entry after a KeyMarker-only request.
        """
        if group.latest_seen:
            return group
        whole = _Group(group.key)
        for rows, _following in self._pages(None, group.key):
            for row in rows:
                if row[0] == group.key:
                    whole.add(row)
                elif row[0] > group.key:
                    return whole
        return whole

    def _expired(self, after: str | None, upto: str | None) -> Iterator[_Group | None]:
        """Expired keys after ``after`` up to ``upto`` (inclusive), outside excluded prefixes;
        None where a truncated page ends (see ``_groups``)."""
        if self._cutoff is None:
            return  # no condition: nothing can be shown to be expired
        for group in self._groups(after):
            if group is None:
                yield None
                continue
            if upto is not None and group.key > upto:  # code point order is S3's byte order
                return
            if group.key.startswith(self.target.exclude_prefixes):
                continue
            if group.newest is not None and group.newest < self._cutoff:
                yield group

    def _policy_held(self, group: _Group) -> bool:
        if group.key in self.held_keys:
            return True
        if not self._holds:
            return False
        if hold_deferral(self._holds, group.key, None) is not None:
            return True
        # Tags cost a GET per key: read them only where a tag hold's prefix reaches the key.
        tagged = [
            h
            for h in self._holds
            if h.scope.tag is not None and group.key.startswith(h.scope.prefix or "")
        ]
        if not tagged:
            return False
        data = next((v for v in group.versions if not v.is_delete_marker), None)
        if data is None:
            return False  # only delete markers: no data, no tags to hold it by
        with s3_errors(self.store.name, "GetObjectTagging", self.bucket.name):
            tags = version_tags(self.client, self.bucket.name, data.key, data.version_id)
        return hold_deferral(tagged, group.key, tags) is not None

    def _verdict(self, group: _Group) -> _Verdict:
        """Which versions of an expired key go (with or without bypass) and how many stay."""
        if self.target.held or self._policy_held(group):
            return _Verdict(held=len(group.versions))
        verdict = _Verdict()
        may_bypass = self.bucket.allow_governance_bypass
        for version in group.versions:
            if version.is_delete_marker or not self._locked:
                verdict.delete.append(version.as_key())
                continue
            with s3_errors(self.store.name, "HeadObject", self.bucket.name):
                state = lock_state(self.client, self.bucket.name, version.key, version.version_id)
            if state is None:
                continue  # gone since the listing
            if lock_deferral(state, self.today, may_bypass) is not None:
                verdict.held += 1
            elif may_bypass and lock_deferral(state, self.today, False) is not None:
                verdict.bypass.append(version.as_key())
            else:
                verdict.delete.append(version.as_key())
        latest = next((v for v in group.versions if v.is_latest), None)
        if verdict.held and latest is not None and latest.is_delete_marker:
            # Removing it would bring a held version back into view: it stays with them.
            verdict.delete.remove(latest.as_key())
            verdict.held += 1
        return verdict

    def batch_size(self, requested: int) -> int:
        """Object versions per batch: one DeleteObjects call's worth (``requested`` counts rows)."""
        del requested
        return BATCH_SIZE

    def counts(self) -> tuple[int, int]:
        """(expired object versions the sweep will delete, expired versions held)."""
        deleting = held = 0
        for group in self._expired(None, None):
            if group is None:
                continue
            verdict = self._verdict(group)
            deleting += len(verdict.keys)
            held += verdict.held
        return deleting, held

    def next_batch(self, cursor: Key | None, size: int) -> SweepBatch | None:
        """Whole expired keys after ``cursor`` until ``size`` versions; None when none are left.

        A key is never split: the batch may exceed ``size`` by one key's versions. A batch
        also ends where a listed page does, once it holds something, so each page is listed
        once (the page's last key, whose versions may go on, starts the next batch). In
        ``keys`` audit mode the batch carries the digest of its versions.
        """
        if self.target.held:
            return None
        delete: list[Key] = []
        bypass: list[Key] = []
        last: str | None = None
        for group in self._expired(None if cursor is None else str(cursor[0]), None):
            if group is None:
                if last is not None:
                    self._carried = (last, *self._page_end)
                    break  # a page ends: the batch is what it listed
                continue
            verdict = self._verdict(group)
            if verdict.keys:
                delete += verdict.delete
                bypass += verdict.bypass
                last = group.key
                if len(delete) + len(bypass) >= size:
                    break
        if last is None:
            return None
        picked = delete + bypass
        digest = keys_digest(picked) if self.target.audit == "keys" else ""
        batch = SweepBatch(lo=cursor, hi=(last,), count=len(picked), keys_digest=digest)
        self._listed = (batch.lo, batch.hi, delete, bypass)
        return batch

    def apply(self, batch: SweepBatch) -> int:
        """Delete every version of the expired, unheld keys in the range; versions deleted.

        The batch ``next_batch`` just gave is deleted as it was listed (its version ids:
        a version written since stays); any other range (a batch resumed after a crash) is
        listed again, so keys rewritten or held since stay.
        """
        listed, self._listed = self._listed, None
        if listed is not None and (listed[0], listed[1]) == (batch.lo, batch.hi):
            delete, bypass = listed[2], listed[3]
        else:
            delete, bypass = self._relist(batch)
        outcomes: list[ChunkOutcome] = [
            self.purger.run_chunk(Chunk(self.bucket.name, part, flag))
            for flag, keys in ((False, delete), (True, bypass))
            for part in _cut(keys)
        ]
        personal = self.bucket.keys_contain_personal_data
        problem = self.purger.left_error(outcomes, lambda _bucket: personal)
        if problem is not None:
            raise problem
        return sum(len(o.deleted) for o in outcomes)

    def _relist(self, batch: SweepBatch) -> tuple[list[Key], list[Key]]:
        """The versions to delete (without and with bypass) in ``batch``'s range, listed now."""
        after = None if batch.lo is None else str(batch.lo[0])
        delete: list[Key] = []
        bypass: list[Key] = []
        for group in self._expired(after, str(batch.hi[0])):
            if group is None:
                continue
            verdict = self._verdict(group)
            delete += verdict.delete
            bypass += verdict.bypass
        return delete, bypass
