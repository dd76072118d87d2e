"""${ENV} interpolation, and secrets that never leave the models unmasked."""

from __future__ import annotations

import re
from typing import get_args

import pytest
from pydantic import BaseModel, SecretStr

from config import schema
from config.loader import load_config
from config.yaml_lines import interpolate
from connectors.s3.config import S3Store
from connectors.sql.config import SqlStore
from tests.config.conftest import MakeConfig

PASSWORD = "s3cr3t-Pa55"
ENV = {"HOST": "db.example.com", "EMPTY": "", "USER": "app"}


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("postgresql://${USER}@${HOST}/crm", "postgresql://app@db.example.com/crm"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),  # empty counts as unset for a default
        ("${HOST:-fallback}", "db.example.com"),
        ("${MISSING:-}", ""),
        ("${EMPTY}", ""),  # set but empty, no default: stays empty
        ("price: $5 and $${HOST}", "price: $5 and ${HOST}"),  # $${ is a literal ${
        ("no references", "no references"),
    ],
)
def test_interpolate(text: str, result: str) -> None:
    assert interpolate(text, ENV) == (result, [])


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("${MISSING}", "environment variable MISSING is not set"),
        ("${1BAD}", "malformed reference: expected ${NAME} or ${NAME:-default}"),
        ("${HOST", "unclosed '${' (write '$${' for a literal '${')"),
    ],
)
def test_interpolate_errors(text: str, error: str) -> None:
    assert interpolate(text, ENV)[1] == [error]


def test_environment_reaches_the_models(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LC_TEST_REGION", "eu-west-1")
    monkeypatch.setenv("LC_TEST_DEADLINE", "21")
    config_dir = make_config(
        ("inventory.yaml", "region: eu-central-1\n    rds", "region: ${LC_TEST_REGION}\n    rds"),
        ("policy.yaml", "deadline_days: 30", "deadline_days: ${LC_TEST_DEADLINE}"),
    )
    loaded = load_config(config_dir)
    assert loaded.store("crm").region == "eu-west-1"
    assert loaded.policy.requests.deadline_days == 21  # "21" from the env, validated as int


def test_keys_and_yes_no_are_not_reinterpreted(make_config: MakeConfig) -> None:
    # YAML 1.1 would read NO as false: the country code of Norway must stay a string.
    config_dir = make_config(
        (
            "policy.yaml",
            "{country: CH, regions: [eu-central-2], decided: 2000-07-26}",
            "{country: NO, regions: [eu-central-2], decided: 2000-07-26}",
        )
    )
    transfers = load_config(config_dir).policy.transfers
    assert transfers is not None and transfers.adequacy[0].country == "NO"


def _secret_config(make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch) -> MakeConfig:
    monkeypatch.setenv("LC_TEST_DB_PASSWORD", PASSWORD)
    monkeypatch.setenv("LIFECYCLE_S3_ENDPOINT", f"http://minio:{PASSWORD}@127.0.0.1:9000")
    return make_config


def test_secrets_are_masked_in_repr_and_str(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = _secret_config(make_config, monkeypatch)(
        (
            "inventory.yaml",
            '"sqlite:///${LIFECYCLE_DATA_DIR}/crm.db"',
            '"postgresql://app:${LC_TEST_DB_PASSWORD}@db.example.com/crm"',
        )
    )
    loaded = load_config(config_dir)
    crm, files = loaded.store("crm"), loaded.store("files")
    assert isinstance(crm, SqlStore) and isinstance(files, S3Store)
    assert crm.url.get_secret_value() == f"postgresql://app:{PASSWORD}@db.example.com/crm"
    for text in (repr(loaded), str(loaded), repr(crm), str(crm), repr(files), str(files)):
        assert PASSWORD not in text
    masked = loaded.masked_dict()
    assert masked["inventory"]["stores"][0]["url"] == (
        "postgresql+psycopg://app:***@db.example.com/crm"
    )
    assert masked["inventory"]["stores"][1]["endpoint_url"] == "http://minio:***@127.0.0.1:9000"
    assert PASSWORD not in str(masked)


def test_invalid_url_problem_does_not_echo_the_url(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.errors import ConfigError

    config_dir = _secret_config(make_config, monkeypatch)(
        (
            "inventory.yaml",
            '"sqlite:///${LIFECYCLE_DATA_DIR}/crm.db"',
            '"not a url ${LC_TEST_DB_PASSWORD}"',
        )
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config_dir)
    (problem,) = raised.value.problems
    assert problem.endswith("stores[0].url: not a valid SQLAlchemy database URL")
    assert PASSWORD not in problem


_SECRET_NAME = re.compile(r"password|secret|token|(^|_)(api|access|private)_?key$|url$")


def test_secret_looking_fields_are_secret_str() -> None:
    """Guards future schema fields: anything named like a credential or URL is a SecretStr."""
    named = [*vars(schema).values(), SqlStore, S3Store]  # config.schema re-exports no store type
    models = [m for m in named if isinstance(m, type) and issubclass(m, BaseModel)]
    checked = 0
    for model in models:
        for name, field in model.model_fields.items():
            if _SECRET_NAME.search(name):
                checked += 1
                assert SecretStr in (field.annotation, *get_args(field.annotation)), (
                    f"{model.__name__}.{name} must be a SecretStr"
                )
    assert checked >= 2  # SqlStore.url and S3Store.endpoint_url at least
