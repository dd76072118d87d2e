"""Flow tests' fixtures; the session's one Prefect test server is ``tests.conftest``'s."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def prefect_home(prefect_server: None) -> Path:
    return Path(os.environ["PREFECT_HOME"])


@pytest.fixture
def configure(
    isolated_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """Write the test inventory and policy (options as ``support.write_config``), seed the
    fake stores and serve SQL stores with the fake connector; returns the config folder."""
    from config.settings import get_settings
    from tests.flows import fakes, support

    fakes.install(monkeypatch)

    def apply(**options: Any) -> Path:
        folder = support.write_config(tmp_path / "config", **options)
        monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
        get_settings.cache_clear()
        support.seed_stores(isolated_settings)
        return folder

    return apply


@pytest.fixture
def prefect_api_url(prefect_server: None) -> str:
    """The test server's API URL, for subprocesses that should use it too."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url
    return str(url)
