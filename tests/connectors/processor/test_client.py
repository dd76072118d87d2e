"""Signed requests: signatures, the secret from the environment, retries and refusals, and
no identity in any error or log record (a provider's error body echoes the request)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from connectors.base import Action
from connectors.processor.client import (
    ProcessorClient,
    ProviderRefused,
    ProviderUnavailable,
    sign,
    verify_signature,
)
from connectors.processor.protocol import idempotency_key
from core.errors import ConfigError, TerminalError, TransientError
from demo.local_tls import make_tls_files
from demo.processor_server import StubProvider
from tests.connectors.processor.conftest import (
    ALICE,
    SECRET,
    SECRET_ENV,
    MakeConnector,
    MakeStore,
)

ALICE_IDS = {"email": frozenset({ALICE})}


def _clean(caplog: pytest.LogCaptureFixture, error: BaseException) -> None:
    assert ALICE not in str(error) and ALICE not in repr(error.args)
    fields = getattr(error, "fields", {})
    assert ALICE not in repr(fields)
    assert all(ALICE not in r.getMessage() for r in caplog.records)


def test_the_signature_covers_timestamp_and_body() -> None:
    signature = sign(b"s3cret", "1700000000", b'{"a":1}')
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature(b"s3cret", "1700000000", b'{"a":1}', signature)
    assert not verify_signature(b"s3cret", "1700000001", b'{"a":1}', signature)
    assert not verify_signature(b"other", "1700000000", b'{"a":1}', signature)
    assert not verify_signature(b"s3cret", "1700000000", b'{"a":2}', signature)


def test_the_idempotency_key_is_deterministic_and_opaque() -> None:
    keys = (("rec-1",), ("rec-2",))
    a = idempotency_key("mailer", Action.DELETE, "Example Mail", keys)
    assert a == idempotency_key("mailer", Action.DELETE, "Example Mail", tuple(reversed(keys)))
    assert a != idempotency_key("other", Action.DELETE, "Example Mail", keys)
    assert a != idempotency_key("mailer", Action.DELETE, "Example Mail", keys[:1])
    assert a != idempotency_key("mailer", Action.RECTIFY, "Example Mail", keys)
    assert "rec-1" not in a


def test_a_wrong_secret_is_refused_with_a_hint(
    make_connector: MakeConnector,
    provider: StubProvider,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    with pytest.raises(ProviderRefused) as raised:
        make_connector().locate(ALICE_IDS)
    assert str(raised.value) == (
        "store 'mailer': the provider refused locate (HTTP 401) "
        "(signature refused: check secret_env)"
    )
    assert raised.value.fields["status"] == 401
    assert provider.rejected_signatures == 1  # a refusal is not retried
    _clean(caplog, raised.value)


def test_a_missing_secret_names_the_variable_and_sends_nothing(
    make_connector: MakeConnector, provider: StubProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(ConfigError) as raised:
        make_connector().locate(ALICE_IDS)
    assert str(raised.value) == (
        f"store 'mailer': environment variable {SECRET_ENV} (secret_env) is not set; it "
        "holds the secret requests to the provider are signed with"
    )
    assert provider.calls == []


def test_a_4xx_is_a_refusal_that_never_shows_the_body(
    make_connector: MakeConnector, provider: StubProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.knobs.refuse["locate"] = 422
    with pytest.raises(ProviderRefused) as raised:
        make_connector().locate(ALICE_IDS)
    assert str(raised.value) == "store 'mailer': the provider refused locate (HTTP 422)"
    assert isinstance(raised.value, TerminalError)
    assert [op for op, _ in provider.calls] == ["locate"]  # not retried
    _clean(caplog, raised.value)


def test_timeouts_429_and_5xx_are_retried_then_succeed(
    make_connector: MakeConnector, provider: StubProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider.knobs.delays = [1.0]  # past the 0.3 s timeout
    provider.knobs.statuses = [503, 429]  # after the delayed call
    slept: list[float] = []
    c = make_connector(sleep=slept.append)
    assert c.locate(ALICE_IDS).total == 2
    assert [op for op, _ in provider.calls] == ["locate"] * 4
    assert len(slept) == 3
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert [m.split("(")[1].split(")")[0] for m in retries] == [
        "TimeoutError",
        "HTTP 503",
        "HTTP 429",
    ]
    _clean(caplog, Exception())


def test_retries_run_out_as_a_transient_error(
    make_connector: MakeConnector, provider: StubProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.knobs.statuses = [500, 502, 503, 504]
    with pytest.raises(ProviderUnavailable) as raised:
        make_connector().locate(ALICE_IDS)
    assert isinstance(raised.value, TransientError)
    assert str(raised.value) == (
        "store 'mailer': the provider did not answer locate after 4 attempt(s) (HTTP 504)"
    )
    _clean(caplog, raised.value)


def test_backoff_doubles(make_store: MakeStore, provider: StubProvider) -> None:
    provider.knobs.statuses = [503, 503, 503]
    slept: list[float] = []
    client = ProcessorClient(make_store(backoff=0.4), sleep=slept.append)
    assert client.call("ping", {}).data == {"ok": True}
    # Each delay is jittered within its upper half: [b/2, b] for b = 0.4, 0.8, 1.6.
    for delay, base in zip(slept, (0.4, 0.8, 1.6), strict=True):
        assert base / 2 <= delay <= base


def test_an_unreachable_endpoint_is_transient(make_store: MakeStore) -> None:
    client = ProcessorClient(make_store(endpoint="http://127.0.0.1:9", retries=1))
    with pytest.raises(
        ProviderUnavailable, match=r"after 2 attempt\(s\) \(ConnectionRefusedError\)"
    ):
        client.call("ping", {})


def test_an_answer_that_is_not_the_api_is_refused(
    make_connector: MakeConnector, provider: StubProvider
) -> None:
    provider.records["rec-1"].ref = "rec 1 <alice@example.com>"
    provider.records["bad"] = provider.records.pop("rec-1")
    with pytest.raises(TerminalError, match="invalid record reference") as raised:
        make_connector().locate(ALICE_IDS)
    assert ALICE not in str(raised.value)


def test_https_verifies_the_provider_against_the_ca_bundle(
    tmp_path: Path, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = make_tls_files(tmp_path / "tls")
    stub = StubProvider(SECRET.encode()).start(tls=tls.server_context())
    try:
        assert stub.url.startswith("https://127.0.0.1:")
        trusted = ProcessorClient(make_store(endpoint=stub.url, ca_bundle=str(tls.ca)))
        assert trusted.call("ping", {}).data == {"ok": True}
        untrusted = ProcessorClient(make_store(endpoint=stub.url))
        with pytest.raises(TerminalError, match="TLS certificate did not verify") as raised:
            untrusted.call("ping", {})
        assert "set ca_bundle" in str(raised.value)
    finally:
        stub.stop()
    assert [op for op, _ in stub.calls] == ["ping"]
