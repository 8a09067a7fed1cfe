"""The README's main command: two days synced through Dagster on a real instance, a summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from syncflow_dagster.demo import main

pytestmark = [pytest.mark.dagster, pytest.mark.slow]


def test_demo_syncs_two_days_and_prints_the_ui_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("DAGSTER_HOME", "SYNCFLOW_ERP_URL", "SYNCFLOW_TARGET_URL", "SYNCFLOW_STATE_URL"):
        monkeypatch.delenv(var, raising=False)  # main() sets them; monkeypatch restores
    assert main(["--dir", str(tmp_path / "var"), "--scale", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "Day 1" in out and "Day 2" in out
    for entity in ("customers", "items", "orders", "order_lines", "employees"):
        assert f"\n{entity}\n" in out
    assert "initial load" in out and "business day" in out
    home = (tmp_path / "var" / "dagster_home").resolve()
    assert f"DAGSTER_HOME={home}" in out and "dagster dev -w workspace.yaml" in out

    # The runs live on the real instance the UI command opens.
    instance = DagsterInstance.from_config(str(home))
    try:
        runs = instance.get_run_records(RunsFilter(tags={"syncflow/entity": "order_lines"}))
        assert runs and all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in runs)
        assert instance.get_materialized_partitions(AssetKey(["erp", "order_lines"]))
    finally:
        instance.dispose()
