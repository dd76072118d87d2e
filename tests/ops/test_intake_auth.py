"""Signatures, basic auth and the cross-site check, without a server."""

from __future__ import annotations

import base64

import pytest

from ops.intake.auth import basic_auth_ok, cross_site
from ops.intake.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRefused,
    signature,
    signed_headers,
    verify,
)

SECRET = b"shared-secret"
BODY = b'{"kind":"erasure"}'
NOW = 1_800_000_000.0


def test_the_signature_covers_timestamp_and_body() -> None:
    headers = signed_headers(SECRET, BODY, NOW)
    assert headers[TIMESTAMP_HEADER] == "1800000000"
    assert headers[SIGNATURE_HEADER] == signature(SECRET, "1800000000", BODY)
    assert headers[SIGNATURE_HEADER].startswith("sha256=")
    assert len(headers[SIGNATURE_HEADER]) == len("sha256=") + 64
    assert verify(SECRET, headers, BODY, tolerance=300, now=NOW) == headers[SIGNATURE_HEADER]
    assert signature(SECRET, "1800000001", BODY) != headers[SIGNATURE_HEADER]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({TIMESTAMP_HEADER: None}, "missing"),
        ({SIGNATURE_HEADER: None}, "missing"),
        ({TIMESTAMP_HEADER: "-5"}, "malformed"),
        ({TIMESTAMP_HEADER: "1.8e9"}, "malformed"),
        ({TIMESTAMP_HEADER: "1800000000"}, "does not match"),  # fine, but not what was signed
        ({SIGNATURE_HEADER: "sha256=" + "0" * 64}, "does not match"),
        ({SIGNATURE_HEADER: "sha256=ä"}, "does not match"),
    ],
)
def test_missing_malformed_or_forged_headers_are_refused(
    change: dict[str, str | None], reason: str
) -> None:
    headers: dict[str, str | None] = {**signed_headers(SECRET, BODY, NOW + 1), **change}
    present = {k: v for k, v in headers.items() if v is not None}
    with pytest.raises(SignatureRefused, match=reason):
        verify(SECRET, present, BODY, tolerance=300, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_a_timestamp_outside_the_window_is_refused(skew: int) -> None:
    headers = signed_headers(SECRET, BODY, NOW + skew)
    with pytest.raises(SignatureRefused, match="stale"):
        verify(SECRET, headers, BODY, tolerance=300, now=NOW)
    assert verify(SECRET, signed_headers(SECRET, BODY, NOW + 299), BODY, tolerance=300, now=NOW)


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_basic_auth_takes_exactly_the_credentials() -> None:
    assert basic_auth_ok(_basic("admin:pw"), "admin:pw")
    assert basic_auth_ok("basic " + base64.b64encode(b"admin:pw").decode(), "admin:pw")
    for header in (None, "", _basic("admin:pw2"), _basic("admin"), "Bearer x", "Basic !!!"):
        assert not basic_auth_ok(header, "admin:pw")
    assert not basic_auth_ok(_basic(":"), "")  # no credentials configured: nobody


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),  # curl, a help desk: no browser headers
        ({"host": "127.0.0.1:4210", "origin": "http://127.0.0.1:4210"}, False),
        ({"host": "127.0.0.1:4210", "sec-fetch-site": "same-origin"}, False),
        ({"host": "127.0.0.1:4210", "origin": "http://localhost:4210"}, True),
        ({"host": "127.0.0.1:4210", "origin": "null"}, True),
        ({"host": "127.0.0.1:4210", "sec-fetch-site": "same-site"}, True),
        ({"host": "127.0.0.1:4210", "sec-fetch-site": "cross-site"}, True),
    ],
)
def test_cross_site_posts_are_recognized(headers: dict[str, str], refused: bool) -> None:
    assert cross_site(headers) is refused
