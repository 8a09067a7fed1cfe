"""Replay open failed records through the current config, after the source or config is fixed.

For each record the row is read afresh from the source by its business key (when the stored
raw row holds the key and the source can read by key, `SqlSource.read_rows_by_key`); otherwise
the stored raw row itself is replayed. The rows then take the sync's stages (normalize, identify,
classify against the stored row of the same key, parents) and load like a sync's. A record is
closed (status ``replayed``) when its row loads, is found unchanged, waits for a parent in
``pending_children``, is now recorded by a newer failed record, or is gone from the source;
a row failing the same way again keeps its record open (one more occurrence).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.batch import Batch
from syncflow_core.config import EntityConfig
from syncflow_core.delta import classify, empty_stored
from syncflow_core.identity import KEY_HASH
from syncflow_core.pipeline import (
    _parent_exists,
    _source_keys,
    _transactions,
    _unify_chunks,
    prepare_batch,
)
from syncflow_core.rejects import ROW_ID, materialize_rejects, with_row_ids, without_row_ids
from syncflow_core.resolve import split_by_parents
from syncflow_core.runtime import Runtime
from syncflow_core.state.store import fingerprint

__all__ = ["ReplayReport", "replay_failed"]


@dataclass
class ReplayReport:
    """What a replay did, per entity and in total."""

    records: int = 0
    closed: int = 0
    still_open: int = 0
    loaded: int = 0
    unchanged: int = 0
    pending: int = 0
    gone: int = 0
    new_failures: int = 0
    closed_ids: list[str] = field(default_factory=list)
    open_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        return asdict(self)


def replay_failed(
    rt: Runtime,
    run_id: str,
    *,
    entity: str | None = None,
    ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> ReplayReport:
    """Replay the open failed records of ``entity`` (or those ``ids``; default: all open)."""
    records = rt.state.list_failed_records(entity, status="open").to_pylist()
    if ids is not None:
        wanted = set(ids)
        records = [r for r in records if r["id"] in wanted]
    by_entity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_entity[r["entity"]].append(r)
    report = ReplayReport(records=len(records))
    for name, recs in by_entity.items():
        _replay_entity(rt, rt.entity(name), recs, run_id, now or datetime.now(UTC), report)
    report.still_open = report.records - report.closed
    return report


def _record_key(ent: EntityConfig, raw: dict[str, Any]) -> tuple[Any, ...] | None:
    """The source key of a record's raw row (None: it has none, e.g. a NULL key)."""
    src = _source_keys(ent)
    if all(raw.get(k) is not None for k in src):
        return tuple(raw[k] for k in src)
    return None


def _key_text(key: Sequence[Any]) -> str:
    return json.dumps([str(v).strip() for v in key])


def _stored_rows(raws: list[dict[str, Any]], columns: Sequence[str]) -> pa.Table:
    # The JSON keeps the source's value kinds (numbers, text), so a row failing the same way
    # again has the same raw row, hence the same failed record.
    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in raws])


def _replay_entity(
    rt: Runtime,
    ent: EntityConfig,
    records: list[dict[str, Any]],
    run_id: str,
    now: datetime,
    report: ReplayReport,
) -> None:
    source = rt.source(ent.name)
    source_types = source.columns(ent.source)
    raws = [json.loads(r["raw_row"]) for r in records]
    keys = [_record_key(ent, raw) for raw in raws]
    read_by_key = getattr(source, "read_rows_by_key", None)
    fresh_idx = [i for i, k in enumerate(keys) if k is not None] if read_by_key else []
    stored_idx = [i for i in range(len(records)) if i not in set(fresh_idx)]
    parts: list[pa.Table] = []
    owners: list[list[int]] = []  # per replayed row: the records it answers
    gone: list[int] = []
    if fresh_idx:
        wanted = list({_key_text(keys[i] or ()): keys[i] for i in fresh_idx}.values())
        fresh = read_by_key(ent.source, _source_keys(ent), wanted)  # type: ignore[misc]
        by_key: dict[str, list[int]] = defaultdict(list)
        for i in fresh_idx:
            by_key[_key_text(keys[i] or ())].append(i)
        seen: set[str] = set()
        src = _source_keys(ent)
        for row in fresh.select(src).to_pylist():
            text = _key_text([row[k] for k in src])
            owners.append(by_key.get(text, []))
            seen.add(text)
        gone = [i for i in fresh_idx if _key_text(keys[i] or ()) not in seen]
        parts.append(fresh)
    if stored_idx:
        parts.append(_stored_rows([raws[i] for i in stored_idx], list(source_types)))
        owners.extend([i] for i in stored_idx)
    raw = _unify_chunks(parts) if parts else pa.table({})
    closed: set[int] = set(gone)
    report.gone += len(gone)
    if raw.num_rows:
        closed |= _load(rt, ent, raw, owners, records, dict(source_types), run_id, now, report)
    ids = [records[i]["id"] for i in sorted(closed)]
    if ids:
        rt.state.set_failed_status(ids, "replayed")
    report.closed += len(ids)
    report.closed_ids.extend(ids)
    report.open_ids.extend(r["id"] for i, r in enumerate(records) if i not in closed)


def _load(
    rt: Runtime,
    ent: EntityConfig,
    raw: pa.Table,
    owners: list[list[int]],
    records: list[dict[str, Any]],
    source_types: dict[str, str],
    run_id: str,
    now: datetime,
    report: ReplayReport,
) -> set[int]:
    """Run the rows through the stages and load them; the record indexes that are settled."""
    batch = Batch({"raw": with_row_ids(raw)},
                  {"entity": ent.name, "slice_key": "replay", "source_types": source_types,
                   "fetched": raw.num_rows, "durations": {}})
    batch = prepare_batch(rt, ent.name, batch)
    rows, rejects = batch.table("rows"), batch.table("rejects")
    exists = rt.target.table_exists(ent.table_name)
    stored = (rt.target.identities_for(ent.table_name, rows.column(KEY_HASH)) if exists
              else empty_stored())
    result = classify(rows, stored, "hash", rowversion_field=ent.rowversion_field,
                      complete_scope=False)
    upserts = pa.concat_tables([result.inserts, result.updates], promote_options="permissive")
    bad_ids = set(result.rejects.column(ROW_ID).to_pylist())
    rejects = pa.concat_tables([rejects, materialize_rejects(rows, result.rejects, ent.name)])
    waiting = None
    if ent.parent_refs and upserts.num_rows:
        split = split_by_parents(upserts, ent, _parent_exists(rt), now=now, run_id=run_id)
        if split.rejects.num_rows:
            rejects = pa.concat_tables(
                [rejects, materialize_rejects(upserts, split.rejects, ent.name)])
            bad_ids |= set(split.rejects.column(ROW_ID).to_pylist())
        upserts, waiting = split.loadable, split.waiting
    loadable = without_row_ids(upserts)
    with _transactions(rt, ent.table_name) as (tconn, sconn):
        if loadable.num_rows:
            rt.target.ensure_table(ent.table_name, loadable.schema, ent.business_key_fields)
            rt.target.write(ent.table_name, loadable, pa.array([], pa.string()), run_id, now,
                            tconn)
            rt.state.delete_pending(ent.name, loadable.column(KEY_HASH), conn=sconn)
        if waiting is not None and waiting.num_rows:
            rt.state.upsert_pending(waiting, conn=sconn)
        report.new_failures += rt.state.add_failed_records(rejects, run_id, conn=sconn)
    report.loaded += loadable.num_rows
    report.unchanged += result.unchanged
    report.pending += 0 if waiting is None else len(pc.unique(waiting.column("key_hash")))
    # Rows that did not fail again settle their records; a row failing differently now has a
    # newer record, so its old one is settled too.
    rejected_rows = (set(range(raw.num_rows)) - set(rows.column(ROW_ID).to_pylist())) | bad_ids
    new_fps = {fingerprint(*v) for v in zip(*(rejects.column(n).to_pylist() for n in (
        "entity", "stage", "error_code", "raw_row")), strict=True)}
    settled: set[int] = set()
    for row_id, recs in enumerate(owners):
        for i in recs:
            if row_id not in rejected_rows or records[i]["fingerprint"] not in new_fps:
                settled.add(i)
    return settled
