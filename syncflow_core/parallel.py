"""Run a per-row-range stage on several cores.

`map_tables` cuts a table into contiguous row ranges and runs a picklable top-level function
on each in a process pool; `prepare_parallel` uses it for normalize + identify, the CPU-heavy
part of a sync (the hash calls hold the GIL, so threads do not help: measured, two threads
hashed slower than one).

Transport: the pool (``fork`` context) is created once per process and reused. Row ranges go
to the workers as Arrow IPC stream buffers (not pickled slices: pyarrow pickles a slice with its
parent's whole buffers, so a 1/5 slice costs as much as the table); the worker reads them
zero-copy. Results come back pickled (fresh tables pickle as their own buffers).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import TypeVar

import pyarrow as pa

from syncflow_core.batch import StageResult
from syncflow_core.config import EntityConfig
from syncflow_core.rejects import concat_reject_specs, with_row_ids

__all__ = ["DEFAULT_MIN_ROWS", "map_tables", "prepare_parallel", "shutdown_pool", "split_rows"]

R = TypeVar("R")

DEFAULT_MIN_ROWS = 50_000
"""Below this many rows a table is processed inline: starting work elsewhere costs more."""

_pool: ProcessPoolExecutor | None = None
_pool_workers = 0
_pool_pid = 0


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_workers, _pool_pid
    # A forked child must not reuse its parent's pool object; a different size gets a new one.
    if _pool is None or _pool_pid != os.getpid() or _pool_workers != workers:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.shutdown(wait=True)
        _pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        _pool_workers, _pool_pid = workers, os.getpid()
    return _pool


def shutdown_pool() -> None:
    """Stop the worker processes (they are started again on the next parallel call)."""
    global _pool
    if _pool is not None and _pool_pid == os.getpid():
        _pool.shutdown(wait=True)
    _pool = None


atexit.register(shutdown_pool)


def split_rows(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (offset, length) ranges covering ``0..n`` (empty ones dropped)."""
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        length = base + (1 if i < extra else 0)
        if length:
            out.append((start, length))
        start += length
    return out


def map_tables(
    fn: Callable[[pa.Table], R],
    table: pa.Table,
    workers: int | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> list[R]:
    """``[fn(part) for part in row ranges of table]``, the parts run in worker processes.

    ``fn`` must be picklable (a top-level function or a ``functools.partial`` of one). Results
    come back in row order. With one worker or fewer than ``min_rows`` rows it runs inline.
    """
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or table.num_rows < max(min_rows, 2):
        return [fn(table)]
    parts = [
        _to_ipc(table.slice(off, length)) for off, length in split_rows(table.num_rows, workers)
    ]
    return list(_get_pool(workers).map(partial(_run_on_ipc, fn), parts))


def _to_ipc(table: pa.Table) -> pa.Buffer:
    # Pickling a sliced table ships the parent's whole buffers (measured: a 1/5 slice pickled
    # to the full table's size); the IPC writer truncates buffers to the slice.
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _run_on_ipc(fn: Callable[[pa.Table], R], payload: pa.Buffer) -> R:
    return fn(pa.ipc.open_stream(payload).read_all())


def _prepare_part(
    part: pa.Table, entity: EntityConfig, source_types: Mapping[str, str] | None
) -> StageResult:
    from syncflow_core.identity import identify
    from syncflow_core.normalize import normalize

    norm = normalize(part, entity, source_types)
    ident = identify(norm.table, entity)
    return StageResult(ident.table, concat_reject_specs([norm.rejects, ident.rejects]))


def prepare_parallel(
    table: pa.Table,
    entity: EntityConfig,
    source_types: Mapping[str, str] | None = None,
    workers: int | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> StageResult:
    """Normalize (five layers) and identify a raw extract on several cores.

    Row ids are assigned on the whole table first, so each reject still points at its raw row.
    The result equals ``identify(normalize(table).table)`` with the rejects of both stages.
    """
    table = with_row_ids(table)
    results = map_tables(
        partial(_prepare_part, entity=entity, source_types=source_types),
        table,
        workers=workers,
        min_rows=min_rows,
    )
    if len(results) == 1:
        return results[0]
    tables = [r.table for r in results]
    # Parts may infer different types for a column only when one part is all-null; unify.
    merged = pa.concat_tables(tables, promote_options="permissive")
    return StageResult(merged, concat_reject_specs([r.rejects for r in results]))
