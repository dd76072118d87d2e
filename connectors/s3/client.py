"""The boto3 client for an S3 store, and the translation of botocore errors.

botocore errors are translated at this boundary: throttling, 5xx answers and lost or
refused connections become ``TransientError`` (a retry may succeed), everything else
``TerminalError``. Messages name the store, bucket, operation and S3 error code only:
never ``str(e)``, which may echo an object key (personal data in some buckets).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import SSLError as BotoSSLError
from botocore.utils import parse_timestamp

from connectors.s3.config import S3Store
from core.errors import LifecycleError, TerminalError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)
"""S3 error codes (whole calls or single keys of DeleteObjects) that a retry may clear."""


def listing_timestamp(value: str) -> datetime:
    """A timestamp of an S3 answer: ISO 8601 (listings' ``LastModified``, ``...T...Z``)
    by ``datetime.fromisoformat``, anything else (HTTP dates, epochs) by botocore.

    botocore's own parser goes through dateutil for every timestamp, about half a
    millisecond each: most of the client-side cost of a 1,000-object listing page.
    """
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        parsed: datetime = parse_timestamp(value)
        return parsed


def make_client(store: S3Store, max_workers: int) -> S3Client:
    """A client for ``store``: its endpoint and region, credentials from the AWS chain.

    The connection pool is sized for ``max_workers`` concurrent DeleteObjects calls;
    botocore's own "standard" retries handle whole-call throttling, our purge retries
    the per-key errors that DeleteObjects reports inside a 200 answer. Timestamps are
    parsed by ``listing_timestamp`` (listings are read page after page).
    """
    endpoint = store.endpoint_url.get_secret_value() if store.endpoint_url else None
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=max(10, max_workers * 2),
    )
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=listing_timestamp
    )
    client: S3Client = boto3.session.Session(botocore_session=core).client(
        "s3", region_name=store.region, endpoint_url=endpoint, config=config
    )
    return client


def error_code(e: ClientError) -> str:
    """The S3 error code of a ClientError (``"Unknown"`` when the answer had none)."""
    return str(e.response.get("Error", {}).get("Code") or "Unknown")


def is_transient(e: Exception) -> bool:
    """Whether a botocore error is throttling, a 5xx answer or a connection problem."""
    if isinstance(e, BotoConnectionError):
        return True
    if isinstance(e, ClientError):
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(e) in TRANSIENT_CODES or status == 429 or status >= 500
    return False


AUTH_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
"""S3 error codes saying the credentials themselves were refused."""
ENDPOINT_FIX = (
    "check that the S3 endpoint is running and the store's endpoint_url points at it "
    "(the demo inventory reads it from LIFECYCLE_S3_ENDPOINT)"
)
CREDENTIALS_FIX = (
    "give AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), or "
    "point the store's endpoint_url at an S3 endpoint (the demo inventory reads it from "
    "LIFECYCLE_S3_ENDPOINT)"
)


def _address(e: BotoCoreError) -> str:
    """``host:port`` of the endpoint a connection error names (never the path: keys)."""
    parts = urlsplit(str(getattr(e, "kwargs", {}).get("endpoint_url", "")))
    if not parts.hostname:
        return "the endpoint"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _failure_kind(e: BotoCoreError) -> str | None:
    """refused, dns, timeout or tls, from the error and the socket error beneath it."""
    if isinstance(e, BotoSSLError):
        return "tls"
    inner = getattr(e, "kwargs", {}).get("error")
    causes = [inner, getattr(inner, "__cause__", None), getattr(inner, "__context__", None)]
    for cause in (c for c in causes if c is not None):
        if isinstance(cause, socket.gaierror):
            return "dns"
        if isinstance(cause, ConnectionRefusedError):
            return "refused"
        if isinstance(cause, TimeoutError):
            return "timeout"
    text = str(inner or "")
    markers = {
        "refused": ("Connection refused", "Errno 111"),
        "dns": ("Name or service not known", "nodename nor servname", "Temporary failure in"),
        "timeout": ("timed out",),
    }
    return next((k for k, words in markers.items() if any(w in text for w in words)), None)


def _connection_problem(e: BotoCoreError) -> str:
    """Why a connection failed, in words: refused, DNS, timeout, TLS."""
    address = _address(e)
    host = address.rsplit(":", 1)[0]
    return {
        "tls": f"TLS with {address} failed (certificate or protocol)",
        "dns": f"host {host} not found (DNS)",
        "refused": f"connection refused at {address}",
        "timeout": f"no answer from {address} (timeout)",
    }.get(_failure_kind(e) or "", f"cannot connect to {address} ({type(e).__name__})")


def unreachable(e: Exception) -> tuple[str, str] | None:
    """Why the store cannot be reached at all and how to fix it, or None for other errors."""
    if isinstance(e, NoCredentialsError | PartialCredentialsError):
        return f"no AWS credentials were found ({type(e).__name__})", CREDENTIALS_FIX
    if isinstance(e, ClientError) and error_code(e) in AUTH_CODES:
        return f"the credentials were refused ({error_code(e)})", CREDENTIALS_FIX
    if isinstance(e, EndpointConnectionError | BotoConnectionError):
        return _connection_problem(e), ENDPOINT_FIX
    return None


def translate(e: Exception, store: str, operation: str, bucket: str | None) -> LifecycleError:
    """The product error for a botocore error: class and code only, no keys or bodies.

    A store that cannot be reached at all (connection refused, DNS, timeout, TLS, missing
    or refused credentials) says so, why, and how to fix it (``unreachable=True``).
    """
    code = error_code(e) if isinstance(e, ClientError) else type(e).__name__
    where = f"store '{store}'" + (f", bucket '{bucket}'" if bucket else "")
    kind = TransientError if is_transient(e) else TerminalError
    problem = unreachable(e)
    if problem is not None:
        why, fix = problem
        return kind(
            f"store '{store}' is unreachable: {why} ({operation}"
            + (f" of bucket '{bucket}'" if bucket else "")
            + f"); {fix}",
            store=store,
            bucket=bucket,
            operation=operation,
            code=code,
            unreachable=True,
        )
    return kind(
        f"{where}: {operation} failed ({code})",
        store=store,
        bucket=bucket,
        operation=operation,
        code=code,
    )


@contextmanager
def s3_errors(store: str, operation: str, bucket: str | None = None) -> Iterator[None]:
    """Translate botocore errors raised inside the block (``raise ... from e``)."""
    try:
        yield
    except (ClientError, BotoCoreError) as e:
        raise translate(e, store, operation, bucket) from e
