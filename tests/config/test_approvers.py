"""policy.yaml approvers: {name, public_key}; plain names (deprecated) only where unneeded."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.loader import load_config
from core.approver_keys import public_key_text
from core.errors import ConfigError
from tests.config.conftest import MakeConfig

POL = "policy.yaml"
PLAIN = "approvers: [privacy-officer]"
KEY = public_key_text(Ed25519PrivateKey.from_private_bytes(b"\x01" * 32).public_key())
HUMAN = (POL, "auto_approve: true", "auto_approve: false")


def _problems(folder: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(folder)
    return caught.value.problems


def test_keyed_approvers_load(make_config: MakeConfig) -> None:
    keyed = f'approvers: [{{name: dpo, public_key: "{KEY}"}}, legal]'
    approval = load_config(make_config(HUMAN, (POL, PLAIN, keyed))).policy.requests.approval
    assert [(a.name, a.public_key) for a in approval.approvers] == [("dpo", KEY), ("legal", None)]
    assert approval.approver("DPO") is approval.approvers[0] and not approval.unverified_ui


def test_plain_names_still_load_where_no_human_decides(make_config: MakeConfig) -> None:
    approval = load_config(make_config()).policy.requests.approval  # the demo: auto-approve
    assert approval.approvers[0].public_key is None


def test_plain_names_alone_cannot_decide_and_are_refused(make_config: MakeConfig) -> None:
    [problem] = _problems(make_config(HUMAN))
    assert "requests.approval.approvers: approval is required for erasure but no approver " in (
        problem
    )
    assert "lifecycle approver keygen" in problem and "unverified_ui: true" in problem


def test_unverified_ui_lets_plain_names_decide_in_the_ui(make_config: MakeConfig) -> None:
    relaxed = (POL, PLAIN, PLAIN + "\n    unverified_ui: true")
    approval = load_config(make_config(HUMAN, relaxed)).policy.requests.approval
    assert approval.unverified_ui


@pytest.mark.parametrize(
    ("approvers", "problem"),
    [
        ('[{name: dpo, public_key: "abc"}]', "approvers[0].public_key"),
        ("[{name: robin@example.com}]", "approvers[0].name: must be a name or role"),
        (f'[{{name: dpo, public_key: "{KEY}"}}, DPO]', "duplicate approver 'dpo'"),
        (
            f'[{{name: dpo, public_key: "{KEY}"}}, {{name: legal, public_key: "{KEY}"}}]',
            "duplicate approver public_key",
        ),
    ],
)
def test_bad_approvers_are_named(make_config: MakeConfig, approvers: str, problem: str) -> None:
    problems = _problems(make_config((POL, PLAIN, f"approvers: {approvers}")))
    assert any(problem in p for p in problems), problems
    assert not any("robin@" in p for p in problems)
