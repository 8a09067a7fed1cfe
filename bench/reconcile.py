"""Cost of the keys-only delete reconciliation of a ``rowversion`` entity at 1M keys.

PostgreSQL source and target (a throw-away cluster). 1M rows are loaded once; then 1,000 rows
are deleted in the source, and a second pass (nothing above the watermark, so the
reconciliation is all it does) must soft-delete exactly them. Prints the pass's wall time and
the parts of the reconciliation: the keys-only source read + key hashing, the target's
identities of the slice, and the join. Each line gives wall seconds and this process's CPU
seconds (the database servers' work is in the wall time only): on a shared machine the CPU
figure is the steadier one.

Run: ``.venv/bin/python -m bench.reconcile [rows]``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import psycopg

from syncflow_core.config import parse_config
from syncflow_core.pipeline import sync_slice
from syncflow_core.reconcile import gone_keys, source_key_hashes
from syncflow_core.runtime import Runtime
from tests.pg import pg_cluster

DELETED = 1_000


class _Clock:
    """Wall and CPU seconds since the last lap."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> str:
        wall, cpu = time.perf_counter(), time.process_time()
        text = f"{wall - self.wall:7.2f} s wall {cpu - self.cpu:6.2f} s cpu"
        self.wall, self.cpu = wall, cpu
        return text


def _config(n: int) -> Any:
    return parse_config(
        {
            "sources": {"erp": {"kind": "sql", "url_env": "BENCH_ERP_URL"}},
            "target": {"url_env": "BENCH_TARGET_URL"},
            "entities": {
                "items": {
                    "source": {"table": "items"},
                    "business_key_fields": ["item_no"],
                    "delta_strategy": "rowversion",
                    "rowversion_field": "rowver",
                    "slices": 1,
                    "fields": {"price": {"type": "NUMBER(12,2)"}},
                }
            },
        },
        source_file="bench-reconcile.yaml",
    )


def main(n: int = 1_000_000) -> None:
    """Load ``n`` rows, delete some in the source, time the reconciling pass."""
    with pg_cluster() as pg:
        src, tgt = pg.create_database("bench_erp"), pg.create_database("bench_target")
        with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname="bench_erp") as c:
            c.execute(
                "CREATE TABLE items AS SELECT i AS item_no, 'Item ' || i AS name, "
                "(i %% 1000)::text || '.50' AS price, i AS rowver "
                "FROM generate_series(1, %s) AS i",
                (n,),
            )
            c.execute("ALTER TABLE items ADD PRIMARY KEY (item_no)")
            c.execute("ANALYZE items")
        env = {"BENCH_ERP_URL": src, "BENCH_TARGET_URL": tgt}
        cfg = _config(n)
        with Runtime.open(cfg, env) as rt:
            t = time.perf_counter()
            first = sync_slice(rt, "items", "slice-01", "run-1")
            print(f"initial load        {n:>9,} rows  {time.perf_counter() - t:7.2f} s "
                  f"(inserted {first.inserted:,})")
        with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname="bench_erp") as c:
            step = n // DELETED
            c.execute("DELETE FROM items WHERE item_no %% %s = 0", (step,))
        with Runtime.open(cfg, env) as rt:
            ent = rt.entity("items")
            types = rt.source("items").columns(ent.source)
            clock = _Clock()
            keys = source_key_hashes(rt.source("items"), ent, types, ["item_no"], None, None)
            print(f"source keys + hash  {len(keys):>9,} keys  {clock.lap()}")
            stored = rt.target.read_identities("items", ["item_no"], None, None)
            print(f"target identities   {stored.num_rows:>9,} rows  {clock.lap()}")
            gone = gone_keys(stored, lambda: keys)
            print(f"join                {len(gone):>9,} gone  {clock.lap()}")
            second = sync_slice(rt, "items", "slice-01", "run-2")
            print(f"reconciling pass    {n:>9,} keys  {clock.lap()} "
                  f"(fetched {second.fetched:,}, deleted {second.deleted:,}; "
                  f"reconcile stage {second.durations.get('reconcile', 0.0):.2f} s wall)")
            assert second.deleted == len(gone) == n // step


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
