"""Incident impact of a bucket part over HTTP: the session's moto server (``local_s3``).

The connector makes its own client (``make_client``: the store's endpoint, listing
timestamps parsed by ``listing_timestamp``), as it does against AWS. The truth is the seed;
object times are read back from a listing (S3 reports ``LastModified`` to the second and
it cannot be set), and the window is cut at the last second the seeding reached.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from connectors.base import ImpactCounting
from connectors.registry import connector_for, require
from connectors.s3.config import S3Store
from incidents.scope import ScopePart, TimeWindow
from tests.connectors.s3.conftest import KEYS, make_policy

if TYPE_CHECKING:
    from demo.s3_server import LocalS3

BUCKET: Final = "inc-http-tickets"


def test_a_prefix_over_http(local_s3: LocalS3) -> None:
    client = local_s3.client()
    try:
        client.create_bucket(
            Bucket=BUCKET,
            CreateBucketConfiguration=cast(Any, {"LocationConstraint": local_s3.region}),
        )
        subjects: dict[str, str | None] = {}
        for c in range(1, 31):
            subjects |= {f"tickets/{c}/{n}.txt": str(c) for n in range(3)}
        subjects |= {f"tickets/index-{n}.txt": None for n in range(5)}  # no template's key
        outside = [f"exports/{c}.csv" for c in range(10)]  # another prefix: not counted
        for key in [*subjects, *outside]:
            client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="tickets/")
        times = {o["Key"]: o["LastModified"] for p in pages for o in p.get("Contents", [])}
    finally:
        client.close()
    assert set(times) == set(subjects)

    store = S3Store.model_validate(
        {
            "type": "s3",
            "name": "files",
            "region": local_s3.region,
            "endpoint_url": local_s3.endpoint_url,
            "buckets": [
                {
                    "name": BUCKET,
                    "categories": ["support"],
                    "key_templates": ["tickets/{customer_id}/"],
                }
            ],
        }
    )
    connector = connector_for(store, make_policy(), KEYS)
    conn = require(connector, ImpactCounting, "impact counting")
    try:
        whole = ScopePart(store="files", bucket=BUCKET, prefix="tickets/")
        got = conn.count_impact(whole)
        assert (got.records, got.subjects, got.identity) == (95, 30, "customer_id")
        assert (got.categories, got.region) == (("support",), local_s3.region)
        assert sorted(conn.affected_keys(whole), key=int) == [str(c) for c in range(1, 31)]

        # Windows cut at the last second the seeding reached: start inclusive, end exclusive.
        last = max(times.values())
        windows = {
            "from the last second": TimeWindow(start=last, end=last + timedelta(seconds=1)),
            "up to the last second": TimeWindow(start=last - timedelta(days=1), end=last),
        }
        records = 0
        for name, window in windows.items():
            scope = ScopePart(store="files", bucket=BUCKET, prefix="tickets/", window=window)
            keys = {k for k, t in times.items() if window.start <= t < window.end}
            values = {v for k in keys if (v := subjects[k]) is not None}
            got = conn.count_impact(scope)
            assert (got.records, got.subjects) == (len(keys), len(values)), name
            assert set(conn.affected_keys(scope)) == values, name
            records += got.records
        assert records == 95  # every object in exactly one of the two
    finally:
        connector.close()
