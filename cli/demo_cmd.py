"""``lifecycle demo``: the product end to end on embedded defaults, with nothing to start.

Validates the demo policy, opens (and migrates) the audit database and seeds the demo
stores afresh (``cli.demo_seeding``: the CRM, a local S3 server, a local stub provider;
the ledger keeps growing and keeps verifying). Then it runs two data-subject requests for
the demo subject through the same path as ``lifecycle request submit``: an access request
(an encrypted package) and an erasure, which purges every version of the subject's
attachments and defers the locked contract, with the reason ("completed with deferrals"
is the expected ending). The retention sweep and the transfer check follow
(``cli.demo_sweep_and_check``), then one personal data breach from report to closed
(``cli.demo_incident``); last, the ledger is verified and a signed checkpoint exported.
Output shows request ids, pseudonyms and counts, never personal data.

The erasure is approved automatically: this one-shot run has nobody to approve it, and its
policy (``config/demo/policy.yaml``, ``auto_approve: true``) says so; the output says so
too. The served demo (``lifecycle server start``) runs the same configuration with
``policy.served.yaml`` merged in, where erasures wait for an approver. A configuration
whose erasures wait is refused here before anything is seeded.

A stage that fails is one line (the stage, why, what to do next) and the log file holding
its traceback; exit 1.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cli.demo_incident import incident_result, run_incident
from cli.demo_seeding import seed_crm_store, seed_s3_store, start_provider
from cli.demo_sweep_and_check import run_sweep, run_transfer_check
from cli.output import console, fail, handled_errors, print_failure, print_table

if TYPE_CHECKING:
    from config.schema.model import LifecycleConfig
    from demo.provider import LocalProvider
    from demo.seed_s3 import S3DemoData
    from demo.seed_sql import DemoData
    from engine.request_models import RequestOutcome
    from state.register import RequestRecord

app = typer.Typer()

SUBMITTED_EMAIL = "demo.subject@example.com"
"""How the operator types the address; the CRM stores it as Demo.Subject@example.com."""

ACCESS_COLUMNS = ["store", "target", "action", "count", "reason"]
ERASURE_COLUMNS = ["store", "target", "action", "count", "affected", "left", "reason"]


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


@contextmanager
def _stage(what: str) -> Iterator[None]:
    """A failure during ``what``: one line (the stage, why, what to do next) and the log
    file holding its traceback; exit 1.

    Invalid configuration or input passes through to ``handled_errors`` (exit 2). A product
    error is told by its message, an OS error by its description and file, anything else
    by its type only: its text may quote values.
    """
    from cli.flow_commands import failure_reason, log_failure
    from core.errors import ConfigError, InvalidInput

    try:
        yield
    except (ConfigError, InvalidInput, typer.Exit):
        raise
    except Exception as e:
        reason = failure_reason(e)
        if isinstance(e, OSError):
            where = f" ({e.filename})" if e.filename else ""
            reason = f"{e.strerror or type(e).__name__}{where}"
        line = f"demo failed while {what}: {reason}; once that is fixed, run `lifecycle demo` again"
        print_failure(line, log_failure(e, line))
        raise typer.Exit(1) from None


def _summary(
    data: DemoData,
    s3_data: S3DemoData,
    *,
    access: tuple[RequestRecord, RequestOutcome],
    erasure: tuple[RequestRecord, RequestOutcome],
    sweep: dict[str, Any],
    check: dict[str, Any],
    incident: dict[str, Any],
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
            {"step": "incident", "result": incident_result(incident)},
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
    from cli.flow_commands import quiet_prefect
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
            data = seed_crm_store(config)
            s3_data = seed_s3_store(s3, config, data.subject.customer_id)
        with _stage("starting the local provider"):
            provider = start_provider(config, stack, SUBMITTED_EMAIL)
        with _stage("running the access request"):
            access = _access(settings.data_dir, provider)
        with _stage("running the erasure request"):
            erasure = _erasure(provider)
        with _stage("running the retention sweep"):
            sweep = run_sweep()
        with _stage("running the transfer check"):
            check = run_transfer_check()
        with _stage("running the incident"):
            incident = run_incident(config, settings.data_dir, settings.actor)
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
        incident=incident,
        checkpoint=f"event {checkpoint.seq} -> {anchor}",
        verdict=verdict,
        provider=provider,
    )
    if not report.ok:
        raise fail("the audit ledger did not verify")
