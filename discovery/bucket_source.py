"""The S3 side of a draft: a client like the S3 connector's, a bounded listing per bucket.

The endpoint comes from ``--s3-endpoint`` or ``LIFECYCLE_S3_ENDPOINT`` (what the demo
inventory's ``endpoint_url`` reads), credentials from the AWS chain; botocore errors
become product errors naming the bucket and the S3 error code only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from connectors.s3.client import make_client, translate
from connectors.s3.config import S3Store
from core.errors import InvalidInput
from discovery.buckets import BucketDraft, draft_bucket, render_buckets
from discovery.draft import DraftPlan, identity_kind

_STORE = "discovery"


def placeholders(plan: DraftPlan) -> dict[str, str | None]:
    """Which name the SQL draft offers for each kind of key segment."""
    derived = [t.derives[1] for t in plan.tables if t.derives is not None]
    kinds = {identity_kind(c, d) for t in plan.tables for c, d in t.identity.items()}
    return {
        "number": derived[0] if derived else None,
        "uuid": derived[0] if derived else None,
        "email": "email" if "email" in kinds else None,
    }


def draft_buckets(
    plan: DraftPlan, names: Sequence[str], region: str, endpoint: str | None
) -> tuple[list[str], tuple[tuple[str, int, int], ...]]:
    """The S3 store entry's lines for ``names`` and (bucket, keys listed, templates)."""
    endpoint = endpoint if endpoint is not None else os.environ.get("LIFECYCLE_S3_ENDPOINT")
    try:
        store = S3Store.model_validate(
            {
                "name": "files",
                "type": "s3",
                "region": region,
                "endpoint_url": endpoint or None,
                "buckets": [{"name": n, "categories": ["documents"]} for n in names],
            }
        )
    except ValidationError as e:  # names the field and the rule, never the input
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(f"invalid S3 option ({where}): {first['msg']}") from e
    client = make_client(store, max_workers=1)
    drafts: list[BucketDraft] = []
    try:
        for name in names:
            try:
                drafts.append(draft_bucket(client, name))
            except (BotoCoreError, ClientError) as e:
                raise translate(e, _STORE, "list keys", name) from e
    finally:
        client.close()
    lines = render_buckets(drafts, placeholders(plan), region)
    return lines, tuple((d.name, d.listed, len(d.templates)) for d in drafts)
