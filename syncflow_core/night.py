"""Which slices a background tick should launch tonight.

A *pass* is one sweep over all of an entity's slices. Each slice's cursor counts how many
passes it has finished; the current pass is the lowest count, and a slice is done in this pass
when its count is higher. A night takes ``ceil(slices / days_to_complete)`` slices, so a pass
spreads over ``days_to_complete`` nights; when a night fell short (its window closed mid-slice)
the remaining nights of the pass take a larger share, ``ceil(remaining / nights_left)``, so the
pass still ends on time. A slice whose run failed tonight holds its place while it backs off
and gives it up once its retry budget is spent (`syncflow_core.night_retry`), so one broken
slice never stops the others. Everything here is derived from state that survives a daemon
restart (cursors in the state store, run tags in Dagster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from syncflow_core.window import plan_tonight, slices_per_night

__all__ = ["NightPlan", "plan_night"]


@dataclass(frozen=True)
class NightPlan:
    """What a tick decided: the pass number, what is done, and what to launch now.

    ``pass_no`` counts like the state table's cursors: the first pass is 1.
    """

    pass_no: int
    done_in_pass: frozenset[str]
    quota: int
    launch: tuple[str, ...]


def plan_night(
    slice_keys: Sequence[str],
    completed_passes: Mapping[str, int],
    days_to_complete: int,
    *,
    finished_tonight: set[str],
    in_flight: set[str],
    nights_left: int | None = None,
    backing_off: frozenset[str] = frozenset(),
    given_up: frozenset[str] = frozenset(),
) -> NightPlan:
    """Slices to launch now: the next ones of the pass, within tonight's remaining quota.

    ``completed_passes`` maps slice key to finished passes (missing = 0); ``finished_tonight``
    are slices whose background run finished or paused in this night's window;
    ``in_flight`` are slices with a queued or running run (they count against the quota and
    are not launched twice); ``nights_left`` counts tonight and the nights after it that the
    pass has left (None: the pass just started). ``backing_off`` failed tonight and wait for
    their next attempt (they keep their place in the quota); ``given_up`` spent tonight's
    retry budget (they are not launched again tonight and free their place).
    """
    counts = {k: completed_passes.get(k, 0) for k in slice_keys}
    finished = min(counts.values()) if counts else 0
    done = frozenset(k for k, c in counts.items() if c > finished)
    quota = slices_per_night(len(slice_keys), days_to_complete)
    if nights_left is not None:
        # Slices still to do tonight and later: not done, plus what already ran tonight.
        remaining = len(slice_keys) - len(done) + len(finished_tonight & done)
        quota = max(quota, slices_per_night(remaining, max(1, nights_left)))
    holding = (finished_tonight | in_flight | backing_off) - given_up
    free = max(0, quota - len(holding))
    launch = plan_tonight(slice_keys, set(done) | holding | given_up, free)
    return NightPlan(finished + 1, done, quota, tuple(launch))
