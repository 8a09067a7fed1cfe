"""Make sure the instance knows SyncFlow's concurrency pools before the first run is queued.

One run per entity rests on the entity pools (`translation.entity_pool`) having their limit
(``concurrency.pools.default_limit: 1``) in the instance's storage. Dagster 1.13's run queue
creates a pool's limit row the first time it sees the pool in a queued run, but decides that
same pass as if the pool had no limit: on a fresh instance, every run of a backfill queued before
that pass would start at once. The ``syncflow_pools`` sensor (running by default) creates the
missing limit rows ahead of time, with the instance's default, and never changes a limit that
exists (an operator may raise ``erp_source``).
"""

from __future__ import annotations

from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
)
from dagster import sensor as sensor_decorator

from syncflow_core.config import SyncFlowConfig
from syncflow_dagster.ops import ERP_POOL
from syncflow_dagster.translation import entity_pool

__all__ = ["POOL_SENSOR_NAME", "build_pool_sensor", "ensure_pools", "syncflow_pools"]

POOL_SENSOR_NAME = "syncflow_pools"


def syncflow_pools(config: SyncFlowConfig) -> list[str]:
    """Every pool SyncFlow's ops use: one per entity, plus the ERP readers' pool."""
    return [entity_pool(name) for name in config.entities] + [ERP_POOL]


def ensure_pools(instance: DagsterInstance, pools: list[str]) -> list[str]:
    """Create the limit row (at the instance's default) of each pool that has none; return
    the pools created. Also usable from a deploy step (e.g. a migrate command)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    known = storage.get_concurrency_keys()
    return [p for p in pools
            if p not in known and storage.initialize_concurrency_limit_to_default(p)]


def build_pool_sensor(config: SyncFlowConfig) -> SensorDefinition:
    """The ``syncflow_pools`` sensor: on by default, launches nothing."""
    pools = syncflow_pools(config)

    @sensor_decorator(
        name=POOL_SENSOR_NAME,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description="Creates SyncFlow's concurrency pools (one per entity, erp_source) at the "
        "instance's default limit before any run uses them, so the run queue holds a second "
        "run of an entity from the start. Launches no runs; never changes an existing limit.",
    )
    def pool_sensor(context: SensorEvaluationContext) -> SkipReason:
        created = ensure_pools(context.instance, pools)
        if created:
            return SkipReason(f"created pools {', '.join(created)}")
        return SkipReason(f"all {len(pools)} pools exist")

    return pool_sensor
