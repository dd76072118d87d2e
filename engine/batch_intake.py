"""Registering a batch file: every valid line becomes its own request, listed in one batch.

Each line goes through the same checks and registration as a single request
(``engine.intake.submit``): own register entry, deadline, sealed identity, ledger trail,
and the pre-approval when an approver signs the batch (one signed decision per request,
under the four-eyes rule for each requester). A line that fails is reported by its number
and what was wrong (never its content) and blocks nothing else. A line repeating an
earlier line's kind and identity is refused too: one run would otherwise carry out the
same request twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import TerminalError
from core.package import Recipient
from engine.approval import Signer
from engine.batch_file import BatchFile
from engine.intake import check_identity, submit
from engine.request_support import RequestContext
from state.batches import RequestBatches


@dataclass
class BatchRegistration:
    """What a batch file became: the batch, the request of each accepted line, the
    problems of the refused ones (line number, problem)."""

    batch_id: str
    accepted: list[tuple[int, str]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)

    @property
    def request_ids(self) -> list[str]:
        return [request_id for _, request_id in self.accepted]


def register_batch(
    ctx: RequestContext,
    batch: BatchFile,
    *,
    requested_by: str,
    reviewer: Signer | None = None,
    recipient: Recipient | None = None,
    progress: Callable[[int], None] | None = None,
) -> BatchRegistration:
    """Register every readable line of ``batch``; ``requested_by`` is the default requester
    (a line's own ``requested_by`` wins). ``progress(n)`` is called after each line."""
    batches = RequestBatches(ctx.ledger.engine)
    result = BatchRegistration(batches.create(requested_by))
    result.refused.extend(batch.problems)
    folded = {
        ident.kind
        for store in ctx.config.inventory.stores
        for ident in store.identity_columns()
        if ident.case_insensitive
    }
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for done, line in enumerate(batch.lines, start=1):
        try:
            checked = check_identity(ctx, line.identity)
            key = (
                line.kind,
                tuple(sorted((k, v.casefold() if k in folded else v) for k, v in checked.items())),
            )
            if key in seen:
                raise TerminalError(f"same kind and identity as line {seen[key]}")
            record = submit(
                ctx,
                kind=line.kind,
                identity=line.identity,
                requested_by=line.requested_by or requested_by,
                recipient=recipient if line.kind == "access" else None,
                reviewer=reviewer,
                within=batches.member_writer(result.batch_id, line.number),
            )
        except TerminalError as e:
            result.refused.append((line.number, e.message))
        else:
            seen[key] = line.number
            result.accepted.append((line.number, record.id))
        if progress is not None:
            progress(done)
    result.refused.sort()
    batches.finish(result.batch_id, lines=batch.read, rejected=len(result.refused))
    return result
