"""The few calls ``lifecycle server`` makes to the Prefect REST API, with basic auth.

Plain urllib rather than Prefect's client: the client reads its settings (API URL, auth
string) from the process, and this process only manages servers, it is not a client of one.
No HTTP proxy is used: the server is on the loopback address.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from ops.serve_env import POOL

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(
    url: str,
    auth: str | None = None,
    body: Any = None,
    timeout: float = 5.0,
    method: str | None = None,
) -> Any:
    """(status, JSON payload or None) of a GET, or of a POST when ``body`` is given
    (``method`` overrides, e.g. PUT).

    ``auth`` is Prefect's auth string (``user:password``). Raises OSError when nothing answers.
    """
    data = None if body is None else json.dumps(body).encode()
    verb = method or ("GET" if data is None else "POST")
    req = urllib.request.Request(url, data=data, method=verb)
    req.add_header("Content-Type", "application/json")
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with _OPENER.open(req, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, None
    return status, json.loads(raw) if raw else None


def api_state(api_url: str, auth: str) -> str:
    """``down``, ``starting``, ``open`` (no credentials needed!), ``refused`` or ``ok``."""
    version = f"{api_url}/admin/version"
    try:
        if request(f"{api_url}/health", timeout=2.0)[0] != 200:
            return "starting"
        if request(version)[0] != 401:  # /health is open by design; the rest must not be
            return "open"
        return "ok" if request(version, auth)[0] == 200 else "refused"
    except OSError:
        return "down"


def _post_list(api_url: str, auth: str, path: str) -> list[dict[str, Any]]:
    status, payload = request(f"{api_url}/{path}", auth, {})
    return list(payload) if status == 200 and payload else []


def deployments(api_url: str, auth: str) -> list[str]:
    """The names of every deployment, sorted."""
    return sorted(d["name"] for d in _post_list(api_url, auth, "deployments/filter"))


def worker_online(api_url: str, auth: str, since: datetime | None = None) -> bool:
    """Whether a worker of the pool is online, with a heartbeat after ``since`` if given.

    ``since`` keeps a record left ONLINE by a worker that was just stopped from counting
    for the one just started.
    """
    for worker in _post_list(api_url, auth, f"work_pools/{POOL}/workers/filter"):
        beat = worker.get("last_heartbeat_time")
        if worker.get("status") != "ONLINE" or not beat:
            continue
        when = datetime.fromisoformat(beat.replace("Z", "+00:00"))
        if since is None or when.replace(tzinfo=when.tzinfo or UTC) >= since:
            return True
    return False
