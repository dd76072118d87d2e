"""The incident register: incidents, their notifications and corrective actions.

``incidents``: one row per reported concern, its state (triage, breach, dismissed,
closed), the clock (detected, aware: the 72 hours run from there), the declared kinds
and scope, and the latest assessment as JSON (counts, categories, regions: never a key
or value). ``incident_notifications``: per audience (authority, subjects, client:NAME)
its deadline and whether it was sent, exempted or not required. ``incident_actions``:
corrective actions with owner, due date and status. Free text here (summary, reasons,
action titles) passed ``core.free_text``. The ledger holds every step; these tables are
its queryable state. Migration ``0015_incidents`` creates them; keep them in step.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from audit.tables import MYSQL_TABLE_ARGS, UTCDateTime, metadata
from state.progress_tables import long_text
from state.register_tables import ID_LEN

incidents = Table(
    "incidents",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("summary", Text(), nullable=False),
    Column("reported_by", String(64), nullable=False),
    Column("reported_at", UTCDateTime(), nullable=False),
    Column("detected_at", UTCDateTime(), nullable=True),
    Column("aware_at", UTCDateTime(), nullable=True),
    Column("kinds", String(64), nullable=True),  # comma-separated breach kinds
    Column("scope", long_text(), nullable=True),  # JSON IncidentScope
    Column("key_compromised", Boolean(), nullable=True),  # None: not known
    Column("assessment", long_text(), nullable=True),  # JSON Assessment
    Column("risk", String(8), nullable=True),
    Column("assessed_at", UTCDateTime(), nullable=True),
    Column("closed_at", UTCDateTime(), nullable=True),
    Column("close_reason", Text(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_incidents_state", "state"),
    **MYSQL_TABLE_ARGS,
)

incident_notifications = Table(
    "incident_notifications",
    metadata,
    Column(
        "incident_id",
        String(ID_LEN),
        ForeignKey("incidents.id", name="fk_incident_notifications_incident"),
        primary_key=True,
    ),
    Column("audience", String(80), primary_key=True),  # authority | subjects | client:NAME
    Column("status", String(16), nullable=False),  # required | sent | exempt | not_required
    Column("due_at", UTCDateTime(), nullable=True),
    Column("because", Text(), nullable=True),  # the rule or article that decided it
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("recipient_role", String(120), nullable=True),
    Column("reference", String(120), nullable=True),
    Column("reason", Text(), nullable=True),  # why exempt
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_incident_notifications_due", "status", "due_at"),
    **MYSQL_TABLE_ARGS,
)

incident_actions = Table(
    "incident_actions",
    metadata,
    Column(
        "incident_id",
        String(ID_LEN),
        ForeignKey("incidents.id", name="fk_incident_actions_incident"),
        primary_key=True,
    ),
    Column("number", Integer(), primary_key=True, autoincrement=False),
    Column("title", Text(), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("due", Date(), nullable=True),
    Column("status", String(16), nullable=False),  # open | done | waived
    Column("reason", Text(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)

INCIDENT_TABLES = (incidents, incident_notifications, incident_actions)
