"""Crash campaign: kill the ``lifecycle`` CLI at random points, resume, compare with no crash.

    python -m tests.crash_campaign --trials 200 --seed 7 \\
        [--backends sqlite,postgresql] [--kinds erasure,access,rectification,sweep]

Each trial picks a kind, a backend and a kill point at random, runs the real CLI in a
subprocess against a fresh copy of a seeded store (and a fresh audit database), kills it
there (``crash_point`` exits 137 with LIFECYCLE_TEST_HOOKS=1 and LIFECYCLE_TEST_CRASH_AT),
resumes it (``request submit --resume ID``, or ``sweep`` again) and compares what the
two runs left, the store (every row), the ledger (events per kind and their counts,
``verify``, one completion, batch counts equal to the rows changed) and the access
package's records, with an uninterrupted run of the same kind on an identical copy.

Kill points are not guessed: the uninterrupted run of each kind and backend is traced
(LIFECYCLE_TEST_TRACE collects every point it passes), and trials pick among those, so
every point the code has is reachable, from locating to completion: between an
erasure's intents and its commit, between the commit and the intents' confirmation,
inside the store's transaction, between a ledger append and its progress row, while the
access package is written, inside a sweep's batch ranges, and so on.

Cheap trials: small stores copied from templates (a file copy, ``CREATE DATABASE ...
TEMPLATE``), one Prefect test server for the whole campaign (``prefect_test_harness``),
SQL batches of ``SQL_BATCH`` keys so an erasure has several. The last line printed is
``{"benchmark": "crash_campaign", "figures": {...}}``; the exit code is 1 on any divergence.
``python -m tests.crash_campaign cli ARGS`` is the CLI the trials run (the registry's SQL
connector with small batches); ``serve`` runs it for each job in a forked child of one
process that imported Prefect and the flows once (seconds of CPU saved per run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

KINDS = ("erasure", "access", "rectification", "sweep")
BACKENDS = ("sqlite", "postgresql")
SQL_BATCH = 4
"""Keys per SQL erasure batch in the trials: the demo subject's rows make several."""
SWEEP_BATCH = 100
PROJECT_ROOT = Path(__file__).resolve().parents[1]
WARM = (
    "cli.main",
    "cli.request_submit",
    "cli.request_approval",
    "cli.sweep_cmd",
    "connectors.sql.connector",
    "connectors.sql.planning",
    "connectors.sql.execute",
    "connectors.sql.verify",
    "flows.retention_sweep",
    "flows.subject_request",
    "prefect.flow_engine",  # imported by the first flow call (with graphviz, fastapi ...)
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "sqlalchemy.dialects.sqlite",
    "sqlite3",
    "psycopg",
    "email_validator",
    "fastapi",
    "anyio._backends._asyncio",
    "opentelemetry.metrics",
    "connectors.sql.casefold",
    "ops.intake.reference",
    "ops.intake.signing",
)


def _cli(argv: Sequence[str]) -> None:
    """The ``lifecycle`` CLI with the SQL connector batching ``SQL_BATCH`` keys."""
    from cli.main import main
    from config.schema import Policy, StoreConfig
    from connectors import registry
    from connectors.base import Connector
    from connectors.sql.config import SqlStore
    from connectors.sql.connector import SqlConnector
    from core.keys import KeyRing

    def sql(store: StoreConfig, policy: Policy, keys: KeyRing) -> Connector:
        assert isinstance(store, SqlStore)
        return SqlConnector(store, policy, keys=keys, batch_size=SQL_BATCH)

    registry.CONNECTORS["sql"] = sql
    sys.argv = ["lifecycle", *argv]
    main()


def _serve() -> None:
    """Run CLI jobs from stdin, each in a process forked from this one (imports done once).

    Importing Prefect and the flows costs seconds of CPU per process; a forked child starts
    with them loaded and runs the real CLI with the job's environment, its output in files.
    Nothing here touches settings, engines or Prefect's client before the fork.
    """
    import importlib
    import traceback

    for module in WARM:  # loaded once, before any fork
        importlib.import_module(module)

    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: one run of the CLI
            code = 1
            try:
                os.environ.clear()
                os.environ.update(job["env"])
                for fd, name in ((1, "stdout"), (2, "stderr")):
                    target = os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.dup2(target, fd)
                _cli(job["args"])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


@dataclass(frozen=True)
class Trial:
    """One trial's draw and verdict."""

    number: int
    kind: str
    backend: str
    point: str
    killed: bool
    problems: tuple[str, ...]
    seconds: float


@dataclass
class Campaign:
    """Templates, the reference runs and the trials of one campaign."""

    root: Path
    api_url: str
    backends: Sequence[str]
    kinds: Sequence[str]
    as_of: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    references: dict[tuple[str, str], tuple[object, list[str]]] = field(default_factory=dict)
    server: subprocess.Popen[str] | None = None

    def __post_init__(self) -> None:
        from tests.crash_world import Templates, write_config

        self.config = write_config(self.root / "config")
        self.templates = Templates(self.root / "templates")
        self.templates.root.mkdir(parents=True, exist_ok=True)

    def command(self, kind: str, request_id: str | None = None) -> list[str]:
        if kind == "sweep":
            return ["sweep", "--as-of", self.as_of, "--batch-size", str(SWEEP_BATCH), "--json"]
        if request_id is not None:
            return ["request", "submit", "--resume", request_id, "--json"]
        from tests.crash_world import SUBJECT

        args = ["request", "submit", "--kind", kind, "--identity", f"email={SUBJECT}", "--json"]
        if kind == "access":
            args += ["--passphrase-file", str(self.config / "passphrase.txt")]
        if kind == "rectification":
            args += ["--set", "customers.full_name=Renamed Subject"]
        return args

    def env(self) -> dict[str, str]:
        """What every run's environment holds (``world`` adds the run's own stores)."""
        from tests.crash_world import MASTER_KEY

        env = {k: v for k, v in os.environ.items() if not k.startswith(("LIFECYCLE_", "PREFECT_"))}
        env.update(
            LIFECYCLE_CONFIG_DIR=str(self.config),
            LIFECYCLE_MASTER_KEY=MASTER_KEY,
            LIFECYCLE_TEST_HOOKS="1",
            PREFECT_API_URL=self.api_url,
            PREFECT_HOME=str(self.root / "prefect-home"),
            PREFECT_LOGGING_LEVEL="ERROR",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        return env

    def start_server(self) -> None:
        """Start the CLI server process (``serve``): its imports take seconds of CPU, done
        while this process builds the templates."""
        if self.server is None:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "tests.crash_campaign", "serve"],
                env=self.env(),
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )

    def _run(self, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """One run of the CLI in a forked child of the campaign's server process."""
        self.start_server()
        assert self.server is not None
        assert self.server.stdin is not None and self.server.stdout is not None
        folder = Path(env["LIFECYCLE_DATA_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        out, err = folder / "stdout.txt", folder / "stderr.txt"
        job = {"args": args, "env": env, "stdout": str(out), "stderr": str(err)}
        self.server.stdin.write(json.dumps(job) + "\n")
        self.server.stdin.flush()
        reply = self.server.stdout.readline()
        if not reply:
            raise RuntimeError("the campaign's CLI server stopped")
        code = int(json.loads(reply)["code"])
        return subprocess.CompletedProcess(args, code, out.read_text(), err.read_text())

    @contextmanager
    def world(self, backend: str, folder: Path) -> Iterator[tuple[dict[str, str], str, str]]:
        """A fresh store and audit database; the environment a run of the CLI gets."""
        store = self.templates.copy(backend, "store", folder)
        audit = self.templates.copy(backend, "audit", folder)
        env = self.env() | {
            "LIFECYCLE_DATA_DIR": str(folder),
            "LIFECYCLE_AUDIT_URL": audit,
            "CAMPAIGN_CRM_URL": store,
        }
        try:
            yield env, store, audit
        finally:
            self.templates.drop(store)
            self.templates.drop(audit)

    def reference(self, kind: str, backend: str) -> tuple[object, list[str]]:
        """The uninterrupted run of ``kind`` on ``backend``, and the kill points it passed."""
        from tests.crash_world import outcome, snapshot

        key = (kind, backend)
        if key not in self.references:
            folder = self.root / f"ref-{kind}-{backend}"
            trace = folder / "trace.txt"
            with self.world(backend, folder) as (env, store, audit):
                template = snapshot(store)
                done = self._run(self.command(kind), env | {"LIFECYCLE_TEST_TRACE": str(trace)})
                if done.returncode not in (0, 4):
                    raise RuntimeError(f"{kind}/{backend}: {done.stderr[-2000:]}")
                result = outcome(done.returncode, store, audit, template, folder)
            points = list(dict.fromkeys(trace.read_text().split())) if trace.exists() else []
            self.references[key] = (result, points)
        return self.references[key]

    def draw(self, number: int, rng: random.Random, cover: bool) -> tuple[str, str]:
        """The trial's kind and backend: at random, or (``cover``) every kind in turn on
        alternating backends, so a handful of trials reaches each kind and each backend."""
        kinds, backends = list(self.kinds), list(self.backends)
        if not cover:
            return rng.choice(kinds), rng.choice(backends)
        i = number - 1
        return kinds[i % len(kinds)], backends[(i + i // len(kinds)) % len(backends)]

    def trial(self, number: int, rng: random.Random, cover: bool = False) -> Trial:
        from tests.crash_world import Outcome, diverge, outcome, snapshot

        kind, backend = self.draw(number, rng, cover)
        reference, points = self.reference(kind, backend)
        assert isinstance(reference, Outcome)
        point = rng.choice(points)
        started = time.monotonic()
        folder = self.root / f"trial-{number:04d}"
        with self.world(backend, folder) as (env, store, audit):
            template = snapshot(store)
            crashed = self._run(self.command(kind), env | {"LIFECYCLE_TEST_CRASH_AT": point})
            killed = crashed.returncode == 137
            problems: list[str] = []
            if not killed:
                problems.append(f"not killed at {point} (exit {crashed.returncode})")
            request_id = None if kind == "sweep" else _request_id(audit)
            if kind != "sweep" and request_id is None:
                problems.append("the crashed run registered no request")
            else:
                resumed = self._run(self.command(kind, request_id), env)
                got = outcome(resumed.returncode, store, audit, template, folder)
                problems += diverge(reference, got)
                if resumed.returncode not in (0, 4):
                    problems.append(f"resume: {resumed.stderr.strip()[-300:]}")
        return Trial(
            number, kind, backend, point, killed, tuple(problems), time.monotonic() - started
        )

    def close(self) -> None:
        if self.server is not None:
            assert self.server.stdin is not None and self.server.stdout is not None
            self.server.stdin.close()
            self.server.wait(timeout=60)
            self.server.stdout.close()
            self.server = None
        self.templates.close()


def _request_id(audit_url: str) -> str | None:
    """The one request a crashed run registered (from the register's table)."""
    import sqlalchemy as sa

    from core.engines import make_engine

    engine = make_engine(audit_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT id FROM subject_requests")).scalar()
    finally:
        engine.dispose()


def run_campaign(
    *,
    trials: int,
    seed: int,
    backends: Sequence[str],
    kinds: Sequence[str],
    api_url: str,
    root: Path,
    log: bool = True,
    cover: bool = False,
) -> dict[str, object]:
    """Run the trials; the figures of the closing JSON line (``cover``: see ``draw``)."""
    started = time.monotonic()
    campaign = Campaign(root, api_url, backends, kinds)
    rng = random.Random(seed)
    results: list[Trial] = []
    try:
        campaign.start_server()  # its imports overlap the templates' seeding
        campaign.templates.build(list(backends))
        for number in range(1, trials + 1):
            result = campaign.trial(number, rng, cover)
            results.append(result)
            if log:
                verdict = "; ".join(result.problems) or "same as uninterrupted"
                print(
                    f"trial {number}: {result.kind}/{result.backend} killed at {result.point}"
                    f" ({result.seconds:.1f}s): {verdict}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        campaign.close()
    divergent = [r for r in results if r.problems]
    return {
        "trials": len(results),
        "divergences": len(divergent),
        "seconds": round(time.monotonic() - started, 1),
        "killed": sum(r.killed for r in results),
        "seed": seed,
        "kill_points": len({(r.kind, r.point) for r in results}),
        "per_kind": dict(Counter(r.kind for r in results)),
        "per_backend": dict(Counter(r.backend for r in results)),
        "seconds_per_trial": round(sum(r.seconds for r in results) / max(len(results), 1), 2),
        "divergent_trials": [
            {"trial": r.number, "kind": r.kind, "backend": r.backend, "point": r.point}
            for r in divergent
        ],
    }


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """One throwaway Prefect server for every run of the campaign; its API URL."""
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_LOGGING_LEVEL"] = "ERROR"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


def _names(text: str, known: Sequence[str]) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(known)}")
    return names


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash_campaign")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backends", type=lambda t: _names(t, BACKENDS), default=list(BACKENDS))
    parser.add_argument("--kinds", type=lambda t: _names(t, KINDS), default=list(KINDS))
    args = parser.parse_args(argv)
    from tests.crash_world import MASTER_KEY

    os.environ["LIFECYCLE_MASTER_KEY"] = MASTER_KEY  # the in-process checks read the ledger
    with tempfile.TemporaryDirectory(prefix="crash-campaign-") as tmp:
        root = Path(tmp)
        with prefect_server(root / "prefect-home") as api_url:
            figures = run_campaign(
                trials=args.trials,
                seed=args.seed,
                backends=args.backends,
                kinds=args.kinds,
                api_url=api_url,
                root=root,
            )
    print(json.dumps({"benchmark": "crash_campaign", "figures": figures}))
    return 1 if figures["divergences"] else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["cli"]:
        _cli(sys.argv[2:])
    elif sys.argv[1:2] == ["serve"]:
        _serve()
    else:
        sys.exit(main(sys.argv[1:]))
