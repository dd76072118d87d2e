"""What a store type's live checks report, in a form every command prints the same way.

A store type with live checks names a ``doctor`` hook in ``connectors.catalog``: a function
taking one store of the type and returning a ``DoctorReport`` (for SQL stores,
``connectors.sql.doctor.doctor_report``: reachable, schema as declared, indexes).
``lifecycle doctor`` prints each report's header and lines, ``lifecycle config validate
--live`` prints its located problems and warnings, and ``--json`` prints ``to_json()``;
none of them knows the store's type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from config.schema.stores import StoreConfig

Severity = Literal["problem", "advice", "warning", "info"]
"""``problem`` and ``advice`` make a report not OK; ``warning`` is worth a look; ``info``
explains (how references are followed, how a column is compared)."""

GENERIC_KEYS = ("store", "type", "reachable", "ok")
"""The keys of ``DoctorReport.to_json`` every type has; ``details`` adds the type's own."""


@dataclass(frozen=True)
class DoctorLine:
    """One finding: ``label: text``, then ``detail`` lines indented below (e.g. a statement
    to run). Never personal data: names of tables, columns, constraints."""

    label: str
    text: str
    severity: Severity = "info"
    detail: tuple[str, ...] = ()


@dataclass(frozen=True)
class DoctorReport:
    """The live checks of one store."""

    store: str
    type: str
    location: str
    """Where the store was reached, credentials hidden (a URL, an endpoint)."""
    reachable: bool
    ok: bool
    """Nothing to fix (warnings and info lines do not count)."""
    lines: tuple[DoctorLine, ...] = ()
    """What ``lifecycle doctor`` prints below the header, in order."""
    problems: tuple[str, ...] = ()
    """Each error or problem as one ``store.part: message`` line (``config validate --live``);
    advice is left out."""
    warnings: tuple[str, ...] = ()
    """Worth a look, not failing (``config validate --live`` prints them as warnings)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """The type's own JSON fields (``url``, ``advice``, ...): ``to_json`` adds them."""

    def __post_init__(self) -> None:
        clash = set(self.details) & set(GENERIC_KEYS)
        if clash:
            raise ValueError(f"details may not redefine {', '.join(sorted(clash))}")

    def to_json(self) -> dict[str, Any]:
        """``store``, ``type``, ``reachable``, ``ok``, then the type's ``details``."""
        generic = {"store": self.store, "type": self.type, "reachable": self.reachable}
        return {**generic, "ok": self.ok, **self.details}


def run_doctor(store: StoreConfig) -> DoctorReport | None:
    """The live checks of ``store`` by its type's ``doctor`` hook; None when it has none."""
    # Imported here: the catalog loads the configuration models.
    from connectors.catalog import spec_for
    from connectors.hooks import load_hook

    spec = spec_for(store)
    if spec.doctor is None:
        return None
    report = load_hook(spec.doctor)(store)
    if not isinstance(report, DoctorReport):
        raise TypeError(
            f"the doctor hook of store type '{spec.name}' ({spec.doctor}) returned "
            f"{type(report).__name__}, not a DoctorReport"
        )
    return report
