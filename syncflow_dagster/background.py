"""Run tags of background (night-window) runs and the stop rule their ops follow.

A schedule launches a background run with the end of the window it was launched in
(`WINDOW_END_TAG`). Its ops stop at the next chunk boundary once that instant has passed, and
the run is tagged paused (`PAUSED_TAG`): it ends as a success that says "paused", not a failure.
Runs launched by a person carry no such tag and are never stopped by the window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from dagster import OpExecutionContext

__all__ = [
    "BACKGROUND_TAG",
    "NIGHT_TAG",
    "PASS_TAG",
    "PAUSED_TAG",
    "WINDOW_END_TAG",
    "mark_paused",
    "window_stop",
]

BACKGROUND_TAG = "syncflow/background"
NIGHT_TAG = "syncflow/night"
PASS_TAG = "syncflow/pass"
WINDOW_END_TAG = "syncflow/window_end"
PAUSED_TAG = "syncflow/paused"


def window_stop(context: OpExecutionContext) -> Callable[[], bool] | None:
    """For a background run, a callable telling whether its window has closed; else None."""
    tags = context.run.tags
    if tags.get(BACKGROUND_TAG) != "true" or WINDOW_END_TAG not in tags:
        return None
    end = datetime.fromisoformat(tags[WINDOW_END_TAG])

    def closed() -> bool:
        return datetime.now(UTC) >= end

    return closed


def mark_paused(context: OpExecutionContext, slice_key: str) -> None:
    """Tag the run as paused at a chunk boundary (visible in the UI's run list)."""
    context.instance.add_run_tags(context.run_id, {PAUSED_TAG: slice_key})
    context.log.info(
        f"window closed: {slice_key} paused at a chunk boundary; next night resumes it"
    )
