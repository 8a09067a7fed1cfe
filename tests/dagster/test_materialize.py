"""Materializing the assets on real Dagster instances syncs the demo ERP into the target."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    JobDefinition,
    ReexecutionOptions,
    execute_job,
    instance_for_test,
    reconstructable,
)

from syncflow_core import pipeline
from syncflow_core.config import SyncFlowConfig
from syncflow_core.runtime import Runtime
from syncflow_core.slices import slice_keys
from syncflow_dagster.definitions import build_definitions
from syncflow_dagster.demo import sync_all
from syncflow_dagster.jobs import entity_job_name
from syncflow_dagster.resources import load_syncflow_config
from tests.dagster.conftest import DemoEnv

pytestmark = [pytest.mark.dagster, pytest.mark.slow]


def _instance(tmp_path: Path) -> Any:
    """A real SQLite-backed instance whose storage stays in the test's folder."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    return instance_for_test(temp_dir=str(home))


def _target_hashes(target: Path, table: str) -> dict[str, str]:
    with sqlite3.connect(target) as con:
        rows = con.execute(
            f'SELECT "_bridge_key_hash", "_bridge_data_hash" FROM "{table}" '
            'WHERE "_bridge_deleted_at" IS NULL'
        ).fetchall()
    return dict(rows)


def _normalized_source(demo: DemoEnv, entity: str, scratch: Path) -> dict[str, list[str]]:
    """key hash -> data hashes of the source rows after the core's normalize + identify,
    computed with a fresh state store (so no watermark or cursor narrows the read)."""
    env = {**demo.env, "SYNCFLOW_TARGET_URL": f"sqlite:///{scratch}",
           "SYNCFLOW_STATE_URL": f"sqlite:///{scratch}"}
    out: dict[str, list[str]] = {}
    with Runtime.open(demo.config, env) as rt:
        for key in slice_keys(demo.config.entity(entity).slice_count):
            batch = pipeline.extract(rt, entity, key)
            batch = pipeline.identify_batch(rt, entity, pipeline.normalize_batch(rt, entity, batch))
            rows = batch.table("rows")
            for k, d in zip(rows.column("_bridge_key_hash").to_pylist(),
                            rows.column("_bridge_data_hash").to_pylist(), strict=True):
                out.setdefault(k, []).append(d)
    return out


def _pending_keys(demo: DemoEnv, entity: str) -> set[str]:
    with Runtime.open(demo.config, demo.env) as rt:
        return set(rt.state.due_pending(entity, None).column("key_hash").to_pylist())


def test_materialize_all_then_again_changes_nothing(demo_env: DemoEnv, tmp_path: Path) -> None:
    defs = build_definitions(demo_env.config)
    with _instance(tmp_path) as instance:
        first = sync_all(defs, demo_env.config, instance, log=lambda _: None)
        for name, ent in demo_env.config.entities.items():
            key = AssetKey(["erp", name])
            assert instance.get_materialized_partitions(key) == set(slice_keys(ent.slice_count))
            assert first[name]["fetched"] > 0

        # The target holds exactly the normalized source rows (minus children still waiting).
        for name, ent in demo_env.config.entities.items():
            source = _normalized_source(demo_env, name, tmp_path / f"scratch_{name}.sqlite")
            target = _target_hashes(demo_env.target, ent.table_name)
            pending = _pending_keys(demo_env, name)
            unique = {k: v[0] for k, v in source.items() if len(v) == 1}
            assert set(target) <= set(source), name
            assert set(unique) - pending <= set(target), name
            assert all(target[k] == d for k, d in unique.items() if k in target), name

        latest = instance.get_latest_materialization_event(AssetKey(["erp", "customers"]))
        assert latest is not None and latest.asset_materialization is not None
        meta = latest.asset_materialization.metadata
        for field in ("fetched", "rejected", "inserted", "updated", "unchanged", "deleted",
                      "pending", "resolved", "superseded", "paused", "dagster/row_count",
                      "dagster/column_schema", "seconds_extract", "seconds_load"):
            assert field in meta, field
        with Runtime.open(demo_env.config, demo_env.env) as rt:  # (customers: table_row_count)
            assert meta["dagster/row_count"].value == rt.target.row_count("customers")
        # By default no count of the whole table (a scan per run): the slice's counts only.
        items = instance.get_latest_materialization_event(AssetKey(["erp", "items"]))
        assert items is not None and items.asset_materialization is not None
        assert not demo_env.config.entity("items").table_row_count
        assert "dagster/row_count" not in items.asset_materialization.metadata
        assert "fetched" in items.asset_materialization.metadata

        # Nothing changed in the ERP: the second sync writes nothing.
        second = sync_all(defs, demo_env.config, instance, log=lambda _: None)
        for name, ent in demo_env.config.entities.items():
            assert second[name].get("inserted", 0) == 0, name
            if ent.delta_strategy != "full":  # full replaces its slice by definition
                assert second[name].get("updated", 0) == 0, name


def _sessions(pg: Any, db: str) -> int:
    """Sessions ever opened on ``db`` (the server's statistics, PostgreSQL 14+)."""
    import psycopg

    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname="postgres") as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s",
                           (db,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
def test_dagster_postgres_storage_and_postgres_target(demo_env: DemoEnv, pg: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    storage_url = pg.create_database("dagster_storage_t").replace("+psycopg", "+psycopg2")
    target_url = pg.create_database("syncflow_target_t")
    monkeypatch.setenv("SYNCFLOW_TARGET_URL", target_url)
    monkeypatch.setenv("SYNCFLOW_STATE_URL", target_url)
    config = demo_env.config
    defs = build_definitions(config)
    overrides = {"storage": {"postgres": {"postgres_url": storage_url}}}
    with instance_for_test(overrides=overrides) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        job = defs.resolve_job_def(entity_job_name(config.entity("customers")))
        inserted = 0
        for i, key in enumerate(slice_keys(config.entity("customers").slice_count)):
            before = _sessions(pg, "dagster_storage_t")
            result = job.execute_in_process(instance=instance, partition_key=key)
            assert result.success
            if i == 0:
                # A run's event writes share pooled connections from its resource's start on
                # (dagster-postgres alone opened one per write: 116 for this run, 33 now).
                opened = _sessions(pg, "dagster_storage_t") - before
                assert opened <= 40, f"{opened} storage connections for one run"
            for event in result.get_asset_materialization_events():
                inserted += int(str(event.materialization.metadata["inserted"].value))
        assert inserted > 0
        assert len(instance.get_run_records()) == config.entity("customers").slice_count
        again = job.execute_in_process(instance=instance, partition_key="slice-01")
        meta = again.get_asset_materialization_events()[0].materialization.metadata
        assert meta["inserted"].value == 0 and meta["updated"].value == 0
        # The target's unique index answers the key-hash check (no scan of the table).
        checks = {e.check_name: e for e in again.get_asset_check_evaluations()}
        unique = checks["unique_key_hash"]
        assert unique.passed
        assert str(unique.metadata["enforced_by_index"].value) == "customers_bkh_uq"


def _items_job() -> JobDefinition:
    """Module-level so `reconstructable` can rebuild it (needed by re-execution)."""
    config = load_syncflow_config()
    return build_definitions(config).resolve_job_def(entity_job_name(config.entity("items")))


def test_source_error_fails_clearly_then_reexecution_from_failure_completes(
    demo_env: DemoEnv, tmp_path: Path
) -> None:
    with sqlite3.connect(demo_env.erp) as con:
        con.execute("ALTER TABLE ITEMS RENAME TO ITEMS_MOVED")
    recon = reconstructable(_items_job)
    with _instance(tmp_path) as instance:
        failed = execute_job(recon, instance, tags={"dagster/partition": "slice-01"})
        assert not failed.success
        failures = [e for e in failed.all_events
                    if e.event_type == DagsterEventType.STEP_FAILURE]
        assert [str(e.step_key).split(".")[-1] for e in failures] == ["items__extract"]
        message = failures[0].step_failure_data.error.to_string()  # type: ignore[union-attr]
        assert "ITEMS" in message
        # Nothing was written.
        with sqlite3.connect(demo_env.target) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        assert "items" not in tables

        with sqlite3.connect(demo_env.erp) as con:
            con.execute("ALTER TABLE ITEMS_MOVED RENAME TO ITEMS")
        options = ReexecutionOptions.from_failure(failed.run_id, instance)
        parent = instance.get_run_by_id(failed.run_id)
        assert parent is not None
        # execute_job does not copy the parent's tags (the UI's re-execute does): pass the
        # partition on, as the UI would.
        tags = {k: v for k, v in parent.tags.items() if k.startswith("dagster/partition")}
        fixed = execute_job(recon, instance, tags=tags, reexecution_options=options)
        assert fixed.success, [e.step_failure_data.error.to_string()  # type: ignore[union-attr]
                               for e in fixed.all_events
                               if e.event_type == DagsterEventType.STEP_FAILURE]
        run = instance.get_run_by_id(fixed.run_id)
        assert run is not None and run.parent_run_id == failed.run_id
        assert run.tags["dagster/partition"] == "slice-01"
        assert "slice-01" in instance.get_materialized_partitions(AssetKey(["erp", "items"]))
        assert len(_target_hashes(demo_env.target, "items")) > 0


def _counts(instance: DagsterInstance, run_id: str) -> dict[str, Any]:
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    mat = records[0].event_log_entry.asset_materialization
    assert mat is not None
    return {k: v.value for k, v in mat.metadata.items()}


def test_single_run_over_a_partition_range_syncs_every_slice(demo_env: DemoEnv,
                                                             tmp_path: Path) -> None:
    config: SyncFlowConfig = demo_env.config
    ent = config.entity("customers")
    keys = slice_keys(ent.slice_count)
    job = build_definitions(config).resolve_job_def(entity_job_name(ent))
    with _instance(tmp_path) as instance:
        result = job.execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        })
        assert result.success
        assert instance.get_materialized_partitions(AssetKey(["erp", "customers"])) == set(keys)
        # One materialization per slice, each with its own slice's counts.
        records = instance.get_records_for_run(
            result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
        mats = [r.event_log_entry.asset_materialization for r in records]
        by_slice = {m.partition: {k: v.value for k, v in m.metadata.items()}
                    for m in mats if m is not None}
        assert set(by_slice) == set(keys)
        assert all(meta["slice"] == key for key, meta in by_slice.items())
        inserted = [int(meta["inserted"]) for meta in by_slice.values()]
        assert all(n > 0 for n in inserted)
        table_rows = {meta["dagster/row_count"] for meta in by_slice.values()}
        assert table_rows == {sum(inserted)}  # the table's rows: every slice's together

        # The run's checks judge the run just done, all of its slices together, however much
        # history the asset has: run it again and read the second run's reject_ratio.
        again = job.execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        })
        assert again.success
        ratio = {e.check_name: e for e in again.get_asset_check_evaluations()}["reject_ratio"]
        meta = {k: v.value for k, v in ratio.metadata.items()}
        records = instance.get_records_for_run(
            again.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
        fetched = [r.event_log_entry.asset_materialization.metadata["fetched"].value
                   for r in records if r.event_log_entry.asset_materialization is not None]
        assert len(fetched) == len(keys)
        assert meta["run_id"] == again.run_id and meta["fetched"] == sum(fetched)
