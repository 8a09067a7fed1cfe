"""Night-window schedules: background syncs that spread an entity's slices over several nights.

Each entity gets ``<entity>_night_window``: it ticks every 15 minutes in the entity's time zone.
Outside the window a tick skips and says when the window opens. Inside, it launches the next
slices of the current pass (in order, skipping done ones) up to tonight's quota,
``ceil(slices / days_to_complete)``. Progress comes from the state store (cursors count
finished passes) and Dagster's run storage (runs tagged with tonight's date), so restarting the
daemon changes nothing, and run keys make a repeated tick launch nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime

from dagster import (
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from syncflow_core.config import EntityConfig, SyncFlowConfig
from syncflow_core.night import plan_night
from syncflow_core.slices import slice_keys
from syncflow_core.window import next_window_start, night_of, window_bounds
from syncflow_dagster.background import (
    BACKGROUND_TAG,
    NIGHT_TAG,
    PASS_TAG,
    WINDOW_END_TAG,
)
from syncflow_dagster.jobs import entity_job
from syncflow_dagster.resources import SyncFlowResource
from syncflow_dagster.translation import ENTITY_TAG, entity_pool

__all__ = ["build_schedules", "schedule_name"]

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def schedule_name(entity: EntityConfig) -> str:
    """``<entity>_night_window``."""
    return f"{entity.name}_night_window"


def _partitions(
    context: ScheduleEvaluationContext, tags: dict[str, str], statuses: list[DagsterRunStatus]
) -> dict[str, dict[str, str]]:
    records = context.instance.get_run_records(RunsFilter(tags=tags, statuses=statuses))
    return {
        r.dagster_run.tags[PARTITION_TAG]: dict(r.dagster_run.tags)
        for r in records
        if PARTITION_TAG in r.dagster_run.tags
    }


def _in_flight(context: ScheduleEvaluationContext, entity: EntityConfig) -> set[str]:
    """Slices of the entity that a queued or running run covers, however it was launched.

    UI and backfill runs carry no `syncflow/entity` tag, and backfill runs name their slices
    as a range: a run is the entity's when its ops hold the entity's pool (or it has the tag).
    """
    pool = entity_pool(entity.name)
    keys = slice_keys(entity.slice_count)
    out: set[str] = set()
    for record in context.instance.get_run_records(RunsFilter(statuses=IN_FLIGHT)):
        run = record.dagster_run
        pools = run.run_op_concurrency.all_pools if run.run_op_concurrency else None
        if pool not in (pools or ()) and run.tags.get(ENTITY_TAG) != entity.name:
            continue
        if PARTITION_TAG in run.tags:
            out.add(run.tags[PARTITION_TAG])
        elif run.tags.get(RANGE_START_TAG) in keys and run.tags.get(RANGE_END_TAG) in keys:
            first = keys.index(run.tags[RANGE_START_TAG])
            out.update(keys[first:keys.index(run.tags[RANGE_END_TAG]) + 1])
    return out


def _nights_left(
    context: ScheduleEvaluationContext, entity: EntityConfig, pass_no: int, tonight: date
) -> int | None:
    """Nights the pass has left, tonight included; None when the pass has not started."""
    runs = context.instance.get_run_records(
        RunsFilter(tags={ENTITY_TAG: entity.name, BACKGROUND_TAG: "true", PASS_TAG: str(pass_no)})
    )
    nights = [r.dagster_run.tags.get(NIGHT_TAG) for r in runs]
    started = min((date.fromisoformat(n) for n in nights if n), default=None)
    if started is None:
        return None
    return entity.schedule.days_to_complete - (tonight - started).days


def _night_ticks(
    context: ScheduleEvaluationContext, entity: EntityConfig, syncflow: SyncFlowResource
) -> Iterator[RunRequest | SkipReason]:
    sched = entity.schedule
    now = context.scheduled_execution_time or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    bounds = window_bounds(now, sched)
    if bounds is None:
        opens = next_window_start(now, sched)
        yield SkipReason(
            f"outside the night window {sched.window_start:%H:%M}-{sched.window_end:%H:%M} "
            f"{sched.timezone}; it opens at {opens.isoformat()}"
        )
        return
    night = night_of(now, sched).isoformat()
    keys = slice_keys(entity.slice_count)
    with syncflow.runtime() as rt:
        completed = {}
        for key in keys:
            cursor = rt.state.get_cursor(entity.name, key)
            # pass_no is the 1-based pass the slice is in (done bumps it): finished = pass_no - 1.
            completed[key] = 0 if cursor is None else int(cursor.pass_no) - 1
    in_flight = _in_flight(context, entity)
    # Slices that ran tonight, finished or paused: a paused run used tonight's window (the
    # window closed on it), so it counts against tonight's quota and resumes next night.
    finished = set(
        _partitions(
            context,
            {ENTITY_TAG: entity.name, NIGHT_TAG: night, BACKGROUND_TAG: "true"},
            [DagsterRunStatus.SUCCESS],
        )
    )
    pass_no = min(completed.values()) if completed else 0
    plan = plan_night(
        keys,
        completed,
        sched.days_to_complete,
        finished_tonight=finished,
        in_flight=in_flight,
        nights_left=_nights_left(context, entity, pass_no, night_of(now, sched)),
    )
    if not plan.launch:
        yield SkipReason(
            f"nothing to launch: pass {plan.pass_no}, {len(plan.done_in_pass)}/{len(keys)} slices "
            f"done, tonight's quota {plan.quota} used ({len(finished)} finished, "
            f"{len(in_flight)} running)"
        )
        return
    for key in plan.launch:
        yield RunRequest(
            run_key=f"{entity.name}:{night}:pass{plan.pass_no}:{key}",
            partition_key=key,
            tags={
                ENTITY_TAG: entity.name,
                BACKGROUND_TAG: "true",
                NIGHT_TAG: night,
                PASS_TAG: str(plan.pass_no),
                WINDOW_END_TAG: bounds[1].isoformat(),
            },
        )


TickFn = Callable[[ScheduleEvaluationContext, SyncFlowResource], Iterator[RunRequest | SkipReason]]


def _tick_fn(entity: EntityConfig) -> TickFn:
    # A closure per entity: Dagster reads every parameter but the context as a resource.
    def fn(
        context: ScheduleEvaluationContext, syncflow: SyncFlowResource
    ) -> Iterator[RunRequest | SkipReason]:
        yield from _night_ticks(context, entity, syncflow)

    return fn


def build_schedules(config: SyncFlowConfig) -> list[ScheduleDefinition]:
    """One night-window schedule per entity (off until turned on in the UI)."""
    out = []
    for entity in config.entities.values():
        sched = entity.schedule
        fn = _tick_fn(entity)
        out.append(
            schedule(
                name=schedule_name(entity),
                job=entity_job(config, entity),
                cron_schedule="*/15 * * * *",
                execution_timezone=sched.timezone,
                default_status=DefaultScheduleStatus.STOPPED,
                description=(
                    f"Background sync of `{entity.name}` inside its night window "
                    f"{sched.window_start:%H:%M}-{sched.window_end:%H:%M} {sched.timezone}: "
                    f"{entity.slice_count} slices over {sched.days_to_complete} nights, "
                    "resuming paused slices at their cursor."
                ),
            )(fn)
        )
    return out
