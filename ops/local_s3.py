"""``python -m ops.local_s3 --port P [--tls-dir D] [--state-dir S]``: the demo's local S3.

``lifecycle server start`` runs it next to the Prefect server when the demo inventory's S3
store has no endpoint, so flow runs started from the UI reach a real S3 API. It is
``demo.s3_server.LocalS3`` (moto on 127.0.0.1) in a process of its own, with the demo
inventory's two buckets created (when new) and set up as the demo's transfer and posture check
expects (``demo.seed_s3.demo_posture``): versioned ticket attachments and an Object Lock
archive, default encryption and the public access block (as AWS sets up new buckets), the S3
lifecycle rules the retention policy renders, and a bucket policy refusing requests made
without TLS.

With ``--tls-dir`` (what ``lifecycle server start`` passes: ``tls_dir(state folder)``) it
speaks HTTPS with a local CA kept there (made at the first start, reused while valid; clients
trust ``ca.pem`` through ``AWS_CA_BUNDLE``), and the TLS-only policy is judged per request as
on AWS, so seeding, erasures and sweeps work under it. Without, it speaks plain HTTP and
leaves that policy out (moto would refuse every object call under it): a transfer check then
reports ``s3.tls-not-enforced``, truthfully.

With ``--state-dir`` (what ``lifecycle server start`` passes: ``state_dir(state folder)``)
the objects survive a restart (``demo.s3_state``): the saved state is restored before
serving; a delete is answered once saved, other changes are saved within about a second
and again on SIGTERM or SIGINT, so a ``kill -9`` loses at most the last second's other changes
and never brings an erased object back. A saved state that cannot be read is
named in one line and the server exits (status 2) instead of serving an empty S3. Without
it, moto keeps everything in memory and a restart starts empty. SIGTERM or SIGINT stops it
cleanly.
"""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
import threading
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from demo.seed_s3 import DEMO_BUCKETS

if TYPE_CHECKING:
    from demo.s3_server import LocalS3
    from demo.stores import BucketRules

HOST = "127.0.0.1"


def tls_dir(state_root: Path) -> Path:
    """Where the served local S3 keeps its CA and certificate, in the state folder."""
    return state_root / "s3-tls"


def state_dir(state_root: Path) -> Path:
    """Where the served local S3 keeps its objects across restarts, in the state folder."""
    return state_root / "s3-state"


def ca_file(folder: Path) -> Path:
    """The CA certificate clients trust (``AWS_CA_BUNDLE``) in a ``--tls-dir`` folder."""
    return folder / "ca.pem"


def setup_marker(folder: Path) -> Path:
    """Written in a ``--tls-dir`` folder once every bucket is set up (policies included).

    Listing the buckets is not enough to call the server ready: they are listed before their
    bucket policies and lifecycle rules are put, and a transfer check started in between would
    see a bucket without its TLS-only policy. It holds the server's endpoint, and a starting
    server removes it before it listens, so a marker left by another server never vouches.
    """
    return folder / "setup-done"


def endpoint(port: int, *, tls: bool = True) -> str:
    """The local S3's address: ``https://127.0.0.1:port`` (``http://`` without TLS)."""
    return f"{'https' if tls else 'http'}://{HOST}:{port}"


def command(python: str, port: int, folder: Path | None, state: Path | None = None) -> list[str]:
    """The argv that starts the local S3 on ``port``, over TLS when ``folder`` is given,
    keeping its objects in ``state`` when given."""
    args = [python, "-m", "ops.local_s3", "--port", str(port)]
    if folder is not None:
        args += ["--tls-dir", str(folder)]
    return [*args, "--state-dir", str(state)] if state is not None else args


def ready(url: str, timeout: float = 2.0, ca: Path | None = None) -> bool:
    """Whether the server at ``url`` answers, lists every demo bucket and has set them up.

    moto accepts anonymous ListBuckets; the proxy handler is empty so that no configured
    HTTP proxy is asked for a loopback address. An ``https`` URL is checked against the CA
    in ``ca`` (required: the server's CA is never in the system's trust store), and is ready
    only once the setup marker beside that CA is written.
    """
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if url.startswith("https://"):
        if ca is None or _marked(setup_marker(ca.parent)) != url:
            return False  # not written yet (still starting or setting up), or another's
        try:
            context = ssl.create_default_context(cafile=str(ca))
        except (OSError, ssl.SSLError):
            return False  # being replaced by a starting server
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(f"{url}/", timeout=timeout) as response:
            body = response.read().decode(errors="replace")
    except OSError:  # HTTPError and certificate errors included: not ready (yet)
        return False
    return all(f"<Name>{bucket}</Name>" in body for bucket in DEMO_BUCKETS)


def _marked(marker: Path) -> str | None:
    try:
        return marker.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def lifecycle_rules() -> BucketRules:
    """The S3 lifecycle rules the configured retention policy renders, per bucket."""
    from config.loader import load_config
    from demo.stores import lifecycle_rules as rendered

    return rendered(load_config(), datetime.now(UTC))


def _set_up(s3: LocalS3, rules: BucketRules, folder: Path | None) -> None:
    """Create the demo buckets when new, give them the demo's posture, write the marker."""
    from demo.seed_s3 import demo_posture, ensure_bucket

    client = s3.client()
    try:
        for bucket, object_lock in DEMO_BUCKETS.items():
            ensure_bucket(client, bucket, s3.region, object_lock=object_lock)
        demo_posture(client, rules, tls_only=folder is not None)
    finally:
        client.close()
    if folder is not None:
        setup_marker(folder).write_text(s3.endpoint_url + "\n", encoding="utf-8")
    posture = (
        "TLS only (bucket policy), CA " + str(ca_file(folder))
        if folder is not None
        else "plain HTTP, so no TLS-only bucket policy (start with --tls-dir for one)"
    )
    print(f"local S3 serving on {s3.endpoint_url}: {', '.join(DEMO_BUCKETS)}", flush=True)
    print(f"  encrypted, public access blocked, lifecycle rules set; {posture}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.local_s3", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument(
        "--tls-dir", type=Path, default=None, help="serve HTTPS, with a CA and certificate here"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="keep the objects here across restarts"
    )
    args = parser.parse_args(argv)

    from demo.s3_server import LocalS3
    from demo.s3_state import StateError

    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.tls_dir is not None:  # a marker left by an earlier server must not vouch for this one
        setup_marker(args.tls_dir).unlink(missing_ok=True)
    rules = lifecycle_rules()
    s3 = LocalS3(port=args.port, tls_dir=args.tls_dir, state_dir=args.state_dir)
    try:
        s3.start()
    except StateError as e:
        print(f"local S3 not started: {e}", file=sys.stderr, flush=True)
        return 2
    try:
        if s3.restored:
            print(f"local S3: {s3.restored}", flush=True)
        _set_up(s3, rules, args.tls_dir)
        while not stop.wait(1.0):
            pass
    finally:
        s3.stop()  # saves the state (with --state-dir) before the process ends
    print("local S3 stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
