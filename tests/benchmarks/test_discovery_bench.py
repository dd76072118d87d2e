"""The discovery benchmark end to end at ``--quick`` sizes, on the local PostgreSQL.

Its figures are not judged here (a busy machine says nothing about them): the run must
build its schema, run both methods, check every draft and end with its JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("LIFECYCLE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

pytestmark = [pytest.mark.slow, pytest.mark.service]


def test_quick_run_ends_with_its_result() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["LIFECYCLE_BENCH_PG_URL"] = PG_URL
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.discovery", "--quick", "--tables", "3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "discovery"
    figures = result["figures"]
    assert figures["tables"] == 3
    assert figures["problems"] == []
    assert figures["baseline_s"] > 0
    assert figures["product_s"] > 0
    assert set(figures["product_parts_s"]) == {
        "catalog",
        "sampling",
        "classify",
        "plan_render",
        "other",
    }
    assert set(result["met"]) == {"ratio", "peak_rss_mb"}
