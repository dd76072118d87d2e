"""Erasing a subject's versions: versioned, unversioned and suspended buckets, chunking,
per-key retries and terminal errors with a rerun that finishes the job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from connectors.base import Action, BatchResult, StorePlan
from connectors.s3.purge import MAX_KEYS_PER_CALL
from core.errors import TerminalError
from tests.connectors.s3.conftest import (
    SUBJECT,
    ConnectorFactory,
    create_bucket,
    ignore,
    listing,
    make_store,
    seed,
    under,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "tickets-eu"
TODAY = "2025-06-01"


def _erase(connector: Any, batches: list[BatchResult] | None = None) -> StorePlan:
    findings = connector.locate(SUBJECT)
    plan: StorePlan = connector.plan_erasure(findings, TODAY)
    sink = batches if batches is not None else []
    connector.execute(plan, sink.append)
    return plan


@pytest.mark.parametrize("versioning", ["Enabled", "Suspended", None])
def test_purge_leaves_nothing_of_the_subject_and_spares_others(
    s3: S3Client, connector: ConnectorFactory, versioning: str | None
) -> None:
    create_bucket(s3, BUCKET, versioning="Enabled" if versioning else None)
    seed(s3, BUCKET, [f"tickets/1/{n}.txt" for n in range(3)], versions=3)
    if versioning != "Suspended":
        # moto 5.2.5 treats a suspended bucket as unversioned when deleting by version id
        # (it drops every version of the key, and crashes on a delete marker among them);
        # AWS deletes just the named version. So no delete marker in the suspended case:
        # the end state (every version gone) is the same under both.
        s3.delete_object(Bucket=BUCKET, Key="tickets/1/0.txt")
    if versioning == "Suspended":  # old versions keep their ids, new writes get "null"
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
        seed(s3, BUCKET, ["tickets/1/new.txt", "tickets/1/1.txt"])
    seed(s3, BUCKET, ["tickets/12/a.txt", "tickets/2/b.txt"], versions=2)
    before = listing(s3, BUCKET)
    subject = under(before, "tickets/1/")
    assert subject
    store = make_store({"name": BUCKET, "key_templates": ["tickets/{customer_id}/"]})
    c = connector(store)
    batches: list[BatchResult] = []
    plan = _erase(c, batches)
    assert [s.action for s in plan.steps] == [Action.DELETE]
    assert listing(s3, BUCKET) == before - subject
    assert sum(b.affected for b in batches) == len(subject)
    result = c.verify(SUBJECT, plan)
    assert result.clean and result.remaining == {BUCKET: 0} and result.deferred == {}


def test_more_than_1000_versions_are_deleted_in_capped_chunks(
    s3: S3Client, connector: ConnectorFactory
) -> None:
    create_bucket(s3, BUCKET)
    seed(s3, BUCKET, [f"tickets/1/{n:04}" for n in range(1100)])  # ~1,100 puts: once
    seed(s3, BUCKET, ["tickets/2/keep"])
    sizes: list[int] = []
    s3.meta.events.register(
        "before-call.s3.DeleteObjects",
        lambda params, **_: sizes.append(params["body"].count(b"<Object>")),
    )
    store = make_store({"name": BUCKET, "key_templates": ["tickets/{customer_id}/"]})
    batches: list[BatchResult] = []
    _erase(connector(store, max_workers=3), batches)
    assert sorted(sizes) == [100, 1000]  # moto takes more per call; AWS does not
    assert max(sizes) <= MAX_KEYS_PER_CALL
    assert sorted(b.affected for b in batches) == [100, 1000]
    assert {k[0] for k in listing(s3, BUCKET)} == {"tickets/2/keep"}


class FlakyClient:
    """Delegates to a real client, answering some keys of DeleteObjects with errors first.

    Models AWS answering 200 with per-key ``Errors`` (SlowDown under load, AccessDenied
    without permission): those keys are not deleted by that call.
    """

    def __init__(self, inner: S3Client, code: str, failures: int, every: int = 3) -> None:
        self._inner = inner
        self.code = code
        self.failures = failures  # how many calls answer with errors
        self.every = every
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete_objects(self, **kw: Any) -> dict[str, Any]:
        self.calls += 1
        objects = kw["Delete"]["Objects"]
        if self.calls > self.failures:
            return dict(self._inner.delete_objects(**kw))
        failing = objects[:: self.every]
        passing = [o for o in objects if o not in failing]
        if passing:
            self._inner.delete_objects(**{**kw, "Delete": {**kw["Delete"], "Objects": passing}})
        errors = [{**o, "Code": self.code, "Message": "injected"} for o in failing]
        return {"Errors": errors}


def _subject_bucket(s3: S3Client) -> set[Any]:
    create_bucket(s3, BUCKET)
    seed(s3, BUCKET, [f"tickets/1/{n}.txt" for n in range(10)], versions=2)
    seed(s3, BUCKET, ["tickets/2/keep.txt"])
    return under(listing(s3, BUCKET), "tickets/1/")


def test_transient_per_key_errors_are_retried(s3: S3Client, connector: ConnectorFactory) -> None:
    subject = _subject_bucket(s3)
    flaky = FlakyClient(s3, "SlowDown", failures=2)
    store = make_store({"name": BUCKET, "key_templates": ["tickets/{customer_id}/"]})
    batches: list[BatchResult] = []
    _erase(connector(store, client=flaky), batches)
    assert flaky.calls == 3  # two answers with SlowDown keys, then the rest succeeds
    assert under(listing(s3, BUCKET), "tickets/1/") == set()
    assert len(batches) == 1 and batches[0].affected == len(subject)


@pytest.mark.parametrize("personal", [True, False])
def test_access_denied_is_terminal_and_a_rerun_finishes(
    s3: S3Client, connector: ConnectorFactory, personal: bool
) -> None:
    subject = _subject_bucket(s3)
    flaky = FlakyClient(s3, "AccessDenied", failures=1)
    store = make_store(
        {
            "name": BUCKET,
            "key_templates": ["tickets/{customer_id}/"],
            "keys_contain_personal_data": personal,
        }
    )
    c = connector(store, client=flaky)
    plan = c.plan_erasure(c.locate(SUBJECT), TODAY)
    first: list[BatchResult] = []
    with pytest.raises(TerminalError) as info:
        c.execute(plan, first.append)
    left = len(under(listing(s3, BUCKET), "tickets/1/"))
    assert left == 7  # every third of 20 keys
    message = str(info.value)
    assert f"bucket '{BUCKET}': 7 keys not deleted (AccessDenied x7)" in message
    assert info.value.fields["remaining"] == {BUCKET: 7}
    assert ("tickets/1/" in message) is not personal  # key names only when not personal
    assert sum(b.affected for b in first) == len(subject) - 7
    assert not c.verify(SUBJECT, plan).clean
    c.execute(plan, ignore)  # the same plan again: deleted versions are no-ops
    assert under(listing(s3, BUCKET), "tickets/1/") == set()
    assert c.verify(SUBJECT, plan).clean
