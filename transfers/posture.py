"""What the transfer check asks of a store type: its posture facts, which judge themselves.

A store type offers posture through the ``posture`` hook of its ``connectors.catalog``
spec, a ``"package.module:function"`` reference imported only when the check runs. The
function (``PostureHook``) reads one store and returns its facts: a bucket each, a
database, a processor's agreement... Each fact knows what it is counted as, which
resource it describes (the same resource reached from two stores is judged once) and
how to judge itself against the transfer policy, with the generic helpers of
``transfers.evaluate``. A type without the hook is reported as not checked.

``account_wide`` is set for the first store of each type only: what the store's account
holds that the inventory does not declare (unclassified buckets) is read once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from config.schema.model import LifecycleConfig
    from config.schema.stores import StoreConfig
    from config.schema.transfers import TransferPolicy
    from transfers.findings import Finding

NO_POSTURE = "no posture facts for this store type"
"""Why a store of a type without a posture hook is not checked."""


class PostureFacts(Protocol):
    """Facts read from one resource of a store (or of its account): configuration only."""

    @property
    def posture_key(self) -> str:
        """The resource, unique across every type (a bucket's URL): judged once per run."""
        ...

    @property
    def counted_as(self) -> str:
        """What the check's counts call such facts, plural (``buckets``, ``databases``)."""
        ...

    def findings(self, policy: TransferPolicy | None, today: date) -> list[Finding]:
        """Everything wrong with this resource (rule ids are stable: runs compare on them)."""
        ...


class PostureHook(Protocol):
    """Reads the posture facts of one store of a type: what a spec's ``posture`` names."""

    def __call__(
        self, config: LifecycleConfig, store: StoreConfig, *, account_wide: bool
    ) -> Sequence[PostureFacts]:
        """The facts of ``store`` (and, with ``account_wide``, of its account).

        A fact the store refuses to give is a fact of its own (judged as unreadable);
        only a store that cannot be reached at all raises."""
        ...
