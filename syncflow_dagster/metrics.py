"""Prometheus metrics built from the state store and the Dagster instance (any pod count).

Nothing is counted in the run's process: every figure comes from what the runs leave behind,
so one exporter sees the runs of every pod. Each scrape reads the materializations of the
entity assets that are new since the last scrape (by event storage id) and the state store's
current totals.

- ``syncflow_rows_total{entity,operation}``: rows by operation (inserted, updated, unchanged,
  deleted, rejected), summed over the materializations' metadata;
- ``syncflow_sync_duration_seconds{entity}``: histogram of run start to materialization;
- ``syncflow_failed_records{entity}``, ``syncflow_pending_children{entity}``: open now;
- ``syncflow_last_success_timestamp_seconds{entity}``: newest materialization;
- ``syncflow_window_open{entity}``: 1 inside the entity's night window.
"""

from __future__ import annotations

import bisect
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dagster import AssetRecordsFilter
from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from syncflow_core.config import SyncFlowConfig
from syncflow_core.runtime import Runtime
from syncflow_core.window import in_window
from syncflow_dagster.translation import entity_asset

__all__ = ["OPERATIONS", "SyncFlowCollector", "serve"]

OPERATIONS = ("inserted", "updated", "unchanged", "deleted", "rejected")
BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, float("inf"))


@dataclass
class _EntityTotals:
    after_storage_id: int | None = None
    rows: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0.0))
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    duration_sum: float = 0.0
    last_success: float | None = None


class SyncFlowCollector:
    """A prometheus-client collector; register it on a `CollectorRegistry`."""

    def __init__(
        self,
        config: SyncFlowConfig,
        runtime: Callable[[], AbstractContextManager[Runtime]],
        instance: Callable[[], Any],
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._instance = instance
        self._totals = {name: _EntityTotals() for name in config.entities}
        self._lock = threading.Lock()  # scrapes may overlap

    def _advance(self, instance: Any, name: str) -> None:
        totals = self._totals[name]
        key = entity_asset(self._config, name).key
        starts: dict[str, float | None] = {}
        while True:
            result = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, after_storage_id=totals.after_storage_id),
                limit=500, ascending=True,
            )
            for record in result.records:
                totals.after_storage_id = record.storage_id
                mat = record.asset_materialization
                if mat is None:
                    continue
                for op in OPERATIONS:
                    entry = mat.metadata.get(op)
                    if entry is not None:
                        totals.rows[op] += float(entry.value)
                ts = record.timestamp
                totals.last_success = max(totals.last_success or ts, ts)
                run_id = record.run_id
                if run_id not in starts:
                    run = instance.get_run_record_by_id(run_id)
                    starts[run_id] = None if run is None else run.start_time
                start = starts[run_id]
                if start is not None:
                    seconds = max(0.0, ts - start)
                    totals.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
                    totals.duration_sum += seconds
            if not result.has_more:
                return

    def collect(self) -> Iterator[Metric]:
        """One scrape's metrics."""
        with self._lock:
            yield from self._collect()

    def _collect(self) -> Iterator[Metric]:
        rows = CounterMetricFamily("syncflow_rows", "Rows synced, by operation.",
                                   labels=["entity", "operation"])
        hist = HistogramMetricFamily("syncflow_sync_duration_seconds",
                                     "Run start to materialization of the entity, per run.",
                                     labels=["entity"])
        last = GaugeMetricFamily("syncflow_last_success_timestamp_seconds",
                                 "Unix time of the entity's newest materialization.",
                                 labels=["entity"])
        failed = GaugeMetricFamily("syncflow_failed_records", "Open failed records.",
                                   labels=["entity"])
        pending = GaugeMetricFamily("syncflow_pending_children",
                                    "Children waiting for a parent.", labels=["entity"])
        window = GaugeMetricFamily("syncflow_window_open",
                                   "1 while the entity's night window is open.",
                                   labels=["entity"])
        instance = self._instance()
        now = datetime.now(UTC)
        with self._runtime() as rt:
            for name, ent in self._config.entities.items():
                if instance is not None:
                    self._advance(instance, name)
                t = self._totals[name]
                for op in OPERATIONS:
                    rows.add_metric([name, op], t.rows[op])
                cumulative, running = [], 0
                for bound, n in zip(BUCKETS, t.buckets, strict=True):
                    running += n
                    cumulative.append(("+Inf" if bound == float("inf") else str(bound), running))
                hist.add_metric([name], cumulative, t.duration_sum)
                if t.last_success is not None:
                    last.add_metric([name], t.last_success)
                failed.add_metric([name], rt.state.list_failed_records(name).num_rows)
                pending.add_metric([name], rt.state.pending_counts(name, now).total)
                window.add_metric([name], 1.0 if in_window(now, ent.schedule) else 0.0)
        yield from (rows, hist, last, failed, pending, window)


def serve(
    config: SyncFlowConfig,
    host: str,
    port: int,
    runtime: Callable[[], AbstractContextManager[Runtime]],
    instance: Callable[[], Any],
    *,
    block: bool = True,
) -> Any:
    """Serve the metrics over HTTP; blocks unless ``block`` is off (then returns the server)."""
    registry = CollectorRegistry()
    registry.register(SyncFlowCollector(config, runtime, instance))
    server, thread = start_http_server(port, addr=host, registry=registry)
    if block:
        # Stop on SIGTERM (Kubernetes' stop signal) whatever the process inherited: a parent
        # that ran Dagster in process passes its SIGTERM disposition on, ignored when its
        # SIGINT was (Dagster maps SIGTERM to SIGINT's handler), and the server never ended.
        signal.signal(signal.SIGTERM, _stop)
        thread.join()
    return server


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(0)
