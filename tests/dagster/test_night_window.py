"""Night-window schedule ticks with a controlled clock on a real instance.

No background run is requested in the day (and the skip reason says when the window opens, in
the entity's zone), and a DST night in Europe/Berlin gets the right window end. Whole weeks of
nights with real runs, interruptions and failing slices: `test_overnight_scenarios`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from dagster import (
    DagsterInstance,
    Definitions,
    build_schedule_context,
    instance_for_test,
)

from syncflow_core.config import load_config
from syncflow_dagster.background import WINDOW_END_TAG
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


def test_no_background_run_during_business_hours(
    demo_env: DemoEnv, night_defs: Definitions, tmp_path: Path
) -> None:
    with instance_for_test() as instance:
        for hour in range(7, 19):
            for minute in (0, 30, 59):
                at = datetime(2027, 1, 5, hour, minute, tzinfo=BERLIN)
                data = _tick(night_defs, instance, at)
                assert not data.run_requests, at
                # In the entity's zone, UTC for reference.
                assert "opens at 2027-01-05 19:00 CET (18:00 UTC)" in (data.skip_message or "")
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
