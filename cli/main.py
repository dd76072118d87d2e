"""Entry point of the ``lifecycle`` command.

Each command lives in its own module, imported only when it runs (``cli.lazy_group``).
Errors from the product's error tree become one line on stderr and a non-zero exit, never
a traceback.
"""

from __future__ import annotations

import typer

from cli.lazy_group import Lazy, lazy_group
from cli.output import EXIT_CODES, print_error, print_failure
from core.errors import ConfigError, InvalidInput, LifecycleError

# Each command's module is imported only when the command runs (``cli.lazy_group``):
# ``--help`` and usage errors answer at once.
_COMMANDS = {
    "config": Lazy(
        "cli.config_cmd", "app", "Validate and show the policy and inventory configuration."
    ),
    "db": Lazy("cli.db_cmd", "app", "Create or upgrade the audit database."),
    "audit": Lazy("cli.audit_cmd", "app", "Show and verify the audit ledger; export checkpoints."),
    "request": Lazy("cli.request_cmd", "app", "Register, run and track data-subject requests."),
    "package": Lazy(
        "cli.package_cmd", "app", "Open access packages for the subject; expire old ones."
    ),
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
    "discover": Lazy("cli.discover_cmd", "discover", "Compare the live stores with the inventory."),
    "keys": Lazy("cli.keys_cmd", "app", "Show the master key's fingerprint; rotate the key."),
    "inventory": Lazy(
        "cli.inventory_cmd", "app", "Draft inventory.yaml from a live database and buckets."
    ),
    "incident": Lazy(
        "cli.incident_cmd",
        "app",
        "Incidents and breaches: report, assess, notify within deadlines, close.",
    ),
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
    epilog="Exit codes, the same for every command:\n\n"
    + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items()),
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _top() -> None:
    """Privacy operations: subject requests, retention sweeps, transfer checks and a
    tamper-evident audit ledger."""
    from cli import logfile  # stdlib only: every command's logs go to the log file

    logfile.install()  # here too, for the app run without main() (tests, embedding)


def main() -> None:
    """Run the CLI, turning product errors into one clear line and an exit code, and
    anything unexpected into one line naming the log file that holds its traceback."""
    from cli import logfile  # stdlib only; not imported by ``app`` itself (--help stays light)

    logfile.install()  # Prefect's logs, once imported, go to the file, not the terminal
    try:
        app()
    except ConfigError as e:
        for problem in e.problems:
            print_error(problem)
        raise SystemExit(2) from None
    except InvalidInput as e:
        print_error(e.message)
        raise SystemExit(2) from None
    except LifecycleError as e:
        print_error(e.message)
        raise SystemExit(1) from None
    except Exception as e:  # a bug or an error the product does not know: no traceback here
        log = logfile.log_exception(e, "unexpected error")
        print_failure(f"unexpected error ({type(e).__name__}); nothing was reported", str(log))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
