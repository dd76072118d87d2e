"""``lifecycle server start`` from a shell that sourced the service's own env file.

The env file sets the local S3's and local provider's endpoints; a restart from that shell
must still start them (not take them for external ones, which left the served demo with
no S3 and no provider), while endpoints the operator set to something else are kept.
"""

from __future__ import annotations

from pathlib import Path

from demo.provider import ENDPOINT_ENV
from ops import server


def _inst(tmp_path: Path) -> server.Instance:
    return server.instance({"LIFECYCLE_DATA_DIR": str(tmp_path), "LIFECYCLE_SERVE_S3_PORT": "4666"})


def test_the_services_own_endpoints_are_dropped(tmp_path: Path) -> None:
    inst = _inst(tmp_path)
    sourced = {
        "LIFECYCLE_S3_ENDPOINT": inst.s3_endpoint + "/",
        ENDPOINT_ENV: inst.provider_endpoint,
        "PATH": "/usr/bin",
    }
    assert server._without_own_endpoints(sourced, inst) == {"PATH": "/usr/bin"}


def test_endpoints_elsewhere_are_kept(tmp_path: Path) -> None:
    inst = _inst(tmp_path)
    external = {
        "LIFECYCLE_S3_ENDPOINT": "https://s3.eu-central-1.amazonaws.com",
        ENDPOINT_ENV: "https://mail.example.com/lifecycle",
        # the local S3's address on another port is another service, not this one's
        "LIFECYCLE_S3_ENDPOINT_OTHER": inst.s3_endpoint,
    }
    assert server._without_own_endpoints(external, inst) == external
    other_port = {"LIFECYCLE_S3_ENDPOINT": "https://127.0.0.1:9999"}
    assert server._without_own_endpoints(other_port, inst) == other_port
