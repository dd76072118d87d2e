"""Each bucket's transfer and security posture as S3 reports it: facts, judged elsewhere.

Region, replication destinations and their regions, default encryption, a TLS-only bucket
policy, the public access block, lifecycle drift from the retention policy. A fact S3
refuses (AccessDenied) goes to ``unreadable`` rather than failing the check; only a lost
endpoint raises. Buckets run concurrently on a bounded pool (botocore clients are
thread-safe; a bucket costs about seven sequential calls).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from config.schema.model import LifecycleConfig
from config.schema.stores import StoreConfig
from connectors.s3.client import error_code, make_client, s3_errors, translate
from connectors.s3.config import Bucket, S3Store
from connectors.s3.lifecycle import Rule, desired_rules, drift
from connectors.s3.posture_facts import PUBLIC_ACCESS_FLAGS, BucketFacts, ReplicationFact
from core.errors import LifecycleError
from retention.targets import resolve_targets

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# GetBucketLocation answers None (or "") for us-east-1 and the legacy "EU" for eu-west-1.
LEGACY_LOCATIONS = {"": "us-east-1", "EU": "eu-west-1"}
UNKNOWN_REGION = "unknown"
# A TLS-only statement must deny both reading and writing objects.
OBJECT_ACTIONS = ("s3:getobject", "s3:putobject")
WORKERS = 16
"""Buckets read at once by the posture check (and the client's connection pool)."""

T = TypeVar("T")


def _unless(absent: str, call: Callable[..., T], bucket: str) -> T | None:
    """``call(Bucket=bucket)``, or None when S3 answers ``absent`` (nothing configured)."""
    try:
        return call(Bucket=bucket)
    except ClientError as e:
        if error_code(e) == absent:
            return None
        raise


class _Gone(Exception):
    """The bucket does not exist (NoSuchBucket on any call)."""


def read_region(client: S3Client, bucket: str) -> str:
    """The bucket's actual region (ClientError propagates)."""
    location = client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or ""
    return LEGACY_LOCATIONS.get(str(location), str(location))


def _destination_name(arn: str) -> str:
    # arn:<partition>:s3:::<bucket>; a plain name is taken as it is.
    return arn.split(":", 5)[5] if arn.startswith("arn:") and arn.count(":") >= 5 else arn


def _replication(client: S3Client, bucket: str) -> tuple[ReplicationFact, ...]:
    answer = _unless("ReplicationConfigurationNotFoundError", client.get_bucket_replication, bucket)
    rules = answer.get("ReplicationConfiguration", {}).get("Rules", []) if answer else []
    out: list[ReplicationFact] = []
    for n, rule in enumerate(rules, start=1):
        if rule.get("Status") != "Enabled":
            continue  # a disabled rule copies nothing
        dest = _destination_name(rule["Destination"]["Bucket"])
        try:
            region: str | None = read_region(client, dest)
        except ClientError:
            region = None  # another account's bucket, or gone: reported as unknown
        out.append(ReplicationFact(rule.get("ID") or f"rule-{n}", dest, region))
    return tuple(out)


def _encryption(client: S3Client, bucket: str) -> tuple[str | None, str | None]:
    """(default encryption algorithm, its KMS key id or alias); (None, None) when unset."""
    absent = "ServerSideEncryptionConfigurationNotFoundError"
    answer = _unless(absent, client.get_bucket_encryption, bucket)
    rules = answer.get("ServerSideEncryptionConfiguration", {}).get("Rules", []) if answer else []
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    return default.get("SSEAlgorithm"), default.get("KMSMasterKeyID") or None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _denies_plain_http(statement: Any, bucket: str) -> bool:
    """Deny, to everyone, object reads and writes in ``bucket`` when aws:SecureTransport
    is false (keys are case-insensitive in IAM; the value may be a string or a bool)."""
    if not isinstance(statement, dict) or statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if isinstance(principal, dict):
        principal = principal.get("AWS")
    if "*" not in _as_list(principal):
        return False
    actions = [str(a).lower() for a in _as_list(statement.get("Action", []))]
    if not all(any(fnmatchcase(want, a) for a in actions) for want in OBJECT_ACTIONS):
        return False
    resources = [_destination_name(str(r)) for r in _as_list(statement.get("Resource", []))]
    if not any(fnmatchcase(f"{bucket}/key", r) for r in resources):
        return False  # the bucket's objects must be covered, not the bucket alone
    condition = statement.get("Condition")
    tests = [t for op, t in (condition or {}).items() if op.lower() == "bool"]
    values = [v for t in tests for k, v in t.items() if k.lower() == "aws:securetransport"]
    return any(str(x).lower() == "false" for v in values for x in _as_list(v))


def _tls_only(client: S3Client, bucket: str) -> bool:
    answer = _unless("NoSuchBucketPolicy", client.get_bucket_policy, bucket)
    if answer is None:
        return False
    statements = _as_list(json.loads(answer["Policy"]).get("Statement", []))
    return any(_denies_plain_http(s, bucket) for s in statements)


def _public_access_block(client: S3Client, bucket: str) -> dict[str, bool] | None:
    answer = _unless("NoSuchPublicAccessBlockConfiguration", client.get_public_access_block, bucket)
    if answer is None:
        return None
    flags: dict[str, Any] = dict(answer.get("PublicAccessBlockConfiguration", {}))
    return {name: bool(flags.get(name, False)) for name in PUBLIC_ACCESS_FLAGS}


def _lifecycle_drift(
    client: S3Client, bucket: str, desired: Sequence[Rule], store: str
) -> dict[str, int] | None:
    found = drift(client, bucket, desired, store=store)
    counts = {"add": len(found.add), "change": len(found.change), "remove": len(found.remove)}
    return None if found.in_sync else counts


class _Reader:
    """Runs one fact's calls; a refusal becomes an ``unreadable`` entry and a default."""

    def __init__(self, store: str, bucket: str) -> None:
        self.store, self.bucket = store, bucket
        self.unreadable: list[str] = []

    def read(self, fact: str, call: Callable[[], T], default: T) -> T:
        try:
            return call()
        except ClientError as e:
            code = error_code(e)
        except LifecycleError as e:  # drift() translates its errors at the boundary
            if isinstance(e.__cause__, BotoCoreError):
                raise
            code = str(e.fields.get("code", type(e).__name__))
        except BotoCoreError as e:  # no answer at all: the whole check cannot proceed
            raise translate(e, self.store, fact, self.bucket) from e
        except ValueError:  # a policy that is not JSON (S3 never returns one)
            code = "invalid JSON"
        if code == "NoSuchBucket":
            raise _Gone
        self.unreadable.append(f"{fact}: {code}")
        return default


def bucket_facts(
    client: S3Client,
    bucket: str,
    *,
    store: S3Store | None,
    declared: Bucket | None,
    desired_lifecycle: Sequence[Rule] | None,
) -> BucketFacts:
    """Every posture fact of one bucket; ``desired_lifecycle`` None skips the lifecycle check.

    A bucket that does not exist gives ``unreadable=("bucket: NoSuchBucket",)`` and its
    declared region; an unreadable location falls back to the declared region too."""
    store_name = store.name if store is not None else None
    declared_region = store.bucket_region(declared) if store and declared else None
    base = BucketFacts(
        bucket=bucket,
        region=declared_region or UNKNOWN_REGION,
        store=store_name,
        declared_region=declared_region,
        categories=tuple(declared.categories) if declared else (),
    )
    r = _Reader(store_name or "s3", bucket)
    try:
        region = r.read("region", partial(read_region, client, bucket), base.region)
        check = partial(_lifecycle_drift, client, bucket, desired_lifecycle or (), r.store)
        lifecycle = None if desired_lifecycle is None else r.read("lifecycle", check, None)
        no_rules: tuple[ReplicationFact, ...] = ()
        replication = r.read("replication", partial(_replication, client, bucket), no_rules)
        unset: tuple[str | None, str | None] = (None, None)
        algorithm, kms_key = r.read("encryption", partial(_encryption, client, bucket), unset)
        return replace(
            base,
            region=region,
            replication=replication,
            encryption=algorithm,
            kms_key=kms_key,
            tls_only=r.read("policy", partial(_tls_only, client, bucket), False),
            public_access_block=r.read(
                "public access block", partial(_public_access_block, client, bucket), None
            ),
            lifecycle_drift=lifecycle,
            unreadable=tuple(r.unreadable),
        )
    except _Gone:
        return replace(base, unreadable=("bucket: NoSuchBucket",))


def unclassified_facts(client: S3Client, bucket: str) -> BucketFacts | None:
    """A bucket the inventory lacks: its region only (None if it vanished meanwhile)."""
    r = _Reader("s3", bucket)
    try:
        region = r.read("region", partial(read_region, client, bucket), UNKNOWN_REGION)
    except _Gone:
        return None
    return BucketFacts(bucket=bucket, region=region, unreadable=tuple(r.unreadable))


def _s3_stores(config: LifecycleConfig) -> list[S3Store]:
    return [s for s in config.inventory.stores if isinstance(s, S3Store)]


def declared_replicas(store: S3Store, config: LifecycleConfig) -> list[Bucket]:
    """``store``'s declared replicas that no store declares as a bucket, as buckets with
    the source's categories: their posture is checked too (their lifecycle is not)."""
    buckets = {b.name for s in _s3_stores(config) for b in s.buckets}
    out: dict[str, Bucket] = {}
    for source in store.buckets:
        for rep in source.replicas:
            if rep.bucket not in buckets and rep.bucket not in out:
                out[rep.bucket] = Bucket(
                    name=rep.bucket,
                    description=f"replica of {source.name}",
                    region=rep.region,
                    categories=source.categories,
                )
    return list(out.values())


def store_facts(
    client: S3Client | None,
    store: S3Store,
    config: LifecycleConfig,
    *,
    max_workers: int = 16,
    all_buckets: bool,
    now: datetime | None = None,
) -> list[BucketFacts]:
    """Facts for every bucket ``store`` declares (and its declared replicas) and, with
    ``all_buckets``, for every bucket ListBuckets shows that the inventory does not name
    (unclassified), sorted by bucket name.

    ``client`` None: one is made for ``store`` and closed. A given client's connection pool
    bounds the workers (make it with ``make_client(store, max_workers)``). Lifecycle rules
    are compared with the retention policy at ``now``, as ``lifecycle retention s3-lifecycle``
    renders them (holds starting later count). Set ``all_buckets`` for one store per account
    and endpoint, or the same unclassified bucket is reported once per store."""
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    s3 = make_client(store, max_workers) if client is None else client
    moment = now or datetime.now(UTC)
    upcoming = [h for h in config.policy.legal_holds if h.starts > moment.date()]
    plan = desired_rules(resolve_targets(config, moment), upcoming)
    desired: list[tuple[Bucket, Sequence[Rule] | None]] = [
        (b, plan.rules.get(b.name, [])) for b in store.buckets
    ]
    desired += [(b, None) for b in declared_replicas(store, config)]
    jobs: list[Callable[[], BucketFacts | None]] = [
        partial(bucket_facts, s3, b.name, store=store, declared=b, desired_lifecycle=rules)
        for b, rules in desired
    ]
    try:
        if all_buckets:
            stores = _s3_stores(config)
            known = {b.name for s in stores for b in s.buckets}
            known |= {r.bucket for s in stores for b in s.buckets for r in b.replicas}
            with s3_errors(store.name, "ListBuckets"):
                pages = s3.get_paginator("list_buckets").paginate()
                listed = {b["Name"] for page in pages for b in page.get("Buckets", [])}
            strays = sorted(listed - known)
            jobs += [partial(unclassified_facts, s3, n) for n in strays]
        connections = getattr(s3.meta.config, "max_pool_connections", None) or max_workers
        found = _run(jobs, max(1, min(max_workers, connections, len(jobs))))
    finally:
        if client is None:  # ours
            s3.close()
    return sorted((f for f in found if f is not None), key=lambda f: f.bucket)


def gather_posture(
    config: LifecycleConfig, store: StoreConfig, *, account_wide: bool
) -> list[BucketFacts]:
    """The posture hook of S3 stores (``connectors.catalog``): ``store_facts`` on a client
    of its own, listing the account's undeclared buckets with ``account_wide``."""
    if not isinstance(store, S3Store):
        raise TypeError(f"store '{store.name}' is not an S3 store")
    return store_facts(None, store, config, max_workers=WORKERS, all_buckets=account_wide)


def _run(jobs: Iterable[Callable[[], T]], workers: int) -> list[T]:
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-posture")
    try:
        return list(executor.map(lambda job: job(), jobs))
    finally:
        # On a failure, queued buckets are dropped rather than read for nothing.
        executor.shutdown(wait=True, cancel_futures=True)
