"""End-to-end benchmark: 1M messy rows in PostgreSQL -> full pipeline -> PostgreSQL target.

    .venv/bin/python -m bench.e2e [--rows 1000000] [--no-dlt] [--repeat 3]

Starts a throw-away PostgreSQL cluster, loads ``--rows`` messy order lines (text numbers in two
locales, mixed date formats, padded codes, control characters, mojibake) into an ERP table,
then times `sync_slice` (extract -> 5 normalization layers -> identity -> delta -> resolve ->
load) for the initial load and for a rerun after 10 % of the source rows changed. Prints
seconds, rows/s and peak RSS for each, and the stage seconds summed over chunks (chunks
overlap: a chunk's delta and load run while the next one is read, so the sum can exceed the
wall time). The entity runs the config defaults (``chunk_size`` 50k, no tuning); peak RSS is
the whole process tree (the process and its worker processes).

When dlt is installed (``pip install -e '.[bench]'``) it runs dlt's fastest merge on the same
rows in the same run (Arrow input read through the same ADBC path, ``loader_file_format=
"parquet"``, ``write_disposition="merge"`` on the same key) and prints SyncFlow/dlt. dlt does no
normalization and no hashing here; SyncFlow does both.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from functools import partial
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bench.core import _reset_peak, generate
from bench.tree_rss import TreePeak
from syncflow_core.config import parse_config
from syncflow_core.parallel import shutdown_pool
from syncflow_core.pipeline import sync_slice
from syncflow_core.runtime import Runtime
from tests.pg import PgCluster, pg_cluster

DDL = """
CREATE TABLE order_lines (
    order_no VARCHAR(20) NOT NULL,
    line_no INTEGER NOT NULL,
    item_code TEXT,
    description TEXT,
    qty TEXT,
    unit_price TEXT,
    order_date TEXT,
    warehouse CHAR(6),
    row_version BIGINT,
    PRIMARY KEY (order_no, line_no)
)
"""

CHANGE = (
    "UPDATE order_lines SET description = description || ' (rev)' "
    "WHERE (line_no + length(order_no) + ascii(right(order_no, 1))) % 10 = 0"
)


def _source_rows(n: int) -> pa.Table:
    """Messy rows whose key columns are clean (ERP keys usually are; the rest is not)."""
    raw = generate(n)
    order_no = pc.utf8_trim_whitespace(raw.column("order_no"))
    line_no = pc.utf8_trim_whitespace(raw.column("line_no")).cast(pa.int32())
    rv = raw.column("row_version").cast(pa.int64())
    raw = raw.set_column(raw.column_names.index("order_no"), "order_no", order_no)
    raw = raw.set_column(raw.column_names.index("line_no"), "line_no", line_no)
    raw = raw.set_column(raw.column_names.index("row_version"), "row_version", rv)
    # PostgreSQL text cannot hold NUL: keep the other control characters.
    desc = pc.replace_substring(raw.column("description"), "\x00", "")
    return raw.set_column(raw.column_names.index("description"), "description", desc)


def _load_source(pg: PgCluster, db: str, rows: pa.Table) -> None:
    buf = io.BytesIO()
    pacsv.write_csv(rows, buf, pacsv.WriteOptions(include_header=False))
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname=db) as conn:
        conn.execute(DDL)
        with conn.cursor().copy(
            f"COPY order_lines ({', '.join(rows.column_names)}) FROM STDIN WITH (FORMAT csv)"
        ) as copy:
            copy.write(buf.getvalue())
        conn.execute("ANALYZE order_lines")


def _change_source(pg: PgCluster, db: str) -> int:
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname=db) as conn:
        return conn.execute(CHANGE).rowcount


def _config(chunk_size: int | None = None, slices: int | None = 1) -> Any:
    """The bench entity: ``slices`` slices (None: the default, one per night of a pass), the
    config defaults unless ``chunk_size`` is given."""
    tuning: dict[str, int] = {} if chunk_size is None else {"chunk_size": chunk_size}
    if slices is not None:
        tuning["slices"] = slices
    return parse_config(
        {
            "sources": {"erp": {"kind": "sql", "url_env": "BENCH_ERP_URL"}},
            "target": {"url_env": "BENCH_TARGET_URL"},
            "entities": {
                "order_lines": {
                    "source": {"table": "order_lines"},
                    "business_key_fields": ["order_no", "line_no"],
                    "delta_strategy": "hash",
                    **tuning,
                    "fields": {
                        "qty": {"type": "NUMBER(12,2)", "locale": "en_US"},
                        "unit_price": {"type": "NUMBER(14,4)", "locale": "de_DE"},
                        "order_date": {"type": "DATE", "day_first": True},
                    },
                }
            },
        },
        source_file="bench-e2e.yaml",
    )


def _phase(label: str, fn: Any, n: int) -> float:
    _reset_peak()
    t0 = time.perf_counter()
    with TreePeak() as peak:
        result = fn()
    secs = time.perf_counter() - t0
    print(
        f"{label:<28} {secs:7.2f} s  {n / secs:>10,.0f} rows/s  peak RSS (tree) "
        f"{peak.mb:,.0f} MB, PSS {peak.pss_mb:,.0f} MB" + (f"  {result}" if result else "")
    )
    return secs


def _syncflow(env: dict[str, str], chunk_size: int | None, run: str) -> str:
    cfg = _config(chunk_size)
    with Runtime.open(cfg, env) as rt:
        c = sync_slice(rt, "order_lines", "slice-01", run)
    stages = " ".join(f"{k}={v:.2f}" for k, v in c.durations.items())
    return (
        f"[ins {c.inserted:,} upd {c.updated:,} unch {c.unchanged:,} del {c.deleted:,} "
        f"rej {c.rejected:,}] {stages}"
    )


def _dlt_run(pg: PgCluster, erp_url: str, n: int, name: str, db: str = "dlt") -> str:
    import dlt

    from syncflow_core.config import SourceRef
    from syncflow_core.sources.sql import SqlSource

    @dlt.resource(name="order_lines", primary_key=("order_no", "line_no"),
                  write_disposition="merge")
    def rows() -> Any:
        src = SqlSource(erp_url)
        try:
            yield from src.read(SourceRef(table="order_lines"), ["order_no", "line_no"],
                                None, None, max(n, 1))
        finally:
            src.close()

    # dlt insists on a password; the throw-away cluster trusts loopback, so any will do.
    creds = pg.url(db, driver="postgresql").replace("postgres@", "postgres:bench@")
    pipeline = dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.postgres(credentials=creds),
        dataset_name="bench",
        pipelines_dir=f"/tmp/syncflow-bench-dlt-{pg.port}",
    )
    info = pipeline.run(rows(), loader_file_format="parquet")
    return f"[{len(info.load_packages)} package(s)]"


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="rows per chunk (default: the config default; for experiments only)")
    ap.add_argument("--no-dlt", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="repetitions, each into empty targets; ratios are per repetition, "
                         "summarised by their median and range")
    args = ap.parse_args()
    n = args.rows
    chunk = args.chunk_size
    try:
        import dlt  # noqa: F401

        have_dlt = not args.no_dlt
    except ImportError:
        have_dlt = False
    rows = _source_rows(n)
    with pg_cluster() as pg:
        pg.create_database("erp")
        _load_source(pg, "erp", rows)
        if have_dlt:
            pg.create_database("erp2")  # dlt's own copy of the unchanged source
            _load_source(pg, "erp2", rows)
        del rows  # the generated rows are not part of either tool's memory
        print(f"{n:,} rows, PostgreSQL -> PostgreSQL, {os.cpu_count()} cores, "
              f"chunks of {_config(chunk).entity('order_lines').chunk_size:,} rows")
        times: dict[str, list[float]] = {}
        for rep in range(args.repeat):
            # Each repetition loads into empty targets; the sources keep the changes of the
            # ones before (each rerun sees 10 % changed since its own initial load).
            pg.create_database(f"target_{rep}")
            env = {"BENCH_ERP_URL": pg.url("erp"), "BENCH_TARGET_URL": pg.url(f"target_{rep}")}
            times.setdefault("sf_init", []).append(
                _phase("syncflow initial", partial(_syncflow, env, chunk, "initial"), n))
            changed = _change_source(pg, "erp")
            print(f"source: {changed:,} rows changed ({changed / n:.1%})")
            times.setdefault("sf_rerun", []).append(
                _phase("syncflow rerun", partial(_syncflow, env, chunk, "rerun"), n))
            if not have_dlt:
                continue
            pg.create_database(f"dlt_{rep}")
            dlt_run = partial(_dlt_run, pg, pg.url("erp2"), n, f"bench_e2e_{rep}", f"dlt_{rep}")
            times.setdefault("dlt_init", []).append(
                _phase("dlt initial (merge, parquet)", dlt_run, n))
            _change_source(pg, "erp2")
            times.setdefault("dlt_rerun", []).append(
                _phase("dlt rerun (merge, parquet)", dlt_run, n))
        shutdown_pool()
        if not have_dlt:
            if not args.no_dlt:
                print("dlt not installed: pip install -e '.[bench]' for the comparison")
            return
        pairs = (("initial", "sf_init", "dlt_init"), ("rerun", "sf_rerun", "dlt_rerun"))
        for label, sf, dl in pairs:
            ratios = [a / b for a, b in zip(times[sf], times[dl], strict=True)]
            target = "1.0" if label == "initial" else "0.5"
            print(f"ratio SyncFlow/dlt {label}: {spread(ratios)} (target <= {target}); "
                  f"SyncFlow {spread(times[sf], 's')}, dlt {spread(times[dl], 's')}")


def spread(values: list[float], unit: str = "", digits: int = 2) -> str:
    """Median, and the range when there is more than one value."""
    mid = statistics.median(values)
    text = f"{mid:,.{digits}f}{(' ' + unit) if unit else ''}"
    if len(values) > 1:
        text += f" (median; {min(values):,.{digits}f}-{max(values):,.{digits}f})"
    return text


if __name__ == "__main__":
    main()
