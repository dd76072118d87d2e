"""Signed JSON requests to a processor's privacy API, with bounded, backed-off retries.

Every request is a ``POST`` of a JSON body to ``<endpoint>/v1/<operation>``, signed with
HMAC-SHA256 over ``timestamp + "." + body`` under the secret read from the environment
variable the store names (``secret_env``). Headers: ``X-Lifecycle-Timestamp`` (Unix
seconds), ``X-Lifecycle-Signature`` (``sha256=<hex>``), and for requests that change
data ``Idempotency-Key`` (the provider answers a repeat with the first answer). The API:

==================  ==========================================  =============================
operation           body                                        answer
==================  ==========================================  =============================
``ping``            ``{}``                                      ``{"ok": true}``
``locate``          ``{"identities": {kind: [values]}}``        ``{"records": [{"ref"}]}``
``export``          ``{"refs": [...]}``                         ``{"records": [{"ref", "data"}]}``
``holds``           ``{"refs": [...]}``                         ``{"holds": [{"ref", "reason",
                                                                "until"}]}``
``erasures``        ``{"refs": [...]}``                         ``{"reference", "status"}``
``rectifications``  ``{"refs": [...], "changes": {f: v}}``      ``{"reference", "status"}``
``status``          ``{"idempotency_key": k}``                  ``{"reference", "status"}``
==================  ==========================================  =============================

``status`` is ``pending``, ``confirmed``, ``failed`` or (``status`` only) ``unknown``.
Connection errors, timeouts, 429 and 5xx are retried (``retries`` times, the delay
starting at ``backoff`` seconds and doubling); any other 4xx is a refusal, raised at once.
HTTPS verifies the endpoint against the system CAs or ``ca_bundle``; ``http://`` is
accepted for 127.0.0.1 and localhost only (tests, the demo). Redirects are not followed:
a signed body goes to the configured endpoint or nowhere.

Identities travel only inside the signed body of ``locate``: errors and log records name
the store, the operation and the HTTP status, never a body (a provider may echo it).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from connectors.processor.config import ProcessorStore
from core.errors import ConfigError, TerminalError, TransientError

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Lifecycle-Timestamp"
SIGNATURE_HEADER = "X-Lifecycle-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""A larger answer is refused (an export is paged by the caller's refs)."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the HMAC of ``timestamp.body``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` signs ``timestamp.body`` under ``secret`` (for providers, stubs)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class ProviderRefused(TerminalError):
    """The provider answered a 4xx other than 429: retrying the same request cannot help."""


class ProviderUnavailable(TransientError):
    """No usable answer after every retry (connection errors, timeouts, 429, 5xx)."""


class ProviderAnswerInvalid(TerminalError):
    """The provider answered 2xx with something that is not the API's JSON."""


@dataclass(frozen=True)
class Answer:
    """A 2xx answer: its status and JSON object."""

    status: int
    data: Mapping[str, Any]


class _Retry(Exception):
    """One attempt failed in a way a retry may fix; ``reason`` says how (no body)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProcessorClient:
    """Signs and sends one store's requests; one HTTP connection per call (no pooling)."""

    def __init__(
        self,
        store: ProcessorStore,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if store.endpoint is None or store.secret_env is None:
            raise ConfigError(
                f"store '{store.name}': endpoint and secret_env are required in api mode"
            )
        self.store = store
        self.name = store.name
        parts = urlsplit(store.endpoint)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._environ = environ
        self._sleep = sleep
        self._clock = clock
        self._context: ssl.SSLContext | None = None

    def _secret(self) -> bytes:
        env = self.store.secret_env or ""
        value = (os.environ if self._environ is None else self._environ).get(env, "")
        if not value:
            raise ConfigError(
                f"store '{self.name}': environment variable {env} (secret_env) is not set; "
                "it holds the secret requests to the provider are signed with"
            )
        return value.encode()

    def _ssl(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context(cafile=self.store.ca_bundle)
        return self._context

    def _connection(self) -> http.client.HTTPConnection:
        timeout = self.store.timeout
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._ssl()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _attempt(self, operation: str, body: bytes, idempotency_key: str | None) -> Answer:
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret(), timestamp, body),
        }
        if idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        conn = self._connection()
        try:
            conn.request("POST", f"{self._base}/v1/{operation}", body=body, headers=headers)
            response = conn.getresponse()
            status = response.status
            raw = response.read(MAX_ANSWER_BYTES + 1)
        except ssl.SSLCertVerificationError as e:
            raise TerminalError(
                f"store '{self.name}': the provider's TLS certificate did not verify "
                f"({e.verify_message}); set ca_bundle if it is signed by a private CA",
                store=self.name,
                operation=operation,
            ) from None
        except (OSError, http.client.HTTPException) as e:  # timeouts are OSErrors too
            raise _Retry(type(e).__name__) from None
        finally:
            conn.close()
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}")
        if not 200 <= status < 300:
            hint = " (signature refused: check secret_env)" if status in (401, 403) else ""
            raise ProviderRefused(
                f"store '{self.name}': the provider refused {operation} (HTTP {status}){hint}",
                store=self.name,
                operation=operation,
                status=status,
            )
        return Answer(status, self._decode(operation, raw))

    def _decode(self, operation: str, raw: bytes) -> Mapping[str, Any]:
        try:
            if len(raw) > MAX_ANSWER_BYTES:
                raise ValueError("too large")
            data = json.loads(raw or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderAnswerInvalid(
                f"store '{self.name}': the provider's answer to {operation} is not a JSON object",
                store=self.name,
                operation=operation,
            )
        return data

    def call(
        self, operation: str, payload: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Answer:
        """POST ``payload`` to ``operation``, retrying transient failures; the 2xx answer.

        ``ProviderRefused`` on a 4xx, ``ProviderUnavailable`` once retries are spent,
        ``ConfigError`` if the secret is not set (before anything is sent).
        """
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        self._secret()  # a missing secret is a configuration error, not a retry
        attempts = self.store.retries + 1
        reason = ""
        for attempt in range(attempts):
            try:
                return self._attempt(operation, body, idempotency_key)
            except _Retry as e:
                reason = e.reason
            if attempt + 1 < attempts:
                delay = self.store.backoff * 2**attempt
                delay = delay / 2 + random.uniform(0, delay / 2)  # jitter, not crypto
                log.warning(
                    "store %s: %s attempt %d of %d failed (%s); retrying in %.2f s",
                    self.name,
                    operation,
                    attempt + 1,
                    attempts,
                    reason,
                    delay,
                )
                self._sleep(delay)
        raise ProviderUnavailable(
            f"store '{self.name}': the provider did not answer {operation} after "
            f"{attempts} attempt(s) ({reason})",
            store=self.name,
            operation=operation,
            reason=reason,
        )
