"""Runs whose process died are marked Crashed, so nothing looks Running for ever.

A flow run started by the worker emits ``prefect.flow-run.heartbeat`` every
``HEARTBEAT_SECONDS`` (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` in the worker's environment,
``ops.serve_env.client_env``). When its process is killed (the worker stopped with
``kill -9``, the machine lost), the heartbeats stop and the run would stay Running: the
register's request waits on a run nobody executes. The automation created here (Prefect's
documented zombie-flow automation; Prefect Cloud has it built in) marks such a run Crashed
``SILENCE_SECONDS`` after its last heartbeat. The failure automation in
``automations/notify-operators.yaml`` then notifies, and an operator retries the run: the
request goes on from its recorded progress (a decision given before the crash counts).

A run that suspends for approval stops its heartbeats on purpose: Suspended and Paused end
the silence window as the final states do. ``lifecycle server start`` ensures the
automation exists (once, by name, updated when an older version made it differently) every
time it starts the stack.
"""

from __future__ import annotations

import time
from typing import Any

from ops.prefect_api import request
from ops.serve_env import HEARTBEAT_SECONDS

NAME = "lifecycle-crash-unresponsive-runs"
PREFECT_DEFAULT_HEARTBEAT_SECONDS = 180
"""Prefect 3.9's own default: what a flow run started elsewhere (a ``lifecycle`` command run
against this server without sourcing its env file) beats at."""
SILENCE_SECONDS = PREFECT_DEFAULT_HEARTBEAT_SECONDS + 2 * HEARTBEAT_SECONDS
"""Eight missed beats of the worker's runs, and still more than one beat at Prefect's
default, so a healthy run started by another client is never marked Crashed."""
"""Five missed beats: generous for a busy two-core machine, short for an operator."""
_ENDS_SILENCE = (
    "prefect.flow-run.heartbeat",
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
    "prefect.flow-run.Suspended",
    "prefect.flow-run.Paused",
)


def automation() -> dict[str, Any]:
    """The automation's JSON, as ``POST /automations/`` takes it."""
    return {
        "name": NAME,
        "description": (
            "A flow run stopped sending heartbeats (its process died) without ending, "
            "suspending or pausing: mark it Crashed so it can be retried. Created by "
            "lifecycle server start."
        ),
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "after": ["prefect.flow-run.heartbeat"],
            "expect": list(_ENDS_SILENCE),
            "match": {"prefect.resource.id": "prefect.flow-run.*"},
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": SILENCE_SECONDS,
        },
        "actions": [
            {
                "type": "change-flow-run-state",
                "state": "CRASHED",
                "message": (
                    f"No heartbeat for {SILENCE_SECONDS} s: the run's process died. "
                    "Retry the run; a request goes on from its recorded progress."
                ),
            }
        ],
    }


_BUSY = (429, 503)  # Prefect's SQLite answers 503 "database is locked" while it starts up
_TRIES = 10


def _call(url: str, auth: str, body: Any = None, method: str | None = None) -> Any:
    """``request``, tried again (with a growing pause, ~30 s in all) while the server is busy."""
    for attempt in range(_TRIES):
        answer = request(url, auth, body, method=method)
        if answer[0] not in _BUSY or attempt == _TRIES - 1:
            return answer
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _current(found: dict[str, Any]) -> bool:
    """Whether an existing automation of this name has today's trigger and action."""
    wanted = automation()
    trigger, want = found.get("trigger") or {}, wanted["trigger"]
    return (
        trigger.get("within") == want["within"]
        and set(trigger.get("expect") or ()) == set(want["expect"])
        and [a.get("state") for a in found.get("actions") or ()] == ["CRASHED"]
    )


def ensure(api_url: str, auth: str) -> str | None:
    """Create the automation, or bring one of that name made by an older version up to date;
    ``"created"``, ``"updated"`` or None (already current).

    Raises OSError when the server does not answer, RuntimeError when it refuses.
    """
    status, found = _call(
        f"{api_url}/automations/filter", auth, {"automations": {"name": {"any_": [NAME]}}}
    )
    if status != 200:
        raise RuntimeError(f"listing automations answered HTTP {status}")
    existing = [a for a in found or [] if a.get("name") == NAME]
    if existing and _current(existing[0]):
        return None
    if existing:
        url = f"{api_url}/automations/{existing[0]['id']}"
        status, _ = _call(url, auth, automation(), method="PUT")
        done = "updated"
    else:
        status, _ = _call(f"{api_url}/automations/", auth, automation())
        done = "created"
    if status not in (200, 201, 204):
        raise RuntimeError(f"saving the {NAME} automation answered HTTP {status}")
    return done
