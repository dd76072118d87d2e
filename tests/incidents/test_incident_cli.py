"""``lifecycle incident``: the operator's path from a reported concern to a closed breach.

In-process with Typer's CliRunner over the shop of ``tests.incidents.conftest`` (its orders
hold a high-risk ``payment`` category, its customers a ``tenant`` client column). Most
tests stand the assessment flow in with the engine it runs (``assess_incident``, no
Prefect): what is tested here is what the commands record, print and refuse. One test
runs the real flow on the session's Prefect test server; one runs the CLI in a fresh
interpreter to show that commands running no flow import no Prefect.

Throughout: values are named, never echoed; nothing is recorded after a refusal; no
seeded address reaches the ledger, a draft or the terminal.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from cli.main import app
from config.loader import load_config
from state.incidents import BREACH, CLOSED, DISMISSED, TRIAGE, IncidentRegister
from tests.incidents.conftest import WINDOW, Shop, email, ledger_text

ENV = {"COLUMNS": "200"}
SUMMARY = "Card references of January orders seen on a partner's test server"
ORDERS = [
    "--table",
    "shop.orders",
    "--window",
    f"ordered_at={WINDOW[0].isoformat()}Z..{WINDOW[1].isoformat()}Z",
]


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env=ENV)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.output
    return result


def register() -> IncidentRegister:
    return IncidentRegister(Ledger.open())


def events(incident_id: str) -> list[str]:
    return [e.kind for e in Ledger.open().events(request_id=incident_id)]


def report(summary: str = SUMMARY) -> str:
    done = run("incident", "report", "--summary", summary, "--reported-by", "help-desk")
    assert done.exit_code == 0, done.output
    return done.stdout.splitlines()[0]


def declare(hours_ago: float = 2) -> str:
    iid = report()
    aware = (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat()
    done = run("incident", "declare", iid, "--kind", "confidentiality", "--aware-at", aware)
    assert done.exit_code == 0, done.output
    return iid


@pytest.fixture
def engine_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    """``incident assess`` runs the assessment engine in place of the flow (no Prefect)."""
    import cli.incident_assess
    import flows.incident_assessment
    from engine.incident_assessment import StoreConnectors, assess_incident

    def assessment(incident_id: str) -> None:
        config = load_config()
        with StoreConnectors(config, keyring_from_settings()) as connectors:
            assess_incident(config, register(), incident_id, actor="flow", connectors=connectors)

    monkeypatch.setattr(flows.incident_assessment, "incident_assessment", assessment)
    monkeypatch.setattr(cli.incident_assess, "quiet_prefect", lambda verbose: None)


def test_a_report_prints_its_id_and_keeps_the_summary_out_of_the_ledger(shop: Shop) -> None:
    iid = report()

    assert iid.startswith("inc_") and len(iid) == 20
    found = register().get(iid)
    assert (found.state, found.summary, found.reported_by) == (TRIAGE, SUMMARY, "help-desk")
    assert SUMMARY not in json.dumps([dict(e.detail) for e in Ledger.open().events()])
    shown = run("incident", "report", "--summary", "x", "--reported-by", "ops", "--json")
    assert json.loads(shown.stdout)["incident"]["state"] == TRIAGE


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--summary", "mail from breach.shopper01@example.com"], "--summary: holds an e-mail"),
        (["--summary", "call +44 20 7946 0958 about it"], "--summary: holds a phone number"),
        (["--summary", "ok", "--reported-by", "breach.shopper01@example.com"], "reported by"),
        (["--summary", "ok", "--detected-at", "2026-01-11 10:00"], "--detected-at: give the time"),
    ],
    ids=["e-mail", "phone", "reporter", "naive time"],
)
def test_a_report_holding_personal_data_is_refused_and_nothing_recorded(
    shop: Shop, args: list[str], named: str
) -> None:
    before = Ledger.open().count()
    if "--reported-by" not in args:
        args = [*args, "--reported-by", "help-desk"]

    refused = run("incident", "report", *args)

    assert refused.exit_code == 2, refused.output
    assert named in refused.stderr
    assert "shopper01" not in refused.output and "7946" not in refused.output
    assert refused.stdout == ""
    assert Ledger.open().count() == before and register().list() == []


def test_triage_dismisses_or_declares_and_refuses_moves_out_of_order(shop: Shop) -> None:
    concern = report()
    dismissed = run("incident", "dismiss", concern, "--reason", "a drill by the security team")
    assert dismissed.exit_code == 0, dismissed.output
    assert register().get(concern).state == DISMISSED

    again = run("incident", "declare", concern, "--kind", "integrity")
    assert again.exit_code == 1
    assert again.stderr.startswith(f"error: incident {concern} is 'dismissed': cannot declare")

    iid = report()
    for bad, message in (
        (["--aware-at", "yesterday"], "--aware-at: not a time"),
        (["--aware-at", "2026-01-11T10:00"], "--aware-at: give the time with its zone"),
        (["--aware-at", "2999-01-01T00:00Z"], "aware at: must not be in the future"),
        (["--kind", "theft"], "Invalid value for '--kind'"),
    ):
        refused = run(
            "incident",
            "declare",
            iid,
            *(["--kind", "integrity"] if bad[0] != "--kind" else []),
            *bad,
        )
        assert refused.exit_code == 2, (bad, refused.output)
        assert message in refused.output
    assert register().get(iid).state == TRIAGE
    assert events(iid) == ["incident.reported"]

    declared = run("incident", "declare", iid, "--kind", "confidentiality", "--kind", "integrity")
    assert declared.exit_code == 0, declared.output
    assert "the authority is owed a report by " in declared.stdout
    assert f"next: record what it covers: `lifecycle incident scope {iid}" in declared.stdout
    unknown = run("incident", "show", "inc_00000000000000aa")
    assert unknown.exit_code == 1 and "no incident inc_00000000000000aa" in unknown.stderr
    malformed = run("incident", "show", "breach.shopper01@example.com")
    assert malformed.exit_code == 2 and "shopper01" not in malformed.output


def test_a_scope_from_options_or_a_file_is_checked_and_a_bad_one_records_nothing(
    shop: Shop, tmp_path: Path
) -> None:
    iid = declare()
    for args, message in (
        (["--table", "shop.invoices"], "scope: shop.invoices: table 'invoices' is not declared"),
        (["--table", "shop.customers:phone"], "column 'phone' is not one of the table's"),
        (["--table", "warehouse.orders"], "no store named 'warehouse'"),
        (
            ["--table", "shop.orders", "--window", "ordered_at=2026-01-21..2026-01-11"],
            "--table #1: window: end must be after start",
        ),
        (
            ["--table", "shop.orders", "--window", "2026-01-11"],
            "--window #1: expected [COLUMN=]START..END",
        ),
        (
            ["--table", "shop.orders", "--window", "a..b", "--window", "c..d", "--window", "e..f"],
            "once per part (1), not 3 times",
        ),
        (["--table", "orders"], "--table #1: expected STORE.TABLE"),
        ([], "give the scope"),
    ):
        refused = run("incident", "scope", iid, *args)
        assert refused.exit_code == 2, (args, refused.output)
        assert message in refused.stderr, refused.stderr
    assert register().get(iid).scope is None
    assert "incident.scoped" not in events(iid)

    scope = tmp_path / "scope.yaml"
    scope.write_text(
        "parts:\n"
        "  - {store: shop, table: customers, columns: [email]}\n"
        "  - store: shop\n"
        "    table: orders\n"
        "    window: {start: 2026-01-11T00:00:00Z, end: 2026-01-05T00:00:00Z}\n"
    )
    refused = run("incident", "scope", iid, "--file", str(scope))
    assert refused.exit_code == 2
    assert "scope.yaml:5 parts[1].window: " in refused.stderr  # the file, line and field

    scope.write_text(
        json.dumps({"parts": [{"store": "shop", "table": "customers", "columns": ["email"]}]})
    )
    done = run("incident", "scope", iid, "--file", str(scope), *ORDERS, "--key-compromised", "no")
    assert done.exit_code == 0, done.output
    assert "2 part(s); keys compromised: no" in done.stdout
    recorded = register().get(iid)
    assert recorded.scope is not None and recorded.key_compromised is False
    assert [p.label for p in recorded.scope.parts] == ["shop.customers[email]", "shop.orders"]
    assert recorded.scope.parts[1].window is not None
    assert recorded.scope.parts[1].window.column == "ordered_at"
    assert events(iid).count("incident.scoped") == 1


def test_a_window_on_a_column_up_the_holders_chain(shop: Shop, engine_flow: None) -> None:
    # The orders of the customers created on the first day (every customer, at T0 exactly:
    # the start is inclusive); the window names the customers' column, table-qualified.
    iid = declare()
    day = "2026-01-01T00:00:00Z..2026-01-02T00:00:00Z"
    for args, message in (
        (
            ["--table", "shop.customers", "--window", f"orders.ordered_at={day}"],
            "allowed: customers",
        ),
        (
            ["--table", "shop.orders", "--window", f"customers.joined_at={day}"],
            "window column 'customers.joined_at' is not declared in the timestamps or fields "
            "of table 'customers'",
        ),
        (
            ["--table", "shop.orders", "--window", f"a.b.c={day}"],
            "must be a column or Table.column",
        ),
    ):
        refused = run("incident", "scope", iid, *args)
        assert refused.exit_code == 2, (args, refused.output)
        assert message in refused.stderr, refused.stderr
    assert register().get(iid).scope is None

    done = run(
        "incident",
        "scope",
        iid,
        "--table",
        "shop.orders",
        "--window",
        f"customers.created_at={day}",
    )
    assert done.exit_code == 0, done.output
    assert "shop.orders from " in done.stdout and " by customers.created_at" in done.stdout
    scope = register().get(iid).scope
    assert scope is not None and scope.parts[0].window is not None
    assert scope.parts[0].window.column == "customers.created_at"
    assessed = run("incident", "assess", iid)
    assert assessed.exit_code == 0, assessed.output
    assert f"{len(shop.orders)} records, {len(shop.tenants)} distinct subjects" in assessed.stdout
    draft = run("incident", "draft", iid, "--to", "authority")
    assert "by customers.created_at" in draft.stdout


def assessed_breach() -> str:
    """A breach declared 2 h ago over the orders of the window, assessed (high risk)."""
    iid = declare()
    assert run("incident", "scope", iid, *ORDERS, "--key-compromised", "no").exit_code == 0
    assert run("incident", "assess", iid).exit_code == 0
    return iid


def test_assess_prints_the_impact_and_drafts_fill_in_the_notices(
    shop: Shop, engine_flow: None, tmp_path: Path
) -> None:
    iid = declare()
    assert run("incident", "scope", iid, *ORDERS, "--key-compromised", "no").exit_code == 0

    assessed = run("incident", "assess", iid)

    assert assessed.exit_code == 0, assessed.output
    out = assessed.stdout
    subjects = len(shop.window_customers())
    assert f"{len(shop.window_orders())} records, {subjects} distinct subjects" in out
    assert "(high-risk: payment)" in out and "risk: high" in out
    assert "required by" in out and "next: the affected subjects: " in out
    as_json = json.loads(run("incident", "assess", iid, "--json").stdout)
    assert as_json["assessment"]["subjects"] == subjects
    audiences = {n["audience"]: n for n in as_json["notifications"]}
    assert set(audiences) == {"authority", "subjects", "client:acme", "client:globex"}
    assert all(n["status"] == "required" for n in audiences.values())

    draft = run("incident", "draft", iid, "--to", "authority")
    assert draft.exit_code == 0, draft.output
    assert f"approximately {subjects} (distinct, counted by customer_id)" in draft.stdout
    assert "next: check and complete it" in draft.stderr  # stdout is the draft alone
    written = tmp_path / "drafts" / "subjects.md"
    assert run("incident", "draft", iid, "--to", "subjects", "--out", str(written)).exit_code == 0
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    client = run("incident", "draft", iid, "--to", "client:acme")
    bad = run("incident", "draft", iid, "--to", "everyone")
    assert bad.exit_code == 2 and "--to: give authority, subjects or client:NAME" in bad.stderr

    closing = run("incident", "close", iid)
    assert closing.exit_code == 1
    assert f"error: {iid} cannot close yet: 4 thing(s) left" in closing.stderr
    assert "the authority notification is still required" in closing.stderr
    assert "incident.closed" not in events(iid)
    text = (ledger_text(iid) + out + draft.stdout + client.stdout + written.read_text()).lower()
    assert not [a for a in shop.emails if a in text]


def test_notify_exempt_and_actions_until_the_breach_closes_with_its_timeline(
    shop: Shop, engine_flow: None
) -> None:
    iid = assessed_breach()
    sent = run(
        "incident",
        "notify",
        iid,
        "--to",
        "authority",
        "--recipient",
        "supervisory authority",
        "--reference",
        "DPA-2026-17",
    )
    assert sent.exit_code == 0, sent.output
    assert "recorded as sent" in sent.stdout and "reference DPA-2026-17" in sent.stdout
    twice = run(
        "incident", "notify", iid, "--to", "authority", "--recipient", "x", "--reference", "y"
    )
    assert twice.exit_code == 1 and "already recorded as sent (DPA-2026-17)" in twice.stderr
    leaky = run(
        "incident",
        "exempt",
        iid,
        "--to",
        "subjects",
        "--reason",
        "asked breach.shopper02@example.com",
    )
    assert leaky.exit_code == 2 and "shopper02" not in leaky.output
    for audience, reference in (("subjects", "MAIL-CAMPAIGN-7"), ("client:acme", "ACME-SEC-3")):
        done = run(
            "incident",
            "notify",
            iid,
            "--to",
            audience,
            "--recipient",
            "privacy team",
            "--reference",
            reference,
        )
        assert done.exit_code == 0, done.output
    exempted = run(
        "incident",
        "exempt",
        iid,
        "--to",
        "client:globex",
        "--reason",
        "globex's contract waives notices",
    )
    assert exempted.exit_code == 0, exempted.output

    assert (
        run(
            "incident",
            "action",
            "add",
            iid,
            "--title",
            "Revoke the partner's access",
            "--owner",
            "security",
            "--due",
            "2026-02-01",
        ).exit_code
        == 0
    )
    assert (
        run(
            "incident", "action", "add", iid, "--title", "Review test data use", "--owner", "dpo"
        ).exit_code
        == 0
    )
    refused = run("incident", "close", iid, "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["left"] == [
        "action 1 is still open (mark it done or waived with a reason)",
        "action 2 is still open (mark it done or waived with a reason)",
    ]
    assert run("incident", "action", "done", iid, "1").exit_code == 0
    assert run("incident", "action", "done", iid, "1").exit_code == 1  # already done
    no_reason = run("incident", "action", "waive", iid, "2")
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    waived = run(
        "incident", "action", "waive", iid, "2", "--reason", "covered by the yearly review"
    )
    assert (
        waived.exit_code == 0
        and f"nothing is left: `lifecycle incident close {iid}`" in waived.stdout
    )

    closed = run("incident", "close", iid, "--reason", "partner access revoked")
    assert closed.exit_code == 0, closed.output
    assert register().get(iid).state == CLOSED

    shown = json.loads(run("incident", "show", iid, "--json").stdout)
    assert [e["kind"] for e in shown["timeline"]] == [
        "incident.reported",
        "incident.declared",
        "incident.scoped",
        "incident.assessed",
        "incident.notified",
        "incident.notified",
        "incident.notified",
        "incident.notification-exempt",
        "incident.action-added",
        "incident.action-added",
        "incident.action-done",
        "incident.action-waived",
        "incident.closed",
    ]
    assert shown["left_before_closing"] == [] and shown["next"] == []
    table = run("incident", "show", iid)
    assert "Timeline (ledger, 13 events)" in table.stdout and "notified" in table.stdout
    assert not [a for a in shop.emails if a in (ledger_text(iid) + table.stdout).lower()]
    assert SUMMARY.lower() not in ledger_text(iid)
    assert Ledger.open().verify().ok


def test_the_subjects_package_opens_with_package_open(
    shop: Shop, engine_flow: None, tmp_path: Path
) -> None:
    iid = declare()
    run("incident", "scope", iid, *ORDERS)
    secret = tmp_path / "pass.txt"
    secret.write_text("correct horse battery staple\n")
    early = run("incident", "subjects", iid, "--passphrase-file", str(secret))
    assert early.exit_code == 1 and "assess it first" in early.stderr
    assert run("incident", "subjects", iid).exit_code == 2  # no key, no passphrase
    run("incident", "assess", iid)

    written = run(
        "incident",
        "subjects",
        iid,
        "--passphrase-file",
        str(secret),
        "--out",
        str(tmp_path / "pkgs"),
        "--json",
    )

    assert written.exit_code == 0, written.output
    package = json.loads(written.stdout)
    assert package["subjects"] == len(shop.window_customers())
    opened = run(
        "package",
        "open",
        package["package"],
        "--passphrase-file",
        str(secret),
        "--out",
        str(tmp_path / "open"),
    )
    assert opened.exit_code == 0, opened.output
    assert f"opened affected subjects of incident {iid}" in opened.stdout
    assert "send the subject notice" in opened.stdout
    rows = json.loads((tmp_path / "open" / "tables" / "shop" / "customers.json").read_text())
    assert {r["email"].lower() for r in rows} == {email(c).lower() for c in shop.window_customers()}
    readme = (tmp_path / "open" / "README.txt").read_text()
    assert readme.startswith("Affected subjects of a personal data breach") and iid in readme
    assert not [a for a in shop.emails if a in ledger_text(iid) + written.stdout.lower()]


def test_list_shows_open_incidents_and_exits_3_while_a_deadline_is_missed(
    shop: Shop, engine_flow: None
) -> None:
    empty = run("incident", "list")
    assert empty.exit_code == 0 and "no open incidents" in empty.stdout
    fresh, late = declare(hours_ago=1), declare(hours_ago=30)  # acme's contract: 24 h
    for iid in (fresh, late):
        run("incident", "scope", iid, *ORDERS)
        run("incident", "assess", iid)
    triage = report()

    listed = run("incident", "list", "--json")

    assert listed.exit_code == 3
    payload = json.loads(listed.stdout)
    assert {r["id"] for r in payload["incidents"]} == {fresh, late, triage}
    assert payload["overdue"] == 1
    [row] = [r for r in payload["incidents"] if r["id"] == late]
    assert row["overdue"] == ["client:acme"] and row["state"] == BREACH and row["risk"] == "high"
    assert row["next_deadline"]["audience"] == "client:acme"
    overdue = run("incident", "list", "--overdue")
    assert overdue.exit_code == 3
    assert late in overdue.stdout and fresh not in overdue.stdout
    assert "client:acme overdue" in overdue.stdout

    run(
        "incident",
        "notify",
        late,
        "--to",
        "client:acme",
        "--recipient",
        "acme security",
        "--reference",
        "ACME-1",
    )
    assert run("incident", "list").exit_code == 0
    assert run("incident", "list", "--overdue").stdout.count("inc_") == 0


def test_assess_runs_the_flow_and_a_failure_is_one_line_and_a_log_file(
    prefect: None, shop: Shop, isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli import logfile

    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    iid = declare()
    not_yet = run("incident", "assess", iid)
    assert not_yet.exit_code == 1 and "has no scope yet" in not_yet.stderr
    run("incident", "scope", iid, *ORDERS)
    try:
        assessed = run("incident", "assess", iid)
        assert assessed.exit_code == 0, assessed.output
        assert f"{len(shop.window_customers())} distinct subjects" in assessed.stdout
        assert events(iid)[-1] == "incident.assessed"

        (shop.db).unlink()  # the store's database is gone: the run fails
        failed = run("incident", "assess", iid)
    finally:
        logfile.show_prefect_logs(False)
    assert failed.exit_code == 1
    lines = [x for x in failed.stderr.splitlines() if x.strip()]
    assert lines[0].startswith(f"error: incident assessment of {iid} failed: ")
    assert lines[0].endswith(f"run `lifecycle incident assess {iid}` again")
    assert lines[-1].startswith("details: ") and "logs" in lines[-1]
    assert events(iid).count("incident.assessed") == 1  # the failed run recorded nothing


def test_commands_that_run_no_flow_import_no_prefect(shop: Shop) -> None:
    probe = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from cli.main import app\n"
        "r = CliRunner()\n"
        "help = r.invoke(app, ['incident', '--help'])\n"
        "light = sorted(m for m in sys.modules if m.startswith(('prefect', 'sqlalchemy')))\n"
        "done = r.invoke(app, ['incident', 'report', '--summary', 'x', '--reported-by', 'ops'])\n"
        "listed = r.invoke(app, ['incident', 'list'])\n"
        "heavy = sorted(m for m in sys.modules if m.startswith('prefect'))\n"
        "print(json.dumps([help.exit_code, light, done.exit_code, listed.exit_code, heavy]))\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    help_code, light, report_code, list_code, heavy = json.loads(answer.stdout.splitlines()[-1])
    assert (help_code, report_code, list_code) == (0, 0, 0)
    assert light == [] and heavy == []
