"""The night schedule sees an entity's runs in flight however they were launched.

A backfill launched from the UI carries no `syncflow/entity` tag and names its slice as a
partition range; the schedule must still count that slice as in flight and not launch it again.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from dagster import AssetKey, DagsterRunStatus, build_schedule_context, instance_for_test

from syncflow_dagster.definitions import build_definitions
from syncflow_dagster.resources import SyncFlowResource
from tests.dagster.conftest import DemoEnv

pytestmark = pytest.mark.dagster

NIGHT = datetime(2027, 1, 4, 19, 15, tzinfo=ZoneInfo("Europe/Berlin"))


def _ui_backfill_run_tags(slice_key: str) -> dict[str, str]:
    """The tags a per-slice backfill run gets from the daemon (no syncflow tags)."""
    return {"dagster/backfill": "uibackfl", "dagster/asset_partition_range_start": slice_key,
            "dagster/asset_partition_range_end": slice_key}


def test_a_launched_ui_backfill_run_is_in_flight_for_the_night_schedule(
    demo_env: DemoEnv,
) -> None:
    defs = build_definitions(demo_env.config)
    sched = defs.resolve_schedule_def("order_lines_night_window")

    def tonight(instance: object) -> list[str]:
        with build_schedule_context(instance=instance, scheduled_execution_time=NIGHT,  # type: ignore[arg-type]
                                    resources={"syncflow": SyncFlowResource()},
                                    repository_def=defs.get_repository_def()) as ctx:
            data = sched.evaluate_tick(ctx)
        return [r.partition_key for r in data.run_requests or []]

    with instance_for_test() as instance:
        first = tonight(instance)
        assert first  # tonight's quota starts at the first slice
        repo = defs.get_repository_def()
        for entity, slice_key in (("customers", first[0]), ("order_lines", first[0])):
            key = AssetKey(["erp", entity])
            job = repo.get_implicit_job_def_for_assets([key])
            assert job is not None
            run = instance.create_run_for_job(job, asset_selection={key},
                                              tags=_ui_backfill_run_tags(slice_key),
                                              status=DagsterRunStatus.NOT_STARTED)
            assert "syncflow/entity" not in run.tags
        # (NOT_STARTED: launched by the queue; a QUEUED run needs a code server's origin.)
        # The customers run is another entity's; the order_lines one covers the first slice.
        assert first[0] not in tonight(instance)
