"""Batches of requests submitted together: which requests a batch file became.

A batch is a list of requests, nothing more: each line of the file is registered as its own
request (own register entry, deadline, plan, approval, ledger trail, sealed identity), and
the batch records which request each accepted line became, so one flow run
(``flows.subject_batch``) can carry them out together and an operator can follow them by
one id. The file itself is never kept (it holds identities). A member row is written in
the transaction that registers its request (``RequestRegister.register``'s ``within``):
a crash leaves every request either registered and listed, or neither.
Migration 0013 creates both tables.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Connection, Engine, Index, Integer, String, Table, insert, select
from sqlalchemy import update as sql_update

from audit.tables import MYSQL_TABLE_ARGS, UTCDateTime, metadata
from core.errors import NotFoundError, TerminalError
from state.register_model import check_actor
from state.register_tables import ACTOR_LEN, ID_LEN, database_errors

BATCH_PREFIX = "bat_"

submission_batches = Table(
    "submission_batches",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("registered_at", UTCDateTime(), nullable=False),
    Column("registered_by", String(ACTOR_LEN), nullable=False),
    Column("lines", Integer(), nullable=False),  # lines read from the file
    Column("rejected", Integer(), nullable=False),  # lines that failed validation
    **MYSQL_TABLE_ARGS,
)
"""One row per batch file registered; migration 0013 creates it."""

submission_batch_members = Table(
    "submission_batch_members",
    metadata,
    Column("batch_id", String(ID_LEN), primary_key=True),
    Column("request_id", String(ID_LEN), primary_key=True),
    Column("line", Integer(), nullable=False),
    Index("ix_submission_batch_members_request", "request_id"),
    **MYSQL_TABLE_ARGS,
)
"""The request each accepted line became; migration 0013 creates it."""


def new_batch_id() -> str:
    return BATCH_PREFIX + secrets.token_hex(8)


def is_batch_id(value: str) -> bool:
    rest = value.removeprefix(BATCH_PREFIX)
    return (
        value.startswith(BATCH_PREFIX)
        and len(rest) == 16
        and all(c in "0123456789abcdef" for c in rest)
    )


@dataclass(frozen=True)
class BatchRecord:
    """A registered batch: who registered it, when, and its lines."""

    id: str
    registered_at: datetime
    registered_by: str
    lines: int
    rejected: int


@dataclass(frozen=True)
class BatchMember:
    line: int
    request_id: str


class RequestBatches:
    """The batches table and its members, on the audit database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, registered_by: str) -> str:
        """A new, empty batch; members are added as their requests are registered."""
        registered_by = check_actor(registered_by, "requested_by")
        batch_id = new_batch_id()
        with database_errors("register batch", batch_id), self._engine.begin() as conn:
            conn.execute(
                insert(submission_batches).values(
                    id=batch_id,
                    registered_at=datetime.now(UTC),
                    registered_by=registered_by,
                    lines=0,
                    rejected=0,
                )
            )
        return batch_id

    @staticmethod
    def member_writer(batch_id: str, line: int) -> Callable[[Connection, str], None]:
        """The ``within`` hook that lists the request a line becomes, in its registration."""

        def write(conn: Connection, request_id: str) -> None:
            conn.execute(
                insert(submission_batch_members).values(
                    batch_id=batch_id, request_id=request_id, line=line
                )
            )

        return write

    def finish(self, batch_id: str, *, lines: int, rejected: int) -> None:
        """Record how many lines were read and how many were refused."""
        with database_errors("register batch", batch_id), self._engine.begin() as conn:
            conn.execute(
                sql_update(submission_batches)
                .where(submission_batches.c.id == batch_id)
                .values(lines=lines, rejected=rejected)
            )

    def get(self, batch_id: str) -> BatchRecord:
        if not is_batch_id(batch_id):
            raise TerminalError("give the id of a registered batch (bat_ and 16 hex digits)")
        with database_errors("read batch", batch_id), self._engine.connect() as conn:
            row = conn.execute(
                select(submission_batches).where(submission_batches.c.id == batch_id)
            ).first()
        if row is None:
            raise NotFoundError(f"no batch {batch_id} in the register")
        return BatchRecord(
            id=row.id,
            registered_at=row.registered_at,
            registered_by=row.registered_by,
            lines=row.lines,
            rejected=row.rejected,
        )

    def members(self, batch_id: str) -> list[BatchMember]:
        """The batch's requests in file order."""
        self.get(batch_id)
        with database_errors("read batch", batch_id), self._engine.connect() as conn:
            rows = conn.execute(
                select(submission_batch_members.c.line, submission_batch_members.c.request_id)
                .where(submission_batch_members.c.batch_id == batch_id)
                .order_by(submission_batch_members.c.line)
            ).all()
        return [BatchMember(line=row.line, request_id=row.request_id) for row in rows]

    def batch_of(self, request_id: str) -> str | None:
        """The batch a request was submitted in, if any."""
        with database_errors("read batch", request_id), self._engine.connect() as conn:
            found = conn.execute(
                select(submission_batch_members.c.batch_id).where(
                    submission_batch_members.c.request_id == request_id
                )
            ).first()
        return None if found is None else str(found[0])
