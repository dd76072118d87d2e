"""``safe_url``: passwords hidden wherever a URL carries them (userinfo and query)."""

from __future__ import annotations

import pytest

from core.engines import safe_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:s3cret@h/db", "postgresql+psycopg://u:***@h/db"),
        ("postgresql://u@h/db?password=s3cret", "postgresql+psycopg://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=require&sslpassword=s3cret",
            "postgresql+psycopg://u@h/db?sslmode=require&sslpassword=***",
        ),
        (
            "mysql://u@h/db?PASS=s3cret&charset=utf8mb4",
            "mysql+pymysql://u@h/db?PASS=***&charset=utf8mb4",
        ),
        (
            "postgresql://u:pw@h/db?Api_Key=s3cret&auth_token=s3cret&client_secret=s3cret",
            "postgresql+psycopg://u:***@h/db?Api_Key=***&auth_token=***&client_secret=***",
        ),
        ("postgresql://u@h/db?x=a&x=b", "postgresql+psycopg://u@h/db?x=a&x=b"),
        ("http://minio:s3cret@127.0.0.1:9000", "http://minio:***@127.0.0.1:9000"),
        ("sqlite:////tmp/crm.db", "sqlite:////tmp/crm.db"),
    ],
)
def test_passwords_are_hidden_in_userinfo_and_query(url: str, shown: str) -> None:
    assert safe_url(url) == shown
    assert "s3cret" not in safe_url(url)
