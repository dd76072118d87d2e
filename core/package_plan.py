"""What an opened package will hold, settled before anything is written (``core.package_open``).

A first pass over the package's records checks every name (stores, tables and buckets
plain names, object keys relative paths without ``.``/``..``/empty segments: a hostile
one is refused), gathers each table's columns and categories, and finds the object
versions. Each version with content then gets a file path that clashes with nothing: the
newest version of a key takes the key's name, older ones ``name (older version N).ext``;
a name that would clash with a folder or another file (also when only its case differs)
gets `` (2)``, `` (3)`` ...
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from core.package_keys import PackageError

_NAME = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_$.-]{0,127}$")
_OBJECT_FIELDS = frozenset({"bucket", "key", "version_id", "size", "last_modified"})
_MAX_SEGMENT = 255  # bytes: the usual file-name limit


@dataclass
class PlannedTable:
    """A table's columns and categories (in the order first met) and its row count."""

    columns: dict[str, None] = field(default_factory=dict)
    categories: dict[str, None] = field(default_factory=dict)
    rows: int = 0


@dataclass
class PlannedObject:
    """An object version among the records: its exported data, its key's path segments,
    the file ``place_objects`` gives it, and a note when it has none or its order is
    uncertain (listed in ``objects.json``)."""

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


def plan_records(
    records: Iterator[dict[str, Any]],
) -> tuple[dict[tuple[str, str], PlannedTable], list[PlannedObject]]:
    """First pass: every table's columns and every object's target, all names checked."""
    tables: dict[tuple[str, str], PlannedTable] = {}
    objects: list[PlannedObject] = []
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
            obj = PlannedObject(index, store, target, data, parts)
            if not has_body:
                obj.parts, obj.note = None, str(data.get("body_omitted") or "no content exported")
            elif key.endswith("/") and not data["body_base64"]:
                obj.parts, obj.note = None, "folder marker: no content"
            objects.append(obj)
            continue
        table = tables.setdefault((store, target), PlannedTable())
        table.columns.update(dict.fromkeys(data))
        categories = record.get("categories") or []
        table.categories.update(dict.fromkeys(str(c) for c in categories))
        table.rows += 1
    return tables, objects


def _numbered(path: PurePosixPath, label: str) -> PurePosixPath:
    suffix = path.suffix if path.stem else ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f"{stem} ({label}){suffix}")


def _modified(obj: PlannedObject) -> str:
    return str(obj.data.get("last_modified") or "")


def place_objects(objects: list[PlannedObject]) -> None:
    """Give each object version with content a file path that clashes with nothing."""
    writable = [o for o in objects if o.parts is not None]
    base = {id(o): PurePosixPath("objects", o.store, o.bucket, *(o.parts or ())) for o in writable}
    dirs = {str(p).casefold() for path in base.values() for p in path.parents}
    files: set[str] = set()
    versions: dict[PurePosixPath, list[PlannedObject]] = {}
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
