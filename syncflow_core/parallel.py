"""Run a per-row-range stage on several cores.

`map_tables` cuts a table into contiguous row ranges and runs a picklable top-level function
on each in a process pool; `prepare_parallel` uses it for normalize + identify, the CPU-heavy
part of a sync (the hash calls hold the GIL, so threads do not help: measured, two threads
hashed slower than one).

Parts: more parts than workers (about `DEFAULT_PART_ROWS` rows each), handed out as workers
free up, so both cores stay busy to the end, a worker holds only one part's intermediates at a
time, and the parent reads finished parts while the workers compute later ones.

Workers: the pool is created once per process and reused. Its workers come from a
``forkserver``, not a fork of the caller: a forked worker is counted with the caller's whole
resident set (a Dagster run process: Dagster, the code location, connections, Arrow buffers),
holds on to it (each page it touches, GC included, becomes its own copy), and inherits any
lock another thread held at the fork. A forkserver worker starts from a bare interpreter and
imports only what its parts need (~120 MB, ~0.7 s once per process, while the first chunk is
read), and the pool may start at any time, from any thread.

Transport: Row ranges and
the tables of the results travel as Arrow IPC files in shared memory (``/dev/shm``): the sender
writes them with ``write()`` (one copy, not in its resident set), the receiver memory-maps them
(zero-copy) and unlinks them at once, so nothing is pickled through the pipe but a file name and
the small rest of a result. Without a usable ``/dev/shm`` (or room in it) row ranges go as IPC
stream buffers and results are pickled (a sliced table is never pickled: pyarrow pickles a
slice with its parent's whole buffers).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import itertools
import multiprocessing
import os
import pickle
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, wait
from functools import partial
from typing import Any, TypeVar

import pyarrow as pa

from syncflow_core.batch import StageResult
from syncflow_core.config import EntityConfig
from syncflow_core.rejects import concat_reject_specs, with_row_ids

__all__ = [
    "DEFAULT_MIN_ROWS",
    "DEFAULT_PART_ROWS",
    "PartFeeder",
    "map_tables",
    "merge_results",
    "prepare_parallel",
    "prepare_part",
    "shutdown_pool",
    "split_rows",
    "start_pool",
]

R = TypeVar("R")

DEFAULT_MIN_ROWS = 50_000
"""Below this many rows a table is processed inline: starting work elsewhere costs more."""

DEFAULT_PART_ROWS = 49_152
"""Rows per part handed to a worker (a table is cut into at least one part per worker)."""

_SHM_DIR = "/dev/shm"
# Tables smaller than this travel pickled: a file costs more than copying a few KB.
_SPILL_MIN_BYTES = 1 << 20
_counter = itertools.count()
_PARENT_POLL_SECONDS = 1.0

_pool: ProcessPoolExecutor | None = None
_pool_workers = 0
_pool_pid = 0


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_workers, _pool_pid
    # A forked child must not reuse its parent's pool object; a different size gets a new one.
    if _pool is None or _pool_pid != os.getpid() or _pool_workers != workers:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.shutdown(wait=True)
        try:
            pool = _start("forkserver", workers)
        except OSError:
            # The forkserver's socket lives in the temporary directory: with none writable
            # (a read-only container without /tmp), fork the workers as before.
            pool = _start("fork", workers)
        _pool, _pool_workers, _pool_pid = pool, workers, os.getpid()
    return _pool


def _start(method: str, workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes started by ``method``, every worker starting now."""
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # The server imports nothing ahead (by default it would import the caller's main
        # module, e.g. Dagster's CLI): the workers import what their parts need.
        context.set_forkserver_preload([])
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_watch_parent, initargs=(os.getpid(),)
    )
    try:
        with _bare_main():
            # A task submitted while no worker is idle starts one, and none can be idle
            # within these microseconds.
            for _ in range(workers):
                pool.submit(_noop)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    return pool


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """While workers start, a ``__main__`` they need not import.

    A non-fork worker re-imports its parent's main module (to unpickle what it defines):
    for a Dagster run that is Dagster's CLI, seconds and ~100 MB per worker, for nothing:
    parts run functions of importable modules only.
    """
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real


def _watch_parent(parent: int) -> None:
    """Worker start-up: leave when the parent is gone.

    A parent killed with SIGKILL runs no clean-up, and its idle workers would wait on the task
    queue for ever, holding the parent's stdout/stderr open (whoever reads those, a Dagster run
    launcher or a test, waits with them). The worker's OS parent is the forkserver, which
    outlives the caller as long as a worker lives, so the worker watches the caller itself:
    gone, a zombie, or its pid reused (another start time). One /proc read a second.
    """
    born = _start_time(parent)
    if born is None:  # gone while this worker was starting up
        os._exit(1)

    def watch() -> None:
        while _start_time(parent) == born:
            time.sleep(_PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="syncflow-parent-watch", daemon=True).start()


def _start_time(pid: int) -> str | None:
    """The process's start time (None: no such process, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def _noop() -> None:
    return None


def start_pool(workers: int | None = None) -> None:
    """Start the worker processes now, without waiting for them to be ready (a no-op when
    they run already or one core is all): their start-up overlaps the caller's first read."""
    workers = workers or os.cpu_count() or 1
    if workers > 1:
        _get_pool(workers)


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
    part_rows: int = DEFAULT_PART_ROWS,
) -> list[R]:
    """``[fn(part) for part in row ranges of table]``, the parts run in worker processes.

    ``fn`` must be picklable (a top-level function or a ``functools.partial`` of one). Results
    come back in row order, one per part (at least ``workers`` parts of about ``part_rows``
    rows). With one worker or fewer than ``min_rows`` rows it runs inline, as one part.
    """
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or table.num_rows < max(min_rows, 2):
        return [fn(table)]
    n = table.num_rows
    ranges = split_rows(n, max(workers, -(-n // max(part_rows, 1))))
    # Every part's input is written before the first result is read: check room for all.
    feeder = PartFeeder(fn, workers, spill=_shm_has_room(table.nbytes))
    try:
        for off, length in ranges:
            feeder.submit(table.slice(off, length))
    except BaseException:
        feeder.cancel()
        raise
    return feeder.results()


class PartFeeder:
    """Hands rows to the worker processes while they still arrive (a streaming `map_tables`).

    ``feed`` takes the rows in order, piece by piece; every ``part_rows`` rows go to a worker at
    once, so the workers start on the first rows of a read while the rest is on its way.
    ``results`` returns ``fn``'s result per part, in row order. The pool must exist already
    when other threads run (see `start_pool`); ``fn`` must be picklable.
    """

    def __init__(
        self,
        fn: Callable[[pa.Table], Any],
        workers: int | None = None,
        part_rows: int = DEFAULT_PART_ROWS,
        *,
        spill: bool = True,
    ) -> None:
        """Feed parts of about ``part_rows`` rows to ``workers`` processes running ``fn``.

        ``spill=False``: parts and results travel through the pipe, never /dev/shm.
        """
        self._fn = fn
        self._pool = _get_pool(workers or os.cpu_count() or 1)
        self._part_rows = max(part_rows, 1)
        self._spill = spill
        self._held: list[pa.Table] = []
        self._held_rows = 0
        self._futures: list[Future[Any]] = []
        self._prefixes: list[str] = []
        self.rows = 0
        """Rows fed so far."""

    def feed(self, table: pa.Table) -> None:
        """Queue ``table``'s rows; full parts start on a worker now."""
        self.rows += table.num_rows
        self._held.append(table)
        self._held_rows += table.num_rows
        while self._held_rows >= self._part_rows:
            held = pa.concat_tables(self._held, promote_options="permissive")
            self.submit(held.slice(0, self._part_rows))
            rest = held.slice(self._part_rows)
            self._held, self._held_rows = [rest], rest.num_rows

    def submit(self, part: pa.Table) -> None:
        """Start ``part`` on a worker now, as one part (for callers that cut parts themselves;
        not mixed with `feed`, whose held rows would then come later than these)."""
        prefix = _spill_prefix(part.nbytes) if self._spill else None
        if prefix is None:
            self._futures.append(self._pool.submit(_run_on_ipc_pickled, self._fn, _to_ipc(part)))
            return
        self._prefixes.append(prefix)
        path = f"{prefix}-in.arrow"
        _write_ipc(part, path)
        self._futures.append(self._pool.submit(_run_on_file, self._fn, path, f"{prefix}-out"))

    def results(self) -> list[Any]:
        """Start the last, partial part and return every part's result in row order."""
        try:
            if self._held_rows:
                held = pa.concat_tables(self._held, promote_options="permissive")
                self._held, self._held_rows = [], 0
                self.submit(held)
            return [pickle.loads(f.result()) for f in self._futures]
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Drop what has not started, wait for what runs, remove every file left behind."""
        for f in self._futures:
            f.cancel()
        wait(self._futures)
        for prefix in self._prefixes:
            _remove_files(prefix)
        self._futures, self._prefixes = [], []


def _run_on_ipc_pickled(fn: Callable[[pa.Table], R], payload: pa.Buffer) -> bytes:
    return pickle.dumps(_run_on_ipc(fn, payload), protocol=pickle.HIGHEST_PROTOCOL)


def _shm_has_room(nbytes: int) -> bool:
    """True when shared memory is usable and has room for ``nbytes`` of tables in flight."""
    try:
        st = os.statvfs(_SHM_DIR)
    except OSError:
        return False
    # Inputs plus results (normalize + identify roughly doubles a table), with room to spare.
    return os.access(_SHM_DIR, os.W_OK) and st.f_bavail * st.f_frsize >= 4 * nbytes + (64 << 20)


def _spill_prefix(nbytes: int) -> str | None:
    """A unique file-name prefix in shared memory, or None if it is missing or too small."""
    if not _shm_has_room(nbytes):
        return None
    return os.path.join(_SHM_DIR, f"syncflow-{os.getpid()}-{next(_counter)}")


def _remove_files(prefix: str) -> None:
    # Normally the readers unlinked every file already; this catches a failed worker's.
    folder, stem = os.path.split(prefix)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(os.path.basename(stem) + "-"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))


def _to_ipc(table: pa.Table) -> pa.Buffer:
    # Pickling a sliced table ships the parent's whole buffers (measured: a 1/5 slice pickled
    # to the full table's size); the IPC writer truncates buffers to the slice.
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _run_on_ipc(fn: Callable[[pa.Table], R], payload: pa.Buffer) -> R:
    return fn(pa.ipc.open_stream(payload).read_all())


def _write_ipc(table: pa.Table, path: str) -> None:
    # Created owner-only and exclusively first: /dev/shm is shared by every user of the
    # machine (rows are business data) and a planted file or symlink must not be written.
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def _read_ipc(path: str) -> pa.Table:
    """The table in an IPC file, memory-mapped (zero-copy); the file is unlinked at once (the
    mapping keeps the data alive until the table is dropped)."""
    source = pa.memory_map(path)
    try:
        return pa.ipc.open_stream(source).read_all()
    finally:
        source.close()
        os.unlink(path)


class _SpillingPickler(pickle.Pickler):
    """Pickles a result with its big tables written to shared-memory files instead."""

    def __init__(self, file: io.BytesIO, prefix: str) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._prefix = prefix
        self._files = 0

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, pa.Table) and obj.nbytes >= _SPILL_MIN_BYTES:
            path = f"{self._prefix}-{self._files}.arrow"
            self._files += 1
            _write_ipc(obj, path)
            return _read_ipc, (path,)
        return NotImplemented


def _run_on_file(fn: Callable[[pa.Table], R], path: str, out_prefix: str) -> bytes:
    result = fn(_read_ipc(path))
    buf = io.BytesIO()
    _SpillingPickler(buf, out_prefix).dump(result)
    del result
    # The part's intermediates are garbage now; Arrow's allocator (mimalloc) would keep their
    # pages and the worker's resident set would ratchet up part after part.
    pa.default_memory_pool().release_unused()
    return buf.getvalue()


def prepare_part(
    part: pa.Table, entity: EntityConfig, source_types: Mapping[str, str] | None
) -> StageResult:
    """Normalize and identify one part (row ids already assigned); runs in a worker."""
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
    part_rows: int = DEFAULT_PART_ROWS,
) -> StageResult:
    """Normalize (five layers) and identify a raw extract on several cores.

    Row ids are assigned on the whole table first, so each reject still points at its raw row.
    The result equals ``identify(normalize(table).table)`` with the rejects of both stages.
    """
    table = with_row_ids(table)
    results = map_tables(
        partial(prepare_part, entity=entity, source_types=source_types),
        table,
        workers=workers,
        min_rows=min_rows,
        part_rows=part_rows,
    )
    return merge_results(results)


def merge_results(results: list[StageResult]) -> StageResult:
    """One `StageResult` from the per-part results of `prepare_parallel` or a `PartFeeder`."""
    if len(results) == 1:
        return results[0]
    # A part left empty (all its rows rejected) may carry a column typed otherwise.
    tables = [r.table for r in results if r.table.num_rows] or [results[0].table]
    # Parts may infer different types for a column only when one part is all-null; unify.
    merged = pa.concat_tables(tables, promote_options="permissive")
    return StageResult(merged, concat_reject_specs([r.rejects for r in results]))
