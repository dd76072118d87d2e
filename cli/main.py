"""Entry point of the ``lifecycle`` command.

Each command lives in its own module, imported only when it runs (``cli.lazy_group``).
Errors from the product's error tree become one line on stderr and a non-zero exit, never
a traceback.
"""

from __future__ import annotations

import typer

from cli.lazy_group import Lazy, lazy_group
from cli.output import print_error
from core.errors import ConfigError, LifecycleError

# Each command's module is imported only when the command runs (``cli.lazy_group``):
# ``--help`` and usage errors answer at once.
_COMMANDS = {
    "config": Lazy(
        "cli.config_cmd", "app", "Validate and show the policy and inventory configuration."
    ),
    "db": Lazy("cli.db_cmd", "app", "Create or upgrade the audit database."),
    "audit": Lazy("cli.audit_cmd", "app", "Show and verify the audit ledger; export checkpoints."),
    "request": Lazy("cli.request_cmd", "app", "Register, run and track data-subject requests."),
    "approver": Lazy(
        "cli.approver_cmd", "app", "Approvers' signing keys; sign a decision for the UI."
    ),
    "doctor": Lazy(
        "cli.doctor_cmd", "app", "Check SQL stores: reachable, schema as declared, indexes."
    ),
    "retention": Lazy(
        "cli.retention_cmd",
        "app",
        "Retention rules: explain what applies, render S3 lifecycle rules.",
    ),
    "transfers": Lazy(
        "cli.transfers_cmd", "app", "Cross-region transfer and security-posture checks."
    ),
    "keys": Lazy("cli.keys_cmd", "app", "Show the master key's fingerprint; rotate the key."),
    "demo": Lazy("cli.demo_cmd", "app", "Run the demo end to end on embedded defaults."),
    "server": Lazy(
        "cli.server_cmd",
        "app",
        "Start, stop and inspect the local Prefect server, worker and deployments.",
    ),
    "sweep": Lazy(
        "cli.sweep_cmd",
        "sweep",
        "Run the retention sweep now (progress bar; --dry-run plans only).",
    ),
}

app = typer.Typer(
    name="lifecycle",
    help="Privacy operations: subject requests, retention sweeps, transfer checks and a "
    "tamper-evident audit ledger.",
    cls=lazy_group(_COMMANDS),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _top() -> None:
    """Privacy operations: subject requests, retention sweeps, transfer checks and a
    tamper-evident audit ledger."""


def main() -> None:
    """Run the CLI, turning product errors into one clear line and an exit code."""
    try:
        app()
    except ConfigError as e:
        for problem in e.problems:
            print_error(problem)
        raise SystemExit(2) from None
    except LifecycleError as e:
        print_error(e.message)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
