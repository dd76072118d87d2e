"""Data folders (mode 0700) and data files (mode 0600), whatever the process umask.

The data folder holds the audit ledger and request register, key files, access packages
and checkpoints: readable by the product's own user only. ``mkdir(mode=...)`` and
``os.open(..., mode)`` are reduced by the umask, so every folder or file created here is
``chmod``-ed to its mode afterwards. Folders that already existed are left as they are
(a SQLite file may live in a shared folder such as ``/srv``); only the product's own data
folder is tightened when found open (``tighten_dir``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` as a folder; it and any missing parent are created with mode 0700."""
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made by someone else meanwhile: theirs, not ours to change
        folder.chmod(DIR_MODE)
    return path


def tighten_dir(path: Path) -> None:
    """Give an existing folder of ours mode 0700 when others can read or enter it.

    Only folders the process owns: another user's folder is theirs to set.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
        path.chmod(DIR_MODE)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True if this call made it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True
