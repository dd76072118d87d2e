"""One local service (``ops.server``): its state folder, ports and repository, the processes
it runs, what a start reports, and the error a failed start raises."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config.settings import PROJECT_ROOT, Settings
from core.errors import LifecycleError
from ops import local_provider, local_s3
from ops import serve_env as se

Say = Callable[[str], None]
"""Where a start says what it does, a line at a time."""

INTAKE_PORT_ENV = "LIFECYCLE_INTAKE_PORT"
DEFAULT_INTAKE_PORT: int = Settings.model_fields["intake_port"].default


@dataclass(frozen=True)
class Proc:
    """A process ``start`` runs: its name (pid and log file), label, and argv marker."""

    name: str
    label: str
    marker: tuple[str, ...]  # arguments it must have, so a reused pid is never signalled
    port_env: str = ""  # the variable that moves its port, named when the port is taken


class ServeError(LifecycleError):
    """Starting failed; ``details`` holds the log lines that say why."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Instance:
    """One local service: its state folder, ports and the repository it deploys (the
    checkout holding ``prefect.yaml``)."""

    paths: se.ServePaths
    port: int
    s3_port: int
    intake_port: int = DEFAULT_INTAKE_PORT
    provider_port: int = se.DEFAULT_PROVIDER_PORT
    repo: Path = PROJECT_ROOT

    @property
    def api_url(self) -> str:
        return se.api_url(self.port)

    @property
    def ui_url(self) -> str:
        return se.ui_url(self.port)

    @property
    def s3_endpoint(self) -> str:
        return local_s3.endpoint(self.s3_port)  # HTTPS, with a CA of its own

    @property
    def intake_url(self) -> str:
        return f"http://{se.HOST}:{self.intake_port}"

    @property
    def provider_endpoint(self) -> str:
        return local_provider.endpoint(self.provider_port)


def instance(environ: Mapping[str, str]) -> Instance:
    return Instance(
        paths=se.serve_paths(environ),
        port=se.port_setting(environ, se.PORT_ENV, se.DEFAULT_PORT),
        s3_port=se.port_setting(environ, se.S3_PORT_ENV, se.DEFAULT_S3_PORT),
        intake_port=se.port_setting(environ, INTAKE_PORT_ENV, DEFAULT_INTAKE_PORT),
        provider_port=se.port_setting(environ, se.PROVIDER_PORT_ENV, se.DEFAULT_PROVIDER_PORT),
    )


@dataclass
class StartReport:
    """What ``start`` did and where everything is."""

    inst: Instance
    credentials: se.Credentials
    new_credentials: bool
    pids: dict[str, int] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    deployments: list[str] = field(default_factory=list)
    s3_endpoint: str | None = None
    provider_endpoint: str | None = None
    webhook_secret: str = ""  # where the intake's webhook secret is: a file or a variable
    new_webhook_secret: bool = False
