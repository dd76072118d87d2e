"""``python -m ops.local_provider --port P --secret-file F --crm DB``: the served demo's provider.

``lifecycle server start`` runs it next to the local S3 when the demo configuration is
served and ``LIFECYCLE_NEWSLETTER_ENDPOINT`` is not set, so the demo inventory's processor
store ``newsletter`` (Example Mail) answers flow runs started from the UI. It is
``demo.processor_server.StubProvider`` (signed requests, idempotency keys, late
confirmation) in a process of its own on 127.0.0.1, plain HTTP (allowed for loopback only).

Its records: at start it reads the demo CRM SQLite file ``--crm`` (seeded by ``lifecycle
server start`` before this process starts) and subscribes the customers
``demo.provider.subscriber_records`` picks: the named subjects and every third customer,
by their example.com address. Nothing is written back to the CRM, and no address is
printed or logged. The stub keeps everything in memory: a restart reads the CRM again, so
subscribers erased there in the meantime stay gone, and the others keep their references.

The signing secret is read from ``--secret-file`` (mode 0600 in the state folder, made once
by ``ensure_secret``), never from the command line; the worker and its flow runs get the
same value in the variable the store's ``secret_env`` names. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

HOST = "127.0.0.1"


def endpoint(port: int) -> str:
    """The local provider's base URL: ``http://127.0.0.1:port``."""
    return f"http://{HOST}:{port}"


def command(python: str, port: int, secret_file: Path, crm: Path) -> list[str]:
    """The argv that starts the local provider on ``port``."""
    return [
        *(python, "-m", "ops.local_provider", "--port", str(port)),
        *("--secret-file", str(secret_file), "--crm", str(crm)),
    ]


def ensure_secret(path: Path) -> tuple[str, bool]:
    """The secret in ``path``, generated there (mode 0600, O_EXCL) when missing; made now or not."""
    from demo.provider import new_secret

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret(path), False
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(new_secret() + "\n")
    return read_secret(path), True


def read_secret(path: Path) -> str:
    """The secret in ``path`` (its mode narrowed to 0600 first if others could read it)."""
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise ValueError(f"{path} is empty (delete it to make a new secret)")
    return secret


def ready(url: str, secret: str) -> bool:
    """Whether the provider at ``url`` answers a request signed with ``secret``."""
    from demo.provider import ping

    return ping(url, secret)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.local_provider", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--secret-file", type=Path, required=True, help="the signing secret")
    parser.add_argument("--crm", type=Path, required=True, help="the demo CRM's SQLite file")
    args = parser.parse_args(argv)

    from demo.provider import stub_provider, subscriber_records

    if not args.crm.is_file():
        print(f"local provider: no demo CRM at {args.crm} (seed it first)", flush=True)
        return 2
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    records = subscriber_records(f"sqlite:///{args.crm.resolve()}")
    stub = stub_provider(read_secret(args.secret_file), records)
    stub.start(args.port)
    try:
        people = len({r.identities.get("email") for r in records})
        print(
            f"local provider serving on {stub.url}: {len(records)} subscriptions of "
            f"{people} demo customers (read from {args.crm}); erasures confirmed after "
            f"{stub.knobs.confirm_after_polls} status polls",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    finally:
        stub.stop()
    print("local provider stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
