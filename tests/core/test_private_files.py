"""Data folders are created 0700 and data files 0600 whatever the umask (tested with 0022,
the usual permissive default): SQLite databases with their -wal and -shm files, the audit
database in the data folder, the demo CRM, access packages, key files and anchors."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from audit.ledger import Ledger
from config.settings import get_settings
from connectors.base import ExportItem
from core.engines import make_engine
from core.package import PassphraseRecipient, generate_keypair, write_package
from core.private_files import create_private_file, private_dir, tighten_dir
from demo.seed_sql import seed_crm


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def test_private_dir_creates_missing_folders_0700_and_leaves_existing_ones(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)

    made = private_dir(shared / "a" / "b")

    assert made == shared / "a" / "b"
    assert mode(shared / "a") == mode(shared / "a" / "b") == 0o700
    assert mode(shared) == 0o755  # not ours to change
    assert private_dir(made) == made  # idempotent


def test_tighten_dir_and_create_private_file(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o755)
    tighten_dir(folder)
    assert mode(folder) == 0o700
    tighten_dir(tmp_path / "absent")  # nothing to do

    target = folder / "f"
    assert create_private_file(target) is True
    assert mode(target) == 0o600
    target.chmod(0o644)
    assert create_private_file(target) is False  # an existing file is left as it is
    assert mode(target) == 0o644


def test_sqlite_database_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "new" / "db" / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        assert not path.exists()  # the file comes with the first connection, as in SQLite
        assert mode(path.parent) == mode(path.parent.parent) == 0o700
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        with engine.connect() as conn:  # WAL and shared memory exist while connected
            assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 1
            files = _sqlite_files(path)
            assert all(f.exists() for f in files), files
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        engine.dispose()


def test_default_audit_database_and_data_folder(isolated_settings: Path) -> None:
    data_dir = isolated_settings
    data_dir.mkdir(parents=True)
    data_dir.chmod(0o755)  # as an older version (or the key file) left it

    ledger = Ledger.open()
    try:
        ledger.append("test.event", status="succeeded")
        assert mode(data_dir) == 0o700
        audit_db = data_dir / "audit.db"
        assert audit_db.exists()
        for path in _sqlite_files(audit_db):
            if path.exists():
                assert mode(path) == 0o600, path
    finally:
        ledger.engine.dispose()
    assert get_settings().private_data_dir() == data_dir


def test_demo_crm_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "var" / "crm.db"
    seed_crm(f"sqlite:///{path}", customers=2)
    assert mode(path.parent) == 0o700
    for file in _sqlite_files(path):
        if file.exists():
            assert mode(file) == 0o600, file


def test_access_packages_keys_and_anchors(tmp_path: Path) -> None:
    exports = tmp_path / "data" / "exports"
    items = [ExportItem("crm", "customers", ("contact",), {"id": 1, "name": "Robin"})]
    info = write_package(
        items, {"request_id": "req_00000000000000ab"}, exports, PassphraseRecipient(b"pw")
    )
    assert mode(exports) == mode(exports.parent) == 0o700
    assert mode(Path(info.location)) == 0o600

    generate_keypair(tmp_path / "keys" / "subject.key")
    assert mode(tmp_path / "keys") == 0o700
    assert mode(tmp_path / "keys" / "subject.key") == 0o600

    ledger = Ledger.open(f"sqlite:///{tmp_path / 'audit' / 'audit.db'}")
    try:
        ledger.append("test.event", status="succeeded")
        anchor = tmp_path / "anchors" / "head.json"
        ledger.export_checkpoint(anchor)
    finally:
        ledger.engine.dispose()
    assert mode(anchor.parent) == 0o700
    assert mode(anchor) == 0o600
