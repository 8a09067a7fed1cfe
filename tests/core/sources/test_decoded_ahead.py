"""Record batches decoded on a thread while the consumer works: order, errors, early stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from syncflow_core.sources.sql import _decoded_ahead

SCHEMA = pa.schema([("n", pa.int64())])


def _batches(count: int, fail_at: int | None = None) -> Iterator[pa.RecordBatch]:
    for i in range(count):
        if i == fail_at:
            raise OSError("connection lost mid-stream")
        yield pa.record_batch([pa.array([i] * 3, pa.int64())], schema=SCHEMA)


def _threads() -> int:
    return sum(t.name == "syncflow-decode" for t in threading.enumerate())


def test_every_batch_arrives_in_order() -> None:
    reader = pa.RecordBatchReader.from_batches(SCHEMA, _batches(50))
    got = [rb.column(0)[0].as_py() for rb in _decoded_ahead(reader)]
    assert got == list(range(50))
    assert _threads() == 0


def test_a_decode_error_reaches_the_consumer_after_the_batches_before_it() -> None:
    reader = pa.RecordBatchReader.from_batches(SCHEMA, _batches(10, fail_at=4))
    seen = []
    with pytest.raises(OSError, match="mid-stream"):
        for rb in _decoded_ahead(reader):
            seen.append(rb.column(0)[0].as_py())
    assert seen == [0, 1, 2, 3]
    assert _threads() == 0


def test_a_consumer_that_stops_early_leaves_no_thread_behind() -> None:
    # More batches than the queue holds: the decoder is blocked on a full queue when the
    # consumer gives up, and must still end.
    reader = pa.RecordBatchReader.from_batches(SCHEMA, _batches(100))
    with pytest.raises(RuntimeError, match="consumer failed"):
        for rb in _decoded_ahead(reader):
            if rb.column(0)[0].as_py() == 2:
                raise RuntimeError("consumer failed")
    assert _threads() == 0
