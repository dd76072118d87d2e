"""Intake benchmark: requests registered through the signed webhook against in-process.

Run: ``python -m benchmarks.intake [--requests N] [--rounds N]``.

With the ledger and request register on PostgreSQL (a scratch database, dropped at the end)
and the demo inventory, each round registers ``--requests`` erasure requests (default
1,000), each with a help-desk ticket id, three ways, one after another, rounds interleaved:

1. in process (the baseline): ``Intake.register``, the registration the webhook performs
   once a delivery is verified and parsed: ``engine.intake.submit`` (what
   ``lifecycle request submit`` does) and the ticket stored as the external reference;
2. over HTTP: the intake app served by uvicorn on 127.0.0.1 in a process of its own (as
   ``lifecycle server start`` runs it), each request a webhook POST signed for it (HMAC
   over timestamp and body) on one keep-alive connection: signature check, the
   delivery and ticket guards (``ops.intake.idempotency``), parsing, then the same
   registration, then the 201 answer;
3. for reference (no target): ``submit`` alone, without the ticket.

Flow runs are not created: the registration in this process and the served app (``--serve``,
for this benchmark only) get an ``Intake`` whose ``start_run`` only returns a new id, so
nothing executes and no Prefect server is involved. Afterwards it checks that every request
was registered. Target: webhook throughput at least half of in-process (medians of rounds).
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
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any

import httpx
import uvicorn

from benchmarks.common import (
    ROUNDS,
    emit_result,
    log,
    peak_rss_mb,
    ratio,
    scratch_postgres,
    timed,
)
from config.settings import get_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REQUESTS = 1_000
RATIO_TARGET = 0.5
SECRET = b"benchmark-webhook-secret-not-secret"
MASTER_KEY = base64.b64encode(b"benchmark-master-key-not-secret!").decode()


def serve(port: int) -> None:
    """The benchmark's intake server (``--serve``): the real app, flow runs stubbed."""
    from ops.intake.app import IntakeConfig, create_app
    from ops.intake.service import Intake

    app = create_app(IntakeConfig(page_auth=None, webhook_secret=SECRET), Intake(Runs()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def served(env: dict[str, str]) -> Iterator[str]:
    """The benchmark's intake server in a process of its own; its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [sys.executable, "-m", "benchmarks.intake", "--serve", str(port)]
    child = subprocess.Popen(args, env=env, cwd=PROJECT_ROOT)  # finds benchmarks/ from anywhere
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if child.poll() is not None:
                raise SystemExit("the intake server did not start")
            try:
                if httpx.get(f"{url}/healthz", trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        child.terminate()
        child.wait()


class Runs:
    """Stands in for flow-run creation: counts the request ids, returns a new run id."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, request_id: str) -> str:
        self.count += 1
        return str(uuid.uuid4())


def _payload(mode: str, round_: int, i: int) -> dict[str, Any]:
    return {
        "kind": "erasure",
        "identity": {"email": f"bench.{mode}.{round_}.{i}@example.com"},
        "requested_by": "help-desk",
        "ticket": f"ZD-{mode}-{round_}-{i}",  # one ticket per request: a re-sent one is 200
    }


def in_process(intake: Any, count: int, round_: int) -> int:
    """Register ``count`` requests as the webhook does once verified, in process; how many."""
    from ops.intake.models import IntakeRequest

    for i in range(count):
        intake.register(IntakeRequest.model_validate(_payload("direct", round_, i)))
    return count


def submit_only(count: int, round_: int) -> int:
    """Register ``count`` requests with ``submit`` alone (the CLI's registration)."""
    from engine.intake import submit
    from engine.request_support import request_context

    ctx = request_context()
    for i in range(count):
        identity = _payload("submit", round_, i)["identity"]
        submit(ctx, kind="erasure", identity=identity, requested_by="help-desk")
    return count


def over_webhook(http: httpx.Client, count: int, round_: int) -> int:
    """POST ``count`` signed webhooks; how many were registered (201)."""
    from ops.intake.signing import signed_headers

    for i in range(count):
        payload = _payload("webhook", round_, i)
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
        response = http.post("/webhook/requests", content=body, headers=headers)
        if response.status_code != 201:
            raise SystemExit(f"webhook answered {response.status_code}: {response.text}")
    return count


def _rate(label: str, round_: int, rounds: int, fn: Callable[[], int]) -> float:
    seconds, done = timed(fn)
    log(f"  round {round_ + 1}/{rounds}: {label:<10} {done / seconds:,.0f} requests/s")
    return done / seconds


def run(requests: int, rounds: int) -> dict[str, Any]:
    """The three ways on PostgreSQL, rounds interleaved; the figures."""
    from engine.request_support import request_context
    from ops.intake.service import Intake

    intake = Intake(start_run=Runs())
    rates: dict[str, list[float]] = {"in-process": [], "webhook": [], "submit": []}
    with (
        served(dict(os.environ)) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=60) as http,
    ):
        warm = rounds  # warm-up: imports, migrations, connection pools, caches
        in_process(intake, 10, warm)
        over_webhook(http, 10, warm)
        submit_only(10, warm)
        for r in range(rounds):
            rates["in-process"].append(
                _rate("in-process", r, rounds, partial(in_process, intake, requests, r))
            )
            rates["webhook"].append(
                _rate("webhook", r, rounds, partial(over_webhook, http, requests, r))
            )
            rates["submit"].append(_rate("submit", r, rounds, partial(submit_only, requests, r)))
    registered = len(request_context().register.list())
    expected = 3 * (requests * rounds + 10)
    if registered != expected:
        raise SystemExit(f"registered {registered} requests, expected {expected}")
    direct, webhook, submit = (statistics.median(rates[k]) for k in rates)
    return {
        "requests_per_round": requests,
        "rounds": rounds,
        "in_process_per_s": round(direct, 1),
        "webhook_per_s": round(webhook, 1),
        "submit_only_per_s": round(submit, 1),
        "webhook_ms_per_request": round(1000 / webhook, 2),
        "webhook_ratio": ratio(webhook, direct),
        "webhook_ratio_to_submit_only": ratio(webhook, submit),
        "registered": registered,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="per round")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds (median reported)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:  # the server process ``served`` starts
        serve(args.serve)
        return
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be at least 1")
    with ExitStack() as stack:
        url = stack.enter_context(scratch_postgres())
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lc-bench-")))
        os.environ.update(
            LIFECYCLE_AUDIT_URL=url,
            LIFECYCLE_DATA_DIR=str(data_dir),
            LIFECYCLE_MASTER_KEY=MASTER_KEY,
        )
        os.environ.pop("LIFECYCLE_CONFIG_DIR", None)  # the demo inventory
        get_settings.cache_clear()
        log(f"intake: {args.requests:,} requests per round, {args.rounds} rounds, PostgreSQL")
        try:
            figures = run(args.requests, args.rounds)
        finally:
            from audit.database import dispose_engines

            dispose_engines()  # before the scratch database is dropped
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    key = "webhook_ratio"
    emit_result(
        "intake",
        figures,
        {key: f">= {RATIO_TARGET}"},
        {key: float(figures[key]) >= RATIO_TARGET},
    )


if __name__ == "__main__":
    main()
