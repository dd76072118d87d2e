"""``lifecycle retention s3-lifecycle``: the S3 lifecycle rules the retention policy gives.

The S3 store type's contribution to the CLI (``connectors.catalog``: ``retention_commands``).
It renders the lifecycle rules S3 can enforce itself (prefix and age), shows how every
bucket of the inventory differs from them, and with ``--apply`` writes them, reads them
back and records ``retention.lifecycle_applied`` in the ledger (``connector``: the store's
name). Exit 0 in sync (or applied and confirmed), 3 on drift without ``--apply``, 2 for
invalid configuration or an unknown store or bucket, 1 when S3 fails.

Imported when the CLI starts: boto3 and the lifecycle module are imported when the command
runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.output import JsonOption, console, handled_errors, print_error, print_json
from connectors.s3.config import S3Store
from core.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from config.schema.model import LifecycleConfig
    from connectors.s3.lifecycle import DesiredLifecycle, LeftToSweep, LifecycleDiff, Rule

ConfigDirOption = typer.Option(
    None,
    "--config",
    help="Folder holding inventory.yaml and policy.yaml (default: LIFECYCLE_CONFIG_DIR).",
    file_okay=False,
)

EXIT_DRIFT = 3
"""Exit code of ``s3-lifecycle`` when a bucket drifts from the policy and --apply was not given."""

ApplyOption = typer.Option(
    False,
    "--apply",
    help="Write the rendered rules to every bucket that drifts (other rules are kept), "
    "then read them back to confirm.",
)
S3_LIFECYCLE_HELP = (
    "Render S3 lifecycle rules from the retention policy, show how each bucket differs, and "
    "write them with --apply.\n\n"
    "A bucket or prefix rule with no legal hold and no narrower prefix becomes two rules: "
    "lifecycle-<rule id> (Expiration and NoncurrentVersionExpiration, in days never shorter "
    "than the policy's age) and lifecycle-<rule id>-markers (expired delete markers). Held "
    "targets and those with narrower prefixes stay with the nightly sweep. Rules whose ID "
    "does not start with 'lifecycle-' are never changed.\n\n"
    "Exit codes: 0 every bucket in sync (or applied and read back in sync); 3 drift found "
    "and --apply not given; 2 invalid configuration or unknown --store/--bucket; 1 S3 failed."
)
StoreOption = typer.Option(None, "--store", help="Only the buckets of this S3 store.")
BucketOption = typer.Option(None, "--bucket", help="Only this bucket.")


@dataclass
class BucketReport:
    """One bucket: our rules for it, how it differed, and (after --apply) how it differs now."""

    store: str
    bucket: str
    desired: list[Rule]
    before: LifecycleDiff
    left: list[LeftToSweep]
    after: LifecycleDiff | None = None
    put: list[Rule] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return (self.after or self.before).in_sync

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            **self.before.to_json(),
            "desired": self.desired,
            "left_to_sweep": [t.to_json() for t in self.left],
            "applied": self.after is not None,
            "in_sync_after": None if self.after is None else self.after.in_sync,
        }


def _selected(
    config: LifecycleConfig, store: str | None, bucket: str | None
) -> list[tuple[S3Store, list[str]]]:
    """Every bucket of every S3 store (stale rules of ours go too), narrowed by the options."""
    every = [s for s in config.inventory.stores if isinstance(s, S3Store)]
    stores = [s for s in every if store is None or s.name == store]
    if store is not None and not stores:
        names = ", ".join(s.name for s in every) or "none"
        raise ConfigError(f"--store: no S3 store named '{store}' (S3 stores: {names})")
    chosen = [(s, [b.name for b in s.buckets if bucket in (None, b.name)]) for s in stores]
    chosen = [(s, names) for s, names in chosen if names]
    if bucket is not None and not chosen:
        where = f" in store '{store}'" if store is not None else ""
        raise ConfigError(f"--bucket: no bucket named '{bucket}'{where} in the inventory")
    return chosen


def _audit(report: BucketReport) -> None:
    """Record the change in the ledger: a lifecycle rule deletes data on its own later."""
    from audit.events import EventStatus
    from audit.ledger import Ledger

    after = report.after
    Ledger.open().append(
        "retention.lifecycle_applied",
        status=EventStatus.SUCCEEDED if after is not None and after.in_sync else EventStatus.FAILED,
        connector=report.store,  # the store, as in every other event
        target=f"{report.store}/{report.bucket}",
        counts={
            "added": len(report.before.add),
            "changed": len(report.before.change),
            "removed": len(report.before.remove),
            "unmanaged_kept": len(report.before.unmanaged),
        },
        detail={"rules": [str(r["ID"]) for r in report.put]},
    )


def _check(
    client: S3Client, store: str, bucket: str, plan: DesiredLifecycle, apply_changes: bool
) -> BucketReport:
    from connectors.s3 import lifecycle

    desired = plan.rules.get(bucket, [])
    current = lifecycle.current_rules(client, bucket, store=store)
    left = [t for t in plan.left_to_sweep if t.store == store and t.bucket == bucket]
    report = BucketReport(
        store, bucket, desired, lifecycle.diff(desired, current, bucket=bucket), left
    )
    if apply_changes and not report.before.in_sync:
        report.put = lifecycle.apply(client, bucket, desired, current, store=store)
        report.after = lifecycle.drift(client, bucket, desired, store=store)
        _audit(report)
    return report


def _what(rule: Rule) -> str:
    """``tickets/: expire after 731 days, ...``; the prefix ``*`` is the whole bucket."""
    parts = []
    if rule["ExpirationDays"] is not None:
        parts.append(f"expire after {rule['ExpirationDays']} days")
    if rule["NoncurrentDays"] is not None:
        parts.append(f"noncurrent versions after {rule['NoncurrentDays']} days")
    if rule["ExpiredObjectDeleteMarker"]:
        parts.append("remove expired delete markers")
    if rule["Other"]:
        parts.append(f"also {', '.join(rule['Other'])}")
    if rule["Status"] != "Enabled":
        parts.append(str(rule["Status"]).lower())
    return f"{rule['Prefix'] or '*'}: {', '.join(parts) or 'no action'}"


def _rows(diff: LifecycleDiff) -> list[tuple[str, str, str]]:
    """(action, rule ID, what) for the bucket's table."""
    rows = [("add", str(r["ID"]), _what(r)) for r in diff.add]
    for change in diff.change:
        what = "; ".join(f"{k}: {b} -> {a}" for k, (b, a) in change.fields.items())
        rows.append(("change", change.id, what))
    rows += [("remove", str(r["ID"]), _what(r)) for r in diff.remove]
    rows += [("unmanaged", str(r["ID"]), _what(r) + " (kept)") for r in diff.unmanaged]
    rows += [("in sync", rule_id, "") for rule_id in diff.unchanged]
    return rows


def _table(rows: list[tuple[str, str, str]]) -> Table:
    table = Table(show_lines=False)
    table.add_column("action", no_wrap=True)
    table.add_column("rule", no_wrap=True, overflow="fold")  # kept whole: people copy IDs
    table.add_column("what", overflow="fold", ratio=1)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def _say(text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _print(report: BucketReport) -> None:
    before = report.before
    state = "in sync"
    if not before.in_sync:
        state = (
            f"drift: {len(before.add)} to add, {len(before.change)} to change, "
            f"{len(before.remove)} to remove"
        )
    _say(f"{report.store}/{report.bucket}: {state}")
    rows = _rows(before)
    if rows:
        console.print(_table(rows))
    for left in report.left:
        where = left.prefix or "* (whole bucket)"
        _say(f"  left to the nightly sweep: {where}: {'; '.join(left.reasons)}")
    if report.after is not None:
        confirmed = "in sync" if report.after.in_sync else "STILL DRIFTING"
        _say(f"  applied ({len(report.put)} rules written); read back: {confirmed}")


def s3_lifecycle(
    apply_changes: bool = ApplyOption,
    store: str | None = StoreOption,
    bucket: str | None = BucketOption,
    config: Path | None = ConfigDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Render S3 lifecycle rules from the retention policy, show drift, apply with --apply."""
    from config.loader import load_config
    from connectors.s3.client import make_client
    from connectors.s3.lifecycle import desired_rules
    from retention.targets import resolve_targets

    with handled_errors():
        loaded = load_config(config)
        if apply_changes:  # --apply is audited: a missing or wrong key stops it first
            from audit.keystore import keyring_from_settings

            keyring_from_settings()
        now = datetime.now(UTC)
        upcoming = [h for h in loaded.policy.legal_holds if h.starts > now.date()]
        plan = desired_rules(resolve_targets(loaded, now), upcoming)
        reports: list[BucketReport] = []
        for s3_store, buckets in _selected(loaded, store, bucket):
            client = make_client(s3_store, max_workers=1)
            try:
                reports += [_check(client, s3_store.name, b, plan, apply_changes) for b in buckets]
            finally:
                client.close()
    if as_json:
        print_json(
            {
                "in_sync": all(r.in_sync for r in reports),
                "applied": any(r.after is not None for r in reports),
                "buckets": [r.to_json() for r in reports],
            }
        )
    else:
        for report in reports:
            _print(report)
    failed = [r for r in reports if r.after is not None and not r.after.in_sync]
    if failed:
        names = ", ".join(f"{r.store}/{r.bucket}" for r in failed)
        print_error(f"lifecycle rules still differ from the policy after --apply: {names}")
        raise typer.Exit(1)
    if not all(r.in_sync for r in reports):
        if not as_json:
            _say("drift found: run again with --apply to write the rules")
        raise typer.Exit(EXIT_DRIFT)


def add_retention_commands(app: typer.Typer) -> None:
    """The S3 store type's ``retention_commands`` hook: adds ``s3-lifecycle`` to ``app``."""
    app.command("s3-lifecycle", help=S3_LIFECYCLE_HELP)(s3_lifecycle)
