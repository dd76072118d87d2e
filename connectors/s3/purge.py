"""Executing an S3 erasure plan: DeleteObjects by version id, in bounded parallel chunks.

Every DELETE step is cut into chunks of at most 1,000 ``{Key, VersionId}`` (the S3 limit;
moto accepts more, so the cap is enforced here), sent with ``Quiet=True`` by a bounded
thread pool. Per-key errors that a retry may clear (SlowDown, InternalError,
ServiceUnavailable) are retried with exponential backoff and jitter, a bounded number of
times; other codes (AccessDenied, ...) are terminal. ``on_prepared`` receives every chunk
as an intent (its keys) before the first call; ``on_batch`` is called once per chunk that
deleted something, on the calling thread, with the count and digest of what it deleted
and the index of its intent. ``gone`` answers, after a crash, which keys of unconfirmed
intents are no longer in their buckets.

S3 is not transactional: whatever was deleted stays deleted. If keys are left, the error
names the bucket and how many keys were left, and re-running the same plan finishes the
job: deleting an already deleted version id succeeds as a no-op.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from connectors.base import Action, BatchResult, Key, OnBatch, OnPrepared, StorePlan, keys_digest
from connectors.s3.client import TRANSIENT_CODES, error_code, is_transient
from connectors.s3.planning import GOVERNANCE_BYPASS
from core.errors import LifecycleError, TerminalError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

MAX_KEYS_PER_CALL = 1000
"""S3 refuses DeleteObjects with more than 1,000 keys."""

_SAMPLE = 5  # key names shown in an error when the bucket's keys are not personal data


@dataclass(frozen=True)
class Chunk:
    """At most 1,000 versions of one bucket, deleted by one DeleteObjects call."""

    target: str
    keys: tuple[Key, ...]
    bypass_governance: bool


@dataclass
class ChunkOutcome:
    """What one chunk achieved: deleted keys, and the keys left with their error codes."""

    chunk: Chunk
    deleted: list[Key] = field(default_factory=list)
    left: dict[Key, str] = field(default_factory=dict)  # key -> S3 error code
    transient_only: bool = True


def chunks(plan: StorePlan, size: int = MAX_KEYS_PER_CALL) -> list[Chunk]:
    """The plan's DELETE steps as chunks of at most ``size`` keys (never more than 1,000)."""
    size = min(size, MAX_KEYS_PER_CALL)
    out = []
    for step in plan.steps:
        if step.action is not Action.DELETE:
            continue
        bypass = step.reason == GOVERNANCE_BYPASS
        for start in range(0, len(step.keys), size):
            out.append(Chunk(step.target, step.keys[start : start + size], bypass))
    return out


class Purger:
    """Deletes chunks with bounded concurrency and bounded, backed-off retries."""

    def __init__(
        self,
        client: S3Client,
        store: str,
        *,
        max_workers: int,
        max_attempts: int = 5,
        base_delay: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.store = store
        self.max_workers = max_workers
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.sleep = sleep

    def _backoff(self, attempt: int) -> None:
        delay = self.base_delay * 2**attempt
        self.sleep(delay / 2 + random.uniform(0, delay / 2))  # jitter, not crypto

    def _call(self, chunk: Chunk, pending: Sequence[Key]) -> dict[Key, str]:
        """One DeleteObjects call; returns the keys that failed, with their codes."""
        objects: list[ObjectIdentifierTypeDef] = [
            {"Key": str(k[0]), "VersionId": str(k[1])} for k in pending
        ]
        answer = self.client.delete_objects(
            Bucket=chunk.target,
            Delete={"Objects": objects, "Quiet": True},
            BypassGovernanceRetention=chunk.bypass_governance,
        )
        failed: dict[Key, str] = {}
        for err in answer.get("Errors", []):
            code = err.get("Code") or "Unknown"
            for k in pending:
                # AWS names the version; moto only the key: then every version of it failed.
                if k[0] == err.get("Key") and err.get("VersionId") in (None, k[1]):
                    failed[k] = code
        return failed

    def run_chunk(self, chunk: Chunk) -> ChunkOutcome:
        """Delete one chunk, retrying transient per-key and whole-call errors."""
        outcome = ChunkOutcome(chunk)
        pending: list[Key] = list(chunk.keys)
        for attempt in range(self.max_attempts):
            try:
                failed = self._call(chunk, pending)
            except (ClientError, BotoCoreError) as e:
                if not is_transient(e):
                    code = error_code(e) if isinstance(e, ClientError) else type(e).__name__
                    outcome.left = dict.fromkeys(pending, code)
                    outcome.transient_only = False
                    return outcome
                failed = dict.fromkeys(pending, "connection or 5xx")
            outcome.deleted.extend(k for k in pending if k not in failed)
            retry = {
                k: c for k, c in failed.items() if c in TRANSIENT_CODES or c == "connection or 5xx"
            }
            terminal = {k: c for k, c in failed.items() if k not in retry}
            outcome.left.update(terminal)
            if terminal:
                outcome.transient_only = False
            pending = list(retry)
            if not pending:
                return outcome
            if attempt + 1 < self.max_attempts:
                self._backoff(attempt)
        outcome.left.update({k: "retries exhausted" for k in pending})
        return outcome

    def run(
        self,
        plan: StorePlan,
        on_batch: OnBatch,
        personal: Callable[[str], bool],
        on_prepared: OnPrepared | None = None,
    ) -> list[BatchResult]:
        """Execute the plan's deletions; raise naming buckets and counts if keys are left."""
        results: list[BatchResult] = []
        outcomes: list[ChunkOutcome] = []
        todo = chunks(plan)
        if on_prepared is not None and todo:
            on_prepared(
                [
                    BatchResult(
                        self.store,
                        c.target,
                        Action.DELETE,
                        len(c.keys),
                        keys_digest(c.keys),
                        keys=c.keys,
                        intent=i,
                    )
                    for i, c in enumerate(todo)
                ]
            )
        executor = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="s3-purge")
        try:
            index: dict[Future[ChunkOutcome], int] = {
                executor.submit(self.run_chunk, c): i for i, c in enumerate(todo)
            }
            running = set(index)
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    outcomes.append(outcome)
                    if outcome.deleted:
                        result = BatchResult(
                            store=self.store,
                            target=outcome.chunk.target,
                            action=Action.DELETE,
                            affected=len(outcome.deleted),
                            keys_digest=keys_digest(outcome.deleted),
                            keys=tuple(outcome.deleted),
                            intent=index[future],
                        )
                        on_batch(result)  # on this thread: callers need not be thread-safe
                        results.append(result)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        problem = self.left_error(outcomes, personal)
        if problem is not None:
            raise problem
        return results

    def left_error(
        self, outcomes: Sequence[ChunkOutcome], personal: Callable[[str], bool]
    ) -> LifecycleError | None:
        """The error naming buckets and counts of keys left, or None when all were deleted."""
        left: dict[str, dict[Key, str]] = {}
        transient = True
        for o in outcomes:
            if o.left:
                left.setdefault(o.chunk.target, {}).update(o.left)
                transient = transient and o.transient_only
        if not left:
            return None
        parts = []
        for bucket, keys in sorted(left.items()):
            codes = ", ".join(f"{c} x{n}" for c, n in sorted(Counter(keys.values()).items()))
            part = f"bucket '{bucket}': {len(keys)} keys not deleted ({codes})"
            if not personal(bucket):
                sample = sorted({str(k[0]) for k in keys})[:_SAMPLE]
                part += f", e.g. {', '.join(sample)}"
            parts.append(part)
        kind = TransientError if transient else TerminalError
        return kind(
            f"store '{self.store}': " + "; ".join(parts) + "; re-run the plan to finish",
            store=self.store,
            remaining={b: len(k) for b, k in left.items()},
        )


def gone(client: S3Client, batches: Sequence[BatchResult]) -> list[BatchResult]:
    """Per batch of versions, those no longer in its bucket (``affected``: how many).

    One listing per object key (its versions and delete markers), paginated.
    """
    present: set[tuple[str, str, object]] = set()  # bucket, key, version id
    listed: set[tuple[str, str]] = set()
    for batch in batches:
        for name in sorted({str(k[0]) for k in batch.keys}):
            if (batch.target, name) in listed:
                continue
            listed.add((batch.target, name))
            pages = client.get_paginator("list_object_versions").paginate(
                Bucket=batch.target, Prefix=name
            )
            for page in pages:
                for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    if entry.get("Key") == name:
                        present.add((batch.target, name, entry.get("VersionId")))
    out = []
    for batch in batches:
        done = tuple(k for k in batch.keys if (batch.target, str(k[0]), k[1]) not in present)
        out.append(replace(batch, affected=len(done), keys_digest=keys_digest(done), keys=done))
    return out
