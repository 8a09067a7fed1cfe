"""Night-window schedules: background syncs that spread an entity's slices over several nights.

Each entity gets ``<entity>_night_window``: it ticks every 15 minutes in the entity's time zone.
Outside the window a tick skips and says when the window opens (local time, UTC in
parentheses). Inside, it launches the next slices of the current pass (in order, skipping done
ones) up to tonight's quota, ``ceil(slices / days_to_complete)``.

A schedule has no cursor and a run key only deduplicates within one tick, so every tick
rebuilds what happened from the state store (cursors count finished passes) and Dagster's run
storage (tonight's background runs of the entity, by their tags); the decisions are the core's
(`syncflow_core.night`, `syncflow_core.night_retry`): a failed slice backs off and gives up
for the night after its retry budget, and a run still in progress well after its window
closed is presumed dead, marked failed and its slice relaunched from its committed cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

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

from syncflow_core.config import EntityConfig, ScheduleConfig, SyncFlowConfig
from syncflow_core.night import plan_night
from syncflow_core.night_retry import Attempt, is_presumed_dead, retry_status
from syncflow_core.slices import slice_keys
from syncflow_core.window import next_window_start, night_of, window_bounds
from syncflow_dagster.background import (
    BACKGROUND_TAG,
    IN_FLIGHT,
    LAUNCHED_AT_TAG,
    NIGHT_TAG,
    PARTITION_TAG,
    PASS_TAG,
    WINDOW_END_TAG,
    run_attempt,
)
from syncflow_dagster.jobs import entity_job
from syncflow_dagster.resources import SyncFlowResource
from syncflow_dagster.translation import ENTITY_TAG, entity_pool

__all__ = ["build_schedules", "local_time", "schedule_name"]

MAX_RUNTIME_TAG = "dagster/max_runtime"
"""Run monitoring fails a run that runs longer than this many seconds (any run launcher)."""
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def schedule_name(entity: EntityConfig) -> str:
    """``<entity>_night_window``."""
    return f"{entity.name}_night_window"


def local_time(at: datetime, sched: ScheduleConfig) -> str:
    """``2027-01-05 19:00 CET (18:00 UTC)``: the entity's zone first, UTC for reference."""
    local = at.astimezone(ZoneInfo(sched.timezone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({at.astimezone(UTC):%H:%M} UTC)"


def _fail_presumed_dead(
    context: ScheduleEvaluationContext, entity: EntityConfig, now: datetime
) -> list[str]:
    """Fail background runs still in progress well after their window closed; their run ids.

    A healthy background run pauses at the next chunk boundary when its window closes; one
    still "running" past the grace period has lost its worker (killed, evicted, OOM) or hangs.
    Failing it frees the entity's run slot, and its slice resumes from its committed cursor.
    """
    sched = entity.schedule
    records = context.instance.get_run_records(
        RunsFilter(tags={ENTITY_TAG: entity.name, BACKGROUND_TAG: "true"}, statuses=IN_FLIGHT)
    )
    failed = []
    for record in records:
        run = record.dagster_run
        night = run.tags.get(NIGHT_TAG)
        if night is None or not is_presumed_dead(date.fromisoformat(night), sched, now):
            continue
        message = (
            f"SyncFlow: background run of {entity.name} {run.tags.get(PARTITION_TAG, '')} for "
            f"the night of {night} is still {run.status.value} "
            f"{sched.stale_run_grace_minutes} min after its window closed: its worker is "
            "presumed gone. Marked failed; the slice resumes from its committed cursor."
        )
        if run.status in (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED):
            try:
                context.instance.run_launcher.terminate(run.run_id)
            except Exception as exc:  # the launcher may not reach (or know) a dead worker
                context.log.info(f"terminate {run.run_id}: {type(exc).__name__}")
        context.instance.report_run_failed(run, message)
        failed.append(run.run_id)
    return failed


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


def _state_passes(
    syncflow: SyncFlowResource, entity: EntityConfig, keys: list[str]
) -> dict[str, int]:
    """Each slice's pass number as the state table counts it (1 before its first chunk)."""
    with syncflow.runtime() as rt:
        cursors = {key: rt.state.get_cursor(entity.name, key) for key in keys}
    # The pass the slice is in: finishing a slice's pass bumps it.
    return {key: 1 if c is None else int(c.pass_no) for key, c in cursors.items()}


def _attempts_of_night(
    context: ScheduleEvaluationContext, entity: EntityConfig, night: date
) -> list[Attempt]:
    """The entity's background runs of ``night`` as attempts (from run storage, by tags)."""
    records = context.instance.get_run_records(
        RunsFilter(tags={ENTITY_TAG: entity.name, BACKGROUND_TAG: "true",
                         NIGHT_TAG: night.isoformat()})
    )
    return [a for r in records if (a := run_attempt(r)) is not None]


def _retry_note(
    given_up: frozenset[str], waiting: dict[str, datetime], sched: ScheduleConfig
) -> str:
    """What the skip reason adds about slices that failed tonight."""
    notes = [
        f"{key} gave up tonight after {sched.retry_attempts} failed runs: NEEDS ATTENTION "
        "(the pass goes on with its other slices)"
        for key in sorted(given_up)
    ]
    notes += [
        f"{key} failed, next attempt at {local_time(at, sched)}"
        for key, at in sorted(waiting.items())
    ]
    return ("; " + "; ".join(notes)) if notes else ""


def _night_ticks(
    context: ScheduleEvaluationContext, entity: EntityConfig, syncflow: SyncFlowResource
) -> Iterator[RunRequest | SkipReason]:
    sched = entity.schedule
    now = context.scheduled_execution_time or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    dead = _fail_presumed_dead(context, entity, now)
    dead_note = f"; marked presumed-dead run(s) failed: {', '.join(dead)}" if dead else ""
    bounds = window_bounds(now, sched)
    if bounds is None:
        opens = next_window_start(now, sched)
        yield SkipReason(
            f"outside the night window {sched.window_start:%H:%M}-{sched.window_end:%H:%M} "
            f"{sched.timezone}; it opens at {local_time(opens, sched)}{dead_note}"
        )
        return
    tonight = night_of(now, sched)
    keys = slice_keys(entity.slice_count)
    state_pass = _state_passes(syncflow, entity, keys)
    completed = {k: p - 1 for k, p in state_pass.items()}
    pass_no = min(state_pass.values()) if state_pass else 1
    in_flight = _in_flight(context, entity)
    attempts = _attempts_of_night(context, entity, tonight)
    # Slices that ran tonight, finished or paused: a paused run used tonight's window (the
    # window closed on it), so it counts against tonight's quota and resumes next night.
    finished = {a.slice_key for a in attempts if a.outcome in ("finished", "paused")}
    retries = retry_status(attempts, tonight, sched)
    given_up = frozenset(k for k, r in retries.items() if r.given_up)
    waiting = {
        k: r.next_attempt_at for k, r in retries.items()
        if r.waiting(now) and r.next_attempt_at is not None
    }
    plan = plan_night(
        keys,
        completed,
        sched.days_to_complete,
        finished_tonight=finished - set(retries),
        in_flight=in_flight,
        nights_left=_nights_left(context, entity, pass_no, tonight),
        backing_off=frozenset(waiting),
        given_up=given_up,
    )
    note = _retry_note(given_up, waiting, sched) + dead_note
    if not plan.launch:
        yield SkipReason(
            f"nothing to launch: pass {plan.pass_no}, {len(plan.done_in_pass)}/{len(keys)} slices "
            f"done, tonight's quota {plan.quota} used ({len(finished)} finished, "
            f"{len(in_flight)} running, {len(waiting)} backing off){note}"
        )
        return
    window_end = bounds[1]
    max_runtime = window_end + timedelta(minutes=sched.stale_run_grace_minutes) - now
    for key in plan.launch:
        attempt = (retries[key].failures + 1) if key in retries else 1
        yield RunRequest(
            run_key=f"{entity.name}:{tonight.isoformat()}:pass{plan.pass_no}:{key}:try{attempt}",
            partition_key=key,
            tags={
                ENTITY_TAG: entity.name,
                BACKGROUND_TAG: "true",
                NIGHT_TAG: tonight.isoformat(),
                PASS_TAG: str(plan.pass_no),
                WINDOW_END_TAG: window_end.isoformat(),
                LAUNCHED_AT_TAG: now.astimezone(UTC).isoformat(),
                MAX_RUNTIME_TAG: str(int(max_runtime.total_seconds())),
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
