"""Night-window arithmetic: midnight-crossing windows, same-day windows, DST in Europe/Berlin."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncflow_core.config import ScheduleConfig
from syncflow_core.window import (
    in_window,
    local_to_utc,
    next_window_start,
    night_of,
    plan_tonight,
    slices_per_night,
    window_bounds,
    window_end_for,
)

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = ScheduleConfig(timezone="Europe/Berlin")  # 19:00-07:00
EARLY = ScheduleConfig(timezone="Europe/Berlin", window_start=time(1), window_end=time(5))


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_midnight_crossing_window_contains_the_night_and_not_the_day() -> None:
    # Wed 2026-01-14, winter: Berlin = UTC+1.
    assert in_window(berlin(2026, 1, 14, 19, 0), NIGHT)
    assert in_window(berlin(2026, 1, 14, 23, 59), NIGHT)
    assert in_window(berlin(2026, 1, 15, 3, 0), NIGHT)
    assert in_window(berlin(2026, 1, 15, 6, 59, 59), NIGHT)
    assert not in_window(berlin(2026, 1, 15, 7, 0), NIGHT)  # half-open: closes at 07:00
    assert not in_window(berlin(2026, 1, 14, 18, 59), NIGHT)
    assert not in_window(berlin(2026, 1, 14, 12, 0), NIGHT)
    assert window_bounds(berlin(2026, 1, 15, 3, 0), NIGHT) == (
        utc(2026, 1, 14, 18, 0),
        utc(2026, 1, 15, 6, 0),
    )


def test_bounds_are_utc_and_now_in_any_zone_works() -> None:
    now_in_ny = datetime(2026, 1, 14, 21, 0, tzinfo=ZoneInfo("America/New_York"))  # 03:00 Berlin
    bounds = window_bounds(now_in_ny, NIGHT)
    assert bounds is not None
    assert all(b.tzinfo is UTC for b in bounds)
    assert window_end_for(now_in_ny, NIGHT) == utc(2026, 1, 15, 6, 0)
    assert window_end_for(berlin(2026, 1, 15, 12, 0), NIGHT) is None


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        in_window(datetime(2026, 1, 14, 20, 0), NIGHT)


def test_same_day_window() -> None:
    assert not in_window(berlin(2026, 1, 14, 0, 59), EARLY)
    assert in_window(berlin(2026, 1, 14, 1, 0), EARLY)
    assert in_window(berlin(2026, 1, 14, 4, 59), EARLY)
    assert not in_window(berlin(2026, 1, 14, 5, 0), EARLY)
    assert not in_window(berlin(2026, 1, 14, 23, 0), EARLY)
    assert next_window_start(berlin(2026, 1, 14, 23, 0), EARLY) == utc(2026, 1, 15, 0, 0)
    assert night_of(berlin(2026, 1, 14, 23, 0), EARLY) == date(2026, 1, 14)
    assert night_of(berlin(2026, 1, 14, 0, 30), EARLY) == date(2026, 1, 13)


def test_night_of_is_the_day_the_window_opened() -> None:
    assert night_of(berlin(2026, 1, 12, 19, 0), NIGHT) == date(2026, 1, 12)  # Monday 19:00
    assert night_of(berlin(2026, 1, 13, 3, 0), NIGHT) == date(2026, 1, 12)  # Tue 03:00
    assert night_of(berlin(2026, 1, 13, 12, 0), NIGHT) == date(2026, 1, 12)  # last window
    assert night_of(berlin(2026, 1, 13, 19, 0), NIGHT) == date(2026, 1, 13)


def test_next_window_start_is_strictly_after_now() -> None:
    assert next_window_start(berlin(2026, 1, 14, 12, 0), NIGHT) == utc(2026, 1, 14, 18, 0)
    # At the very start the *next* start is tomorrow's.
    assert next_window_start(berlin(2026, 1, 14, 19, 0), NIGHT) == utc(2026, 1, 15, 18, 0)
    assert next_window_start(berlin(2026, 1, 15, 3, 0), NIGHT) == utc(2026, 1, 15, 18, 0)


def test_spring_forward_night_is_one_hour_shorter() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST. Window Sat 28th 19:00 CET .. Sun 29th 07:00 CEST.
    bounds = window_bounds(berlin(2026, 3, 29, 4, 0), NIGHT)
    assert bounds == (utc(2026, 3, 28, 18, 0), utc(2026, 3, 29, 5, 0))
    assert bounds[1] - bounds[0] == timedelta(hours=11)
    assert bounds[1].astimezone(BERLIN).hour == 7


def test_fall_back_night_is_one_hour_longer() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET. Window Sat 24th 19:00 CEST .. Sun 25th 07:00 CET.
    bounds = window_bounds(berlin(2026, 10, 25, 2, 30, fold=1), NIGHT)
    assert bounds == (utc(2026, 10, 24, 17, 0), utc(2026, 10, 25, 6, 0))
    assert bounds[1] - bounds[0] == timedelta(hours=13)
    # Both occurrences of 02:30 are inside.
    assert in_window(berlin(2026, 10, 25, 2, 30, fold=0), NIGHT)


def test_boundary_in_spring_gap_maps_to_first_instant_after_gap() -> None:
    assert local_to_utc(date(2026, 3, 29), time(2, 30), BERLIN) == utc(2026, 3, 29, 1, 0)
    gap = ScheduleConfig(timezone="Europe/Berlin", window_start=time(2, 30), window_end=time(6))
    bounds = window_bounds(berlin(2026, 3, 29, 3, 0), gap)
    assert bounds == (utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 4, 0))
    assert bounds[0].astimezone(BERLIN) == berlin(2026, 3, 29, 3, 0)


def test_boundary_in_fall_back_fold_maps_to_first_occurrence() -> None:
    assert local_to_utc(date(2026, 10, 25), time(2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)
    fold = ScheduleConfig(timezone="Europe/Berlin", window_start=time(1), window_end=time(2, 30))
    # The window closes at the first 02:30 (CEST); the second 02:30 (CET) is outside.
    assert in_window(berlin(2026, 10, 25, 2, 29, fold=0), fold)
    assert not in_window(berlin(2026, 10, 25, 2, 29, fold=1), fold)


def test_window_entirely_inside_the_gap_is_empty_and_skipped() -> None:
    inside = ScheduleConfig(
        timezone="Europe/Berlin", window_start=time(2, 10), window_end=time(2, 50)
    )
    assert not in_window(utc(2026, 3, 29, 1, 0), inside)
    # The empty window of the 29th is skipped: the next start is on the 30th, 02:10 CEST.
    assert next_window_start(utc(2026, 3, 28, 12, 0), inside) == utc(2026, 3, 30, 0, 10)


def test_slices_per_night_and_plan() -> None:
    assert slices_per_night(7, 7) == 1
    assert slices_per_night(20, 7) == 3
    assert slices_per_night(0, 3) == 0
    keys = [f"slice-{i:02d}" for i in range(1, 8)]
    assert plan_tonight(keys, set(), 3) == ["slice-01", "slice-02", "slice-03"]
    assert plan_tonight(keys, {"slice-01", "slice-03"}, 3) == ["slice-02", "slice-04", "slice-05"]
    assert plan_tonight(keys, set(keys[:6]), 3) == ["slice-07"]
    assert plan_tonight(keys, set(keys), 3) == []
    with pytest.raises(ValueError):
        slices_per_night(3, 0)


_zones = st.sampled_from(["Europe/Berlin", "America/New_York", "UTC", "Australia/Lord_Howe"])
_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 10, 15, 30, 45, 59]))
_instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=400, deadline=None)
@given(now=_instants, tz=_zones, start=_times, end=_times)
def test_property_bounds_agree_and_next_start_is_in_window(
    now: datetime, tz: str, start: time, end: time
) -> None:
    if start == end:
        return
    sched = ScheduleConfig(timezone=tz, window_start=start, window_end=end)
    bounds = window_bounds(now, sched)
    assert in_window(now, sched) == (bounds is not None)
    if bounds is not None:
        assert bounds[0] <= now < bounds[1]
        assert night_of(now, sched) == bounds[0].astimezone(ZoneInfo(tz)).date()
    nxt = next_window_start(now, sched)
    assert nxt > now
    assert in_window(nxt, sched)
    assert window_bounds(nxt, sched) is not None
    assert window_bounds(nxt, sched)[0] == nxt  # type: ignore[index]
    # Nothing between now and the next start opens a window.
    if bounds is None:
        assert not in_window(nxt - timedelta(microseconds=1), sched)
