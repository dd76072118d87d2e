"""Read inventory.yaml and policy.yaml into a checked ``LifecycleConfig``, or explain why not.

Loading runs in phases and collects every problem instead of stopping at the first:
YAML parsing (syntax, duplicate keys, ``${ENV}`` references), schema validation of each
file (pydantic), then cross-reference checks within and between the files. The result is
either the configuration or one ``ConfigError`` whose ``problems`` are the
``file:line path: message`` lines, sorted by file and line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from config.crossref import check
from config.problems import Problem, Reporter, validation_problems
from config.schema.inventory import Inventory
from config.schema.model import LifecycleConfig
from config.schema.policy import Policy
from config.settings import get_settings
from config.yaml_lines import YamlDocument, read_yaml
from core.errors import ConfigError

INVENTORY_FILE = "inventory.yaml"
POLICY_FILE = "policy.yaml"

_ModelT = TypeVar("_ModelT", bound=BaseModel)


def interpolation_env() -> dict[str, str]:
    """The variables ``${NAME}`` may use: the environment, with ``LIFECYCLE_DATA_DIR``.

    ``LIFECYCLE_DATA_DIR`` is always the settings' data folder (``var/`` in the working
    directory unless the variable names another; ``~`` expanded), so the demo's SQLite URLs
    work without any environment set and name the folder the rest of the product uses.
    """
    env = dict(os.environ)
    env["LIFECYCLE_DATA_DIR"] = str(get_settings().data_dir)
    return env


def load_config(config_dir: Path | None = None) -> LifecycleConfig:
    """Load and check the configuration in ``config_dir`` (default: settings.config_dir).

    Raises ConfigError listing every problem found; never returns a partial configuration.
    """
    directory = config_dir if config_dir is not None else get_settings().config_dir
    if not directory.is_dir():
        raise ConfigError(f"config dir {directory} does not exist")
    missing = [
        f"config dir {directory} has no {name}"
        for name in (INVENTORY_FILE, POLICY_FILE)
        if not (directory / name).is_file()
    ]
    if missing:
        raise ConfigError(missing[0], missing)

    env = interpolation_env()
    problems: list[Problem] = []
    inventory_doc = read_yaml(directory / INVENTORY_FILE, env)
    policy_doc = read_yaml(directory / POLICY_FILE, env)
    inventory_report = Reporter(inventory_doc.file, inventory_doc.lines, problems)
    policy_report = Reporter(policy_doc.file, policy_doc.lines, problems)
    inventory = _validate(Inventory, inventory_doc, inventory_report)
    policy = _validate(Policy, policy_doc, policy_report)
    check(inventory, policy, inventory_report, policy_report)

    problems = _without_follow_ups(problems, [*inventory_doc.problems, *policy_doc.problems])
    if problems:
        lines = [str(p) for p in sorted(problems, key=Problem.sort_key)]
        raise ConfigError(f"invalid configuration in {directory}: {len(lines)} problem(s)", lines)
    if inventory is None or policy is None:  # unreachable: a failed file reports a problem
        raise ConfigError(f"invalid configuration in {directory}")
    return LifecycleConfig(inventory=inventory, policy=policy, source=directory)


def _validate(model: type[_ModelT], doc: YamlDocument, report: Reporter) -> _ModelT | None:
    """The validated model of ``doc``, or None after reporting why it is invalid."""
    if not doc.parsed:
        return None
    data = {} if doc.data is None else doc.data
    try:
        return model.model_validate(data)
    except ValidationError as e:
        validation_problems(e, model, data, report)
        return None


def _without_follow_ups(problems: list[Problem], reading: list[Problem]) -> list[Problem]:
    """All problems, minus later ones about a value that could not be read in the first place.

    An unset ``${VAR}`` leaves an empty string behind; saying it is also an invalid URL
    or an unknown store would only be noise.
    """
    unreadable = {(p.file, p.path) for p in reading if p.path}
    return [*reading, *(p for p in problems if (p.file, p.path) not in unreadable)]
