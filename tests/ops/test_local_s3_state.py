"""The served demo's local S3 keeps its objects and its CA across a stop and start.

One ``python -m ops.local_s3`` sequence is shared by the module (each start costs a few
seconds): seeded, stopped with SIGTERM, started again, then killed with SIGKILL after
deletes and started again. The other tests run in-process.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from demo.s3_server import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalS3
from demo.s3_state import SNAPSHOT, S3State, StateError
from demo.seed_s3 import ARCHIVE_BUCKET, DEMO_BUCKETS, TICKETS_BUCKET, seed_s3
from ops import demo_setup, local_s3, procs

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 120.0


def _free_port() -> int:
    port = 21000 + os.getpid() % 9000
    while not procs.port_free("127.0.0.1", port):
        port += 1
    return port


class S3Process:
    """``python -m ops.local_s3`` as ``lifecycle server start`` runs it, restartable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.tls = local_s3.tls_dir(root)
        self.state = local_s3.state_dir(root)
        self.log = root / "s3.log"
        self.endpoint = local_s3.endpoint(self.port)
        self.child: subprocess.Popen[bytes] | None = None

    @property
    def ca(self) -> Path:
        return local_s3.ca_file(self.tls)

    def start(self) -> None:
        args = local_s3.command(sys.executable, self.port, self.tls, self.state)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.child = procs.spawn(args, env, self.root, self.log, self.root / "s3.pid")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not local_s3.ready(self.endpoint, ca=self.ca):
            assert self.child.poll() is None, procs.tail(self.log)
            assert time.monotonic() < deadline, procs.tail(self.log)
            time.sleep(0.2)

    def stop(self, *, kill: bool = False) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        if kill:
            os.kill(child.pid, signal.SIGKILL)
        else:
            procs.terminate(child.pid, grace=30)
        child.wait(timeout=60)

    def client(self) -> S3Client:
        session = boto3.session.Session(
            aws_access_key_id=DUMMY_ACCESS_KEY,
            aws_secret_access_key=DUMMY_SECRET_KEY,
            region_name="eu-central-1",
        )
        client: S3Client = session.client(
            "s3",
            endpoint_url=self.endpoint,
            verify=str(self.ca),
            config=Config(s3={"addressing_style": "path"}),
        )
        return client


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Process]:
    server = S3Process(tmp_path_factory.mktemp("s3-state"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _listing(client: S3Client) -> dict[str, list[tuple[str, str, bool, bool]]]:
    """Per bucket: (key, version id, latest, delete marker) of every version, sorted."""
    out: dict[str, list[tuple[str, str, bool, bool]]] = {}
    for bucket in DEMO_BUCKETS:
        page = client.list_object_versions(Bucket=bucket)
        out[bucket] = sorted(
            [(v["Key"], v["VersionId"], v["IsLatest"], False) for v in page.get("Versions", [])]
            + [
                (m["Key"], m["VersionId"], m["IsLatest"], True)
                for m in page.get("DeleteMarkers", [])
            ]
        )
    return out


def _settings(client: S3Client, retained: str, held: str) -> dict[str, Any]:
    """What a restart must keep besides the objects: policies, locks, lifecycle, encryption."""
    out: dict[str, Any] = {}
    for bucket in DEMO_BUCKETS:
        out[bucket] = (
            client.get_bucket_policy(Bucket=bucket)["Policy"],
            client.get_bucket_versioning(Bucket=bucket).get("Status"),
            client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
            _rules(client, bucket),
        )
    assert any(out[bucket][3] for bucket in DEMO_BUCKETS)  # some rules to keep
    out["lock"] = client.get_object_lock_configuration(Bucket=ARCHIVE_BUCKET)[
        "ObjectLockConfiguration"
    ]
    for key in (retained, held):  # moto 5.2.5 answers GetObjectRetention with a 500
        head = client.head_object(Bucket=ARCHIVE_BUCKET, Key=key)
        out[key] = tuple(
            head.get(f"ObjectLock{field}")
            for field in ("Mode", "RetainUntilDate", "LegalHoldStatus")
        )
    assert out[retained][0] == "COMPLIANCE" and out[held][2] == "ON"
    return out


def _rules(client: S3Client, bucket: str) -> Any:
    try:
        return client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as e:
        assert e.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration"
        return None


def _erase(client: S3Client, key: str) -> int:
    """Delete every version and delete marker of ``key`` in the tickets bucket; how many."""
    page = client.list_object_versions(Bucket=TICKETS_BUCKET, Prefix=key)
    ids = [
        {"Key": v["Key"], "VersionId": v["VersionId"]}
        for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
    ]
    done = client.delete_objects(Bucket=TICKETS_BUCKET, Delete={"Objects": ids})  # type: ignore[typeddict-item]
    assert not done.get("Errors")
    return len(ids)


def test_objects_policy_and_lock_survive_a_stop_and_start(served: S3Process) -> None:
    client = served.client()
    data = seed_s3(client, customer_ids=[1, 2, 3, 4], subject_customer_id=2)
    erased = data.subject_keys[TICKETS_BUCKET][0]
    assert _erase(client, erased) >= 2  # versions, and the delete marker the seed left
    before, settings = _listing(client), _settings(client, data.retained_key, data.held_key)
    assert any(marker for *_, marker in before[TICKETS_BUCKET])  # delete markers to keep
    body = client.get_object(Bucket=ARCHIVE_BUCKET, Key=data.held_key)["Body"].read()
    client.close()
    ca = served.ca.read_bytes()

    served.stop()
    assert "local S3 stopped" in procs.tail(served.log)
    snapshot = served.state / SNAPSHOT
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert stat.S_IMODE(served.state.stat().st_mode) == 0o700
    served.start()

    assert served.ca.read_bytes() == ca  # clients holding the CA keep trusting the server
    assert "local S3: restored 2 buckets" in procs.tail(served.log)
    client = served.client()
    after = _listing(client)
    assert after == before
    assert not [k for k, *_ in after[TICKETS_BUCKET] if k == erased]  # erased stays erased
    assert _settings(client, data.retained_key, data.held_key) == settings
    assert client.get_object(Bucket=ARCHIVE_BUCKET, Key=data.held_key)["Body"].read() == body
    locked = next(v for k, v, *_ in after[ARCHIVE_BUCKET] if k == data.retained_key)
    with pytest.raises(ClientError, match="AccessDenied"):  # COMPLIANCE retention still holds
        client.delete_object(Bucket=ARCHIVE_BUCKET, Key=data.retained_key, VersionId=locked)
    client.close()


def test_a_kill_9_keeps_deletes_and_loses_no_more_than_the_last_second(
    served: S3Process,
) -> None:
    """Uploads are saved within about a second; deletes before they are answered, so even a
    kill -9 right after one does not bring the object back."""
    client = served.client()
    listed = _listing(client)[TICKETS_BUCKET]
    keys = sorted(k for k, _, latest, marker in listed if latest and not marker)  # visible
    assert len(keys) >= 2, "the shared server holds the seeded objects"
    _erase(client, keys[-1])
    client.put_object(Bucket=TICKETS_BUCKET, Key="tickets/new/note.txt", Body=b"written late")
    time.sleep(2.5)  # the saver writes within about a second of a change
    client.delete_object(Bucket=TICKETS_BUCKET, Key=keys[0])  # a delete marker, then at once:
    client.close()

    served.stop(kill=True)
    served.start()

    client = served.client()
    left = {k for k, *_ in _listing(client)[TICKETS_BUCKET]}
    assert keys[-1] not in left  # erased more than 2 s before the kill
    assert keys[0] in left
    with pytest.raises(ClientError, match="NoSuchKey"):  # hidden by its marker just before it
        client.get_object(Bucket=TICKETS_BUCKET, Key=keys[0])
    assert client.get_object(Bucket=TICKETS_BUCKET, Key="tickets/new/note.txt")["Body"].read()
    client.close()


def test_a_damaged_snapshot_refuses_to_start_with_one_clear_line(tmp_path: Path) -> None:
    state = local_s3.state_dir(tmp_path)
    state.mkdir(mode=0o700)
    snapshot = state / SNAPSHOT
    snapshot.write_bytes(b"not a snapshot\n\x00\x01")
    snapshot.chmod(0o600)
    args = local_s3.command(sys.executable, _free_port(), local_s3.tls_dir(tmp_path), state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"local S3 not started: cannot restore the local S3's saved state {snapshot}"
    )
    assert "refusing to start" in lines[0] and f"remove {state}" in lines[0]
    assert snapshot.read_bytes() == b"not a snapshot\n\x00\x01"  # kept for the operator


def _saved(folder: Path) -> Path:
    """A snapshot of one bucket with one object, written by a LocalS3 with state in folder."""
    with LocalS3(state_dir=folder) as s3:
        client = s3.client()
        client.create_bucket(
            Bucket="kept", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
        )
        client.put_object(Bucket="kept", Key="a.txt", Body=b"a")
        client.close()
    return folder / SNAPSHOT


def test_another_moto_version_or_an_open_file_is_refused_before_anything_changes(
    tmp_path: Path,
) -> None:
    path = _saved(tmp_path / "state")
    header, body = path.read_bytes().split(b"\n", 1)
    path.write_bytes(header.replace(b"moto=", b"moto=0.0.0-") + b"\n" + body)
    with pytest.raises(StateError, match=r"written by another version \(format=1 moto=0\.0\.0-"):
        S3State(path.parent).restore()
    path.write_bytes(header + b"\n" + body[:-1] + b"X")
    with pytest.raises(StateError, match=r"damaged \(checksum mismatch\)"):
        S3State(path.parent).restore()
    path.write_bytes(header + b"\n" + body)
    path.chmod(0o666)
    with pytest.raises(StateError, match="not private"):
        S3State(path.parent).restore()
    path.chmod(0o600)
    assert S3State(path.parent).restore().startswith("restored 1 buckets (1 versions")


def test_the_served_demo_seeds_its_s3_once_with_its_crm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """S3 is seeded with the CRM when the CRM file is new, for the subject the CRM names,
    and never again: a later erasure is not undone by the next start."""
    from demo import customers  # what `lifecycle demo` seeds

    assert demo_setup.DEMO_CUSTOMERS == customers.DEMO_CUSTOMERS
    assert demo_setup.s3_customer_ids(1000) == customers.s3_customer_ids(1000)
    monkeypatch.setattr(demo_setup, "DEMO_CUSTOMERS", 12)  # cheap: the same code, fewer rows
    monkeypatch.setattr(demo_setup, "DEMO_S3_CUSTOMERS", 4)
    said: list[str] = []
    with LocalS3(tls_dir=tmp_path / "tls") as s3:
        tls = s3.tls
        assert tls is not None
        env = demo_setup.s3_env(s3.endpoint_url, tls.ca)
        crm = demo_setup.seed_demo_crm(said.append, env)
        assert crm is not None and crm.is_file()
        client = s3.client()
        prefixes = {k.split("/")[1] for k, *_ in _listing(client)[TICKETS_BUCKET]}
        assert prefixes == {"4", "5", "6", "7"}  # 4 customers around the subject, id 6 of 12
        _erase(client, "tickets/6/ticket-1/")
        before = _listing(client)
        assert demo_setup.seed_demo_crm(said.append, env) is None  # the CRM exists: nothing
        assert _listing(client) == before
        client.close()
    assert said[0].startswith("seeded the demo S3 with the objects of 4 customers")
    assert said[1].startswith("seeded the demo CRM (it did not exist yet)")
    assert len(said) == 2
