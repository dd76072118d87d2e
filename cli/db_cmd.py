"""``lifecycle db``: create or upgrade the audit database (ledger and register tables).

Migrations are Alembic revisions under audit/migrations; ``upgrade`` is idempotent, so
deployments can run it on every start. Nothing here prints the database password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from audit.database import translate_db_error
from audit.migrate import current as current_revision
from audit.migrate import upgrade as upgrade_to
from cli.output import console, fail
from config.settings import get_settings
from core.engines import make_engine, safe_url
from core.errors import ConfigError, LifecycleError

app = typer.Typer(no_args_is_help=True)


@contextmanager
def _engine() -> Iterator[tuple[Engine, str]]:
    """An engine on the configured audit database (and its printable URL), then disposed."""
    try:
        url = get_settings().resolved_audit_url()
        engine = make_engine(url)
        try:
            yield engine, safe_url(url)
        except SQLAlchemyError as e:
            raise translate_db_error(e, "working on the audit database") from e
        finally:
            engine.dispose()
    except ConfigError as e:
        exits = [fail(problem, 2) for problem in e.problems]
        raise exits[-1] from None
    except LifecycleError as e:
        raise fail(e.message) from None


@app.command("upgrade")
def upgrade() -> None:
    """Apply every pending migration and print the revision the database is now at."""
    with _engine() as (engine, where):
        upgrade_to(engine)
        revision = current_revision(engine)
    console.print(f"audit database at {where}: revision {revision}", highlight=False)


@app.command("current")
def current() -> None:
    """Print the revision the audit database is at ("none" if never migrated)."""
    with _engine() as (engine, where):
        revision = current_revision(engine)
    console.print(f"audit database at {where}: revision {revision or 'none'}", highlight=False)
