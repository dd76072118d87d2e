"""Entry point of the ``lifecycle`` command.

Each command group lives in its own module and is registered here. Errors from the
product's error tree become one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import importlib

import typer

from cli.output import print_error
from core.errors import ConfigError, LifecycleError

app = typer.Typer(
    name="lifecycle",
    help="Privacy operations: subject requests, retention sweeps, transfer checks and a "
    "tamper-evident audit ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (module, group name, one-line help); a missing module is skipped so the CLI stays usable
# while a group is being built.
_GROUPS = [
    ("cli.config_cmd", "config", "Validate and show the policy and inventory configuration."),
    ("cli.db_cmd", "db", "Create or upgrade the audit database."),
    ("cli.audit_cmd", "audit", "Show and verify the audit ledger; export checkpoints."),
    ("cli.request_cmd", "request", "Register, run and track data-subject requests."),
    ("cli.approver_cmd", "approver", "Approvers' signing keys; sign a decision for the UI."),
    ("cli.doctor_cmd", "doctor", "Check SQL stores: reachable, schema as declared, indexes."),
    (
        "cli.retention_cmd",
        "retention",
        "Retention rules: explain what applies, render S3 lifecycle rules.",
    ),
    ("cli.transfers_cmd", "transfers", "Cross-region transfer and security-posture checks."),
    ("cli.keys_cmd", "keys", "Show the master key's fingerprint; rotate the key."),
    ("cli.demo_cmd", "demo", "Run the demo end to end on embedded defaults."),
    (
        "cli.server_cmd",
        "server",
        "Start, stop and inspect the local Prefect server, worker and deployments.",
    ),
]

for module_name, group, help_text in _GROUPS:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        continue
    app.add_typer(module.app, name=group, help=help_text)

# Commands that are a single action rather than a group.
app.command(name="sweep", help="Run the retention sweep now (progress bar; --dry-run plans only).")(
    importlib.import_module("cli.sweep_cmd").sweep
)


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
