"""Intake refuses a note holding personal data before anything is registered.

``engine.intake.submit`` is shared by the CLI and the deployment form; the note it takes
(a pre-approval's) would be kept verbatim in the register. No flow runs here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.free_text import FreeTextRefused
from engine.intake import submit
from engine.request_support import request_context
from tests.flows.support import APPROVER, REQUESTER, signer

Configure = Callable[..., Path]


@pytest.mark.parametrize(
    ("note", "found"),
    [
        ("approved, subject is robin.quill@example.com", "an e-mail address"),
        ("approved after a call to 020 7946 0000", "a phone number"),
    ],
)
def test_a_note_with_personal_data_registers_nothing(
    configure: Configure, note: str, found: str
) -> None:
    configure()
    ctx = request_context()
    with pytest.raises(FreeTextRefused) as caught:
        submit(
            ctx,
            kind="erasure",
            identity={"email": "robin.quill@example.com"},
            requested_by=REQUESTER,
            reviewer=signer(APPROVER),
            note=note,
        )
    assert str(caught.value) == f"note: holds {found}; notes must not contain personal data"
    assert ctx.register.list() == []
    assert list(ctx.ledger.events()) == []


def test_an_ordinary_note_is_accepted(configure: Configure) -> None:
    configure()
    ctx = request_context()
    record = submit(
        ctx,
        kind="erasure",
        identity={"email": "robin.quill@example.com"},
        requested_by=REQUESTER,
        reviewer=signer(APPROVER),
        note="checked against ticket INC-20240501",
    )
    assert ctx.progress.runs.run(record.id).approval is not None
