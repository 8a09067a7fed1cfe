"""Benchmark the PostgreSQL target: 1M-row initial write, 10 % updates, identity read.

Run: ``.venv/bin/python -m bench.target_write [rows]`` (starts a throw-away cluster).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.targets.sql import SqlTarget
from tests.pg import pg_cluster


def _orders(n: int, version: int) -> pa.Table:
    """Synthetic order rows with `_bridge_*` identity columns (hashes are stand-ins)."""
    ids = np.arange(n, dtype=np.int64)
    ids_s = pc.cast(pa.array(ids), pa.string())
    key_hash = pc.utf8_lpad(ids_s, 32, "0")
    data_hash = pc.utf8_lpad(pc.binary_join_element_wise(ids_s, str(version), "v"), 32, "0")
    rng = np.random.default_rng(version)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    return pa.table({
        "order_no": pa.array(ids),
        "customer": pc.binary_join_element_wise("CUST-", pc.cast(pa.array(ids % 5000),
                                                                 pa.string()), ""),
        "amount": pc.binary_join_element_wise(
            pc.cast(pa.array(rng.integers(0, 10_000_000, n)), pa.string()), "25", "."
        ).cast(pa.decimal128(12, 2)),
        "qty": pa.array(rng.random(n) * 100),
        "paid": pa.array(ids % 2 == 0),
        "created_at": pa.array(
            rng.integers(0, 10**13, n) + int(base.timestamp() * 1e6), pa.int64()
        ).cast(pa.timestamp("us", tz="UTC")),
        "_bridge_key_hash": key_hash,
        "_bridge_data_hash": data_hash,
        "_bridge_rowversion": pa.array(ids + version * 10_000_000),
        "_bridge_ref": pc.binary_join_element_wise("orders[order_no=", ids_s, "]", ""),
    })


def _report(label: str, rows: int, seconds: float) -> None:
    print(f"{label:<28} {rows:>9,} rows  {seconds:7.2f} s  {rows / seconds:>12,.0f} rows/s")


def main(n: int = 1_000_000) -> None:
    """Run the benchmark and print timings."""
    with pg_cluster() as pg:
        target = SqlTarget(pg.create_database("bench_target"))
        rows = _orders(n, 1)
        target.ensure_table("orders", rows.schema, ["order_no"])

        t = time.perf_counter()
        with target.begin() as conn:
            target.write("orders", rows, pa.array([], pa.string()), "run-1",
                         datetime.now(UTC), conn)
        _report("initial write", n, time.perf_counter() - t)

        t = time.perf_counter()
        ids = target.read_identities("orders", ["order_no"], None, None)
        _report("read_identities (all)", ids.num_rows, time.perf_counter() - t)

        changed = _orders(n, 2).filter(pc.equal(pc.modulo(pa.array(np.arange(n)), 10), 0))
        t = time.perf_counter()
        with target.begin() as conn:
            target.write("orders", changed, pa.array([], pa.string()), "run-2",
                         datetime.now(UTC), conn)
        _report("10 % updates", changed.num_rows, time.perf_counter() - t)

        # Another slice's first load into the now filled table: the delta's insert mask lets the
        # rows go straight in with COPY (no staging, no join).
        fresh = _orders(n // 10, 3)
        fresh = fresh.set_column(0, "order_no", pc.add(fresh.column("order_no"), n))
        keys = pc.cast(fresh.column("order_no"), pa.string())
        fresh = fresh.set_column(fresh.schema.get_field_index("_bridge_key_hash"),
                                 "_bridge_key_hash", pc.utf8_lpad(keys, 32, "0"))
        t = time.perf_counter()
        with target.begin() as conn:
            target.write("orders", fresh, pa.array([], pa.string()), "run-2b",
                         datetime.now(UTC), conn,
                         insert_mask=pa.array(np.ones(fresh.num_rows, bool)))
        _report("10 % inserts (hinted)", fresh.num_rows, time.perf_counter() - t)

        gone = changed.column("_bridge_key_hash").slice(0, n // 100)
        t = time.perf_counter()
        counts = target.write("orders", changed.slice(0, 0), gone, "run-3", datetime.now(UTC))
        _report("1 % soft-deletes", counts.deleted, time.perf_counter() - t)

        t = time.perf_counter()
        half = target.read_identities("orders", ["order_no"], (n // 4,), (3 * n // 4,))
        _report("read_identities (half)", half.num_rows, time.perf_counter() - t)
        assert target.row_count("orders", live_only=False) == n + n // 10
        target.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
