"""Retention sweeps on S3: expired keys lose every version and marker; the rest is untouched.

S3 sets LastModified on write and offers no way to backdate it, so objects are aged by
shifting moto's S3 clock while they are written (``written``), modelling objects that
AWS wrote that many days ago. Writes are kept in time order, as they would be on AWS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import moto.s3.models as moto_s3
import pytest
from moto.core.utils import utcnow

from config.schema.policy import LegalHold
from connectors.base import Key, SweepBatch, keys_digest
from connectors.s3.config import S3Store
from connectors.s3.purge import MAX_KEYS_PER_CALL, Purger
from connectors.s3.sweep import S3Sweeper
from core.errors import TerminalError
from retention.targets import Clock, Condition, SweepTarget
from tests.connectors.s3.conftest import create_bucket, listing, make_store, seed
from tests.connectors.s3.test_purge import FlakyClient

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "tickets-eu"
NOW = datetime.now(UTC).replace(tzinfo=None)
TODAY = NOW.date()
UNTIL = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)


@contextmanager
def written(days_ago: float) -> Iterator[None]:
    """Objects written inside get a LastModified ``days_ago`` days back (moto's clock)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(moto_s3, "utcnow", lambda: utcnow() - timedelta(days=days_ago))
        yield


def condition(rule_id: str, days: int) -> Condition:
    return Condition(rule_id, f"P{days}D", days, Clock(None), NOW - timedelta(days=days))


def target(prefix: str | None = None, **kw: Any) -> SweepTarget:
    """Expired after 20 days, by the longer of a 5-day and a 20-day rule."""
    kw.setdefault("conditions", (condition("short", 5), condition("long", 20)))
    return SweepTarget(
        id=f"files/{BUCKET}/{prefix or ''}",
        kind="s3",
        store="files",
        label=f"files/{BUCKET}/{prefix or ''}",
        action="delete",
        bucket=BUCKET,
        prefix=prefix,
        **kw,
    )


def hold(scope: dict[str, Any], hold_id: str = "h1") -> LegalHold:
    return LegalHold.model_validate(
        {"id": hold_id, "reason": "litigation", "scope": scope, "starts": "2020-01-01"}
    )


def sweeper(s3: S3Client, tgt: SweepTarget, store: S3Store | None = None, **kw: Any) -> S3Sweeper:
    purger = Purger(kw.pop("purge_client", s3), "files", max_workers=1, base_delay=0.0)
    return S3Sweeper(
        s3, store or make_store({"name": BUCKET}), tgt, today=TODAY, purger=purger, **kw
    )


def sweep_all(sw: S3Sweeper, size: int = 1000) -> list[SweepBatch]:
    """Every batch, each applied right after it is read (as the runner does)."""
    batches: list[SweepBatch] = []
    cursor: Key | None = None
    while (batch := sw.next_batch(cursor, size)) is not None:
        assert sw.apply(batch) == batch.count
        batches.append(batch)
        cursor = batch.hi
    return batches


def bodies(s3: S3Client) -> dict[Key, bytes | None]:
    """Every version (with its body) and delete marker (None) of the bucket."""
    out: dict[Key, bytes | None] = {}
    for k in listing(s3, BUCKET):
        if k[2]:
            out[k] = None
        else:
            got = s3.get_object(Bucket=BUCKET, Key=str(k[0]), VersionId=str(k[1]))
            out[k] = got["Body"].read()
    return out


def of(keys: dict[Key, Any] | set[Key], *names: str) -> set[Key]:
    return {k for k in keys if k[0] in names}


def calls(s3: S3Client, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call made from now on."""
    seen: list[dict[str, Any]] = []
    s3.meta.events.register(
        f"provide-client-params.s3.{operation}", lambda params, **_: seen.append(params)
    )
    return seen


def _mixed_bucket(s3: S3Client) -> None:
    """Expired keys (versions, markers) among keys still within their retention."""
    create_bucket(s3, BUCKET)
    with written(40):
        seed(s3, BUCKET, ["t/old-3v", "t/old-marker", "t/old-then-new"], versions=3)
        s3.delete_object(Bucket=BUCKET, Key="t/old-marker")  # a marker over old versions
        seed(s3, BUCKET, ["t/old-then-new-marker"], versions=2)
    with written(30):
        s3.delete_object(Bucket=BUCKET, Key="t/old-3v")  # marker, then a version after it
        seed(s3, BUCKET, ["t/old-3v"])
    with written(10):  # past the 5-day rule, not the 20-day one: kept
        seed(s3, BUCKET, ["t/between"])
        seed(s3, BUCKET, ["t/old-then-new"])  # rewritten: not expired, nor its old versions
        s3.delete_object(Bucket=BUCKET, Key="t/old-then-new-marker")
    seed(s3, BUCKET, ["t/new"])


EXPIRED = ("t/old-3v", "t/old-marker")


def test_moto_clock_backdates_last_modified(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    before = utcnow()
    with written(40):
        seed(s3, BUCKET, ["t/a"])
    after = utcnow()
    modified = s3.head_object(Bucket=BUCKET, Key="t/a")["LastModified"].astimezone(UTC)
    # Between the clock readings around the write, shifted 40 days (LastModified is given
    # in whole seconds): an ordering, with no tolerance a slow machine could exceed.
    shifted = timedelta(days=40)
    assert (before - shifted).replace(microsecond=0) <= modified.replace(tzinfo=None)
    assert modified.replace(tzinfo=None) <= after - shifted


def test_only_expired_keys_lose_every_version_and_marker(s3: S3Client) -> None:
    _mixed_bucket(s3)
    before = bodies(s3)
    gone = of(before, *EXPIRED)
    assert len(gone) == 9  # 3 + marker + 1, and 3 + marker
    sw = sweeper(s3, target("t/", audit="keys"))
    tagging, heads = calls(s3, "GetObjectTagging"), calls(s3, "HeadObject")
    assert sw.counts() == (len(gone), 0)
    batches = sweep_all(sw)
    assert [b.count for b in batches] == [len(gone)]
    assert batches[0].keys_digest == keys_digest(sorted(gone))  # audit: keys
    after = bodies(s3)
    assert after == {k: v for k, v in before.items() if k not in gone}  # byte for byte
    assert tagging == [] and heads == []  # no tag hold, no Object Lock: no per-key reads
    assert sw.counts() == (0, 0) and sw.next_batch(None, 10) is None


def test_a_target_without_prefix_skips_excluded_prefixes(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    with written(40):
        seed(s3, BUCKET, ["a/1", "keep/1", "keep/2", "z/1"], versions=2)
    sw = sweeper(s3, target(None, exclude_prefixes=("keep/",)))
    assert sw.counts() == (4, 0)
    sweep_all(sw, size=1)
    assert {k[0] for k in listing(s3, BUCKET)} == {"keep/1", "keep/2"}
    assert len(listing(s3, BUCKET)) == 4


def _held_bucket(s3: S3Client) -> set[Key]:
    create_bucket(s3, BUCKET)
    with written(40):
        seed(s3, BUCKET, ["t/case/1", "t/case/2", "t/free/1", "t/tagged", "t/sub/1"], versions=2)
        s3.put_object_tagging(
            Bucket=BUCKET, Key="t/tagged", Tagging={"TagSet": [{"Key": "case", "Value": "42"}]}
        )
    return listing(s3, BUCKET)


@pytest.mark.parametrize(
    ("scope", "held_keys", "held_names"),
    [
        ({"prefix": "t/case/"}, frozenset(), {"t/case/1", "t/case/2"}),
        ({"tag": {"case": "42"}}, frozenset(), {"t/tagged"}),
        ({"prefix": "t/", "tag": {"case": "42"}}, frozenset(), {"t/tagged"}),
        # A subject hold is applied through the keys the caller resolved, never by scope.
        ({"subject": "psn_" + "0" * 32}, frozenset({"t/sub/1"}), {"t/sub/1"}),
    ],
)
def test_partial_holds_keep_every_version_of_their_keys(
    s3: S3Client, scope: dict[str, Any], held_keys: frozenset[str], held_names: set[str]
) -> None:
    before = _held_bucket(s3)
    tgt = target("t/", partial_holds=(hold(scope),))
    sw = sweeper(s3, tgt, held_keys=held_keys)
    held = of(before, *held_names)
    assert sw.counts() == (len(before) - len(held), len(held))
    sweep_all(sw, size=2)
    assert listing(s3, BUCKET) == held
    assert sw.counts() == (0, len(held))


def test_tags_are_read_only_where_a_tag_hold_reaches(s3: S3Client) -> None:
    _held_bucket(s3)
    tgt = target("t/", partial_holds=(hold({"prefix": "t/free/", "tag": {"case": "42"}}),))
    tagging = calls(s3, "GetObjectTagging")
    assert sweeper(s3, tgt).counts() == (10, 0)
    assert [p["Key"] for p in tagging] == ["t/free/1"]


def test_a_whole_target_hold_only_counts(s3: S3Client) -> None:
    before = _held_bucket(s3)
    sw = sweeper(s3, target("t/", holds=("h1",)))
    assert sw.counts() == (0, len(before))
    assert sw.next_batch(None, 100) is None
    assert sw.apply(SweepBatch(None, ("t/z",), 10, "")) == 0  # a batch recorded earlier
    assert listing(s3, BUCKET) == before


def _locked_bucket(s3: S3Client) -> None:
    create_bucket(s3, BUCKET, lock=True)
    compliance: dict[str, Any] = {
        "ObjectLockMode": "COMPLIANCE",
        "ObjectLockRetainUntilDate": UNTIL,
    }
    governance: dict[str, Any] = {
        "ObjectLockMode": "GOVERNANCE",
        "ObjectLockRetainUntilDate": UNTIL,
    }
    with written(40):
        seed(s3, BUCKET, ["t/compliance"], **compliance)
        seed(s3, BUCKET, ["t/governance"], **governance)
        seed(s3, BUCKET, ["t/legal-hold"], ObjectLockLegalHoldStatus="ON")
        seed(s3, BUCKET, ["t/mixed"], **compliance)  # an old locked version ...
        seed(s3, BUCKET, ["t/mixed", "t/free"])  # ... under an unlocked current one
        seed(s3, BUCKET, ["t/free"])
        seed(s3, BUCKET, ["t/deleted"], **compliance)
        s3.delete_object(Bucket=BUCKET, Key="t/deleted")  # must not reappear


@pytest.mark.parametrize("bypass", [False, True])
def test_object_lock_holds_locked_versions_only(s3: S3Client, bypass: bool) -> None:
    _locked_bucket(s3)
    before = listing(s3, BUCKET)
    store = make_store({"name": BUCKET, "allow_governance_bypass": bypass})
    # t/deleted: its locked version, and the delete marker that keeps it out of view.
    held = of(before, "t/compliance", "t/legal-hold", "t/deleted")
    held |= {k for k in of(before, "t/mixed") if _mode(s3, k) == "COMPLIANCE"}
    if not bypass:
        held |= of(before, "t/governance")
    sw = sweeper(s3, target("t/"), store)
    deletes = calls(s3, "DeleteObjects")
    assert sw.counts() == (len(before) - len(held), len(held))
    sweep_all(sw)
    assert listing(s3, BUCKET) == held  # COMPLIANCE and legal holds: never removable
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="t/deleted").get("KeyCount") == 0
    flags = sorted(bool(p.get("BypassGovernanceRetention")) for p in deletes)
    assert flags == ([False, True] if bypass else [False])  # bypass only where it is needed


def _mode(s3: S3Client, key: Key) -> str | None:
    head = s3.head_object(Bucket=BUCKET, Key=str(key[0]), VersionId=str(key[1]))
    return head.get("ObjectLockMode")


def test_batches_hold_whole_keys_and_match_counts(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    names = [f"t/{n:02}" for n in range(12)]
    with written(40):
        seed(s3, BUCKET, names, versions=3)
        for name in names[::4]:
            s3.delete_object(Bucket=BUCKET, Key=name)  # 4 entries for these keys
    seed(s3, BUCKET, ["t/05"])  # rewritten today: kept whole
    before = listing(s3, BUCKET)
    sw = sweeper(s3, target("t/", audit="keys"), page_size=5)  # keys' versions span pages
    total, _ = sw.counts()
    assert total == len(before) - len(of(before, "t/05"))
    done: list[str] = []
    deleted = 0
    cursor: Key | None = None
    while (batch := sw.next_batch(cursor, 7)) is not None:
        listed = listing(s3, BUCKET)
        assert sw.apply(batch) == batch.count
        removed = listed - listing(s3, BUCKET)
        assert len(removed) == batch.count and keys_digest(sorted(removed)) == batch.keys_digest
        names_in = {str(k[0]) for k in removed}
        assert not of(listing(s3, BUCKET), *names_in)  # every version of a key, or none
        assert batch.count - len(of(removed, str(batch.hi[0]))) < 7  # over by one key at most
        assert max(names_in) == batch.hi[0] and not set(done) & names_in
        done += sorted(names_in)
        deleted += batch.count
        cursor = batch.hi
    assert deleted == total
    assert done == [n for n in names if n != "t/05"]
    assert listing(s3, BUCKET) == of(before, "t/05")


def test_reapplying_a_batch_deletes_nothing(s3: S3Client) -> None:
    _mixed_bucket(s3)
    sw = sweeper(s3, target("t/"))
    batch = sw.next_batch(None, 100)
    assert batch is not None and sw.apply(batch) == batch.count
    after = listing(s3, BUCKET)
    deletes = calls(s3, "DeleteObjects")
    assert sw.apply(batch) == 0  # e.g. a crash before the batch was recorded as done
    assert listing(s3, BUCKET) == after and deletes == []


def test_resuming_from_a_cursor_continues_exactly(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    with written(40):
        seed(s3, BUCKET, ["t/a", "t/b", "t/c", "t/d"], versions=2)
    seed(s3, BUCKET, ["t/c"])  # old versions under a new current one: t/c is not expired
    before = listing(s3, BUCKET)
    # Reading on from a cursor whose key still exists: the batches after it, exactly.
    his, cursor = [], None
    while (read := sweeper(s3, target("t/"), page_size=2).next_batch(cursor, 1)) is not None:
        his.append(read.hi)
        cursor = read.hi
        assert len(his) <= 3  # a listing that ignored the cursor would never end
    assert his == [("t/a",), ("t/b",), ("t/d",)] and listing(s3, BUCKET) == before
    first = sweeper(s3, target("t/"), page_size=2).next_batch(None, 2)
    assert first is not None and first.hi == ("t/a",) and first.count == 2
    assert sweeper(s3, target("t/")).apply(first) == 2  # then the run stops
    # A new run resumes after a cursor whose key is gone: the next key must be read whole
    # (its newest version decides), whatever the listing returns around the marker.
    rest = sweep_all_from(sweeper(s3, target("t/"), page_size=2), first.hi, 2)
    assert [b.hi for b in rest] == [("t/b",), ("t/d",)] and rest[0].lo == ("t/a",)
    assert listing(s3, BUCKET) == of(before, "t/c")


def sweep_all_from(sw: S3Sweeper, cursor: Key, size: int) -> list[SweepBatch]:
    batches: list[SweepBatch] = []
    while (batch := sw.next_batch(cursor, size)) is not None:
        assert sw.apply(batch) == batch.count
        batches.append(batch)
        cursor = batch.hi
    return batches


def test_a_batch_is_deleted_in_calls_of_at_most_1000_keys(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    with written(40):
        seed(s3, BUCKET, [f"t/{n:04}" for n in range(1050)])  # ~1,050 puts: once
    deletes = calls(s3, "DeleteObjects")
    # A batch ends where a listed page does: a page of 2,000 (moto serves it; AWS caps
    # MaxKeys at 1,000, where one key's versions can still make a batch pass 1,000).
    sw = sweeper(s3, target("t/"), page_size=2000)
    batch = sw.next_batch(None, 2000)
    assert batch is not None and batch.count == 1050
    assert sw.apply(batch) == 1050
    sizes = sorted(len(p["Delete"]["Objects"]) for p in deletes)
    assert sizes == [50, MAX_KEYS_PER_CALL]  # moto takes more per call; AWS does not
    assert listing(s3, BUCKET) == set()


@pytest.mark.parametrize("personal", [True, False])
def test_keys_left_by_errors_raise_and_a_rerun_finishes(s3: S3Client, personal: bool) -> None:
    create_bucket(s3, BUCKET)
    with written(40):
        seed(s3, BUCKET, [f"t/{n}" for n in range(10)], versions=2)
    store = make_store({"name": BUCKET, "keys_contain_personal_data": personal})
    flaky = FlakyClient(s3, "AccessDenied", failures=1)
    sw = sweeper(s3, target("t/"), store, purge_client=flaky)
    batch = sw.next_batch(None, 100)
    assert batch is not None
    with pytest.raises(TerminalError) as info:
        sw.apply(batch)
    message = str(info.value)
    assert f"store 'files': bucket '{BUCKET}': 7 keys not deleted (AccessDenied x7)" in message
    assert ("t/" in message) is not personal  # key names only when they are not personal
    assert sw.apply(batch) == 7 and listing(s3, BUCKET) == set()


def test_a_sweep_lists_each_page_once_and_records_no_digest_by_default(s3: S3Client) -> None:
    """Range audit (the default): a batch is one listed page, deleted as listed (no re-list
    before DeleteObjects), and carries no key digest. Models AWS: MaxKeys counts versions
    and markers, and a key's versions may continue on the next page."""
    create_bucket(s3, BUCKET)
    names = [f"t/{n:03}" for n in range(60)]
    with written(40):
        seed(s3, BUCKET, names)
    sw = sweeper(s3, target("t/"), page_size=20)
    lists = calls(s3, "ListObjectVersions")
    batches = sweep_all(sw)
    swept = [(p.get("KeyMarker"), p.get("VersionIdMarker")) for p in lists]
    assert sum(b.count for b in batches) == 60 and listing(s3, BUCKET) == set()
    assert all(b.keys_digest == "" for b in batches)
    # Three pages of 20, each listed once, and the page after the last that finds nothing
    # more; a batch ends before its page's last key (whose versions might go on), and the
    # next batch goes on from that listing rather than listing its page again.
    assert len(swept) == len(set(swept)) == 4, swept
    assert [b.count for b in batches] == [19, 20, 21]


def api_calls(s3: S3Client) -> Counter[str]:
    """How many calls of each S3 operation are made from now on (a botocore event hook)."""
    seen: Counter[str] = Counter()
    s3.meta.events.register(
        "provide-client-params.s3", lambda model, **_: seen.update([model.name])
    )
    return seen


def _unversioned_bucket(s3: S3Client) -> tuple[list[str], list[str]]:
    """Expired objects among fresh ones (interleaved) in a bucket never versioned."""
    create_bucket(s3, BUCKET, versioning=None)
    old = [f"t/{n:02}" for n in range(0, 18) if n % 3]
    fresh = [f"t/{n:02}" for n in range(0, 18) if not n % 3]
    with written(40):
        seed(s3, BUCKET, old)
    seed(s3, BUCKET, fresh)
    seed(s3, BUCKET, ["u/outside"])  # expired, outside the target's prefix
    return old, fresh


def test_a_never_versioned_bucket_is_listed_without_versions(s3: S3Client) -> None:
    """Models AWS: GetBucketVersioning has no Status until versioning is first enabled; such
    a bucket holds one "null" version per key and no delete markers, so ListObjectsV2
    lists everything a sweep can find, without ListObjectVersions or per-key reads."""
    old, fresh = _unversioned_bucket(s3)
    assert "Status" not in s3.get_bucket_versioning(Bucket=BUCKET)
    sw = sweeper(s3, target("t/", audit="keys"), page_size=5)
    made = api_calls(s3)
    assert sw.counts() == (len(old), 0)
    # The plan count: one ListObjectsV2 call per page of 5 (19 keys under t/), and the
    # versioning status asked once per sweeper; no lock configuration (Object Lock needs
    # versioning), no HEAD or tagging per object.
    assert made == {"GetBucketVersioning": 1, "ListObjectsV2": 4}
    made.clear()
    batches = sweep_all(sw)
    assert sum(b.count for b in batches) == len(old)
    first = [(k, "null", False) for k in old if k <= str(batches[0].hi[0])]
    assert batches[0].keys_digest == keys_digest(first) and batches[0].count == len(first)
    # Each page listed once (4), and the empty page after the last batch.
    assert made == {"ListObjectsV2": 5, "DeleteObjects": len(batches)}
    left = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert sorted(o["Key"] for o in left) == [*fresh, "u/outside"]  # exactly the expired gone
    assert listing(s3, BUCKET) == {(k, "null", False) for k in [*fresh, "u/outside"]}
    made.clear()
    assert sweeper(s3, target("t/")).counts() == (0, 0)  # the verification
    assert made == {"GetBucketVersioning": 1, "ListObjectsV2": 1}


def test_a_never_versioned_batch_resumed_after_a_crash_is_listed_again(s3: S3Client) -> None:
    old, fresh = _unversioned_bucket(s3)
    first = sweeper(s3, target("t/"), page_size=5).next_batch(None, 1000)
    assert first is not None and first.hi == ("t/02",) and first.count == 2
    # The run stopped after recording the batch: a new sweeper applies its range.
    resumed = sweeper(s3, target("t/"), page_size=5)
    made = api_calls(s3)
    assert resumed.apply(first) == 2
    assert made == {"GetBucketVersioning": 1, "ListObjectsV2": 1, "DeleteObjects": 1}
    assert resumed.apply(first) == 0  # applied again: nothing left in the range
    # The next run goes on after a cursor whose key is gone (StartAfter a deleted key).
    rest = sweep_all_from(sweeper(s3, target("t/"), page_size=5), first.hi, 1000)
    assert sum(b.count for b in rest) == len(old) - 2
    assert {str(k[0]) for k in listing(s3, BUCKET)} == {*fresh, "u/outside"}


def test_versioning_enabled_mid_sweep_keeps_what_was_written_since(s3: S3Client) -> None:
    """A sweeper that found the bucket never versioned deletes by version id ("null"):
    a key rewritten or deleted after versioning was switched on is newer than the cut-off,
    and the next sweeper (the verification's) lists versions and finds nothing expired."""
    create_bucket(s3, BUCKET, versioning=None)
    with written(40):
        seed(s3, BUCKET, ["t/a", "t/b", "t/c"])
    sw = sweeper(s3, target("t/"))
    assert sw.counts() == (3, 0)  # found unversioned
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    seed(s3, BUCKET, ["t/b"])  # a new version over the old "null" one
    s3.delete_object(Bucket=BUCKET, Key="t/c")  # a marker over the old "null" version
    before = listing(s3, BUCKET)
    assert sum(b.count for b in sweep_all(sw)) == 1
    assert listing(s3, BUCKET) == before - {("t/a", "null", False)}
    verify = sweeper(s3, target("t/"))
    lists = api_calls(s3)
    assert verify.counts() == (0, 0) and lists["ListObjectVersions"] == 1


@pytest.mark.parametrize("status", ["Enabled", "Suspended"])
def test_a_versioned_or_suspended_bucket_loses_every_version_and_marker(
    s3: S3Client, status: Literal["Enabled", "Suspended"]
) -> None:
    """Versioning suspended keeps the versions written while it was on (AWS): the bucket
    is still listed by versions, and expired keys lose all of them and their markers.
    Suspended: the batch is checked, not applied: moto 5.2.5 deletes every version of a
    key in a suspended bucket whatever version id is named (and fails on a key with a
    delete marker), where AWS deletes the version named."""
    create_bucket(s3, BUCKET)
    with written(40):
        seed(s3, BUCKET, ["t/a", "t/b", "t/keep"], versions=2)
        s3.delete_object(Bucket=BUCKET, Key="t/a")
    seed(s3, BUCKET, ["t/keep"])
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": status})
    with written(30):
        seed(s3, BUCKET, ["t/n"])  # while suspended: a "null" version
    before = listing(s3, BUCKET)
    gone = of(before, "t/a", "t/b", "t/n")
    assert len(gone) == 6 and {k[1] == "null" for k in gone} == {status == "Suspended", False}
    sw = sweeper(s3, target("t/", audit="keys"))
    made = api_calls(s3)
    assert sw.counts() == (len(gone), 0)
    if status == "Suspended":
        batch = sw.next_batch(None, 1000)
        assert batch is not None and batch.keys_digest == keys_digest(sorted(gone))
    else:
        sweep_all(sw)
        assert listing(s3, BUCKET) == before - gone
    assert made["ListObjectsV2"] == 0 and made["ListObjectVersions"] >= 2
    assert made["GetBucketVersioning"] == 1 and made["HeadObject"] == 0


def test_object_lock_buckets_read_locks_per_version_only_there(s3: S3Client) -> None:
    """Object Lock (versioning Enabled, as AWS requires): one lock configuration per
    sweeper and one HeadObject per listed version; none on buckets without Object Lock
    (see test_only_expired_keys_lose_every_version_and_marker)."""
    _locked_bucket(s3)
    versions = [k for k in listing(s3, BUCKET) if not k[2]]
    made = api_calls(s3)
    sweeper(s3, target("t/")).counts()
    assert made["GetObjectLockConfiguration"] == 1
    assert made["HeadObject"] == len(versions)
    assert made["ListObjectsV2"] == 0
