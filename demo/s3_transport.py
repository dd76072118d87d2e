"""Make moto judge ``aws:SecureTransport`` in bucket policies the way AWS does.

moto 5 refuses every object call in a bucket whose policy has a conditional Deny such as
``{"Bool": {"aws:SecureTransport": "false"}}`` (the usual TLS-only policy), whatever the
transport: it has no value for the condition key, and a statement whose condition does not
hold counts as a Deny. On AWS that statement refuses plain-HTTP requests only.

``transport_aware_policies()`` (a context manager; nested and concurrent uses share one
installation) fixes this for requests that reach moto through its HTTP server: each
request's transport is taken from the WSGI ``wsgi.url_scheme`` (``https`` when the server
speaks TLS), and a statement whose conditions are all ``Bool`` on ``aws:SecureTransport`` is
applied when they hold for that request and skipped otherwise. Statements with other
conditions, and requests that did not come through the HTTP server (``mock_aws``), are left
to moto as before.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket
from moto.s3.responses import S3Response

SECURE_TRANSPORT = "aws:securetransport"

_secure: ContextVar[bool | None] = ContextVar("lifecycle_s3_secure_transport", default=None)
_lock = threading.Lock()
_users = [0]  # how many transport_aware_policies blocks are open
_originals: dict[str, Any] = {}


def condition_holds(condition: Any, secure: bool) -> bool | None:
    """Whether a statement's ``Condition`` holds for a request over TLS (``secure``) or not.

    None when the condition uses anything but ``Bool`` on ``aws:SecureTransport``: not ours
    to judge. Keys compare without case (as IAM does); values may be strings, booleans or
    lists of them (any value matching is enough, as IAM does).
    """
    if not isinstance(condition, dict) or not condition:
        return None
    actual = "true" if secure else "false"
    for operator, entries in condition.items():
        if operator != "Bool" or not isinstance(entries, dict) or not entries:
            return None
        for key, expected in entries.items():
            if str(key).casefold() != SECURE_TRANSPORT:
                return None
            values = expected if isinstance(expected, list) else [expected]
            if not any(str(v).casefold() == actual for v in values):
                return False
    return True


def permission(policy_text: str, action: str, resource: str, secure: bool) -> PermissionResult:
    """moto's verdict on ``action`` for ``resource`` under the bucket policy, for a request
    made over TLS (``secure``) or not, transport conditions judged as AWS judges them."""
    policy = json.loads(policy_text)
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept: list[dict[str, Any]] = []
    for statement in statements:
        holds = condition_holds(statement.get("Condition"), secure)
        if holds is None:  # no condition, or one moto judges by itself
            kept.append(statement)
        elif holds:
            kept.append({k: v for k, v in statement.items() if k != "Condition"})
    result: PermissionResult = IAMPolicy(
        json.dumps({**policy, "Statement": kept})
    ).is_action_permitted(action, resource)
    return result


def _get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    secure = _secure.get()
    original: Callable[[FakeBucket, str, str], Any] = _originals["get_permission"]
    if secure is None or self.policy is None:
        return original(self, action, resource)
    return permission(self.policy.decode(), action, resource, secure)


def _with_transport(name: str) -> Callable[..., Any]:
    def handler(self: S3Response, request: Any, full_url: str, headers: Any) -> Any:
        environ = getattr(request, "environ", None)
        scheme = environ.get("wsgi.url_scheme") if isinstance(environ, dict) else None
        token = _secure.set(None if scheme is None else scheme == "https")
        try:
            return _originals[name](self, request, full_url, headers)
        finally:
            _secure.reset(token)

    return handler


@contextmanager
def transport_aware_policies() -> Iterator[None]:
    """Judge ``aws:SecureTransport`` per request while the block runs (see the module doc)."""
    with _lock:
        if _users[0] == 0:
            _originals["get_permission"] = FakeBucket.get_permission
            _originals["key_response"] = S3Response.key_response
            _originals["bucket_response"] = S3Response.bucket_response
            FakeBucket.get_permission = _get_permission  # type: ignore[method-assign]
            S3Response.key_response = _with_transport("key_response")  # type: ignore[method-assign]
            S3Response.bucket_response = _with_transport("bucket_response")  # type: ignore[method-assign]
        _users[0] += 1
    try:
        yield
    finally:
        with _lock:
            _users[0] -= 1
            if _users[0] == 0:
                FakeBucket.get_permission = _originals.pop("get_permission")  # type: ignore[method-assign]
                S3Response.key_response = _originals.pop("key_response")  # type: ignore[method-assign]
                S3Response.bucket_response = _originals.pop("bucket_response")  # type: ignore[method-assign]
