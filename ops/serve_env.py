"""Where ``lifecycle server`` keeps its state, and the environment each of its processes gets.

The pure parts of running the product as a service, testable without starting anything:
the state folder's layout, the basic-auth credentials file, the server's and the clients'
environments and the sourceable ``env`` file.

Every Prefect process gets ``PREFECT_HOME`` inside the state folder and no ``PREFECT_*``
variable from the caller (a stray ``PREFECT_API_URL``, profile or ``PREFECT_API_KEY`` would
point it elsewhere or make the server answer 401), so the user's ``~/.prefect`` is never
read or written. The server keeps only its database (and UI API URL) settings from the caller,
the workers only their polling settings.

``LIFECYCLE_SERVE_WORKERS`` says how many process workers run (``worker_count``; each has
its own name, pid file and log: ``worker_proc``, ``worker_name``), ``LIFECYCLE_SERVE_RUN_LIMIT``
the work pool's concurrency limit, ``LIFECYCLE_SERVE_DATABASE`` the Prefect server's
PostgreSQL database (``database_url``).
"""

from __future__ import annotations

import os
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config.settings import DATA_DIR_ENV, data_dir_from
from core.errors import ConfigError

HOST = "127.0.0.1"
DEFAULT_PORT = 4200
DEFAULT_S3_PORT = 4566
DEFAULT_PROVIDER_PORT = 4580
"""The served demo's stub provider (the demo inventory's endpoint default names it too)."""
USER = "admin"
POOL = "lifecycle-local"
WORKER_NAME = "lifecycle-local-worker"

SERVE_DIR_ENV = "LIFECYCLE_SERVE_DIR"
SERVE_DIR_NAME = "prefect-serve"
"""The state folder's name in the data folder, when ``LIFECYCLE_SERVE_DIR`` is not set."""
PORT_ENV = "LIFECYCLE_SERVE_PORT"
S3_PORT_ENV = "LIFECYCLE_SERVE_S3_PORT"
PROVIDER_PORT_ENV = "LIFECYCLE_SERVE_PROVIDER_PORT"
WORKERS_ENV = "LIFECYCLE_SERVE_WORKERS"
MAX_WORKERS = 32
RUN_LIMIT_ENV = "LIFECYCLE_SERVE_RUN_LIMIT"
MAX_RUN_LIMIT = 1000
STORE_LIMIT_ENV = "LIFECYCLE_SERVE_STORE_LIMIT"
STORE_TAG_PREFIX = "store:"
"""Every store step's task run is tagged ``store:<name>`` (``flows.store_steps``)."""
DATABASE_ENV = "LIFECYCLE_SERVE_DATABASE"
PREFECT_DATABASE_URL = "PREFECT_API_DATABASE_CONNECTION_URL"
_SERVE_ONLY = (
    SERVE_DIR_ENV,
    PORT_ENV,
    S3_PORT_ENV,
    PROVIDER_PORT_ENV,
    WORKERS_ENV,
    RUN_LIMIT_ENV,
    STORE_LIMIT_ENV,
    DATABASE_ENV,
)
WORKER_PROC = "worker"
"""The first worker's pid and log file name (``worker.pid``); the n-th's is ``worker-n``."""
HEARTBEAT_SECONDS = 30
"""Flow-run heartbeats of the worker's runs (Prefect's minimum; one small event each)."""
# Path settings of the product, made absolute: flow runs read the same files wherever they run.
_PATH_SETTINGS = ("LIFECYCLE_DATA_DIR", "LIFECYCLE_CONFIG_DIR", "LIFECYCLE_KEY_FILE")
# What the server keeps from the caller: its database, and a UI API URL for a proxy or tunnel.
_SERVER_PASSTHROUGH = (
    "PREFECT_API_DATABASE_",
    "PREFECT_SERVER_DATABASE_",
    "PREFECT_UI_API_URL",
    "PREFECT_SERVER_UI_API_URL",
)
# What the workers keep from the caller: how often they ask for runs and how far ahead.
_WORKER_PASSTHROUGH = ("PREFECT_WORKER_QUERY_SECONDS", "PREFECT_WORKER_PREFETCH_SECONDS")
_LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class ServePaths:
    """The state folder: ``prefect-serve/`` in the data folder (``var/prefect-serve/`` by
    default) unless ``LIFECYCLE_SERVE_DIR`` says otherwise."""

    root: Path

    @property
    def home(self) -> Path:
        """PREFECT_HOME of the server, deploy and worker (Prefect's SQLite database too)."""
        return self.root / "home"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def lock_file(self) -> Path:
        return self.root / "serve.lock"

    def pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.root / f"{name}.log"

    @property
    def provider_secret(self) -> Path:
        """The served demo provider's signing secret (mode 0600, made once)."""
        return self.root / "provider-secret"


def serve_paths(environ: Mapping[str, str]) -> ServePaths:
    """The state folder for this environment, as an absolute path.

    ``LIFECYCLE_SERVE_DIR``, else ``prefect-serve/`` in the data folder ``environ`` selects
    (``LIFECYCLE_DATA_DIR``, else ``var/`` in the working directory).
    """
    value = environ.get(SERVE_DIR_ENV, "").strip()
    root = Path(value).expanduser() if value else data_dir_from(environ) / SERVE_DIR_NAME
    return ServePaths(root.resolve())


def port_setting(environ: Mapping[str, str], name: str, default: int) -> int:
    """A TCP port from the variable ``name``, or ``default`` when it is unset or empty."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"{name}={raw!r} is not a TCP port number (1-65535)")
    return int(raw)


def _bounded_int(environ: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{name}={raw!r} is not a whole number from {low} to {high}")
    return int(raw)


def worker_count(environ: Mapping[str, str]) -> int:
    """How many process workers ``start`` runs: ``LIFECYCLE_SERVE_WORKERS`` (1-32), else 1."""
    count = _bounded_int(environ, WORKERS_ENV, 1, MAX_WORKERS)
    return 1 if count is None else count


def run_limit(environ: Mapping[str, str]) -> int | None:
    """The work pool's concurrency limit: flow runs at once over all its workers, on every
    machine (``LIFECYCLE_SERVE_RUN_LIMIT``, 1-1000); None, unset, for no limit."""
    return _bounded_int(environ, RUN_LIMIT_ENV, 1, MAX_RUN_LIMIT)


def store_limit(environ: Mapping[str, str]) -> int | None:
    """Task runs at once per store, over every flow run, worker and machine
    (``LIFECYCLE_SERVE_STORE_LIMIT``, 1-1000): a Prefect tag limit on ``store:<name>`` for
    each store of the inventory; None, unset, for none."""
    return _bounded_int(environ, STORE_LIMIT_ENV, 1, MAX_RUN_LIMIT)


def worker_proc(n: int) -> str:
    """The pid and log file name of worker ``n`` (from 1): ``worker``, ``worker-2``, ..."""
    return WORKER_PROC if n == 1 else f"{WORKER_PROC}-{n}"


def worker_name(n: int) -> str:
    """The name worker ``n`` (from 1) has in Prefect: ``lifecycle-local-worker``, then
    ``lifecycle-local-worker-2`` ...: the first keeps the name a single worker always had."""
    return WORKER_NAME if n == 1 else f"{WORKER_NAME}-{n}"


def recorded_workers(paths: ServePaths) -> list[int]:
    """The numbers of the workers with a pid file in the state folder, in order: what
    ``stop`` and ``status`` look at, whatever ``LIFECYCLE_SERVE_WORKERS`` says now."""
    found = []
    for pid_file in paths.root.glob(f"{WORKER_PROC}*.pid"):
        _, dash, number = pid_file.stem.partition("-")
        if pid_file.stem == WORKER_PROC:
            found.append(1)
        elif dash and number.isdigit() and worker_proc(int(number)) == pid_file.stem:
            found.append(int(number))
    return sorted(found)


def database_url(environ: Mapping[str, str]) -> str | None:
    """The Prefect server's database URL, or None for SQLite in ``home/``.

    ``LIFECYCLE_SERVE_DATABASE=postgresql://[user[:password]@]host[:port]/database`` is the
    short form of ``PREFECT_API_DATABASE_CONNECTION_URL`` with the asyncpg driver Prefect
    needs; giving both is refused, as is any other kind of database (Prefect's server runs
    on SQLite or PostgreSQL only).
    """
    short = environ.get(DATABASE_ENV, "").strip()
    full = environ.get(PREFECT_DATABASE_URL, "").strip()
    if short and full:
        raise ConfigError(f"set {DATABASE_ENV} or {PREFECT_DATABASE_URL}, not both")
    if not short:
        return full or None
    scheme, sep, rest = short.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", "postgresql+asyncpg") or not rest:
        raise ConfigError(
            f"{DATABASE_ENV}: expected postgresql://[user@]host[:port]/database "
            "(the Prefect server's database; unset for SQLite in the state folder)"
        )
    return f"postgresql+asyncpg://{rest}"


def database_label(environ: Mapping[str, str], paths: ServePaths) -> str:
    """The Prefect server's database for display: its URL without a password, or the
    SQLite file. (ConfigError when the variables are invalid.)"""
    url = database_url(environ)
    if url is None:
        return f"sqlite ({paths.home / 'prefect.db'})"
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def api_url(port: int) -> str:
    return f"http://{HOST}:{port}/api"


def ui_url(port: int) -> str:
    return f"http://{HOST}:{port}"


# -- credentials ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """The server's basic-auth user and password, read from the credentials file."""

    user: str
    password: str = field(repr=False)
    path: Path

    @property
    def auth_string(self) -> str:
        """``user:password``: Prefect's auth string, and what the UI's login asks for."""
        return f"{self.user}:{self.password}"


def ensure_credentials(path: Path) -> tuple[Credentials, bool]:
    """The credentials in ``path``, generated there (mode 0600) when missing; created or not.

    Created with O_EXCL and mode 0600 in one call, so the password is never readable by
    others, not even for a moment, and two concurrent starts cannot write different ones.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_credentials(path), False
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"{USER}:{secrets.token_urlsafe(24)}\n")
    return read_credentials(path), True


def read_credentials(path: Path) -> Credentials:
    """Read ``user:password`` from ``path``, first narrowing its mode to 0600 if needed."""
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    text = path.read_text(encoding="utf-8").strip()
    user, colon, password = text.partition(":")
    if not colon or not user or not password or any(c.isspace() for c in text):
        raise ConfigError(f"{path}: expected one line 'user:password' (delete it to regenerate)")
    return Credentials(user=user, password=password, path=path)


# -- environments -----------------------------------------------------------------------------


def _without_prefect(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not k.startswith("PREFECT_")}


def server_command(python: str, port: int) -> list[str]:
    """``prefect server start`` on 127.0.0.1:``port``, through ``ops.prefect_sqlite``.

    That module turns SQLite's ``secure_delete`` on for every connection of the server
    process (Prefect has no setting for it), so rows Prefect deletes from its database are
    zeroed in the file; a PostgreSQL database is left as it is. ``python`` is the
    interpreter of the environment Prefect is installed in.
    """
    return [
        python,
        "-m",
        "ops.prefect_sqlite",
        "server",
        "start",
        "--host",
        HOST,
        "--port",
        str(port),
    ]


def server_env(
    environ: Mapping[str, str], paths: ServePaths, port: int, credentials: Credentials
) -> dict[str, str]:
    """The environment of ``prefect server start``: 127.0.0.1 only, basic auth, quiet logs.

    The database is SQLite in ``home/`` unless ``PREFECT_API_DATABASE_CONNECTION_URL`` (or
    another ``PREFECT_*_DATABASE_*`` setting, or ``LIFECYCLE_SERVE_DATABASE``: see
    ``database_url``) is set. ``PREFECT_UI_API_URL`` is always set:
    the UI otherwise calls the API on the default port whatever port the server listens on.
    """
    env = _without_prefect(environ)
    env.update({k: v for k, v in environ.items() if k.startswith(_SERVER_PASSTHROUGH)})
    for name in _SERVE_ONLY:
        env.pop(name, None)
    database = database_url(environ)
    if database is not None:
        env[PREFECT_DATABASE_URL] = database
    if not (env.get("PREFECT_UI_API_URL") or env.get("PREFECT_SERVER_UI_API_URL")):
        env["PREFECT_UI_API_URL"] = api_url(port)
    env.update(
        PREFECT_HOME=str(paths.home),
        PREFECT_SERVER_API_HOST=HOST,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_API_AUTH_STRING=credentials.auth_string,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    return _no_proxy(env)


def client_env(
    environ: Mapping[str, str],
    paths: ServePaths,
    port: int,
    credentials: Credentials,
    demo_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of ``prefect deploy``, the worker and the flow runs it starts.

    The product's ``LIFECYCLE_*`` settings pass through with their paths made absolute, and
    ``LIFECYCLE_DATA_DIR`` is always set (by default ``var/`` in the working directory of
    ``lifecycle server start``, as ``config.settings`` has it), so a flow run the worker
    starts in another directory uses the same data as the ``lifecycle`` command; ``demo_env``
    is added over them for the demo configuration (``ops.demo_setup``: the local S3's
    endpoint, CA and dummy credentials when it runs, the served demo's
    ``LIFECYCLE_CONFIG_DIR``). Of Prefect's settings only the workers' polling ones
    (``PREFECT_WORKER_QUERY_SECONDS``, ``PREFECT_WORKER_PREFETCH_SECONDS``) pass through.
    """
    env = _without_prefect(environ)
    env.update({k: v for k, v in environ.items() if k in _WORKER_PASSTHROUGH})
    for name in _SERVE_ONLY:
        env.pop(name, None)
    for name in _PATH_SETTINGS:
        if env.get(name):
            env[name] = str(Path(env[name]).expanduser().resolve())
    env[DATA_DIR_ENV] = str(data_dir_from(env))
    env.update(demo_env or {})
    env.update(
        PREFECT_API_URL=api_url(port),
        PREFECT_API_AUTH_STRING=credentials.auth_string,
        PREFECT_HOME=str(paths.home),
        # Heartbeats let ops.unresponsive_runs mark a run whose process died Crashed.
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY=str(HEARTBEAT_SECONDS),
    )
    return _no_proxy(env)


def _no_proxy(env: dict[str, str]) -> dict[str, str]:
    """Keep the loopback address out of any HTTP proxy the caller has configured."""
    for name in ("NO_PROXY", "no_proxy"):
        present = [h.strip() for h in env.get(name, "").split(",") if h.strip()]
        env[name] = ",".join([*present, *(h for h in _LOOPBACK if h not in present)])
    return env


def shell_env(
    client: Mapping[str, str], demo_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What a shell needs to use this server: Prefect's variables, the data and configuration
    folders, and ``demo_env`` (the local S3, the served demo's configuration).

    Only these: the caller's own secrets (``LIFECYCLE_MASTER_KEY``, AWS keys) never go into
    the file.
    """
    names = [
        "PREFECT_API_URL",
        "PREFECT_API_AUTH_STRING",
        "PREFECT_HOME",
        "LIFECYCLE_DATA_DIR",
        "LIFECYCLE_CONFIG_DIR",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY",  # runs started from the shell beat as the worker's
    ]
    values = {name: client[name] for name in names if name in client}
    values.update(demo_env or {})
    return values


def env_file_text(values: Mapping[str, str]) -> str:
    """A file a POSIX shell can source (``. <state folder>/env``)."""
    lines = ["# The local Prefect server's environment; use it with: . <this file>"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (replacing it atomically)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)
