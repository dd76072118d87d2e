"""A request's external reference (the help-desk ticket), kept in the request register.

Column ``subject_requests.external_reference`` (migration 0010). A ticket id is not
personal data, but it is free text from outside: ``check_ticket`` refuses one holding an
e-mail address or phone number (the notes' guard and the ledger's), naming the field only.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, select, update

from audit.guard import check_text
from core.errors import NotFoundError, PersonalDataRefused
from core.free_text import FreeTextRefused, check_free_text
from state.register_model import check_request_id
from state.register_tables import database_errors, requests

FIELD = "ticket"


def check_ticket(ticket: str) -> str:
    """``ticket`` if it may be stored (and appear in the ledger); FreeTextRefused if not."""
    check_free_text(FIELD, ticket)
    try:
        check_text(ticket, FIELD)
    except PersonalDataRefused:  # the ledger's own guard, shape-based
        raise FreeTextRefused(FIELD, "what looks like a phone number") from None
    return ticket


def store_reference(conn: Connection, request_id: str, ticket: str) -> None:
    """Store ``ticket`` as the request's external reference, in ``conn``'s transaction."""
    check_request_id(request_id)
    done = conn.execute(
        update(requests).where(requests.c.id == request_id).values(external_reference=ticket)
    )
    if done.rowcount != 1:
        raise NotFoundError(f"request {request_id} not found", request_id=request_id)


def set_reference(engine: Engine, request_id: str, ticket: str) -> None:
    """Store ``ticket`` as the request's external reference (a transaction of its own)."""
    with database_errors("external reference", request_id), engine.begin() as conn:
        store_reference(conn, request_id, ticket)


def get_reference(engine: Engine, request_id: str) -> str | None:
    """The request's external reference (None when it has none)."""
    check_request_id(request_id)
    query = select(requests.c.external_reference).where(requests.c.id == request_id)
    with database_errors("external reference", request_id), engine.connect() as conn:
        value = conn.execute(query).scalar_one_or_none()
    return None if value is None else str(value)
