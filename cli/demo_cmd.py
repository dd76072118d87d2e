"""``lifecycle demo``: the product end to end on embedded defaults, with nothing to start.

Validates the demo policy, builds the audit database, walks a data-subject request
through the register (its identity sealed, then destroyed on close), signs and exports
the ledger head, and proves the ledger intact. Later features add the stores and flows.
"""

from __future__ import annotations

import typer

from cli.output import console, handled_errors, print_table
from cli.request_cmd import open_register

app = typer.Typer()

DEMO_IDENTITY = {"email": "Demo.Subject@Example.com"}


@app.callback(invoke_without_command=True)
def demo() -> None:
    """Run the demo on embedded defaults (SQLite files under the data folder)."""
    from audit.register import RequestKind, RequestStatus
    from config.loader import load_config
    from config.settings import get_settings

    with handled_errors():
        settings = get_settings()
        config = load_config()
        console.print(
            f"[bold]Policy[/] {config.source}: {len(config.inventory.stores)} stores, "
            f"{len(config.policy.retention)} retention rules"
        )
        register = open_register()
        ledger = register.ledger
        console.print(f"[bold]Audit ledger[/] {ledger!r}: {ledger.count()} events so far")

        record = register.register(RequestKind.ACCESS, DEMO_IDENTITY, requested_by="demo-operator")
        for status in (
            RequestStatus.PLANNED,
            RequestStatus.APPROVED,
            RequestStatus.EXECUTING,
            RequestStatus.VERIFYING,
        ):
            register.transition(record.id, status, actor="demo")
        closed = register.close(record.id, outcome=RequestStatus.COMPLETED, actor="demo")

        anchor = settings.data_dir / "anchors" / "demo-checkpoint.json"
        anchor.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = ledger.export_checkpoint(anchor)
        report = ledger.verify()

        print_table(
            [
                {"step": "request registered", "result": f"{record.id} (subject {record.subject})"},
                {
                    "step": "request closed",
                    "result": f"{closed.status}; identity destroyed: {closed.identity_destroyed}",
                },
                {"step": "checkpoint exported", "result": f"event {checkpoint.seq} -> {anchor}"},
                {"step": "ledger verified", "result": "intact" if report.ok else report.problem},
            ],
            ["step", "result"],
            title="Demo",
        )
        if not report.ok:
            raise typer.Exit(1)
