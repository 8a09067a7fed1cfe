"""Sync one slice of one entity end to end.

source -> normalize -> identity -> delta -> resolve -> load.

Each stage is a plain function over `Batch`es, so the Dagster shell runs them as ops (and can
re-execute from a failed one without re-reading the ERP), while `sync_slice` composes the same
functions chunk by chunk for scripts and tests.

Resumability: `extract` reads the slice's remaining key range, ``(cursor, hi]``, and records in
the batch how far it got (``end``: the last source key read, or the slice's upper bound when it
read to the end). `load_batch` writes the target rows, failed records, pending children and the
new cursor in one transaction when state and target share a database; otherwise target first,
then state, and because writes are upserts by key hash (and failed records are idempotent by
fingerprint) a replayed batch changes nothing twice.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.batch import Batch
from syncflow_core.collisions import (
    Scope,
    collision_scope,
    find_copies,
    gather_copies,
    held_back,
    known_collisions,
    repeated_hashes,
    save_collisions,
)
from syncflow_core.config import EntityConfig, check_source_columns
from syncflow_core.delta import (
    IncomingIndex,
    classify,
    empty_stored,
    index_incoming,
    spare_rejected,
)
from syncflow_core.errors import ConfigError, RejectRatioExceeded
from syncflow_core.identity import (
    DELETED_AT,
    KEY_HASH,
    ROWVERSION,
    identify,
)
from syncflow_core.key_scope import (
    keys_unordered,
    mark_keys_unordered,
    normalize_keys,
    reconcile_deletes,
    stored_by_hash,
    stray_count,
)
from syncflow_core.keycodec import decode_key, encode_key
from syncflow_core.normalize import (
    normalize,
)
from syncflow_core.parallel import (
    DEFAULT_MIN_ROWS,
    PartFeeder,
    map_tables,
    merge_results,
    prepare_parallel,
    prepare_part,
    start_pool,
)
from syncflow_core.reconcile import gone_keys, gone_waiting, reconcile_due, source_key_hashes
from syncflow_core.references import check_reference_types
from syncflow_core.reject_keys import keyed_rejects
from syncflow_core.rejects import (
    ROW_ID,
    materialize_rejects,
    with_row_ids,
    without_row_ids,
)
from syncflow_core.resolve import (
    WAITING_SCHEMA,
    exhausted_children,
    keep_schedule,
    parent_missing_rejects,
    retry_or_give_up,
    rows_from_json,
    split_by_parents,
    waiting_children,
)
from syncflow_core.runtime import Runtime
from syncflow_core.settle import settle_chunk
from syncflow_core.slices import SliceBounds, plan_slices, slice_of
from syncflow_core.sources.sql import SqlSource
from syncflow_core.utf8_check import RawText, scalar_value

__all__ = [
    "COUNT_FIELDS",
    "ReadAhead",
    "Runtime",
    "SyncCounts",
    "delta_batch",
    "ensure_slice_plan",
    "extract",
    "first_load",
    "identify_batch",
    "load_batch",
    "normalize_batch",
    "prepare_batch",
    "read_ahead",
    "resolve_batch",
    "resolve_pending",
    "source_field",
    "sync_slice",
    "uses_workers",
]

OP = "__sf_op"  # 'i' insert / 'u' update, carried from delta to load for the counts
MIN_ROWS_FOR_RATIO = 100
"""The reject-ratio limit applies from this many rows on (3 rows with 1 bad is noise)."""


@dataclass
class SyncCounts:
    """What one sync did; every field is what the UI plots over time."""

    fetched: int = 0
    rejected: int = 0
    rejected_new: int = 0
    """Rejected rows not on record before this sync (the reject-ratio check counts these)."""
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    pending: int = 0
    resolved: int = 0
    superseded: int = 0
    parent_missing: int = 0
    rowversion_backwards: int = 0
    """Rowversion updates whose version went below the stored one (written, and shown)."""
    paused: bool = False
    complete: bool = False
    durations: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (durations included)."""
        return asdict(self)

    def add(self, other: SyncCounts) -> None:
        """Accumulate another chunk's counts into this one."""
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.durations.items():
            self.durations[k] = self.durations.get(k, 0.0) + v
        self.paused = other.paused
        self.complete = other.complete


COUNT_FIELDS = tuple(f.name for f in fields(SyncCounts) if f.type in (int, "int"))
"""The row counts of `SyncCounts` (what chunks add up and the UI plots), in field order."""


# ---------------------------------------------------------------------------------- helpers


def source_field(entity: EntityConfig, output: str) -> str:
    """The source column an output column comes from (inverse of layer-5 renames)."""
    name = output
    for m in reversed(entity.field_mappings):
        if m.op == "rename" and m.to == name:
            name = m.field
        elif m.op in ("constant", "concat") and m.field == name:
            raise ConfigError(
                f"entity '{entity.name}': business key field {output!r} is computed by a "
                f"{m.op} mapping; key ranges need a source column"
            )
    return name


def _source_keys(entity: EntityConfig) -> list[str]:
    return [source_field(entity, f) for f in entity.business_key_fields]


def _key_of_row(table: pa.Table, fields: Sequence[str], index: int) -> tuple[Any, ...]:
    return tuple(scalar_value(table.column(f), index) for f in fields)


def _timed(durations: dict[str, float], stage: str) -> Callable[[], None]:
    start = time.perf_counter()

    def stop() -> None:
        durations[stage] = durations.get(stage, 0.0) + time.perf_counter() - start

    return stop


def ensure_slice_plan(rt: Runtime, entity: str, *, save: bool = True) -> list[SliceBounds]:
    """The entity's slice plan from the state store; planned from the source on first use
    (and stored, unless ``save`` is off: a dry run writes nothing)."""
    ent = rt.entity(entity)
    plan = rt.state.get_slice_plan(entity)
    if plan is None or len(plan) != ent.slice_count:
        planned = plan_slices(rt.source(entity), ent.source, _source_keys(ent), ent.slice_count)
        if not save:
            return planned  # a dry run: the plan stays in memory
        # Two slices' first runs may plan at once: the first plan stored wins for both.
        plan = rt.state.claim_slice_plan(entity, planned)
    return plan


def _normalize_key(
    ent: EntityConfig, source_types: dict[str, str], key: tuple[Any, ...] | None
) -> tuple[Any, ...] | None:
    """A source key tuple as the target holds it (after the same normalization as the rows)."""
    if key is None or key == ():
        return key  # unbounded, or the bottom of the key space (an empty slice)
    if any(isinstance(v, RawText) for v in key):
        # Not UTF-8: its row is a failed record, and the bound has no cleaned form.
        raise ConfigError(f"entity '{ent.name}': a slice bound is not valid UTF-8 text")
    src = _source_keys(ent)
    table = pa.Table.from_pylist([dict(zip(src, key, strict=True))])
    result = normalize_keys(ent, source_types, src, table)
    if result.table.num_rows != 1 or any(
        result.table.column(k)[0].as_py() is None for k in ent.business_key_fields
    ):
        raise ConfigError(
            f"entity '{ent.name}': slice bound {key!r} does not survive normalization"
        )
    return _key_of_row(result.table, ent.business_key_fields, 0)


def _concat(tables: Sequence[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t is not None]
    return pa.concat_tables(tables, promote_options="permissive")


# ---------------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class _ReadPlan:
    """What a slice read needs besides its start key (found once per sync)."""

    entity: EntityConfig
    slice_key: str
    source_types: dict[str, str]
    bounds: SliceBounds
    watermark: Any
    watermark_field: str | None
    collisions: tuple[str, ...] = ()
    """Keys with copies in several chunks (last pass): chunks before the last hold them back."""


def _read_plan(
    rt: Runtime, entity: str, slice_key: str, *, save_plan: bool = True
) -> tuple[_ReadPlan, Any]:
    """The slice's read plan and where its read starts (the cursor of a run in progress)."""
    ent = rt.entity(entity)
    source_types = rt.source(entity).columns(ent.source)
    check_source_columns(rt.config, ent, list(source_types))
    if ent.parent_refs:
        _check_reference_types(rt, ent, source_types)
    bounds = slice_of(ensure_slice_plan(rt, entity, save=save_plan), slice_key)
    cursor = rt.state.get_cursor(entity, slice_key)
    start = bounds.lo
    if (
        cursor is not None
        and cursor.status in ("running", "paused")
        and cursor.last_key is not None
    ):
        start = cursor.last_key
    watermark = None
    if ent.delta_strategy == "rowversion":
        watermark = rt.state.get_watermark(entity, slice_key)
    src_rv = source_field(ent, ent.rowversion_field) if ent.rowversion_field else None
    scope = collision_scope(ent, keys_unordered(rt, entity))
    plan = _ReadPlan(
        ent,
        slice_key,
        dict(source_types),
        bounds,
        watermark,
        src_rv if watermark is not None else None,
        tuple(known_collisions(rt.state, entity, slice_key, scope)),
    )
    return plan, start


def _check_reference_types(rt: Runtime, ent: EntityConfig, types: Mapping[str, str]) -> None:
    """A reference that could never match its parent's key hash is a config error, not a
    child waiting forever (with the source's reflected types, see `references`)."""
    reflected = {ent.name: types}
    for ref in ent.parent_refs:
        if ref.entity not in reflected:
            parent = rt.entity(ref.entity)
            reflected[ref.entity] = rt.source(ref.entity).columns(parent.source)
    check_reference_types(rt.config, reflected, only=ent.name)


def extract(
    rt: Runtime,
    entity: str,
    slice_key: str,
    *,
    max_chunks: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Batch:
    """Read the slice's remaining key range ``(cursor, hi]`` (tables: ``raw``).

    Stops early after ``max_chunks`` chunks or when ``should_stop()`` turns true at a chunk
    boundary; ``info['complete']`` says whether the slice's range was read to its end.
    """
    started = time.perf_counter()
    plan, start = _read_plan(rt, entity, slice_key)
    batch = _read(rt, plan, start, max_chunks, should_stop, time.perf_counter() - started)
    return _gather_copies(rt, plan, batch)


def _read(
    rt: Runtime,
    plan: _ReadPlan,
    start: Any,
    max_chunks: int | None,
    should_stop: Callable[[], bool] | None,
    planning: float = 0.0,
    feeder: PartFeeder | None = None,
    on_end: Callable[[Any], None] | None = None,
    chunk_size: int | None = None,
) -> Batch:
    """Read ``(start, hi]`` of the planned slice. Touches only the source (safe on a thread).

    ``feeder`` gets the rows as they arrive, with the row ids the batch will give them.
    ``chunk_size``: rows per chunk (default: the entity's).
    ``on_end(end)`` learns where the read ends as soon as the last row is in, before the
    chunks are put together (``end`` is the batch's ``info['end']``, decoded).
    """
    ent = plan.entity
    size = chunk_size or ent.chunk_size
    durations: dict[str, float] = {"extract": planning}
    stop = _timed(durations, "extract")
    source = rt.source(ent.name)
    bounds = plan.bounds
    chunks: list[pa.Table] = []
    complete = True
    src_keys = _source_keys(ent)

    def feed(piece: pa.Table) -> None:
        if feeder is not None and piece.num_rows:
            feeder.feed(with_row_ids(piece, feeder.rows))

    streams = feeder is not None and _streams(source)
    reader: Iterator[pa.Table] = iter(
        source.read(
            ent.source,
            src_keys,
            start,
            bounds.hi,
            size,
            watermark_field=plan.watermark_field,
            watermark=plan.watermark,
            **({"on_piece": feed} if streams else {}),
        )
    )
    if bounds.lo is None and start is None:
        # Rows with a NULL key sit outside every key range; the first slice reads them at the
        # start of its pass so identity turns them into failed records instead of losing them.
        for nulls in source.read_null_keys(ent.source, src_keys, ent.chunk_size):
            feed(nulls)
            chunks.append(nulls)
    null_rows = sum(c.num_rows for c in chunks)
    chunk_rows: list[int] = []  # rows per keyed chunk, in order (for the rowversion floor)
    for chunk in reader:
        if not streams:
            feed(chunk)
        if chunk.num_rows:
            chunks.append(chunk)
            chunk_rows.append(chunk.num_rows)
        if (max_chunks is not None and len(chunks) >= max_chunks) or (
            should_stop is not None and should_stop()
        ):
            # Only a *full* chunk can have more behind it.
            complete = chunk.num_rows < size
            break
    # An incomplete read ended on a full keyed chunk: its last row is the batch's last.
    end = bounds.hi if complete else _key_of_row(chunks[-1], src_keys, chunks[-1].num_rows - 1)
    if on_end is not None:
        on_end(end)
    raw = (
        _unify_chunks(chunks)
        if chunks
        else pa.table({c: pa.array([], pa.string()) for c in plan.source_types})
    )
    stop()
    return Batch(
        {"raw": with_row_ids(raw)},
        {
            "entity": ent.name,
            "slice_key": plan.slice_key,
            "source_types": dict(plan.source_types),
            "start": encode_key(start),
            "end": encode_key(end),
            "complete": complete,
            "fetched": raw.num_rows,
            "null_key_rows": null_rows,
            "chunk_rows": chunk_rows,
            "held_back": list(plan.collisions),
            "durations": durations,
        },
    )


def _streams(source: Any) -> bool:
    """True when the source hands a chunk's rows on while they arrive (`SqlSource.streams`)."""
    return isinstance(source, SqlSource) and source.streams


def _unify_chunks(chunks: list[pa.Table]) -> pa.Table:
    """Concatenate chunks whose column types may differ (messy sources, all-null chunks).

    A column typed differently across chunks becomes text in every chunk: normalization parses
    text by the declared type anyway, and text loses no value.
    """
    types: dict[str, set[pa.DataType]] = {}
    for chunk in chunks:
        for f in chunk.schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    mixed = {name for name, ts in types.items() if len(ts) > 1}
    if mixed:
        fixed = []
        for chunk in chunks:
            for name in mixed & set(chunk.column_names):
                i = chunk.column_names.index(name)
                chunk = chunk.set_column(i, name, chunk.column(name).cast(pa.string()))
            fixed.append(chunk)
        chunks = fixed
    return pa.concat_tables(chunks, promote_options="permissive")


def _gather_copies(rt: Runtime, plan: _ReadPlan, batch: Batch) -> Batch:
    """The last chunk of a slice's pass with every copy of the keys that several chunks hold
    in place of its own copies (`syncflow_core.collisions`); other batches as they are.

    Info added: ``gathered_from`` (row id of the first copy read; copies are the batch's
    last rows), ``collision_scope`` and ``collisions_next`` (the keys to record with the
    chunk's commit).
    """
    if not batch.info["complete"]:
        return batch
    ent = plan.entity
    scope = collision_scope(ent, keys_unordered(rt, ent.name))
    if scope is None or plan.bounds.hi == ():
        return batch  # no copies can be apart, or the empty range below every key
    durations = dict(batch.info.get("durations", {}))
    stop = _timed(durations, "extract")
    known = known_collisions(rt.state, ent.name, plan.slice_key, scope)
    lo, hi = (None, None) if scope == "entity" else (plan.bounds.lo or None, plan.bounds.hi)
    keys = _source_keys(ent)
    source = rt.source(ent.name)
    types = plan.source_types
    info: dict[str, Any] = {**batch.info, "durations": durations, "collision_scope": scope}
    tables = dict(batch.tables)
    found: list[str] | None = None
    cursor = rt.state.get_cursor(ent.name, plan.slice_key)
    if scope == "entity" or reconcile_due(ent, cursor.pass_no if cursor is not None else 1):
        # An unordered entity's deletes come from the same read of the source's keys (what
        # `key_scope.reconcile_deletes` would read again after the load): the target's keys
        # first, so a key another slice loads meanwhile is not taken for gone.
        live = _live_keys(rt, ent) if scope == "entity" else None
        present, found = find_copies(source, ent, types, keys, lo, hi)
        if scope == "slice":  # the delete reconciliation's own keys-only read (`_with_gone_keys`)
            tables["slice_keys"] = pa.table({KEY_HASH: present})
        if live is not None:
            gone = live.filter(pc.invert(pc.is_in(live, value_set=present)))
            tables["gone_keys"] = pa.table({KEY_HASH: gone})
    wanted = sorted(set(known) | set(found or ()))
    if not wanted:
        if known or found is not None:
            info["collisions_next"] = []
        stop()
        return Batch(tables, info)
    raw = batch.table("raw")
    got = gather_copies(source, ent, types, keys, raw, lo, hi, wanted)
    own = without_row_ids(raw).filter(got.kept)
    # An empty read comes typed all text: it must not turn the copies' types to text.
    parts = [own, *got.copies] if own.num_rows else got.copies
    merged = _unify_chunks(parts) if parts else own
    tables["raw"] = with_row_ids(merged)
    # Rows kept per keyed chunk (the rowversion floor counts chunks; copies are in none).
    kept = got.kept.to_numpy(zero_copy_only=False)
    ends = np.cumsum([int(info.get("null_key_rows", 0)), *info.get("chunk_rows", [])])
    info["chunk_rows"] = [int(kept[a:b].sum()) for a, b in itertools.pairwise(ends)]
    info["fetched"] = merged.num_rows
    info["gathered_from"] = own.num_rows
    # Without a keys scan the copies read tell which of the known keys still have copies.
    info["collisions_next"] = found if found is not None else repeated_hashes(got.copy_hashes)
    stop()
    return Batch(tables, info)


def _live_keys(rt: Runtime, ent: EntityConfig) -> pa.Array:
    """Key hashes of every live target row of the entity."""
    if not rt.target.table_exists(ent.table_name):
        return pa.array([], pa.string())
    stored = rt.target.read_identities(ent.table_name, ent.business_key_fields, None, None)
    live = stored.filter(pc.is_null(stored.column(DELETED_AT))).column(KEY_HASH)
    out: pa.Array = live.combine_chunks().cast(pa.string())
    return out


def normalize_batch(rt: Runtime, entity: str, batch: Batch) -> Batch:
    """The five normalization layers over all cores (tables: ``rows``, ``rejects``)."""
    ent = rt.entity(entity)
    durations = dict(batch.info.get("durations", {}))
    stop = _timed(durations, "normalize")
    raw = batch.table("raw")
    parts = map_tables(
        partial(_normalize_part, entity=ent, source_types=batch.info["source_types"]), raw
    )
    rows = _concat([p.table for p in parts])
    specs = _concat([p.rejects for p in parts])
    rejects = keyed_rejects(raw, specs, ent, batch.info["source_types"], _source_keys(ent))
    stop()
    return batch.with_({"rows": rows, "rejects": rejects}, durations=durations)


def _normalize_part(table: pa.Table, entity: EntityConfig, source_types: dict[str, str]) -> Any:
    return normalize(table, entity, source_types)


def identify_batch(rt: Runtime, entity: str, batch: Batch) -> Batch:
    """Add the `_bridge_*` identity columns over all cores (tables: ``rows``, ``rejects``)."""
    ent = rt.entity(entity)
    durations = dict(batch.info.get("durations", {}))
    stop = _timed(durations, "identify")
    rows = batch.table("rows")
    parts = map_tables(partial(_identify_part, entity=ent), rows)
    ided = _concat([p.table for p in parts])
    specs = _concat([p.rejects for p in parts])
    # Identity rejects (a null key) carry the raw source row, as every earlier stage's do:
    # `__sf_row` still points into the extract, which is dropped only below.
    raw = batch.tables.get("raw", rows)
    rejects = _concat([batch.table("rejects"), materialize_rejects(raw, specs, entity)])
    stop()
    out = dict(batch.tables)
    out.pop("raw", None)  # downstream stages never need it; keep the IO manager's files small
    out.update({"rows": _hold_back(ided, batch.info), "rejects": rejects})
    return Batch(out, {**batch.info, "durations": durations})


def prepare_batch(
    rt: Runtime, entity: str, batch: Batch, *, fed: PartFeeder | None = None
) -> Batch:
    """`normalize_batch` then `identify_batch` in one pass over the workers (same result).

    Each part goes to a worker once and comes back identified: the normalized rows never travel
    back to this process and out again (on 1M rows that round trip cost ~0.4 s of this
    process's time, with the workers waiting). The time is reported under ``normalize``.
    ``fed``: the feeder that got the batch's rows during the read (its parts may be done).
    """
    ent = rt.entity(entity)
    durations = dict(batch.info.get("durations", {}))
    stop = _timed(durations, "normalize")
    raw = batch.table("raw")
    if fed is not None and fed.rows != raw.num_rows:
        fed.cancel()
        raise RuntimeError(f"{entity}: fed {fed.rows} rows for a batch of {raw.num_rows}")
    if fed is not None and fed.rows:
        prepared = merge_results(fed.results())
    else:
        prepared = prepare_parallel(raw, ent, batch.info["source_types"])
    rejects = keyed_rejects(
        raw, prepared.rejects, ent, batch.info["source_types"], _source_keys(ent)
    )
    stop()
    out = {k: v for k, v in batch.tables.items() if k != "raw"}
    out.update({"rows": _hold_back(prepared.table, batch.info), "rejects": rejects})
    return Batch(out, {**batch.info, "durations": durations})


def _hold_back(rows: pa.Table, info: Mapping[str, Any]) -> pa.Table:
    """``rows`` without the copies of keys that several chunks hold, unless this is the pass's
    last chunk: that one reads every copy and decides (`syncflow_core.collisions`). Until
    then they load nothing and close nothing: their failed records stay open."""
    keys = info.get("held_back") or ()
    if not keys or info.get("complete", True):  # (a replay's batch is no pass)
        return rows
    return rows.filter(pc.invert(held_back(rows, KEY_HASH, keys)))


def _identify_part(table: pa.Table, entity: EntityConfig) -> Any:
    return identify(table, entity)


def _target_range(
    ent: EntityConfig, batch: Batch
) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
    """The batch's key range ``(start, end]`` as the target holds keys (normalized)."""
    return _key_range(ent, batch.info["source_types"], batch.info["start"], batch.info["end"])


def _key_range(
    ent: EntityConfig,
    source_types: dict[str, str],
    start: list[list[Any]] | None,
    end: list[list[Any]] | None,
) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
    """``(start, end]``, keys encoded as a batch's info keeps them, as the target holds keys.

    A bound that does not survive cleaning gives the empty range ``(None, ()]``: such a batch
    reads what the target holds by key hash instead (see `syncflow_core.key_scope`).
    """
    try:
        lo = _normalize_key(ent, source_types, decode_key(start))
        hi = _normalize_key(ent, source_types, decode_key(end))
    except ConfigError:
        return None, ()
    return lo, hi


def _stored_identities(
    rt: Runtime, ent: EntityConfig, lo: tuple[Any, ...] | None, hi: tuple[Any, ...] | None
) -> pa.Table:
    """What the target holds in ``(lo, hi]``. Touches only the target and the state store
    (safe on a thread); nothing for an unordered entity (`delta_batch` reads by key hash)."""
    exists = rt.target.table_exists(ent.table_name, refresh=False)  # (asked every chunk)
    if exists and not keys_unordered(rt, ent.name):
        return rt.target.read_identities(ent.table_name, ent.business_key_fields, lo, hi)
    return empty_stored()


def delta_batch(
    rt: Runtime,
    entity: str,
    slice_key: str,
    batch: Batch,
    *,
    stored: pa.Table | None = None,
    index: IncomingIndex | None = None,
    bulk: bool = False,
    scope: tuple[tuple[Any, ...] | None, tuple[Any, ...] | None, bool] | None = None,
) -> Batch:
    """Classify against what the target holds in the batch's key range.

    tables: ``upserts`` (with an op column i/u), ``deletes`` (key hashes), ``rejects``.
    ``stored``: the target's identities of that range when the caller read them already;
    ``index``: `index_incoming` of the batch's rows when the caller built it already;
    ``bulk``: a streamed first load (``stored`` is then taken as is, also for unordered keys);
    ``scope``: `_chunk_scope` of the batch when the caller worked it out already.
    """
    ent = rt.entity(entity)
    durations = dict(batch.info.get("durations", {}))
    stop = _timed(durations, "delta")
    rows = batch.table("rows")
    lo, hi, unordered = scope if scope is not None else _chunk_scope(rt, ent, batch)
    if unordered and not bulk:  # exact, order-free: by key hash, deletes at the pass's end
        stored = stored_by_hash(rt, ent, rows.column(KEY_HASH))
    elif stored is None:
        stored = _stored_identities(rt, ent, lo, hi)
    if not unordered and not bulk:
        stored = _with_copies_stored(rt, ent, rows, stored, batch.info.get("gathered_from"))
    result = classify(
        rows, stored, ent.delta_strategy, rowversion_field=ent.rowversion_field,
        complete_scope=not unordered, index=index,
    )
    upserts = _concat(
        [
            result.inserts.append_column(OP, pa.repeat(pa.scalar("i"), result.inserts.num_rows)),
            result.updates.append_column(OP, pa.repeat(pa.scalar("u"), result.updates.num_rows)),
        ]
    )
    dup_rejects = materialize_rejects(rows, result.rejects, entity)
    rejects = _concat([batch.table("rejects"), dup_rejects])
    # A key whose row is rejected still exists in the source: its target row stays as it was.
    deletes = pa.table({KEY_HASH: spare_rejected(result.deletes, rejects.column("key_hash"))})
    floor = _rowversion_floor(ent, rows, batch.info)
    stop()
    out = {k: v for k, v in batch.tables.items() if k != "rows"}
    out.update(
        {
            "upserts": upserts,
            "deletes": deletes,
            "rejects": rejects,
            # Every key of the chunk that passed the delta (loads, unchanged or waits): the
            # load closes their failed records and stale waiting rows.
            "settled": pa.table({KEY_HASH: _settled_keys(rows, result.rejects)}),
        }
    )
    return Batch(
        out,
        {
            **batch.info,
            "durations": durations,
            "unchanged": result.unchanged,
            "superseded": result.superseded,
            "rowversion_backwards": result.backwards,
            "rowversion_floor": floor,
            "keys_unordered": unordered,
        },
    )


def _keys_unordered(
    rt: Runtime,
    ent: EntityConfig,
    batch: Batch,
    rows: pa.Table,
    lo: tuple[Any, ...] | None,
    hi: tuple[Any, ...] | None,
) -> bool:
    """Whether this batch must take the order-free path (`syncflow_core.key_scope`); marks
    the entity when this batch is the first to show that cleaning reorders its keys."""
    if keys_unordered(rt, ent.name):
        return True
    gathered_from = batch.info.get("gathered_from")
    if gathered_from is not None:  # copies gathered from the whole slice are no strays
        rows = rows.filter(pc.less(rows.column(ROW_ID), gathered_from))
    lost_bounds = (lo, hi) == (None, ()) and batch.info["end"] != encode_key(())
    # (Equal raw bounds: an empty read at the end of a slice, no cleaning involved.)
    upside_down = batch.info.get("start") != batch.info.get("end") and not _ascending(lo, hi)
    if lost_bounds or upside_down or stray_count(rows, ent.business_key_fields, lo, hi):
        mark_keys_unordered(rt, ent.name)
        return True
    return False


def _ascending(lo: tuple[Any, ...] | None, hi: tuple[Any, ...] | None) -> bool:
    """Whether a chunk's cleaned range ``(lo, hi]`` is not upside down. Cleaning that turns
    the chunk's last key to or below its first is out of order even when that last row is
    rejected (no stray then shows it): chunks' cleaned ranges must not overlap, or copies of
    one key could sit in two chunks unseen (`syncflow_core.collisions`)."""
    if not lo or not hi:
        return True  # unbounded, or the empty range below every key
    try:
        return bool(lo < hi)
    except TypeError:  # values that do not compare: no order to rely on
        return False


def _settled_keys(rows: pa.Table, dup_specs: pa.Table) -> pa.Array | pa.ChunkedArray:
    """Keys of the ``rows`` the delta did not reject as duplicates (``dup_specs``: reject
    specs by `ROW_ID`). A superseded copy's key settles with its winner, which loads; the
    copy's own record is written after the settling and stays open."""
    keys = rows.column(KEY_HASH)
    if dup_specs.num_rows == 0:
        return keys
    lost = pc.is_in(rows.column(ROW_ID), value_set=dup_specs.column(ROW_ID))
    return keys.filter(pc.invert(lost))


def _with_copies_stored(
    rt: Runtime, ent: EntityConfig, rows: pa.Table, stored: pa.Table, gathered_from: int | None
) -> pa.Table:
    """``stored`` (a key range's identities) plus those of the copies gathered into the
    batch (`_gather_copies`), whose keys may lie outside the range: read by key hash."""
    if gathered_from is None or not rt.target.table_exists(ent.table_name):
        return stored
    copies = rows.filter(pc.greater_equal(rows.column(ROW_ID), gathered_from))
    hashes = copies.column(KEY_HASH)
    if len(stored):
        hashes = hashes.filter(pc.invert(pc.is_in(hashes, value_set=stored.column(KEY_HASH))))
    extra = stored_by_hash(rt, ent, hashes)
    if not extra.num_rows:
        return stored
    return pa.concat_tables([stored, extra.cast(stored.schema)])


def _rowversion_floor(ent: EntityConfig, rows: pa.Table, info: Mapping[str, Any]) -> Any:
    """The lowest of the chunks' highest row versions read (None: no rowversion, or no rows).

    A row edited after its chunk was read gets a version above that chunk's highest, so a
    watermark no higher than every chunk's highest cannot skip it, whatever later chunks read.
    (The highest version of the whole pass can: a row edited behind the cursor, then a row
    ahead of it, and the second's version would hide the first.)
    """
    sizes = info.get("chunk_rows")
    if ent.delta_strategy != "rowversion" or sizes is None or not rows.num_rows:
        return None
    if ROWVERSION not in rows.column_names or ROW_ID not in rows.column_names:
        return None
    null_rows = int(info.get("null_key_rows", 0))
    ends = np.cumsum([null_rows, *sizes])  # row ids below ends[0] hold NULL keys
    ids = rows.column(ROW_ID).to_numpy()
    chunk = np.searchsorted(ends, ids, side="right")
    # Copies gathered at the pass's end (`_gather_copies`) sit past the last chunk.
    keyed = pa.table({"chunk": pa.array(chunk), "rv": rows.column(ROWVERSION)}).filter(
        pa.array((ids >= null_rows) & (ids < ends[-1]))
    )
    keyed = keyed.filter(pc.is_valid(keyed.column("rv")))
    if not keyed.num_rows:
        return None
    highest = keyed.group_by("chunk").aggregate([("rv", "max")]).column("rv_max")
    return pc.min(highest).as_py()


def _parent_exists(rt: Runtime) -> Callable[[str, pa.Array], pa.Array]:
    def exists(parent: str, key_hashes: pa.Array) -> pa.Array:
        table = rt.entity(parent).table_name
        if not rt.target.table_exists(table):
            return pa.array([False] * len(key_hashes), pa.bool_())
        return rt.target.existing_keys(table, key_hashes)

    return exists


def resolve_batch(rt: Runtime, entity: str, batch: Batch) -> Batch:
    """Hold back children whose parent is in neither the target nor this batch (``pending``)."""
    ent = rt.entity(entity)
    durations = dict(batch.info.get("durations", {}))
    stop = _timed(durations, "resolve")
    upserts = batch.table("upserts")
    rejects = batch.table("rejects")
    if ent.parent_refs and upserts.num_rows:
        split = split_by_parents(upserts, ent, _parent_exists(rt))
        loadable, pending = split.loadable, split.waiting
        if split.rejects.num_rows:
            rejects = _concat([rejects, materialize_rejects(upserts, split.rejects, entity)])
    else:
        loadable, pending = upserts, None
    stop()
    tables = dict(batch.tables)
    tables["rejects"] = rejects
    tables["upserts"] = loadable
    if pending is not None:
        tables["pending"] = pending
    return Batch(tables, {**batch.info, "durations": durations})


@contextmanager
def _transactions(rt: Runtime, table: str) -> Iterator[tuple[Any, Any]]:
    """(target_conn, state_conn): one transaction when they share a database.

    The target table is locked for writing first, so two runs of one entity never interleave.
    """
    with rt.target.begin() as tconn:
        rt.target.lock_for_write(tconn, table)
        if rt.shares_database:
            yield tconn, tconn
        else:
            with rt.state.begin() as sconn:
                yield tconn, sconn


def load_batch(
    rt: Runtime,
    entity: str,
    slice_key: str,
    batch: Batch,
    run_id: str,
    should_stop: Callable[[], bool] | None = None,
    *,
    bulk: bool = False,
    had_pending: bool | None = None,
) -> SyncCounts:
    """Write the batch's changes, failed records, pending children and cursor; return counts.

    ``should_stop`` is asked after the write: when it says stop and the slice is not complete,
    the cursor is recorded as *paused* (the next run resumes there). ``bulk``: the target is
    in a streamed first load (`SqlTarget.begin_bulk`), every row is an insert.
    ``had_pending``: whether the entity may have waiting children (None: ask the state store).
    """
    ent = rt.entity(entity)
    durations = dict(batch.info.get("durations", {}))
    stop = _timed(durations, "load")
    upserts = batch.table("upserts")
    deletes = batch.table("deletes").column(KEY_HASH).combine_chunks()
    rejects = batch.table("rejects")
    pending = batch.tables.get("pending")
    # A batch that did not come through `delta_batch` has no "settled": its loaded rows are.
    settled = batch.tables["settled"].column(KEY_HASH) if "settled" in batch.tables else (
        upserts.column(KEY_HASH) if KEY_HASH in upserts.column_names else pa.array([], pa.string())
    )
    fetched = int(batch.info.get("fetched", 0))
    n_rejected = rejects.num_rows
    # Bad rows already on record (the ERP still holds them) do not count against this batch.
    n_new = n_rejected - rt.state.known_failed_records(rejects) if n_rejected else 0
    if fetched >= MIN_ROWS_FOR_RATIO and n_new > ent.reject_ratio_limit * fetched:
        # Marked: a retry of this batch finds them not yet accepted and is refused again.
        rt.state.add_failed_records(rejects, run_id, gate_blocked=True, slice_key=slice_key)
        raise RejectRatioExceeded(
            f"entity '{entity}' {slice_key}: {n_new} of {fetched} rows newly rejected "
            f"({n_new / fetched:.1%} > limit {ent.reject_ratio_limit:.1%}); nothing loaded. "
            "See failed records for the reasons."
        )
    ops = upserts.column(OP) if upserts.num_rows else pa.array([], pa.string())
    inserted = int(pc.sum(pc.equal(ops, "i")).as_py() or 0)
    updated = upserts.num_rows - inserted
    rows = without_row_ids(upserts.drop_columns([OP]) if OP in upserts.column_names else upserts)
    now = datetime.now(UTC)
    complete = bool(batch.info["complete"])
    paused = not complete and should_stop is not None and should_stop()
    end = decode_key(batch.info["end"])
    schema_rows = rows if rows.num_rows or rows.num_columns else None
    if schema_rows is not None and schema_rows.num_columns:
        rt.target.ensure_table(ent.table_name, schema_rows.schema, ent.business_key_fields)
    wm = None
    if "rowversion_floor" in batch.info:
        wm = batch.info["rowversion_floor"]
    elif ent.delta_strategy == "rowversion" and rows.num_rows and ROWVERSION in rows.column_names:
        wm = pc.max(rows.column(ROWVERSION)).as_py()  # a batch staged by an older version
    # The slice's watermark moves only when its pass completes: every chunk of a pass must be
    # read above the watermark the pass started with, or a later chunk would skip its rows
    # whose versions are below an earlier chunk's maximum. Until then the pass's floor (the
    # lowest of its chunks' highest versions, see `_rowversion_floor`) waits under a per-pass
    # key, committed with the chunk so a resumed pass keeps it.
    pass_key = _pass_watermark_key(slice_key)
    old_wm = seen_wm = None
    if ent.delta_strategy == "rowversion":
        old_wm = rt.state.get_watermark(entity, slice_key)
        seen_wm = rt.state.get_watermark(entity, pass_key)
    # Most loads have nothing waiting: skip the per-key pending cleanup then (1M keys ~15 s).
    if had_pending is None:
        had_pending = rt.state.pending_counts(entity).total > 0
    if complete:
        # The pass is over: also what left the source unseen (keys-only, `reconcile`).
        deletes = _with_gone_keys(rt, ent, slice_key, batch, deletes, durations, had_pending)
        if "gone_keys" in batch.tables:  # an unordered entity's, found with its copies
            deletes = _concat_arrays([deletes, batch.table("gone_keys").column(KEY_HASH)])
        # A key this chunk rejects or settles is in the source, whatever the slice's key range
        # says: copies gathered from other slices leave failed records in this one.
        deletes = spare_rejected(deletes, _concat_arrays([rejects.column("key_hash"), settled]))
    with _transactions(rt, ent.table_name) as (tconn, sconn):
        # The delta engine knows which rows are new: the target COPYs those straight in.
        counts = rt.target.write(
            ent.table_name, rows, deletes, run_id, now, tconn, insert_mask=pc.equal(ops, "i"),
            bulk=bulk, keys_distinct="settled" in batch.tables,  # the delta kept one per key
        )
        # Failed records and waiting children agree with what was just written.
        settle_chunk(
            rt.state, entity, run_id, settled=settled, rejects=rejects, deletes=deletes,
            pending=pending, had_pending=had_pending, conn=sconn, slice_key=slice_key,
        )
        if complete and "collisions_next" in batch.info:
            _record_collisions(rt, entity, slice_key, batch.info, sconn)
        if complete:
            floor = min((v for v in (seen_wm, wm) if v is not None), default=None)
            best = max((v for v in (old_wm, floor) if v is not None), default=None)
            if best is not None and best != old_wm:
                rt.state.set_watermark(entity, slice_key, best, conn=sconn)
            if seen_wm is not None:
                rt.state.delete_watermark(entity, pass_key, conn=sconn)  # the pass is over
        elif wm is not None and (seen_wm is None or wm < seen_wm):
            rt.state.set_watermark(entity, pass_key, wm, conn=sconn)
        if complete:
            rt.state.finish_slice(entity, slice_key, run_id, rows_done=fetched, conn=sconn)
        else:
            rt.state.save_cursor(
                entity,
                slice_key,
                end,
                rows_done=fetched,
                run_id=run_id,
                status="paused" if paused else "running",
                conn=sconn,
            )
    deleted = int(getattr(counts, "deleted", len(deletes)))
    reconcile = batch.info.get("keys_unordered") and ent.delta_strategy in ("hash", "full")
    reconciled = "gone_keys" in batch.tables  # (the keys read for copies served the deletes)
    if complete and reconcile and not bulk and not reconciled:  # (a first load: no deletes)
        # The pass over this slice is done: the deletes its batches could not find by range.
        deleted += reconcile_deletes(
            rt, ent, batch.info["source_types"], _source_keys(ent), run_id
        )
    stop()
    return SyncCounts(
        fetched=fetched,
        rejected=n_rejected,
        rejected_new=n_new,
        inserted=inserted,
        updated=updated,
        unchanged=int(batch.info.get("unchanged", 0)),
        deleted=deleted,
        # One waiting row per (child, missing parent): count children, not pairs.
        pending=0 if pending is None else len(pc.unique(pending.column("key_hash"))),
        superseded=int(batch.info.get("superseded", 0)),
        rowversion_backwards=int(batch.info.get("rowversion_backwards", 0)),
        paused=paused,
        complete=complete,
        durations=durations,
    )


def _record_collisions(
    rt: Runtime, entity: str, slice_key: str, info: Mapping[str, Any], conn: Any
) -> None:
    """Store the keys `_gather_copies` found held more than once (when they changed)."""
    scope: Scope = info["collision_scope"]
    found = sorted(info["collisions_next"])
    if found != sorted(known_collisions(rt.state, entity, slice_key, scope, conn)):
        save_collisions(rt.state, entity, slice_key, scope, found, conn)


def _with_gone_keys(
    rt: Runtime,
    ent: EntityConfig,
    slice_key: str,
    batch: Batch,
    deletes: pa.Array,
    durations: dict[str, float],
    had_pending: bool,
) -> pa.Array:
    """``deletes`` plus the keys gone from the source that no chunk could see: the slice's live
    rowversion keys (when this pass reconciles, `reconcile.reconcile_due`), its waiting
    children and the keys of its open failed records (closed by `settle`). One keys-only
    read of the slice serves all three, and only when one needs it."""
    cursor = rt.state.get_cursor(ent.name, slice_key)
    rowversion = ent.delta_strategy == "rowversion" and reconcile_due(
        ent, cursor.pass_no if cursor is not None else 1
    )
    failed = rt.state.open_failed_keys(ent.name, slice_key)
    if not (rowversion or had_pending or len(failed)):
        return deletes
    if not rt.target.table_exists(ent.table_name):
        return deletes
    bounds = slice_of(ensure_slice_plan(rt, ent.name), slice_key)
    if bounds.hi == ():
        return deletes  # the empty range below every key
    stop = _timed(durations, "reconcile")
    types = batch.info["source_types"]
    src_lo = None if not bounds.lo else bounds.lo
    try:
        lo, hi = _normalize_key(ent, types, src_lo), _normalize_key(ent, types, bounds.hi)
        ranged = True
    except ConfigError:
        # A bound with no cleaned form (not UTF-8): the entity takes the order-free path
        # (`syncflow_core.key_scope`), whose own pass-end reconciliation finds its deletes;
        # nothing here can be cut by a cleaned key range.
        lo = hi = None
        ranged = False
    present: list[pa.Array] = []

    if "slice_keys" in batch.tables:  # read already at the end of the read (`_gather_copies`)
        present.append(batch.table("slice_keys").column(KEY_HASH).combine_chunks())

    def source_keys() -> pa.Array:
        if not present:  # read once, if at all
            source = rt.source(ent.name)
            present.append(
                source_key_hashes(source, ent, types, _source_keys(ent), src_lo, bounds.hi)
            )
        return present[0]

    parts = [deletes]
    if rowversion and ranged:
        parts.append(gone_keys(_stored_identities(rt, ent, lo, hi), source_keys))
    if len(failed):
        # Rows rejected in this slice whose key left the source: their records close.
        parts.append(failed.filter(pc.invert(pc.is_in(failed, value_set=source_keys()))))
    if had_pending and ranged:
        schema = rt.target.arrow_schema(ent.table_name)
        keys = pa.schema([schema.field(f) for f in ent.business_key_fields])
        parts.append(gone_waiting(rt.state.due_pending(ent.name, None), keys, lo, hi, source_keys))
    stop()
    return _concat_arrays(parts).combine_chunks()


def _pass_watermark_key(slice_key: str) -> str:
    """Where a rowversion pass keeps its highest loaded version until the pass completes."""
    return f"{slice_key}/pass"


def sync_slice(
    rt: Runtime,
    entity: str,
    slice_key: str,
    run_id: str,
    should_stop: Callable[[], bool] | None = None,
    *,
    after_chunk: Callable[[SyncCounts], None] | None = None,
    ahead: ReadAhead | None = None,
) -> SyncCounts:
    """All stages for one slice, one chunk per transaction, resumable from the slice cursor.

    ``should_stop`` is checked at every chunk boundary (the night window closing); the sync then
    ends *paused* with its cursor committed. ``after_chunk`` sees each chunk's counts (progress).
    ``ahead``: the slice's first chunk, already being read (`read_ahead`); taken when it was
    started from the read plan and cursor the sync finds, dropped otherwise.

    Reads overlap the work: while the worker processes normalize and identify a chunk, a thread
    reads the target's stored identities of its key range, and while the chunk goes through
    delta and load, another reads the next chunk from the source. Both only read, on their own
    connections; every write and the cursor stay on this thread, in chunk order, so a stop or a
    crash leaves exactly what the sequential loop would (a read ahead is simply dropped).
    """
    ent = rt.entity(entity)
    table = ent.table_name
    outer = rt.target.in_bulk(table)  # inside `first_load`: it ends the bulk load
    try:
        if not outer and rt.target.table_exists(table):
            rt.target.ensure_indexes(table, ent.business_key_fields)  # a killed first load's
        bulk = outer or rt.target.begin_bulk(table)
    except BaseException:
        if ahead is not None:
            ahead.drop()
        raise
    try:
        return _stream_slice(rt, ent, slice_key, run_id, should_stop, after_chunk, bulk, ahead)
    finally:
        if bulk and not outer:
            rt.target.end_bulk(table)


@contextmanager
def first_load(rt: Runtime, entity: str) -> Iterator[None]:
    """Around a run's `sync_slice` calls: when the target table is empty at the start, all
    of them are one streamed first load (every chunk COPYed in, the indexes built once at
    the end), not only the first slice. The run must be the entity's only writer (one run
    per entity) and its slices disjoint, as `sync_slice` already requires. Without it the
    second slice of a first load finds rows (the first slice's) and inserts through the
    indexes: at 10M rows in 7 slices, slices 2-7 took 2-3x the first one's time."""
    table = rt.entity(entity).table_name
    started = rt.target.begin_bulk(table)
    try:
        yield
    finally:
        if started:
            rt.target.end_bulk(table)


def _stream_slice(
    rt: Runtime,
    ent: EntityConfig,
    slice_key: str,
    run_id: str,
    should_stop: Callable[[], bool] | None,
    after_chunk: Callable[[SyncCounts], None] | None,
    bulk: bool,
    early: ReadAhead | None = None,
) -> SyncCounts:
    """`sync_slice`'s chunk loop; ``bulk``: a streamed first load (nothing stored to read)."""
    total = SyncCounts()
    entity = ent.name
    started = time.perf_counter()
    plan, start = _read_plan(rt, entity, slice_key)
    if early is not None and not early.reads(plan, start):
        early.drop()  # another sync moved the slice on since: read from where it is now
        early = None
    first_size = ent.chunk_size
    parallel = uses_workers(ent)
    if parallel:
        start_pool()  # the workers get ready while the first chunk is read

    fed = early.fed if early is not None else _feeder(rt, ent, plan)
    # Each chunk's stored identities are read as soon as its last key is known (the read of
    # the chunk ahead calls `on_end`), so they come in while the chunk before it loads. Key
    # ranges of a pass are disjoint and each load commits only its own range, so the read
    # sees what the chunk's own delta must compare against.
    prefetch = parallel and not bulk
    had_pending = rt.state.pending_counts(entity).total > 0  # asked once, kept up to date
    with ThreadPoolExecutor(2, thread_name_prefix="syncflow-read") as readers:
        warm = readers.submit(rt.target.open_reader) if parallel else None

        def identities_at_end(begin: Any, into: list[Future[pa.Table]]) -> Callable[[Any], None]:
            def on_end(end: Any) -> None:
                # The batch's range before the batch exists (through the same key encoding).
                lo, hi = _key_range(ent, plan.source_types, encode_key(begin), encode_key(end))
                into.append(readers.submit(_stored_identities, rt, ent, lo, hi))

            return on_end

        def nothing_stored() -> Future[pa.Table]:
            done: Future[pa.Table] = Future()
            done.set_result(empty_stored())
            return done

        prefetched: list[Future[pa.Table]] = []
        try:
            if early is not None:
                batch = early.batch.result()  # (its stored identities are read in the loop)
            else:
                batch = _read(rt, plan, start, 1, None, time.perf_counter() - started, fed,
                              identities_at_end(start, prefetched) if prefetch else None,
                              first_size)
        except BaseException:
            _drop_read_ahead(None, fed)
            _cancel(prefetched)
            raise
        if warm is not None:
            warm.result()  # a failed connect is reported here, not lost on the thread
        if not parallel and batch.table("raw").num_rows >= DEFAULT_MIN_ROWS:
            start_pool()  # NULL-key rows made a small chunk big
        while True:
            ahead: Future[Batch] | None = None
            next_fed = _feeder(rt, ent, plan)
            next_prefetched: list[Future[pa.Table]] = []
            if not batch.info["complete"]:
                end = decode_key(batch.info["end"])
                ahead = readers.submit(
                    _read, rt, plan, end, 1, None, 0.0, next_fed,
                    identities_at_end(end, next_prefetched) if prefetch else None,
                )
            if bulk:
                stored = nothing_stored()
            elif prefetched:
                stored = prefetched.pop()
            else:
                lo, hi = _target_range(ent, batch)
                stored = readers.submit(_stored_identities, rt, ent, lo, hi)
            try:
                gathered = _gather_copies(rt, plan, batch)
                if "gathered_from" in gathered.info and fed is not None:
                    fed.cancel()  # its rows are not the batch's any more
                    fed = None
                batch = prepare_batch(rt, entity, gathered, fed=fed)
                scope = _chunk_scope(rt, ent, batch) if bulk else None
                if scope is not None and ("gathered_from" in batch.info or scope[2]):
                    # A streamed first load must stop taking its chunks' keys as new: copies
                    # of a key gathered from earlier chunks, or the chunk's cleaned keys out of
                    # the source's order (a key that cleaning merges with an earlier chunk's is
                    # one: `syncflow_core.collisions`). From here on, read what is stored.
                    rt.target.end_bulk(ent.table_name)
                    bulk = False
                    stored = readers.submit(_stored_identities, rt, ent, scope[0], scope[1])
                waited = time.perf_counter()
                # The incoming side of the delta while the stored side is still being read.
                index = index_incoming(batch.table("rows"), ent.rowversion_field)
                known = stored.result()
                batch.info["durations"]["delta"] = time.perf_counter() - waited
                batch = delta_batch(rt, entity, slice_key, batch, stored=known, index=index,
                                    bulk=bulk, scope=scope)
                batch = resolve_batch(rt, entity, batch)
                counts = load_batch(rt, entity, slice_key, batch, run_id, should_stop, bulk=bulk,
                                    had_pending=had_pending)
                # Only this run adds waiting children of the entity while it runs.
                had_pending = had_pending or counts.pending > 0
                total.add(counts)
                if after_chunk is not None:
                    after_chunk(counts)
            except BaseException:
                stored.cancel()
                _drop_read_ahead(ahead, next_fed)
                _cancel(next_prefetched)
                raise
            if counts.complete or counts.paused:
                _drop_read_ahead(ahead, next_fed)
                _cancel(next_prefetched)
                return total
            assert ahead is not None  # an incomplete chunk always reads ahead
            try:
                batch = ahead.result()
            except BaseException:
                _drop_read_ahead(None, next_fed)
                _cancel(next_prefetched)
                raise
            fed, prefetched = next_fed, next_prefetched


def uses_workers(ent: EntityConfig) -> bool:
    """Whether the entity's chunks go to the worker processes (`syncflow_core.parallel`):
    chunks this big do, smaller ones are prepared inline."""
    return ent.chunk_size >= DEFAULT_MIN_ROWS


def _feeder(rt: Runtime, ent: EntityConfig, plan: _ReadPlan) -> PartFeeder | None:
    """What hands a chunk's rows to the workers piece by piece while they are read: only a
    streaming source gains (others hand over a chunk whole), and only its pieces are typed
    alike (elsewhere a piece's all-NULL column may come typed otherwise)."""
    if not (uses_workers(ent) and _streams(rt.source(ent.name))):
        return None
    return PartFeeder(partial(prepare_part, entity=ent, source_types=plan.source_types))


@dataclass
class ReadAhead:
    """A slice's first chunk, being read (and fed to the worker processes) before its sync
    starts: `read_ahead` starts it, `sync_slice` takes it. It only reads the source."""

    plan: _ReadPlan
    start: Any
    fed: PartFeeder | None
    batch: Future[Batch]

    def reads(self, plan: _ReadPlan, start: Any) -> bool:
        """True when it reads what a sync planning ``plan`` from ``start`` would read first
        (the plan names the entity and the slice)."""
        return (self.plan, self.start) == (plan, start)

    def drop(self) -> None:
        """Not wanted after all: a read in progress finishes, its rows are let go."""
        _drop_read_ahead(self.batch, self.fed)


def read_ahead(rt: Runtime, entity: str, slice_key: str) -> ReadAhead:
    """Start reading the slice's first chunk from its committed cursor, on a thread of its
    own, for a `sync_slice` about to start (pass it as ``ahead``). An orchestrator calls it
    when it knows the sync comes next, so the read and the workers' first chunk overlap the
    orchestrator's own work. `sync_slice` checks the plan and cursor again and drops a read
    ahead that no longer matches; a read ahead nobody takes must be dropped (`ReadAhead.drop`).
    """
    ent = rt.entity(entity)
    plan, start = _read_plan(rt, entity, slice_key)
    if uses_workers(ent):
        start_pool()
    fed = _feeder(rt, ent, plan)
    thread = ThreadPoolExecutor(1, thread_name_prefix="syncflow-read-ahead")
    try:
        batch = thread.submit(_read, rt, plan, start, 1, None, 0.0, fed, None, ent.chunk_size)
    finally:
        thread.shutdown(wait=False)  # the thread ends with its read
    return ReadAhead(plan, start, fed, batch)


def _cancel(futures: list[Future[pa.Table]]) -> None:
    """Drop reads ahead that are no longer wanted (one already running finishes unread)."""
    for f in futures:
        f.cancel()


def _chunk_scope(
    rt: Runtime, ent: EntityConfig, batch: Batch
) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None, bool]:
    """The batch's cleaned key range ``(lo, hi]`` and whether its keys are unordered
    (`_keys_unordered`, which marks the entity the first time)."""
    lo, hi = _target_range(ent, batch)
    return lo, hi, _keys_unordered(rt, ent, batch, batch.table("rows"), lo, hi)


def _drop_read_ahead(ahead: Future[Batch] | None, fed: PartFeeder | None) -> None:
    """Let a read ahead finish (it may be feeding the workers), then drop its parts."""
    if ahead is not None:
        ahead.cancel()
        wait([ahead])
    if fed is not None:
        fed.cancel()


def resolve_pending(
    rt: Runtime,
    entity: str,
    run_id: str,
    *,
    parent_arrived: bool = False,
    now: datetime | None = None,
) -> SyncCounts:
    """Load waiting children whose parents now exist.

    ``parent_arrived=True`` (the parent sensor): look at every waiting child; those whose parents
    exist load, the others keep their attempt count. Otherwise (the backoff retry) only children
    due by ``next_retry_at`` are tried, and each one still missing a parent uses an attempt;
    after `MAX_ATTEMPTS` it becomes a failed record with reason ``parent_missing``.

    A child waits with one row per missing parent; it is tried once, as a whole (all its
    references again), and ends in exactly one place: loaded, still waiting (its rows now
    name the parents it still misses) or a failed record.
    """
    ent = rt.entity(entity)
    now = now or datetime.now(UTC)
    durations: dict[str, float] = {}
    stop = _timed(durations, "resolve")
    waiting = rt.state.due_pending(entity, None if parent_arrived else now)
    if waiting.num_rows == 0 or not rt.target.table_exists(ent.table_name):
        stop()
        return SyncCounts(durations=durations, complete=True)
    children = waiting_children(waiting)
    target_schema = rt.target.arrow_schema(ent.table_name)
    rows = with_row_ids(rows_from_json(children.column("row_json"), _row_schema(target_schema)))
    split = split_by_parents(rows, ent, _parent_exists(rt), now=now, run_id=run_id)
    loadable = split.loadable
    stored = rt.target.identities_for(ent.table_name, loadable.column(KEY_HASH))
    result = classify(
        loadable, stored, "hash", rowversion_field=ent.rowversion_field, complete_scope=False
    )
    upserts = without_row_ids(_concat([result.inserts, result.updates]))
    rejects = materialize_rejects(rows, split.rejects, entity)
    still = split.waiting
    exhausted = WAITING_SCHEMA.empty_table()
    if not parent_arrived:
        still, exhausted = retry_or_give_up(still, children, now)
    else:
        still = keep_schedule(still, children)
    if exhausted.num_rows:
        rejects = _concat([rejects, parent_missing_rejects(entity, exhausted)])
    done = pc.unique(_concat_arrays(
        [loadable.column(KEY_HASH), rejects.column("key_hash"), exhausted.column("key_hash")]
    ).drop_null())
    with _transactions(rt, ent.table_name) as (tconn, sconn):
        rt.target.write(ent.table_name, upserts, pa.array([], pa.string()), run_id, now, tconn)
        rt.state.delete_pending(entity, done, conn=sconn)
        # Children still waiting: their rows now name exactly the parents they still miss.
        rt.state.upsert_pending(still, conn=sconn)
        if not parent_arrived and still.num_rows:
            bumped = waiting.filter(pc.is_in(waiting.column("key_hash"), still.column("key_hash")))
            rt.state.bump_pending_children(entity, pc.unique(bumped.column("key_hash")),
                                           conn=sconn)
        rt.state.close_failed_records(entity, loadable.column(KEY_HASH), run_id, conn=sconn)
        if rejects.num_rows:
            rt.state.add_failed_records(rejects, run_id, conn=sconn)
    stop()
    n_still = len(pc.unique(still.column("key_hash")))
    return SyncCounts(
        resolved=upserts.num_rows + result.unchanged,
        inserted=result.inserts.num_rows,
        updated=result.updates.num_rows,
        unchanged=result.unchanged,
        rejected=rejects.num_rows - exhausted_children(exhausted),
        pending=n_still,
        parent_missing=exhausted_children(exhausted),
        complete=True,
        durations=durations,
    )


def _concat_arrays(arrays: Sequence[pa.Array | pa.ChunkedArray]) -> pa.ChunkedArray:
    chunks: list[pa.Array] = []
    for a in arrays:
        a = a.cast(pa.string())
        chunks.extend(a.chunks if isinstance(a, pa.ChunkedArray) else [a])
    return pa.chunked_array(chunks, pa.string())


def _row_schema(target_schema: pa.Schema) -> pa.Schema:
    drop = {"_bridge_batch_id", "_bridge_synced_at", "_bridge_deleted_at"}
    return pa.schema([f for f in target_schema if f.name not in drop])
