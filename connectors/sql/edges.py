"""A reference between two declared tables, and which way locate follows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FollowWay = Literal["holders", "target", "none"]


@dataclass(frozen=True)
class Edge:
    """child.columns reference parent.to_columns (a reflected FK, or declared in config).

    ``follow`` is the way locate walks it: ``holders`` (child rows referencing an owned
    parent row are owned), ``target`` (the parent row an owned child row points at is
    linked) or ``none``; resolved by ``connectors.sql.graph.resolve_follow``.
    """

    child: str
    columns: tuple[str, ...]
    parent: str
    to_columns: tuple[str, ...]
    enforced: bool  # True when the database enforces it (reflected FK)
    follow: FollowWay = "holders"

    @property
    def label(self) -> str:
        """How a row reached through this edge is described: ``orders.customer_id``."""
        return f"{self.child}.{','.join(self.columns)}"

    @property
    def signature(self) -> tuple[str, tuple[str, ...], str, tuple[str, ...]]:
        """The reference without its attributes: (child, columns, parent, to_columns)."""
        return (self.child, self.columns, self.parent, self.to_columns)
