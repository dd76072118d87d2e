"""``python -m ops.local_s3 --port P``: the demo's local S3 server, serving until terminated.

``lifecycle server start`` runs it next to the Prefect server when the demo inventory's S3
store has no endpoint, so flow runs started from the UI reach a real S3 API. It is
``demo.s3_server.LocalS3`` (moto over HTTP on 127.0.0.1) in a process of its own, with the
demo inventory's two buckets created empty and set up as AWS sets up new buckets: the
versioned ticket attachments and the Object Lock archive. moto keeps everything in memory:
a restart starts empty again. SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import urllib.request
from collections.abc import Sequence
from types import FrameType

DEMO_BUCKETS = {"demo-ticket-attachments": False, "demo-legal-archive": True}
"""Bucket -> Object Lock, as ``demo.seed_s3`` creates them (and the demo inventory names them)."""


def ready(endpoint: str, timeout: float = 2.0) -> bool:
    """Whether the server at ``endpoint`` answers and lists every demo bucket.

    moto accepts anonymous ListBuckets; the proxy handler is empty so that no configured
    HTTP proxy is asked for a loopback address.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{endpoint}/", timeout=timeout) as response:
            body = response.read().decode(errors="replace")
    except OSError:  # HTTPError included: not ready yet
        return False
    return all(f"<Name>{bucket}</Name>" in body for bucket in DEMO_BUCKETS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.local_s3", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)

    from demo.s3_server import LocalS3
    from demo.seed_s3 import _ensure_bucket

    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with LocalS3(port=args.port) as s3:
        client = s3.client()
        try:
            for bucket, object_lock in DEMO_BUCKETS.items():
                _ensure_bucket(client, bucket, s3.region, object_lock=object_lock)
        finally:
            client.close()
        print(f"local S3 serving on {s3.endpoint_url}: {', '.join(DEMO_BUCKETS)}", flush=True)
        while not stop.wait(1.0):
            pass
    print("local S3 stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
