"""``audit: range | keys``: what a retention sweep's ledger records per batch (issue 15).

Config: a rule's ``audit`` overrides its store's ``retention_audit`` (default ``range``);
a target under several rules digests keys if any of them asks; bad values are refused
naming the file, line and field. The ``sweep.batch`` detail: rules, cut-offs, the key
range and count always; the digest only in ``keys`` mode; keys that may be personal data
as keyed hashes only.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.loader import load_config
from connectors.base import SweepBatch
from connectors.s3.config import S3Store
from core.errors import ConfigError
from core.keys import KeyRing
from engine.sweep_runner import batch_detail
from retention.targets import SweepTarget, resolve_targets
from tests.config.conftest import DEMO_FILES, MakeConfig, demo_text, line_of

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
KEYS = KeyRing.from_master(b"k" * 32)
RULE = "  - id: login-events-90d\n"
STORE = "  - name: crm\n    type: sql\n"


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    """The demo config with ``(file, old, new)`` edits, written to ``tmp_path/folder``."""

    def make(*edits: tuple[str, str, str], folder: str = "cfg") -> Path:
        target = tmp_path / folder
        target.mkdir()
        texts = {name: demo_text(name) for name in DEMO_FILES}
        for name, old, new in edits:
            assert texts[name].count(old) == 1, (name, old)
            texts[name] = texts[name].replace(old, new)
        for name, text in texts.items():
            (target / name).write_text(text, encoding="utf-8")
        return target

    return make


def _problems(config_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(config_dir)
    return raised.value.problems


def _target(config_dir: Path, target_id: str) -> SweepTarget:
    targets = resolve_targets(load_config(config_dir), NOW)
    return next(t for t in targets if t.id == target_id)


LOGINS = "crm.login_events:delete"


def test_the_default_is_range(make_config: MakeConfig) -> None:
    assert _target(make_config(), LOGINS).audit == "range"


def test_a_store_default_and_a_rule_override(make_config: MakeConfig) -> None:
    store_keys = make_config(
        ("inventory.yaml", STORE, STORE + "    retention_audit: keys\n"), folder="store"
    )
    assert _target(store_keys, LOGINS).audit == "keys"
    rule_range = make_config(
        ("inventory.yaml", STORE, STORE + "    retention_audit: keys\n"),
        ("policy.yaml", RULE, RULE + "    audit: range\n"),
        folder="rule",
    )
    assert _target(rule_range, LOGINS).audit == "range"
    rule_keys = make_config(("policy.yaml", RULE, RULE + "    audit: keys\n"), folder="keys")
    assert _target(rule_keys, LOGINS).audit == "keys"
    others = [t for t in resolve_targets(load_config(rule_keys), NOW) if t.id != LOGINS]
    assert others and all(t.audit == "range" for t in others)  # only that rule's data


def test_a_bad_audit_value_names_file_line_and_field(make_config: MakeConfig) -> None:
    config_dir = make_config(("policy.yaml", RULE, RULE + "    audit: digest\n"))
    text = (config_dir / "policy.yaml").read_text(encoding="utf-8")
    [problem] = _problems(config_dir)
    assert problem.startswith(
        f"policy.yaml:{line_of(text, '    audit: digest')} retention[0].audit"
    )

    config_dir = make_config(
        ("inventory.yaml", STORE, STORE + "    retention_audit: all\n"), folder="store"
    )
    [problem] = _problems(config_dir)
    assert problem.startswith("inventory.yaml:") and "stores[0].retention_audit" in problem


def _plain(make_config: MakeConfig) -> SweepTarget:
    return _target(make_config(folder="plain"), LOGINS)


def test_range_mode_records_rules_cutoffs_range_and_count_without_digest(
    make_config: MakeConfig,
) -> None:
    target = replace(_plain(make_config), keys_personal=False)
    batch = SweepBatch(lo=(100,), hi=(150,), count=42, keys_digest="")
    detail = batch_detail(KEYS, target, 3, batch, recovered=False)
    assert detail["audit"] == "range"
    assert detail["rules"] == ["login-events-90d"]
    assert detail["cutoffs"] == {"login-events-90d": target.conditions[0].cutoff.isoformat()}
    assert detail["range"] == {"after": [100], "last": [150]}
    assert detail["keys_read"] == 42 and detail["batch"] == 3
    assert "keys_digest" not in detail
    first = batch_detail(KEYS, target, 1, replace(batch, lo=None), recovered=False)
    assert first["range"] == {"after": None, "last": [150]}


def test_keys_mode_also_records_the_digest(make_config: MakeConfig) -> None:
    target = replace(_plain(make_config), audit="keys", keys_personal=False)
    batch = SweepBatch(lo=None, hi=(7,), count=7, keys_digest="ab" * 32)
    detail = batch_detail(KEYS, target, 1, batch, recovered=True)
    assert detail["audit"] == "keys" and detail["keys_digest"] == "ab" * 32
    assert detail["range"] == {"after": None, "last": [7]} and detail["recovered"] is True


def test_personal_keys_appear_only_as_keyed_hashes(make_config: MakeConfig) -> None:
    target = replace(_plain(make_config), keys_personal=True)
    lo, hi = ("alice@example.com",), ("bob@example.com",)
    detail = batch_detail(KEYS, target, 2, SweepBatch(lo, hi, 2, ""), recovered=False)
    text = json.dumps(detail)
    assert "example.com" not in text and "alice" not in text
    after, last = detail["range"]["after"], detail["range"]["last"]
    assert after.startswith("hmac:") and last.startswith("hmac:") and after != last
    # the same key, the same hash: one batch's last is the next batch's after
    following = batch_detail(
        KEYS, target, 3, SweepBatch(hi, ("carol@example.com",), 1, ""), recovered=False
    )
    assert following["range"]["after"] == last
    other_keys = KeyRing.from_master(b"o" * 32)  # keyed: another master, other hashes
    assert (
        batch_detail(other_keys, target, 2, SweepBatch(lo, hi, 2, ""), recovered=False)["range"][
            "last"
        ]
        != last
    )


def test_personal_keys_follow_the_inventory(make_config: MakeConfig) -> None:
    config = load_config(make_config())
    buckets = {b.name: b for s in config.stores_of(S3Store) for b in s.buckets}
    s3 = [t for t in resolve_targets(config, NOW) if t.bucket is not None]
    assert s3
    for t in s3:
        assert t.keys_personal == buckets[str(t.bucket)].keys_contain_personal_data
