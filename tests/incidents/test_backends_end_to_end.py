"""An incident over a SQL store on every backend and an S3 bucket (moto), end to end.

One breach, three parts: the orders of a time window (table scope), the customers who
have a phone number (column scope) and the ticket attachments under ``tickets/`` (bucket
prefix, subjects by the key template ``tickets/{customer_id}/``). The assessment engine
counts each part exactly against the seeded truth (computed here, never asked of a store),
unions the subjects across SQL and S3 by ``customer_id``, and the affected-subjects
package decrypts to exactly those customers' addresses. What must not count: orders at
the window's end, customers without a phone, objects outside the prefix or matching no
template, other people.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

import boto3
import pytest
import sqlalchemy as sa
from moto import mock_aws

from audit.keystore import keyring_from_settings
from config.loader import load_config
from config.settings import get_settings
from core.engines import make_engine
from core.package import PassphraseRecipient, read_package
from engine.incident_assessment import StoreConnectors, assess_incident, subjects_package
from incidents.rules import AUTHORITY, NOT_REQUIRED, REQUIRED, SUBJECTS
from incidents.scope import IncidentScope, ScopePart, TimeWindow
from tests.incidents.conftest import ACTOR, ledger_text, register

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION: Final = "eu-central-1"
BUCKET = "breach-tickets"
T0 = datetime(2026, 3, 1)
WINDOW = (T0 + timedelta(days=5), T0 + timedelta(days=12))
CUSTOMERS = 30

POLICY = """\
categories:
  - {name: contact, description: "Contact details"}
  - {name: orders, description: "What was ordered"}
  - {name: support, description: "Ticket attachments", high_risk: true}
requests: {deadline_days: 30, approval: {required_for: []}}
"""

INVENTORY = """\
stores:
  - name: shop
    type: sql
    url: "{url}"
    region: eu-central-1
    tables:
      - name: customers
        identity: [{{column: email, kind: email, case_insensitive: true}}]
        derives: [{{column: id, as: customer_id}}]
        fields: {{email: [contact], phone: [contact]}}
      - name: orders
        fields: {{item: [orders]}}
        timestamps: {{created: ordered_at}}
  - name: files
    type: s3
    region: eu-central-1
    buckets:
      - name: {bucket}
        categories: [support]
        key_templates: ["tickets/{{customer_id}}/"]
"""


def address(i: int) -> str:
    return f"Breach.Backend{i:02}@Example.com"


def phone_of(i: int) -> str | None:
    return f"+49 30 9018{i:04}" if i % 3 == 0 else None  # every third customer


def orders() -> list[tuple[int, int, datetime]]:
    """(order id, customer, ordered at): one order every 12 hours, customers in turn;
    the one at exactly the window's end is outside it."""
    return [(n, (n * 7) % CUSTOMERS + 1, T0 + timedelta(hours=12 * n)) for n in range(60)]


TICKETED = (2, 3, 5, 8, 13, 21)  # customers with attachments under tickets/


@pytest.fixture
def world(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Client]:
    """The shop on ``db_url``, the bucket in moto, the configuration in use."""
    md = sa.MetaData()
    customers = sa.Table(
        "customers",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(120), nullable=False),
        sa.Column("phone", sa.String(40)),
    )
    order_rows = sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("item", sa.String(40)),
        sa.Column("ordered_at", sa.DateTime, nullable=False),
    )
    engine = make_engine(db_url)
    try:
        md.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                customers.insert(),
                [
                    {"id": i, "email": address(i), "phone": phone_of(i)}
                    for i in range(1, CUSTOMERS + 1)
                ],
            )
            conn.execute(
                order_rows.insert(),
                [
                    {"id": n, "customer_id": c, "item": "sku", "ordered_at": t}
                    for n, c, t in orders()
                ],
            )
    finally:
        engine.dispose()
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "inventory.yaml").write_text(INVENTORY.format(url=db_url, bucket=BUCKET))
    (folder / "policy.yaml").write_text(POLICY)
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with mock_aws():
        s3: S3Client = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        for c in TICKETED:
            for n in range(2):
                s3.put_object(Bucket=BUCKET, Key=f"tickets/{c}/{n}.pdf", Body=b"x")
        s3.put_object(Bucket=BUCKET, Key="tickets/readme.txt", Body=b"x")  # no subject
        s3.put_object(Bucket=BUCKET, Key="exports/29/all.csv", Body=b"x")  # outside the prefix
        yield s3


def test_three_kinds_of_part_are_counted_exactly_and_the_package_holds_exactly_them(
    world: S3Client, tmp_path: Path
) -> None:
    start, end = WINDOW
    in_window = [(n, c) for n, c, t in orders() if start <= t < end]
    window_customers = {c for _, c in in_window}
    with_phone = {i for i in range(1, CUSTOMERS + 1) if phone_of(i)}
    affected = window_customers | with_phone | set(TICKETED)
    assert len(affected) < CUSTOMERS  # some customers are not affected at all
    scope = IncidentScope(
        parts=(
            ScopePart(
                store="shop",
                table="orders",
                window=TimeWindow(start=start.replace(tzinfo=UTC), end=end.replace(tzinfo=UTC)),
            ),
            ScopePart(store="shop", table="customers", columns=("phone",)),
            ScopePart(store="files", bucket=BUCKET, prefix="tickets/"),
        )
    )
    reg = register()
    concern = reg.report("Backup share exposed", reported_by="help-desk", actor=ACTOR)
    reg.declare(concern.id, kinds=["confidentiality"], actor=ACTOR)
    reg.set_scope(concern.id, scope, key_compromised=True, actor=ACTOR)

    config = load_config()
    with StoreConnectors(config, keyring_from_settings()) as connectors:
        outcome = assess_incident(
            config, register(), concern.id, actor=ACTOR, connectors=connectors
        )
    a = outcome.assessment
    counted = {p.label: (p.records, p.subjects, p.identity) for p in a.parts}
    assert counted == {
        "shop.orders": (len(in_window), len(window_customers), "customer_id"),
        "shop.customers[phone]": (len(with_phone), len(with_phone), "customer_id"),
        f"files:s3://{BUCKET}/tickets/": (2 * len(TICKETED) + 1, len(TICKETED), "customer_id"),
    }
    assert a.records == len(in_window) + len(with_phone) + 2 * len(TICKETED) + 1
    assert a.subjects == len(affected)  # the union across stores, not the sum
    assert a.high_risk_categories == ("support",) and a.risk == "high"
    due = {n.audience: n.status for n in register().notifications(concern.id)}
    assert due[AUTHORITY] == REQUIRED and due[SUBJECTS] == REQUIRED  # readable: key taken

    secret = b"a passphrase for the notification team"
    info = subjects_package(
        config, register(), concern.id, PassphraseRecipient(secret), tmp_path / "out", ACTOR
    )
    _, records = read_package(Path(info.location), secret)
    found = [r["data"] for r in records]
    assert sorted(str(d["email"]).lower() for d in found) == sorted(
        address(c).lower() for c in affected
    )
    assert sorted(int(d["customer_id"]) for d in found) == sorted(affected)
    text = ledger_text(concern.id)
    assert not any(address(i).lower() in text.lower() for i in range(1, CUSTOMERS + 1))


def test_an_encrypted_bucket_whose_key_was_not_taken_exempts_the_subject_notice(
    world: S3Client,
) -> None:
    # Only the bucket is in scope: encrypted at rest (SSE-KMS, our key), key not taken,
    # so the data was unintelligible: under the default risk rules that is not high risk,
    # and no subject notice is due (Art. 34(1), 34(3)(a)). Unencrypted, it is.
    scope = IncidentScope(parts=(ScopePart(store="files", bucket=BUCKET, prefix="tickets/"),))
    statuses = {}
    for encrypted in (False, True):
        if encrypted:
            world.put_bucket_encryption(
                Bucket=BUCKET,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": "arn:aws:kms:eu-central-1:111122223333:key/1",
                            }
                        }
                    ]
                },
            )
        reg = register()
        concern = reg.report("Snapshot copied", reported_by="help-desk", actor=ACTOR)
        reg.declare(concern.id, kinds=["confidentiality"], actor=ACTOR)
        reg.set_scope(concern.id, scope, key_compromised=False, actor=ACTOR)
        config = load_config()
        with StoreConnectors(config, keyring_from_settings()) as connectors:
            a = assess_incident(
                config, register(), concern.id, actor=ACTOR, connectors=connectors
            ).assessment
        assert (a.records, a.subjects) == (2 * len(TICKETED) + 1, len(TICKETED))
        assert a.parts[0].at_rest.encrypted is encrypted and a.unintelligible is encrypted
        # The default rules: high risk only for readable high-risk data.
        assert a.risk == ("medium" if encrypted else "high")
        statuses[encrypted] = {n.audience: n.status for n in register().notifications(concern.id)}
    assert statuses[False][SUBJECTS] == REQUIRED
    assert statuses[True][SUBJECTS] == NOT_REQUIRED
    assert statuses[True][AUTHORITY] == REQUIRED  # the authority is told either way
