"""The `syncflow_pools` sensor creates SyncFlow's pools at the instance default, once."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import DefaultSensorStatus, SkipReason, build_sensor_context, instance_for_test

from syncflow_core.config import SyncFlowConfig
from syncflow_dagster.pools import POOL_SENSOR_NAME, build_pool_sensor, syncflow_pools

pytestmark = pytest.mark.dagster

POOLS_CONFIG = {"concurrency": {"pools": {"granularity": "run", "default_limit": 1}}}


def _limits(storage: Any) -> dict[str, int | None]:
    return {pool.name: pool.limit for pool in storage.get_pool_limits()}


def test_pools_exist_at_the_default_limit_after_one_tick_and_raised_limits_stay(
    demo_config: SyncFlowConfig,
) -> None:
    sensor = build_pool_sensor(demo_config)
    assert sensor.name == POOL_SENSOR_NAME
    assert sensor.default_status == DefaultSensorStatus.RUNNING  # no one has to turn it on
    pools = syncflow_pools(demo_config)
    assert set(pools) == {f"syncflow_entity_{e}" for e in demo_config.entities} | {"erp_source"}
    with instance_for_test(overrides=POOLS_CONFIG) as instance:
        storage = instance.event_log_storage
        assert not set(pools) & storage.get_concurrency_keys()
        first = sensor(build_sensor_context(instance=instance))
        assert isinstance(first, SkipReason)  # it never launches a run
        assert _limits(storage) == dict.fromkeys(pools, 1)
        storage.set_concurrency_slots("erp_source", 4)  # an operator allows 4 ERP readers
        again = sensor(build_sensor_context(instance=instance))
        assert isinstance(again, SkipReason)
        assert again.skip_message == f"all {len(pools)} pools exist"
        assert _limits(storage)["erp_source"] == 4
