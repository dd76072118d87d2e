"""The request-register flow's daily step that deletes expired access packages.

One task for the whole folder (``engine.package_expiry``): each package older than the
policy's ``requests.package_retention_days`` is deleted with its ``package.expired``
ledger event. Request ids, sizes and ages only.
"""

from __future__ import annotations

from engine.package_expiry import expire_packages
from engine.request_support import clean_errors, request_context
from tasks.lifecycle_task import lifecycle_task
from tasks.reconcile import RECONCILE_ACTOR

__all__ = ["expire_access_packages"]


@lifecycle_task("expire-access-packages")
def expire_access_packages() -> int:
    """Delete access packages kept past their retention; how many were deleted."""
    with clean_errors("expiring access packages"):
        ctx = request_context()
        keep_days = ctx.config.policy.requests.package_retention_days
        deleted = expire_packages(ctx.ledger, keep_days, actor=RECONCILE_ACTOR)
        return len(deleted)
