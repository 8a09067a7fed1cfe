"""Children that arrive before their parent: pending, then loaded by the parent-arrival sensor.

Order lines are synced before their orders, so they wait. The orders asset materializes; the
sensor's next tick (its own cursor over the event log) launches the resolution job, whose run
shows as a materialization of the order-lines asset with its trigger in the metadata. All lines
load, none lost, none doubled; a line whose item never exists ends as a ``parent_missing``
failed record after 5 backoff attempts.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute
import pytest
from dagster import AssetKey, DagsterInstance, Definitions, build_sensor_context, instance_for_test

from syncflow_core.pipeline import resolve_pending
from syncflow_core.resolve import MAX_ATTEMPTS, next_retry_at
from syncflow_core.runtime import Runtime
from syncflow_core.slices import slice_keys
from syncflow_dagster.definitions import build_definitions
from syncflow_dagster.resources import SyncFlowResource
from syncflow_dagster.sensors import TRIGGER_PARENT_TAG
from tests.dagster.conftest import DemoEnv

pytestmark = [pytest.mark.dagster, pytest.mark.slow]


def _materialize(defs: Definitions, instance: DagsterInstance, entity: str, n: int) -> None:
    job = defs.resolve_job_def(f"{entity}_sync")
    for key in slice_keys(n):
        assert job.execute_in_process(instance=instance, partition_key=key).success


def _tick(defs: Definitions, instance: DagsterInstance, cursor: str | None) -> object:
    sensor = defs.resolve_sensor_def("order_lines_parent_arrival")
    # As a context manager: it sets (and must reset) Dagster's process-wide load state.
    with build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={"syncflow": SyncFlowResource()},
    ) as ctx:
        return sensor.evaluate_tick(ctx)


def _line_keys(demo: DemoEnv) -> list[tuple[str, int]]:
    with sqlite3.connect(demo.target) as con:
        return con.execute('SELECT order_no, line_no FROM "order_lines"').fetchall()


def test_lines_before_orders_then_sensor_resolves_them(demo_env: DemoEnv) -> None:
    cfg = demo_env.config
    defs = build_definitions(cfg)
    with instance_for_test() as instance:
        for name in ("customers", "items", "order_lines"):
            _materialize(defs, instance, name, cfg.entity(name).slice_count)
        with Runtime.open(cfg, demo_env.env) as rt:
            waiting = rt.state.pending_counts("order_lines")
        assert waiting.by_parent.get("orders", 0) > 1000  # no order exists yet
        assert _line_keys(demo_env) == []

        # Nothing new from the parents yet beyond what is waiting for orders: one tick sees
        # items/customers materializations but no child waits on items' arrival to resolve.
        first = _tick(defs, instance, None)
        cursor = first.cursor  # type: ignore[attr-defined]

        _materialize(defs, instance, "orders", cfg.entity("orders").slice_count)
        data = _tick(defs, instance, cursor)
        reqs = data.run_requests  # type: ignore[attr-defined]
        assert [r.tags[TRIGGER_PARENT_TAG] for r in reqs] == ["orders"]
        job = defs.resolve_job_def("order_lines_resolve")
        result = job.execute_in_process(instance=instance, tags=reqs[0].tags)
        assert result.success

        # The resolution is a materialization of the child asset, tied to its trigger.
        mats = instance.fetch_materializations(AssetKey(["erp", "order_lines"]), limit=1)
        latest = mats.records[0].asset_materialization
        assert latest is not None
        resolved = latest.metadata["resolved"].value
        assert resolved > 1000
        assert "orders materialization" in str(latest.metadata["triggered_by"].value)

        # The cursor moved on: the same events do not launch a second resolution.
        again = _tick(defs, instance, data.cursor)  # type: ignore[attr-defined]
        assert not again.run_requests  # type: ignore[attr-defined]

        with Runtime.open(cfg, demo_env.env) as rt:
            left = rt.state.due_pending("order_lines", None)
            # Only lines whose parent really does not exist still wait (ART-99999 never
            # arrives; late orders are held back in the ERP; some parents were rejected).
            missing: set[str] = set()
            for parent in set(left.column("parent_entity").to_pylist()):
                mine = left.filter(pa.compute.equal(left.column("parent_entity"), parent))
                exists = rt.target.existing_keys(parent, mine.column("parent_key_hash"))
                gone = mine.filter(pa.compute.invert(exists)).column("key_hash").to_pylist()
                missing |= set(gone)
            # Every child still waiting misses at least one parent.
            assert set(left.column("key_hash").to_pylist()) == missing
            lines = _line_keys(demo_env)
            assert len(lines) == len(set(lines)), "no doubled rows"
            assert len(lines) == resolved

            # Backoff: every retry that still finds no parent uses an attempt; after the
            # 5th the line becomes a failed record `parent_missing` and stops waiting.
            now = datetime.now(UTC)
            for attempt in range(MAX_ATTEMPTS):
                # Each retry happens when the backoff says it is due (waits grow, capped).
                now = next_retry_at(attempt, now) + timedelta(seconds=1)
                counts = resolve_pending(rt, "order_lines", f"retry-{attempt}", now=now)
                if attempt < MAX_ATTEMPTS - 1:
                    assert counts.parent_missing == 0 and counts.pending > 0
            assert counts.parent_missing > 0
            assert rt.state.pending_counts("order_lines").total == 0
            failed = rt.state.list_failed_records("order_lines")
            codes = failed.column("error_code").to_pylist()
            expired = [r for r in failed.to_pylist() if r["error_code"] == "parent_missing"]
            assert "parent_missing" in codes
            assert any("ART-99999" in r["raw_row"] for r in expired)
        # None lost: every line is in the target, or a failed record.
        assert len(_line_keys(demo_env)) == len(lines)


def _tick_sensor(
    defs: Definitions, instance: DagsterInstance, name: str, cursor: str | None
) -> object:
    sensor = defs.resolve_sensor_def(name)
    with build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={"syncflow": SyncFlowResource()},
    ) as ctx:
        return sensor.evaluate_tick(ctx)


def test_a_parent_loaded_by_its_own_resolution_wakes_its_children(demo_env: DemoEnv) -> None:
    """Orders wait for customers, lines for orders: the customers arrive, the orders'
    resolution loads the orders, and that resolution (not a sync) is what the lines' sensor
    must see as the orders' arrival."""
    cfg = demo_env.config
    defs = build_definitions(cfg)
    with instance_for_test() as instance:
        for name in ("items", "orders", "order_lines"):
            _materialize(defs, instance, name, cfg.entity(name).slice_count)
        with Runtime.open(cfg, demo_env.env) as rt:
            assert rt.state.pending_counts("orders").by_parent.get("customers", 0) > 100
        lines_cursor = _tick_sensor(  # type: ignore[attr-defined]
            defs, instance, "order_lines_parent_arrival", None
        ).cursor
        orders_cursor = _tick_sensor(  # type: ignore[attr-defined]
            defs, instance, "orders_parent_arrival", None
        ).cursor

        _materialize(defs, instance, "customers", cfg.entity("customers").slice_count)
        wake = _tick_sensor(defs, instance, "orders_parent_arrival", orders_cursor)
        reqs = wake.run_requests  # type: ignore[attr-defined]
        assert [r.tags[TRIGGER_PARENT_TAG] for r in reqs] == ["customers"]
        orders_job = defs.resolve_job_def("orders_resolve")
        assert orders_job.execute_in_process(instance=instance, tags=reqs[0].tags).success

        # The orders' resolution materialized orders with rows: the lines wake up.
        lines = _tick_sensor(defs, instance, "order_lines_parent_arrival", lines_cursor)
        reqs = lines.run_requests  # type: ignore[attr-defined]
        assert [r.tags[TRIGGER_PARENT_TAG] for r in reqs] == ["orders"]
        job = defs.resolve_job_def("order_lines_resolve")
        assert job.execute_in_process(instance=instance, tags=reqs[0].tags).success
        assert len(_line_keys(demo_env)) > 1000

        # A resolution that loads nothing wakes nobody (no endless self-resolution).
        idle = defs.resolve_job_def("orders_resolve")
        assert idle.execute_in_process(instance=instance, tags=reqs[0].tags | {
            TRIGGER_PARENT_TAG: "customers"}).success
        quiet = _tick_sensor(
            defs, instance, "order_lines_parent_arrival",
            lines.cursor,  # type: ignore[attr-defined]
        )
        assert not quiet.run_requests  # type: ignore[attr-defined]


def test_first_tick_starts_from_now_not_from_history(demo_env: DemoEnv) -> None:
    defs = build_definitions(demo_env.config)
    with instance_for_test() as instance:
        _materialize(defs, instance, "items", 1)  # history from before the sensor was on
        first = _tick(defs, instance, None)
        assert not first.run_requests  # type: ignore[attr-defined]
        assert "from now on" in first.skip_message  # type: ignore[attr-defined]
        latest = instance.fetch_materializations(AssetKey(["erp", "items"]), limit=1).records
        assert json.loads(first.cursor) == {"items": latest[0].storage_id}  # type: ignore[attr-defined]
        # Nothing new: nothing to do. A new parent materialization is seen at the next tick.
        idle = _tick(defs, instance, first.cursor)  # type: ignore[attr-defined]
        assert "no new materialization" in idle.skip_message  # type: ignore[attr-defined]
        _materialize(defs, instance, "items", 1)
        seen = _tick(defs, instance, first.cursor)  # type: ignore[attr-defined]
        assert "parents materialized" in seen.skip_message  # type: ignore[attr-defined]
