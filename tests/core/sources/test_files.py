"""FileSource over real CSV and Parquet files."""

from __future__ import annotations

import itertools
import os
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncflow_core.config import SourceRef
from syncflow_core.errors import SourceError
from syncflow_core.slices import plan_slices
from syncflow_core.sources.files import FileSource

CSV = SourceRef(path="orders.csv")
PQ = SourceRef(path="orders.parquet")


def test_csv_is_all_text_and_keeps_empty_strings(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(
        "\ufefforder_no;amount;note\nSO-2;12,50;\nSO-1;007;\"x;y\"\n", encoding="utf-8")
    src = FileSource(str(tmp_path), csv_delimiter=";")
    assert src.columns(CSV) == {"order_no": "TEXT", "amount": "TEXT", "note": "TEXT"}
    (chunk,) = list(src.read(CSV, ["order_no"], None, None, 10))
    assert chunk.schema.types == [pa.string()] * 3
    assert chunk.to_pylist() == [{"order_no": "SO-1", "amount": "007", "note": "x;y"},
                                 {"order_no": "SO-2", "amount": "12,50", "note": ""}]


@pytest.mark.parametrize("bad", ["../orders.csv", "/etc/passwd", "a/../../orders.csv",
                                 "C:\\orders.csv", "..\\orders.csv"])
def test_paths_escaping_the_directory_are_refused(tmp_path: Path, bad: str) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "orders.csv").write_text("a\n1\n")
    with pytest.raises(SourceError, match="relative to the source directory"):
        FileSource(str(inner)).columns(SourceRef(path=bad))


def test_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "secret.csv").write_text("a\n1\n")
    os.symlink(tmp_path / "secret.csv", inner / "orders.csv")
    with pytest.raises(SourceError, match="leaves the source directory"):
        FileSource(str(inner)).columns(CSV)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"'orders\.csv' not found"):
        FileSource(str(tmp_path)).columns(CSV)


def test_parquet_types_watermark_and_null_keys(tmp_path: Path) -> None:
    table = pa.table({
        "id": pa.array([3, 1, None, 2], pa.int64()),
        "price": pa.array([Decimal("1.50"), Decimal("2.00"), None, Decimal("3.25")],
                          pa.decimal128(12, 2)),
        "rv": pa.array([5, 9, 1, 7], pa.int64()),
    })
    pq.write_table(table, tmp_path / "orders.parquet")
    src = FileSource(str(tmp_path))
    assert src.columns(PQ) == {"id": "int64", "price": "decimal128(12, 2)", "rv": "int64"}
    rows = [r for c in src.read(PQ, ["id"], None, None, 2) for r in c.to_pylist()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    newer = [r["id"] for c in src.read(PQ, ["id"], None, None, 9, watermark_field="rv",
                                       watermark=6) for r in c.to_pylist()]
    assert newer == [1, 2]
    assert [r["rv"] for c in src.read_null_keys(PQ, ["id"], 9) for r in c.to_pylist()] == [1]


def test_csv_watermark_compares_numbers_not_text(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("id,rv\na,9\nb,10\nc,100\n")
    src = FileSource(str(tmp_path))
    got = [r["id"] for c in src.read(CSV, ["id"], None, None, 9, watermark_field="rv",
                                     watermark=9) for r in c.to_pylist()]
    assert got == ["b", "c"]


def test_file_changes_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("id\na\n")
    src = FileSource(str(tmp_path))
    assert sum(c.num_rows for c in src.read(CSV, ["id"], None, None, 9)) == 1
    path.write_text("id\na\nb\nzz\n")
    assert sum(c.num_rows for c in src.read(CSV, ["id"], None, None, 9)) == 3


@settings(max_examples=40, deadline=None)
@given(keys=st.sets(st.tuples(st.sampled_from(["EU", "US", "É"]), st.integers(0, 99)),
                    max_size=60),
       chunk=st.integers(1, 25), n=st.integers(1, 8))
def test_parquet_composite_slices_partition_the_file(
    keys: set[tuple[str, int]], chunk: int, n: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        rows = sorted(keys, key=lambda k: (k[1], k[0]))  # stored out of key order
        pq.write_table(pa.table({"region": pa.array([r[0] for r in rows], pa.string()),
                                 "no": pa.array([r[1] for r in rows], pa.int64())}),
                       Path(d) / "orders.parquet")
        src = FileSource(d)
        seen: list[tuple[Any, ...]] = []
        for s in plan_slices(src, PQ, ["region", "no"], n):
            for c in src.read(PQ, ["region", "no"], s.lo, s.hi, chunk):
                assert c.num_rows <= chunk
                got = list(zip(c.column("region").to_pylist(), c.column("no").to_pylist(),
                               strict=True))
                assert all(s.contains(k) for k in got)
                seen.extend(got)
    assert seen == sorted(keys)


def test_csv_duplicate_keys_are_never_split_over_two_chunks(tmp_path: Path) -> None:
    # A chunk that ended inside a run of equal keys would make the next read, which starts
    # after the chunk's last key, skip the rest of the run.
    rows = ["a", "b", "b", "b", "c", "d", "d"]
    body = "order_no;n\n" + "".join(f"{k};{i}\n" for i, k in enumerate(rows))
    (tmp_path / "orders.csv").write_text(body, encoding="utf-8")
    src = FileSource(str(tmp_path), csv_delimiter=";")
    for size in (1, 2, 3):
        chunks = [c.column("order_no").to_pylist() for c in
                  src.read(CSV, ["order_no"], None, None, size)]
        assert sorted(k for c in chunks for k in c) == rows
        for before, after in itertools.pairwise(chunks):
            assert before[-1] < after[0]
