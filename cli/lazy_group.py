"""The ``lifecycle`` command's top level: each command's module is imported when it runs.

``lifecycle --help`` and a usage error then import no command module (no configuration
models, no SQLAlchemy or Alembic, never Prefect): each top-level command is a stub
carrying its one-line help until it is invoked, when ``resolve_command`` swaps in the real
command built from its module's Typer app (or function).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer import _click as click  # the click Typer vendors: its classes are the ones used
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class Lazy:
    """A top-level command: its module, the attribute there (a Typer app for a group, a
    function for a single command) and its one-line help."""

    module: str
    attribute: str
    help: str


class _Stub(TyperCommand):
    """Stands for a command whose module is not imported yet: a name and its help."""


def load(name: str, spec: Lazy) -> click.Command:
    """The real command ``name`` from ``spec``'s module."""
    target = getattr(importlib.import_module(spec.module), spec.attribute)
    if isinstance(target, typer.Typer):
        command: click.Command = typer.main.get_group(target)  # a group, as add_typer made it
    else:  # a single command: a function
        holder = typer.Typer(add_completion=False)  # as the top level has none
        holder.command(name=name, help=spec.help)(target)
        command = typer.main.get_command(holder)
    command.name = name
    command.help = spec.help
    return command


def lazy_group(commands: dict[str, Lazy]) -> type[TyperGroup]:
    """A ``TyperGroup`` class (for ``typer.Typer(cls=...)``) holding ``commands`` lazily."""

    class LazyGroup(TyperGroup):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for name, spec in commands.items():
                self.commands.setdefault(name, _Stub(name=name, help=spec.help))

        def resolve_command(
            self, ctx: click.Context, args: list[str]
        ) -> tuple[str | None, click.Command | None, list[str]]:
            name = args[0] if args else None
            if name in commands and isinstance(self.commands.get(name), _Stub):
                self.commands[name] = load(name, commands[name])
            return super().resolve_command(ctx, args)

    return LazyGroup
