"""The op factory: one thin op per engine stage of one entity.

The ops hand each other a `ChunkStream` (the stages planned so far, no rows): each checks
what its stage needs and adds it; ``<entity>__load`` then drives the stream, streaming every
slice of the run's partition range (``context.partition_keys``) chunk by chunk through the
core's one engine, `sync_slice`, which commits a cursor per chunk. A single-run backfill syncs
its slices in turn; a per-slice run syncs one. The business logic is the core's; here we only
name, log and report it.
"""


import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dagster import Failure, In, MetadataValue, Nothing, OpDefinition, OpExecutionContext, Out, op

from syncflow_core import pipeline, stream
from syncflow_core.log_context import log_context
from syncflow_core.pipeline import COUNT_FIELDS, SyncCounts
from syncflow_core.redaction import safe_message
from syncflow_core.runtime import Runtime
from syncflow_core.stream import STAGES, ChunkStream
from syncflow_dagster.background import mark_paused, window_stop
from syncflow_dagster.resources import SyncFlowResource
from syncflow_dagster.translation import ENTITY_TAG, EntityAsset, entity_pool

__all__ = [
    "COUNT_FIELDS",
    "ERP_POOL",
    "PROGRESS_EVERY_SECONDS",
    "RESOURCE_KEY",
    "STAGES",
    "STREAM_IO_MANAGER_KEY",
    "StageOps",
    "build_stage_ops",
    "counts_metadata",
]

RESOURCE_KEY = "syncflow"
STREAM_IO_MANAGER_KEY = "syncflow_streams"
ERP_POOL = "erp_source"
"""Pool bounding how many runs read the ERP at once (on the extract op: with pools at run
granularity every run holds each of its ops' pools from launch to end). The other ops are in
the entity's pool (`translation.entity_pool`), the load op above all: a re-execution of the
load alone still holds its entity."""

StageOps = dict[str, OpDefinition]


def _partition_keys(context: OpExecutionContext) -> list[str]:
    if not context.has_partition_key and not context.has_partition_key_range:
        raise Failure(
            description="SyncFlow assets are partitioned by slice: launch a run for one or more "
            "partitions (slice-01 ...) or a backfill."
        )
    return list(context.partition_keys)


def _fail(entity: str, stage: str, slice_key: str | None, exc: Exception) -> Failure:
    where = f"{entity} {slice_key}" if slice_key else entity
    # safe_message: no row values, statements or credentials reach the event log or the UI.
    return Failure(
        description=f"{where} {stage}: {safe_message(exc)}",
        metadata={"entity": entity, "slice": slice_key or "", "stage": stage,
                  "error": type(exc).__name__},
    )


def counts_metadata(counts: SyncCounts) -> dict[str, Any]:
    """Materialization metadata for one slice's counts and per-stage durations (seconds)."""
    meta: dict[str, Any] = {name: getattr(counts, name) for name in COUNT_FIELDS}
    meta["paused"] = counts.paused
    for stage, secs in counts.durations.items():
        meta[f"seconds_{stage}"] = MetadataValue.float(round(secs, 4))
    return meta


def _target_metadata(rt: Runtime, table: str, count_rows: bool) -> dict[str, Any]:
    from dagster import TableColumn, TableSchema

    target: Any = rt.target
    meta: dict[str, Any] = {"target_table": table}
    if not target.table_exists(table):
        return meta  # nothing loaded yet (e.g. every row is waiting for its parent)
    if count_rows:  # `table_row_count`: the whole table's rows (all slices), a full scan
        meta["dagster/row_count"] = int(target.row_count(table))
    schema = target.arrow_schema(table)
    meta["dagster/column_schema"] = TableSchema(
        columns=[TableColumn(name=f.name, type=str(f.type)) for f in schema]
    )
    return meta


PROGRESS_EVERY_SECONDS = 5.0
"""At most one progress line per slice this often (each line is an event-log write)."""


def _chunk_logger(context: OpExecutionContext, entity: str, key: str) -> Callable[[SyncCounts],
                                                                                   None]:
    """Progress lines: every chunk's counts, summed since the last line, at most every
    `PROGRESS_EVERY_SECONDS` and when the slice ends or pauses."""
    chunks = [0]
    pending = [SyncCounts()]  # the counts not in a line yet
    last = [time.monotonic()]

    def log(counts: SyncCounts) -> None:
        chunks[0] += 1
        since = pending[0]
        since.add(counts)
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_SECONDS and not (counts.complete or counts.paused):
            return
        with log_context(chunk=chunks[0]):
            context.log.info(
                f"{entity} {key} through chunk {chunks[0]}: fetched={since.fetched} "
                f"inserted={since.inserted} updated={since.updated} "
                f"unchanged={since.unchanged} deleted={since.deleted} "
                f"rejected={since.rejected} pending={since.pending}; cursor committed"
                + (" (slice done)" if counts.complete else " (paused)" if counts.paused else "")
            )
        pending[0] = SyncCounts()
        last[0] = now

    return log


def build_stage_ops(ent: EntityAsset, target_table: str, count_rows: bool = False) -> StageOps:
    """The six ops of one entity, named ``<entity>__<stage>``; ``count_rows``: report the
    target table's live rows (``dagster/row_count``) after every run."""
    name = ent.name
    tags = {ENTITY_TAG: name}
    common: dict[str, Any] = {"required_resource_keys": {RESOURCE_KEY}}
    stream_in = In(dagster_type=ChunkStream)
    stream_out = Out(dagster_type=ChunkStream, io_manager_key=STREAM_IO_MANAGER_KEY)

    def checked(context: OpExecutionContext, stage: str, check: Callable[[Runtime], str]) -> None:
        resource: SyncFlowResource = getattr(context.resources, RESOURCE_KEY)
        try:
            with resource.runtime() as rt, log_context(run_id=context.run_id,
                                                       batch_id=context.run_id, entity=name):
                context.log.info(f"{name} {stage}: {check(rt)}")
        except Exception as exc:
            raise _fail(name, stage, None, exc) from None

    @op(name=ent.op_name("extract"), ins={"after": In(Nothing)}, out=stream_out,
        pool=ERP_POOL, tags={**tags, "syncflow/stage": "extract"}, **common,
        description=f"Plan the read of each slice of {name} from its committed cursor.")
    def extract_op(context: OpExecutionContext) -> ChunkStream:
        keys = _partition_keys(context)
        checked(context, "extract",
                lambda rt: "; ".join(stream.check_extract(rt, name, keys)))
        resource: SyncFlowResource = getattr(context.resources, RESOURCE_KEY)
        try:
            # The first chunk's read starts here and overlaps the next ops; load takes it.
            resource.start_read(name, keys[0])
        except Exception as exc:
            raise _fail(name, "extract", keys[0], exc) from None
        return ChunkStream(name).then("extract")

    def planned(stage: str, check: Callable[[Runtime, str], str], doc: str) -> Any:
        @op(name=ent.op_name(stage), ins={"stream": stream_in}, out=stream_out,
            pool=entity_pool(name), tags={**tags, "syncflow/stage": stage}, description=doc,
            **common)
        def stage_op(context: OpExecutionContext, stream: ChunkStream) -> ChunkStream:
            checked(context, stage, lambda rt: check(rt, name))
            return stream.then(stage)

        return stage_op

    normalize_op = planned("normalize", stream.check_normalize,
                           f"The five normalization layers over each chunk of {name}.")
    identify_op = planned("identify", stream.check_identify,
                          f"Identity hashes and refs for each chunk of {name}.")
    delta_op = planned("delta", stream.check_delta,
                       f"Classify each chunk of {name} against the target.")
    resolve_op = planned("resolve", stream.check_resolve,
                         f"Hold back {name} rows whose parent is missing.")

    @op(name=ent.op_name("load"), ins={"stream": stream_in}, out=Out(Nothing),
        pool=entity_pool(name),
        tags={**tags, "syncflow/stage": "load"}, **common,
        description=f"Stream each slice of {name} chunk by chunk through the stages and write "
        "its changes, committing the cursor per chunk.")
    def load_op(context: OpExecutionContext, stream: ChunkStream) -> None:
        if not stream.ready:
            raise Failure(description=f"{name}: stream planned only {list(stream.stages)}")
        resource: SyncFlowResource = getattr(context.resources, RESOURCE_KEY)
        should_stop = window_stop(context)
        keys = _partition_keys(context)
        # Per-partition metadata lives on the step context (OpExecutionContext lacks it).
        step = context.get_step_execution_context()
        done: list[str] = []
        with resource.runtime() as rt, _gc_frozen():
            with pipeline.first_load(rt, name):  # a single-run backfill's slices as one
                _sync_slices(context, step, resource, rt, name, keys, should_stop, done)
            target_meta = _target_metadata(rt, target_table, count_rows)
        if len(keys) == 1:
            context.add_output_metadata(target_meta)
        else:
            step.add_asset_metadata({**target_meta, "slices_synced": ", ".join(done)})

    return {
        "extract": extract_op, "normalize": normalize_op, "identify": identify_op,
        "delta": delta_op, "resolve": resolve_op, "load": load_op,
    }


@contextmanager
def _gc_frozen() -> Iterator[None]:
    """The objects that exist now out of the garbage collector's sight for the block.

    Dagster's objects (definitions, modules, the instance, the run's events) outnumber a
    chunk's by far, and every full collection during the slices walked them all again (the
    asset path ran 20-25 % slower than the engine alone at 1M and 3M rows, in proportion
    to rows; with this, 2-24 % over five runs on a 2-core machine, where one run's noise is
    ~10 %). Unfrozen afterwards, so a process running many runs (tests, a dev server) frees
    their garbage as before.
    """
    gc.freeze()  # (garbage among them is freed after the block, once unfrozen)
    try:
        yield
    finally:
        gc.unfreeze()


def _sync_slices(context: OpExecutionContext, step: Any, resource: SyncFlowResource,
                 rt: Runtime, name: str, keys: list[str],
                 should_stop: Callable[[], bool] | None, done: list[str]) -> None:
    """Sync the run's slices in turn, each reporting its own counts (``step``: the step
    execution context, for per-partition metadata); stop at a pause. A slice whose read the
    extract op started takes it."""
    for key in keys:
        try:
            with log_context(run_id=context.run_id, batch_id=context.run_id,
                             entity=name, slice=key):
                counts = pipeline.sync_slice(
                    rt, name, key, context.run_id, should_stop,
                    after_chunk=_chunk_logger(context, name, key),
                    ahead=resource.take_read(name, key),
                )
        except Exception as exc:
            raise _fail(name, "load", key, exc) from None
        done.append(key)
        meta = counts_metadata(counts)
        meta["slice"] = key
        if len(keys) == 1:
            context.add_output_metadata(meta)
        else:  # each slice's materialization gets its own counts
            step.add_asset_metadata(meta, partition_key=key)
        if counts.paused:
            mark_paused(context, key)
            break  # window closed: the remaining slices wait for the next night
