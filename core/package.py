"""Encrypted access packages: what a data subject receives in answer to an access request.

A package is JSON lines (one per exported record, then the manifest) compressed with gzip
and encrypted with AES-256-GCM in chunks, so any size streams through bounded memory.
Each chunk's nonce is a random base nonce XOR its index; the associated data binds the
header, the chunk index and a final flag, so a reordered, dropped, appended or truncated
chunk fails to decrypt. The random content key is wrapped for one recipient: a passphrase
(scrypt) or an X25519 public key (ephemeral-static ECDH, HKDF-SHA256).

File layout: ``MAGIC``, a 4-byte header length, the header (JSON: format, chunk size,
base nonce, wrapped key), then chunks, each a 4-byte length and the ciphertext with tag.
Packages are written through a ``Destination``; ``LocalFolder`` writes a 0600 file
atomically. An S3 destination only needs ``create`` returning an ``Upload`` (multipart).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.package_keys import (
    PackageError,
    PassphraseRecipient,
    Recipient,
    Secret,
    X25519Recipient,
    b64,
    generate_keypair,
    load_private_key,
    load_public_key,
    parse_public_key,
    unb64,
    unwrap_key,
    wrap_key,
)
from core.private_files import FILE_MODE, private_dir

__all__ = [
    "CHUNK_BYTES",
    "MAGIC",
    "Destination",
    "LocalFolder",
    "PackageError",
    "PackageInfo",
    "PassphraseRecipient",
    "Recipient",
    "Secret",
    "Upload",
    "X25519Recipient",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "parse_public_key",
    "read_package",
    "write_package",
]

MAGIC = b"LCPKG1\n"
FORMAT_VERSION = 1
CHUNK_BYTES = 64 * 1024
SUFFIX = ".lcpkg"
_TAG = 16
_NONCE = 12
_MAX_HEADER = 64 * 1024


class ExportRecord(Protocol):
    """One exported record; ``connectors.base.ExportItem`` is one (core stays independent)."""

    @property
    def store(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def categories(self) -> tuple[str, ...]: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


# -- destinations -------------------------------------------------------------------------


class Upload(Protocol):
    """A package being written; nothing is visible at the destination before ``commit``."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> str:
        """Make the package visible; returns its location (a path or URL)."""
        ...

    def abort(self) -> None: ...


class Destination(Protocol):
    """Where packages go: a local folder now, an S3 prefix later."""

    def create(self, name: str) -> Upload: ...


class _LocalUpload:
    def __init__(self, final: Path) -> None:
        self._final = final
        self._tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # whatever the umask (or an older leftover's mode)
        self._fh: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._fh.write(data)

    def commit(self) -> str:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self._final)  # atomic: a rerun replaces, never half-writes
        return str(self._final)

    def abort(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class LocalFolder:
    """A folder on this machine; created with mode 0700, packages written with mode 0600."""

    path: Path

    def create(self, name: str) -> Upload:
        if not name or "/" in name or name.startswith("."):
            raise PackageError("a package name must be a plain file name")
        try:
            private_dir(self.path)
            return _LocalUpload(self.path / name)
        except OSError as e:
            raise PackageError(f"cannot write to {self.path} ({e.strerror})") from e


# -- writing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageInfo:
    """What was written: where, its SHA-256 and size, and record counts (no contents)."""

    location: str
    sha256: str
    size: int
    records: int
    counts: Mapping[str, Mapping[str, int]]  # store -> target -> records
    categories: Mapping[str, int]  # category -> records


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return b64(bytes(value))
    raise TypeError(f"cannot export a value of type {type(value).__name__}")


def _line(payload: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(payload, default=_json_default, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise PackageError(f"a record cannot be exported: {e}") from None
    return text.encode() + b"\n"


def _chunk_aad(header_digest: bytes, index: int, final: bool) -> bytes:
    return header_digest + struct.pack(">QB", index, 1 if final else 0)


def _chunk_nonce(base: bytes, index: int) -> bytes:
    return (int.from_bytes(base, "big") ^ index).to_bytes(_NONCE, "big")


class _ChunkWriter:
    """Encrypts a byte stream in fixed-size chunks and hashes what it writes."""

    def __init__(self, upload: Upload, recipient: Recipient) -> None:
        self._upload = upload
        content_key = AESGCM.generate_key(bit_length=256)
        self._aead = AESGCM(content_key)
        self._base = os.urandom(_NONCE)
        header = {
            "format": FORMAT_VERSION,
            "cipher": "AES-256-GCM",
            "compression": "gzip",
            "chunk_bytes": CHUNK_BYTES,
            "nonce_base": b64(self._base),
            "recipient": wrap_key(content_key, recipient),
        }
        header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        self._digest = hashlib.sha256(MAGIC + header_bytes).digest()
        self._sha = hashlib.sha256()
        self.size = 0
        self._index = 0
        self._pending = bytearray()
        self._emit(MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes)

    def _emit(self, data: bytes) -> None:
        self._upload.write(data)
        self._sha.update(data)
        self.size += len(data)

    def _seal(self, plaintext: bytes, final: bool) -> None:
        nonce = _chunk_nonce(self._base, self._index)
        sealed = self._aead.encrypt(nonce, plaintext, _chunk_aad(self._digest, self._index, final))
        self._emit(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1

    def write(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) > CHUNK_BYTES:  # keep the tail: the final chunk is last
            self._seal(bytes(self._pending[:CHUNK_BYTES]), final=False)
            del self._pending[:CHUNK_BYTES]

    def finish(self) -> str:
        self._seal(bytes(self._pending), final=True)
        self._pending.clear()
        return self._sha.hexdigest()


def _as_destination(destination: Path | Destination) -> Destination:
    return LocalFolder(destination) if isinstance(destination, Path) else destination


def write_package(
    items: Iterable[ExportRecord],
    manifest: Mapping[str, Any],
    destination: Path | Destination,
    recipient: Recipient,
    *,
    name: str | None = None,
) -> PackageInfo:
    """Stream ``items`` into an encrypted package at ``destination`` (a folder or Destination).

    ``manifest`` (request id, anything else JSON) is completed with the format version,
    creation time and per store/target/category counts, and written after the records.
    The file is ``name`` (default: the manifest's ``request_id`` + ``.lcpkg``); nothing is
    visible at the destination until the whole package is written.
    """
    if name is None:
        request_id = manifest.get("request_id")
        name = f"{request_id or 'package-' + datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"
    upload = _as_destination(destination).create(name)
    try:
        writer = _ChunkWriter(upload, recipient)
        compressor = zlib.compressobj(level=6, wbits=31)  # wbits 31: gzip framing
        counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        categories: Counter[str] = Counter()
        total = 0
        for item in items:
            record = {
                "store": item.store,
                "target": item.target,
                "categories": list(item.categories),
                "data": dict(item.data),
            }
            writer.write(compressor.compress(_line({"record": record})))
            counts[item.store][item.target] += 1
            categories.update(item.categories)
            total += 1
        full_manifest = {
            **manifest,
            "format": FORMAT_VERSION,
            "created": manifest.get("created") or datetime.now(UTC).isoformat(),
            "records": total,
            "counts": {store: dict(targets) for store, targets in counts.items()},
            "categories": dict(categories),
        }
        writer.write(compressor.compress(_line({"manifest": full_manifest})))
        writer.write(compressor.flush())
        sha256 = writer.finish()
        location = upload.commit()
    except BaseException:
        upload.abort()
        raise
    return PackageInfo(
        location=location,
        sha256=sha256,
        size=writer.size,
        records=total,
        counts=full_manifest["counts"],
        categories=full_manifest["categories"],
    )


# -- reading ------------------------------------------------------------------------------


def _read_exact(fh: IO[bytes], n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise PackageError("the package is truncated")
    return data


def _open_header(fh: IO[bytes], secret: Secret) -> tuple[AESGCM, bytes, bytes, int]:
    if fh.read(len(MAGIC)) != MAGIC:
        raise PackageError("not a lifecycle package (bad magic)")
    (length,) = struct.unpack(">I", _read_exact(fh, 4))
    if length > _MAX_HEADER:
        raise PackageError("package header too large")
    header_bytes = _read_exact(fh, length)
    try:
        header = json.loads(header_bytes)
        if header["format"] != FORMAT_VERSION:
            raise PackageError(f"unsupported package format {header['format']}")
        base = unb64(header["nonce_base"], "nonce")
        chunk_bytes = int(header["chunk_bytes"])
        key = unwrap_key(header["recipient"], secret)
    except (ValueError, KeyError, TypeError) as e:
        raise PackageError("package header is malformed") from e
    return AESGCM(key), base, hashlib.sha256(MAGIC + header_bytes).digest(), chunk_bytes


def _plaintext_chunks(path: Path, secret: Secret) -> Iterator[bytes]:
    """Decrypted chunks in order; raises PackageError on any alteration or truncation."""
    with path.open("rb") as fh:
        aead, base, digest, chunk_bytes = _open_header(fh, secret)
        index = 0
        prefix = fh.read(4)
        if len(prefix) != 4:
            raise PackageError("the package is truncated")
        while True:
            (length,) = struct.unpack(">I", prefix)
            if length > chunk_bytes + _TAG:
                raise PackageError("the package is altered (chunk too large)")
            sealed = _read_exact(fh, length)
            prefix = fh.read(4)
            final = len(prefix) == 0  # the last chunk must carry the final flag
            if not final and len(prefix) != 4:
                raise PackageError("the package is truncated")
            try:
                yield aead.decrypt(
                    _chunk_nonce(base, index), sealed, _chunk_aad(digest, index, final)
                )
            except InvalidTag as e:
                raise PackageError(
                    f"the package is altered, reordered or truncated (chunk {index})"
                ) from e
            if final:
                return
            index += 1


def _lines(path: Path, secret: Secret) -> Iterator[dict[str, Any]]:
    decompressor = zlib.decompressobj(wbits=31)
    buffer = b""
    for chunk in _plaintext_chunks(path, secret):
        buffer += decompressor.decompress(chunk)
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield json.loads(line)
    buffer += decompressor.flush()
    if buffer.strip() or not decompressor.eof:
        raise PackageError("the package's content is incomplete")


def read_package(path: Path, secret: Secret) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The manifest and an iterator over the records of the package at ``path``.

    The whole file is authenticated (one streaming pass) before the manifest is returned;
    the records are then decrypted again as they are iterated, so memory stays bounded.
    """
    manifest: dict[str, Any] | None = None
    records = 0
    for line in _lines(path, secret):
        if "manifest" in line:
            manifest = line["manifest"]
        elif manifest is not None:
            raise PackageError("the package has records after its manifest")
        else:
            records += 1
    if manifest is None or manifest.get("records") != records:
        raise PackageError("the package's manifest is missing or does not match its records")

    def iterate() -> Iterator[dict[str, Any]]:
        for line in _lines(path, secret):
            if "record" in line:
                yield line["record"]

    return manifest, iterate()
