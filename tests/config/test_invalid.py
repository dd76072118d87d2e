"""Invalid configurations: every problem is reported with its exact file, line and path.

Each case edits the demo config and lists the problems expected, each located by an
anchor: the text whose line the problem must point at.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from config.durations import FORMS
from config.loader import load_config
from connectors.sql.config import SqlStore
from core.errors import ConfigError
from tests.config.conftest import DEMO_FILES, Edit, MakeConfig, line_of

INV, POL = "inventory.yaml", "policy.yaml"


@dataclass(frozen=True)
class Expected:
    file: str
    anchor: str  # the problem's line is the line where this text first occurs
    what: str  # "path: message"; "{first}" stands for the line of the ``first`` anchor
    first: str = ""


@dataclass(frozen=True)
class Case:
    id: str
    edits: tuple[Edit, ...]
    expected: tuple[Expected, ...]


CASES = [
    Case(
        "unknown key (typo) with suggestion",
        (
            (
                INV,
                "    region: eu-central-1\n    rds_instance",
                "    regoin: eu-central-1\n    rds_instance",
            ),
        ),
        (
            Expected(INV, "  - name: crm", "stores[0].region: required field is missing"),
            Expected(INV, "regoin:", "stores[0].regoin: unknown field (did you mean 'region'?)"),
        ),
    ),
    Case(
        "bad duration",
        ((POL, "age: 90d", "age: 90 dayz"),),
        (Expected(POL, "age: 90 dayz", f"retention[0].age: invalid duration '90 dayz' ({FORMS})"),),
    ),
    Case(
        "unknown store in a retention rule",
        ((POL, "store: crm\n    table: login_events", "store: crn\n    table: login_events"),),
        (
            Expected(
                POL, "store: crn", "retention[0].store: unknown store 'crn' (did you mean 'crm'?)"
            ),
        ),
    ),
    Case(
        "unknown table in a retention rule",
        ((POL, "table: login_events", "table: login_event"),),
        (
            Expected(
                POL,
                "table: login_event",
                "retention[0].table: unknown table 'login_event' in store 'crm' "
                "(did you mean 'login_events'?)",
            ),
        ),
    ),
    Case(
        "unknown category in table fields",
        ((INV, "email: [contact]", "email: [contcat]"),),
        (
            Expected(
                INV,
                "email: [contcat]",
                "stores[0].tables[0].fields.email[0]: unknown category 'contcat' "
                "(did you mean 'contact'?)",
            ),
        ),
    ),
    Case(
        "unknown category of a bucket",
        ((INV, "categories: [support]", "categories: [tickets]"),),
        (
            Expected(
                INV,
                "categories: [tickets]",
                "stores[1].buckets[0].categories[0]: unknown category 'tickets'",
            ),
        ),
    ),
    Case(
        "duplicate table name",
        ((INV, "- name: orders\n", "- name: invoices\n"),),
        (
            Expected(
                INV,
                "- name: invoices\n        description: Kept",
                "stores[0].tables[3].name: duplicate table 'invoices' in store 'crm' "
                "(first declared at line {first})",
                first="- name: invoices",
            ),
        ),
    ),
    Case(
        "duplicate store name breaks references to the renamed store",
        ((INV, "- name: files", "- name: crm"),),
        (
            Expected(
                INV,
                "- name: crm\n    type: s3",
                "stores[1].name: duplicate store 'crm' (first declared at line {first})",
                first="- name: crm",
            ),
            Expected(POL, "store: files", "retention[3].store: unknown store 'files'"),
            Expected(POL, "{store: files", "legal_holds[1].scope.store: unknown store 'files'"),
        ),
    ),
    Case(
        "reference column count mismatch",
        ((INV, "table: customers, to_columns: [id]", "table: customers, to_columns: [id, email]"),),
        (
            Expected(
                INV,
                "{columns: [customer_id], table: customers",
                "stores[0].tables[4].references[0].to_columns: has 2 column(s) but columns has 1",
            ),
        ),
    ),
    Case(
        "reference to an unknown table",
        ((INV, "table: customers, to_columns: [id]", "table: clients, to_columns: [id]"),),
        (
            Expected(
                INV,
                "table: clients",
                "stores[0].tables[4].references[0].table: unknown table 'clients' in store 'crm'",
            ),
        ),
    ),
    Case(
        "unset environment variable without default",
        ((INV, "${LIFECYCLE_DATA_DIR}/crm.db", "${LC_TEST_UNSET_DIR}/crm.db"),),
        (
            Expected(
                INV, "url:", "stores[0].url: environment variable LC_TEST_UNSET_DIR is not set"
            ),
        ),
    ),
    Case(
        "anonymize without fields",
        ((POL, "    fields: [email, full_name, phone]\n", ""),),
        (
            Expected(
                POL,
                "- id: customers-anonymize-3y",
                "retention[2].fields: anonymize needs fields: the columns to anonymize",
            ),
        ),
    ),
    Case(
        "anonymize a field the table does not declare",
        ((POL, "fields: [email, full_name, phone]", "fields: [email, full_name, birth_date]"),),
        (
            Expected(
                POL,
                "fields: [email",
                "retention[2].fields[2]: 'birth_date' is not declared in the fields of "
                "crm.customers",
            ),
        ),
    ),
    Case(
        "scc without expiry",
        ((POL, ", expires: 2027-06-30}", "}"),),
        (
            Expected(
                POL,
                "safeguard: scc",
                "transfers.categories.contact[1].expires: safeguard scc needs expires "
                "(when to review the clauses)",
            ),
        ),
    ),
    Case(
        "YAML syntax error",
        ((POL, "  deadline_days: 30", "  deadline_days: [30"),),
        (
            Expected(
                POL, "  max_deadline_days", "invalid YAML: expected ',' or ']', but got '<scalar>'"
            ),
        ),
    ),
    Case(
        "duplicate retention id",
        ((POL, "id: support-tickets-2y", "id: login-events-90d"),),
        (
            Expected(
                POL,
                "id: login-events-90d\n    store: crm\n    table: support",
                "retention[1].id: duplicate retention rule id 'login-events-90d' "
                "(first declared at line {first})",
                first="- id: login-events-90d",
            ),
        ),
    ),
    Case(
        "deadline longer than the maximum",
        (
            (POL, "deadline_days: 30", "deadline_days: 60"),
            (POL, "max_deadline_days: 90", "max_deadline_days: 45"),
        ),
        (
            Expected(
                POL,
                "deadline_days: 60",
                "requests.deadline_days: 60 is more than max_deadline_days (45)",
            ),
        ),
    ),
    Case(
        "maximum deadline beyond the legal 90 days",
        ((POL, "max_deadline_days: 90", "max_deadline_days: 120"),),
        (
            Expected(
                POL,
                "max_deadline_days",
                "requests.max_deadline_days: must be at most 90 (one month, extendable by two "
                "further months)",
            ),
        ),
    ),
    Case(
        "key template placeholder that is no identity",
        ((INV, "tickets/{customer_id}/", "tickets/{client_id}/"),),
        (
            Expected(
                INV,
                "tickets/{client_id}/",
                "stores[1].buckets[0].key_templates[0]: placeholder {client_id} is neither an "
                "identity kind nor a derived identity name (known: customer_id, "
                "customer_number, email)",
            ),
        ),
    ),
    Case(
        "s3 clock on a table target",
        ((POL, "measured_from: {column: occurred_at}", "measured_from: {s3: last_modified}"),),
        (
            Expected(
                POL,
                "measured_from: {s3: last_modified}\n    action: delete\n\n  - id: support",
                "retention[0].measured_from.s3: s3 last_modified is for bucket targets; "
                "this rule targets a table",
            ),
        ),
    ),
    Case(
        "ambiguous retention target",
        (
            (
                POL,
                "table: login_events\n",
                "table: login_events\n    bucket: demo-ticket-attachments\n",
            ),
        ),
        (
            Expected(
                POL,
                "bucket: demo-ticket-attachments\n    age: 90d",
                "retention[0].bucket: a rule targets a table or a bucket, not both",
            ),
        ),
    ),
    Case(
        "transfer destination neither group nor region",
        ((POL, "destination: us-east-1", "destination: USA"),),
        (
            Expected(
                POL,
                "destination: USA",
                "transfers.categories.contact[1].destination: 'USA' is neither a declared "
                "region group nor a region",
            ),
        ),
    ),
    Case(
        "unknown store type",
        ((INV, "type: s3", "type: gcs"),),
        (
            Expected(
                INV,
                "- name: files",
                "stores[1]: unknown type 'gcs' (expected one of 'sql', 's3', 'processor')",
            ),
        ),
    ),
    Case(
        "legal hold table on an s3 store",
        ((POL, "{store: crm, table: invoices}", "{store: files, table: invoices}"),),
        (
            Expected(
                POL,
                "{store: files, table: invoices}",
                "legal_holds[0].scope.table: store 'files' is an s3 store; "
                "a table needs a sql store",
            ),
        ),
    ),
    Case(
        "unknown erasure category",
        ((POL, "billing: {action: mask", "biling: {action: mask"),),
        (
            Expected(
                POL,
                "biling:",
                "requests.erasure.categories.biling: unknown category 'biling' "
                "(did you mean 'billing'?)",
            ),
        ),
    ),
    Case(
        "mask action without a reason",
        ((POL, ', reason: "invoices kept 10 years (tax law)"', ""),),
        (
            Expected(
                POL,
                "billing: {action: mask",
                "requests.erasure.categories.billing.reason: action mask needs a reason "
                "(the legal ground for keeping)",
            ),
        ),
    ),
    Case(
        "duplicate YAML key",
        ((POL, "deadline_days: 30  ", "deadline_days: 30\n  deadline_days: 31  "),),
        (
            Expected(
                POL,
                "deadline_days: 31",
                "requests.deadline_days: duplicate key (first at line {first})",
                first="deadline_days: 30",
            ),
        ),
    ),
]

# Further semantic checks: one case each, located the same way.
CASES += [
    Case(
        "hold that ends before it starts",
        ((POL, "ends: 2025-09-30", "ends: 2025-01-31"),),
        (Expected(POL, "ends: 2025-01-31", "legal_holds[0].ends: ends before it starts"),),
    ),
    Case(
        "empty hold scope",
        ((POL, "scope: {store: crm, table: invoices}", "scope: {}"),),
        (
            Expected(
                POL,
                "scope: {}",
                "legal_holds[0].scope: empty scope would hold everything; name a store, table, "
                "bucket, tag or subject",
            ),
        ),
    ),
    Case(
        "category target with a column clock",
        ((POL, "    store: crm\n    table: support_tickets\n", "    category: support\n"),),
        (
            Expected(
                POL,
                "measured_from: {column: created_at}",
                "retention[1].measured_from: a category target is measured from each table's "
                "timestamps.created and each object's last_modified; remove measured_from",
            ),
        ),
    ),
    Case(
        "category target over a table without a created timestamp",
        (
            (
                POL,
                "    store: crm\n    table: support_tickets\n    age: 2y\n"
                "    measured_from: {column: created_at}\n",
                "    category: order_history\n    age: 2y\n",
            ),
        ),
        (
            Expected(
                POL,
                "category: order_history",
                "retention[1].category: table crm.order_items holds order_history data but "
                "declares no timestamps.created to measure from",
            ),
        ),
    ),
    Case(
        "bucket without key templates or subject tag",
        ((INV, '        key_templates: ["contracts/{customer_id}/"]\n', ""),),
        (
            Expected(
                INV,
                "- name: demo-legal-archive",
                "stores[1].buckets[1].key_templates: a bucket needs key_templates or "
                "subject_tag to find a subject's objects",
            ),
        ),
    ),
    Case(
        "home safeguard outside home",
        (
            (
                POL,
                "{destination: eu-west-2, safeguard: adequacy}",
                "{destination: eu-west-2, safeguard: home}",
            ),
        ),
        (
            Expected(
                POL,
                "{destination: eu-west-2",
                "transfers.categories.support[1].safeguard: eu-west-2 is outside home (EEA)",
            ),
        ),
    ),
    Case(
        "adequacy without a covering decision",
        (
            (
                POL,
                "{destination: eu-west-2, safeguard: adequacy}",
                "{destination: us-west-2, safeguard: adequacy}",
            ),
        ),
        (
            Expected(
                POL,
                "{destination: us-west-2",
                "transfers.categories.support[1].safeguard: no adequacy decision covers us-west-2",
            ),
        ),
    ),
    Case(
        "approval required but nobody can approve",
        (
            (POL, "auto_approve: true", "auto_approve: false"),
            (POL, "approvers: [privacy-officer]", "approvers: []"),
        ),
        (
            Expected(
                POL,
                "approvers: []",
                "requests.approval.approvers: approval is required for erasure but no approvers "
                "are named",
            ),
        ),
    ),
    Case(
        "mask kind on a delete rule",
        ((POL, "default: {action: delete}", "default: {action: delete, mask: hash}"),),
        (
            Expected(
                POL,
                "default: {action",
                "requests.erasure.default.mask: mask is only used with action mask",
            ),
        ),
    ),
    Case(
        "prefix on a table target",
        ((POL, "table: login_events\n", "table: login_events\n    prefix: logs/\n"),),
        (
            Expected(
                POL,
                "prefix: logs/",
                "retention[0].prefix: prefix narrows a bucket target, but no bucket is given",
            ),
        ),
    ),
    Case(
        "clock via an unknown table",
        (
            (
                POL,
                "measured_from: {column: occurred_at}",
                "measured_from: {column: contract_ended_at, via: [{columns: [customer_id], "
                "table: customer, to_columns: [id]}]}",
            ),
        ),
        (
            Expected(
                POL,
                "{columns: [customer_id], table: customer,",
                "retention[0].measured_from.via[0].table: unknown table 'customer' in store "
                "'crm' (did you mean 'customers'?)",
            ),
        ),
    ),
    Case(
        "store region that is not a region",
        (
            (
                INV,
                "    region: eu-central-1\n    rds_instance",
                "    region: europe\n    rds_instance",
            ),
        ),
        (
            Expected(
                INV,
                "region: europe",
                "stores[0].region: must be a region name such as eu-central-1",
            ),
        ),
    ),
    Case(
        "bucket target on a sql store",
        ((POL, "store: files\n    bucket: demo-ticket", "store: crm\n    bucket: demo-ticket"),),
        (
            Expected(
                POL,
                "bucket: demo-ticket-attachments\n    prefix",
                "retention[3].bucket: store 'crm' is a sql store; "
                "a bucket target needs an s3 store",
            ),
        ),
    ),
    Case(
        "table target on an s3 store",
        ((POL, "store: crm\n    table: login_events", "store: files\n    table: login_events"),),
        (
            Expected(
                POL,
                "table: login_events",
                "retention[0].table: store 'files' is an s3 store; "
                "a table target needs a sql store",
            ),
        ),
    ),
    Case(
        "duplicate bucket name",
        ((INV, "- name: demo-legal-archive", "- name: demo-ticket-attachments"),),
        (
            Expected(
                INV,
                "name: demo-ticket-attachments\n        description",
                "stores[1].buckets[1].name: duplicate bucket 'demo-ticket-attachments' "
                "(first declared at line {first})",
                first="- name: demo-ticket-attachments",
            ),
            Expected(
                POL,
                "{store: files, bucket: demo-legal-archive}",
                "legal_holds[1].scope.bucket: unknown bucket 'demo-legal-archive' in store 'files'",
            ),
        ),
    ),
    Case(
        "legal hold on a bucket no store declares",
        ((POL, "{store: files, bucket: demo-legal-archive}", "{bucket: demo-legal-archiv}"),),
        (
            Expected(
                POL,
                "{bucket: demo-legal-archiv}",
                "legal_holds[1].scope.bucket: unknown bucket 'demo-legal-archiv' "
                "(did you mean 'demo-legal-archive'?)",
            ),
        ),
    ),
    Case(
        "anonymize on a bucket target",
        (
            (
                POL,
                "measured_from: {s3: last_modified}\n    action: delete",
                "measured_from: {s3: last_modified}\n    action: anonymize",
            ),
        ),
        (
            Expected(
                POL,
                "action: anonymize\n\nlegal",
                "retention[3].action: anonymize needs a table target (store and table)",
            ),
        ),
    ),
]


def _problems(config_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(config_dir)
    return raised.value.problems


def _render(config_dir: Path, expected: Expected) -> str:
    text = (config_dir / expected.file).read_text(encoding="utf-8")
    if expected.first:
        expected = replace(
            expected, what=expected.what.replace("{first}", str(line_of(text, expected.first)))
        )
    separator = ":" if expected.what.startswith("invalid YAML") else ""
    return f"{expected.file}:{line_of(text, expected.anchor)}{separator} {expected.what}"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_invalid_config_reports_exact_problems(
    case: Case, make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LC_TEST_UNSET_DIR", raising=False)
    config_dir = make_config(*case.edits)
    expected = [_render(config_dir, e) for e in case.expected]
    assert _problems(config_dir) == expected


def test_all_problems_in_both_files_are_reported_sorted(make_config: MakeConfig) -> None:
    config_dir = make_config(
        (
            POL,
            "age: 2y\n    measured_from: {column: created_at}",
            "age: 2 years\n    measured_from: {column: created_at}",
        ),
        (POL, "age: 90d", "age: 0d"),
        (INV, "require_tls: false", "require_tls: maybe"),
        (INV, "type: s3", "type: s3\n    colour: blue"),
        (POL, "auto_approve: true", "auto_approve: true\n    approver: [dpo]"),
    )
    problems = _problems(config_dir)
    inventory = (config_dir / INV).read_text(encoding="utf-8")
    policy = (config_dir / POL).read_text(encoding="utf-8")
    assert problems == [
        f"inventory.yaml:{line_of(inventory, 'require_tls')} stores[0].require_tls: "
        "input should be a valid boolean, unable to interpret input",
        f"inventory.yaml:{line_of(inventory, 'colour')} stores[1].colour: unknown field "
        "(expected one of: type, name, description, retention_audit, region, endpoint_url, "
        "buckets, ignore)",
        f"policy.yaml:{line_of(policy, 'approver:')} requests.approval.approver: unknown field "
        "(did you mean 'approvers'?)",
        f"policy.yaml:{line_of(policy, 'age: 0d')} retention[0].age: invalid duration '0d': "
        "must be longer than zero",
        f"policy.yaml:{line_of(policy, 'age: 2 years')} retention[1].age: invalid duration "
        f"'2 years' ({FORMS})",
    ]


def test_cross_reference_problems_in_both_files_are_all_reported(make_config: MakeConfig) -> None:
    config_dir = make_config(
        (POL, "bucket: demo-legal-archive}", "bucket: demo-legal-archiv}"),
        (INV, "ip_address: [telemetry]", "ip_address: [telemetry, tracking]"),
        (POL, "table: support_tickets", "table: tickets"),
    )
    problems = _problems(config_dir)
    assert [p.split(" ", 1)[1] for p in problems] == [
        "stores[0].tables[5].fields.ip_address[1]: unknown category 'tracking'",
        "retention[1].table: unknown table 'tickets' in store 'crm'",
        "legal_holds[1].scope.bucket: unknown bucket 'demo-legal-archiv' in store 'files' "
        "(did you mean 'demo-legal-archive'?)",
    ]


def test_missing_file_is_named(tmp_path: Path, make_config: MakeConfig) -> None:
    config_dir = make_config()
    (config_dir / "inventory.yaml").unlink()
    assert _problems(config_dir) == [f"config dir {config_dir} has no inventory.yaml"]
    missing = tmp_path / "nowhere"
    assert _problems(missing) == [f"config dir {missing} does not exist"]


def test_raw_identity_in_a_hold_is_refused_without_echoing_it(make_config: MakeConfig) -> None:
    config_dir = make_config(
        (POL, "{store: files, bucket: demo-legal-archive}", "{subject: jane.doe@example.com}")
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config_dir)
    policy = (config_dir / POL).read_text(encoding="utf-8")
    assert raised.value.problems == [
        f"policy.yaml:{line_of(policy, '{subject:')} legal_holds[1].scope.subject: must be a "
        "psn_ pseudonym (psn_ and 32 hex digits), never a raw identity"
    ]
    assert "jane.doe" not in repr(raised.value) + str(raised.value.problems)


def test_a_pseudonym_subject_is_accepted(make_config: MakeConfig) -> None:
    subject = "psn_" + "0123456789abcdef" * 2
    config_dir = make_config(
        (POL, "{store: files, bucket: demo-legal-archive}", f"{{subject: {subject}}}")
    )
    assert load_config(config_dir).policy.legal_holds[1].scope.subject == subject


def test_empty_files_report_their_required_sections(make_config: MakeConfig) -> None:
    config_dir = make_config()
    for name in DEMO_FILES:
        (config_dir / name).write_text("# nothing yet\n", encoding="utf-8")
    assert _problems(config_dir) == [
        "inventory.yaml:1 stores: required field is missing",
        "policy.yaml:1 categories: required field is missing",
        "policy.yaml:1 requests: required field is missing",
    ]


TLS_URL = 'url: "sqlite:///${LIFECYCLE_DATA_DIR}/crm.db"'


def test_require_tls_refuses_a_url_that_allows_plain_connections(make_config: MakeConfig) -> None:
    """The password in the URL is not echoed; the option that is missing is named."""
    config_dir = make_config(
        (INV, TLS_URL, 'url: "postgresql+psycopg://app:s3cret@db.example.com/crm?sslmode=prefer"'),
        (INV, "require_tls: false", "require_tls: true"),
    )
    problems = _problems(config_dir)
    inventory = (config_dir / INV).read_text(encoding="utf-8")
    assert problems == [
        f"inventory.yaml:{line_of(inventory, 'require_tls')} stores[0].require_tls: is true, "
        "but the url lets the driver connect without TLS (sslmode=prefer); add "
        "sslmode=require (PostgreSQL) or ssl_ca=... (MariaDB/MySQL) to the url"
    ]
    assert "s3cret" not in " ".join(problems)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://app@db.example.com/crm?sslmode=verify-full",
        "mysql+pymysql://app@db.example.com/crm?ssl_ca=/etc/ssl/ca.pem",
        "sqlite:///${LIFECYCLE_DATA_DIR}/crm.db",  # a local file: nothing to encrypt
    ],
)
def test_require_tls_accepts_urls_that_enforce_it_or_stay_local(
    make_config: MakeConfig, url: str
) -> None:
    config_dir = make_config(
        (INV, TLS_URL, f'url: "{url}"'), (INV, "require_tls: false", "require_tls: true")
    )
    assert load_config(config_dir).stores_of(SqlStore)[0].require_tls is True
