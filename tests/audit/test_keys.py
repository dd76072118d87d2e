"""The master key under faults: missing, mistyped, different, restored, rotated, crashed.

Every test here takes its key from a key file in the test's data folder (the conftest's
``LIFECYCLE_MASTER_KEY`` is removed), the way a deployment without a secret store runs.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select
from typer.testing import CliRunner

from audit.database import dispose_engines
from audit.key_tables import audit_keys
from audit.keystore import keyring_from_settings, load_keyring
from audit.ledger import Ledger
from audit.migrate import current
from audit.tables import audit_events, audit_head
from cli.main import app
from config.settings import get_settings
from core.engines import make_engine
from core.keys import KeyRing, MasterKeyError
from core.package_keys import PassphraseRecipient
from core.pseudonym import Pseudonymizer
from state.progress import RequestProgress
from state.register import RequestKind, RequestRegister
from tests.audit.ledger_support import sample

runner = CliRunner()
IDENTITY = {"email": "robin.quill@example.com", "name": "Robin Quill"}
OTHER = {"email": "sam.birch@example.com"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(text: str) -> str:
    return " ".join(_ANSI.sub("", text).split())


@pytest.fixture(autouse=True)
def key_file_settings(isolated_settings: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings that take the key from ``<data>/master.key``; engines disposed after."""
    monkeypatch.delenv("LIFECYCLE_MASTER_KEY")
    monkeypatch.delenv("LIFECYCLE_KEY_FILE", raising=False)
    get_settings.cache_clear()
    yield isolated_settings / "master.key"
    dispose_engines()


def _url() -> str:
    return get_settings().resolved_audit_url()


def _snapshot() -> dict[str, Any]:
    """Events, head, key epochs and schema revision, read with a fresh engine."""
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            keyed = inspect(conn).has_table("audit_keys")
            count = select(func.count())
            return {
                "events": conn.execute(count.select_from(audit_events)).scalar(),
                "head": tuple(conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one()),
                "epochs": conn.execute(count.select_from(audit_keys)).scalar() if keyed else None,
                "revision": current(engine),
            }
    finally:
        engine.dispose()


def _open_register() -> RequestRegister:
    keys = keyring_from_settings()
    return RequestRegister(Ledger.open(keys=keys, actor="tester"), keys)


def _ledger_with_events(n: int = 4) -> Ledger:
    ledger = Ledger.open(actor="tester")  # a new ledger: the key file is created with it
    ledger.append_many([sample(i) for i in range(n)])
    ledger.checkpoint()
    return ledger


def _refused(args: list[str], *words: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    message = _plain(result.stderr)
    assert message.startswith("error: ") and message.count("error:") == 1
    for word in words:
        assert word in message
    assert "nothing was changed" in message
    assert "edited" not in message and "broken" not in message
    return message


def _write_key(path: Path, secret: bytes) -> None:
    path.write_text(base64.b64encode(secret).decode() + "\n")


# -- a key is created only with a new ledger -------------------------------------------


def test_a_new_ledger_creates_its_key_and_records_the_fingerprint(key_file_settings: Path) -> None:
    assert not key_file_settings.exists()
    ring = keyring_from_settings()
    assert key_file_settings.stat().st_mode & 0o777 == 0o600
    assert (
        ring.fingerprint
        == KeyRing.from_master(base64.b64decode(key_file_settings.read_text())).fingerprint
    )
    assert re.fullmatch(r"[0-9a-f]{16}", ring.fingerprint)
    assert _snapshot()["epochs"] == 1
    shown = runner.invoke(app, ["keys", "show"])
    assert shown.exit_code == 0, shown.output
    assert f"key fp {ring.fingerprint} (key epoch 1)" in _plain(shown.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "verify"],
        ["audit", "show"],
        ["audit", "checkpoint"],
        ["request", "list"],
        ["keys", "show"],
        ["keys", "rotate"],
    ],
)
def test_a_missing_key_is_refused_naming_its_fingerprint(
    key_file_settings: Path, args: list[str]
) -> None:
    _ledger_with_events()
    fingerprint = keyring_from_settings().fingerprint
    dispose_engines()
    before = _snapshot()
    key_file_settings.unlink()

    message = _refused(args, "the master key is missing", f"expected key fp {fingerprint}")
    assert f"restore {key_file_settings} from your backup" in message
    assert not key_file_settings.exists()  # no new key was made
    assert _snapshot() == before


def test_a_mistyped_key_file_is_refused_and_not_created(
    key_file_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ledger_with_events()
    fingerprint = keyring_from_settings().fingerprint
    dispose_engines()
    before = _snapshot()
    typo = key_file_settings.with_name("mastr.key")
    monkeypatch.setenv("LIFECYCLE_KEY_FILE", str(typo))
    get_settings.cache_clear()

    message = _refused(["audit", "verify"], f"expected key fp {fingerprint}", str(typo))
    assert "the master key is missing" in message
    _refused(["request", "list"], f"expected key fp {fingerprint}")
    with pytest.raises(MasterKeyError):
        Ledger.open()
    assert not typo.exists()
    assert _snapshot() == before


def test_a_different_key_is_a_wrong_key_not_an_edited_ledger(key_file_settings: Path) -> None:
    _ledger_with_events()
    right = key_file_settings.read_text()
    fingerprint = keyring_from_settings().fingerprint
    dispose_engines()
    before = _snapshot()
    _write_key(key_file_settings, b"d" * 32)

    message = _refused(["audit", "verify"], "wrong key", f"fp {fingerprint}")
    assert KeyRing.from_master(b"d" * 32).fingerprint in message
    _refused(["audit", "verify", "--json"], "wrong key")
    assert _snapshot() == before

    # The ledger API says the same when handed the other key directly.
    ledger = Ledger.open(keys=KeyRing.from_master(b"d" * 32))
    with pytest.raises(MasterKeyError, match="wrong key"):
        ledger.verify()
    with pytest.raises(MasterKeyError, match="wrong key"):
        ledger.append("test.event", status="succeeded")
    dispose_engines()
    assert _snapshot() == before

    key_file_settings.write_text(right)  # restored from the backup
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert _plain(verified.stdout) == "intact: 4 events, 1 checkpoints"


def test_a_ledger_from_before_fingerprints_is_keyed_only_by_its_own_key(
    key_file_settings: Path,
) -> None:
    from alembic import command

    from audit.migrate import alembic_config

    _ledger_with_events()
    right = key_file_settings.read_text()
    dispose_engines()
    engine = make_engine(_url())
    command.downgrade(alembic_config(engine), "0006_batch_intents")  # before audit_keys
    old_revision = current(engine)
    engine.dispose()

    key_file_settings.unlink()
    _refused(["audit", "verify"], "the master key is missing")
    _write_key(key_file_settings, b"d" * 32)
    _refused(["audit", "verify"], "wrong key", "was not chained under")
    assert _snapshot()["revision"] == old_revision  # not migrated meanwhile

    key_file_settings.write_text(right)
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert _snapshot()["epochs"] == 1


# -- rotation ---------------------------------------------------------------------------


def _open_requests() -> tuple[RequestRegister, str, str]:
    register = _open_register()
    first = register.register(RequestKind.ERASURE, IDENTITY, requested_by="operator")
    second = register.register(RequestKind.ACCESS, OTHER, requested_by="operator")
    progress = RequestProgress(register.ledger.engine, keyring_from_settings())
    progress.record_located(
        first.id, "crm", 0, counts={"customers": 1}, findings={}, derived={"phone": ["x-1"]}
    )
    progress.runs.ensure_run(second.id)
    progress.runs.set_recipient(second.id, PassphraseRecipient(b"correct horse battery"))
    return register, first.id, second.id


def test_rotation_keeps_requests_pseudonyms_and_the_chain(key_file_settings: Path) -> None:
    register, first, second = _open_requests()
    old_key = key_file_settings.read_text()
    old = keyring_from_settings()
    held = Pseudonymizer(old.pseudonym_hmac).of_value("email", IDENTITY["email"])
    register.ledger.checkpoint()
    dispose_engines()

    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    new = keyring_from_settings()
    assert new.fingerprint != old.fingerprint and new.epoch == 2
    assert f"{old.fingerprint} -> {new.fingerprint}" in _plain(rotated.stdout)
    assert key_file_settings.read_text() != old_key
    assert key_file_settings.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in key_file_settings.parent.glob("master.key*")) == ["master.key"]

    # Open requests still open, under the new key only.
    register = _open_register()
    assert register.open_identity(first) == IDENTITY
    progress = RequestProgress(register.ledger.engine, new)
    assert progress.derived_identities(first) == {"phone": frozenset({"x-1"})}
    assert progress.runs.recipient(second) == PassphraseRecipient(b"correct horse battery")

    # Pseudonyms are stable: a hold naming the subject still matches, a new request too.
    assert Pseudonymizer(new.pseudonym_hmac).of_value("email", IDENTITY["email"]) == held
    again = register.register(RequestKind.ACCESS, IDENTITY, requested_by="operator")
    assert again.subject == register.get(first).subject

    # The chain spans the rotation and verifies with the new key alone.
    [event] = register.ledger.events(kinds=["keys.rotated"])
    assert event.detail["from_key"] == old.fingerprint
    assert event.detail["to_key"] == new.fingerprint
    assert event.counts == {"identities": 2, "derived_identities": 1, "passphrases": 1}
    register.ledger.checkpoint()
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert _plain(verified.stdout).endswith("events, 2 checkpoints")
    anchor = key_file_settings.parent / "anchor.json"
    exported = runner.invoke(app, ["audit", "checkpoint", "--export", str(anchor)])
    assert exported.exit_code == 0, exported.output
    assert runner.invoke(app, ["audit", "verify", "--anchor", str(anchor)]).exit_code == 0

    # The old key is no longer accepted, and is named as the retired one.
    dispose_engines()
    before = _snapshot()
    key_file_settings.write_text(old_key)
    message = _refused(["audit", "verify"], "wrong key", "retired key", f"fp {new.fingerprint}")
    assert old.fingerprint in message
    assert _snapshot() == before


def test_rotation_twice_still_verifies_and_keeps_pseudonyms(key_file_settings: Path) -> None:
    register, first, _ = _open_requests()
    subject = register.get(first).subject
    for _ in range(2):
        dispose_engines()
        assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
        _open_register().ledger.append("test.after_rotation", status="succeeded")
    ring = keyring_from_settings()
    assert ring.epoch == 3 and [e.epoch for e in ring.earlier] == [1, 2]
    assert _open_register().open_identity(first) == IDENTITY
    assert Pseudonymizer(ring.pseudonym_hmac).of_identity(IDENTITY) == subject
    report = Ledger.open().verify()
    assert report.ok, report.problem
    shown = runner.invoke(app, ["keys", "show", "--json"])
    assert shown.exit_code == 0 and '"epoch": 3' in shown.stdout


def test_a_crash_before_the_switch_commits_leaves_the_old_key_in_force(
    key_file_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit import rotation

    _, first, _ = _open_requests()
    old_key = key_file_settings.read_text()
    fingerprint = keyring_from_settings().fingerprint
    dispose_engines()
    before = _snapshot()
    staged: list[bool] = []

    def crash(ring: KeyRing) -> Any:
        # The new key is on disk, the re-sealing and the event are written, not committed.
        staged.append(key_file_settings.with_name("master.key.new").exists())
        raise RuntimeError("power cut")

    monkeypatch.setattr(rotation, "seal_carried", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        rotation.rotate()
    assert staged == [True]

    assert key_file_settings.read_text() == old_key
    assert _snapshot() == before
    assert keyring_from_settings().fingerprint == fingerprint
    assert _open_register().open_identity(first) == IDENTITY
    report = Ledger.open().verify()
    assert report.ok and report.events_checked == before["events"]


def test_a_crash_after_the_switch_committed_is_finished_by_the_next_command(
    key_file_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit import rotation

    _, first, _ = _open_requests()
    real_install = rotation.install

    def crash(*_args: Any) -> None:
        raise RuntimeError("power cut")  # committed, the new key not yet in place

    monkeypatch.setattr(rotation, "install", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        rotation.rotate()
    monkeypatch.setattr(rotation, "install", real_install)
    pending = key_file_settings.with_name("master.key.new")
    assert pending.exists()
    dispose_engines()

    ring = load_keyring()  # finds the committed epoch 2 and moves its key into place
    assert ring.epoch == 2 and not pending.exists()
    assert KeyRing.from_master(base64.b64decode(key_file_settings.read_text())).fingerprint == (
        ring.fingerprint
    )
    assert _open_register().open_identity(first) == IDENTITY
    assert Ledger.open().verify().ok


def test_rotation_with_the_key_in_the_environment_needs_a_new_key_file(
    key_file_settings: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LIFECYCLE_MASTER_KEY", base64.b64encode(b"e" * 32).decode())
    get_settings.cache_clear()
    _, first, _ = _open_requests()
    dispose_engines()
    before = _snapshot()
    _refused(["keys", "rotate"], "--new-key-file")
    assert _snapshot() == before

    new_file = tmp_path / "new.key"
    rotated = runner.invoke(app, ["keys", "rotate", "--new-key-file", str(new_file)])
    assert rotated.exit_code == 0, rotated.output
    assert "set LIFECYCLE_MASTER_KEY" in _plain(rotated.stdout)
    _refused(["audit", "verify"], "wrong key", "retired key")
    monkeypatch.setenv("LIFECYCLE_MASTER_KEY", new_file.read_text().strip())
    get_settings.cache_clear()
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    assert _open_register().open_identity(first) == IDENTITY


def _config_without_s3(folder: Path, hold_subject: str) -> Path:
    """The demo configuration, SQL store only, with a legal hold on ``hold_subject``."""
    import shutil

    import yaml

    from config.settings import PROJECT_ROOT

    shutil.copytree(PROJECT_ROOT / "config" / "demo", folder)
    inventory = yaml.safe_load((folder / "inventory.yaml").read_text())
    inventory["stores"] = [s for s in inventory["stores"] if s["type"] == "sql"]
    (folder / "inventory.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    policy = yaml.safe_load((folder / "policy.yaml").read_text())
    policy["retention"] = [r for r in policy["retention"] if r["store"] == "crm"]
    policy["legal_holds"] = [
        {
            "id": "HOLD-SUBJECT",
            "reason": "Subject's dispute",
            "scope": {"subject": str(hold_subject)},
            "starts": "2020-01-01",
        }
    ]
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


def _held_keys() -> dict[str, frozenset[Any]]:
    from datetime import UTC, datetime

    from engine.sweep_holds import held_keys_by_target
    from engine.sweep_runner import sweep_context
    from retention.targets import resolve_targets

    with sweep_context() as ctx:
        return held_keys_by_target(ctx, resolve_targets(ctx.config, datetime.now(UTC)))


def test_a_legal_hold_by_pseudonym_still_matches_after_rotation(
    key_file_settings: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from demo.seed_sql import seed_crm

    data = seed_crm(f"sqlite:///{key_file_settings.parent / 'crm.db'}", customers=20)
    held_subject = Pseudonymizer(keyring_from_settings().pseudonym_hmac).of_value(
        "email", data.subject.email
    )
    monkeypatch.setenv(
        "LIFECYCLE_CONFIG_DIR", str(_config_without_s3(tmp_path / "config", held_subject))
    )
    get_settings.cache_clear()
    before = _held_keys()
    assert before and all(before.values()), "the hold should keep the subject's rows"
    dispose_engines()

    from audit.rotation import rotate

    rotate()
    assert keyring_from_settings().epoch == 2
    assert _held_keys() == before


def test_rotation_on_every_backend(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from audit.rotation import rotate

    monkeypatch.setenv("LIFECYCLE_AUDIT_URL", db_url)
    get_settings.cache_clear()
    register, first, second = _open_requests()
    register.ledger.checkpoint()
    old = keyring_from_settings().fingerprint
    dispose_engines()

    done = rotate()
    assert done.old_fingerprint == old and done.resealed["identities"] == 2
    register = _open_register()
    assert register.open_identity(first) == IDENTITY
    progress = RequestProgress(register.ledger.engine, keyring_from_settings())
    assert progress.runs.recipient(second) == PassphraseRecipient(b"correct horse battery")
    register.ledger.append("test.after_rotation", status="succeeded")
    report = register.ledger.verify()
    assert report.ok, report.problem
