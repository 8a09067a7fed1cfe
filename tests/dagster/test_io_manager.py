"""BatchIOManager: Batches survive the trip between ops, fast, and re-execution reads them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import In, Out, instance_for_test, job, op
from upath import UPath

from syncflow_core.batch import Batch
from syncflow_dagster.io_manager import (
    BatchIOManager,
    read_slices,
    wait_for_writes,
    write_slices,
)

pytestmark = pytest.mark.dagster


def _big_batch(n: int) -> Batch:
    rows = pa.table({
        "order_no": pa.array([f"SO-{i:08d}" for i in range(n)]),
        "qty": pa.array(range(n), pa.int64()),
        "price": pa.array([i * 0.25 for i in range(n)], pa.float64()),
        "_bridge_key_hash": pa.array([f"{i:032x}" for i in range(n)]),
    })
    rejects = pa.table({"stage": pa.array(["strings"]), "message": pa.array(["bad ü value"])})
    return Batch({"rows": rows, "rejects": rejects},
                 {"fetched": n, "complete": True, "durations": {"extract": 0.5}})


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_slices_round_trip_exactly(tmp_path: Path, compression: Any) -> None:
    batches = {"slice-01": _big_batch(1000), "slice-02": _big_batch(0)}
    write_slices(batches, UPath(tmp_path) / "out", compression)
    back = read_slices(UPath(tmp_path) / "out")
    assert list(back) == ["slice-01", "slice-02"]
    for key, batch in batches.items():
        assert back[key].info == batch.info
        assert set(back[key].tables) == set(batch.tables)
        for name, table in batch.tables.items():
            assert back[key].table(name).equals(table)


@pytest.mark.slow
def test_million_rows_write_and_mmap_read_are_fast(tmp_path: Path) -> None:
    batch = _big_batch(1_000_000)
    timings = {}
    for compression in ("lz4", "none"):
        folder = UPath(tmp_path) / compression
        t0 = time.perf_counter()
        write_slices({"slice-01": batch}, folder, compression)
        t1 = time.perf_counter()
        back = read_slices(folder)
        t2 = time.perf_counter()
        assert back["slice-01"].table("rows").equals(batch.table("rows"))
        timings[compression] = (t1 - t0, t2 - t1)
        size = sum(f.stat().st_size for f in Path(tmp_path, compression).rglob("*.arrow"))
        print(f"1M rows {compression}: write {t1 - t0:.3f}s read {t2 - t1:.3f}s, "
              f"{size / 1e6:.1f} MB")
    # Generous bounds: the point is "well inside the 10 s budget of a 1M-row sync".
    for write_s, read_s in timings.values():
        assert write_s < 3.0
        assert read_s < 2.0


def test_rejects_names_that_would_escape_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be used as a file name"):
        write_slices({"../evil": _big_batch(1)}, UPath(tmp_path))


@op(out=Out(io_manager_key="batches"))
def produce() -> dict[str, Batch]:
    return {"slice-01": _big_batch(500)}


@op(ins={"batches": In()}, out=Out(io_manager_key="batches"))
def consume(batches: dict[str, Batch]) -> dict[str, Batch]:
    assert batches["slice-01"].table("rows").num_rows == 500
    return {k: b.with_(seen=True) for k, b in batches.items()}


def test_io_manager_carries_batches_between_ops_of_a_real_run(tmp_path: Path) -> None:
    @job(resource_defs={"batches": BatchIOManager(base_dir=str(tmp_path / "store"))})
    def pipe() -> None:
        consume(produce())

    with instance_for_test() as instance:
        result = pipe.execute_in_process(instance=instance)
        assert result.success
        wait_for_writes()  # outputs are written in the background
        run_dir = tmp_path / "store" / result.run_id
        # One folder per step output, keyed by run id / step / output.
        assert (run_dir / "produce" / "result" / "slice-01" / "rows.arrow").exists()
        assert (run_dir / "consume" / "result" / "slice-01" / "info.json").exists()
        back = read_slices(UPath(run_dir / "consume" / "result"))
        assert back["slice-01"].info["seen"] is True


def test_io_manager_defaults_under_the_instance_storage(tmp_path: Path) -> None:
    @job(resource_defs={"batches": BatchIOManager()})
    def pipe() -> None:
        consume(produce())

    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = pipe.execute_in_process(instance=instance)
        assert result.success
        wait_for_writes()
        base = Path(instance.storage_directory()) / "syncflow_batches" / result.run_id
        assert (base / "produce" / "result" / "slice-01" / "rows.arrow").exists()


_handed: list[int] = []


@op(out=Out(io_manager_key="batches"))
def produce_tracked() -> dict[str, Batch]:
    out = {"slice-01": _big_batch(200_000)}
    _handed.append(id(out["slice-01"].table("rows")))
    return out


@op(ins={"batches": In()}, out=Out(io_manager_key="batches"))
def consume_tracked(batches: dict[str, Batch]) -> dict[str, Batch]:
    _handed.append(id(batches["slice-01"].table("rows")))
    return batches


def test_next_op_gets_the_output_in_memory_while_it_is_written(tmp_path: Path) -> None:
    @job(resource_defs={"batches": BatchIOManager(base_dir=str(tmp_path / "store"))})
    def pipe() -> None:
        consume_tracked(produce_tracked())

    _handed.clear()
    with instance_for_test() as instance:
        result = pipe.execute_in_process(instance=instance)
    assert result.success
    # The consumer works on the very table the producer returned: no read back from disk ...
    assert _handed[0] == _handed[1]
    # ... and the file a re-execution would read is complete once the writer is done.
    wait_for_writes()
    back = read_slices(UPath(tmp_path / "store" / result.run_id / "produce_tracked" / "result"))
    assert back["slice-01"].table("rows").num_rows == 200_000
