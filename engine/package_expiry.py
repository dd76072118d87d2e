"""Access packages are kept for a while after they are written, then deleted and audited.

Packages live in ``<data_dir>/exports`` (``tasks.access_tasks`` writes them there) as
``<request id>.lcpkg``, and incidents' affected-subjects packages as
``<incident id>-subjects.lcpkg``. The policy's ``requests.package_retention_days`` says how long a
package is kept after it was written (its file's modification time: a package is written
once, atomically, and never changed). ``expire_packages`` deletes the packages older than
that, and partial files a crashed write left behind, each with one ``package.expired``
ledger event: request id, size and age, nothing about the subject's data. The file is
deleted inside the event's transaction, so no event claims a file that is still there
(only a commit failing after the unlink could leave a deletion unrecorded). Only regular
files directly in the folder are considered: links, folders and other files are never
touched. Prefect-free: ``lifecycle package expire`` and the daily
request-register flow both call it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from audit.events import EventStatus
from audit.ledger import Ledger
from engine.events import ledger_event

__all__ = [
    "EVENT_KIND",
    "ExpiredPackage",
    "due_packages",
    "expire_packages",
    "packages_dir",
]

EVENT_KIND = "package.expired"
_OWNER = r"(?P<id>req_[0-9a-f]{16}|inc_[0-9a-f]{16}(?=-subjects\.))(?:-subjects)?"
"""A request's access package, or an incident's affected-subjects package (its event then
carries the incident id, so the incident's timeline shows the package deleted)."""
_PACKAGE = re.compile(rf"^(?:{_OWNER}|[^.].*)\.lcpkg$")
_PARTIAL = re.compile(rf"^\.(?:{_OWNER}|.+)\.lcpkg\.\d+\.tmp$")
"""A write that crashed before its commit left this (``core.package._LocalUpload``)."""


def packages_dir() -> Path:
    """Where access packages are written: ``<data_dir>/exports`` (as ``tasks.access_tasks``)."""
    from config.settings import get_settings

    return get_settings().data_dir / "exports"


@dataclass(frozen=True)
class ExpiredPackage:
    """A package past its retention: its file name, request id (when named after one),
    size in bytes, age in whole days, and whether it is a partial write."""

    name: str
    request_id: str | None
    size: int
    age_days: int
    partial: bool
    inode: int
    mtime_ns: int


def due_packages(folder: Path, keep_days: int, now: datetime | None = None) -> list[ExpiredPackage]:
    """The packages in ``folder`` written more than ``keep_days`` days before ``now``."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=keep_days)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    due: list[ExpiredPackage] = []
    for entry in entries:
        match = _PACKAGE.match(entry.name) or _PARTIAL.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue  # a link, a folder or someone else's file: never ours to delete
        info = entry.stat(follow_symlinks=False)
        written = datetime.fromtimestamp(info.st_mtime, UTC)
        if written > cutoff:
            continue
        due.append(
            ExpiredPackage(
                name=entry.name,
                request_id=match.group("id"),
                size=info.st_size,
                age_days=(now - written).days,
                partial=entry.name.startswith("."),
                inode=info.st_ino,
                mtime_ns=info.st_mtime_ns,
            )
        )
    return due


class _Replaced(Exception):
    """The file changed since it was listed (a rerun rewrote it): keep it, record nothing."""


def _deleter(path: Path, package: ExpiredPackage) -> Callable[[object], None]:
    def delete(_conn: object) -> None:
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise _Replaced from None
        if (info.st_ino, info.st_mtime_ns) != (package.inode, package.mtime_ns):
            raise _Replaced
        path.unlink()

    return delete


def _sync(folder: Path) -> None:
    """Make the deletions durable: the folder's entries reach the disk."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the unlinks stand
    finally:
        os.close(fd)


def expire_packages(
    ledger: Ledger,
    keep_days: int,
    *,
    folder: Path | None = None,
    actor: str,
    now: datetime | None = None,
) -> list[ExpiredPackage]:
    """Delete the packages older than ``keep_days``, one ``package.expired`` event each.

    A package rewritten since it was listed is left alone. Returns the packages deleted;
    ``due_packages`` alone is the dry run.
    """
    folder = folder if folder is not None else packages_dir()
    due = due_packages(folder, keep_days, now)
    deleted: list[ExpiredPackage] = []
    for package in due:
        event = ledger_event(
            EVENT_KIND,
            EventStatus.SUCCEEDED,
            package.request_id,
            actor=actor,
            counts={"bytes": package.size, "age_days": package.age_days},
            detail={"keep_days": keep_days, "partial": package.partial},
        )
        try:
            ledger.append_many([event], also=_deleter(folder / package.name, package))
        except _Replaced:
            continue
        deleted.append(package)
    if deleted:
        _sync(folder)
    return deleted
