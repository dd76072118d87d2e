"""Helpers every benchmark reuses: repeated timings, peak memory, scratch databases, output.

Benchmarks print human-readable lines as they go and end with exactly one JSON line
(``emit_result``) so CI and people can both read them: ``figures`` are the measured
numbers, ``targets`` what they must reach, ``met`` whether each target was reached.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.engines import make_engine

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get("LIFECYCLE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROUNDS = 3


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Run ``fn`` once; its wall-clock seconds and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_rate(
    fn: Callable[[], int], rounds: int = ROUNDS, label: str | None = None
) -> tuple[float, list[float]]:
    """Median of ``rounds`` rates (items/s), where ``fn`` returns the items it processed."""
    rates: list[float] = []
    for i in range(rounds):
        seconds, items = timed(fn)
        rates.append(items / seconds if seconds > 0 else float("inf"))
        if label:
            log(f"  {label} round {i + 1}/{rounds}: {rates[-1]:,.0f}/s ({seconds:.2f} s)")
    return statistics.median(rates), rates


def median_seconds(
    fn: Callable[[], Any], rounds: int = ROUNDS, label: str | None = None
) -> tuple[float, list[float]]:
    """Median wall-clock seconds of ``rounds`` runs of ``fn``."""
    samples: list[float] = []
    for i in range(rounds):
        seconds, _ = timed(fn)
        samples.append(seconds)
        if label:
            log(f"  {label} round {i + 1}/{rounds}: {seconds:.2f} s")
    return statistics.median(samples), samples


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_peak_rss_mb() -> float:
    """Peak resident memory of this process's own address space so far, in MiB.

    In a subprocess, ``ru_maxrss`` also counts the parent: Linux folds the parent's peak
    into the child's at ``exec`` (after ``fork`` or ``vfork``), so a worker started by a
    large benchmark process would report the benchmark's memory. ``VmHWM`` in
    ``/proc/self/status`` belongs to the address space ``exec`` created; elsewhere this
    falls back to ``peak_rss_mb``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return peak_rss_mb()


def log(message: str) -> None:
    """A progress line on stdout (flushed, so long runs show where they are)."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


@contextmanager
def scratch_postgres(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """Create an empty PostgreSQL database for the run; drop it afterwards."""
    name = f"lc_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        with admin.connect() as conn:
            # The name is generated above (hex only); quoted by the dialect all the same.
            conn.execute(text(f"CREATE DATABASE {quoted}"))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    finally:
        admin.dispose()


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` rounded for reports (0 when the denominator is 0)."""
    return round(numerator / denominator, 3) if denominator else 0.0


def emit_result(
    benchmark: str,
    figures: Mapping[str, Any],
    targets: Mapping[str, Any],
    met: Mapping[str, bool],
) -> None:
    """Print the final line: one JSON object with the figures, targets and what was met."""
    line = json.dumps(
        {
            "benchmark": benchmark,
            "figures": dict(figures),
            "targets": dict(targets),
            "met": dict(met),
        },
        sort_keys=False,
    )
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
