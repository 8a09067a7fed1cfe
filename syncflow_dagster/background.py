"""Run tags of background (night-window) runs and the stop rule their ops follow.

A schedule launches a background run with the end of the window it was launched in
(`WINDOW_END_TAG`). Its ops stop at the next chunk boundary once that instant has passed, and
the run is tagged paused (`PAUSED_TAG`): it ends as a success that says "paused", not a failure.
Runs launched by a person carry no such tag and are never stopped by the window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from dagster import DagsterRunStatus, OpExecutionContext, RunRecord

from syncflow_core.night_retry import Attempt, Outcome
from syncflow_dagster.resources import SyncFlowResource

__all__ = [
    "BACKGROUND_TAG",
    "IN_FLIGHT",
    "LAUNCHED_AT_TAG",
    "NIGHT_TAG",
    "PARTITION_TAG",
    "PASS_TAG",
    "PAUSED_TAG",
    "WINDOW_END_TAG",
    "mark_paused",
    "run_attempt",
    "window_stop",
]

BACKGROUND_TAG = "syncflow/background"
NIGHT_TAG = "syncflow/night"
PASS_TAG = "syncflow/pass"
WINDOW_END_TAG = "syncflow/window_end"
PAUSED_TAG = "syncflow/paused"
PARTITION_TAG = "dagster/partition"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
"""Run statuses that hold an entity's run slot."""
_FAILED = {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
LAUNCHED_AT_TAG = "syncflow/launched_at"
"""The schedule tick that launched a background run (UTC); a failed attempt's backoff counts
from its end, never from before this."""


def window_stop(context: OpExecutionContext) -> Callable[[], bool] | None:
    """For a background run, a callable telling whether its window has closed; else None.

    The time comes from the run's `SyncFlowResource` (its ``clock``, the system clock by
    default), asked afresh at every chunk boundary.
    """
    tags = context.run.tags
    if tags.get(BACKGROUND_TAG) != "true" or WINDOW_END_TAG not in tags:
        return None
    end = datetime.fromisoformat(tags[WINDOW_END_TAG])
    from syncflow_dagster.ops import RESOURCE_KEY  # ops import this module

    resource = getattr(context.resources, RESOURCE_KEY, None)
    now: Callable[[], datetime] = (
        resource.now if isinstance(resource, SyncFlowResource) else lambda: datetime.now(UTC)
    )

    def closed() -> bool:
        return now() >= end

    return closed


def mark_paused(context: OpExecutionContext, slice_key: str) -> None:
    """Tag the run as paused at a chunk boundary (visible in the UI's run list)."""
    context.instance.add_run_tags(context.run_id, {PAUSED_TAG: slice_key})
    context.log.info(
        f"window closed: {slice_key} paused at a chunk boundary; next night resumes it"
    )


def run_attempt(record: RunRecord) -> Attempt | None:
    """A background run as an `Attempt` (None without a slice or a night)."""
    tags = record.dagster_run.tags
    if PARTITION_TAG not in tags or NIGHT_TAG not in tags:
        return None
    status = record.dagster_run.status
    if status in IN_FLIGHT:
        outcome: Outcome = "in_flight"
    elif status in _FAILED:
        outcome = "failed"
    else:
        outcome = "paused" if PAUSED_TAG in tags else "finished"
    # The backoff counts from the attempt's end; its launch tick is the floor (a run still in
    # progress, or one whose end stamp lags its tick, counts from when it was launched).
    at = (
        datetime.fromisoformat(tags[LAUNCHED_AT_TAG])
        if LAUNCHED_AT_TAG in tags
        else record.create_timestamp
    )
    if outcome != "in_flight" and record.end_time is not None:
        at = max(at, datetime.fromtimestamp(record.end_time, UTC))
    return Attempt(tags[PARTITION_TAG], date.fromisoformat(tags[NIGHT_TAG]), outcome, at,
                   record.dagster_run.run_id)
