"""CLI benchmark: what a person waits for beyond the work itself.

Run: ``python -m benchmarks.cli [--rounds N] [--customers N]``.

1. ``lifecycle --help``: the CPU time (user + system, of the process and its children) of
   the installed ``lifecycle`` command printing its help, against ``python -c pass`` on the
   same interpreter, both measured in this run, alternating; median of ``--rounds``
   (default 7) each. Target: at most 15 times ``python -c pass``.
2. A small request with the local API up: in a scratch data folder, the demo configuration
   on a freshly seeded demo CRM (``--customers``, default 200), a local S3 with the demo's
   empty buckets and the demo's stub provider holding nothing; one warm-up erasure starts
   the local API that commands share (``ops.local_api``; its start time is printed, not
   counted), then ``--requests`` (default 5) erasures of other customers, each
   ``lifecycle request submit --kind erasure --identity email=... --json`` in a process of
   its own. Each one's wall time is set against its work time, taken from the audit ledger:
   from the request's first event (received) to its ``request.completed``. Target: the
   median of wall / work at most 3; the median overhead (wall - work) is reported against
   the issue's ~2 s. The local API is stopped and the scratch folder removed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python benchmarks/<name>.py`, sys.path[0] is benchmarks/, whose audit.py,
# requests.py, retention.py and transfers.py would shadow the packages and the library of
# those names: the repo root takes its place, before any other import. (`python -m
# benchmarks.<name>` and imports from other modules set __package__ and skip this.)
if not __package__:
    _here = Path(__file__).resolve().parent
    sys.path[:] = [str(_here.parent), *(p for p in sys.path if Path(p).resolve() != _here)]

import argparse
import base64
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from benchmarks.common import emit_result, log, ratio

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HELP_RATIO_TARGET = 15.0
REQUEST_RATIO_TARGET = 3.0
OVERHEAD_GOAL_S = 2.0
MASTER_KEY = base64.b64encode(b"benchmark-master-key-not-secret!").decode()


def lifecycle_command() -> list[str]:
    """The installed ``lifecycle`` script beside this interpreter, else ``-m cli.main``."""
    script = Path(sys.executable).with_name("lifecycle")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(args: Sequence[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of running ``args`` to completion."""
    before = _children_cpu()
    subprocess.run(args, env=env, cwd=PROJECT_ROOT, capture_output=True, check=True)
    return _children_cpu() - before


def help_cpu(rounds: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    baseline_args, help_args = [sys.executable, "-c", "pass"], [*lifecycle_command(), "--help"]
    cpu_seconds(help_args, env)  # warm the page cache and bytecode
    base: list[float] = []
    helps: list[float] = []
    for i in range(rounds):
        base.append(cpu_seconds(baseline_args, env))
        helps.append(cpu_seconds(help_args, env))
        log(f"  round {i + 1}/{rounds}: python -c pass {base[-1]:.3f} s, --help {helps[-1]:.3f} s")
    b, h = statistics.median(base), statistics.median(helps)
    return {"python_pass_cpu_s": round(b, 3), "help_cpu_s": round(h, 3), "help_ratio": ratio(h, b)}


# -- a small request ----------------------------------------------------------------------


@contextmanager
def demo_world(folder: Path, customers: int) -> Iterator[tuple[dict[str, str], list[str]]]:
    """The demo configuration's stores in ``folder``: (environment, e-mail addresses)."""
    from sqlalchemy import create_engine, text

    from demo.provider import LocalProvider, provider_store
    from demo.s3_server import LocalS3
    from demo.seed_s3 import DEMO_BUCKETS, ensure_bucket
    from demo.seed_sql import seed_crm

    data = folder / "data"
    data.mkdir()
    crm = data / "crm.db"
    seed_crm(f"sqlite:///{crm}", customers=customers)
    engine = create_engine(f"sqlite:///{crm}")
    try:
        with engine.connect() as conn:
            query = text("SELECT email FROM customers ORDER BY id")
            emails = [str(row[0]).lower() for row in conn.execute(query)]
    finally:
        engine.dispose()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LIFECYCLE_", "AWS_"))
    }
    env |= {"LIFECYCLE_DATA_DIR": str(data), "LIFECYCLE_MASTER_KEY": MASTER_KEY, "COLUMNS": "200"}
    with ExitStack() as stack:
        s3 = stack.enter_context(LocalS3())
        client = s3.client()
        try:
            for bucket, object_lock in DEMO_BUCKETS.items():
                ensure_bucket(client, bucket, s3.region, object_lock=object_lock)
        finally:
            client.close()
        env |= s3.env()
        from config.loader import load_config

        store = provider_store(load_config(PROJECT_ROOT / "config" / "demo"))
        if store is not None:
            env |= stack.enter_context(LocalProvider(store, [])).env()
        yield env, emails


def work_seconds(env: dict[str, str], request_id: str) -> float:
    """From the request's first ledger event to its ``request.completed``."""
    from audit.ledger import Ledger
    from config.settings import get_settings

    saved = dict(os.environ)
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        ledger = Ledger.open()
        try:
            events = list(ledger.events(request_id=request_id))
        finally:
            ledger.engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    done = [e.occurred_at for e in events if e.kind == "request.completed"]
    if not events or not done:
        raise RuntimeError(f"request {request_id}: no request.completed in the ledger")
    return (done[0] - events[0].occurred_at).total_seconds()


def submit(env: dict[str, str], email: str) -> tuple[float, str, str]:
    """Run one erasure in a process of its own: (wall seconds, request id, stderr)."""
    args = [*lifecycle_command(), "request", "submit", "--kind", "erasure"]
    args += ["--identity", f"email={email}", "--json"]
    started = time.perf_counter()
    done = subprocess.run(
        args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"request submit exited {done.returncode}: {done.stderr[-2000:]}")
    payload = json.loads(done.stdout)
    if payload.get("status") != "completed":
        raise RuntimeError(f"request {payload.get('request_id')} ended {payload.get('status')}")
    return wall, str(payload["request_id"]), done.stderr


def small_requests(requests: int, customers: int) -> dict[str, Any]:
    from ops import local_api

    with (
        tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp,
        demo_world(Path(tmp), customers) as (env, emails),
    ):
        try:
            wall, _, err = submit(env, emails[0])
            started = "starting a local Prefect API" in err
            log(f"  warm-up (local API {'started' if started else 'reused'}): {wall:.1f} s")
            walls: list[float] = []
            works: list[float] = []
            for i, email in enumerate(emails[1 : requests + 1], start=1):
                wall, request_id, err = submit(env, email)
                if "starting a local Prefect API" in err:
                    raise RuntimeError("the local API was started again, not reused")
                walls.append(wall)
                works.append(work_seconds(env, request_id))
                log(
                    f"  request {i}/{requests}: wall {wall:.2f} s, work {works[-1]:.2f} s, "
                    f"overhead {wall - works[-1]:.2f} s"
                )
        finally:
            local_api.stop(env)
    ratios = [w / max(k, 1e-3) for w, k in zip(walls, works, strict=True)]
    overheads = [w - k for w, k in zip(walls, works, strict=True)]
    return {
        "request_wall_s": round(statistics.median(walls), 3),
        "request_work_s": round(statistics.median(works), 3),
        "request_overhead_s": round(statistics.median(overheads), 3),
        "request_ratio": round(statistics.median(ratios), 3),
    }


def run(rounds: int, requests: int, customers: int) -> None:
    log(f"lifecycle --help against python -c pass, CPU time, {rounds} rounds")
    figures = help_cpu(rounds)
    log(f"a small erasure with the local API up, {requests} requests ({customers} customers)")
    figures |= small_requests(requests, customers)
    figures |= {"rounds": rounds, "requests": requests}
    targets = {
        "help_ratio_max": HELP_RATIO_TARGET,
        "request_ratio_max": REQUEST_RATIO_TARGET,
        "request_overhead_goal_s": OVERHEAD_GOAL_S,
    }
    met = {
        "help_ratio": figures["help_ratio"] <= HELP_RATIO_TARGET,
        "request_ratio": figures["request_ratio"] <= REQUEST_RATIO_TARGET,
        "request_overhead": figures["request_overhead_s"] <= OVERHEAD_GOAL_S,
    }
    emit_result("cli", figures, targets, met)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="CPU of `lifecycle --help`; a small request's wall time against its work."
    )
    parser.add_argument("--rounds", type=int, default=7, help="--help rounds (median)")
    parser.add_argument("--requests", type=int, default=5, help="timed requests (median)")
    parser.add_argument("--customers", type=int, default=200, help="demo CRM customers")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1 or args.customers < args.requests + 2:
        parser.error("--rounds and --requests at least 1, --customers above --requests + 1")
    run(args.rounds, args.requests, args.customers)


if __name__ == "__main__":
    main()
