"""Sensors that load waiting children: on parent arrival, and on their backoff schedule.

``<child>_parent_arrival`` walks the parent assets' materializations in the event log with its
own cursor (storage ids per parent), from the newest one at its first tick (so turning it on
does not replay all of history). `@asset_sensor` is not used on purpose: it sees only the
latest event per tick (dagster issue 32853). When a parent materialized and children of the
entity wait, it launches ``<child>_resolve`` tagged with the triggering event, so the resolution
shows in the UI as a materialization of the child with its trigger in the metadata.

``<child>_pending_retry`` launches the same job for children whose ``next_retry_at`` is due;
each retry uses an attempt, and after the last one they become ``parent_missing`` failed records.
"""


import json
from collections.abc import Iterator
from datetime import UTC, datetime

from dagster import (
    AssetMaterialization,
    AssetRecordsFilter,
    DefaultSensorStatus,
    EventLogRecord,
    Failure,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    job,
    op,
    sensor,
)

from syncflow_core.config import EntityConfig, SyncFlowConfig
from syncflow_core.log_context import log_context
from syncflow_core.pipeline import resolve_pending
from syncflow_core.redaction import safe_message
from syncflow_dagster.resources import SyncFlowResource
from syncflow_dagster.translation import ENTITY_TAG, entity_asset, entity_pool

__all__ = [
    "RESOLVE_MODE_TAG",
    "TRIGGER_EVENT_TAG",
    "TRIGGER_PARENT_TAG",
    "TRIGGER_RUN_TAG",
    "build_resolution_jobs",
    "build_sensors",
    "resolution_job_name",
]

RESOLVE_MODE_TAG = "syncflow/resolve_mode"
TRIGGER_PARENT_TAG = "syncflow/trigger_parent"
TRIGGER_EVENT_TAG = "syncflow/trigger_storage_id"
TRIGGER_RUN_TAG = "syncflow/trigger_run"
EVENTS_PER_TICK = 1000


def _watched_parents(entity: EntityConfig) -> list[str]:
    # Nothing waits for an optional reference's parent.
    return list(dict.fromkeys(ref.entity for ref in entity.parent_refs if not ref.optional))


def resolution_job_name(entity: EntityConfig) -> str:
    """``<entity>_resolve``."""
    return f"{entity.name}_resolve"


def _resolution_job(config: SyncFlowConfig, entity: EntityConfig) -> JobDefinition:
    names = entity_asset(config, entity)

    @op(
        name=names.op_name("resolve_pending"),
        pool=entity_pool(entity.name),  # one run per entity, like the entity's sync runs
        description=f"Load waiting `{entity.name}` children whose parents now exist.",
    )
    def resolve_op(context: OpExecutionContext, syncflow: SyncFlowResource) -> None:
        tags = context.run.tags
        parent_arrived = tags.get(RESOLVE_MODE_TAG) == "parent"
        try:
            with syncflow.runtime() as rt, log_context(run_id=context.run_id,
                                                       batch_id=context.run_id,
                                                       entity=entity.name):
                counts = resolve_pending(
                    rt,
                    entity.name,
                    context.run_id,
                    parent_arrived=parent_arrived,
                    now=datetime.now(UTC),
                )
        except Exception as exc:  # no row values or credentials in the event log
            raise Failure(description=f"{entity.name} resolve: {safe_message(exc)}") from None
        metadata: dict[str, object] = {
            "resolved": counts.resolved,
            "inserted": counts.inserted,
            "updated": counts.updated,
            "pending": counts.pending,
            "parent_missing": counts.parent_missing,
            "mode": "parent arrival" if parent_arrived else "backoff retry",
            "resolve_seconds": float(counts.durations.get("resolve", 0.0)),
        }
        if TRIGGER_PARENT_TAG in tags:
            metadata["triggered_by"] = MetadataValue.text(
                f"{tags[TRIGGER_PARENT_TAG]} materialization (storage id "
                f"{tags.get(TRIGGER_EVENT_TAG)}, run {tags.get(TRIGGER_RUN_TAG)})"
            )
            if tags.get(TRIGGER_RUN_TAG):
                metadata["trigger_run"] = MetadataValue.dagster_run(tags[TRIGGER_RUN_TAG])
        context.log_event(
            AssetMaterialization(
                asset_key=names.key,
                description=f"Resolution of waiting `{entity.name}` children",
                metadata=metadata,  # type: ignore[arg-type]
            )
        )

    @job(
        name=resolution_job_name(entity),
        tags={ENTITY_TAG: entity.name},
        description=f"Load `{entity.name}` rows that waited for a parent (launched by sensors).",
    )
    def resolution() -> None:
        resolve_op()

    return resolution


def build_resolution_jobs(config: SyncFlowConfig) -> dict[str, JobDefinition]:
    """Resolution jobs of every entity that has parents, by entity name."""
    return {
        name: _resolution_job(config, ent)
        for name, ent in config.entities.items()
        if ent.parent_refs
    }


def _parent_arrival(
    config: SyncFlowConfig, entity: EntityConfig, resolution: JobDefinition
) -> SensorDefinition:
    parents = _watched_parents(entity)

    def fn(
        context: SensorEvaluationContext, syncflow: SyncFlowResource
    ) -> Iterator[RunRequest | SkipReason]:
        if not context.cursor:
            # First tick: start from now. Earlier materializations were either seen by the
            # children's own syncs or are the retry sensor's business; replaying them all
            # would launch a resolution that has nothing new to find.
            start = _latest_storage_ids(context, config, parents)
            context.update_cursor(json.dumps(start, sort_keys=True))
            yield SkipReason(
                "started: watching materializations of "
                f"{', '.join(parents)} from now on (storage ids {start})"
            )
            return
        cursor: dict[str, int] = json.loads(context.cursor)
        arrived: list[tuple[str, int, str]] = []
        for parent in parents:
            key = entity_asset(config, parent).key
            result = context.instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, after_storage_id=cursor.get(parent)),
                limit=EVENTS_PER_TICK,
                ascending=True,
            )
            # A parent's resolution run that loaded rows is a parent arrival like a sync (its
            # loaded rows may be what children wait for); one that loaded nothing is not, or a
            # self-referencing entity would resolve itself forever.
            records = [r for r in result.records if not _loaded_nothing(context, r)]
            if result.records:
                cursor[parent] = result.records[-1].storage_id
            if records:
                last = records[-1]
                arrived.append((parent, last.storage_id, last.run_id))
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        if not arrived:
            yield SkipReason(f"no new materialization of {', '.join(parents)}")
            return
        with syncflow.runtime() as rt:
            waiting = rt.state.pending_counts(entity.name)
        arrived = [a for a in arrived if waiting.by_parent.get(a[0], 0)]
        if not arrived:
            yield SkipReason(f"parents materialized; no `{entity.name}` children wait for them")
            return
        # One resolution run per tick, however many parents arrived: it retries every
        # waiting child whose parents now all exist.
        parents_key = "+".join(f"{p}@{sid}" for p, sid, _ in arrived)
        yield RunRequest(
            run_key=f"{entity.name}:{parents_key}",
            tags={
                ENTITY_TAG: entity.name,
                RESOLVE_MODE_TAG: "parent",
                TRIGGER_PARENT_TAG: ",".join(p for p, _, _ in arrived),
                TRIGGER_EVENT_TAG: ",".join(str(sid) for _, sid, _ in arrived),
                TRIGGER_RUN_TAG: arrived[-1][2],
            },
        )

    return sensor(
        name=f"{entity.name}_parent_arrival",
        job=resolution,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.STOPPED,
        description=(
            f"When {', '.join(parents)} materialize, load the `{entity.name}` rows that were "
            "waiting for them (reads the event log with its own cursor)."
        ),
    )(fn)


def _loaded_nothing(context: SensorEvaluationContext, record: EventLogRecord) -> bool:
    """A materialization by a resolution run that loaded no row."""
    run = context.instance.get_run_by_id(record.run_id)
    if run is None or RESOLVE_MODE_TAG not in run.tags:
        return False
    mat = record.asset_materialization
    loaded = mat.metadata.get("resolved") if mat is not None else None
    value = getattr(loaded, "value", None)
    return not isinstance(value, int) or value == 0


def _latest_storage_ids(
    context: SensorEvaluationContext, config: SyncFlowConfig, parents: list[str]
) -> dict[str, int]:
    """The newest materialization's storage id of each parent (parents never synced: none)."""
    out: dict[str, int] = {}
    for parent in parents:
        latest = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=entity_asset(config, parent).key), limit=1,
            ascending=False,
        ).records
        if latest:
            out[parent] = latest[0].storage_id
    return out


def _pending_retry(entity: EntityConfig, resolution: JobDefinition) -> SensorDefinition:
    def fn(
        context: SensorEvaluationContext, syncflow: SyncFlowResource
    ) -> Iterator[RunRequest | SkipReason]:
        now = datetime.now(UTC)
        with syncflow.runtime() as rt:
            due = rt.state.due_pending(entity.name, now).num_rows
        if not due:
            yield SkipReason(f"no waiting `{entity.name}` children are due for a retry")
            return
        # One run per 5-minute bucket: a repeated tick in the same bucket launches nothing twice.
        bucket = now.replace(second=0, microsecond=0, minute=now.minute - now.minute % 5)
        yield RunRequest(
            run_key=f"{entity.name}:retry:{bucket.isoformat()}",
            tags={ENTITY_TAG: entity.name, RESOLVE_MODE_TAG: "retry"},
        )

    return sensor(
        name=f"{entity.name}_pending_retry",
        job=resolution,
        minimum_interval_seconds=300,
        default_status=DefaultSensorStatus.STOPPED,
        description=(
            f"Retry waiting `{entity.name}` children with exponential backoff; after 5 attempts "
            "they become `parent_missing` failed records (still replayable)."
        ),
    )(fn)


def build_sensors(
    config: SyncFlowConfig, jobs: dict[str, JobDefinition] | None = None
) -> list[SensorDefinition]:
    """Parent-arrival and retry sensors for every entity with parents."""
    jobs = jobs or build_resolution_jobs(config)
    out: list[SensorDefinition] = []
    for name, job_def in jobs.items():
        ent = config.entity(name)
        out.append(_parent_arrival(config, ent, job_def))
        out.append(_pending_retry(ent, job_def))
    return out
