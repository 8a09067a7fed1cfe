"""The asset path against the engine called directly: one slice, wall time and process-tree RSS.

    .venv/bin/python -m bench.dagster_overhead [--rows 1000000] [--repeat 5]

Loads ``--rows`` messy order lines (bench.e2e's) into a throw-away PostgreSQL ERP, then syncs
one slice into two empty PostgreSQL targets, with the config defaults (`chunk_size` 50k, no
tuning): directly with `sync_slice`, and as a user runs it, by materializing the entity's
asset on the production Dagster instance as shipped (``deploy/dagster-postgres.yaml``,
dagster-postgres storage). Both run the initial load, then a
rerun after 10 % of the source rows changed. Each phase runs in a fresh process; its wall time
is the sync call (imports excluded), its peak RSS is the whole process tree (the process and its
worker processes, imports included), sampled every 20 ms by a separate process. Prints the
stage files a run leaves on disk (there should be none). With ``--repeat N`` every phase runs N
times, each repetition from empty targets and an empty instance, and the summary gives medians
and ranges (one run on a shared 2-core machine varies by 10-20 %). Targets: at 1M rows the
asset path <= 1.10x the direct wall and <= 1.2x its peak; at 3M rows both peaks <= 1.2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.e2e import _change_source, _config, _load_source, _source_rows, spread
from bench.tree_rss import TreePeak
from tests.dagster.instance_env import production_home
from tests.pg import pg_cluster

ENTITY = "order_lines"


def _phase(path: str, config: str, run: str, env: dict[str, str]) -> dict[str, float]:
    """Run one sync of every slice in this (fresh) process; its figures as JSON on stdout."""
    from syncflow_core.config import load_config
    from syncflow_core.slices import slice_keys

    cfg = load_config(config)
    keys = slice_keys(cfg.entity(ENTITY).slice_count)
    if path == "direct":
        from syncflow_core.pipeline import SyncCounts, first_load, sync_slice
        from syncflow_core.runtime import Runtime

        total = SyncCounts()
        t0 = time.perf_counter()
        with Runtime.open(cfg, env) as rt, first_load(rt, ENTITY):  # as the load op does
            for key in keys:
                total.add(sync_slice(rt, ENTITY, key, run))
        return {"seconds": time.perf_counter() - t0, "fetched": total.fetched,
                "written": total.inserted + total.updated,
                **{f"seconds_{k}": v for k, v in total.durations.items()}}
    from dagster import DagsterInstance

    from syncflow_dagster.definitions import build_definitions

    job = build_definitions(cfg, config).resolve_job_def(f"{ENTITY}_sync")
    # One slice: a run of that partition; several: one run over them all (a single-run
    # backfill), which is the case that must not hold its slices in memory at once.
    where: dict[str, object] = (
        {"partition_key": keys[0]} if len(keys) == 1 else {"tags": {
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1]}}
    )
    with DagsterInstance.get() as instance:
        t0 = time.perf_counter()
        result = job.execute_in_process(instance=instance, **where)  # type: ignore[arg-type]
        secs = time.perf_counter() - t0
    assert result.success
    figures: dict[str, float] = {"seconds": secs, "fetched": 0.0, "written": 0.0}
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        figures["fetched"] += float(str(meta["fetched"].value))
        figures["written"] += float(str(meta["inserted"].value)) + float(
            str(meta["updated"].value))
        for name, value in meta.items():  # the engine's time per stage (seconds_<stage>)
            if name.startswith("seconds_"):
                figures[name] = figures.get(name, 0.0) + float(str(value.value))
    # Where the rest of the wall time went: Dagster's steps and events, the plan ops' checks,
    # the table's row count.
    return figures


def _files_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    """Run the four phases and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--default-slices", action="store_true",
                    help="the entity's default slices (one per night of a pass) instead of one; "
                         "the asset path syncs them in one run")
    ap.add_argument("--paths", default="direct,asset",
                    help="which paths to run, comma-separated (e.g. 'asset' for a long 10M run)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="repetitions, each from empty targets and instance: the figures are "
                         "the median and range (one run on a shared machine varies ~10-20 %%)")
    ap.add_argument("--phase", nargs=3, metavar=("PATH", "CONFIG", "RUN"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        path, config_path, run = args.phase
        print(json.dumps(_phase(path, config_path, run, dict(os.environ))))
        return
    n = args.rows
    paths = [p for p in ("direct", "asset") if p in args.paths.split(",")]
    rows = _source_rows(n)
    with pg_cluster() as pg, tempfile.TemporaryDirectory() as tmp:
        pg.create_database("erp")
        _load_source(pg, "erp", rows)
        del rows
        cfg = _config(slices=None if args.default_slices else 1)
        doc = cfg.model_dump(mode="json", by_alias=True, exclude={"source_file"})
        slices = cfg.entity(ENTITY).slice_count
        config = Path(tmp) / "syncflow.yaml"
        config.write_text(yaml.safe_dump(doc))

        def run(path: str, label: str, rep: int, instance: dict[str, str]) -> dict[str, float]:
            env = {**os.environ, **instance, "BENCH_ERP_URL": pg.url("erp"),
                   "SYNCFLOW_CONFIG": str(config), "BENCH_TARGET_URL": pg.url(f"{path}_{rep}")}
            child = subprocess.Popen(
                [sys.executable, "-m", "bench.dagster_overhead", "--phase", path, str(config),
                 label], env=env, stdout=subprocess.PIPE, text=True,
            )
            with TreePeak(child.pid) as peak:
                out, _ = child.communicate()
            if child.returncode:
                raise SystemExit(f"{path} {label} failed ({child.returncode})")
            figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
            figures["peak_mb"] = peak.mb
            figures["peak_pss_mb"] = peak.pss_mb
            return figures

        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        homes = []
        for rep in range(args.repeat):
            # Each repetition starts from empty targets and an empty Dagster instance; the
            # source keeps the changes of the repetitions before (each rerun sees 10 % changed
            # since its own initial load).
            for db in (f"direct_{rep}", f"asset_{rep}"):
                pg.create_database(db)
            # The production instance as shipped (deploy/dagster-postgres.yaml).
            home = Path(tmp) / f"dagster_home_{rep}"
            instance = production_home(home, pg, f"dagster_{rep}")
            homes.append(home)
            for label in ("initial", "rerun"):
                if label == "rerun":
                    changed = _change_source(pg, "erp")
                    print(f"source: {changed:,} rows changed ({changed / n:.1%})")
                for path in paths:
                    r = run(path, label, rep, instance)
                    results.setdefault((path, label), []).append(r)
                    _print_phase(path, label, r)
        stage_mb = max(_files_mb(home) for home in homes)
    print(f"{n:,} rows, {slices} slice(s), PostgreSQL -> PostgreSQL, config defaults, "
          f"{args.repeat} repetition(s)")
    for label in ("initial", "rerun"):
        for path in paths:
            runs = results[(path, label)]
            print(f"{path:<7} {label:<8} wall {spread([r['seconds'] for r in runs], 's')}  "
                  f"peak RSS {spread([r['peak_mb'] for r in runs], 'MB', 0)}")
        if len(paths) == 2:
            pairs = list(zip(results[("direct", label)], results[("asset", label)], strict=True))
            walls = [a["seconds"] / d["seconds"] for d, a in pairs]
            peaks = [a["peak_mb"] / d["peak_mb"] for d, a in pairs]
            print(f"{label:<8} asset/direct: wall {spread(walls)} (target <= 1.10), "
                  f"peak {spread(peaks)} (target <= 1.2)")
    print(f"files left under DAGSTER_HOME after the runs: {stage_mb:.2f} MB "
          "(dagster.yaml and Dagster's own logs; SyncFlow writes no stage files)")


def _print_phase(path: str, label: str, r: dict[str, float]) -> None:
    print(f"{path:<7} {label:<8} {r['seconds']:7.2f} s  peak RSS (tree) "
          f"{r['peak_mb']:7,.0f} MB  PSS {r['peak_pss_mb']:7,.0f} MB  "
          f"fetched {r['fetched']:,.0f}  written {r['written']:,.0f}", flush=True)
    stages = {k[len("seconds_"):]: v for k, v in r.items() if k.startswith("seconds_")}
    print(f"{'':<16} engine stages (s): "
          + " ".join(f"{k}={v:.2f}" for k, v in stages.items())
          + f"  sum={sum(stages.values()):.2f}", flush=True)


if __name__ == "__main__":
    main()
