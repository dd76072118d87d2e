"""Access packages are deleted once kept past the policy's ``package_retention_days``.

Old packages only (and partial writes a crash left), each with one ``package.expired``
ledger event holding the request id, size and age; nothing else in or beside the folder
is touched (links, folders, other files); a dry run deletes and records nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.ledger import Ledger
from cli.main import app
from engine.package_expiry import EVENT_KIND, due_packages, expire_packages, packages_dir

OLD_ID = "req_00000000000000a1"
NEW_ID = "req_00000000000000b2"
DAY = 86400


def _file(path: Path, size: int, age_days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path


@pytest.fixture
def folder(isolated_settings: Path, tmp_path: Path) -> Path:
    """The exports folder with old and new packages, and things that are not ours."""
    exports = packages_dir()
    assert exports == isolated_settings / "exports"
    _file(exports / f"{OLD_ID}.lcpkg", 300, 45)
    _file(exports / f"{NEW_ID}.lcpkg", 200, 3)
    _file(exports / f".{OLD_ID}.lcpkg.4242.tmp", 100, 40)  # a crashed write's leftover
    _file(exports / "notes.txt", 10, 400)  # not a package
    outside = _file(tmp_path / "outside" / "precious.lcpkg", 10, 400)
    (exports / "linked.lcpkg").symlink_to(outside)  # a link: never followed nor removed
    _file(exports / "sub" / f"{OLD_ID}.lcpkg", 10, 400)  # in a subfolder: not ours
    return exports


def _events(ledger: Ledger) -> list[dict[str, object]]:
    return [
        {"request_id": e.request_id, "counts": dict(e.counts), "detail": dict(e.detail)}
        for e in ledger.events(kinds=[EVENT_KIND])
    ]


def test_old_packages_are_deleted_and_audited(folder: Path, tmp_path: Path) -> None:
    ledger = Ledger.open()
    deleted = expire_packages(ledger, 30, actor="tester")
    assert sorted(p.name for p in deleted) == [f".{OLD_ID}.lcpkg.4242.tmp", f"{OLD_ID}.lcpkg"]
    assert not (folder / f"{OLD_ID}.lcpkg").exists()
    assert not os.path.lexists(folder / f".{OLD_ID}.lcpkg.4242.tmp")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{NEW_ID}.lcpkg", "linked.lcpkg", "notes.txt", "sub"]
    )
    assert (folder / "sub" / f"{OLD_ID}.lcpkg").exists()
    assert (tmp_path / "outside" / "precious.lcpkg").exists()
    events = sorted(_events(ledger), key=lambda e: json.dumps(e, sort_keys=True))
    assert events == [
        {
            "request_id": OLD_ID,
            "counts": {"bytes": 100, "age_days": 40},
            "detail": {"keep_days": 30, "partial": True},
        },
        {
            "request_id": OLD_ID,
            "counts": {"bytes": 300, "age_days": 45},
            "detail": {"keep_days": 30, "partial": False},
        },
    ]
    assert ledger.verify().ok
    assert expire_packages(ledger, 30, actor="tester") == []  # a rerun: nothing twice
    assert len(_events(ledger)) == 2


def test_a_package_rewritten_since_it_was_listed_is_kept(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun of the request replaced the file between listing and deleting."""
    import engine.package_expiry as expiry

    ledger = Ledger.open()
    [due] = [p for p in due_packages(folder, 30) if not p.partial]
    _file(folder / due.name, 50, 0)  # the new package, written now
    monkeypatch.setattr(expiry, "due_packages", lambda *_a, **_k: [due])
    assert expire_packages(ledger, 30, actor="tester") == []
    assert (folder / due.name).stat().st_size == 50
    assert _events(ledger) == []


def test_dry_run_deletes_and_records_nothing(folder: Path) -> None:
    before = sorted(p.name for p in folder.rglob("*"))
    result = CliRunner().invoke(app, ["package", "expire", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["dry_run"] is True and answer["keep_days"] == 30  # the policy's default
    assert sorted(p["request_id"] for p in answer["packages"]) == [OLD_ID, OLD_ID]
    assert sorted(p.name for p in folder.rglob("*")) == before
    assert _events(Ledger.open()) == []


def test_the_command_deletes_and_reports(folder: Path) -> None:
    result = CliRunner().invoke(app, ["package", "expire"])
    assert result.exit_code == 0, result.output
    assert "2 package(s) older than 30 days deleted" in result.output
    assert not (folder / f"{OLD_ID}.lcpkg").exists()
    assert (folder / f"{NEW_ID}.lcpkg").exists()
    assert len(_events(Ledger.open())) == 2


def test_no_folder_yet_is_nothing_to_do(isolated_settings: Path) -> None:
    assert not packages_dir().exists()
    assert expire_packages(Ledger.open(), 30, actor="tester") == []
    assert not packages_dir().exists()


def test_the_daily_task_uses_the_policy(folder: Path) -> None:
    from tasks.package_expiry import expire_access_packages

    assert expire_access_packages.fn() == 2
    events = list(Ledger.open().events(kinds=[EVENT_KIND]))
    assert {e.actor for e in events} == {"flow:request-register"}
    assert (folder / f"{NEW_ID}.lcpkg").exists()


def test_an_incident_subjects_package_expires_into_its_incident_timeline(
    isolated_settings: Path,
) -> None:
    incident = "inc_00000000000000c3"
    _file(packages_dir() / f"{incident}-subjects.lcpkg", 120, 60)
    ledger = Ledger.open()
    (gone,) = expire_packages(ledger, 30, actor="tester")
    assert (gone.name, gone.request_id) == (f"{incident}-subjects.lcpkg", incident)
    assert [e["request_id"] for e in _events(ledger)] == [incident]
