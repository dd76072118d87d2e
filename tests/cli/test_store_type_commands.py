"""Store types add their own commands to ``lifecycle retention`` through the catalog."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from cli import retention_cmd
from connectors import catalog
from connectors.hooks import load_hook

runner = CliRunner()


def add_hello(app: typer.Typer) -> None:
    """A ``retention_commands`` hook (``tests.cli.test_store_type_commands:add_hello``)."""

    @app.command("hello")
    def hello() -> None:
        typer.echo("hello from a store type")


def test_the_retention_group_has_the_catalogs_commands() -> None:
    names = {command.name for command in retention_cmd.app.registered_commands}
    assert names == {"explain", "s3-lifecycle"}


def test_a_types_commands_are_added_from_its_catalog_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    specs = tuple(
        dataclasses.replace(spec, retention_commands="tests.cli.test_store_type_commands:add_hello")
        if spec.name == "sql"
        else spec
        for spec in catalog.STORE_TYPES
    )
    monkeypatch.setattr(catalog, "STORE_TYPES", specs)
    group = typer.Typer(no_args_is_help=True)

    retention_cmd._add_store_type_commands(group)

    assert sorted(str(c.name) for c in group.registered_commands) == ["hello", "s3-lifecycle"]
    result = runner.invoke(group, ["hello"])
    assert result.exit_code == 0
    assert result.stdout == "hello from a store type\n"


def test_every_hook_of_the_catalog_resolves_to_a_function() -> None:
    refs = [
        ref
        for spec in catalog.STORE_TYPES
        for ref in (spec.doctor, spec.retention_commands)
        if ref is not None
    ]
    assert refs  # SQL's doctor, S3's s3-lifecycle
    for ref in refs:
        assert callable(load_hook(ref))


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("connectors.sql.doctor", ValueError),
        ("connectors.sql.doctor:", ValueError),
        (":doctor_report", ValueError),
        ("connectors.nope:f", ImportError),
        ("connectors.sql.doctor:nope", AttributeError),
        ("connectors.sql.doctor:_MAX_NAME", TypeError),
    ],
)
def test_a_bad_hook_reference_fails_clearly(ref: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        load_hook(ref)
