"""The boto3 client for an S3 store, and the translation of botocore errors.

botocore errors are translated at this boundary: throttling, 5xx answers and lost or
refused connections become ``TransientError`` (a retry may succeed), everything else
``TerminalError``. Messages name the store, bucket, operation and S3 error code only:
never ``str(e)``, which may echo an object key (personal data in some buckets).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

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


def make_client(store: S3Store, max_workers: int) -> S3Client:
    """A client for ``store``: its endpoint and region, credentials from the AWS chain.

    The connection pool is sized for ``max_workers`` concurrent DeleteObjects calls;
    botocore's own "standard" retries handle whole-call throttling, our purge retries
    the per-key errors that DeleteObjects reports inside a 200 answer.
    """
    endpoint = store.endpoint_url.get_secret_value() if store.endpoint_url else None
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=max(10, max_workers * 2),
    )
    client: S3Client = boto3.session.Session().client(
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


def translate(e: Exception, store: str, operation: str, bucket: str | None) -> LifecycleError:
    """The product error for a botocore error: class and code only, no keys or bodies."""
    code = error_code(e) if isinstance(e, ClientError) else type(e).__name__
    where = f"store '{store}'" + (f", bucket '{bucket}'" if bucket else "")
    kind = TransientError if is_transient(e) else TerminalError
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
