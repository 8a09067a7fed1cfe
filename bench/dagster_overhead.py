"""Dagster's overhead: one 1M-row slice materialized through Dagster vs `sync_slice` directly.

    .venv/bin/python -m bench.dagster_overhead [--rows 1000000]

Same source rows (PostgreSQL), same pipeline, two empty PostgreSQL targets, one process: first
`sync_slice` called directly, then the entity's asset job materializing the same slice on a real
`DagsterInstance` (graph-backed asset, six ops, Batches through the IO manager as Arrow IPC).
Prints both wall times and Dagster's share of the Dagster wall time (target <= 20 %).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml
from dagster import instance_for_test

from bench.e2e import _config, _load_source, _source_rows
from syncflow_core.parallel import shutdown_pool
from syncflow_core.pipeline import sync_slice
from syncflow_core.runtime import Runtime
from tests.pg import pg_cluster


def main() -> None:
    """Run both paths and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    n = ap.parse_args().rows
    rows = _source_rows(n)
    with pg_cluster() as pg, tempfile.TemporaryDirectory() as tmp:
        for db in ("erp", "direct", "viadagster"):
            pg.create_database(db)
        _load_source(pg, "erp", rows)
        cfg = _config(n, n)

        env = {"BENCH_ERP_URL": pg.url("erp"), "BENCH_TARGET_URL": pg.url("direct")}
        t0 = time.perf_counter()
        with Runtime.open(cfg, env) as rt:
            direct = sync_slice(rt, "order_lines", "slice-01", "direct")
        t_direct = time.perf_counter() - t0

        # The same config as a file, served by the code location's own definitions builder.
        doc = cfg.model_dump(mode="json", by_alias=True, exclude={"source_file"})
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(doc))
        os.environ.update({"BENCH_ERP_URL": pg.url("erp"),
                           "BENCH_TARGET_URL": pg.url("viadagster"),
                           "SYNCFLOW_CONFIG": str(path),
                           "SYNCFLOW_BATCH_DIR": str(Path(tmp) / "batches")})
        from syncflow_core.config import load_config
        from syncflow_dagster.definitions import build_definitions
        from syncflow_dagster.io_manager import wait_for_writes

        defs = build_definitions(load_config(path), str(path))
        job = defs.resolve_job_def("order_lines_sync")
        with instance_for_test(temp_dir=tmp) as instance:
            t0 = time.perf_counter()
            result = job.execute_in_process(instance=instance, partition_key="slice-01")
            wait_for_writes()  # stage outputs written in the background count too
            t_dagster = time.perf_counter() - t0
            steps = [(s.step_key, (s.end_time or 0) - (s.start_time or 0))
                     for s in instance.get_run_step_stats(result.run_id)]
        assert result.success
        shutdown_pool()
    print(f"{n:,} rows, one slice, PostgreSQL -> PostgreSQL")
    print(f"sync_slice directly   {t_direct:7.2f} s  ({direct.inserted:,} inserted)")
    print(f"through Dagster       {t_dagster:7.2f} s")
    stages = {k: v for k, v in direct.durations.items()}
    print("  direct stages:  " + " ".join(f"{k}={v:.2f}" for k, v in stages.items()))
    print("  dagster steps:  " + " ".join(f"{k.split('__')[-1]}={v:.2f}" for k, v in steps))
    share = (t_dagster - t_direct) / t_dagster
    print(f"Dagster overhead      {t_dagster - t_direct:7.2f} s = {share:.1%} of the Dagster wall "
          "time (target <= 20 %)")


if __name__ == "__main__":
    main()
