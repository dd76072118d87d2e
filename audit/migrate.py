"""Apply the ledger and register migrations (Alembic) to an audit database.

Configured in code rather than an alembic.ini so the CLI, the demo and the tests all
migrate the same way: ``upgrade(url)`` is idempotent. Every process opening the audit
database calls it, so a database already at ``HEAD`` is recognised with one query and
Alembic (which loads every migration script) is imported only when there is work to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "0015_incidents"
"""The newest revision (a test checks it is Alembic's one head): bump with each migration."""


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the audit database at ``engine`` up to ``revision``."""
    if revision == "head" and _at_head(engine):
        return
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def _at_head(engine: Engine) -> bool:
    """Whether the database is at ``HEAD`` already (False when unsure: Alembic decides)."""
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:  # no such table yet: never migrated
        return False
    return [row[0] for row in found] == [HEAD]


def current(engine: Engine) -> str | None:
    """The revision the audit database is at, or None when never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
