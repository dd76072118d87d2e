"""Retention periods as calendar durations: ``90d``, ``2w``, ``6m``, ``7y`` or ISO 8601 ``P1Y6M``.

Retention law speaks in calendar units ("ten years", "three months"), so a duration keeps
years, months and days apart instead of collapsing them into seconds: ``before()`` steps
back whole calendar months and years (clamping the day, so Mar 31 minus one month is the
last day of February) and only then days. ``approx_days`` gives a single number for
ordering durations against each other.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

DAYS_PER_YEAR = 365.2425  # Gregorian mean year
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
FORMS = "use Nd, Nw, Nm, Ny or ISO 8601 such as P90D or P1Y6M"

_SHORT = re.compile(r"^(\d+)\s*([dwmy])$")
_ISO = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


class DurationError(ValueError):
    """Text that is not a positive duration in one of the accepted forms."""


@dataclass(frozen=True)
class Duration:
    """A positive calendar duration; equality is by components (``12m`` is not ``1y``)."""

    years: int = 0
    months: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        if min(self.years, self.months, self.days) < 0:
            raise DurationError("duration components must not be negative")
        if self.years == self.months == self.days == 0:
            raise DurationError("duration must be longer than zero")

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse ``90d`` / ``2w`` / ``6m`` / ``7y`` or ISO 8601 ``PnYnMnWnD`` (no time part)."""
        stripped = text.strip()
        short = _SHORT.match(stripped.lower())
        if short:
            amount, unit = int(short.group(1)), short.group(2)
            components = {
                "d": (0, 0, amount),
                "w": (0, 0, amount * 7),
                "m": (0, amount, 0),
                "y": (amount, 0, 0),
            }[unit]
            return cls._checked(text, *components)
        iso = _ISO.match(stripped.upper())
        if iso and any(iso.groups()):
            years, months, weeks, days = (int(g) if g else 0 for g in iso.groups())
            return cls._checked(text, years, months, weeks * 7 + days)
        if stripped.upper().startswith("P") and "T" in stripped.upper():
            raise DurationError(f"invalid duration '{text}': time parts (PT...) are not supported")
        raise DurationError(f"invalid duration '{text}' ({FORMS})")

    @classmethod
    def _checked(cls, text: str, years: int, months: int, days: int) -> Duration:
        if years == months == days == 0:
            raise DurationError(f"invalid duration '{text}': must be longer than zero")
        return cls(years=years, months=months, days=days)

    @property
    def approx_days(self) -> float:
        """Length in mean Gregorian days, for ordering and comparing durations."""
        return self.years * DAYS_PER_YEAR + self.months * DAYS_PER_MONTH + self.days

    def before(self, moment: datetime) -> datetime:
        """The moment this long before ``moment``: calendar months first, then days.

        The day of month is clamped to the target month's length, and time of day and
        time zone are kept, so ``before()`` of a cut-off is stable across a whole day.
        """
        total_months = moment.year * 12 + (moment.month - 1) - (self.years * 12 + self.months)
        year, month0 = divmod(total_months, 12)
        if year < 1:
            raise DurationError(f"{self} before {moment.date().isoformat()} is before year 1")
        day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
        shifted = moment.replace(year=year, month=month0 + 1, day=day)
        try:
            return shifted - timedelta(days=self.days)
        except OverflowError as e:
            raise DurationError(
                f"{self} before {moment.date().isoformat()} is before year 1"
            ) from e

    def __str__(self) -> str:
        """Canonical text: the short form for one unit (``90d``), ISO 8601 otherwise."""
        parts = [(self.years, "y"), (self.months, "m"), (self.days, "d")]
        nonzero = [(n, unit) for n, unit in parts if n]
        if len(nonzero) == 1:
            amount, unit = nonzero[0]
            return f"{amount}{unit}"
        return "P" + "".join(f"{n}{unit.upper()}" for n, unit in nonzero)

    @classmethod
    def _validate(cls, value: Any) -> Duration:
        if isinstance(value, Duration):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise DurationError(f"invalid duration: expected text ({FORMS})")
        raise DurationError(f"invalid duration '{value}': a unit is required ({FORMS})")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate from text (or a Duration); serialize back to the canonical text."""
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="always"),
            json_schema_input_schema=core_schema.str_schema(),
        )
