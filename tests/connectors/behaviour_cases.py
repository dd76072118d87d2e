"""One adapter per connector for the behavioural suite (``test_behaviour.py``).

Each case seeds a small store holding two subjects (Alice, the subject of every request,
and Bob, the other person) plus a little data of nobody in particular, and tells the
suite what it needs to judge a connector from the outside:

- ``identities(who)``: the identities a request for ``who`` carries (``nobody``: a subject
  the store has never seen);
- ``snapshot()``: everything the store holds, as ``(target, key) -> content``, where the key
  is the connector's own key form (row key, ``(object key, version id, is marker)``,
  provider reference), so findings and batches can be compared with it directly;
- ``owner(item, content)``: whose data an item is, known from the seed;
- ``erased(item, content)``: what one of Alice's items must look like after her erasure
  (``GONE``, or the masked content);
- ``exported(record)``: the stored item an access record stands for;
- the sweep, rectification and deferral details of the store type.

Every address is at example.com; data is tiny so the suite stays fast.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import boto3
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from config.schema import Policy
from connectors.base import Connector, ExportItem, Identities, Key
from connectors.processor.config import ProcessorStore
from connectors.processor.connector import ProcessorConnector
from connectors.s3.config import S3Store
from connectors.s3.connector import S3Connector
from connectors.sql.config import SqlStore
from connectors.sql.connector import SqlConnector
from connectors.sql.masks import REDACTED
from core.engines import make_engine
from core.keys import KeyRing
from demo.processor_server import StubProvider, StubRecord
from retention.targets import Clock, Condition, SweepTarget
from tests.connectors.processor.conftest import store_data
from tests.connectors.s3.conftest import REGION, create_bucket
from tests.connectors.sql.conftest import normalize

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Who = Literal["alice", "bob", "nobody"]
Item = tuple[str, Key]
"""(target, key): one row, object version or provider record."""
Snapshot = dict[Item, Any]

KEYS = KeyRing.from_master(b"b" * 32)
GONE: Final = object()
"""``erased``: the item must not be in the store any more."""


@dataclass(frozen=True)
class SweepCase:
    """A retention sweep over part of the seeded store, and what it must remove."""

    target: SweepTarget
    today: date
    expired: frozenset[Item]


class Case(ABC):
    """A seeded store behind its connector (see the module docstring)."""

    id: str
    connector: Connector
    capabilities: frozenset[str]
    """The optional capabilities the store type declares ("rectification", "sweeping")."""
    located: Mapping[Who, Mapping[str, int]]
    """Expected ``Findings.counts()`` per subject."""
    deferrable: tuple[str, ...]
    """Targets whose erasure steps the deferral test defers (together: what stays must not
    reference what goes)."""
    rectify_changes: Mapping[str, str] = {}
    bad_changes: Mapping[str, str] = {}
    """A correction the store must refuse before writing anything."""

    @abstractmethod
    def identities(self, who: Who) -> Identities: ...

    @abstractmethod
    def snapshot(self) -> Snapshot: ...

    @abstractmethod
    def owner(self, item: Item, content: Any) -> Who | None: ...

    @abstractmethod
    def erased(self, item: Item, content: Any) -> Any: ...

    @abstractmethod
    def exported(self, record: ExportItem) -> Item: ...

    def is_record(self, item: Item) -> bool:
        """Whether an access package holds a record for the item (a delete marker: none)."""
        return True

    def rectified(self, item: Item, content: Any) -> Any:
        """One of Alice's items after ``rectify_changes`` (unchanged if they do not name it)."""
        return content

    def sweep_case(self) -> SweepCase | None:
        return None

    def close(self) -> None:
        self.connector.close()

    # -- derived expectations ----------------------------------------------------------

    def items_of(self, snapshot: Snapshot, who: Who) -> Snapshot:
        return {i: c for i, c in snapshot.items() if self.owner(i, c) == who}

    def after_erasure(self, before: Snapshot) -> Snapshot:
        """``before`` with Alice's items erased and everything else as it was."""
        after: Snapshot = {}
        for item, content in before.items():
            new = self.erased(item, content) if self.owner(item, content) == "alice" else content
            if new is not GONE:
                after[item] = new
        return after


# -- SQL ---------------------------------------------------------------------------------

SQL_NOW = datetime(2026, 3, 15, 12, 0, 0)
SQL_TODAY = SQL_NOW.date()
OLD = SQL_NOW - timedelta(days=200)
RECENT = SQL_NOW - timedelta(days=10)
SQL_CUSTOMER = {1: "alice", 2: "bob"}


def sql_metadata() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "customers",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(120), nullable=False, unique=True),
        sa.Column("full_name", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("shipping_address", sa.String(200)),
        sa.Column("placed_at", sa.DateTime, nullable=False),
        sa.Index("ix_orders_customer_id", "customer_id"),
    )
    sa.Table(
        "invoices",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id")),
        sa.Column("billing_name", sa.String(40), nullable=False),
        sa.Column("amount_cents", sa.Integer, nullable=False),
        sa.Index("ix_invoices_customer_id", "customer_id"),
    )
    sa.Table(
        "login_events",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("ip_address", sa.String(45), nullable=False),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Index("ix_login_events_customer_id", "customer_id"),
    )
    return md


SQL_TABLES: list[dict[str, Any]] = [
    {
        "name": "customers",
        "identity": [{"column": "email", "kind": "email", "case_insensitive": True}],
        "derives": [{"column": "id", "as": "customer_id"}],
        "fields": {"email": ["contact"], "full_name": ["contact"]},
        "timestamps": {"created": "created_at"},
    },
    {"name": "orders", "fields": {"shipping_address": ["contact"]}},
    {"name": "invoices", "fields": {"billing_name": ["billing"]}},
    {
        "name": "login_events",
        "fields": {"ip_address": ["telemetry"]},
        "timestamps": {"created": "occurred_at"},
    },
]

SQL_POLICY: dict[str, Any] = {
    "categories": [{"name": n} for n in ("contact", "billing", "telemetry")],
    "requests": {
        "erasure": {
            "default": {"action": "delete"},
            "categories": {
                "billing": {"action": "mask", "mask": "redact", "reason": "tax law: 10 years"}
            },
        }
    },
}


def sql_rows() -> dict[str, list[dict[str, Any]]]:
    """Alice (1, stored in mixed case) and Bob (2); a walk-in invoice belongs to nobody."""
    return {
        "customers": [
            {"id": 1, "email": "ALICE@example.com", "full_name": "Alice Example",
             "created_at": OLD},
            {"id": 2, "email": "bob@example.com", "full_name": "Bob Other", "created_at": OLD},
        ],
        "orders": [
            {"id": 101, "customer_id": 1, "shipping_address": "1 Example Street",
             "placed_at": OLD},
            {"id": 102, "customer_id": 1, "shipping_address": "1 Example Street",
             "placed_at": RECENT},
            {"id": 201, "customer_id": 2, "shipping_address": "2 Example Street",
             "placed_at": RECENT},
        ],
        "invoices": [
            {"id": 101, "customer_id": 1, "billing_name": "Alice Example", "amount_cents": 1999},
            {"id": 201, "customer_id": 2, "billing_name": "Bob Other", "amount_cents": 2999},
            {"id": 900, "customer_id": None, "billing_name": "Walk-in", "amount_cents": 500},
        ],
        "login_events": [
            {"id": 101, "customer_id": 1, "ip_address": "192.0.2.1", "occurred_at": OLD},
            {"id": 102, "customer_id": 1, "ip_address": "192.0.2.2", "occurred_at": RECENT},
            {"id": 201, "customer_id": 2, "ip_address": "198.51.100.1", "occurred_at": OLD},
            {"id": 202, "customer_id": 2, "ip_address": "198.51.100.2", "occurred_at": RECENT},
        ],
    }  # fmt: skip


class SqlCase(Case):
    """A four-table store: rows deleted, invoices masked (billing kept for tax law)."""

    capabilities = frozenset({"rectification", "sweeping", "batch locating"})
    located = {
        "alice": {"customers": 1, "orders": 2, "invoices": 1, "login_events": 2},
        "bob": {"customers": 1, "orders": 1, "invoices": 1, "login_events": 2},
        "nobody": {},
    }
    deferrable = ("login_events", "customers")
    rectify_changes = {"customers.full_name": "Alice Smith"}
    bad_changes = {"customers.full_name": "A" * 81}  # VARCHAR(80)

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        self.metadata = sql_metadata()
        self.metadata.drop_all(self.engine)  # a server database is reused between cases
        self.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            for table, rows in sql_rows().items():
                conn.execute(self.metadata.tables[table].insert(), rows)
        store = SqlStore.model_validate(
            {"type": "sql", "name": "crm", "url": url, "region": "eu-central-1",
             "tables": SQL_TABLES}
        )  # fmt: skip
        self.connector = SqlConnector(
            store, Policy.model_validate(SQL_POLICY), keys=KEYS, batch_size=2
        )
        self.id = f"sql-{self.engine.dialect.name}"

    def identities(self, who: Who) -> Identities:
        return {"email": frozenset({f"{who}@example.com"})}

    def snapshot(self) -> Snapshot:
        out: Snapshot = {}
        with self.engine.connect() as conn:
            for name, table in self.metadata.tables.items():
                for row in conn.execute(sa.select(table)).mappings():
                    content = {k: normalize(v) for k, v in row.items()}
                    out[(name, (content["id"],))] = content
        return out

    def owner(self, item: Item, content: Any) -> Who | None:
        cid = content["id"] if item[0] == "customers" else content["customer_id"]
        who = SQL_CUSTOMER.get(cid)
        return "alice" if who == "alice" else "bob" if who == "bob" else None

    def erased(self, item: Item, content: Any) -> Any:
        if item[0] == "invoices":  # billing masked, the reference to the deleted customer cleared
            return {**content, "billing_name": REDACTED, "customer_id": None}
        return GONE

    def exported(self, record: ExportItem) -> Item:
        return (record.target, (record.data["id"],))

    def rectified(self, item: Item, content: Any) -> Any:
        if item[0] == "customers":
            return {**content, "full_name": "Alice Smith"}
        return content

    def sweep_case(self) -> SweepCase:
        condition = Condition(
            "logins-90d", "P90D", 90, Clock("occurred_at"), SQL_NOW - timedelta(90)
        )
        target = SweepTarget(
            id="crm.login_events:delete",
            kind="sql",
            store="crm",
            label="crm.login_events",
            action="delete",
            conditions=(condition,),
            table="login_events",
        )
        expired = frozenset({("login_events", (101,)), ("login_events", (201,))})
        return SweepCase(target, SQL_TODAY, expired)

    def close(self) -> None:
        super().close()
        self.engine.dispose()


# -- S3 ----------------------------------------------------------------------------------

TICKETS = "tickets-eu"
EXPORTS = "exports-eu"
S3_CUSTOMER_ID = {"alice": "1", "bob": "11", "nobody": "999"}  # 11: a prefix trap for 1


@contextmanager
def written(days_ago: float) -> Iterator[None]:
    """Objects written inside get a LastModified ``days_ago`` days back (moto's clock)."""
    import moto.s3.models as moto_s3
    from moto.core.utils import utcnow

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(moto_s3, "utcnow", lambda: utcnow() - timedelta(days=days_ago))
        yield


class S3Case(Case):
    """Two versioned buckets: tickets by customer id, exports by email address.

    Alice: ``tickets/1/a.txt`` (two old versions), ``tickets/1/b.txt`` (recent),
    ``tickets/1/c.txt`` (an old version under an old delete marker) and an export; Bob
    (customer 11, whose prefix starts like Alice's): an old and a recent ticket, an export.
    """

    capabilities = frozenset({"sweeping"})
    located = {
        "alice": {TICKETS: 5, EXPORTS: 1},
        "bob": {TICKETS: 2, EXPORTS: 1},
        "nobody": {},
    }
    deferrable = (EXPORTS,)

    def __init__(self) -> None:
        self.client: S3Client = boto3.client("s3", region_name=REGION)
        for bucket in (TICKETS, EXPORTS):
            create_bucket(self.client, bucket)
        self._put(TICKETS, "tickets/1/a.txt", 40, "alice ticket a v0")
        self._put(TICKETS, "tickets/1/a.txt", 40, "alice ticket a v1")
        self._put(TICKETS, "tickets/1/c.txt", 40, "alice ticket c")
        with written(40):
            self.client.delete_object(Bucket=TICKETS, Key="tickets/1/c.txt")
        self._put(TICKETS, "tickets/11/a.txt", 40, "bob ticket a")
        self._put(TICKETS, "tickets/1/b.txt", 1, "alice ticket b")
        self._put(TICKETS, "tickets/11/b.txt", 1, "bob ticket b")
        self._put(EXPORTS, "exports/alice@example.com/data.json", 1, '{"who": "alice"}')
        self._put(EXPORTS, "exports/bob@example.com/data.json", 1, '{"who": "bob"}')
        store = S3Store.model_validate(
            {
                "type": "s3",
                "name": "files",
                "region": REGION,
                "buckets": [
                    {"name": TICKETS, "categories": ["support"],
                     "key_templates": ["tickets/{customer_id}/"]},
                    {"name": EXPORTS, "categories": ["support"],
                     "key_templates": ["exports/{email}/"]},
                ],
            }
        )  # fmt: skip
        policy = Policy.model_validate({"categories": [{"name": "support"}], "requests": {}})
        self.connector = S3Connector(
            store, policy, keys=KEYS, client=self.client, retry_base_delay=0.0
        )
        self.id = "s3"

    def _put(self, bucket: str, key: str, days_ago: float, body: str) -> None:
        with written(days_ago):
            self.client.put_object(Bucket=bucket, Key=key, Body=body.encode())

    def deletes_sent(self) -> list[Item]:
        """(bucket, (object key, version id)) of every DeleteObjects entry sent from now on."""
        sent: list[Item] = []

        def record(params: dict[str, Any], **_: Any) -> None:
            for entry in params["Delete"]["Objects"]:
                sent.append((params["Bucket"], (entry["Key"], entry.get("VersionId"))))

        self.client.meta.events.register("provide-client-params.s3.DeleteObjects", record)
        return sent

    def identities(self, who: Who) -> Identities:
        return {
            "email": frozenset({f"{who}@example.com"}),
            "customer_id": frozenset({S3_CUSTOMER_ID[who]}),
        }

    def snapshot(self) -> Snapshot:
        out: Snapshot = {}
        for bucket in (TICKETS, EXPORTS):
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for v in page.get("Versions", []):
                    got = self.client.get_object(
                        Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"]
                    )
                    out[(bucket, (v["Key"], v["VersionId"], False))] = got["Body"].read()
                for m in page.get("DeleteMarkers", []):
                    out[(bucket, (m["Key"], m["VersionId"], True))] = None
        return out

    def owner(self, item: Item, content: Any) -> Who | None:
        key = str(item[1][0])
        for who in ("alice", "bob"):
            if key.startswith((f"tickets/{S3_CUSTOMER_ID[who]}/", f"exports/{who}@example.com/")):
                return "alice" if who == "alice" else "bob"
        return None

    def erased(self, item: Item, content: Any) -> Any:
        return GONE  # every version and delete marker

    def exported(self, record: ExportItem) -> Item:
        data = record.data
        return (record.target, (data["key"], data["version_id"], False))

    def is_record(self, item: Item) -> bool:
        return not item[1][2]

    def sweep_case(self) -> SweepCase:
        now = datetime.now(UTC).replace(tzinfo=None)
        condition = Condition("tickets-20d", "P20D", 20, Clock(None), now - timedelta(days=20))
        target = SweepTarget(
            id=f"files/{TICKETS}/tickets/",
            kind="s3",
            store="files",
            label=f"files/{TICKETS}/tickets/",
            action="delete",
            conditions=(condition,),
            bucket=TICKETS,
            prefix="tickets/",
        )
        old = ("tickets/1/a.txt", "tickets/1/c.txt", "tickets/11/a.txt")
        expired = frozenset(i for i in self.snapshot() if i[0] == TICKETS and i[1][0] in old)
        return SweepCase(target, now.date(), expired)


# -- processor ---------------------------------------------------------------------------

PROVIDER = "Example Mail"
PROCESSOR_REFS = {"rec-1": "alice", "rec-2": "alice", "rec-3": "bob"}


def stub_records() -> list[StubRecord]:
    """Alice's two records, Bob's one, and one of someone else (never touched)."""
    alice, bob = "alice@example.com", "bob@example.com"
    return [
        StubRecord("rec-1", {"email": alice}, {"email": alice, "full_name": "Alice A"}),
        StubRecord("rec-2", {"email": alice}, {"email": alice, "list": "offers"}),
        StubRecord("rec-3", {"email": bob}, {"email": bob, "full_name": "Bob B"}),
        StubRecord("rec-4", {"email": "carol@example.com"}, {"email": "carol@example.com"}),
    ]


class ProcessorCase(Case):
    """The stub provider over signed HTTP on 127.0.0.1 (the processor's own tests' setup)."""

    capabilities = frozenset({"rectification"})
    located = {"alice": {PROVIDER: 2}, "bob": {PROVIDER: 1}, "nobody": {}}
    deferrable = (PROVIDER,)
    rectify_changes = {"full_name": "Alice Smith"}
    bad_changes = {"full_name": "A" * 21}  # declared max_length 20

    def __init__(self, stub: StubProvider) -> None:
        self.stub = stub
        store = ProcessorStore.model_validate(
            store_data(endpoint=stub.url, provider=PROVIDER, timeout=2.0)
        )
        policy = Policy.model_validate({"categories": [{"name": "contact"}], "requests": {}})
        self.connector = ProcessorConnector(store, policy, keys=KEYS, sleep=lambda _s: None)
        self.id = "processor"

    def identities(self, who: Who) -> Identities:
        return {"email": frozenset({f"{who}@example.com"})}

    def snapshot(self) -> Snapshot:
        with self.stub.lock:
            return {
                (PROVIDER, (ref,)): copy.deepcopy({"identities": r.identities, "data": r.data})
                for ref, r in self.stub.records.items()
            }

    def owner(self, item: Item, content: Any) -> Who | None:
        who = PROCESSOR_REFS.get(str(item[1][0]))
        return "alice" if who == "alice" else "bob" if who == "bob" else None

    def erased(self, item: Item, content: Any) -> Any:
        return GONE

    def exported(self, record: ExportItem) -> Item:
        return (record.target, (record.data["ref"],))

    def rectified(self, item: Item, content: Any) -> Any:
        return {**content, "data": {**content["data"], "full_name": "Alice Smith"}}

    def erasure_requests(self) -> list[tuple[str, list[str]]]:
        """(idempotency key, references) of every erasure the provider took."""
        with self.stub.lock:
            return [
                (k, list(r.refs)) for k, r in self.stub.requests.items() if r.kind == "erasures"
            ]
