"""``lifecycle package open``: an access package becomes readable files for the subject.

Round trips with a passphrase and with an X25519 key (tables as JSON and CSV with the
columns as exported, S3 objects byte for byte, every version), and what must not happen:
a wrong secret, an altered package, a hostile name or a link writes nothing, anywhere.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import stat
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from cli.main import app
from connectors.base import ExportItem, Findings, TargetFinding
from connectors.s3.export import export_objects
from connectors.sql.export import json_safe
from core.package import (
    PassphraseRecipient,
    X25519Recipient,
    generate_keypair,
    load_public_key,
    write_package,
)

PASSPHRASE = "a long passphrase for the subject"
REQUEST_ID = "req_00000000000000ab"
EMAIL = "robin.quill@example.com"
PHOTO_OLD = bytes(range(256)) * 3
PHOTO_NEW = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)
TIE_NOTE = "another version has the same last-modified time: which is newer is unknown"
CONTRACT = "Vertrag für Robin Quill\n".encode()

_ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "email": EMAIL,
        "name": "Robin Quißl",
        "joined": datetime(2021, 3, 4, 10, 15, tzinfo=UTC),
        "balance": Decimal("12.50"),
        "avatar": b"\x00\x01\xff",
        "newsletter": True,
        "phone": None,
    },
]
_ORDERS = [{"id": i, "customer_id": 1, "note": f'order {i}, "quoted"\nline'} for i in (7, 8)]


def _sql_items() -> list[ExportItem]:
    """Rows as ``connectors.sql.export.export_rows`` yields them (``json_safe`` values)."""
    rows = [
        ExportItem("crm", "customers", ("contact",), {k: json_safe(v) for k, v in r.items()})
        for r in _ROWS
    ]
    orders = [
        ExportItem("crm", "orders", ("order_history",), {k: json_safe(v) for k, v in r.items()})
        for r in _ORDERS
    ]
    return rows + orders


def _s3_items() -> list[ExportItem]:
    """Objects exported by ``export_objects`` from a versioned bucket (moto, in-process)."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="attachments")
        client.put_bucket_versioning(
            Bucket="attachments", VersioningConfiguration={"Status": "Enabled"}
        )
        old = client.put_object(Bucket="attachments", Key="tickets/1/photo.png", Body=PHOTO_OLD)
        new = client.put_object(Bucket="attachments", Key="tickets/1/photo.png", Body=PHOTO_NEW)
        doc = client.put_object(Bucket="attachments", Key="tickets/1/contract.txt", Body=CONTRACT)
        keys = (
            ("tickets/1/photo.png", old["VersionId"], False),
            ("tickets/1/photo.png", new["VersionId"], False),
            ("tickets/1/contract.txt", doc["VersionId"], False),
        )
        findings = Findings("files", (TargetFinding("attachments", keys, ("support",)),))
        return list(export_objects(client, "files", findings))


def _package(tmp_path: Path, items: list[ExportItem], recipient: Any = None) -> Path:
    recipient = recipient or PassphraseRecipient(PASSPHRASE.encode())
    manifest = {"request_id": REQUEST_ID, "stores_searched": ["crm", "files"]}
    info = write_package(items, manifest, tmp_path / "exports", recipient)
    return Path(info.location)


def _passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase.txt"
    path.write_text(PASSPHRASE + "\n")
    return path


def _open(package: Path, out: Path, *secret: str, extra: tuple[str, ...] = ()) -> Any:
    return CliRunner().invoke(
        app, ["package", "open", str(package), *secret, "--out", str(out), *extra]
    )


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _check_tables(out: Path) -> None:
    customers = json.loads((out / "tables/crm/customers.json").read_text())
    assert customers == [{k: json_safe(v) for k, v in r.items()} for r in _ROWS]
    orders = json.loads((out / "tables/crm/orders.json").read_text())
    assert orders == _ORDERS
    with (out / "tables/crm/customers.csv").open(encoding="utf-8-sig", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    assert header == list(_ROWS[0])  # the columns as exported, in their order
    assert len(rows) == 1
    assert dict(zip(header, rows[0], strict=True)) == {
        "id": "1",
        "email": EMAIL,
        "name": "Robin Quißl",
        "joined": "2021-03-04T10:15:00+00:00",
        "balance": "12.50",
        "avatar": "AAH/",
        "newsletter": "true",
        "phone": "",
    }
    with (out / "tables/crm/orders.csv").open(encoding="utf-8-sig", newline="") as fh:
        assert list(csv.DictReader(fh)) == [{k: str(v) for k, v in r.items()} for r in _ORDERS]


def _check_objects(out: Path) -> None:
    bucket = out / "objects/files/attachments/tickets/1"
    # Both photo versions were written within the same second: S3 dates have whole seconds,
    # so which is newer is unknown, and objects.json says so.
    photos = {
        (bucket / "photo.png").read_bytes(),
        (bucket / "photo (older version 1).png").read_bytes(),
    }
    assert photos == {PHOTO_NEW, PHOTO_OLD}
    assert (bucket / "contract.txt").read_bytes() == CONTRACT
    index = json.loads((out / "objects.json").read_text())
    notes = {o["key"]: o["note"] for o in index if o["note"]}
    assert notes in ({}, {"tickets/1/photo.png": TIE_NOTE})  # {}: the puts fell in 2 seconds
    assert sorted(o["file"] for o in index) == [
        "objects/files/attachments/tickets/1/contract.txt",
        "objects/files/attachments/tickets/1/photo (older version 1).png",
        "objects/files/attachments/tickets/1/photo.png",
    ]
    assert {o["key"] for o in index} == {"tickets/1/photo.png", "tickets/1/contract.txt"}


def test_round_trip_with_a_passphrase(tmp_path: Path) -> None:
    package = _package(tmp_path, _sql_items() + _s3_items())
    out = tmp_path / "for-subject"
    result = _open(package, out, "--passphrase-file", str(_passphrase_file(tmp_path)))
    assert result.exit_code == 0, result.output
    _check_tables(out)
    _check_objects(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["request_id"] == REQUEST_ID
    assert manifest["counts"] == {"crm": {"customers": 1, "orders": 2}, "files": {"attachments": 3}}
    readme = (out / "README.txt").read_text()
    assert REQUEST_ID in readme and "tables/crm/customers.csv" in readme
    assert "crm.customers: 1 row(s)" in result.output
    assert "files/attachments: 3 object file(s)" in result.output
    assert "next:" in result.output
    assert EMAIL not in result.output  # counts and paths, never contents
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.rglob("*") if p.is_file())
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left


def test_round_trip_with_a_private_key(tmp_path: Path) -> None:
    public_path, _ = generate_keypair(tmp_path / "keys" / "subject.key")
    recipient = X25519Recipient(load_public_key(public_path))
    package = _package(tmp_path, _sql_items() + _s3_items(), recipient)
    out = tmp_path / "for-subject"
    result = _open(package, out, "--key", str(tmp_path / "keys" / "subject.key"), extra=("--json",))
    assert result.exit_code == 0, result.output
    _check_tables(out)
    _check_objects(out)
    summary = json.loads(result.output)
    assert summary["request_id"] == REQUEST_ID
    assert summary["files"] == len(_tree(out))


@pytest.mark.parametrize("wrong", ["passphrase", "key-for-passphrase", "other-key"])
def test_a_wrong_secret_writes_nothing(tmp_path: Path, wrong: str) -> None:
    public_path, _ = generate_keypair(tmp_path / "right.key")
    other_key = tmp_path / "other.key"
    generate_keypair(other_key)
    if wrong == "other-key":
        package = _package(tmp_path, _sql_items(), X25519Recipient(load_public_key(public_path)))
        secret = ("--key", str(other_key))
    elif wrong == "key-for-passphrase":
        package = _package(tmp_path, _sql_items())
        secret = ("--key", str(other_key))
    else:
        package = _package(tmp_path, _sql_items())
        bad = tmp_path / "bad.txt"
        bad.write_text("not the passphrase\n")
        secret = ("--passphrase-file", str(bad))
    out = tmp_path / "for-subject"
    result = _open(package, out, *secret)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "error:" in result.output
    assert not out.exists()


def test_an_altered_package_is_refused(tmp_path: Path) -> None:
    package = _package(tmp_path, _sql_items() + _s3_items())
    data = bytearray(package.read_bytes())
    data[len(data) // 2] ^= 0x01
    package.write_bytes(bytes(data))
    out = tmp_path / "for-subject"
    result = _open(package, out, "--passphrase-file", str(_passphrase_file(tmp_path)))
    assert result.exit_code == 1
    assert "altered" in result.output
    assert not out.exists()


def _object_item(
    key: str,
    bucket: str = "attachments",
    body: bytes = b"x",
    modified: str = "2024-01-01T00:00:00+00:00",
) -> ExportItem:
    data = {
        "bucket": bucket,
        "key": key,
        "version_id": "null",
        "size": len(body),
        "last_modified": modified,
        "content_type": "text/plain",
        "metadata": {},
        "body_base64": base64.b64encode(body).decode(),
    }
    return ExportItem("files", bucket, ("support",), data)


@pytest.mark.parametrize(
    "hostile",
    [
        _object_item("../../escaped.txt"),
        _object_item("tickets/../../../escaped.txt"),
        _object_item("/tmp/escaped.txt"),
        _object_item("tickets//double"),
        ExportItem("../..", "customers", (), {"id": 1}),
        ExportItem("crm", "../../escaped", (), {"id": 1}),
    ],
    ids=["dotdot", "inner-dotdot", "absolute", "empty-segment", "store", "table"],
)
def test_a_name_that_would_leave_the_folder_is_refused(tmp_path: Path, hostile: ExportItem) -> None:
    """The package is authentic (the exporter wrote it) but a name in it is not a safe path:
    nothing is written, neither in the output folder nor beside it."""
    package = _package(tmp_path, [*_sql_items(), hostile])
    work = tmp_path / "work"
    work.mkdir()
    out = work / "a" / "for-subject"
    secret = _passphrase_file(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = _open(package, out, "--passphrase-file", str(secret))
    assert result.exit_code == 1
    assert "nothing was written" in result.output
    assert "escaped" not in result.output  # the key is not echoed: it may be personal data
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/escaped.txt").exists()


def test_the_newest_version_takes_the_name(tmp_path: Path) -> None:
    versions = [
        _object_item("photo.png", body=b"old", modified="2024-01-01T00:00:00+00:00"),
        _object_item("photo.png", body=b"newest", modified="2024-03-01T00:00:00+00:00"),
        _object_item("photo.png", body=b"middle", modified="2024-02-01T00:00:00+00:00"),
    ]
    package = _package(tmp_path, versions)
    out = tmp_path / "out"
    result = _open(package, out, "--passphrase-file", str(_passphrase_file(tmp_path)))
    assert result.exit_code == 0, result.output
    assert _tree(out / "objects/files/attachments") == {
        "photo.png": b"newest",
        "photo (older version 1).png": b"middle",
        "photo (older version 2).png": b"old",
    }


def test_keys_that_clash_get_distinct_files(tmp_path: Path) -> None:
    """A key that is also a folder of another key, and keys differing only in case."""
    items = [
        _object_item("a", body=b"file a"),
        _object_item("a/b", body=b"file a/b"),
        _object_item("Readme.TXT", body=b"upper"),
        _object_item("readme.txt", body=b"lower"),
        _object_item("folder/", body=b""),
    ]
    package = _package(tmp_path, items)
    out = tmp_path / "out"
    result = _open(package, out, "--passphrase-file", str(_passphrase_file(tmp_path)))
    assert result.exit_code == 0, result.output
    tree = _tree(out / "objects/files/attachments")
    assert tree == {
        "a (2)": b"file a",
        "a/b": b"file a/b",
        "Readme.TXT": b"upper",
        "readme (2).txt": b"lower",
    }
    index = {o["key"]: o for o in json.loads((out / "objects.json").read_text())}
    assert index["folder/"]["file"] is None and "folder marker" in index["folder/"]["note"]


def test_a_non_empty_folder_needs_force(tmp_path: Path) -> None:
    package = _package(tmp_path, _sql_items())
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    secret = ("--passphrase-file", str(_passphrase_file(tmp_path)))
    result = _open(package, out, *secret)
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert _tree(out) == {"keep.txt": b"mine"}
    result = _open(package, out, *secret, extra=("--force",))
    assert result.exit_code == 0, result.output
    assert (out / "keep.txt").read_bytes() == b"mine"  # only the package's own entries
    assert (out / "tables/crm/customers.json").exists()


def test_force_replaces_links_without_following_them(tmp_path: Path) -> None:
    """A link named like an output entry is removed, never written through."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("untouched")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tables").symlink_to(outside, target_is_directory=True)
    (out / "README.txt").symlink_to(outside / "precious.txt")
    package = _package(tmp_path, _sql_items())
    result = _open(
        package, out, "--passphrase-file", str(_passphrase_file(tmp_path)), extra=("--force",)
    )
    assert result.exit_code == 0, result.output
    assert _tree(outside) == {"precious.txt": b"untouched"}
    assert not (out / "tables").is_symlink() and (out / "tables/crm/orders.json").is_file()
    assert not (out / "README.txt").is_symlink()


@pytest.mark.parametrize("args", [[], ["--passphrase-file", "p.txt", "--key", "k.pem"]])
def test_exactly_one_secret_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    package = _package(tmp_path, _sql_items())
    for name in ("p.txt", "k.pem"):
        (tmp_path / name).write_text("x")
    args = [a if not a.endswith((".txt", ".pem")) else str(tmp_path / a) for a in args]
    out = tmp_path / "out"
    result = _open(package, out, *args)
    assert result.exit_code == 2
    assert "--passphrase-file FILE or --key FILE" in result.output
    assert not out.exists()


def test_a_package_without_records_says_so(tmp_path: Path) -> None:
    package = _package(tmp_path, [])
    out = tmp_path / "out"
    result = _open(package, out, "--passphrase-file", str(_passphrase_file(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "nothing about the subject was found" in result.output
    assert sorted(_tree(out)) == ["README.txt", "manifest.json"]
