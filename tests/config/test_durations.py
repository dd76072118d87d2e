"""Durations: the accepted forms, clear refusals, and calendar-correct ``before()``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from config.durations import Duration, DurationError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", Duration(days=90)),
        ("2w", Duration(days=14)),
        ("6m", Duration(months=6)),
        ("7y", Duration(years=7)),
        (" 3Y ", Duration(years=3)),
        ("P90D", Duration(days=90)),
        ("P7Y", Duration(years=7)),
        ("P1Y6M", Duration(years=1, months=6)),
        ("P2W", Duration(days=14)),
        ("p1y2m3d", Duration(years=1, months=2, days=3)),
    ],
)
def test_parse(text: str, expected: Duration) -> None:
    assert Duration.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("90 dayz", "invalid duration '90 dayz' (use Nd"),
        ("", "invalid duration ''"),
        ("d", "invalid duration 'd'"),
        ("-5d", "invalid duration '-5d'"),
        ("1.5y", "invalid duration '1.5y'"),
        ("P", "invalid duration 'P'"),
        ("0d", "invalid duration '0d': must be longer than zero"),
        ("P0Y0D", "invalid duration 'P0Y0D': must be longer than zero"),
        ("PT5H", "invalid duration 'PT5H': time parts (PT...) are not supported"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(DurationError) as raised:
        Duration.parse(text)
    assert str(raised.value).startswith(message)


def test_components_must_be_positive() -> None:
    with pytest.raises(DurationError):
        Duration()
    with pytest.raises(DurationError):
        Duration(years=1, days=-1)


@pytest.mark.parametrize(
    ("duration", "moment", "expected"),
    [
        (Duration(months=1), date(2025, 3, 31), date(2025, 2, 28)),
        (Duration(months=1), date(2024, 3, 31), date(2024, 2, 29)),  # leap year
        (Duration(years=1), date(2024, 2, 29), date(2023, 2, 28)),
        (Duration(years=4), date(2024, 2, 29), date(2020, 2, 29)),
        (Duration(months=13), date(2025, 1, 15), date(2023, 12, 15)),
        (Duration(days=90), date(2025, 3, 31), date(2024, 12, 31)),
        (Duration(months=1, days=1), date(2025, 3, 31), date(2025, 2, 27)),  # months first
    ],
)
def test_before_is_calendar_correct(duration: Duration, moment: date, expected: date) -> None:
    at = datetime(moment.year, moment.month, moment.day, 13, 45, tzinfo=UTC)
    result = duration.before(at)
    assert result.date() == expected
    assert (result.hour, result.minute, result.tzinfo) == (13, 45, UTC)


def test_before_year_one_is_an_error() -> None:
    with pytest.raises(DurationError):
        Duration(years=5).before(datetime(3, 1, 1))


def test_canonical_text() -> None:
    assert str(Duration(days=90)) == "90d"
    assert str(Duration(years=7)) == "7y"
    assert str(Duration(months=6)) == "6m"
    assert str(Duration(years=1, months=6)) == "P1Y6M"
    assert str(Duration.parse("2w")) == "14d"


def test_approx_days_orders_durations() -> None:
    ordered = ["1d", "2w", "1m", "90d", "6m", "1y", "P1Y6M", "2y", "10y"]
    durations = [Duration.parse(t) for t in ordered]
    assert sorted(durations, key=lambda d: d.approx_days) == durations
    assert Duration(years=1).approx_days == pytest.approx(365.2425)


class _Rule(BaseModel):
    age: Duration


def test_pydantic_field() -> None:
    assert _Rule.model_validate({"age": "P90D"}).age == Duration(days=90)
    assert _Rule(age=Duration(years=1)).model_dump(mode="json") == {"age": "1y"}
    with pytest.raises(ValidationError) as raised:
        _Rule.model_validate({"age": 90})
    assert "invalid duration '90': a unit is required" in str(raised.value)


moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31))
valid_durations = (
    st.tuples(st.integers(0, 50), st.integers(0, 30), st.integers(0, 4000))
    .filter(any)  # Duration refuses all-zero components
    .map(lambda t: Duration(*t))
)


@given(duration=valid_durations, moment=moments)
def test_before_never_moves_forward(duration: Duration, moment: datetime) -> None:
    assert duration.before(moment) < moment


@given(duration=valid_durations, moment=moments)
def test_before_is_close_to_the_mean_length(duration: Duration, moment: datetime) -> None:
    # Calendar months and years differ from their mean length by a few days at most
    # (Feb 1 minus one month is 31 days back, Mar 1 minus one month only 28).
    elapsed = (moment - duration.before(moment)) / timedelta(days=1)
    assert abs(elapsed - duration.approx_days) <= 7


@given(duration=valid_durations)
def test_text_round_trip(duration: Duration) -> None:
    assert Duration.parse(str(duration)) == duration
