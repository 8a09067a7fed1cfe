"""Deletes that stay exact when cleaning reorders the business key.

Chunks are cut in the source's key order, and a chunk's deletes normally come from the target
rows in the chunk's *cleaned* key range: fast, and exact as long as cleaning keeps the order.
It does not always: a key with a leading space (``' z'`` sorts before ``'a'``, ``'z'`` after),
a control character, a date held as ``DD.MM.YYYY`` text, a number held as text. A chunk's
cleaned range would then hold rows other chunks carry, and delete them.

So every chunk is checked: when one of its cleaned keys leaves its cleaned range (a *stray*),
or its bounds do not survive cleaning, the entity is marked *unordered* in the state store,
for good. From then on its chunks:

- read what the target holds for them by key hash, not by key range (`stored_by_hash`);
- delete nothing by range;
- and when a slice's pass completes, the live target keys that no source row produces any
  more are soft-deleted: the source's keys are read and cleaned exactly as rows are (only the
  key columns, so a row whose other values are bad keeps its key), hashed, and compared with
  the target's. Order-free, so exact in any collation and for any cleaning. The pipeline does
  this with the read that also finds copies of a key in several chunks, in the last chunk's
  transaction (`syncflow_core.collisions`); `reconcile_deletes` is the same on its own.

The first load marks an unordered entity before anything could be deleted. An entity whose
source adds its first stray later may see one chunk delete another chunk's row in that pass;
the owning chunk writes it back in the same pass (a soft-deleted stored row is an update).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.batch import StageResult
from syncflow_core.config import EntityConfig
from syncflow_core.delta import empty_stored
from syncflow_core.identity import DELETED_AT, KEY_HASH, key_hashes
from syncflow_core.normalize import (
    apply_mappings,
    clean_strings,
    coerce_types,
    parse_datetimes,
    parse_numbers,
)
from syncflow_core.normalize.utf8 import reject_invalid_utf8
from syncflow_core.runtime import Runtime
from syncflow_core.sources.files import key_range_mask
from syncflow_core.sources.sql import SqlSource

__all__ = [
    "UNORDERED_MARK",
    "keys_unordered",
    "mark_keys_unordered",
    "normalize_keys",
    "reconcile_deletes",
    "stored_by_hash",
    "stray_count",
]

UNORDERED_MARK = "~keys-unordered"
"""The state store's watermark key (in place of a slice key) that marks an entity unordered."""

_SCAN_CHUNK = 200_000  # source rows per chunk of the reconciliation's key scan


# What a runtime has learnt of the mark, per entity. Every chunk asks twice (its stored-side
# read and its delta), and a state-store round trip each cost ~10 ms per chunk. Only one run
# writes an entity at a time, and only this module sets the mark, so the answer holds for the
# runtime's life.
_marks: weakref.WeakKeyDictionary[Runtime, dict[str, bool]] = weakref.WeakKeyDictionary()


def keys_unordered(rt: Runtime, entity: str) -> bool:
    """Whether the entity's cleaned keys are known not to keep the source's order."""
    known = _marks.setdefault(rt, {})
    if entity not in known:
        known[entity] = rt.state.get_watermark(entity, UNORDERED_MARK) is not None
    return known[entity]


def mark_keys_unordered(rt: Runtime, entity: str) -> None:
    """Record, for good, that the entity's cleaned keys do not keep the source's order."""
    rt.state.set_watermark(entity, UNORDERED_MARK, 1)
    _marks.setdefault(rt, {})[entity] = True


def stray_count(
    rows: pa.Table,
    key_fields: Sequence[str],
    lo: tuple[Any, ...] | None,
    hi: tuple[Any, ...] | None,
) -> int:
    """Rows whose cleaned key lies outside the chunk's cleaned range ``(lo, hi]``."""
    if not rows.num_rows or (lo is None and hi is None):
        return 0
    inside = key_range_mask(rows, key_fields, lo, hi)
    return int(rows.num_rows) - int(pc.sum(pc.cast(inside, pa.int64())).as_py() or 0)


def normalize_keys(
    ent: EntityConfig,
    source_types: dict[str, str],
    source_keys: Sequence[str],
    table: pa.Table,
) -> StageResult:
    """Source key columns cleaned as the rows' are: layers 1-4, then the mappings that touch
    only key fields (renames, ``upper``, ``value_map``, …). Other columns are not needed."""
    src = list(source_keys)
    table = table.select(src)
    types = {k: v for k, v in source_types.items() if k in src}
    result = reject_invalid_utf8(table)  # a key that is not UTF-8 is a bad key, no crash
    for layer in (coerce_types, clean_strings, parse_numbers, parse_datetimes):
        result = layer(result.table, ent, types)
    names = set(src) | set(ent.business_key_fields)
    mappings = [m for m in ent.field_mappings if m.field in names and m.op != "drop"]
    return apply_mappings(result.table, ent, mappings=mappings)


def stored_by_hash(rt: Runtime, ent: EntityConfig, hashes: pa.ChunkedArray) -> pa.Table:
    """What the target holds for these key hashes (soft-deleted rows included)."""
    if not len(hashes) or not rt.target.table_exists(ent.table_name):
        return empty_stored()
    stored: pa.Table = rt.target.identities_for(ent.table_name, hashes)
    return stored


def _source_key_hashes(
    rt: Runtime, ent: EntityConfig, source_types: dict[str, str], source_keys: Sequence[str]
) -> pa.Array:
    source = rt.source(ent.name)
    keys = list(source_keys)
    # Only the key columns where the source can (a SQL query); files and APIs send rows.
    chunks = (
        source.read(ent.source, keys, None, None, _SCAN_CHUNK, columns=keys)
        if isinstance(source, SqlSource)
        else source.read(ent.source, keys, None, None, _SCAN_CHUNK)
    )
    found: list[pa.Array] = []
    for chunk in chunks:
        cleaned = normalize_keys(ent, source_types, source_keys, chunk).table
        valid = pc.is_valid(cleaned.column(ent.business_key_fields[0]))
        for k in ent.business_key_fields[1:]:
            valid = pc.and_(valid, pc.is_valid(cleaned.column(k)))
        hashes = key_hashes(cleaned.filter(valid), ent.business_key_fields)
        found.extend(hashes.chunks)
    return pa.concat_arrays(found) if found else pa.array([], pa.string())


def reconcile_deletes(
    rt: Runtime,
    ent: EntityConfig,
    source_types: dict[str, str],
    source_keys: Sequence[str],
    run_id: str,
) -> int:
    """Soft-delete the live target rows whose key no source row produces; return how many.

    The target's keys are read first: a row the source gains meanwhile is not in them.
    """
    if not rt.target.table_exists(ent.table_name):
        return 0
    stored = rt.target.read_identities(ent.table_name, ent.business_key_fields, None, None)
    live = stored.filter(pc.is_null(stored.column(DELETED_AT))).column(KEY_HASH)
    if not len(live):
        return 0
    present = _source_key_hashes(rt, ent, source_types, source_keys)
    gone = pc.filter(live, pc.invert(pc.is_in(live, value_set=present)))
    if not len(gone):
        return 0
    with rt.target.begin() as conn:
        rt.target.lock_for_write(conn, ent.table_name)
        counts = rt.target.write(
            ent.table_name,
            rt.target.arrow_schema(ent.table_name).empty_table(),
            gone.combine_chunks(),
            run_id,
            datetime.now(UTC),
            conn,
        )
    return int(counts.deleted)
