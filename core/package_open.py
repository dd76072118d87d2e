"""Open an access package into a folder the subject can read.

Each table becomes ``tables/<store>/<table>.json`` (a list of rows, values as exported) and
``.csv`` (the same columns, UTF-8 with a byte-order mark so spreadsheets read accents);
each object version with its content becomes a file of its original bytes under
``objects/<store>/<bucket>/<key>``. The newest version of a key takes the key's name, older
versions ``name (older version N).ext`` beside it; a name that would clash with a folder or
another file (also when only its case differs) gets `` (2)``, `` (3)`` ... ``objects.json``
maps every object version to its file, ``manifest.json`` is the package's own manifest and
``README.txt`` says what is inside.

A package is authenticated as a whole before anything is written (``read_package``), so a
wrong secret or an altered file writes nothing. Names come from the package, so a hostile
one is refused before anything is written: stores, tables and buckets must be plain names,
object keys relative paths without ``.``/``..``/empty segments. Everything is written into
a fresh staging folder inside ``out`` (files created exclusively, never through a link) and
moved into place at the end; on any failure the staging folder is removed.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from core.package import read_package
from core.package_keys import PackageError, Secret
from core.private_files import DIR_MODE, FILE_MODE

__all__ = ["OUTPUT_ENTRIES", "BucketOutput", "OpenedPackage", "TableOutput", "open_package"]

OUTPUT_ENTRIES = ("README.txt", "manifest.json", "objects.json", "tables", "objects")
"""What ``open_package`` writes at the top of the output folder (and ``force`` replaces)."""

_NAME = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_$.-]{0,127}$")
_OBJECT_FIELDS = frozenset({"bucket", "key", "version_id", "size", "last_modified"})
_MAX_SEGMENT = 255  # bytes: the usual file-name limit
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class TableOutput:
    """One table written: its rows, columns and categories, and its two files."""

    store: str
    table: str
    rows: int
    columns: tuple[str, ...]
    categories: tuple[str, ...]
    json_file: str
    csv_file: str


@dataclass(frozen=True)
class BucketOutput:
    """One bucket's objects: versions written as files, versions exported without content."""

    store: str
    bucket: str
    written: int
    without_content: int


@dataclass(frozen=True)
class OpenedPackage:
    """What ``open_package`` wrote (counts and relative paths, never contents)."""

    out: Path
    request_id: str | None
    created: str | None
    tables: tuple[TableOutput, ...]
    buckets: tuple[BucketOutput, ...]
    files: int


@dataclass
class _Table:
    columns: dict[str, None] = field(default_factory=dict)
    categories: dict[str, None] = field(default_factory=dict)
    rows: int = 0


@dataclass
class _Object:
    index: int  # position among the package's records
    store: str
    bucket: str
    data: Mapping[str, Any]
    parts: tuple[str, ...] | None  # path segments of the key; None: nothing to write
    file: PurePosixPath | None = None
    note: str | None = None


def _name(value: object, what: str, index: int) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise PackageError(f"record {index}: the {what} is not a plain name; nothing was written")
    return value


def _key_parts(key: object, index: int) -> tuple[str, ...]:
    """The key's path segments; PackageError (without the key) when it is not a safe path."""
    problem = None
    if not isinstance(key, str):
        problem = "is not text"
    elif not key.strip("/"):
        problem = "is empty"
    elif key.startswith("/"):
        problem = "is an absolute path"
    else:
        parts = tuple(key.removesuffix("/").split("/"))
        if any(p in ("", ".", "..") for p in parts):
            problem = "has an empty, '.' or '..' segment"
        elif any("\0" in p or len(p.encode()) > _MAX_SEGMENT for p in parts):
            problem = "has a segment no file can be named after"
        else:
            return parts
    raise PackageError(
        f"record {index}: an object key {problem}, so it cannot be written safely inside the "
        "output folder; nothing was written"
    )


def _is_object(record: Mapping[str, Any]) -> bool:
    """An object version exported from a bucket (``connectors/s3/export.py``'s shape)."""
    data = record.get("data")
    return (
        isinstance(data, dict)
        and data.keys() >= _OBJECT_FIELDS
        and ("body_base64" in data or "body_omitted" in data)
        and data.get("bucket") == record.get("target")
    )


def _plan(records: Iterator[dict[str, Any]]) -> tuple[dict[tuple[str, str], _Table], list[_Object]]:
    """First pass: every table's columns and every object's target, all names checked."""
    tables: dict[tuple[str, str], _Table] = {}
    objects: list[_Object] = []
    for index, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not isinstance(record.get("data"), dict):
            raise PackageError(f"record {index} is malformed; nothing was written")
        store = _name(record.get("store"), "store name", index)
        target = _name(record.get("target"), "table or bucket name", index)
        data: dict[str, Any] = record["data"]
        if _is_object(record):
            key = data["key"]
            parts = _key_parts(key, index)
            has_body = isinstance(data.get("body_base64"), str)
            obj = _Object(index, store, target, data, parts)
            if not has_body:
                obj.parts, obj.note = None, str(data.get("body_omitted") or "no content exported")
            elif key.endswith("/") and not data["body_base64"]:
                obj.parts, obj.note = None, "folder marker: no content"
            objects.append(obj)
            continue
        table = tables.setdefault((store, target), _Table())
        table.columns.update(dict.fromkeys(data))
        categories = record.get("categories") or []
        table.categories.update(dict.fromkeys(str(c) for c in categories))
        table.rows += 1
    return tables, objects


def _numbered(path: PurePosixPath, label: str) -> PurePosixPath:
    suffix = path.suffix if path.stem else ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f"{stem} ({label}){suffix}")


def _modified(obj: _Object) -> str:
    return str(obj.data.get("last_modified") or "")


def _place_objects(objects: list[_Object]) -> None:
    """Give each object version with content a file path that clashes with nothing."""
    writable = [o for o in objects if o.parts is not None]
    base = {id(o): PurePosixPath("objects", o.store, o.bucket, *(o.parts or ())) for o in writable}
    dirs = {str(p).casefold() for path in base.values() for p in path.parents}
    files: set[str] = set()
    versions: dict[PurePosixPath, list[_Object]] = {}
    for obj in writable:
        versions.setdefault(base[id(obj)], []).append(obj)
    for path in sorted(versions):
        newest_first = sorted(versions[path], key=_modified, reverse=True)  # stable on ties
        times = [_modified(o) for o in newest_first]
        for rank, obj in enumerate(newest_first):
            if times.count(times[rank]) > 1:  # S3 dates have whole seconds: order unknown
                obj.note = (
                    "another version has the same last-modified time: which is newer is unknown"
                )

            wanted = path if rank == 0 else _numbered(path, f"older version {rank}")
            candidate, n = wanted, 1
            while str(candidate).casefold() in files or str(candidate).casefold() in dirs:
                n += 1
                candidate = _numbered(wanted, str(n))
            files.add(str(candidate).casefold())
            obj.file = candidate


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


class _Folder:
    """A staging folder: every file and folder created here, exclusively, never via a link."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = 0

    def _path(self, relative: PurePosixPath) -> Path:
        path = self.root.joinpath(*relative.parts)
        for parent in reversed(path.relative_to(self.root).parents[:-1]):
            folder = self.root / parent
            if not folder.is_dir() or folder.is_symlink():
                os.mkdir(folder, DIR_MODE)  # FileExistsError on anything that is not ours
        if not path.parent.resolve().is_relative_to(self.root.resolve()):
            raise PackageError("an output path leaves the output folder; nothing was written")
        return path

    def create(self, relative: PurePosixPath) -> IO[bytes]:
        fd = os.open(self._path(relative), _WRITE_FLAGS, FILE_MODE)
        os.fchmod(fd, FILE_MODE)
        self.files += 1
        return os.fdopen(fd, "wb")

    def write(self, relative: PurePosixPath, data: bytes) -> None:
        with self.create(relative) as fh:
            fh.write(data)

    def text(self, relative: PurePosixPath, encoding: str = "utf-8") -> IO[str]:
        return io.TextIOWrapper(self.create(relative), encoding=encoding, newline="")


class _TableWriter:
    def __init__(self, folder: _Folder, store: str, table: str, columns: tuple[str, ...]) -> None:
        self.json_path = PurePosixPath("tables", store, f"{table}.json")
        self.csv_path = PurePosixPath("tables", store, f"{table}.csv")
        self.columns = columns
        self._json = folder.text(self.json_path)
        self._csv_file = folder.text(self.csv_path, encoding="utf-8-sig")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(columns)
        self._first = True

    def add(self, data: Mapping[str, Any]) -> None:
        text = json.dumps(dict(data), ensure_ascii=False, indent=2)
        self._json.write(("[\n" if self._first else ",\n") + text)
        self._first = False
        self._csv.writerow([_cell(data.get(c)) for c in self.columns])

    def close(self) -> None:
        self._json.write("[]\n" if self._first else "\n]\n")
        self._json.close()
        self._csv_file.close()


def _write_records(
    folder: _Folder,
    records: Iterator[dict[str, Any]],
    tables: dict[tuple[str, str], _Table],
    objects: list[_Object],
) -> None:
    """Second pass: rows into their table files, object contents into their files."""
    by_index = {o.index: o for o in objects}
    writers: dict[tuple[str, str], _TableWriter] = {}
    try:
        for index, record in enumerate(records, start=1):
            obj = by_index.get(index)
            if obj is not None:
                if obj.file is not None:
                    try:
                        body = base64.b64decode(obj.data["body_base64"], validate=True)
                    except (binascii.Error, ValueError) as e:
                        raise PackageError(f"record {index}: object content is not base64") from e
                    folder.write(obj.file, body)
                continue
            key = (record.get("store"), record.get("target"))
            if key not in tables:
                raise PackageError("the package changed while it was being opened")
            if key not in writers:
                columns = tuple(tables[key].columns)
                writers[key] = _TableWriter(folder, key[0], key[1], columns)
            writers[key].add(record["data"])
    finally:
        for writer in writers.values():
            writer.close()


def _object_index(objects: list[_Object]) -> list[dict[str, Any]]:
    listed = ("bucket", "key", "version_id", "last_modified", "size", "content_type", "metadata")
    return [
        {"store": o.store}
        | {k: o.data.get(k) for k in listed}
        | {"file": None if o.file is None else str(o.file), "note": o.note}
        for o in objects
    ]


def _readme(manifest: Mapping[str, Any], opened: OpenedPackage) -> str:
    lines = [
        "Your personal data",
        "==================",
        "",
        f"Request: {manifest.get('request_id') or '-'}",
        f"Package created: {manifest.get('created') or '-'}",
        f"Stores searched: {', '.join(map(str, manifest.get('stores_searched') or [])) or '-'}",
        "",
        "What is inside:",
    ]
    for t in opened.tables:
        categories = ", ".join(t.categories) or "-"
        lines.append(
            f"- {t.json_file} and {t.csv_file}: {t.rows} row(s) from table {t.table} of "
            f"{t.store} (categories: {categories})"
        )
    for b in opened.buckets:
        extra = f", {b.without_content} without content (see objects.json)"
        lines.append(
            f"- objects/{b.store}/{b.bucket}/: {b.written} file(s) from bucket {b.bucket} of "
            f"{b.store}{extra if b.without_content else ''}"
        )
    if not opened.tables and not opened.buckets:
        lines.append("- no records: nothing about you was found in the stores searched")
    lines += [
        "",
        "How to read it:",
        "- JSON files hold each table's rows exactly as exported (dates in ISO 8601, binary",
        "  values in base64); the CSV files hold the same rows for spreadsheets (UTF-8).",
        "- Files under objects/ are your stored files, byte for byte. The newest version of",
        "  a file has its own name; older versions are 'name (older version N)'.",
        "- objects.json lists every stored file version: its key, version, date, size and",
        "  the file it was written to.",
        "- manifest.json is the package's own summary (counts per store and category).",
        "",
    ]
    return "\n".join(lines)


def _in_the_way(out: Path) -> list[str]:
    return [name for name in OUTPUT_ENTRIES if os.path.lexists(out / name)]


def _move_into(staging: Path, out: Path, force: bool) -> None:
    if not force and _in_the_way(out):
        raise PackageError(f"{out} already holds an opened package; nothing was written")
    for name in OUTPUT_ENTRIES:
        target = out / name
        if target.is_symlink() or target.is_file():
            target.unlink()  # a link is removed, never followed
        elif target.is_dir():
            shutil.rmtree(target)
        if (staging / name).exists():
            os.rename(staging / name, target)


def open_package(package: Path, secret: Secret, out: Path, *, force: bool = False) -> OpenedPackage:
    """Decrypt ``package`` into readable files under ``out`` (created with mode 0700).

    Nothing is written unless the whole package authenticates and every name in it is
    safe. With ``force`` the entries ``OUTPUT_ENTRIES`` already in ``out`` are replaced
    (links removed, never followed); anything else there is left alone.
    """
    manifest, records = read_package(package, secret)
    tables, objects = _plan(records)
    _place_objects(objects)
    if not force and _in_the_way(out):
        raise PackageError(f"{out} already holds an opened package; nothing was written")
    created_out = not out.exists()
    try:
        out.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".opening-", dir=out))
    except OSError as e:
        raise PackageError(f"cannot write to {out} ({e.strerror})") from None
    try:
        folder = _Folder(staging)
        _write_records(folder, read_package(package, secret)[1], tables, objects)
        folder.write(PurePosixPath("manifest.json"), _json_bytes(manifest))
        if objects:
            folder.write(PurePosixPath("objects.json"), _json_bytes(_object_index(objects)))
        opened = _result(out, manifest, tables, objects, files=folder.files + 1)
        folder.write(PurePosixPath("README.txt"), _readme(manifest, opened).encode())
        _move_into(staging, out, force)
    except OSError as e:
        raise PackageError(f"cannot write to {out} ({e.strerror or type(e).__name__})") from None
    except ValueError:  # a value no file can hold (a lone surrogate): say so, not what
        raise PackageError("the package holds a value that cannot be written as text") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created_out and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    return opened


def _result(
    out: Path,
    manifest: Mapping[str, Any],
    tables: Mapping[tuple[str, str], _Table],
    objects: list[_Object],
    files: int,
) -> OpenedPackage:
    buckets: dict[tuple[str, str], list[_Object]] = {}
    for obj in objects:
        buckets.setdefault((obj.store, obj.bucket), []).append(obj)
    return OpenedPackage(
        out=out,
        request_id=manifest.get("request_id"),
        created=manifest.get("created"),
        tables=tuple(
            TableOutput(
                store=store,
                table=table,
                rows=t.rows,
                columns=tuple(t.columns),
                categories=tuple(t.categories),
                json_file=f"tables/{store}/{table}.json",
                csv_file=f"tables/{store}/{table}.csv",
            )
            for (store, table), t in tables.items()
        ),
        buckets=tuple(
            BucketOutput(
                store=store,
                bucket=bucket,
                written=sum(o.file is not None for o in objs),
                without_content=sum(o.file is None for o in objs),
            )
            for (store, bucket), objs in buckets.items()
        ),
        files=files,
    )


def _json_bytes(payload: Any) -> bytes:
    return (json.dumps(payload, ensure_ascii=False, indent=2) + "\n").encode()
