"""Night-window arithmetic and the multi-night slice plan.

A window opens every local day at ``schedule.window_start`` and closes at the next
``schedule.window_end`` (the next day when the end is earlier than the start, e.g.
19:00-07:00; the same day otherwise, e.g. 01:00-05:00). Windows are defined in local wall
time of ``schedule.timezone``, so across a DST change the window still opens at local 19:00
and closes at local 07:00 and its length in real time changes by the DST shift.

Local wall times that do not exist (spring forward, 02:00-03:00 in Europe/Berlin) map to the
first valid instant after the gap; ambiguous ones (fall back) map to their first occurrence.
All returned datetimes are aware and in UTC; windows are half-open ``[start, end)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from syncflow_core.config import ScheduleConfig

__all__ = [
    "in_window",
    "local_to_utc",
    "next_window_start",
    "night_of",
    "plan_tonight",
    "slices_per_night",
    "window_bounds",
    "window_end_for",
    "window_for_night",
]

_ONE_DAY = timedelta(days=1)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")


def local_to_utc(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of local wall time ``day at`` in ``tz``.

    A nonexistent local time (inside a spring-forward gap) gives the first valid instant after
    the gap; an ambiguous one (fall back) gives its first occurrence.
    """
    wall = datetime.combine(day, at.replace(tzinfo=None))
    first = wall.replace(tzinfo=tz, fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == wall:
        return utc  # exists (fold=0 is the first occurrence if ambiguous)
    # In a gap: fold=0 uses the offset before the change, fold=1 the one after. The transition
    # instant lies between the two readings; find the first instant with the "after" offset.
    after = wall.replace(tzinfo=tz, fold=1)
    target_offset = after.utcoffset()
    lo, hi = sorted((after.astimezone(UTC), utc))
    # Invariant: offset(lo) != target, offset(hi) == target; bisect to the microsecond.
    if lo.astimezone(tz).utcoffset() == target_offset:
        return lo
    while hi - lo > timedelta(microseconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == target_offset:
            hi = mid
        else:
            lo = mid
    return hi


def window_for_night(night: date, sched: ScheduleConfig) -> tuple[datetime, datetime]:
    """The window that opens on local date ``night`` as ``(start, end)`` in UTC.

    May be empty (``start == end``) when both bounds fall into the same DST gap.
    """
    tz = ZoneInfo(sched.timezone)
    start = local_to_utc(night, sched.window_start, tz)
    end_day = night + _ONE_DAY if sched.window_end < sched.window_start else night
    end = local_to_utc(end_day, sched.window_end, tz)
    return start, end


def _local_date(now: datetime, sched: ScheduleConfig) -> date:
    return now.astimezone(ZoneInfo(sched.timezone)).date()


def window_bounds(now: datetime, sched: ScheduleConfig) -> tuple[datetime, datetime] | None:
    """The window containing ``now`` as aware UTC ``(start, end)``, or None outside windows."""
    _require_aware(now)
    today = _local_date(now, sched)
    # A window opening on local day D ends on D or D+1, so only D-1 and D can contain now.
    for night in (today - _ONE_DAY, today):
        start, end = window_for_night(night, sched)
        if start <= now < end:
            return start, end
    return None


def in_window(now: datetime, sched: ScheduleConfig) -> bool:
    """Whether ``now`` (aware) lies inside the schedule's window."""
    return window_bounds(now, sched) is not None


def window_end_for(now: datetime, sched: ScheduleConfig) -> datetime | None:
    """When the window containing ``now`` closes (UTC), or None outside windows."""
    bounds = window_bounds(now, sched)
    return None if bounds is None else bounds[1]


def next_window_start(now: datetime, sched: ScheduleConfig) -> datetime:
    """The first (non-empty) window start strictly after ``now``, in UTC."""
    _require_aware(now)
    night = _local_date(now, sched) - _ONE_DAY
    for _ in range(8):  # at most a couple of empty (all-in-a-gap) windows can be skipped
        start, end = window_for_night(night, sched)
        if start > now and end > start:
            return start
        night += _ONE_DAY
    raise AssertionError("no window start found within a week")  # pragma: no cover


def night_of(now: datetime, sched: ScheduleConfig) -> date:
    """The local date on which the current or, outside a window, the last window opened.

    A 19:00-07:00 window opened on Monday 19:00 is Monday's night at Tuesday 03:00 too.
    """
    _require_aware(now)
    night = _local_date(now, sched)
    for _ in range(8):
        start, end = window_for_night(night, sched)
        if start <= now and end > start:
            return night
        night -= _ONE_DAY
    raise AssertionError("no window found within a week")  # pragma: no cover


def slices_per_night(total_slices: int, days_to_complete: int) -> int:
    """How many slices one night must sync so a pass finishes in ``days_to_complete`` nights."""
    if total_slices < 0 or days_to_complete < 1:
        raise ValueError(
            f"need total_slices >= 0 and days_to_complete >= 1, got {total_slices}, "
            f"{days_to_complete}"
        )
    return math.ceil(total_slices / days_to_complete)


def plan_tonight(
    slice_keys: Sequence[str], done_in_pass: set[str], total_per_night: int
) -> list[str]:
    """The next ``total_per_night`` slices of the pass, in order, skipping those already done."""
    if total_per_night < 0:
        raise ValueError(f"total_per_night must be >= 0, got {total_per_night}")
    todo = [k for k in slice_keys if k not in done_in_pass]
    return todo[:total_per_night]
