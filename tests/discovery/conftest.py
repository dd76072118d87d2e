"""The shop database (``tests.discovery.shop``) on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from core.engines import make_engine
from tests.discovery.shop import Planted, seed


@dataclass(frozen=True)
class Shop:
    url: str
    planted: Planted


@pytest.fixture
def shop(db_url: str) -> Iterator[Shop]:
    """A fresh shop database per backend (``db_url``: SQLite, PostgreSQL, MariaDB)."""
    engine = make_engine(db_url)
    try:
        planted = seed(engine)
    finally:
        engine.dispose()
    yield Shop(db_url, planted)
