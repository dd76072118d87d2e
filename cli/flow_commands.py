"""What the commands that run a flow share: ``--verbose``, Prefect's settings, and a failure
told in one line with the log file that holds its traceback.

``quiet_prefect`` runs before Prefect is first imported (it reads its settings then): its
own records go to the log file only (``cli.logfile``), and to stderr too with ``--verbose``.
A failure's traceback goes to the log file (``log_failure``); the terminal gets the
command's one line (what failed, where, what to do next) and ``details: <log file>``
(``cli.output.print_failure``).
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from cli.output import err_console

VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose", help="Show Prefect's own logs on stderr too (they always go to the log file)."
    ),
]


def quiet_prefect(verbose: bool) -> None:
    """Prefect reads these when it is first imported: set them before that happens.

    Prefect logs at WARNING, to the log file only; with ``verbose`` at INFO (or the more
    detailed level ``PREFECT_LOGGING_LEVEL`` names), on stderr as well. Also settles which
    Prefect API the flow runs go to (``ops.api_target``): the one configured, the local
    service when it runs, else a local API shared by commands (started by the first,
    saying so on stderr).
    """
    from cli import logfile

    _prefect_level(verbose)
    logfile.show_prefect_logs(verbose)
    # The temporary server's usage statistics write races its own startup ("database is
    # locked" tracebacks on SQLite); they are not needed to run a request.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A fresh Prefect home builds its database first: give a busy machine time for that.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    import atexit
    import gc

    from ops.api_target import resolve

    resolve(lambda line: err_console.print(line, highlight=False, markup=False, soft_wrap=True))
    # At exit, collecting the garbage of Prefect's and the flows' object graph took 1-2 s of
    # a small request's wall time; output, logs and the ledger are written by then. Frozen
    # objects are left to the OS (registered before Prefect's own exit handlers: runs after).
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def _prefect_level(verbose: bool) -> None:
    """WARNING, or with ``verbose`` INFO unless a more detailed level is set. Prefect's
    logger is set too: a process that imported Prefect already keeps its first level."""
    if not verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
        return
    named = os.environ.get("PREFECT_LOGGING_LEVEL", "").strip().upper()
    level = min(logging.getLevelNamesMapping().get(named) or logging.INFO, logging.INFO)
    os.environ["PREFECT_LOGGING_LEVEL"] = logging.getLevelName(level)
    logging.getLogger("prefect").setLevel(level)


def failure_reason(error: BaseException) -> str:
    """Why: a product error's message (it holds no personal data), with the first of its
    problems for a configuration that does not match a store; any other error by its type
    alone (its message may quote stored values)."""
    from core.errors import ConfigError, LifecycleError

    if isinstance(error, ConfigError) and error.problems != [error.message]:
        more = len(error.problems) - 1
        return f"{error.message}: {error.problems[0]}" + (f" (and {more} more)" if more else "")
    if isinstance(error, LifecycleError):
        return error.message
    return f"unexpected error ({type(error).__name__})"


def log_failure(error: BaseException, line: str) -> str:
    """Write ``error``'s traceback to the log file under ``line`` (what the terminal shows,
    with ``cli.output.print_failure``); returns the log file's path."""
    from cli.logfile import log_exception

    return str(log_exception(error, line))
