"""JSON log lines with correlation ids, switched on in dagster.yaml (`python_logs`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

from syncflow_dagster.definitions import build_definitions
from syncflow_dagster.jobs import entity_job_name
from tests.dagster.conftest import DemoEnv

pytestmark = [pytest.mark.dagster]


def test_every_run_log_line_is_json_with_run_entity_and_slice(
    demo_env: DemoEnv, tmp_path: Path
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(Path(__file__).parents[2] / "syncflow_dagster" / "dagster.yaml", home)
    log_file = tmp_path / "run.jsonl"
    settings = yaml.safe_load((home / "dagster.yaml").read_text())
    # What the README's "JSON logs" snippet adds, with a file instead of stdout.
    settings["python_logs"] = {"dagster_handler_config": {
        "handlers": {"json": {"class": "logging.FileHandler", "filename": str(log_file),
                              "formatter": "json"}},
        "formatters": {"json": {"()": "syncflow_dagster.json_logs.DagsterJsonFormatter"}},
    }}
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    instance = DagsterInstance.from_config(str(home))
    try:
        job = build_definitions(demo_env.config).resolve_job_def(
            entity_job_name(demo_env.config.entity("customers")))
        result = job.execute_in_process(instance=instance, partition_key="slice-02")
    finally:
        instance.dispose()
    assert result.success
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert len(lines) > 10
    for line in lines:
        assert (line["run_id"], line["entity"], line["slice"]) == (
            result.run_id, "customers", "slice-02"), line
        assert line["batch_id"] == result.run_id
    chunk_lines = [line for line in lines if "customers slice-02 through chunk" in line["message"]]
    assert chunk_lines and all(line["chunk"] == 1 for line in chunk_lines)
    events = {line["event"] for line in lines}
    assert events >= {"STEP_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION"}, events
