"""The incident benchmark end to end at ``--quick`` sizes, on the local PostgreSQL and moto.

Its figures are not judged here (a busy machine says nothing about them): the run must
build its table and bucket, run the baselines, the bare counts and the assessments, find
every product answer right and end with its JSON line.
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
        [sys.executable, "-m", "benchmarks.incidents", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "incidents"
    figures = result["figures"]
    assert figures["problems"] == []
    assert figures["rows"] == 200_000
    assert figures["postgresql_records"] == figures["rows_in_window"] > 0
    assert figures["postgresql_subjects"] > 0
    assert figures["s3_records"] == figures["s3_objects"] == 2_000
    assert figures["s3_subjects"] == figures["s3_customers"] > 0
    for store in ("postgresql", "s3"):
        for method in ("baseline", "assess", "count"):
            assert figures[f"{store}_{method}_s"] > 0
        assert "count" in figures[f"{store}_assess_parts_s"]
    assert set(figures["postgresql_count_parts_s"]) == {"setup", "reflect", "statement", "other"}
    assert isinstance(figures["postgresql_same_plan"], bool)
    assert set(result["met"]) == {"postgresql_ratio", "s3_ratio", "peak_rss_mb"}
