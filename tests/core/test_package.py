"""Encrypted access packages: round trips, wrong secrets, tampering, and no plaintext on disk."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from pathlib import Path

import pytest

from connectors.base import ExportItem
from core.package import (
    CHUNK_BYTES,
    MAGIC,
    PackageError,
    PassphraseRecipient,
    X25519Recipient,
    generate_keypair,
    load_private_key,
    load_public_key,
    read_package,
    write_package,
)

EMAIL = "Robin.Quill@Example.com"
PASSPHRASE = b"correct horse battery staple"


def _items(n: int = 500) -> list[ExportItem]:
    """Enough incompressible data to span several chunks, over two stores and three tables."""
    items = [
        ExportItem("crm", "customers", ("contact",), {"id": 1, "email": EMAIL, "name": "Robin"})
    ]
    for i in range(n):
        items.append(
            ExportItem(
                "crm",
                "orders",
                ("order_history", "contact"),
                {"id": i, "note": os.urandom(300).hex()},
            )
        )
    items.append(ExportItem("shop", "carts", ("order_history",), {"id": 7, "total_cents": 1250}))
    return items


def _write(tmp_path: Path, recipient: PassphraseRecipient | X25519Recipient) -> Path:
    info = write_package(_items(), {"request_id": "req_00000000000000ab"}, tmp_path, recipient)
    return Path(info.location)


def _chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split a package into its prefix (magic and header) and its framed chunks."""
    (length,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
    pos = len(MAGIC) + 4 + length
    prefix, chunks = data[:pos], []
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos : pos + 4 + size])
        pos += 4 + size
    return prefix, chunks


def test_passphrase_round_trip_with_manifest_counts(tmp_path: Path) -> None:
    info = write_package(
        _items(), {"request_id": "req_00000000000000ab"}, tmp_path, PassphraseRecipient(PASSPHRASE)
    )
    path = Path(info.location)

    assert path == tmp_path / "req_00000000000000ab.lcpkg"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert info.size == path.stat().st_size > CHUNK_BYTES  # several chunks
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.records == 502
    assert info.counts == {"crm": {"customers": 1, "orders": 500}, "shop": {"carts": 1}}
    assert info.categories == {"contact": 501, "order_history": 501}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left

    manifest, records = read_package(path, PASSPHRASE.decode())
    assert manifest["request_id"] == "req_00000000000000ab"
    assert manifest["format"] == 1 and manifest["records"] == 502
    assert manifest["counts"] == info.counts and manifest["categories"] == info.categories
    got = list(records)
    assert len(got) == 502
    assert got[0] == {
        "store": "crm",
        "target": "customers",
        "categories": ["contact"],
        "data": {"id": 1, "email": EMAIL, "name": "Robin"},
    }
    assert got[-1]["store"] == "shop" and got[1]["categories"] == ["order_history", "contact"]


def test_x25519_round_trip(tmp_path: Path) -> None:
    public_path, public_text = generate_keypair(tmp_path / "keys" / "subject.key")
    assert stat.S_IMODE((tmp_path / "keys" / "subject.key").stat().st_mode) == 0o600
    assert public_path.read_text().strip() == public_text
    public = load_public_key(public_path)
    path = _write(tmp_path / "out", X25519Recipient(public))

    manifest, records = read_package(path, load_private_key(tmp_path / "keys" / "subject.key"))
    assert manifest["records"] == 502
    assert sum(1 for _ in records) == 502


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k")
    before = (tmp_path / "k").read_bytes()
    with pytest.raises(PackageError, match="already exists"):
        generate_keypair(tmp_path / "k")
    assert (tmp_path / "k").read_bytes() == before


def test_wrong_secrets_fail(tmp_path: Path) -> None:
    by_passphrase = _write(tmp_path / "a", PassphraseRecipient(PASSPHRASE))
    with pytest.raises(PackageError, match="does not open"):
        read_package(by_passphrase, "wrong passphrase")
    with pytest.raises(PackageError, match="opens with a passphrase"):
        read_package(by_passphrase, load_private_key(_keypair(tmp_path, "x")))

    public_path, _ = generate_keypair(tmp_path / "right.key")
    by_key = _write(tmp_path / "b", X25519Recipient(load_public_key(public_path)))
    with pytest.raises(PackageError, match="does not open"):
        read_package(by_key, load_private_key(_keypair(tmp_path, "other")))
    with pytest.raises(PackageError, match="opens with an X25519 private key"):
        read_package(by_key, PASSPHRASE)


def _keypair(tmp_path: Path, name: str) -> Path:
    generate_keypair(tmp_path / f"{name}.key")
    return tmp_path / f"{name}.key"


@pytest.mark.parametrize(
    "tamper",
    ["drop_last_chunk", "cut_mid_chunk", "swap_chunks", "repeat_chunk", "flip_bit", "header"],
)
def test_tampering_is_detected(tmp_path: Path, tamper: str) -> None:
    path = _write(tmp_path, PassphraseRecipient(PASSPHRASE))
    prefix, chunks = _chunks(path.read_bytes())
    assert len(chunks) >= 3
    if tamper == "drop_last_chunk":
        data = prefix + b"".join(chunks[:-1])
    elif tamper == "cut_mid_chunk":
        data = prefix + b"".join(chunks)[:-100]
    elif tamper == "swap_chunks":
        data = prefix + b"".join([chunks[1], chunks[0], *chunks[2:]])
    elif tamper == "repeat_chunk":
        data = prefix + b"".join([*chunks, chunks[-1]])
    elif tamper == "flip_bit":
        body = bytearray(b"".join(chunks))
        body[len(body) // 2] ^= 0x01
        data = prefix + bytes(body)
    else:  # a changed header field is bound into every chunk's associated data
        assert b'"chunk_bytes":65536' in prefix
        data = prefix.replace(b'"chunk_bytes":65536', b'"chunk_bytes":65537') + b"".join(chunks)
    path.write_bytes(data)
    with pytest.raises(PackageError):
        _manifest, records = read_package(path, PASSPHRASE)
        list(records)


def test_no_plaintext_in_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, PassphraseRecipient(PASSPHRASE))
    raw = path.read_bytes().lower()
    for needle in (EMAIL.lower(), b"robin".decode(), "customers", "order_history"):
        assert needle.encode() not in raw


def test_empty_package_round_trips(tmp_path: Path) -> None:
    info = write_package(
        [], {"request_id": "req_00000000000000cd"}, tmp_path, PassphraseRecipient(PASSPHRASE)
    )
    manifest, records = read_package(Path(info.location), PASSPHRASE)
    assert manifest["records"] == 0 and manifest["counts"] == {} and list(records) == []


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    bad = ExportItem("crm", "customers", ("contact",), {"blob": object()})
    with pytest.raises(PackageError, match="cannot be exported") as caught:
        write_package(
            [*_items(5), bad],
            {"request_id": "req_00000000000000ef"},
            tmp_path,
            PassphraseRecipient(PASSPHRASE),
        )
    assert EMAIL not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
