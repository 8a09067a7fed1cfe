"""Persist `Batch`es between ops as Arrow IPC files, so a failed run re-executes from its step.

Layout under the base directory, one folder per run / step / output::

    <base>/<run_id>/<step_key>/<output>/[<slice>/]<table>.arrow + info.json

Tables are written as Arrow IPC files (lz4 or zstd buffer compression, or none). Local files
are read through a memory map: uncompressed files are then zero-copy, compressed ones are
decompressed straight from the mapped pages without an extra read buffer. The base directory is a
universal-pathlib path, so ``s3://...`` works for deployments whose re-executed steps run in
another pod.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import pyarrow as pa
from dagster import ConfigurableIOManager, InputContext, OutputContext
from pydantic import Field
from upath import UPath

from syncflow_core.batch import Batch

__all__ = [
    "BatchIOManager",
    "read_batch",
    "read_slices",
    "wait_for_writes",
    "write_batch",
    "write_slices",
]

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
_MANIFEST = "syncflow_batches.json"
Compression = Literal["lz4", "zstd", "none"]


def _safe(name: str, what: str) -> str:
    # Names become path components: refuse anything that could escape the folder.
    if not _SAFE.match(name) or name in (".", ".."):
        raise ValueError(f"{what} {name!r} cannot be used as a file name")
    return name


def _is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def write_batch(batch: Batch, folder: UPath, compression: Compression = "lz4") -> None:
    """Write one batch: each table as ``<name>.arrow``, ``info`` as ``info.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    options = pa.ipc.IpcWriteOptions(compression=None if compression == "none" else compression)
    for name, table in batch.tables.items():
        path = folder / f"{_safe(name, 'table name')}.arrow"
        if _is_local(path):
            sink: Any = pa.OSFile(str(path), "wb")
        else:
            sink = path.open("wb")
        with sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
            writer.write_table(table)
    doc = {"tables": list(batch.tables), "info": dict(batch.info)}
    (folder / "info.json").write_text(json.dumps(doc, default=str), encoding="utf-8")


def read_batch(folder: UPath) -> Batch:
    """Read a batch written by `write_batch` (memory-mapped when the folder is local)."""
    doc = json.loads((folder / "info.json").read_text(encoding="utf-8"))
    tables: dict[str, pa.Table] = {}
    for name in doc["tables"]:
        path = folder / f"{_safe(name, 'table name')}.arrow"
        if _is_local(path):
            source: Any = pa.memory_map(str(path), "r")
        else:
            source = pa.BufferReader(path.read_bytes())
        with source:
            tables[name] = pa.ipc.open_file(source).read_all()
    return Batch(tables, doc["info"])


def write_slices(
    batches: Mapping[str, Batch], folder: UPath, compression: Compression = "lz4"
) -> None:
    """Write one batch per slice key (the output of an op that covers several partitions)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, batch in batches.items():
        write_batch(batch, folder / _safe(key, "slice key"), compression)
    (folder / _MANIFEST).write_text(json.dumps(list(batches)), encoding="utf-8")


def read_slices(folder: UPath) -> dict[str, Batch]:
    """Read what `write_slices` wrote, in the original slice order."""
    keys = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    return {key: read_batch(folder / _safe(key, "slice key")) for key in keys}


class BatchIOManager(ConfigurableIOManager):
    """Stores op outputs that are a `Batch` or a ``{slice_key: Batch}`` mapping.

    Keyed by run id / step key / output name, so re-execution from failure reads the parent
    run's outputs and two runs never share files.
    """

    base_dir: str | None = Field(
        default=None,
        description="Folder or URL (s3://, gs://, ...) for stage outputs; default "
        "<DAGSTER_HOME>/storage/syncflow_batches.",
    )
    compression: Compression = Field(
        default="lz4", description="Arrow IPC buffer compression: lz4 (fast), zstd, none."
    )

    def _base(self, instance_dir: str) -> UPath:
        return UPath(self.base_dir) if self.base_dir else UPath(instance_dir) / "syncflow_batches"

    def _folder(self, base: UPath, identifier: Sequence[str]) -> UPath:
        folder = base
        for part in identifier:
            folder = folder / _safe(part.replace("[", "_").replace("]", "_"), "step part")
        return folder

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        """Write ``obj`` under run/step/output.

        The write runs on a background thread (Arrow's IPC writer releases the GIL) while the
        next op already works on the same object, handed over in memory: the runs execute in
        process, so the downstream op of this chain is in this process. The file is what a
        re-execution from failure reads; `load_input` waits for it when it must read it.
        """
        base = self._base(context.step_context.instance.storage_directory())
        folder = self._folder(base, context.get_identifier())
        if isinstance(obj, Batch):
            write = functools.partial(write_batch, obj, folder, self.compression)
        elif isinstance(obj, Mapping) and all(isinstance(b, Batch) for b in obj.values()):
            write = functools.partial(write_slices, obj, folder, self.compression)
        else:
            raise TypeError(
                f"BatchIOManager stores Batch or {{slice: Batch}} outputs, got {type(obj).__name__}"
            )
        _handoff.put(str(folder), obj, _writer.submit(write))
        rows = sum(
            t.num_rows
            for b in ([obj] if isinstance(obj, Batch) else obj.values())
            for t in b.tables.values()
        )
        context.add_output_metadata({"path": str(folder), "rows (all tables)": rows})

    def load_input(self, context: InputContext) -> Batch | dict[str, Batch]:
        """Read the upstream output (from the parent run when re-executing)."""
        base = self._base(context.instance.storage_directory())
        upstream = context.upstream_output
        if upstream is None:
            raise TypeError(f"input {context.name!r} has no upstream output to load")
        folder = self._folder(base, upstream.get_identifier())
        held: Batch | dict[str, Batch] | None = _handoff.take(str(folder))
        if held is not None:
            return held
        _handoff.wait_written(str(folder))
        if (folder / _MANIFEST).exists():
            return read_slices(folder)
        return read_batch(folder)


class _Handoff:
    """Outputs written this process, kept until their consumer takes them (once).

    Every output of the stage chain has exactly one consumer, so taking removes it and memory
    holds at most the outputs between two ops. A write that failed surfaces in the consumer.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[Any, Future[None]]] = {}
        self._writes: dict[str, Future[None]] = {}

    def put(self, key: str, obj: Any, written: Future[None]) -> None:
        with self._lock:
            self._held[key] = (obj, written)
            self._writes[key] = written

    def take(self, key: str) -> Any:
        with self._lock:
            item = self._held.pop(key, None)
        if item is None:
            return None
        obj, written = item
        if written.done():
            written.result()  # a failed write fails the consumer loudly
            with self._lock:
                self._writes.pop(key, None)
        return obj

    def wait_written(self, key: str) -> None:
        with self._lock:
            written = self._writes.pop(key, None)
        if written is not None:
            written.result()


def wait_for_writes() -> None:
    """Block until every output handed to the background writer is on disk."""
    _writer.submit(lambda: None).result()


_handoff = _Handoff()
# One writer thread: outputs are written in order, and the process waits for pending writes
# at exit (non-daemon), so a finished run leaves every output on disk for re-execution.
def _lower_priority() -> None:
    # Linux gives each thread its own nice value: the writer yields the CPU to the op that is
    # working, and catches up in its idle moments (waiting on the database).
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


_writer = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="syncflow-batch-writer", initializer=_lower_priority
)
