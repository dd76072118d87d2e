"""Processor benchmark: a request notifying 20 providers waits for the slowest, not the sum.

Run: ``python -m benchmarks.processors [--providers N] [--latency S] [--rounds N]``.

The inventory holds ``--providers`` processor stores (default 20), each served by its own
local stub provider (``demo.processor_server.StubProvider``; all in one process of their
own, since a real provider's work does not compete with the flow for this interpreter's
lock) that answers every call after
``--latency`` seconds (default 0.2) and confirms an erasure on the first status poll (the
connector polls for it, as with a real provider), and a small SQLite CRM that declares the
e-mail identity kind the providers are asked with. Each round runs two erasure requests
through the real subject-request flow (Prefect test server, ledger and register on SQLite
in a scratch folder, approval automatic), each for a subject every provider holds:

1. concurrent: one request across all the providers, at ``LIFECYCLE_STORE_CONCURRENCY``
   = ``--providers`` (``--concurrency`` to change it);
2. the baseline: a request to the slowest single provider alone (every provider has the
   same latency, so the last one), same flow, same run.

The flow's per-store steps (``flows.subject_request._each``) are timed as they run:
locate, plan, execute (notifying the providers and waiting for their confirmations) and
verify, besides the whole request. Judged: the execute step's median time over the
baseline's, target <= 2.0 (without concurrency it would be about ``--providers`` times).
The whole request's ratio is reported too. After each request it checks that the request
completed and that every provider erased the subject's record; at the end, that the
ledger verifies.
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
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import yaml

from benchmarks.common import ROUNDS, emit_result, log, ratio

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROVIDERS = 20
DEFAULT_LATENCY = 0.2
RATIO_TARGET = 2.0
SECRET = "benchmark-provider-secret-not-secret"
SECRET_ENV = "LIFECYCLE_BENCH_PROVIDER_SECRET"
MASTER_KEY = base64.b64encode(b"benchmark-master-key-not-secret!").decode()
STEPS = ("locate-store", "plan-store", "execute-store", "verify-store")

POLICY = {
    "categories": [{"name": "contact"}],
    "requests": {
        "deadline_days": 30,
        "approval": {"required_for": []},
        "erasure": {"default": {"action": "delete"}},
    },
}


def _crm(url: str) -> dict[str, Any]:
    """The SQL store declaring the identity kind the providers are asked with (e-mail); it
    holds no rows of the benchmark's subjects."""
    return {
        "name": "crm",
        "type": "sql",
        "url": url,
        "region": "eu-central-1",
        "tables": [
            {
                "name": "customers",
                "identity": [{"column": "email", "kind": "email", "case_insensitive": True}],
                "fields": {"email": ["contact"]},
            }
        ],
    }


def _create_crm(path: Path) -> str:
    from sqlalchemy import Column, Integer, MetaData, String, Table

    from core.engines import make_engine

    url = f"sqlite:///{path}"
    metadata = MetaData()
    Table(
        "customers",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("email", String(200), nullable=False, index=True),
    )
    engine = make_engine(url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
    return url


def _store(name: str, endpoint: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "processor",
        "description": "A benchmark provider (local stub)",
        "provider": f"Provider {name}",
        "purpose": "benchmark",
        "region": "eu-west-1",
        "categories": ["contact"],
        "agreement": {"reference": f"DPA-{name}", "expires": "2099-12-31"},
        "identities": ["email"],
        "fields": [{"name": "email", "category": "contact", "identity": "email"}],
        "endpoint": endpoint,
        "secret_env": SECRET_ENV,
        "timeout": 30,
        "retries": 0,
        "backoff": 0,
        "confirm_within": "60s",
        "poll_interval": 0.05,
    }


def _write_config(folder: Path, stores: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inventory.yaml").write_text(yaml.safe_dump({"stores": stores}, sort_keys=False))
    (folder / "policy.yaml").write_text(yaml.safe_dump(POLICY, sort_keys=False))
    return folder


@contextmanager
def _environment(root: Path, concurrency: int) -> Iterator[None]:
    """Scratch data folder and Prefect home, the benchmark's settings, a Prefect test server."""
    saved = dict(os.environ)
    os.environ.update(
        {
            "LIFECYCLE_DATA_DIR": str(root / "data"),
            "LIFECYCLE_MASTER_KEY": MASTER_KEY,
            "LIFECYCLE_STORE_CONCURRENCY": str(concurrency),
            "PREFECT_HOME": str(root / "prefect-home"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            SECRET_ENV: SECRET,
        }
    )
    os.environ.pop("LIFECYCLE_AUDIT_URL", None)
    try:
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class StepTimes:
    """Wraps the flow's ``_each`` to time each per-store step of the request running now."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def install(self) -> Callable[[], None]:
        import flows.subject_request as sr

        original = sr._each

        def timed_each(request_id: str, stores: list[str], step: Any, **kw: Any) -> list[int]:
            start = time.perf_counter()
            try:
                return original(request_id, stores, step, **kw)
            finally:
                name = getattr(step, "name", str(step))
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        sr._each = timed_each

        def restore() -> None:
            sr._each = original

        return restore


def _use_config(folder: Path) -> None:
    from config.settings import get_settings

    os.environ["LIFECYCLE_CONFIG_DIR"] = str(folder)
    get_settings.cache_clear()


def _ref(email: str) -> str:
    return f"rec-{email.split('@', maxsplit=1)[0]}"


def serve_providers(count: int, latency: float, emails: list[str]) -> None:
    """``--serve-providers``: the stub providers in this process, each holding a record of
    every subject in ``emails``; prints their URLs (one JSON line), serves until stdin
    closes, then prints what each erased (one JSON line)."""
    from demo.processor_server import StubProvider, StubRecord

    with ExitStack() as stack:
        stubs = []
        for _ in range(count):
            records = [StubRecord(_ref(e), {"email": e}, {"email": e}) for e in emails]
            stub = StubProvider(SECRET.encode(), records)
            stub.knobs.latency = latency
            stub.knobs.confirm_after_polls = 1  # confirmed on the first status poll
            stubs.append(stack.enter_context(stub.running()))
        print(json.dumps([s.url for s in stubs]), flush=True)
        sys.stdin.read()
        print(json.dumps([sorted(s.erased) for s in stubs]), flush=True)


@contextmanager
def _providers(count: int, latency: float, emails: list[str]) -> Iterator[Any]:
    """The stub providers in a process of their own, as a real provider is remote: their
    work does not share this process's interpreter lock with the flow's threads. Yields
    their URLs, then (once the block has ended) a list of what each erased."""
    args = [sys.executable, "-m", "benchmarks.processors", "--serve-providers", str(count)]
    args += ["--latency", str(latency), "--emails", ",".join(emails)]
    child = subprocess.Popen(
        args, cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    erased: list[list[str]] = []
    try:
        line = child.stdout.readline()
        if not line:
            raise SystemExit("the stub providers did not start")
        yield json.loads(line), erased
        child.stdin.close()
        erased.extend(json.loads(child.stdout.readline()))
    finally:
        if child.poll() is None:
            child.terminate()
        child.wait()


def _one_request(config: Path, email: str, times: StepTimes) -> dict[str, float]:
    """Erase ``email`` through the flow; seconds per step and for the whole request."""
    from engine.intake import submit
    from engine.request_support import request_context
    from flows.subject_request import subject_request

    _use_config(config)
    request = submit(
        request_context(), kind="erasure", identity={"email": email}, requested_by="benchmark"
    )
    times.seconds.clear()
    start = time.perf_counter()
    outcome = subject_request(request_id=request.id)
    total = time.perf_counter() - start
    if outcome.status != "completed":  # completed: verification found nothing left
        raise SystemExit(f"request {request.id} ended {outcome.status}")
    return {"request": total, **{step: times.seconds.get(step, 0.0) for step in STEPS}}


def run(providers: int, latency: float, rounds: int, concurrency: int) -> dict[str, Any]:
    from engine.request_support import request_context

    emails = {
        "all": [f"bench.{r}.all@example.com" for r in ("warm", *map(str, range(rounds)))],
        "one": [f"bench.{r}.one@example.com" for r in ("warm", *map(str, range(rounds)))],
    }
    with tempfile.TemporaryDirectory(prefix="lc-bench-processors-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        stack.enter_context(_environment(root, concurrency))
        urls, erased = stack.enter_context(
            _providers(providers, latency, emails["all"] + emails["one"])
        )
        crm = _crm(_create_crm(root / "crm.db"))
        stores = [_store(f"p{i + 1:02d}", url) for i, url in enumerate(urls)]
        everyone = _write_config(root / "config-all", [crm, *stores])
        slowest = _write_config(root / "config-one", [crm, stores[-1]])
        times = StepTimes()
        restore = times.install()
        try:
            log(f"warm-up: {providers} providers, then one ({latency * 1000:.0f} ms each)")
            _one_request(everyone, emails["all"][0], times)
            _one_request(slowest, emails["one"][0], times)
            samples: dict[str, list[dict[str, float]]] = {"all": [], "one": []}
            for r in range(rounds):
                all_ = _one_request(everyone, emails["all"][r + 1], times)
                one = _one_request(slowest, emails["one"][r + 1], times)
                samples["all"].append(all_)
                samples["one"].append(one)
                log(
                    f"  round {r + 1}/{rounds}: execute {all_['execute-store']:.2f} s for "
                    f"{providers} vs {one['execute-store']:.2f} s for one; request "
                    f"{all_['request']:.2f} s vs {one['request']:.2f} s"
                )
        finally:
            restore()
        if not request_context().ledger.verify().ok:
            raise SystemExit("the ledger does not verify after the benchmark's requests")
        stack.close()  # the providers report what they erased once stopped
    wanted_all = sorted(_ref(e) for e in emails["all"])
    if any(sorted(set(e) & set(wanted_all)) != wanted_all for e in erased) or not erased:
        raise SystemExit("a provider did not erase every subject of the requests it was sent")
    if not set(map(_ref, emails["one"])) <= set(erased[-1]):
        raise SystemExit("the single provider did not erase every subject it was sent")

    def median(mode: str, step: str) -> float:
        return statistics.median(s[step] for s in samples[mode])

    figures: dict[str, Any] = {
        "providers": providers,
        "latency_ms": round(latency * 1000),
        "store_concurrency": concurrency,
        "rounds": rounds,
    }
    for step in (*STEPS, "request"):
        key = step.removesuffix("-store")
        figures[f"{key}_s"] = round(median("all", step), 3)
        figures[f"{key}_one_s"] = round(median("one", step), 3)
    figures["execute_ratio"] = ratio(median("all", "execute-store"), median("one", "execute-store"))
    figures["execute_ratios"] = [
        ratio(a["execute-store"], o["execute-store"])
        for a, o in zip(samples["all"], samples["one"], strict=True)
    ]
    figures["request_ratio"] = ratio(median("all", "request"), median("one", "request"))
    figures["sequential_estimate_s"] = round(providers * median("one", "execute-store"), 3)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="One erasure request notifying many processors at once vs one processor.",
    )
    parser.add_argument("--providers", type=int, default=DEFAULT_PROVIDERS)
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY, help="seconds")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="LIFECYCLE_STORE_CONCURRENCY (default: N)"
    )
    parser.add_argument("--serve-providers", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--emails", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_providers is not None:
        serve_providers(args.serve_providers, args.latency, args.emails.split(","))
        return
    concurrency = args.concurrency or args.providers
    figures = run(args.providers, args.latency, args.rounds, concurrency)
    targets = {"execute_ratio_max": RATIO_TARGET}
    met = {"execute_ratio": figures["execute_ratio"] <= RATIO_TARGET}
    emit_result("processors", figures, targets, met)


if __name__ == "__main__":
    main()
