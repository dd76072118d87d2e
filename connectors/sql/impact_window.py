"""An incident window as SQL: on the part's own column, or on a column up its holders chain.

``window_condition`` is ``start <= column < end`` in the column's terms. A window naming a
column of another table (``window: {column: orders.ordered_at}`` on ``order_items``) keeps
the part's rows whose row up the holders chain (``connectors.sql.impact_reach.
holder_routes``: the order an item belongs to) has the column inside the window. The chain
must reach that table by exactly one route (``SqlStore.scope_problems`` refuses others), so
a ``ChainWindow`` is that route and the condition in two forms:

- ``condition``, on the column's table itself, for a statement that joins the route
  anyway (the subjects, keys and clients of a subject path going through that table: the
  joins it already makes, up to that table at least, filtered there);
- ``exists``, on the part's table alone: ``EXISTS (SELECT 1 FROM orders AS o WHERE o.id =
  order_items.order_id AND <window on o.ordered_at>)`` over aliases of the route's tables,
  for the records (a semi-join counts each of the part's rows once, whatever the
  references' multiplicity: a declared reference need not point at a unique column) and
  for subject paths that do not go through the column's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.sql.impact_reach import Path
from connectors.sql.schema import StoreSchema
from core.errors import InvalidInput

if TYPE_CHECKING:
    from incidents.scope import TimeWindow


def window_condition(
    label: str, column: sa.ColumnElement[Any], window: TimeWindow
) -> sa.ColumnElement[bool]:
    """``start <= column < end`` in the column's terms.

    Naive timestamps hold UTC (compared with naive UTC bounds), aware ones are compared as
    they are; a DATE column counts every day the window overlaps.
    """
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    typ = column.type
    if isinstance(typ, sa.DateTime):
        if not typ.timezone:
            start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
        return sa.and_(column >= start, column < end)
    if isinstance(typ, sa.Date):
        last = (end - timedelta(microseconds=1)).date()
        return sa.and_(column >= start.date(), column <= last)
    name = window.column or getattr(column, "name", "?")
    raise InvalidInput(
        f"{label}: window column '{name}' is not a date or timestamp column", part=label
    )


def route_text(path: Path) -> str:
    """A route up the holders chain as messages show it: ``order_items.order_id -> orders``."""
    return " -> ".join([*(hop.edge.label for hop in path), path[-1].to_table]) if path else ""


@dataclass(frozen=True)
class ChainWindow:
    """A window on a column of a table up the part's holders chain (see the module doc)."""

    route: Path
    condition: sa.ColumnElement[bool]
    exists: sa.ColumnElement[bool]

    def joined_by(self, path: Path) -> bool:
        """Whether a subject ``path`` begins with the route (its joins reach the table)."""
        return path[: len(self.route)] == self.route


def chain_window(
    schema: StoreSchema, label: str, base: sa.Table, route: Path, window: TimeWindow
) -> ChainWindow:
    """The window on ``window.column_name`` of the table ``route`` leads to from ``base``."""
    column = window.column_name or ""
    owner = schema.tables[route[-1].to_table]
    linked: list[sa.ColumnElement[bool]] = []
    current: sa.FromClause = base
    for hop in route:  # every hop goes up: child columns -> parent columns
        parent = schema.tables[hop.to_table].alias()
        edge = hop.edge
        linked += [
            current.c[c] == parent.c[p] for c, p in zip(edge.columns, edge.to_columns, strict=True)
        ]
        current = parent
    inside = window_condition(label, current.c[column], window)
    exists = sa.select(sa.literal_column("1")).where(*linked, inside).correlate(base).exists()
    return ChainWindow(route, window_condition(label, owner.c[column], window), exists)
