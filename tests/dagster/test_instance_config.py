"""Our instance configs load in Dagster as intended: run queue, per-entity limit, pools, storage."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from tests.dagster.conftest import DemoEnv
from tests.dagster.instance_env import production_home
from tests.pg import PgCluster

pytestmark = pytest.mark.dagster
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _instance(home: Path, config: Path) -> DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(config, home / "dagster.yaml")
    return DagsterInstance.from_config(str(home))


def test_root_dagster_yaml_is_the_packaged_one() -> None:
    # The demo copies the packaged file; `dagster dev` in the checkout reads the root one.
    assert (REPO / "dagster.yaml").read_text() == (
        REPO / "syncflow_dagster" / "dagster.yaml").read_text()


def test_local_instance_queues_runs_one_per_entity(tmp_path: Path) -> None:
    instance = _instance(tmp_path / "home", REPO / "syncflow_dagster" / "dagster.yaml")
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        config = instance.get_concurrency_config()
        # One run per entity: entity pools at run granularity, one slot unless raised.
        assert config.pool_config.pool_granularity is not None
        assert config.pool_config.pool_granularity.value == "run"
        assert config.pool_config.default_pool_limit == 1
        assert config.run_queue_config is not None
        assert config.run_queue_config.should_block_op_concurrency_limited_runs
        assert str(tmp_path / "home") in instance.storage_directory()
        # Run monitoring: runs that never start fail; the default launcher cannot resume.
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 300
        assert instance.run_monitoring_max_resume_run_attempts == 0
    finally:
        instance.dispose()


@pytest.mark.postgres
def test_production_instance_uses_dagster_postgres_from_env(
    tmp_path: Path, pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg.create_database("dagster_prod_t")
    for key, value in {"DAGSTER_PG_USERNAME": pg.user, "DAGSTER_PG_PASSWORD": "",
                       "DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_DB": "dagster_prod_t",
                       "DAGSTER_PG_PORT": str(pg.port)}.items():
        monkeypatch.setenv(key, value)
    config = REPO / "deploy" / "dagster-postgres.yaml"
    assert "password" in config.read_text() and "env: DAGSTER_PG_PASSWORD" in config.read_text()
    instance = _instance(tmp_path / "home", config)
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_runs() == []
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 300
    finally:
        instance.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_cli_materialize_on_the_production_instance_succeeds_in_postgres(
    tmp_path: Path, pg: PgCluster, demo_env: DemoEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # deploy/dagster-postgres.yaml unchanged, only the documented variables set.
    instance_env = production_home(tmp_path / "home", pg, "dagster_cli_t")
    env = {**demo_env.env, **instance_env}
    result = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "syncflow_dagster.definitions",
         "--select", "erp/items", "--partition", "slice-01"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for key, value in instance_env.items():
        monkeypatch.setenv(key, value)
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == "slice-01"
        assert instance.get_materialized_partitions(AssetKey(["erp", "items"])) == {"slice-01"}
    finally:
        instance.dispose()
