"""The demo's newsletter provider: a ``StubProvider`` holding subscriptions of CRM customers.

``config/demo/inventory.yaml`` declares the processor store ``newsletter`` (Example Mail),
reached at ``LIFECYCLE_NEWSLETTER_ENDPOINT`` and signed with the secret in the variable its
``secret_env`` names. The provider's subscriber list is derived from the demo CRM, so the
demo's requests find the subject there too: the two named subjects (the demo subject on
two lists) and every third other customer, by their example.com address in lower case (as
a sign-up form stores it; the request is submitted in lower case too). Record references
are ``NL-<customer id>-<list>``: stable, so a provider restarted on the same CRM answers
a plan made before the restart with the same references.

The stub confirms an erasure only after ``CONFIRM_AFTER_POLLS`` status polls, as a real
provider confirms late; the store's short ``poll_interval`` keeps the wait to a second or two.

``lifecycle demo`` runs ``LocalProvider`` in-process for the run, with a secret made per
run; ``python -m ops.local_provider`` runs it as a process of the served stack.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import select

from connectors.processor.client import SIGNATURE_HEADER, TIMESTAMP_HEADER
from connectors.processor.client import sign as sign_body
from connectors.processor.config import ProcessorStore
from core.engines import make_engine
from demo.crm_schema import crm_metadata
from demo.fake import EMAIL_DOMAIN
from demo.processor_server import StubProvider, StubRecord
from demo.seed_sql import DEMO_PROFILE, SECOND_PROFILE

if TYPE_CHECKING:
    from config.schema.model import LifecycleConfig

PROVIDER_STORE = "newsletter"
"""The demo provider's store name in ``config/demo/inventory.yaml``."""
ENDPOINT_ENV = "LIFECYCLE_NEWSLETTER_ENDPOINT"
"""The variable the store's ``endpoint`` is read from (``${...:-http://127.0.0.1:4580}``)."""
CONFIRM_AFTER_POLLS = 2
"""Status polls before the stub confirms a request (a real provider confirms late)."""
SUBSCRIBER_EVERY = 3
"""Besides the named subjects, every third customer (by id) subscribed to the newsletter."""
_NAMED = {
    DEMO_PROFILE.email.lower(): ("newsletter", "offers"),
    SECOND_PROFILE.email.lower(): ("newsletter",),
}
"""The named subjects' lists (by address): the demo subject is on two."""


def provider_store(config: LifecycleConfig) -> ProcessorStore | None:
    """The demo's provider store, or None when the inventory has no processor ``newsletter``."""
    store = next((s for s in config.inventory.stores if s.name == PROVIDER_STORE), None)
    return store if isinstance(store, ProcessorStore) and store.mode == "api" else None


def new_secret() -> str:
    """A fresh signing secret (per ``lifecycle demo`` run, once per served state folder)."""
    return secrets.token_urlsafe(32)


def subscriber_records(crm_url: str) -> list[StubRecord]:
    """The provider's subscriptions, read from the demo CRM at ``crm_url`` (see the module)."""
    customers = crm_metadata().tables["customers"]
    engine = make_engine(crm_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(customers.c.id, customers.c.email).order_by(customers.c.id)
            ).all()
    finally:
        engine.dispose()
    records = []
    for cid, email in rows:
        address = str(email or "").strip().lower()
        if not address.endswith("@" + EMAIL_DOMAIN):
            continue
        lists = _NAMED.get(address) or (("newsletter",) if cid % SUBSCRIBER_EVERY == 0 else ())
        records += [
            StubRecord(f"NL-{cid:06d}-{name}", {"email": address}, {"email": address, "list": name})
            for name in lists
        ]
    return records


def provider_env(store: ProcessorStore, endpoint: str, secret: str) -> dict[str, str]:
    """What flow runs need to reach the stub at ``endpoint``: its URL and the secret."""
    assert store.secret_env is not None  # api mode: the configuration requires it
    return {ENDPOINT_ENV: endpoint, store.secret_env: secret}


def ping(url: str, secret: str, timeout: float = 2.0) -> bool:
    """Whether the provider at ``url`` answers a signed ``ping`` (readiness; any error: no)."""
    body = b"{}"
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        f"{url}/v1/ping",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign_body(secret.encode(), timestamp, body),
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(request, timeout=timeout) as answer:
            return bool(json.loads(answer.read() or b"{}").get("ok"))
    except (OSError, ValueError):
        return False


def stub_provider(secret: str, records: list[StubRecord]) -> StubProvider:
    """The demo's stub (not started), confirming after ``CONFIRM_AFTER_POLLS`` polls."""
    stub = StubProvider(secret.encode(), records)
    stub.knobs.confirm_after_polls = CONFIRM_AFTER_POLLS
    return stub


@dataclass(frozen=True)
class ProviderRequest:
    """One request the stub took, as the demo reports it: no record reference, no value."""

    kind: str  # erasures or rectifications
    records: int
    reference: str
    state: str
    polls: int  # status polls it was pending for


class LocalProvider:
    """The demo's provider for one ``lifecycle demo`` run: started on a free port, in a thread.

    ``with LocalProvider(store, records) as provider:``; ``applied_env()`` sets the endpoint
    and a per-run secret in ``os.environ`` for the flows.
    """

    def __init__(self, store: ProcessorStore, records: list[StubRecord], port: int = 0) -> None:
        self.store = store
        self._secret = new_secret()
        self.stub = stub_provider(self._secret, records)
        self._port = port

    def __enter__(self) -> LocalProvider:
        self.stub.start(self._port)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stub.stop()

    @property
    def url(self) -> str:
        return self.stub.url

    def env(self) -> dict[str, str]:
        """The endpoint and secret variables (returned, not applied)."""
        return provider_env(self.store, self.url, self._secret)

    @contextmanager
    def applied_env(self) -> Iterator[dict[str, str]]:
        """Set ``env()`` in ``os.environ`` for a ``with`` block, then restore what was there."""
        from demo.s3_server import applied  # boto3: only the in-process demo needs it

        with applied(self.env()) as values:
            yield values

    def subscribers(self) -> int:
        """Distinct addresses the provider holds records for."""
        with self.stub.lock:
            return len({r.identities.get("email") for r in self.stub.records.values()})

    def held_for(self, email: str) -> int:
        """Records the provider holds for ``email`` (compared in lower case)."""
        with self.stub.lock:
            wanted = email.strip().lower()
            return sum(1 for r in self.stub.records.values() if r.identities.get("email") == wanted)

    def taken(self) -> list[ProviderRequest]:
        """The requests the provider took, in order, with the status polls each waited for."""
        with self.stub.lock:
            asked = self.stub.knobs.confirm_after_polls
            return [
                ProviderRequest(r.kind, len(r.refs), r.reference, r.state, asked - r.polls_left)
                for r in self.stub.requests.values()
            ]
