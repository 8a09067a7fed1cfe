"""Extract bench: 1,000,000 rows x 10 columns from PostgreSQL into Arrow, ADBC vs fetchall.

Run: ``.venv/bin/python -m bench.extract [--rows N] [--chunk N]``. Starts its own throw-away
cluster (tests.pg.pg_cluster), fills one table with generate_series, then reads the whole key
range through `SqlSource.read` both ways, best of three each.
"""

from __future__ import annotations

import argparse
import time

import sqlalchemy as sa

from syncflow_core.config import SourceRef
from syncflow_core.sources.sql import SqlSource
from tests.pg import pg_cluster

FILL = """
CREATE TABLE items (
    item_no    integer PRIMARY KEY,
    code       varchar(20) NOT NULL,
    name       varchar(60),
    price      numeric(12, 2),
    qty        integer,
    weight     double precision,
    created    date,
    updated_at timestamp,
    status     text,
    rowver     bigint
);
INSERT INTO items
SELECT i, 'IT-' || lpad(i::text, 8, '0'), 'Item number ' || i, mod(i, 10000) / 100.0,
       mod(i, 500), i * 0.001, date '2020-01-01' + mod(i, 2000),
       timestamp '2024-01-01' + i * interval '1 second',
       CASE WHEN mod(i, 7) = 0 THEN 'inactive' ELSE 'active' END, i
FROM generate_series(1, {rows}) AS i;
ANALYZE items;
"""


def _time_read(src: SqlSource, chunk: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(3):
        t0 = time.perf_counter()
        rows = sum(t.num_rows for t in src.read(SourceRef(table="items"), ["item_no"],
                                                None, None, chunk))
        best = min(best, time.perf_counter() - t0)
    return best, rows


def main() -> None:
    """Fill the table, time both read paths, print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=1_000_000)
    args = ap.parse_args()
    with pg_cluster() as cluster:
        url = cluster.create_database("bench")
        eng = sa.create_engine(url)
        with eng.begin() as conn:
            for stmt in FILL.format(rows=args.rows).split(";"):
                if stmt.strip():
                    conn.exec_driver_sql(stmt)
        eng.dispose()
        for label, use_adbc in (("ADBC -> Arrow", True), ("SQLAlchemy fetchall -> Arrow", False)):
            src = SqlSource(url, use_adbc=use_adbc)
            secs, rows = _time_read(src, args.chunk)
            src.close()
            print(f"{label:32s} {rows:>9,} rows x 10 cols, chunk {args.chunk:,}: "
                  f"{secs:6.2f} s  ({rows / secs:,.0f} rows/s)")


if __name__ == "__main__":
    main()
