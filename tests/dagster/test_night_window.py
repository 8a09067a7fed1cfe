"""Night-window schedules with a controlled clock on a real instance.

A 7-slice entity is worked through over 7 simulated nights; on night 3 the window closes
mid-slice, the run ends paused at a chunk boundary, and night 4 resumes that slice at its
cursor; the pass still completes on night 7 with the target equal to the source. No background
run is requested in the day, and a DST night in Europe/Berlin behaves.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from dagster import (
    DagsterInstance,
    Definitions,
    RunRequest,
    build_schedule_context,
    instance_for_test,
)

from syncflow_core.config import load_config
from syncflow_core.pipeline import sync_slice
from syncflow_core.runtime import Runtime
from syncflow_core.slices import slice_keys
from syncflow_dagster.background import PAUSED_TAG, WINDOW_END_TAG
from syncflow_dagster.definitions import build_definitions
from syncflow_dagster.resources import CONFIG_ENV, SyncFlowResource, default_config_path
from tests.dagster.conftest import DemoEnv

pytestmark = [pytest.mark.dagster, pytest.mark.slow]

BERLIN = ZoneInfo("Europe/Berlin")
ENTITY = "order_lines"


@pytest.fixture
def night_defs(demo_env: DemoEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Definitions:
    """The demo config with small chunks for order_lines (so a slice has several chunks)."""
    doc = yaml.safe_load(Path(default_config_path()).read_text())
    doc["entities"][ENTITY]["chunk_size"] = 60
    path = tmp_path / "syncflow.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv(CONFIG_ENV, str(path))
    return build_definitions(load_config(path), str(path))


def _tick(defs: Definitions, instance: DagsterInstance, at: datetime) -> Any:
    sched = defs.resolve_schedule_def(f"{ENTITY}_night_window")
    # As a context manager: it sets (and must reset) Dagster's process-wide load state.
    with build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        resources={"syncflow": SyncFlowResource()},
        repository_def=defs.get_repository_def(),
    ) as ctx:
        return sched.evaluate_tick(ctx)


def _run(
    defs: Definitions,
    instance: DagsterInstance,
    req: RunRequest,
    tags: dict[str, str] | None = None,
) -> Any:
    job = defs.resolve_job_def(f"{ENTITY}_sync")
    result = job.execute_in_process(
        instance=instance, partition_key=req.partition_key, tags={**req.tags, **(tags or {})}
    )
    assert result.success
    return instance.get_run_by_id(result.run_id)


def _load_parents(demo: DemoEnv) -> None:
    """Orders, items and customers already synced, so order lines can load."""
    with Runtime.open(demo.config, demo.env) as rt:
        for name in ("customers", "items", "orders"):
            for key in slice_keys(demo.config.entity(name).slice_count):
                sync_slice(rt, name, key, "parents")


def _night(day: int) -> datetime:
    """19:15 Berlin time on January ``day`` 2027 (future dates: the window end is not past)."""
    return datetime(2027, 1, day, 19, 15, tzinfo=BERLIN)


def _target_keys(target: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(target) as con:
        return con.execute(
            'SELECT order_no, line_no FROM "order_lines" WHERE "_bridge_deleted_at" IS NULL'
        ).fetchall()


def _source_count(erp: Path) -> int:
    with sqlite3.connect(erp) as con:
        return int(con.execute("SELECT COUNT(*) FROM ORDER_LINES").fetchone()[0])


def test_seven_nights_with_an_interruption_complete_the_pass(
    demo_env: DemoEnv, night_defs: Definitions, tmp_path: Path
) -> None:
    keys = slice_keys(7)
    launched: list[list[str]] = []
    _load_parents(demo_env)
    with instance_for_test() as instance:
        for night in range(1, 8):
            data = _tick(night_defs, instance, _night(3 + night))
            reqs = data.run_requests or []
            launched.append([r.partition_key for r in reqs])
            for req in reqs:
                assert req.tags["syncflow/background"] == "true"
                assert datetime.fromisoformat(req.tags[WINDOW_END_TAG]) == datetime(
                    2027, 1, 4 + night, 7, 0, tzinfo=BERLIN
                )
                if night == 3:
                    # The window closes while the run works: stop at the next chunk boundary.
                    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
                    run = _run(night_defs, instance, req, {WINDOW_END_TAG: past})
                    assert run.tags.get(PAUSED_TAG) == req.partition_key
                    with Runtime.open(demo_env.config, demo_env.env) as rt:
                        cursor = rt.state.get_cursor(ENTITY, req.partition_key)
                    assert cursor is not None and cursor.status == "paused"
                    assert cursor.last_key is not None
                else:
                    run = _run(night_defs, instance, req)
                    assert PAUSED_TAG not in run.tags
            # A second tick the same night launches nothing more (quota used, run keys).
            again = _tick(night_defs, instance, _night(3 + night) + timedelta(hours=2))
            assert not again.run_requests, (night, again.run_requests)
        # One slice a night, in order; the paused slice-03 resumes first on night 4 and the
        # remaining nights catch up so the pass still ends on night 7.
        assert launched[:3] == [[keys[0]], [keys[1]], [keys[2]]]
        assert launched[3][0] == keys[2]
        assert [k for night in launched for k in night if k != keys[2]] == [
            k for k in keys if k != keys[2]
        ]
        with Runtime.open(demo_env.config, demo_env.env) as rt:
            for key in keys:
                cursor = rt.state.get_cursor(ENTITY, key)
                assert cursor is not None and cursor.status == "done" and cursor.pass_no == 2
            pending = len(set(rt.state.due_pending(ENTITY, None).column("key_hash").to_pylist()))
            # Occurrences: two identical bad rows are one failed record seen twice.
            failed = sum(rt.state.list_failed_records(ENTITY).column("occurrences").to_pylist())
    rows = _target_keys(demo_env.target)
    assert len(rows) == len(set(rows)), "no doubled rows"
    # Every source row is loaded, waiting for a parent, or a failed record: none lost.
    assert len(rows) + pending + failed == _source_count(demo_env.erp)


def test_no_background_run_during_business_hours(
    demo_env: DemoEnv, night_defs: Definitions, tmp_path: Path
) -> None:
    with instance_for_test() as instance:
        for hour in range(7, 19):
            for minute in (0, 30, 59):
                at = datetime(2027, 1, 5, hour, minute, tzinfo=BERLIN)
                data = _tick(night_defs, instance, at)
                assert not data.run_requests, at
                assert "opens at 2027-01-05T18:00:00+00:00" in (data.skip_message or "")
        # 06:59 is still inside the night that began the evening before.
        inside = _tick(night_defs, instance, datetime(2027, 1, 5, 6, 59, tzinfo=BERLIN))
        assert [r.partition_key for r in inside.run_requests] == ["slice-01"]


def test_dst_night_in_berlin(demo_env: DemoEnv, night_defs: Definitions, tmp_path: Path) -> None:
    with instance_for_test() as instance:
        # Spring forward: the night of 27/28 March 2027 is one hour short (11 h).
        at = datetime(2027, 3, 28, 3, 30, tzinfo=BERLIN)  # 03:30 CEST exists, 02:30 does not
        data = _tick(night_defs, instance, at)
        (req,) = data.run_requests
        assert req.tags["syncflow/night"] == "2027-03-27"
        end = datetime.fromisoformat(req.tags[WINDOW_END_TAG])
        assert end == datetime(2027, 3, 28, 5, 0, tzinfo=UTC)  # 07:00 CEST
        assert not _tick(
            night_defs, instance, datetime(2027, 3, 28, 7, 0, tzinfo=BERLIN)
        ).run_requests
        # Fall back: opens 19:00 CEST (17:00 UTC) on 30 October, closes 07:00 CET: 13 h.
        data = _tick(night_defs, instance, datetime(2027, 10, 30, 19, 0, tzinfo=BERLIN))
        (req,) = data.run_requests
        end = datetime.fromisoformat(req.tags[WINDOW_END_TAG])
        assert end == datetime(2027, 10, 31, 6, 0, tzinfo=UTC)  # 07:00 CET
