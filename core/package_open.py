"""Open an access package into a folder the subject can read (or an incident's package of
affected subjects into one the operator notifies them from).

The folder gets ``tables/<store>/<table>.json`` and ``.csv`` per table, each object
version with content as a file of its original bytes under ``objects/<store>/<bucket>/``
(``core.package_files``), ``objects.json`` mapping every object version to its file,
``manifest.json`` (the package's own manifest) and ``README.txt`` saying what is inside.

A package is authenticated as a whole before anything is written (``read_package``), so a
wrong secret or an altered file writes nothing. Names come from the package, so a hostile
one is refused before anything is written (``core.package_plan``). Everything is written
into a fresh staging folder inside ``out`` and moved into place at the end; on any
failure the staging folder is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core.package import read_package
from core.package_files import StagingFolder, object_index, write_records
from core.package_keys import PackageError, Secret
from core.package_plan import PlannedObject, PlannedTable, place_objects, plan_records
from core.private_files import DIR_MODE

__all__ = [
    "AFFECTED_SUBJECTS",
    "OUTPUT_ENTRIES",
    "BucketOutput",
    "OpenedPackage",
    "TableOutput",
    "open_package",
]

OUTPUT_ENTRIES = ("README.txt", "manifest.json", "objects.json", "tables", "objects")
"""What ``open_package`` writes at the top of the output folder (and ``force`` replaces)."""


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


AFFECTED_SUBJECTS = "incident-affected-subjects"
"""The manifest ``kind`` of an incident's affected-subjects package (``incidents.assess``):
one record per subject with its identities, for notifying them; not an access package."""


@dataclass(frozen=True)
class OpenedPackage:
    """What ``open_package`` wrote (counts and relative paths, never contents)."""

    out: Path
    request_id: str | None
    created: str | None
    tables: tuple[TableOutput, ...]
    buckets: tuple[BucketOutput, ...]
    files: int
    incident_id: str | None = None
    kind: str | None = None  # None: an access package; AFFECTED_SUBJECTS

    @property
    def affected_subjects(self) -> bool:
        """An incident's affected-subjects package (for the operator, not a subject)."""
        return self.kind == AFFECTED_SUBJECTS

    @property
    def label(self) -> str:
        """How output names the package: its request, or its incident's subjects."""
        if self.affected_subjects:
            return f"affected subjects of incident {self.incident_id or '-'}"
        return self.request_id or "package"


def _subjects_readme(manifest: Mapping[str, Any], opened: OpenedPackage) -> str:
    """The README of an affected-subjects package: who the incident affected, to notify."""
    lines = [
        "Affected subjects of a personal data breach",
        "===========================================",
        "",
        f"Incident: {manifest.get('incident_id') or '-'}",
        f"Package created: {manifest.get('created') or '-'}",
        f"Scope: {', '.join(map(str, manifest.get('parts') or [])) or '-'}",
        "",
        "What is inside (one row per affected subject, with the identities the stores hold):",
    ]
    lines += [
        f"- {t.json_file} and {t.csv_file}: {t.rows} subject(s) found in table {t.table} of "
        f"{t.store}"
        + (
            " (counted by a key no store could give identities for)"
            if t.store == "unresolved"
            else ""
        )
        for t in opened.tables
    ]
    if not opened.tables:
        lines.append("- no subjects: the assessed scope affected nobody identifiable")
    lines += [
        "",
        "This is personal data in clear: use it only to send the subject notice (lifecycle",
        "incident draft ID --to subjects), keep it where only the people sending it can read",
        "it, and delete this folder once the notices are sent.",
        "",
    ]
    return "\n".join(lines)


def _readme(manifest: Mapping[str, Any], opened: OpenedPackage) -> str:
    if opened.affected_subjects:
        return _subjects_readme(manifest, opened)
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
    tables, objects = plan_records(records)
    place_objects(objects)
    if not force and _in_the_way(out):
        raise PackageError(f"{out} already holds an opened package; nothing was written")
    created_out = not out.exists()
    try:
        out.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".opening-", dir=out))
    except OSError as e:
        raise PackageError(f"cannot write to {out} ({e.strerror})") from None
    try:
        folder = StagingFolder(staging)
        write_records(folder, read_package(package, secret)[1], tables, objects)
        folder.write(PurePosixPath("manifest.json"), _json_bytes(manifest))
        if objects:
            folder.write(PurePosixPath("objects.json"), _json_bytes(object_index(objects)))
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
    tables: Mapping[tuple[str, str], PlannedTable],
    objects: list[PlannedObject],
    files: int,
) -> OpenedPackage:
    buckets: dict[tuple[str, str], list[PlannedObject]] = {}
    for obj in objects:
        buckets.setdefault((obj.store, obj.bucket), []).append(obj)
    return OpenedPackage(
        out=out,
        request_id=manifest.get("request_id"),
        created=manifest.get("created"),
        incident_id=manifest.get("incident_id"),
        kind=manifest.get("kind"),
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
