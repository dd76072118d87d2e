"""Exit codes are the same for every command (``cli.output.EXIT_CODES``, the README):
every usage or validation error exits 2, whichever command it is."""

from __future__ import annotations

import pytest
from typer import _click as click
from typer.testing import CliRunner

from cli.lazy_group import load
from cli.main import _COMMANDS, app
from cli.output import EXIT_CODES


def _leaves() -> list[list[str]]:
    """Every runnable command, as the words that name it (``request submit``, ``sweep``)."""
    found: list[list[str]] = []

    def walk(words: list[str], command: click.Command) -> None:
        subcommands = getattr(command, "commands", None)  # a group
        if subcommands:
            for name, sub in subcommands.items():
                walk([*words, name], sub)
        else:
            found.append(words)

    for name, spec in _COMMANDS.items():
        walk([name], load(name, spec))
    return found


@pytest.mark.parametrize("words", _leaves(), ids=" ".join)
def test_an_unknown_option_exits_2_on_every_command(words: list[str]) -> None:
    result = CliRunner().invoke(app, [*words, "--no-such-option"])
    assert result.exit_code == 2, result.output
    assert "No such option" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["request", "submit", "--kind", "erasure", "--identity", "no-equals-sign"],
        ["request", "submit", "--approve", "--reviewer", "dpo", "--kind", "erasure"],
        ["request", "submit", "--resume", "req_00000000000000aa", "--kind", "access"],
        ["request", "extend", "req_00000000000000aa", "--days", "0", "--reason", "x"],
        ["request", "cancel", "req_00000000000000aa", "--reason", "asked by a@example.com"],
        ["request", "submit", "--kind", "erasure", "--identity", "nickname=x"],
        ["request", "submit", "--kind", "access", "--identity", "email=a@example.com"],
        ["sweep", "--batch-size", "0"],
    ],
    ids=lambda args: " ".join(args[:3]),
)
def test_our_validation_errors_exit_2(args: list[str]) -> None:
    # A Prefect API named (none is reached): no command here may start one to say "no".
    env = {"COLUMNS": "200", "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "a@example.com" not in result.stderr  # values are named, never echoed


def test_the_help_lists_the_exit_codes() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Exit codes" in result.output
    for code, meaning in EXIT_CODES.items():
        assert f"{code}  {meaning.split(':')[0]}" in result.output
