"""``S3Connector``: one S3 store of the inventory behind the ``Connector`` protocol.

It owns one boto3 client (the store's endpoint and region, credentials from the standard
AWS chain; an injected client is the caller's) and delegates each job to the module that
does it: ``locate``, ``planning`` (with ``locks``), ``purge``, ``verify``, ``export``, and
``impact`` for incident assessments.
botocore errors are translated at this boundary (``client.s3_errors``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import date
from typing import TYPE_CHECKING

from config.schema import Policy
from connectors.base import (
    BatchResult,
    Capabilities,
    ExportItem,
    Findings,
    Identities,
    ImpactCount,
    Key,
    OnBatch,
    OnPrepared,
    StorePlan,
    Verification,
)
from connectors.s3.client import make_client, s3_errors
from connectors.s3.config import S3Store
from connectors.s3.export import DEFAULT_MAX_BYTES, export_objects
from connectors.s3.impact import affected_keys, count_impact
from connectors.s3.locate import Locator
from connectors.s3.planning import plan_erasure
from connectors.s3.purge import Purger, gone
from connectors.s3.verify import verify_erasure
from core.keys import KeyRing
from core.pseudonym import Pseudonym
from retention.targets import SweepTarget

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from connectors.s3.sweep import S3Sweeper
    from incidents.scope import ScopePart


class S3Connector:
    """An S3 store: locate, export, plan, purge and verify a subject's object versions.

    Optional capabilities (``connectors.base``): ``Sweeping``, ``ImpactCounting``. Objects
    are not corrected field by field, so it is not ``Rectifying``: a correction names no S3
    store, and asking for rectification is ``Unsupported``.
    """

    capabilities = Capabilities(
        kind="s3", transactional=False, can_mask=False, versioned=True, derives_identities=False
    )

    def __init__(
        self,
        store: S3Store,
        policy: Policy,
        *,
        keys: KeyRing,
        client: S3Client | None = None,
        max_workers: int = 4,
        page_size: int = 1000,
        export_max_bytes: int = DEFAULT_MAX_BYTES,
        retry_base_delay: float = 0.2,
        max_attempts: int = 5,
    ) -> None:
        if max_workers < 1 or page_size < 1 or max_attempts < 1:
            raise ValueError("max_workers, page_size and max_attempts must be at least 1")
        self.name = store.name
        self.store = store
        self.policy = policy
        self.max_workers = max_workers
        self.page_size = page_size
        self.export_max_bytes = export_max_bytes
        self.retry_base_delay = retry_base_delay
        self.max_attempts = max_attempts
        self._keys = keys
        self._client = client
        self._owns_client = client is None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Connector({self.name!r})"

    @property
    def client(self) -> S3Client:
        """The store's client, created on first use."""
        with self._lock:
            if self._client is None:
                self._client = make_client(self.store, self.max_workers)
            return self._client

    def _personal_keys(self, target: str) -> bool:
        # A replica not declared as a bucket of its own: assume its keys are personal.
        declared = {b.name: b for b in self.store.buckets}
        bucket = declared.get(target)
        return bucket is None or bucket.keys_contain_personal_data

    def locate(self, identities: Identities) -> Findings:
        """Every version and delete marker of the subject, per bucket and replica."""
        return Locator(self.client, self.store, self._keys.pseudonym_hmac, self.page_size).locate(
            identities
        )

    def export(self, findings: Findings) -> Iterator[ExportItem]:
        """The subject's current objects: metadata and base64 bodies (bounded size)."""
        return export_objects(self.client, self.name, findings, self.export_max_bytes)

    def plan_erasure(
        self, findings: Findings, today: str, subject: Pseudonym | None = None
    ) -> StorePlan:
        """Delete every version and marker; defer what legal holds or Object Lock keep."""
        return plan_erasure(
            self.client,
            self.store,
            findings,
            holds=self.policy.legal_holds,
            today=date.fromisoformat(today),
            subject=subject,
        )

    def execute(
        self, plan: StorePlan, on_batch: OnBatch, on_prepared: OnPrepared | None = None
    ) -> list[BatchResult]:
        """DeleteObjects by version id, 1,000 keys per call at most, calls in parallel.

        Not transactional: ``on_prepared`` gets every call's keys before the first call.
        """
        purger = Purger(
            self.client,
            self.name,
            max_workers=self.max_workers,
            max_attempts=self.max_attempts,
            base_delay=self.retry_base_delay,
        )
        return purger.run(plan, on_batch, self._personal_keys, on_prepared)

    def in_effect(self, plan: StorePlan, batches: Sequence[BatchResult]) -> list[BatchResult]:
        """Per prepared batch, the versions no longer in the bucket (listed again)."""
        del plan  # S3 batches only delete: their keys say it all
        with s3_errors(self.name, "checking an interrupted erasure"):
            return gone(self.client, batches)

    def verify(self, identities: Identities, plan: StorePlan) -> Verification:
        """List again and report what the plan said would be gone (or is new)."""
        return verify_erasure(plan, self.locate(identities))

    # -- Sweeping ---------------------------------------------------------------------------

    def sweeper(
        self, target: SweepTarget, *, today: date, held_keys: frozenset[Key] = frozenset()
    ) -> S3Sweeper:
        """A retention sweeper for one bucket prefix (``held_keys``: ``(object key,)``)."""
        from connectors.s3.sweep import S3Sweeper

        purger = Purger(
            self.client,
            self.name,
            max_workers=self.max_workers,
            max_attempts=self.max_attempts,
            base_delay=self.retry_base_delay,
        )
        return S3Sweeper(
            self.client,
            self.store,
            target,
            today=today,
            held_keys=frozenset(str(k[0]) for k in held_keys),
            purger=purger,
            page_size=self.page_size,
        )

    def target_keys(self, target: SweepTarget, findings: Findings) -> frozenset[Key]:
        """``(object key,)`` of every version ``findings`` has in the target's bucket."""
        if findings.store != self.name or target.store != self.name:
            return frozenset()
        return frozenset(
            (k[0],)  # (object key, version id, is marker): a hold keeps every version
            for found in findings.targets
            if found.target == target.bucket
            for k in found.keys
        )

    # -- ImpactCounting ---------------------------------------------------------------------

    def count_impact(self, part: ScopePart) -> ImpactCount:
        """Current objects under the part's prefix (and window), and distinct subjects by
        the bucket's key templates: one listing (``connectors.s3.impact``)."""
        return count_impact(self.client, self.store, part, self.page_size)

    def affected_keys(self, part: ScopePart) -> Iterator[str]:
        """Each distinct subject of ``count_impact(part)`` once, as its identity value."""
        return affected_keys(self.client, self.store, part, self.page_size)

    def subject_identities(self, identity: str, values: Sequence[str]) -> Iterator[ExportItem]:
        """None: a bucket holds no subject rows (the SQL store behind the identity does)."""
        del identity, values
        return iter(())

    def close(self) -> None:
        """Close the client this connector created (an injected one is the caller's)."""
        with self._lock:
            if self._client is not None and self._owns_client:
                self._client.close()
                self._client = None
