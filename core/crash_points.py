"""Test hooks where a run can be killed, so tests prove a rerun ends as if uninterrupted.

In ``core`` because every layer has such points (connectors waiting on a provider, the
engine between its steps) and ``core`` is the one package all of them may import.
"""

from __future__ import annotations

import os


def crash_point(phase: str, store: str = "request") -> None:
    """Test hook: die here (exit 137, no cleanup) when LIFECYCLE_TEST_CRASH_AT names this point.

    Honoured only with LIFECYCLE_TEST_HOOKS=1, so a stray variable in production does
    nothing. Used to prove that a rerun after a crash at any step ends as if uninterrupted;
    LIFECYCLE_TEST_TRACE names a file that collects every point passed (where a crash
    campaign can kill a run: ``tests.crash_campaign``).
    """
    if os.environ.get("LIFECYCLE_TEST_HOOKS") != "1":
        return
    point = f"{phase}:{store}"
    trace = os.environ.get("LIFECYCLE_TEST_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as fh:
            fh.write(point + "\n")
    if os.environ.get("LIFECYCLE_TEST_CRASH_AT") == point:
        os._exit(137)
