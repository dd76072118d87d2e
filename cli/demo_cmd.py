"""``lifecycle demo``: the product end to end on embedded defaults, with nothing to start.

Validates the demo policy, opens (and migrates) the audit database, re-seeds the demo CRM
(a fresh SQLite file under the data folder, so every run starts alike; the ledger keeps
growing and keeps verifying), then runs two data-subject requests for the demo subject
through the same path as ``lifecycle request submit``: an access request (an encrypted
package) and an erasure, and finally verifies the ledger and exports a signed checkpoint.
Output shows request ids, pseudonyms and counts, never personal data.

The erasure is approved automatically: this one-shot run has nobody to approve it, and its
policy (``config/demo/policy.yaml``, ``auto_approve: true``) says so; the output says so
too. The served demo (``lifecycle server start``) runs the same configuration with
``policy.served.yaml`` merged in, where erasures wait for an approver. A configuration
whose erasures wait is refused here before anything is seeded.

The S3 store ``files`` is served by a local S3 server (moto, over HTTPS on 127.0.0.1 with
a throwaway CA), started fresh for the run with its dummy credentials, CA bundle and
``LIFECYCLE_S3_ENDPOINT`` set for the duration: versioned ticket attachments (with delete
markers) and an Object Lock archive where the subject's contract is under COMPLIANCE
retention and an amendment under a legal hold. The buckets are set up as the transfer and
posture check expects (encryption, public access block, lifecycle rules, a TLS-only bucket
policy) before anything is written to them. The erasure purges every version of the
subject's attachments and defers the locked contract, with the reason; "completed with
deferrals" is the expected ending.

The processor store ``newsletter`` (Example Mail, an e-mail newsletter provider) is a local
stub of the provider's privacy API (``demo.provider``), started in-process for the run on
127.0.0.1 with a signing secret made for this run, both set in the store's variables for
the duration. Its subscribers are derived from the freshly seeded CRM (the demo subject on
two lists). Both requests include it: the access request exports its records into the
package, the erasure sends one signed erasure request and waits for the provider's
confirmation, which comes after a couple of status polls, as a real provider's comes late.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cli.output import console, fail, handled_errors, print_table
from demo.customers import DEMO_CUSTOMERS, s3_customer_ids

if TYPE_CHECKING:
    from config.schema.model import LifecycleConfig
    from demo.provider import LocalProvider
    from demo.s3_server import LocalS3
    from demo.seed_s3 import S3DemoData
    from demo.seed_sql import DemoData
    from engine.request_models import RequestOutcome
    from state.register import RequestRecord

app = typer.Typer()

SUBMITTED_EMAIL = "demo.subject@example.com"
"""How the operator types the address; the CRM stores it as Demo.Subject@example.com."""

ACCESS_COLUMNS = ["store", "target", "action", "count", "reason"]
ERASURE_COLUMNS = ["store", "target", "action", "count", "affected", "left", "reason"]
CHECK_COLUMNS = ["severity", "rule", "resource", "evidence"]
SWEEP_COLUMNS = ["target", "action", "planned", "done", "held", "batches", "state"]


def _seed_crm(config: LifecycleConfig) -> DemoData:
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


def _seed_s3(s3: LocalS3, config: LifecycleConfig, subject_customer_id: int) -> S3DemoData:
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


def _start_provider(config: LifecycleConfig, stack: ExitStack) -> LocalProvider | None:
    """Start the demo provider on the seeded CRM's subscribers, its variables set; None when
    the configuration declares no demo provider."""
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
        f"  demo subject: {provider.held_for(SUBMITTED_EMAIL)} subscriptions; requests are "
        "signed with a secret made for this run; the provider confirms an erasure after "
        f"{CONFIRM_AFTER_POLLS} status polls",
        highlight=False,
        soft_wrap=True,
    )
    return provider


def _provider_found(provider: LocalProvider | None, outcome: RequestOutcome) -> int:
    if provider is None:
        return 0
    return sum(s.found for s in outcome.stores if s.store == provider.store.name)


def _run(kind: str, recipient: Any = None) -> tuple[RequestRecord, RequestOutcome]:
    """Register and run one request for the demo subject; fails unless it completes."""
    from demo.walkthrough import run_request, submit_request

    record = submit_request(kind, {"email": SUBMITTED_EMAIL}, recipient)
    console.print(f"  {record.id} registered (subject {record.subject})")
    started = time.perf_counter()
    outcome = run_request(record.id)
    if outcome.status != "completed":
        raise fail(f"{kind} request {record.id} ended '{outcome.status}', not completed")
    console.print(f"  {record.id} {outcome.status} in {time.perf_counter() - started:.1f} s")
    return record, outcome


def _access(data_dir: Path, provider: LocalProvider | None) -> tuple[RequestRecord, RequestOutcome]:
    from demo.walkthrough import package_recipient, request_rows

    console.print("[bold]Access request[/] for the demo subject")
    console.print("  the first flow run starts Prefect's temporary server (10-20 s) ...")
    recipient, private_key = package_recipient(data_dir / "keys")
    record, outcome = _run("access", recipient)
    print_table(request_rows(record.id), ACCESS_COLUMNS, title=f"Exported records ({record.id})")
    if outcome.package is not None:
        console.print(
            f"  encrypted package: {outcome.package.location} ({outcome.package.size:,} bytes);"
            f" opens with {private_key}",
            highlight=False,
            soft_wrap=True,
        )
    if provider is not None:
        console.print(
            f"  provider {provider.store.provider}: {_provider_found(provider, outcome)} "
            "records located by signed request and exported into the package",
            highlight=False,
            soft_wrap=True,
        )
    return record, outcome


def _auto_approval(config: LifecycleConfig) -> str:
    """How the erasure gets approved in this unattended run, or a ConfigError if it would wait."""
    from core.errors import ConfigError

    approval = config.policy.requests.approval
    if "erasure" not in approval.required_for:
        return "erasures need no approval under this policy"
    if not approval.auto_approve:
        raise ConfigError(
            f"the policy in {config.source} makes erasures wait for an approver, and this "
            "one-shot demo has nobody to approve them: run it with the demo configuration "
            "(LIFECYCLE_CONFIG_DIR unset, or config/demo); use `make serve` to approve "
            "erasures in the Prefect UI"
        )
    return (
        "the erasure is approved automatically (auto_approve: true, one-shot demo only; "
        "`make serve` waits for an approver in the Prefect UI)"
    )


def _provider_erasure(provider: LocalProvider, outcome: RequestOutcome) -> str:
    """What happened at the provider during the erasure: records, reference, the wait."""
    name = provider.store.name
    erased = sum(s.affected for s in outcome.stores if s.store == name)
    taken = [r for r in provider.taken() if r.kind == "erasures"]
    if not taken:
        return f"provider {provider.store.provider}: nothing to erase (no request sent)"
    requests = ", ".join(f"{r.reference} {r.state} after {r.polls} status polls" for r in taken)
    return (
        f"provider {provider.store.provider}: {erased} records erased by signed request "
        f"({requests}, every {provider.store.poll_interval:g} s)"
    )


def _erasure(provider: LocalProvider | None) -> tuple[RequestRecord, RequestOutcome]:
    from demo.walkthrough import request_rows

    console.print(
        "[bold]Erasure request[/] for the demo subject: approved automatically by the "
        "one-shot demo's policy, no approver asked"
    )
    record, outcome = _run("erasure")
    rows = request_rows(record.id)
    print_table(rows, ERASURE_COLUMNS, title=f"Erasure per table ({record.id})")
    left = sum(int(r["left"] or 0) for r in rows)
    masked = sum(int(r["count"]) for r in rows if r["action"] == "mask")
    verdict = "clean" if left == 0 else f"{left} rows left"
    console.print(f"  verification: {verdict}; {masked} masked rows kept (tax law)")
    purged = sum(s.affected for s in outcome.stores if s.store == "files")
    console.print(f"  S3: {purged} object versions and delete markers of the subject purged")
    if provider is not None:
        console.print(f"  {_provider_erasure(provider, outcome)}", highlight=False, soft_wrap=True)
    for d in outcome.deferrals:  # completed with deferrals: kept by law, and why
        until = f" until {d.until}" if d.until else ""
        console.print(
            f"  deferred: {d.store}.{d.target} ({d.count}): {d.reason or 'locked'}{until}",
            highlight=False,
            soft_wrap=True,
        )
    return record, outcome


def _sweep() -> dict[str, Any]:
    from flows.retention_sweep import SweepParameters, retention_sweep

    console.print("[bold]Retention sweep[/]: a dry run first, then the sweep itself")
    plan = retention_sweep(params=SweepParameters(dry_run=True))
    console.print(
        f"  dry run {plan['sweep_id']}: {plan['planned']} rows and objects expired, "
        f"{plan['held']} kept by legal holds; nothing changed"
    )
    started = time.perf_counter()
    summary = retention_sweep(params=SweepParameters())
    print_table(summary["targets"], SWEEP_COLUMNS, title=f"Retention sweep {summary['sweep_id']}")
    console.print(
        f"  {summary['status']} in {time.perf_counter() - started:.1f} s: deleted "
        f"{summary['deleted']}, anonymized {summary['anonymized']}, held {summary['held']}"
    )
    return summary


def _transfer_check() -> dict[str, Any]:
    from core.errors import TerminalError
    from flows.transfer_check import CheckParameters, transfer_check

    console.print(
        "[bold]Transfer and posture check[/]: regions, replicas, encryption, TLS and lifecycle "
        "rules of every store against the transfer policy"
    )
    try:
        result = transfer_check(params=CheckParameters(all_buckets=True))
    except TerminalError as e:
        console.print(f"  {e.message}", highlight=False, soft_wrap=True)
        return {"findings": [], "high": True}
    rows = result["findings"]
    if rows:
        print_table(rows, CHECK_COLUMNS, title=f"Findings ({result['check_id']})")
    console.print(f"  {result['check_id']}: {len(rows)} findings, none of high severity")
    return result


@contextmanager
def _stage(what: str) -> Iterator[None]:
    """Turn an unexpected error during ``what`` into one clear line and exit code 1.

    Product errors pass through to ``handled_errors`` (they carry their own message);
    anything else is named by type only: its text may quote values.
    """
    from core.errors import LifecycleError

    try:
        yield
    except (LifecycleError, typer.Exit):
        raise
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise fail(f"demo failed while {what}: {e.strerror or type(e).__name__}{where}") from None
    except Exception as e:
        raise fail(f"demo failed while {what}: {type(e).__name__}") from None


def _summary(
    data: DemoData,
    s3_data: S3DemoData,
    *,
    access: tuple[RequestRecord, RequestOutcome],
    erasure: tuple[RequestRecord, RequestOutcome],
    sweep: dict[str, Any],
    check: dict[str, Any],
    checkpoint: str,
    verdict: str,
    provider: LocalProvider | None = None,
) -> None:
    found = sum(s.found for s in access[1].stores)
    erased = sum(s.affected for s in erasure[1].stores)
    deferred = sum(d.count for d in erasure[1].deferrals)
    seeded = [
        {"step": "CRM seeded", "result": f"{data.total:,} rows in {len(data.counts)} tables"},
        {
            "step": "S3 seeded",
            "result": f"{s3_data.total_versions:,} object versions in "
            f"{len(s3_data.buckets)} buckets",
        },
    ]
    if provider is not None:
        seeded.append(
            {
                "step": "provider seeded",
                "result": f"{len(provider.stub.records) + len(provider.stub.erased):,} "
                f"subscriptions at {provider.store.provider} (local stub)",
            }
        )
    print_table(
        [
            *seeded,
            {
                "step": "access request",
                "result": f"{access[0].id} {access[1].status}: {found} records exported "
                f"for subject {access[0].subject}",
            },
            {
                "step": "erasure request",
                "result": f"{erasure[0].id} {erasure[1].status} (approved automatically by "
                f"the demo policy): {erased} rows, object versions and provider records "
                f"deleted or masked for subject {erasure[0].subject}"
                + (f"; {deferred} deferred (locked)" if deferred else ""),
            },
            *(
                [{"step": "at the provider", "result": _provider_erasure(provider, erasure[1])}]
                if provider is not None
                else []
            ),
            {
                "step": "retention sweep",
                "result": f"{sweep['sweep_id']} {sweep['status']}: {sweep['deleted']} deleted, "
                f"{sweep['anonymized']} anonymized, {sweep['held']} kept under legal hold",
            },
            {
                "step": "transfer check",
                "result": "high-severity findings (see above)"
                if check.get("high")
                else f"{check['check_id']}: {len(check['findings'])} findings",
            },
            {"step": "checkpoint exported", "result": checkpoint},
            {"step": "ledger verified", "result": verdict},
        ],
        ["step", "result"],
        title="Demo",
    )


@app.callback(invoke_without_command=True)
def demo() -> None:
    """Run the demo on embedded defaults (SQLite files, a local S3 and a stub provider)."""
    from audit.ledger import Ledger
    from cli.request_submit import quiet_prefect
    from config.loader import load_config
    from config.settings import get_settings
    from core.private_files import private_dir
    from demo.s3_server import LocalS3

    quiet_prefect(verbose=False)  # before Prefect is first imported
    with handled_errors(), ExitStack() as stack:
        settings = get_settings()
        config = load_config()
        console.print(
            f"[bold]Policy[/] {config.source}: {len(config.inventory.stores)} stores, "
            f"{len(config.policy.retention)} retention rules; configuration valid"
        )
        console.print(f"  approval: {_auto_approval(config)}", highlight=False)
        with _stage("opening the audit ledger"):
            ledger = Ledger.open()
            console.print(f"[bold]Audit ledger[/] {ledger!r}: {ledger.count():,} events so far")
        with _stage("starting the local S3 server"):
            tls = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="demo-s3-tls-")))
            # fresh: no locked objects of a past run; TLS: the bucket policy allows HTTPS only
            s3 = stack.enter_context(LocalS3(tls_dir=tls / "tls"))
            stack.enter_context(s3.applied_env())  # the flow's S3 connector reads these
        with _stage("seeding the demo stores"):
            data = _seed_crm(config)
            s3_data = _seed_s3(s3, config, data.subject.customer_id)
        with _stage("starting the local provider"):
            provider = _start_provider(config, stack)
        with _stage("running the access request"):
            access = _access(settings.data_dir, provider)
        with _stage("running the erasure request"):
            erasure = _erasure(provider)
        with _stage("running the retention sweep"):
            sweep = _sweep()
        with _stage("running the transfer check"):
            check = _transfer_check()
        with _stage("verifying the audit ledger"):
            anchor = settings.data_dir / "anchors" / "demo-checkpoint.json"
            private_dir(anchor.parent)
            checkpoint = ledger.export_checkpoint(anchor)
            report = ledger.verify()
    verdict = "intact" if report.ok else f"NOT intact: {report.problem}"
    _summary(
        data,
        s3_data,
        access=access,
        erasure=erasure,
        sweep=sweep,
        check=check,
        checkpoint=f"event {checkpoint.seq} -> {anchor}",
        verdict=verdict,
        provider=provider,
    )
    if not report.ok:
        raise fail("the audit ledger did not verify")
