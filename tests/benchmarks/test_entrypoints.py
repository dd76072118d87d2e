"""Every benchmark starts both ways: ``python benchmarks/<name>.py`` and ``-m benchmarks.<name>``.

Run as a script, ``sys.path[0]`` is benchmarks/, whose audit.py, requests.py, retention.py
and transfers.py would shadow the packages and the library of those names; each benchmark
puts the repo root there instead. ``--help`` must print the usage and exit 0 without a
database: ``LIFECYCLE_BENCH_PG_URL`` names a closed port, so a benchmark that connected to
PostgreSQL to print its help would fail, and a script run must leave its cwd empty.

A benchmark's imports (Prefect, SQLAlchemy, moto) take seconds. Each script run gets an
interpreter of its own, from a temporary cwd (shadowing happens at import); the ``-m`` runs
share one interpreter in the repo root (as ``make bench`` runs them), each through
``runpy.run_module(alter_sys=True)``, which is what ``python -m`` does. The processes run
in parallel, once for all the tests of this module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(  # what `make bench` runs
    p.stem for p in (ROOT / "benchmarks").glob("[a-z]*.py") if p.stem != "common"
)
TIMEOUT = 180  # seconds per process: imports only, but on a busy machine
CLOSED_PG = "postgresql://nobody@127.0.0.1:1/none"

pytestmark = pytest.mark.slow

# Runs ``--help`` of every benchmark named in argv as ``python -m benchmarks.<name>`` does
# (``__main__``, ``__package__`` "benchmarks", argv[0] the file); prints a JSON outcome each.
AS_MODULES = """
import contextlib, io, json, runpy, sys, traceback

outcomes = {}
for name in sys.argv[1:]:
    sys.argv[:] = [name, "--help"]
    out, code, err = io.StringIO(), None, ""
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_module(f"benchmarks.{name}", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
    except Exception:
        code, err = "raised", traceback.format_exc()
    outcomes[name] = {"code": code, "out": out.getvalue(), "err": err}
print(json.dumps(outcomes))
"""


@dataclass(frozen=True)
class Outcome:
    code: object  # the exit status (SystemExit.code for a -m run)
    out: str
    err: str
    left: tuple[str, ...] = ()  # what a script run left in its cwd


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONSAFEPATH", "PYTHONSTARTUP"}
    }
    env["LIFECYCLE_BENCH_PG_URL"] = CLOSED_PG
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _as_modules() -> dict[tuple[str, str], Outcome]:
    done = _run(["-c", AS_MODULES, *BENCHMARKS], ROOT)
    if done.returncode != 0:
        failed = Outcome(done.returncode, done.stdout, done.stderr)
        return dict.fromkeys((("module", n) for n in BENCHMARKS), failed)
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        ("module", n): Outcome(o["code"], o["out"], o["err"] or done.stderr)
        for n, o in outcomes.items()
    }


def _as_script(name: str, cwd: Path) -> dict[tuple[str, str], Outcome]:
    done = _run([str(ROOT / "benchmarks" / f"{name}.py"), "--help"], cwd)
    left = tuple(sorted(p.name for p in cwd.iterdir()))
    return {("script", name): Outcome(done.returncode, done.stdout, done.stderr, left)}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Outcome]]:
    cwds = {name: tmp_path_factory.mktemp(f"cwd-{name}") for name in BENCHMARKS}
    results: dict[tuple[str, str], Outcome] = {}
    workers = min(len(BENCHMARKS) + 1, max(2, os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_as_modules)]  # the longest first
        futures += [pool.submit(_as_script, name, cwds[name]) for name in BENCHMARKS]
        for future in futures:
            results |= future.result()
    yield results


def test_the_benchmarks_are_found() -> None:
    assert {"intake", "requests", "retention", "audit"} <= set(BENCHMARKS)


@pytest.mark.parametrize("mode", ["script", "module"])
@pytest.mark.parametrize("name", BENCHMARKS)
def test_help(outcomes: dict[tuple[str, str], Outcome], name: str, mode: str) -> None:
    got = outcomes[mode, name]
    assert got.code == 0, f"{mode} {name}: exit {got.code!r}\n{got.err[-4000:]}"
    assert got.out.startswith(f"usage: {name}.py "), got.out
    assert "--help" in got.out
    assert not got.left, f"{mode} {name}: --help wrote {got.left} in its cwd"
