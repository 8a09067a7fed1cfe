"""``python -m syncflow_dagster.demo``: the README's main command.

Generates the messy demo ERP (SQLite) under ``./var``, syncs every slice of every entity
through Dagster on a real instance (``./var/dagster_home``, SQLite storage, our dagster.yaml),
applies one business day of ERP changes, syncs again, and prints what each day did per entity,
then the command that opens the Dagster UI on the same instance.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, Definitions

from syncflow_core.config import SyncFlowConfig
from syncflow_dagster.definitions import build_definitions
from syncflow_dagster.jobs import entity_job_name
from syncflow_dagster.resources import CONFIG_ENV, default_config_path, load_syncflow_config

__all__ = ["COLUMNS", "DemoPaths", "main", "prepare", "sync_all", "topological_entities"]

COLUMNS = ("inserted", "updated", "unchanged", "deleted", "failed", "pending", "resolved")
"""Columns of the per-day summary (failed = rejected + parent_missing)."""
QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""Run config keeping Dagster's per-event console log out of the demo's progress lines."""
DEMO_URL_ENVS = ("SYNCFLOW_ERP_URL", "SYNCFLOW_TARGET_URL", "SYNCFLOW_STATE_URL")


class DemoPaths:
    """Where the demo keeps its files (all under one folder, ``./var`` by default)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.dagster_home = self.root / "dagster_home"
        self.erp = self.root / "erp.sqlite"
        self.target = self.root / "target.sqlite"

    def env(self) -> dict[str, str]:
        """Environment the demo config resolves its URLs from (target and state share a file,
        so a slice's rows and its cursor commit in one transaction)."""
        return {
            "DAGSTER_HOME": str(self.dagster_home),
            "SYNCFLOW_ERP_URL": f"sqlite:///{self.erp}",
            "SYNCFLOW_TARGET_URL": f"sqlite:///{self.target}",
            "SYNCFLOW_STATE_URL": f"sqlite:///{self.target}",
        }


def prepare(paths: DemoPaths, seed: int, scale: float) -> dict[str, int]:
    """Start from scratch: a fresh DAGSTER_HOME with our dagster.yaml and a fresh demo ERP."""
    from syncflow_core.demo.erp import generate_demo_erp

    for path in (paths.dagster_home, paths.erp, paths.target):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    paths.dagster_home.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("dagster.yaml"), paths.dagster_home / "dagster.yaml")
    os.environ.update(paths.env())
    return generate_demo_erp(paths.erp, seed=seed, scale=scale)


def topological_entities(config: SyncFlowConfig) -> list[str]:
    """Entities with every parent before its children (config order among equals)."""
    sorter = TopologicalSorter({n: config.parents_of(n) for n in config.entities})
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        batch = set(sorter.get_ready())  # each ready node is handed out only once
        ready = [n for n in config.entities if n in batch]
        order.extend(ready)
        sorter.done(*ready)
    return order


def _counts(result: Any) -> dict[str, float]:
    totals: dict[str, float] = {}
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        for name in ("fetched", "rejected", "inserted", "updated", "unchanged", "deleted",
                     "pending", "resolved", "parent_missing"):
            if name in meta:
                totals[name] = totals.get(name, 0) + meta[name].value
    return totals


def sync_all(
    defs: Definitions,
    config: SyncFlowConfig,
    instance: DagsterInstance,
    log: Callable[[str], None] = print,
    entities: list[str] | None = None,
) -> dict[str, dict[str, float]]:
    """One run per slice of every entity (or of ``entities``), parents first; summed counts."""
    out: dict[str, dict[str, float]] = {}
    for name in entities if entities is not None else topological_entities(config):
        job_def = defs.resolve_job_def(entity_job_name(config.entity(name)))
        keys = job_def.partitions_def.get_partition_keys() if job_def.partitions_def else []
        total: dict[str, float] = {}
        for key in keys:
            started = time.perf_counter()
            result = job_def.execute_in_process(run_config=QUIET, instance=instance,
                                                partition_key=key)
            counts = _counts(result)
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
            log(f"  {name:<12} {key}  fetched {int(counts.get('fetched', 0)):>6}  "
                f"inserted {int(counts.get('inserted', 0)):>6}  "
                f"updated {int(counts.get('updated', 0)):>5}  "
                f"pending {int(counts.get('pending', 0)):>4}  "
                f"{time.perf_counter() - started:5.2f}s  run {result.run_id[:8]}")
        out[name] = total
    return out


def run_parent_sensors(
    defs: Definitions,
    config: SyncFlowConfig,
    instance: DagsterInstance,
    cursors: dict[str, str | None],
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """One tick of every parent-arrival sensor, as the daemon would run it; launch its runs.

    ``cursors`` carries each sensor's cursor from tick to tick (the daemon keeps it in the
    instance). Each run request launches the entity's resolution job with the request's tags,
    so the resolution shows in the UI as a materialization of the child tied to its parent.
    """
    from dagster import build_sensor_context

    from syncflow_dagster.resources import SyncFlowResource
    from syncflow_dagster.sensors import resolution_job_name

    out: dict[str, dict[str, float]] = {}
    for name in topological_entities(config):
        ent = config.entity(name)
        if not ent.parent_refs:
            continue
        sensor_name = f"{name}_parent_arrival"
        sensor = defs.resolve_sensor_def(sensor_name)
        with build_sensor_context(instance=instance, cursor=cursors.get(sensor_name),
                                  definitions=defs,
                                  resources={"syncflow": SyncFlowResource()}) as ctx:
            tick = sensor.evaluate_tick(ctx)
        cursors[sensor_name] = tick.cursor
        job_def = defs.resolve_job_def(resolution_job_name(ent))
        for req in tick.run_requests or []:
            result = job_def.execute_in_process(run_config=QUIET, instance=instance,
                                                tags=req.tags)
            counts = _counts(result)
            log(f"  {sensor_name}: {req.tags.get('syncflow/trigger_parent')} arrived -> "
                f"resolved {int(counts.get('resolved', 0))}, still waiting "
                f"{int(counts.get('pending', 0))}  run {result.run_id[:8]}")
            for k, v in counts.items():
                out.setdefault(name, {})[k] = out.get(name, {}).get(k, 0) + v
    return out


def _leaves(config: SyncFlowConfig) -> list[str]:
    """Entities that are nobody's parent (order lines): synced after the sensors ran."""
    parents = {p for n in config.entities for p in config.parents_of(n)}
    return [n for n in topological_entities(config) if n not in parents]


def sync_day(
    defs: Definitions,
    config: SyncFlowConfig,
    instance: DagsterInstance,
    cursors: dict[str, str | None],
) -> dict[str, dict[str, int]]:
    """A night's work: parents, then the parent-arrival sensors, then the leaf entities."""
    leaves = _leaves(config)
    first = [n for n in topological_entities(config) if n not in leaves]
    synced = sync_all(defs, config, instance, entities=first)
    print("  parent-arrival sensors tick:")
    resolved = run_parent_sensors(defs, config, instance, cursors)
    if not resolved:
        print("    nothing was waiting for the parents that arrived")
    synced.update(sync_all(defs, config, instance, entities=leaves))
    return _merge(synced, resolved)


def _merge(day: Mapping[str, dict[str, float]], resolved: Mapping[str, dict[str, float]]
           ) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for name, c in day.items():
        r = resolved.get(name, {})
        table[name] = {
            "inserted": int(c.get("inserted", 0) + r.get("inserted", 0)),
            "updated": int(c.get("updated", 0) + r.get("updated", 0)),
            "unchanged": int(c.get("unchanged", 0)),
            "deleted": int(c.get("deleted", 0)),
            "failed": int(c.get("rejected", 0) + c.get("parent_missing", 0)
                          + r.get("parent_missing", 0)),
            # After resolution, what still waits is the resolution's count.
            "pending": int(r["pending"] if "pending" in r else c.get("pending", 0)),
            "resolved": int(r.get("resolved", 0)),
        }
    return table


def format_summary(days: Mapping[str, Mapping[str, Mapping[str, int]]]) -> str:
    """One table per entity: a row per day, a column per count."""
    lines: list[str] = []
    entities = list(next(iter(days.values())).keys()) if days else []
    for name in entities:
        lines.append(f"\n{name}")
        lines.append(f"  {'day':<14}" + "".join(f"{c:>11}" for c in COLUMNS))
        for day, table in days.items():
            row = table.get(name, {})
            lines.append(f"  {day:<14}" + "".join(f"{row.get(c, 0):>11}" for c in COLUMNS))
    return "\n".join(lines)


def _ui_command(paths: DemoPaths) -> str:
    env = paths.env()
    assigns = " ".join(f"{k}={env[k]}" for k in ("DAGSTER_HOME", *DEMO_URL_ENVS))
    return f"{assigns} .venv/bin/dagster dev -w workspace.yaml"


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", default="var", help="folder for ERP, target and DAGSTER_HOME")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="demo ERP size (1.0 = ~200k rows, 150k of them order lines)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="dagster")  # beta/deprecation notes, not news

    paths = DemoPaths(Path(args.dir))
    print(f"Generating the demo ERP at {paths.erp} (scale {args.scale}, seed {args.seed}) ...")
    sizes = prepare(paths, args.seed, args.scale)
    print("  " + ", ".join(f"{t} {n}" for t, n in sizes.items()))
    config_path = os.environ.get(CONFIG_ENV) or default_config_path()
    config = load_syncflow_config(config_path)
    defs = build_definitions(config, config_path)
    instance = DagsterInstance.get()  # the real instance in paths.dagster_home
    days: dict[str, dict[str, dict[str, int]]] = {}
    try:
        cursors: dict[str, str | None] = {}
        print("\nDay 1: initial load, every slice of every entity (parents first)")
        days["initial load"] = sync_day(defs, config, instance, cursors)

        from syncflow_core.demo.changes import apply_business_day

        print("\nApplying one business day of ERP changes ...")
        changes = apply_business_day(paths.erp, seed=args.seed + 1)
        for table, change in changes.items():
            print(f"  {table:<14} " + ", ".join(f"{k} {v}" for k, v in change.items()))
        print("\nDay 2: sync again (the late orders arrive; their waiting lines resolve)")
        days["business day"] = sync_day(defs, config, instance, cursors)
    finally:
        instance.dispose()
    print(format_summary(days))
    print("\nOpen the Dagster UI on this instance (runs, materializations, checks):")
    print(f"  {_ui_command(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
