"""Replay of failed records through the current config (stored raw rows: a file source)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncflow_core import pipeline
from syncflow_core.config import SyncFlowConfig, parse_config
from syncflow_core.replay import replay_failed
from syncflow_core.runtime import Runtime


def _config(tmp_path: Path, date_formats: list[str]) -> SyncFlowConfig:
    entity: dict[str, Any] = {
        "source": {"connection": "files", "path": "items.csv"},
        "target_table": "items",
        "business_key_fields": ["ITEM_NO"],
        "delta_strategy": "hash",
        "fields": {"CREATED": {"type": "DATE32", "date_formats": date_formats}},
        "slices": 1,
    }
    return parse_config({
        "version": 1,
        "sources": {"files": {"kind": "files", "directory": str(tmp_path)}},
        "target": {"url": f"sqlite:///{tmp_path / 'target.sqlite'}"},
        "entities": {"items": entity},
    }, source_file="test.yaml")


def test_stored_raw_rows_load_once_the_config_reads_them(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text(
        "ITEM_NO,NAME,CREATED\nA1,Bolt,2024-01-31\nA2,Nut,31-2024-01\nA3,Washer,2024-02-01\n")
    with Runtime.open(_config(tmp_path, ["%Y-%m-%d"])) as rt:
        counts = pipeline.sync_slice(rt, "items", "slice-01", "first")
        (record,) = rt.state.list_failed_records("items").to_pylist()
        # Replayed under the same config the row fails the same way: its record stays open.
        same = replay_failed(rt, "replay-same", entity="items")
        assert (same.closed, same.still_open, same.new_failures) == (0, 1, 0)
    assert (counts.inserted, counts.rejected) == (2, 1) and "31-2024-01" in record["raw_row"]
    with Runtime.open(_config(tmp_path, ["%Y-%m-%d", "%d-%Y-%m"])) as rt:
        report = replay_failed(rt, "replay-fixed", entity="items")
        rows = {r["ITEM_NO"]: r for r in rt.target.read_table("items").to_pylist()}
        statuses = rt.state.list_failed_records("items", status=None).column("status")
    assert report.closed_ids == [record["id"]] and report.loaded == 1
    assert str(rows["A2"]["CREATED"]) == "2024-01-31"
    assert rows["A2"]["_bridge_batch_id"] == "replay-fixed"
    assert statuses.to_pylist() == ["replayed"]
