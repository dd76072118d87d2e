"""A small share of the crash campaign (``tests.crash_campaign``), seeded, in every test run.

Six trials: every kind of job (erasure, access, rectification, sweep) on SQLite and on
PostgreSQL, each killed at a kill point drawn from its uninterrupted run's trace, resumed,
and compared with that uninterrupted run (store, ledger, package). The full campaign is
``python -m tests.crash_campaign --trials 200 --seed 7``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import get_settings
from tests.crash_campaign import BACKENDS, KINDS, run_campaign
from tests.crash_world import MASTER_KEY


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.timeout(1800)
@pytest.mark.usefixtures("pg_url")  # PostgreSQL reachable (else skipped; failed under CI)
def test_killed_jobs_resume_to_the_uninterrupted_end_state(
    prefect_api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_MASTER_KEY", MASTER_KEY)  # the trials' ledgers' key
    get_settings.cache_clear()

    figures = run_campaign(
        trials=6,
        seed=11,
        backends=BACKENDS,
        kinds=KINDS,
        api_url=prefect_api_url,
        root=tmp_path,
        log=False,
        cover=True,
    )

    assert figures["trials"] == 6 and figures["killed"] == 6
    assert figures["per_kind"] == {"erasure": 2, "access": 2, "rectification": 1, "sweep": 1}
    assert set(figures["per_backend"]) == set(BACKENDS)  # type: ignore[call-overload]
    assert figures["divergences"] == 0, figures["divergent_trials"]
