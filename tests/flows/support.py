"""Test setup for subject-request flows: a small inventory and policy, seeded fake stores.

Two SQL stores served by the fake connector (``crm`` finds the subject by e-mail or
customer number and derives ``customer_id``; ``shop`` is reached only through that
derived identity) and one S3 store, which has no connector yet and must be skipped.
The subject is Robin Quill; Sam Birch is a bystander whose rows must never change.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.events import StoredEvent
from audit.ledger import Ledger
from core.approver_keys import public_key_text, sign_decision
from state.approvals import Signer
from tests import forked_cli
from tests.flows.fakes import read_store, write_store

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

APPROVER_KEYS = {"privacy-officer": 1, "dpo": 2, "intruder": 3}
"""Seeds of the approvers' Ed25519 keys (fixed, so subprocesses derive the same keys);
"intruder" is in no policy: a key that verifies nothing."""

SUBJECT_EMAIL = "Robin.Quill@Example.com"
SUBJECT_NUMBER = "C-1001"
OTHER_EMAIL = "sam.birch@example.com"
APPROVER = "privacy-officer"
REQUESTER = "intake-desk"

INVENTORY = """\
stores:
  - name: crm
    type: sql
    url: "sqlite:///${LIFECYCLE_DATA_DIR}/stores/crm.db"
    region: eu-central-1
    tables:
      - name: customers
        identity:
          - {column: email, kind: email, case_insensitive: true}
          - {column: customer_number, kind: customer_number}
        derives:
          - {column: id, as: customer_id}
        fields:
          email: [contact]
          full_name: [contact]
      - name: orders
        fields:
          shipping_address: [contact, order_history]
      - name: invoices
        fields:
          billing_name: [billing]
  - name: shop
    type: sql
    url: "sqlite:///${LIFECYCLE_DATA_DIR}/stores/shop.db"
    region: eu-central-1
    tables:
      - name: carts
        fields:
          items: [order_history]
      - name: wishlists
        fields:
          items: [order_history]
  - name: files
    type: s3
    region: eu-central-1
    buckets:
      - name: test-attachments
        categories: [support]
        key_templates: ["tickets/{customer_id}/"]
"""

POLICY = """\
categories:
  - {name: contact}
  - {name: order_history}
  - {name: billing}
  - {name: support}
requests:
  deadline_days: 30
  approval:
    required_for: [__REQUIRED__]
    auto_approve: __AUTO__
    approvers:
      - {name: privacy-officer, public_key: "__KEY_privacy-officer__"}
      - {name: dpo, public_key: "__KEY_dpo__"}
    unverified_ui: __UNVERIFIED__
  erasure:
    default: {action: delete}
    categories:
      billing: {action: mask, mask: redact, reason: "invoices kept 10 years (tax law)"}
legal_holds:__HOLDS__
"""

HOLD = """
  - id: HOLD-TEST-1
    reason: "Litigation hold: wishlist dispute"
    scope: {store: shop, table: wishlists}
    starts: 2020-01-01
    ends: 2099-12-31"""


def write_config(
    folder: Path,
    *,
    required_for: tuple[str, ...] = ("erasure",),
    auto_approve: bool = True,
    hold: bool = False,
    unverified_ui: bool = False,
) -> Path:
    """Write inventory.yaml and policy.yaml for the fake stores into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inventory.yaml").write_text(INVENTORY)
    policy = (
        POLICY.replace("__REQUIRED__", ", ".join(required_for))
        .replace("__AUTO__", "true" if auto_approve else "false")
        .replace("__HOLDS__", HOLD if hold else " []")
        .replace("__UNVERIFIED__", "true" if unverified_ui else "false")
    )
    for name in APPROVER_KEYS:
        policy = policy.replace(f"__KEY_{name}__", public_key_text(approver_key(name).public_key()))
    (folder / "policy.yaml").write_text(policy)
    return folder


def seed_stores(data_dir: Path) -> None:
    """The subject (customer 1) and a bystander (customer 2) in both SQL stores."""
    stores = data_dir / "stores"
    write_store(
        stores / "crm.json",
        {
            "tables": {
                "customers": [
                    {
                        "id": 1,
                        "email": SUBJECT_EMAIL,
                        "customer_number": SUBJECT_NUMBER,
                        "full_name": "Robin Quill",
                    },
                    {
                        "id": 2,
                        "email": OTHER_EMAIL,
                        "customer_number": "C-1002",
                        "full_name": "Sam Birch",
                    },
                ],
                "orders": [
                    {"id": 10, "customer_id": 1, "shipping_address": "1 Quill Lane"},
                    {"id": 11, "customer_id": 1, "shipping_address": "1 Quill Lane"},
                    {"id": 12, "customer_id": 1, "shipping_address": "2 Quill Lane"},
                    {"id": 13, "customer_id": 2, "shipping_address": "9 Birch Road"},
                ],
                "invoices": [
                    {"id": 20, "customer_id": 1, "billing_name": "Robin Quill"},
                    {"id": 21, "customer_id": 2, "billing_name": "Sam Birch"},
                ],
            },
            "links": {
                "orders": ["customer_id", "customers"],
                "invoices": ["customer_id", "customers"],
            },
        },
    )
    write_store(
        stores / "shop.json",
        {
            "tables": {
                "carts": [
                    {"id": 30, "customer_id": 1, "items": "pens"},
                    {"id": 31, "customer_id": 2, "items": "ink"},
                ],
                "wishlists": [{"id": 40, "customer_id": 1, "items": "quills"}],
            }
        },
    )


def store_rows(data_dir: Path, store: str) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = read_store(data_dir / "stores" / f"{store}.json")[
        "tables"
    ]
    return rows


def set_failure(data_dir: Path, store: str, method: str, failure: str | None) -> None:
    """Make the fake store's ``method`` fail ("transient" or a message), or heal it."""
    path = data_dir / "stores" / f"{store}.json"
    data = read_store(path)
    fail = data.setdefault("fail", {})
    if failure is None:
        fail.pop(method, None)
    else:
        fail[method] = failure
    write_store(path, data)


def approver_key(name: str) -> Ed25519PrivateKey:
    """The test private key of approver ``name`` (see ``APPROVER_KEYS``)."""
    return Ed25519PrivateKey.from_private_bytes(bytes([APPROVER_KEYS[name]]) * 32)


def signer(name: str) -> Signer:
    """``name`` as a signer, with the key the test policy lists for them."""
    return Signer(name, approver_key(name))


def key_file(folder: Path, name: str) -> Path:
    """``name``'s private key as a PEM file (for ``--signing-key``/``--key``)."""
    path = folder / f"{name}.key"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        pem = approver_key(name).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem)
        path.chmod(0o600)
    return path


def signed_token(
    request_id: str, name: str, decision: str = "approved", key_of: str | None = None
) -> str:
    """The line ``lifecycle approver sign`` prints: ``name``'s decision on the plans now,
    signed with ``key_of``'s key (default: ``name``'s own; another one forges it)."""
    from engine.request_support import request_context
    from state.approvals import current_scope

    ctx = request_context()
    scope = current_scope(ctx.record(request_id), ctx.progress)
    return sign_decision(
        approver_key(key_of or name),
        request_id=request_id,
        scope=scope,
        decision="approved" if decision == "approved" else "rejected",
        approver=name,
    ).token()


def events(request_id: str) -> list[StoredEvent]:
    return list(Ledger.open().events(request_id=request_id))


def kinds(request_id: str) -> list[str]:
    return [e.kind for e in events(request_id)]


STUCK_SECONDS = 300
"""How long a helper thread may take to stop: only a stuck one gets near it, even on a
busy machine, so it is a bound for reporting a hang, never a tolerance."""


@contextmanager
def answering_pauses(
    answer: Callable[[int, FlowRun], dict[str, str]],
    count: int,
    *,
    request_id: str | None = None,
) -> Iterator[list[UUID]]:
    """A background approver: resumes paused flow runs (only request ``request_id``'s, if
    given) ``count`` times, the n-th with ``answer(n, run)``. Yields the ids of the runs it
    resumed. Stops after the last answer or on exit.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    resumed: list[UUID] = []
    stop = threading.Event()

    def answer_pauses() -> None:
        with get_client(sync_client=True) as client:
            while len(resumed) < count and not stop.is_set():
                paused = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(
                            type=FlowRunFilterStateType(any_=[StateType.PAUSED])
                        )
                    )
                )
                for run in paused:
                    if request_id is not None and run.parameters.get("request_id") != request_id:
                        continue  # another test's run
                    try:
                        resume_flow_run(run.id, run_input=answer(len(resumed), run))
                    except Exception:
                        continue  # the form's schema is not saved yet: try again shortly
                    resumed.append(run.id)
                    break
                stop.wait(0.2)  # a poll interval; wakes at once on exit

    thread = threading.Thread(target=answer_pauses, daemon=True)
    thread.start()
    try:
        yield resumed
    finally:
        stop.set()
        thread.join(timeout=STUCK_SECONDS)  # a call in flight finishes first
        if thread.is_alive():
            raise AssertionError(f"the approver thread is stuck after {STUCK_SECONDS} s")


def reviewer(*answers: dict[str, str]) -> AbstractContextManager[list[UUID]]:
    """A background approver: answers each pause of a paused flow run with the next answer.

    An answer with ``sign_as: NAME`` gets NAME's signature over the run's request and its
    plans as they are when it answers (what ``lifecycle approver sign`` prints), made with
    the key of ``key_of`` if given (a forgery). Yields the ids of the runs it resumed.
    Stops after the last answer or on exit.
    """

    def answer(n: int, run: FlowRun) -> dict[str, str]:
        given = dict(answers[n])
        name = given.pop("sign_as", None)
        key_of = given.pop("key_of", None)
        if name is not None:
            decision = "approved" if given["decision"] == "approve" else "rejected"
            request_id = str(run.parameters["request_id"])
            given["signature"] = signed_token(request_id, name, decision, key_of)
        return given

    return answering_pauses(answer, len(answers))


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``lifecycle ARGS`` in a process of its own, with fake SQL stores
    (``tests.flows.crash_runner``), forked from a warm one (``tests.forked_cli``)."""
    return forked_cli.run("tests.flows.crash_runner", args, env=env, timeout=timeout)


def subprocess_env(**extra: str) -> dict[str, str]:
    """This test's environment (data dir, config, key) for a subprocess, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_TEST_")}
    env.update(extra)
    return env


def answered_key(flow_run_id: UUID) -> str:
    """The pause key the run waited on (one question asked): its run input's base key."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        keys = sorted(client.read_flow_run(flow_run_id).empirical_policy.pause_keys or ())
    assert len(keys) == 1, keys
    return str(keys[0])
