"""A stub provider on 127.0.0.1 and processor stores pointed at it.

The stub (``demo.processor_server``) verifies signatures and honours idempotency keys; a
test turns its knobs to inject delays, 5xx, refusals and late confirmations. Poll
intervals and backoff are tiny so the suite stays fast; no test sleeps for real longer
than a client timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config.loader import load_config
from config.schema.policy import Policy
from connectors.processor.config import ProcessorStore
from connectors.processor.connector import ProcessorConnector
from core.keys import KeyRing
from demo.processor_server import StubProvider, StubRecord
from tests.config.conftest import DEMO_DIR

SECRET = "stub-provider-secret-0123456789abcdef"
SECRET_ENV = "TEST_PROCESSOR_SECRET"
ALICE = "alice@example.com"
BOB = "bob@example.com"
KEYS = KeyRing.from_master(b"k" * 32)

MakeStore = Callable[..., ProcessorStore]
MakeConnector = Callable[..., ProcessorConnector]


def store_data(**overrides: Any) -> dict[str, Any]:
    """A valid processor store's YAML data (api mode, endpoint to be filled in)."""
    data: dict[str, Any] = {
        "type": "processor",
        "name": "mailer",
        "provider": "Example Mail",
        "purpose": "newsletter delivery",
        "region": "eu-west-1",
        "categories": ["contact"],
        "agreement": {"reference": "DPA-2025-7", "expires": "2030-12-31"},
        "identities": ["email"],
        "fields": [
            {"name": "email", "category": "contact", "identity": "email"},
            {"name": "full_name", "category": "contact", "max_length": 20},
        ],
        "endpoint": "http://127.0.0.1:9",
        "secret_env": SECRET_ENV,
        "timeout": 0.3,
        "retries": 3,
        "backoff": 0,
        "confirm_within": "5s",
        "poll_interval": 0.01,
    }
    data.update(overrides)
    return data


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_config(DEMO_DIR).policy


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubProvider]:
    """The stub provider, holding Alice's two records and Bob's one; the secret is set."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    stub = StubProvider(
        SECRET.encode(),
        [
            StubRecord("rec-1", {"email": ALICE}, {"email": ALICE, "full_name": "Alice A"}),
            StubRecord("rec-2", {"email": ALICE}, {"email": ALICE, "list": "offers"}),
            StubRecord("rec-3", {"email": BOB}, {"email": BOB}),
        ],
    )
    with stub.running():
        yield stub


@pytest.fixture
def make_store(provider: StubProvider) -> MakeStore:
    def make(**overrides: Any) -> ProcessorStore:
        return ProcessorStore.model_validate(store_data(**{"endpoint": provider.url, **overrides}))

    return make


@pytest.fixture
def make_connector(make_store: MakeStore, policy: Policy) -> MakeConnector:
    def make(store: ProcessorStore | None = None, **kwargs: Any) -> ProcessorConnector:
        kwargs.setdefault("sleep", lambda _s: None)
        return ProcessorConnector(store or make_store(), policy, keys=KEYS, **kwargs)

    return make
