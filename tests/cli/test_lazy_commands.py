"""``lifecycle --help`` and usage errors answer without importing any command's module.

Each top-level command is loaded when it runs (``cli.lazy_group``); the listing must still
name every command with its help, and every command must still run and show its own help.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from cli.main import _COMMANDS, app

HEAVY = ("prefect", "sqlalchemy", "alembic", "boto3", "config.loader", "cli.")
"""What ``--help`` must not import: frameworks, the configuration models, command modules."""

_PROBE = """
import json, sys
from typer.testing import CliRunner
from cli.main import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.startswith({heavy!r}) and m not in ("cli.main",
    "cli.lazy_group", "cli.output"))
print(json.dumps({{"exit": result.exit_code, "heavy": heavy, "out": result.output}}))
"""


def _probe(*args: str) -> dict[str, object]:
    """Run the CLI with ``args`` in a fresh interpreter; what it imported besides."""
    code = _PROBE.format(heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_help_lists_every_command_and_imports_none_of_them() -> None:
    answer = _probe("--help")
    assert answer["exit"] == 0
    assert answer["heavy"] == []
    out = str(answer["out"])
    for name, spec in _COMMANDS.items():
        assert name in out
        assert spec.help.split()[0] in out


def test_an_unknown_command_is_refused_without_importing_any() -> None:
    answer = _probe("requests")  # a typo of "request"
    assert answer["exit"] == 2
    assert answer["heavy"] == []
    assert "No such command 'requests'" in str(answer["out"])
    assert "Did you mean 'request'" in str(answer["out"])


def _eager() -> typer.Typer:
    """The same commands registered the usual way, every module imported up front."""
    eager = typer.Typer(name="lifecycle", no_args_is_help=True, add_completion=False)
    for name, spec in _COMMANDS.items():
        target = getattr(importlib.import_module(spec.module), spec.attribute)
        if isinstance(target, typer.Typer):
            eager.add_typer(target, name=name, help=spec.help)
        else:
            eager.command(name=name, help=spec.help)(target)
    return eager


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_every_command_behaves_as_if_registered_up_front(name: str) -> None:
    """Same help, subcommands and usage errors as with ``add_typer`` (a group stays a
    group even with one subcommand: ``lifecycle transfers check``)."""
    runner = CliRunner()
    for args in ([name, "--help"], [name, "--no-such-option"]):
        lazy, eager = runner.invoke(app, args), runner.invoke(_eager(), args)
        assert (lazy.exit_code, lazy.output) == (eager.exit_code, eager.output)
    assert _COMMANDS[name].help.split()[0] in runner.invoke(app, [name, "--help"]).output
