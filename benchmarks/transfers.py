"""Transfer and posture check: 200 buckets on moto in-process, bounded pool vs one at a time.

Run ``python -m benchmarks.transfers [--buckets N] [--rounds R] [--workers W]``. Inside
``moto.mock_aws`` N buckets are created across three regions (eu-central-1, eu-west-1,
us-west-2), a third of them hardened (encryption, public access block, TLS-only policy),
some replicating to another region; all are declared in one S3 store with the demo
policy. Measured (median of R interleaved rounds): the S3 facts of the store on a pool of
W workers plus judging them (what the flow's tasks do), against the same facts read one
bucket at a time. Target: the pooled check of 200 buckets in under 20 seconds.

In-process moto answers in microseconds and holds the GIL, so the pool gains little there;
a second measurement adds a fixed delay to every request (``--latency``, a network round
trip to a real endpoint), where the bounded pool is what keeps the check short.
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
import statistics
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config

from benchmarks.common import emit_result, log, peak_rss_mb, ratio, timed
from config.loader import load_config
from config.schema import LifecycleConfig
from config.settings import PROJECT_ROOT
from connectors.s3.config import S3Store
from connectors.s3.posture import store_facts
from transfers.evaluate import evaluate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGIONS = ("eu-central-1", "eu-west-1", "us-west-2")
TARGET_SECONDS = 20.0


def _name(i: int) -> str:
    return f"bench-posture-{i:04d}"


def seed(count: int) -> None:
    """Create the buckets: regions round-robin, every third hardened, every tenth replicating."""
    clients = {r: boto3.client("s3", region_name=r) for r in REGIONS}
    for i in range(count):
        region = REGIONS[i % len(REGIONS)]
        s3: S3Client = clients[region]
        s3.create_bucket(
            Bucket=_name(i), CreateBucketConfiguration=cast(Any, {"LocationConstraint": region})
        )
        if i % 3 == 0:
            rules = cast(Any, [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}])
            s3.put_bucket_encryption(
                Bucket=_name(i), ServerSideEncryptionConfiguration={"Rules": rules}
            )
            flags = dict.fromkeys(
                (
                    "BlockPublicAcls",
                    "IgnorePublicAcls",
                    "BlockPublicPolicy",
                    "RestrictPublicBuckets",
                ),
                True,
            )
            s3.put_public_access_block(
                Bucket=_name(i), PublicAccessBlockConfiguration=cast(Any, flags)
            )
        if i % 10 == 5 and i >= 1:
            s3.put_bucket_versioning(Bucket=_name(i), VersioningConfiguration={"Status": "Enabled"})
            dest = _name(i - 1)
            clients[REGIONS[(i - 1) % len(REGIONS)]].put_bucket_versioning(
                Bucket=dest, VersioningConfiguration={"Status": "Enabled"}
            )
            s3.put_bucket_replication(
                Bucket=_name(i),
                ReplicationConfiguration=cast(
                    Any,
                    {
                        "Role": "arn:aws:iam::123456789012:role/replication",
                        "Rules": [
                            {
                                "ID": "dr",
                                "Priority": 1,
                                "Status": "Enabled",
                                "Filter": {"Prefix": ""},
                                "DeleteMarkerReplication": {"Status": "Disabled"},
                                "Destination": {"Bucket": f"arn:aws:s3:::{dest}"},
                            }
                        ],
                    },
                ),
            )
    for client in clients.values():
        client.close()


def config_for(count: int) -> LifecycleConfig:
    """The demo policy with one S3 store declaring every benchmark bucket."""
    demo = load_config(PROJECT_ROOT / "config" / "demo")
    store = {
        "name": "bench",
        "type": "s3",
        "region": "eu-central-1",
        "buckets": [
            {
                "name": _name(i),
                "region": REGIONS[i % len(REGIONS)],
                "categories": ["support"],
                "key_templates": ["tickets/{customer_id}/"],
                "keys_contain_personal_data": False,
            }
            for i in range(count)
        ],
    }
    inventory = demo.inventory.model_validate(
        {"stores": [*demo.inventory.model_dump(by_alias=True)["stores"][:1], store]}
    )
    return demo.model_copy(update={"inventory": inventory})


def check(config: LifecycleConfig, workers: int, latency: float = 0.0) -> int:
    """One posture check of the store: facts on ``workers`` threads, then judged.

    ``latency`` adds a sleep before every request, standing in for the network round trip
    to a real S3 endpoint that in-process moto does not have.
    """
    store = config.stores_of(S3Store)[0]
    client = boto3.client(
        "s3", region_name="eu-central-1", config=Config(max_pool_connections=max(10, workers))
    )
    if latency:
        client.meta.events.register("before-send.s3.*", lambda **_: time.sleep(latency))
    try:
        facts = store_facts(client, store, config, max_workers=workers, all_buckets=False)
    finally:
        client.close()
    findings = evaluate(facts, config.policy.transfers, date.today())
    return len(findings)


def main() -> None:
    from moto import mock_aws  # lazily: slow to import for --help

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buckets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.02, help="Seconds per request.")
    args = parser.parse_args()
    with mock_aws():
        log(f"seeding {args.buckets} buckets across {', '.join(REGIONS)} (moto in-process)")
        seconds, _ = timed(lambda: seed(args.buckets))
        log(f"  seeded in {seconds:.1f} s")
        config = config_for(args.buckets)
        pooled: list[float] = []
        serial: list[float] = []
        findings = 0
        for r in range(args.rounds):  # interleaved: machine noise lands on both sides
            t_pool, findings = timed(lambda: check(config, args.workers))
            t_serial, _ = timed(lambda: check(config, 1))
            pooled.append(t_pool)
            serial.append(t_serial)
            log(f"  round {r + 1}: pool {t_pool:.2f} s, one at a time {t_serial:.2f} s")
        log(f"with {args.latency * 1000:.0f} ms per request (a network round trip), one round:")
        slow_pool, _ = timed(lambda: check(config, args.workers, args.latency))
        slow_serial, _ = timed(lambda: check(config, 1, args.latency))
        log(f"  pool {slow_pool:.2f} s, one at a time {slow_serial:.2f} s")
    pooled_s = statistics.median(pooled)
    serial_s = statistics.median(serial)
    log(f"{args.buckets} buckets: {pooled_s:.2f} s pooled, {serial_s:.2f} s serial")
    emit_result(
        "transfers",
        {
            "buckets": args.buckets,
            "workers": args.workers,
            "rounds": args.rounds,
            "findings": findings,
            "check_seconds": round(pooled_s, 2),
            "serial_seconds": round(serial_s, 2),
            "speedup_vs_serial": ratio(serial_s, pooled_s),
            "latency_ms": round(args.latency * 1000),
            "with_latency_check_seconds": round(slow_pool, 2),
            "with_latency_serial_seconds": round(slow_serial, 2),
            "with_latency_speedup": ratio(slow_serial, slow_pool),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        {"check_seconds": f"< {TARGET_SECONDS}"},
        {"check_seconds": pooled_s < TARGET_SECONDS},
    )


if __name__ == "__main__":
    main()
