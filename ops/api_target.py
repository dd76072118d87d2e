"""Which Prefect API a command that runs a flow uses, settled before Prefect is imported.

In this order (``resolve``):

1. ``explicit``: ``PREFECT_API_URL`` is set (in the environment, in Prefect's settings if
   this process imported them already, or in the active Prefect profile): used as it is.
2. ``served``: the local service (``make serve``, ``ops.server``) runs in this data folder
   and its API answers with its credentials: the variables its sourceable env file sets
   (``ops.serve_env.shell_env``) are set here, as if the user had sourced it (Prefect's from
   the file; the product's only where the caller has not set them).
3. ``local``: a local API shared by commands (``ops.local_api``), started by the first
   command that needs it (it says so) and stopped after it has been idle a while. Started
   or reused when Prefect is first imported, not before: a command that ends earlier (a
   usage or configuration error, a refusal) starts nothing.
   ``LIFECYCLE_LOCAL_API=1`` marks this process as using it: nobody can answer a paused
   run there (no worker, no UI anyone watches), so approvals count as unreachable
   (``reviewer_reachable``).
4. ``temporary``: ``LIFECYCLE_LOCAL_API_IDLE_MINUTES=0``, or the local API failed to start
   (said in one line): Prefect's own temporary server for this command, as before.

Only ``os.environ`` is changed, and Prefect's global settings refreshed when Prefect is
already imported (tests, forked processes), so the flow engine sees the same target.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import shlex
import sys
import tomllib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from ops import local_api, procs
from ops import serve_env as se
from ops.prefect_api import api_state

Say = Callable[[str], None]
Kind = Literal["explicit", "served", "local", "temporary"]

LOCAL_MARKER_ENV = "LIFECYCLE_LOCAL_API"
_SERVED_SERVER_MARKER = ("server", "start", "--host", se.HOST)


@dataclass(frozen=True)
class Target:
    """Where this process's flow runs go (``api_url`` None: Prefect's temporary server)."""

    kind: Kind
    api_url: str | None


def uses_local_api(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process's flow runs go to the local API commands share."""
    return (os.environ if environ is None else environ).get(LOCAL_MARKER_ENV) == "1"


def reviewer_reachable(environ: Mapping[str, str] | None = None) -> bool:
    """Whether someone could answer a run that pauses for approval: a Prefect server is
    configured and it is not the local API commands share (``LIFECYCLE_LOCAL_API=1``)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("PREFECT_API_URL")) and not uses_local_api(environ)


def _profile_api_url(environ: MutableMapping[str, str]) -> str | None:
    """``PREFECT_API_URL`` of the active Prefect profile, read from its file (no Prefect)."""
    home = Path(environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    path = Path(environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = environ.get("PREFECT_PROFILE") or profiles.get("active")
    section = profiles.get("profiles", {}).get(name, {}) if isinstance(name, str) else {}
    url = section.get("PREFECT_API_URL") if isinstance(section, dict) else None
    return url if isinstance(url, str) and url.strip() else None


def explicit_url(environ: MutableMapping[str, str]) -> tuple[str | None, str]:
    """The API URL the caller configured, if any, and where: ``env``, ``settings`` (Prefect
    imported already in this process, e.g. a test harness: only when ``environ`` is this
    process's own) or ``profile``."""
    if environ.get("PREFECT_API_URL", "").strip():
        return environ["PREFECT_API_URL"], "env"
    if environ is os.environ and "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        value = PREFECT_API_URL.value()
        if value:
            return str(value), "settings"
    return _profile_api_url(environ), "profile"


def parse_env_file(text: str) -> dict[str, str]:
    """The ``export NAME=value`` lines of a file written by ``ops.serve_env.env_file_text``."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("export "):
            continue
        name, sep, rest = line.removeprefix("export ").partition("=")
        if sep and name.isidentifier():
            words = shlex.split(rest) if rest.strip() else [""]
            values[name] = words[0] if words else ""
    return values


def served_env(environ: MutableMapping[str, str]) -> dict[str, str] | None:
    """What the served stack's env file sets, when its server runs and answers with its
    credentials; None otherwise (nothing served here, stopped, or another server)."""
    paths = se.serve_paths(environ)
    if not paths.env_file.is_file():
        return None
    pid = procs.read_pid(paths.pid_file("server"))
    if pid is None or not procs.process_alive(pid, _SERVED_SERVER_MARKER):
        return None
    try:
        values = parse_env_file(paths.env_file.read_text(encoding="utf-8"))
    except OSError:
        return None
    url, auth = values.get("PREFECT_API_URL"), values.get("PREFECT_API_AUTH_STRING")
    if not url or not auth or api_state(url, auth) != "ok":
        return None
    return values


def reach_server(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether a Prefect server with runs to act on is at hand: ``PREFECT_API_URL`` set, or
    the served stack of this data folder running (its settings are applied, as sourcing its
    env file would). Never starts one: commands that cancel or resume runs need the server
    those runs live on, not a new one."""
    environ = os.environ if environ is None else environ
    if environ.get("PREFECT_API_URL"):
        return True
    values = served_env(environ)
    if values is None:
        return False
    _apply(environ, values)
    _refresh()
    return True


def _apply(environ: MutableMapping[str, str], values: dict[str, str]) -> None:
    """Set ``values`` as sourcing them would, except product settings the caller set."""
    for name, value in values.items():
        if name.startswith("PREFECT_") or not environ.get(name):
            environ[name] = value
    for name in ("NO_PROXY", "no_proxy"):  # the loopback API never goes through a proxy
        hosts = [h.strip() for h in environ.get(name, "").split(",") if h.strip()]
        environ[name] = ",".join(
            [*hosts, *(h for h in ("127.0.0.1", "localhost") if h not in hosts)]
        )


def _refresh() -> None:
    """Settings read before ``environ`` changed are read again: ours, and Prefect's when it
    is imported already (tests, forked processes)."""
    from config.settings import get_settings

    get_settings.cache_clear()
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def _local_env(api: local_api.LocalApi, environ: MutableMapping[str, str]) -> dict[str, str]:
    client = se.client_env(environ, api.paths, api.port, api.credentials)
    values = se.shell_env(client)
    values.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", None)  # nothing watches heartbeats here
    return values


def start_local(say: Say, environ: MutableMapping[str, str]) -> str | None:
    """Start or reuse the local API and point ``environ`` at it; its URL (None: it did not
    start, said in one line, and Prefect's temporary server is used)."""
    try:
        api = local_api.ensure(say, environ)
    except (local_api.LocalApiError, OSError) as e:
        say(f"the local Prefect API did not start ({e}): using a temporary one for this command")
        return None
    _apply(environ, _local_env(api, environ))
    _refresh()
    local_api.touch_at_exit(api.paths)
    return api.api_url


class _StartOnImport(importlib.abc.MetaPathFinder):
    """Starts the local API when Prefect is first imported, and only then: a command that
    stops earlier (a usage or configuration error, a refusal) starts nothing."""

    def __init__(self, say: Say, environ: MutableMapping[str, str]) -> None:
        self.say = say
        self.environ = environ

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name == "prefect" or name.startswith("prefect."):
            with suppress(ValueError):
                sys.meta_path.remove(self)  # once
            start_local(self.say, self.environ)
        return None  # the import itself goes on as usual


def resolve(say: Say, environ: MutableMapping[str, str] | None = None) -> Target:
    """Settle this process's Prefect API (see the module docstring) and set it in
    ``environ`` (``os.environ``); call before Prefect is imported.

    The local API is only arranged here (``LIFECYCLE_LOCAL_API=1`` set): it is started or
    reused when Prefect is first imported (``_StartOnImport``), so ``api_url`` is None.
    """
    environ = os.environ if environ is None else environ
    url, source = explicit_url(environ)
    if url:
        if source == "profile":  # the same value, where the CLI's own checks look
            environ["PREFECT_API_URL"] = url
        return Target("explicit", url)
    served = served_env(environ)
    if served is not None:
        environ.pop(LOCAL_MARKER_ENV, None)
        _apply(environ, served)
        _refresh()
        return Target("served", served["PREFECT_API_URL"])
    if local_api.idle_minutes(environ) == 0 or "prefect" in sys.modules:
        return Target("temporary", None)  # (imported already: too late to point it elsewhere)
    environ[LOCAL_MARKER_ENV] = "1"
    if not any(isinstance(f, _StartOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _StartOnImport(say, environ))
    return Target("local", None)
