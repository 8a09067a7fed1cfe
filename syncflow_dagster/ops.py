"""The op factory: one thin op per core stage of one entity.

Every op covers all slices of the run's partition range (``context.partition_keys``): a
single-run backfill processes each slice in turn, a per-slice run processes one. Ops pass
``{slice_key: Batch}`` between them through `BatchIOManager`, so a failed run re-executes from
the failed stage. The business logic is the core's; here we only time, name and report it.
"""


from collections.abc import Callable
from typing import Any

from dagster import Failure, In, MetadataValue, Nothing, OpDefinition, OpExecutionContext, Out, op

from syncflow_core import pipeline
from syncflow_core.batch import Batch
from syncflow_core.log_context import log_context
from syncflow_core.pipeline import SyncCounts
from syncflow_core.redaction import safe_message
from syncflow_core.runtime import Runtime
from syncflow_dagster.background import mark_paused, window_stop
from syncflow_dagster.resources import SyncFlowResource
from syncflow_dagster.translation import ENTITY_TAG, EntityAsset

__all__ = [
    "BATCH_IO_MANAGER_KEY",
    "COUNT_FIELDS",
    "ERP_POOL",
    "RESOURCE_KEY",
    "STAGES",
    "StageOps",
    "build_stage_ops",
    "counts_metadata",
]

RESOURCE_KEY = "syncflow"
BATCH_IO_MANAGER_KEY = "syncflow_batches"
ERP_POOL = "erp_source"
"""Concurrency pool of every op that reads the ERP (protects it from too many readers)."""
COUNT_FIELDS = ("fetched", "rejected", "rejected_new", "inserted", "updated", "unchanged",
                "deleted", "pending", "resolved", "superseded", "parent_missing")
"""SyncCounts fields recorded as materialization metadata (the UI plots them over time)."""
STAGES = ("extract", "normalize", "identify", "delta", "resolve", "load")

StageOps = dict[str, OpDefinition]
Slices = dict[str, Batch]


def _partition_keys(context: OpExecutionContext) -> list[str]:
    if not context.has_partition_key and not context.has_partition_key_range:
        raise Failure(
            description="SyncFlow assets are partitioned by slice: launch a run for one or more "
            "partitions (slice-01 ...) or a backfill."
        )
    return list(context.partition_keys)


def _fail(entity: str, stage: str, slice_key: str, exc: Exception) -> Failure:
    # safe_message: no row values, statements or credentials reach the event log or the UI.
    return Failure(
        description=f"{entity} {slice_key} {stage}: {safe_message(exc)}",
        metadata={"entity": entity, "slice": slice_key, "stage": stage,
                  "error": type(exc).__name__},
    )


def _run_stage(
    context: OpExecutionContext,
    ent: EntityAsset,
    stage: str,
    slices: list[str],
    step: Callable[[Runtime, str], Batch],
) -> Slices:
    resource: SyncFlowResource = getattr(context.resources, RESOURCE_KEY)
    out: Slices = {}
    with resource.runtime() as rt:
        for key in slices:
            try:
                with log_context(run_id=context.run_id, batch_id=context.run_id,
                                 entity=ent.name, slice=key):
                    batch = step(rt, key)
            except Exception as exc:
                raise _fail(ent.name, stage, key, exc) from None
            out[key] = batch
            with log_context(entity=ent.name, slice=key):
                context.log.info(
                    f"{ent.name} {key} {stage}: "
                    + ", ".join(f"{n}={t.num_rows}" for n, t in batch.tables.items())
                )
    return out


def _sum_counts(all_counts: list[SyncCounts]) -> SyncCounts:
    total = SyncCounts()
    for c in all_counts:
        total.add(c)
    total.paused = any(c.paused for c in all_counts)
    return total


def counts_metadata(counts: SyncCounts) -> dict[str, Any]:
    """Materialization metadata for a sync's counts and per-stage durations (seconds)."""
    meta: dict[str, Any] = {name: getattr(counts, name) for name in COUNT_FIELDS}
    meta["paused"] = counts.paused
    for stage, secs in counts.durations.items():
        meta[f"seconds_{stage}"] = MetadataValue.float(round(secs, 4))
    return meta


def _target_metadata(rt: Runtime, table: str) -> dict[str, Any]:
    from dagster import TableColumn, TableSchema

    target: Any = rt.target
    meta: dict[str, Any] = {"target_table": table}
    if not target.table_exists(table):
        return meta  # nothing loaded yet (e.g. every row is waiting for its parent)
    meta["dagster/row_count"] = int(target.row_count(table))
    schema = target.arrow_schema(table)
    meta["dagster/column_schema"] = TableSchema(
        columns=[TableColumn(name=f.name, type=str(f.type)) for f in schema]
    )
    return meta


def build_stage_ops(ent: EntityAsset, target_table: str) -> StageOps:
    """The six ops of one entity, named ``<entity>__<stage>``."""
    name = ent.name
    tags = {ENTITY_TAG: name}
    common: dict[str, Any] = {"required_resource_keys": {RESOURCE_KEY}}
    batches_in = In(dagster_type=dict)
    batches_out = Out(dagster_type=dict, io_manager_key=BATCH_IO_MANAGER_KEY)

    @op(name=ent.op_name("extract"), ins={"after": In(Nothing)}, out=batches_out,
        pool=ERP_POOL, tags={**tags, "syncflow/stage": "extract"}, **common,
        description=f"Read each slice of {name} from the source (after its cursor).")
    def extract_op(context: OpExecutionContext) -> Slices:
        should_stop = window_stop(context)
        return _run_stage(context, ent, "extract", _partition_keys(context),
                          lambda rt, key: pipeline.extract(rt, name, key, should_stop=should_stop))

    def simple(stage: str, fn: Callable[[Runtime, str, str, Batch], Batch], doc: str) -> Any:
        @op(name=ent.op_name(stage), ins={"batches": batches_in}, out=batches_out,
            tags={**tags, "syncflow/stage": stage}, description=doc, **common)
        def stage_op(context: OpExecutionContext, batches: Slices) -> Slices:
            return _run_stage(context, ent, stage, list(batches),
                              lambda rt, key: fn(rt, name, key, batches[key]))

        return stage_op

    normalize_op = simple(
        "normalize", lambda rt, e, k, b: pipeline.normalize_batch(rt, e, b),
        f"The five normalization layers over {name}'s rows.")
    identify_op = simple(
        "identify", lambda rt, e, k, b: pipeline.identify_batch(rt, e, b),
        f"Add identity hashes and refs to {name}'s rows.")
    delta_op = simple(
        "delta", lambda rt, e, k, b: pipeline.delta_batch(rt, e, k, b),
        f"Classify {name}'s rows against the target: insert/update/unchanged/delete.")
    resolve_op = simple(
        "resolve", lambda rt, e, k, b: pipeline.resolve_batch(rt, e, b),
        f"Hold back {name} rows whose parent is missing.")

    @op(name=ent.op_name("load"), ins={"batches": batches_in}, out=Out(Nothing),
        tags={**tags, "syncflow/stage": "load"}, description=f"Write {name}'s changes.",
        **common)
    def load_op(context: OpExecutionContext, batches: Slices) -> None:
        resource: SyncFlowResource = getattr(context.resources, RESOURCE_KEY)
        should_stop = window_stop(context)
        all_counts: list[SyncCounts] = []
        with resource.runtime() as rt:
            for key, batch in batches.items():
                with log_context(run_id=context.run_id, batch_id=context.run_id, entity=name,
                                 slice=key):
                    try:
                        counts = pipeline.load_batch(rt, name, key, batch, context.run_id,
                                                     should_stop)
                    except Exception as exc:
                        raise _fail(name, "load", key, exc) from None
                    all_counts.append(counts)
                    context.log.info(f"{name} {key} load: {counts.as_dict()}")
                if counts.paused:
                    mark_paused(context, key)
                    break  # window closed: the remaining slices wait for the next night
            total = _sum_counts(all_counts)
            meta = counts_metadata(total)
            meta["slices"] = ", ".join(batches) if batches else ""
            meta.update(_target_metadata(rt, target_table))
        context.add_output_metadata(meta)

    return {
        "extract": extract_op, "normalize": normalize_op, "identify": identify_op,
        "delta": delta_op, "resolve": resolve_op, "load": load_op,
    }
