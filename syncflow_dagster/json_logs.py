"""JSON log lines for runs: SyncFlow's correlation ids plus what Dagster knows of the record.

Switch it on in ``dagster.yaml`` (see the README, "Operating"):

.. code-block:: yaml

    python_logs:
      dagster_handler_config:
        handlers:
          json:
            class: logging.StreamHandler
            stream: ext://sys.stdout
            formatter: json
        formatters:
          json:
            (): syncflow_dagster.json_logs.DagsterJsonFormatter

Every line of a run then has ``run_id``; lines of an entity's steps have ``entity`` (from the
op name, ``<entity>__<stage>``) and ``slice`` (from the stage's own context, else the run's
partition), ``batch_id`` (the run id SyncFlow writes into ``_bridge_batch_id``), ``step`` and
``event`` (Dagster's event type, e.g. ``STEP_SUCCESS``).
"""

from __future__ import annotations

import logging
from typing import Any

from syncflow_core.log_context import JsonFormatter

__all__ = ["DagsterJsonFormatter"]

_META = "dagster_meta"  # dagster._core.log_manager.LOG_RECORD_METADATA_ATTR


class DagsterJsonFormatter(JsonFormatter):
    """`JsonFormatter` that also reads Dagster's record metadata (run, step, partition)."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        out = super().fields(record)
        meta = getattr(record, _META, None)
        if not isinstance(meta, dict):
            return out
        tags = meta.get("job_tags") or {}
        op_name = meta.get("op_name") or ""
        out["run_id"] = out["run_id"] or meta.get("run_id")
        out["batch_id"] = out["batch_id"] or out["run_id"]
        out["entity"] = out["entity"] or tags.get("syncflow/entity") or (
            op_name.split("__", 1)[0] if "__" in op_name else None)
        out["slice"] = out["slice"] or tags.get("dagster/partition")
        out["step"] = meta.get("step_key")
        event = meta.get("dagster_event")
        out["event"] = None if event is None else getattr(event, "event_type_value", None)
        return out

    def message(self, record: logging.LogRecord) -> str:
        meta = getattr(record, _META, None)
        if isinstance(meta, dict) and meta.get("orig_message"):
            return str(meta["orig_message"])
        return super().message(record)
