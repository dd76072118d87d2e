"""Writing an opened package's files into a staging folder (``core.package_open``).

Each table becomes ``tables/<store>/<table>.json`` (a list of rows, values as exported)
and ``.csv`` (the same columns, UTF-8 with a byte-order mark so spreadsheets read
accents); each object version with content becomes a file of its original bytes at the
path ``core.package_plan`` gave it, and ``objects.json`` maps every version to its file.
Every file and folder is created exclusively, never through a link.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import IO, Any

from core.package_keys import PackageError
from core.package_plan import PlannedObject, PlannedTable
from core.private_files import DIR_MODE, FILE_MODE

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


class StagingFolder:
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
    def __init__(
        self, folder: StagingFolder, store: str, table: str, columns: tuple[str, ...]
    ) -> None:
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


def write_records(
    folder: StagingFolder,
    records: Iterator[dict[str, Any]],
    tables: dict[tuple[str, str], PlannedTable],
    objects: list[PlannedObject],
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


def object_index(objects: list[PlannedObject]) -> list[dict[str, Any]]:
    listed = ("bucket", "key", "version_id", "last_modified", "size", "content_type", "metadata")
    return [
        {"store": o.store}
        | {k: o.data.get(k) for k in listed}
        | {"file": None if o.file is None else str(o.file), "note": o.note}
        for o in objects
    ]
