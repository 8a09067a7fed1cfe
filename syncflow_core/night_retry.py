"""Background attempts of a slice within a night: backoff, retry budget, presumed-dead runs.

Theory of operation. The night-window schedule keeps no state of its own (Dagster schedules
have no cursor, and a run key only deduplicates within one tick), so every tick rebuilds what
happened from the run history: one `Attempt` per background run of the entity, with its
slice, its night and its outcome. From those attempts this module decides, as pure
arithmetic:

- **Backoff.** After a slice's first failed run in a night the next attempt waits
  ``retry_backoff_minutes`` (15 min), then twice that after each further failure
  (30 min, 1 h, …). The wait starts at the failed attempt's time (`Attempt.at`).
- **Budget.** After ``retry_attempts`` failed runs in one night the slice *gives up* for that
  night: it no longer holds a place in tonight's quota, so the pass moves on to its other
  slices. The next night it gets a fresh budget (a fault fixed in the day heals by itself).
- **Presumed dead.** A run still queued or running ``stale_run_grace_minutes`` after its
  night's window closed cannot be a healthy background run (it pauses at the next chunk
  boundary when the window closes), so its worker is presumed gone.

Nothing here reads a clock: ``now`` is always an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from syncflow_core.config import ScheduleConfig
from syncflow_core.window import window_for_night

__all__ = [
    "Attempt",
    "Outcome",
    "SliceRetry",
    "attention",
    "backoff",
    "is_presumed_dead",
    "retry_status",
]

Outcome = Literal["in_flight", "finished", "paused", "failed"]


@dataclass(frozen=True)
class Attempt:
    """One background run of a slice, as the run history tells it.

    ``at`` is when the attempt counts from for the backoff: its end once it ended, else when
    it was launched.
    """

    slice_key: str
    night: date
    outcome: Outcome
    at: datetime
    run_id: str = ""


@dataclass(frozen=True)
class SliceRetry:
    """Where a slice stands tonight after failed runs."""

    failures: int
    next_attempt_at: datetime | None
    """Earliest instant of the next attempt (None: no failure tonight, or given up)."""
    given_up: bool

    def waiting(self, now: datetime) -> bool:
        """Whether the slice is backing off at ``now`` (not yet due, not given up)."""
        return (
            not self.given_up and self.next_attempt_at is not None and now < self.next_attempt_at
        )


def backoff(failures: int, sched: ScheduleConfig) -> timedelta:
    """Wait after the ``failures``-th failed run of a night: base, 2x base, 4x base, …"""
    if failures < 1:
        raise ValueError(f"failures must be >= 1, got {failures}")
    return timedelta(minutes=sched.retry_backoff_minutes * 2 ** (failures - 1))


def retry_status(
    attempts: Iterable[Attempt], night: date, sched: ScheduleConfig
) -> dict[str, SliceRetry]:
    """Per slice with a failed run in ``night`` since its last finished one: its retry state.

    A slice that finished or paused after failing starts over (its failures are behind it).
    """
    by_slice: dict[str, list[Attempt]] = {}
    for a in attempts:
        if a.night == night and a.outcome != "in_flight":
            by_slice.setdefault(a.slice_key, []).append(a)
    out: dict[str, SliceRetry] = {}
    for key, runs in by_slice.items():
        runs.sort(key=lambda a: a.at)
        failed: list[Attempt] = []
        for a in runs:
            failed = [*failed, a] if a.outcome == "failed" else []
        if not failed:
            continue
        n = len(failed)
        given_up = n >= sched.retry_attempts
        next_at = None if given_up else failed[-1].at + backoff(n, sched)
        out[key] = SliceRetry(n, next_at, given_up)
    return out


def is_presumed_dead(run_night: date, sched: ScheduleConfig, now: datetime) -> bool:
    """Whether a background run of ``run_night`` still in progress at ``now`` is presumed dead.

    True once its window's end plus ``stale_run_grace_minutes`` has passed.
    """
    _, end = window_for_night(run_night, sched)
    return now >= end + timedelta(minutes=sched.stale_run_grace_minutes)


def attention(attempts: Iterable[Attempt], sched: ScheduleConfig) -> dict[str, str]:
    """Slices that need a person: those that used up their budget in the last night they ran.

    A slice that ran fine on a later night is no longer listed. Returns slice key to a
    one-line reason for the UI.
    """
    latest: dict[str, date] = {}
    listed = list(attempts)
    for a in listed:
        if a.slice_key not in latest or a.night > latest[a.slice_key]:
            latest[a.slice_key] = a.night
    out: dict[str, str] = {}
    for key, night in sorted(latest.items()):
        state = retry_status((a for a in listed if a.slice_key == key), night, sched).get(key)
        if state is not None and state.given_up:
            out[key] = (
                f"{key}: {state.failures} failed background runs on the night of "
                f"{night.isoformat()}; retry budget ({sched.retry_attempts}) used up"
            )
    return out
