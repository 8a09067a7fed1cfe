"""The code location: ``dagster api grpc -m syncflow_dagster.definitions``.

Thin on purpose: load syncflow.yaml (``$SYNCFLOW_CONFIG`` or the bundled demo) and build
Definitions from it.
"""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from syncflow_core.config import SyncFlowConfig
from syncflow_dagster.assets import build_entity_assets
from syncflow_dagster.checks import build_all_checks
from syncflow_dagster.io_manager import StreamIOManager
from syncflow_dagster.ops import RESOURCE_KEY, STREAM_IO_MANAGER_KEY
from syncflow_dagster.pools import build_pool_sensor
from syncflow_dagster.resources import Clock, SyncFlowResource, load_syncflow_config
from syncflow_dagster.schedules import build_schedules
from syncflow_dagster.sensors import build_resolution_jobs, build_sensors

__all__ = ["build_definitions", "defs"]


def build_definitions(
    config: SyncFlowConfig, config_path: str | None = None, clock: Clock | None = None
) -> Definitions:
    """Assets, checks, jobs, schedules, sensors and resources for ``config``.

    ``clock``: the time source of background runs' window (default: the system clock).

    Runs execute in process: an entity's graph is a chain, so a subprocess per op would only
    add start-up time; parallelism comes from many runs (one per slice).
    """
    resolution_jobs = build_resolution_jobs(config)
    return Definitions(
        assets=build_entity_assets(config),
        asset_checks=build_all_checks(config),
        # Each entity's sync job (`<entity>_sync`) comes with its schedule; the sensors launch
        # the resolution jobs (the same objects, so no duplicate definitions).
        jobs=list(resolution_jobs.values()),
        schedules=build_schedules(config),
        sensors=[*build_sensors(config, resolution_jobs), build_pool_sensor(config)],
        resources={
            RESOURCE_KEY: SyncFlowResource(config_path=config_path, clock=clock),
            STREAM_IO_MANAGER_KEY: StreamIOManager(),
        },
        executor=in_process_executor,
    )


defs = build_definitions(load_syncflow_config())
