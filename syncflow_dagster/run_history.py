"""SyncFlow's batch history, read from Dagster's run storage and materialization metadata.

A run belongs to the entities whose assets it selected (or materialized, or whose
``syncflow/entity`` tag it carries); its counts are the sums of its materializations' metadata
(`ops.COUNT_FIELDS`). The CLI (`status`, `history`) and the metrics exporter read this.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, RunsFilter
from dagster._core.storage.dagster_run import RunRecord

from syncflow_core.config import SyncFlowConfig
from syncflow_dagster.ops import COUNT_FIELDS
from syncflow_dagster.translation import ENTITY_TAG, KEY_PREFIX

__all__ = ["RunSummary", "entity_of_key", "last_runs", "run_history"]


@dataclass
class RunSummary:
    """One run as the history shows it."""

    run_id: str
    job: str
    status: str
    entities: list[str]
    partitions: list[str]
    started: str | None
    ended: str | None
    seconds: float | None
    counts: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per entity: summed materialization counts (fetched, inserted, ...) and seconds_*."""

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        return asdict(self)


def entity_of_key(key: AssetKey) -> str | None:
    """``erp/<name>`` -> ``<name>`` (None for other assets)."""
    path = key.path
    return path[1] if len(path) == 2 and path[0] == KEY_PREFIX else None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _selected(record: RunRecord) -> set[str]:
    """The entities a run selected or is tagged with (cheap: no event-log read)."""
    run = record.dagster_run
    entities = {n for k in (run.asset_selection or ()) if (n := entity_of_key(k))}
    if ENTITY_TAG in run.tags:
        entities.add(run.tags[ENTITY_TAG])
    return entities


def _summary(instance: DagsterInstance, record: RunRecord, config: SyncFlowConfig) -> RunSummary:
    run = record.dagster_run
    entities = _selected(record)
    counts: dict[str, dict[str, float]] = {}
    partitions: set[str] = set()
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.asset_materialization
        name = entity_of_key(mat.asset_key) if mat is not None else None
        if mat is None or name is None:
            continue
        entities.add(name)
        if mat.partition:
            partitions.add(mat.partition)
        per = counts.setdefault(name, {})
        for key, value in mat.metadata.items():
            if key in COUNT_FIELDS or key.startswith("seconds_"):
                per[key] = per.get(key, 0) + float(value.value)  # type: ignore[arg-type]
    if not partitions and "dagster/partition" in run.tags:
        partitions.add(run.tags["dagster/partition"])
    start, end = record.start_time, record.end_time
    return RunSummary(
        run_id=run.run_id,
        job=run.job_name,
        status=run.status.value,
        entities=sorted(e for e in entities if e in config.entities),
        partitions=sorted(partitions),
        started=_iso(start),
        ended=_iso(end),
        seconds=None if start is None or end is None else round(end - start, 3),
        counts=counts,
    )


def run_history(
    instance: DagsterInstance, config: SyncFlowConfig, entity: str | None = None, limit: int = 20
) -> list[RunSummary]:
    """The newest runs (of ``entity``, when given), newest first."""
    out: list[RunSummary] = []
    cursor: str | None = None
    while len(out) < limit:
        records = instance.get_run_records(RunsFilter(), limit=100, cursor=cursor)
        if not records:
            break
        for record in records:
            selected = _selected(record)
            if entity is not None and selected and entity not in selected:
                continue  # skip reading the event log of another entity's run
            summary = _summary(instance, record, config)
            if entity is None or entity in summary.entities:
                out.append(summary)
                if len(out) >= limit:
                    break
        cursor = records[-1].dagster_run.run_id
    return out


def last_runs(
    instance: DagsterInstance, config: SyncFlowConfig, scan: int = 500
) -> dict[str, RunSummary]:
    """Each entity's newest run among the last ``scan`` runs."""
    found: dict[str, RunSummary] = {}
    for record in instance.get_run_records(RunsFilter(), limit=scan):
        selected = _selected(record)
        if selected and selected <= set(found):
            continue  # an older run of entities already found: skip its event log
        summary = _summary(instance, record, config)
        for name in summary.entities:
            found.setdefault(name, summary)
        if len(found) == len(config.entities):
            break
    return found
