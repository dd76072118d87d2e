"""The work pool of the local service on its Prefect server (``ops.server``): created when
missing, its flow-run limit, the per-store task-run limits, its workers (their pid files,
names and log files) and which of them are online."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime

from ops import serve_env as se
from ops.prefect_api import request
from ops.serve_instance import Instance, Proc, Say, ServeError, instance
from ops.serve_launch import prefect_command, run_step


def ensure_pool(
    inst: Instance, creds: se.Credentials, env: dict[str, str], limit: int | None, say: Say
) -> None:
    """Create the process work pool if missing; give it ``limit`` as its concurrency limit
    (None: none), which the server applies over every worker on every machine."""
    url = f"{inst.api_url}/work_pools/{se.POOL}"
    status, pool = request(url, creds.auth_string)
    if status == 200:
        if pool.get("type") != "process":
            raise ServeError(f"work pool {se.POOL} exists with type {pool.get('type')!r}")
    else:
        say(f"creating the process work pool {se.POOL}")
        args = prefect_command("work-pool", "create", se.POOL, "--type", "process")
        run_step(inst, args, env, "work-pool", "creating the work pool")
        pool = {}
    if pool.get("concurrency_limit") != limit:
        body = {"concurrency_limit": limit}
        if request(url, creds.auth_string, body, method="PATCH")[0] != 204:
            raise ServeError(f"the Prefect server refused the concurrency limit of {se.POOL}")
        say(
            f"work pool {se.POOL}: "
            + (f"at most {limit} flow runs at once" if limit else "no run limit")
        )


def store_limits(inst: Instance, creds: se.Credentials, limit: int | None, say: Say) -> None:
    """A tag concurrency limit of ``limit`` task runs per inventory store (``store:<name>``),
    so many runs on many workers do not overrun one database; None removes them."""
    from config.loader import load_config

    stores = [store.name for store in load_config().inventory.stores]
    for store in stores:
        tag = f"{se.STORE_TAG_PREFIX}{store}"
        if limit is None:
            request(
                f"{inst.api_url}/concurrency_limits/tag/{tag}", creds.auth_string, method="DELETE"
            )
            continue
        body = {"tag": tag, "concurrency_limit": limit}
        if request(f"{inst.api_url}/concurrency_limits/", creds.auth_string, body)[0] not in (
            200,
            201,
        ):
            raise ServeError(f"the Prefect server refused the concurrency limit of store {store}")
    if limit is not None:
        say(f"stores {', '.join(stores)}: at most {limit} task runs at once each")


def workers_online(
    api_url: str, auth: str, names: Collection[str], since: datetime | None = None
) -> set[str]:
    """Which of the workers ``names`` the server has ONLINE, with a heartbeat after
    ``since`` if given (so a record left by a worker just stopped does not count)."""
    status, workers = request(f"{api_url}/work_pools/{se.POOL}/workers/filter", auth, {})
    online = set()
    for worker in workers if status == 200 and workers else []:
        beat = worker.get("last_heartbeat_time")
        if worker.get("name") not in names or worker.get("status") != "ONLINE" or not beat:
            continue
        when = datetime.fromisoformat(beat.replace("Z", "+00:00"))
        if since is None or when.replace(tzinfo=when.tzinfo or UTC) >= since:
            online.add(worker["name"])
    return online


def worker_proc(n: int) -> Proc:
    """Worker ``n`` (from 1): its pid and log file, and its name in Prefect as the marker."""
    label = "the worker" if n == 1 else f"worker {n}"
    marker = ("worker", "start", "--pool", se.POOL, "--name", se.worker_name(n))
    return Proc(se.worker_proc(n), label, marker)


def worker_procs(environ: Mapping[str, str]) -> list[Proc]:
    """Every worker ``status`` should show: those ``LIFECYCLE_SERVE_WORKERS`` asks for and
    any other with a pid file (started with a larger count), in order."""
    inst = instance(environ)
    wanted = range(1, se.worker_count(environ) + 1)
    return [worker_proc(n) for n in sorted({*wanted, *se.recorded_workers(inst.paths)})]
