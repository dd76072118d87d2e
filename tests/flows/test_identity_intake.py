"""Intake checks identity values by their kind's format before anything is registered.

Through the CLI, a malformed identity or corrected identity is a usage error (exit 2) named
by its option, without the value, and the request register stays empty; through
``engine.intake.submit`` (shared with the deployment form) the value registered is the
normalized one. No flow runs here, so no Prefect server is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.identity_values import IdentityValueError
from engine.intake import submit
from engine.request_support import request_context
from tests.flows.support import REQUESTER

Configure = Callable[..., Path]
ENV = {"COLUMNS": "200"}


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # submit sets Prefect's log level in os.environ; undo it after each test.
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["request", "submit", *args], env=ENV)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--kind", "erasure", "--identity", "email=not-an-email"],
            "--identity email: not a valid e-mail address (the domain part is missing)",
        ),
        (
            ["--kind", "erasure", "--identity", "email=[redacted]"],
            "--identity email: a masked value (erasure token), not an identity",
        ),
        (
            ["--kind", "erasure", "--identity", "customer_number=psn_" + "ab" * 16],
            "--identity customer_number: a masked value (erasure token), not an identity",
        ),
        (
            [
                "--kind",
                "rectification",
                "--identity",
                "email=robin.quill@example.com",
                "--set",
                "customers.email=robin.quill-at-example.com",
            ],
            "--set customers.email: not a valid e-mail address (the domain part is missing)",
        ),
    ],
)
def test_bad_identity_values_exit_2_and_register_nothing(
    configure: Configure, args: list[str], message: str
) -> None:
    configure(auto_approve=True)
    code, out, err = invoke(*args)

    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"error: {message}"]
    for fragment in ("robin", "example", "not-an-email", "[redacted]", "psn_"):
        assert fragment not in (out + err).lower()
    assert request_context().register.list() == []


def test_submit_registers_normalized_identities_and_corrections(configure: Configure) -> None:
    configure(auto_approve=True)
    ctx = request_context()
    record = submit(
        ctx,
        kind="rectification",
        identity={"email": "  Robin.Quill@EXAMPLE.com ", "customer_number": " C-1001 "},
        requested_by=REQUESTER,
        changes={"customers.email": "Robin.Quill@Example.ORG", "customers.full_name": " R "},
    )

    assert ctx.register.open_identity(record.id) == {
        "email": "Robin.Quill@example.com",  # local part as given, domain normalized
        "customer_number": "C-1001",
    }
    changes = ctx.register.open_changes(record.id)
    assert sorted(changes.values()) == sorted(
        ['["customers.email", "Robin.Quill@example.org"]', '["customers.full_name", " R "]']
    )


def test_submit_refuses_before_registering(configure: Configure) -> None:
    # The deployment form's path: the same submit, the same refusal, nothing registered.
    configure(auto_approve=True)
    ctx = request_context()
    with pytest.raises(IdentityValueError) as caught:
        submit(ctx, kind="erasure", identity={"email": "robin@quill@"}, requested_by=REQUESTER)
    assert str(caught.value).startswith("identity 'email': not a valid e-mail address")
    assert "robin" not in str(caught.value)
    assert ctx.register.list() == []
