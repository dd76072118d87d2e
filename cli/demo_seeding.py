"""The demo's stores, seeded fresh for ``lifecycle demo`` (``cli.demo_cmd``).

The CRM is a SQLite file under the data folder, re-created on every run so every run
starts alike. The S3 store ``files`` is served by a local S3 server (moto, over HTTPS on
127.0.0.1 with a throwaway CA): versioned ticket attachments (with delete markers) and an
Object Lock archive where the subject's contract is under COMPLIANCE retention and an
amendment under a legal hold. Its buckets are set up as the transfer and posture check
expects (encryption, public access block, lifecycle rules, a TLS-only bucket policy)
before anything is written to them.

The processor store ``newsletter`` (Example Mail, an e-mail newsletter provider) is a local
stub of the provider's privacy API (``demo.provider``), started in-process on 127.0.0.1
with a signing secret made for this run, both set in the store's variables for the
duration. Its subscribers are derived from the freshly seeded CRM (the demo subject on two
lists); it confirms an erasure after a couple of status polls, as a real provider's
confirmation comes late.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

from cli.output import console
from demo.customers import DEMO_CUSTOMERS, s3_customer_ids

if TYPE_CHECKING:
    from config.schema.model import LifecycleConfig
    from demo.provider import LocalProvider
    from demo.s3_server import LocalS3
    from demo.seed_s3 import S3DemoData
    from demo.seed_sql import DemoData


def seed_crm_store(config: LifecycleConfig) -> DemoData:
    """Re-create the demo CRM store from scratch; what was seeded."""
    from core.engines import normalize_url
    from demo.seed_sql import remove_sqlite_files, seed_crm
    from demo.stores import CRM_STORE, require_crm_url

    url = require_crm_url(config)
    remove_sqlite_files(url)
    backend = normalize_url(url).get_backend_name()
    console.print(
        f"[bold]Seeding demo CRM[/] (store '{CRM_STORE}', {backend}): "
        f"{DEMO_CUSTOMERS:,} customers ..."
    )
    started = time.perf_counter()
    data = seed_crm(url, customers=DEMO_CUSTOMERS)
    seconds = time.perf_counter() - started
    console.print(f"  {data.total:,} rows in {len(data.counts)} tables ({seconds:.1f} s)")
    console.print(
        f"  demo subject: {data.subject.total} rows (e-mail stored in mixed case, "
        "requested in lower case)"
    )
    return data


def seed_s3_store(s3: LocalS3, config: LifecycleConfig, subject_customer_id: int) -> S3DemoData:
    """Set the demo buckets up as the posture check expects, then upload the demo objects."""
    from demo.seed_s3 import DEMO_BUCKETS, demo_posture, ensure_bucket, seed_s3
    from demo.stores import lifecycle_rules

    ids = s3_customer_ids(subject_customer_id)
    console.print(
        f"[bold]Seeding demo S3[/] (store 'files', local server {s3.endpoint_url}): "
        f"objects of {len(ids)} customers ..."
    )
    started = time.perf_counter()
    client = s3.client(max_pool_connections=16)
    try:
        for bucket, object_lock in DEMO_BUCKETS.items():
            ensure_bucket(client, bucket, s3.region, object_lock=object_lock)
        rules = lifecycle_rules(config)
        demo_posture(client, rules, tls_only=s3.tls is not None)
        console.print(
            "  buckets: encrypted, public access blocked, lifecycle rules from the retention "
            "policy, and a bucket policy refusing requests without TLS"
        )
        data = seed_s3(
            client, customer_ids=ids, subject_customer_id=subject_customer_id, region=s3.region
        )
    finally:
        client.close()
    seconds = time.perf_counter() - started
    for bucket, counts in data.buckets.items():
        console.print(
            f"  {bucket}: {counts.objects} objects, {counts.versions} versions, "
            f"{counts.delete_markers} delete markers"
        )
    console.print(
        f"  demo subject: {sum(len(k) for k in data.subject_keys.values())} objects; the "
        f"contract under COMPLIANCE retention, an amendment under legal hold ({seconds:.1f} s)"
    )
    return data


def start_provider(
    config: LifecycleConfig, stack: ExitStack, subject_email: str
) -> LocalProvider | None:
    """Start the demo provider on the seeded CRM's subscribers, its variables set for
    ``stack``'s duration; None when the configuration declares no demo provider."""
    from demo.provider import CONFIRM_AFTER_POLLS, LocalProvider, provider_store, subscriber_records
    from demo.stores import require_crm_url

    store = provider_store(config)
    if store is None:
        return None
    records = subscriber_records(require_crm_url(config))
    provider = stack.enter_context(LocalProvider(store, records))
    stack.enter_context(provider.applied_env())  # the flow's provider connector reads these
    console.print(
        f"[bold]Seeding demo provider[/] (store '{store.name}', {store.provider}: local stub "
        f"{provider.url}): {len(records)} subscriptions of {provider.subscribers()} CRM "
        "customers",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"  demo subject: {provider.held_for(subject_email)} subscriptions; requests are "
        "signed with a secret made for this run; the provider confirms an erasure after "
        f"{CONFIRM_AFTER_POLLS} status polls",
        highlight=False,
        soft_wrap=True,
    )
    return provider
