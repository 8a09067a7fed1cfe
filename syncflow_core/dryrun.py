"""A dry run of a sync: what it would insert, update, soft-delete, reject and hold back.

The same stages as a sync (`pipeline`): read the slice from where a sync would start, normalize,
identify, classify against the target, check parents; then stop before the load. Nothing is
written anywhere: no target row, no failed record, no pending child, no cursor and no slice
plan (a slice plan not yet stored is computed in memory); open the `Runtime` with
``migrate=False`` so the state store is not migrated either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.identity import KEY_HASH, REF
from syncflow_core.keycodec import decode_key
from syncflow_core.pipeline import (
    OP,
    _read,
    _read_plan,
    delta_batch,
    prepare_batch,
    resolve_batch,
)
from syncflow_core.rejects import jsonable, without_row_ids
from syncflow_core.runtime import Runtime
from syncflow_core.slices import slice_keys

__all__ = ["DiffReport", "diff_entity"]

KINDS = ("insert", "update", "delete", "reject", "pending")


@dataclass
class DiffReport:
    """Counts of what a sync would do, with a few example rows of each kind."""

    entity: str
    slices: list[str]
    fetched: int = 0
    insert: int = 0
    update: int = 0
    unchanged: int = 0
    delete: int = 0
    reject: int = 0
    pending: int = 0
    samples: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {k: [] for k in KINDS}
    )

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        return asdict(self)


def _rows(table: pa.Table, n: int) -> list[dict[str, Any]]:
    shown = [c for c in table.column_names if not c.startswith("_bridge_") or c == REF]
    shown = [c for c in shown if c != OP and not c.startswith("__sf")]
    rows = table.select(shown).slice(0, n).to_pylist()
    return [{k: jsonable(v) for k, v in r.items()} for r in rows]


def _add_sample(report: DiffReport, kind: str, rows: list[dict[str, Any]], n: int) -> None:
    room = n - len(report.samples[kind])
    if room > 0:
        report.samples[kind].extend(rows[:room])


def diff_entity(
    rt: Runtime, entity: str, slices: Sequence[str] | None = None, *, sample: int = 5
) -> DiffReport:
    """What syncing ``slices`` (default: all) of ``entity`` now would change; writes nothing."""
    ent = rt.entity(entity)
    keys = list(slices) if slices else slice_keys(ent.slice_count)
    report = DiffReport(entity, keys)
    for key in keys:
        plan, start = _read_plan(rt, entity, key, save_plan=False)
        while True:
            batch = _read(rt, plan, start, 1, None)
            report.fetched += int(batch.info["fetched"])
            batch = prepare_batch(rt, entity, batch)
            batch = delta_batch(rt, entity, key, batch)
            batch = resolve_batch(rt, entity, batch)
            _count(rt, report, batch.tables, batch.info, ent.table_name, sample)
            if batch.info["complete"]:
                break
            start = decode_key(batch.info["end"])
    return report


def _count(
    rt: Runtime,
    report: DiffReport,
    tables: Mapping[str, pa.Table],
    info: Mapping[str, Any],
    table_name: str,
    sample: int,
) -> None:
    upserts = without_row_ids(tables["upserts"])
    ops = upserts.column(OP) if upserts.num_rows else pa.chunked_array([], pa.string())
    inserts = upserts.filter(pc.equal(ops, "i")) if upserts.num_rows else upserts
    updates = upserts.filter(pc.equal(ops, "u")) if upserts.num_rows else upserts
    report.insert += inserts.num_rows
    report.update += updates.num_rows
    report.unchanged += int(info.get("unchanged", 0))
    _add_sample(report, "insert", _rows(inserts, sample), sample)
    _add_sample(report, "update", _rows(updates, sample), sample)
    deletes = [h for h in tables["deletes"].column(KEY_HASH).to_pylist() if h is not None]
    report.delete += len(deletes)
    if deletes and len(report.samples["delete"]) < sample:
        shown = deletes[: sample - len(report.samples["delete"])]
        refs = rt.target.refs_for(table_name, shown)
        _add_sample(report, "delete",
                    [{KEY_HASH: h, REF: refs.get(h)} for h in shown], sample)
    rejects = tables["rejects"]
    report.reject += rejects.num_rows
    _add_sample(report, "reject", rejects.select(
        ["stage", "error_code", "message", "bridge_ref", "raw_row"]).slice(0, sample).to_pylist(),
        sample)
    pending = tables.get("pending")
    if pending is not None and pending.num_rows:
        report.pending += len(pc.unique(pending.column("key_hash")))
        cols = [c for c in ("key_hash", "parent_entity", "parent_key") if c in pending.column_names]
        _add_sample(report, "pending", _rows(pending.select(cols), sample), sample)
