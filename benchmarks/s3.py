"""S3 purge: the connector's version-by-version erasure vs per-version calls and bare DeleteObjects.

Run ``python -m benchmarks.s3 [--objects N] [--versions V] [--rounds R]``. A local moto server
(``demo.s3_server.LocalS3``, over HTTP) holds one versioned bucket; N objects with V versions
each live under one subject's prefix. Before every measured round the bucket is seeded again
(concurrent puts, bounded pool; not timed). Measured, each on the same set of versions:

(a) baseline: one ``delete_object(Key, VersionId)`` call per version, sequentially;
(b) bare loop: ``delete_objects`` with 1,000 versions per call (the S3 maximum);
(c) the connector: ``S3Connector.execute`` of an erasure plan (locate and plan are not timed,
    as the versions are known to (a) and (b) before their clocks start).

Targets: (c) at least 10x faster than (a), and at most 1.3x the time of (b). Every method must
leave no version behind. If ``connectors.s3.connector`` is not importable (or fails), the
connector figures are reported missing and its targets unmet.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python benchmarks/<name>.py`, sys.path[0] is benchmarks/, whose audit.py,
# requests.py, retention.py and transfers.py would shadow the packages and the library of
# those names: the repo root takes its place, before any other import. (`python -m
# benchmarks.<name>` and imports from other modules set __package__ and skip this.)
if not __package__:
    _here = Path(__file__).resolve().parent
    sys.path[:] = [str(_here.parent), *(p for p in sys.path if Path(p).resolve() != _here)]

import argparse
import importlib
import statistics
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from pydantic import SecretStr

from benchmarks.common import emit_result, log, ratio, timed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

BUCKET = "bench-ticket-attachments"
REGION: Final = "eu-central-1"
SUBJECT_ID = "1"
PREFIX = f"tickets/{SUBJECT_ID}/"
CHUNK = 1000  # DeleteObjects maximum on AWS (moto accepts more; the bare loop keeps AWS's cap)
SEED_WORKERS = 16
MIN_SPEEDUP_VS_PER_VERSION = 10.0
MAX_RATIO_VS_BARE = 1.3
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config" / "demo"

VersionRef = tuple[str, str]  # (key, version id)
Purge = Callable[[], int]  # deletes the seeded versions, returns how many it deleted


def _create_bucket(client: S3Client) -> None:
    client.create_bucket(
        Bucket=BUCKET,
        CreateBucketConfiguration={"LocationConstraint": REGION},
    )
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})


def _seed(client: S3Client, objects: int, versions: int) -> list[VersionRef]:
    """Put ``versions`` versions of ``objects`` keys (concurrently, bounded); their ids."""
    keys = [f"{PREFIX}{i:06d}.txt" for i in range(objects)]

    def put(key: str, v: int) -> VersionRef:
        body = f"Fictional benchmark attachment {key}, revision {v + 1}.\n".encode()
        return key, client.put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]

    refs: list[VersionRef] = []
    with ThreadPoolExecutor(max_workers=SEED_WORKERS) as pool:
        for v in range(versions):  # one pass per version: a key's versions stay in order
            refs += pool.map(put, keys, [v] * len(keys))
    return refs


def _remaining(client: S3Client) -> int:
    """Versions and delete markers still in the bucket."""
    count = 0
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        count += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
    return count


def _per_version(client: S3Client, refs: Sequence[VersionRef]) -> Purge:
    def run() -> int:
        for key, version in refs:
            client.delete_object(Bucket=BUCKET, Key=key, VersionId=version)
        return len(refs)

    return run


def _bare_delete_objects(client: S3Client, refs: Sequence[VersionRef]) -> Purge:
    def run() -> int:
        deleted = 0
        for start in range(0, len(refs), CHUNK):
            chunk: list[ObjectIdentifierTypeDef] = [
                {"Key": k, "VersionId": v} for k, v in refs[start : start + CHUNK]
            ]
            response = client.delete_objects(
                Bucket=BUCKET, Delete={"Objects": chunk, "Quiet": True}
            )
            if response.get("Errors"):
                raise RuntimeError(f"DeleteObjects reported {len(response['Errors'])} errors")
            deleted += len(chunk)
        return deleted

    return run


def _connector_purge(client: S3Client, expected: int) -> Purge:
    """Locate and plan (untimed) with the real connector; the returned callable executes."""
    from config.loader import load_config
    from config.schema import Bucket
    from connectors.base import Action
    from connectors.s3.config import S3Store
    from connectors.s3.connector import S3Connector  # lazily: the benchmark runs without it
    from core.keys import KeyRing

    store = S3Store(
        type="s3",
        name="bench-files",
        region=REGION,
        endpoint_url=SecretStr(client.meta.endpoint_url),
        buckets=(
            Bucket(name=BUCKET, categories=("support",), key_templates=("tickets/{customer_id}/",)),
        ),
    )
    policy = load_config(CONFIG_DIR).policy
    connector: Any = S3Connector(
        store, policy, keys=KeyRing.from_master(b"benchmark-only-master-secret-32b"), client=client
    )
    findings = connector.locate({"customer_id": frozenset({SUBJECT_ID})})
    plan = connector.plan_erasure(findings, today=datetime.now(UTC).date().isoformat())
    planned = sum(s.count for s in plan.steps if s.action == Action.DELETE)
    if planned != expected:
        raise RuntimeError(f"the connector planned {planned} deletions, expected {expected}")

    def run() -> int:
        try:
            results = connector.execute(plan, on_batch=lambda _: None)
        finally:
            connector.close()
        return sum(r.affected for r in results)

    return run


def _measure(
    label: str,
    make: Callable[[Sequence[VersionRef]], Purge],
    *,
    client: S3Client,
    objects: int,
    versions: int,
    rounds: int,
) -> float:
    """Median seconds of ``rounds`` purges, each after a fresh (untimed) seed."""
    samples: list[float] = []
    for i in range(rounds):
        seconds, refs = timed(lambda: _seed(client, objects, versions))
        log(f"  {label}: seeded {len(refs):,} versions in {seconds:.1f} s")
        purge = make(refs)
        seconds, deleted = timed(purge)
        left = _remaining(client)
        if deleted != len(refs) or left:
            raise RuntimeError(f"{label}: deleted {deleted} of {len(refs)}, {left} left behind")
        samples.append(seconds)
        log(
            f"  {label} round {i + 1}/{rounds}: {seconds:.2f} s "
            f"({len(refs) / seconds:,.0f} versions/s)"
        )
    return statistics.median(samples)


def _measure_connector(measure: Callable[..., float], client: S3Client) -> float | None:
    """Median seconds of the connector's purge, or None (said why) when it is unavailable."""
    try:
        importlib.import_module("connectors.s3.connector")  # checked before seeding 20,000 versions
    except ImportError as e:
        log(f"  connector figure missing: connectors.s3.connector is not available ({e})")
        return None
    try:
        return measure("connector", lambda refs: _connector_purge(client, len(refs)))
    except Exception as e:  # report, never fake: the connector's targets are then unmet
        log(f"  connector figure missing: the connector failed: {e!r}")
        traceback.print_exc(file=sys.stdout)
        return None


def main(argv: Sequence[str] | None = None) -> None:
    from demo.s3_server import LocalS3  # lazily: moto's server is slow to import for --help

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--objects", type=int, default=10_000, help="objects (default 10,000)")
    parser.add_argument("--versions", type=int, default=2, help="versions each (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per method (median)")
    args = parser.parse_args(argv)
    total = args.objects * args.versions
    log(f"S3 purge: {args.objects:,} objects x {args.versions} versions = {total:,} versions")

    figures: dict[str, Any] = {"objects": args.objects, "versions": total}
    with LocalS3(region=REGION) as s3:
        client = s3.client(max_pool_connections=SEED_WORKERS + 4)
        _create_bucket(client)
        measure = partial(
            _measure,
            client=client,
            objects=args.objects,
            versions=args.versions,
            rounds=args.rounds,
        )
        log("(a) one delete_object call per version")
        per_version = measure("per-version", lambda refs: _per_version(client, refs))
        log(f"(b) bare DeleteObjects loop, {CHUNK} versions per call")
        bare = measure("bare", lambda refs: _bare_delete_objects(client, refs))
        log("(c) S3Connector.execute")
        connector = _measure_connector(measure, client)

    figures |= {
        "per_version_s": round(per_version, 3),
        "bare_delete_objects_s": round(bare, 3),
        "connector_s": None if connector is None else round(connector, 3),
        "bare_speedup_vs_per_version": ratio(per_version, bare),
    }
    met = {"connector_speedup_vs_per_version": False, "connector_vs_bare": False}
    if connector is not None:
        figures["connector_speedup_vs_per_version"] = ratio(per_version, connector)
        figures["connector_vs_bare"] = ratio(connector, bare)
        met = {
            "connector_speedup_vs_per_version": per_version / connector
            >= MIN_SPEEDUP_VS_PER_VERSION,
            "connector_vs_bare": connector / bare <= MAX_RATIO_VS_BARE,
        }
        log(
            f"connector: {figures['connector_speedup_vs_per_version']}x faster than per-version "
            f"calls, {figures['connector_vs_bare']}x the bare DeleteObjects loop"
        )
    emit_result(
        "s3",
        figures,
        {
            "connector_speedup_vs_per_version": f">= {MIN_SPEEDUP_VS_PER_VERSION}",
            "connector_vs_bare": f"<= {MAX_RATIO_VS_BARE}",
        },
        met,
    )


if __name__ == "__main__":
    main()
