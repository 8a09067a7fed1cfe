"""Copies of one business key that no single chunk sees together.

Duplicate business keys inside one chunk are the delta's business (`syncflow_core.delta`: every
copy a failed record, or for ``rowversion`` the highest version loads and the others are failed
records). Two shapes put copies of a key in *different* chunks, where each chunk alone would
load its copy over the other's and one source row would end nowhere:

- distinct source keys that clean to one business key (``'ab'`` and ``'ab '`` with trimming,
  ``' 1'`` and ``'01'`` as a number, ...). In the source's order they fall in different chunks
  or slices. Cleaning that merges keys also reorders them, so the later copy is always a
  *stray* of its chunk (`syncflow_core.key_scope`; cleaning that keeps the order keeps each
  chunk's cleaned range disjoint from every other chunk's): only an *unordered* entity can
  have them, and then across slices too;
- a ``rowversion`` extract reads only rows above the watermark, so an old copy and a new copy
  of one key never meet in a chunk.

The rule, the same as inside a chunk: **all copies of such a key meet in the last chunk of the
pass** and the delta decides there. When a slice's read is complete, `find_copies` scans the
source's *keys* (only the key columns, cleaned and hashed as rows are; the whole source for an
unordered entity, the slice for an ordered ``rowversion`` one), and `gather_copies` reads the
full rows of every key that occurs more than once, plus the keys recorded by the last pass
(`known_collisions`: a copy deleted since must load again), and puts them in place of the
chunk's own copies. The keys found are recorded with the chunk's commit (`save_collisions`);
chunks of the next pass hold their copies back (`held_back`) for its last chunk, so a pass
never loads a copy only to reject it at its end.

No marker on target rows is needed, so a resumed pass (killed between chunks) sees nothing new
and makes no false collision: the copies are found by reading the source, not by remembering
who wrote what. Cost: nothing for an ordered ``hash``/``full`` entity; a keys-only scan at the
end of each pass otherwise (for ``rowversion`` the one the delete reconciliation does anyway,
`syncflow_core.reconcile`, on the passes it runs); a read of full rows only while duplicated
keys exist, filtered to their few rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from syncflow_core.config import EntityConfig
from syncflow_core.reconcile import source_key_hashes
from syncflow_core.reject_keys import raw_key_hashes
from syncflow_core.rejects import ROW_ID
from syncflow_core.sources.base import KeyTuple, Source
from syncflow_core.state.store import StateStore

__all__ = [
    "Gathered",
    "Scope",
    "collision_scope",
    "find_copies",
    "gather_copies",
    "held_back",
    "known_collisions",
    "repeated_hashes",
    "save_collisions",
]

Scope = Literal["entity", "slice"]

_ENTITY_MARK = "~key-collisions"
"""The state store's watermark key (in place of a slice key) of an unordered entity's keys."""

_SCAN_CHUNK = 200_000  # source rows per chunk of the full-row read of colliding keys


def collision_scope(entity: EntityConfig, unordered: bool) -> Scope | None:
    """Where copies of one key can fall in different chunks: anywhere in an unordered entity,
    within a slice for an ordered ``rowversion`` one, nowhere else (None)."""
    if unordered:
        return "entity"
    if entity.delta_strategy == "rowversion":
        return "slice"
    return None


def _mark(slice_key: str, scope: Scope) -> str:
    return _ENTITY_MARK if scope == "entity" else f"{slice_key}/collisions"


def known_collisions(
    state: StateStore,
    entity: str,
    slice_key: str,
    scope: Scope | None,
    conn: sa.Connection | None = None,
) -> list[str]:
    """Key hashes with copies in several chunks, as the last pass over the scope found them."""
    if scope is None:
        return []
    value = state.get_watermark(entity, _mark(slice_key, scope), conn=conn)
    return [h for h in str(value).split(",") if h] if value is not None else []


def save_collisions(
    state: StateStore,
    entity: str,
    slice_key: str,
    scope: Scope,
    hashes: Sequence[str],
    conn: sa.Connection | None,
) -> None:
    """Record the scope's colliding key hashes (few: each is an open failed record)."""
    if hashes:
        state.set_watermark(entity, _mark(slice_key, scope), ",".join(sorted(hashes)), conn=conn)
    else:
        state.delete_watermark(entity, _mark(slice_key, scope), conn=conn)


def repeated_hashes(hashes: pa.Array | pa.ChunkedArray) -> list[str]:
    """The hashes that occur more than once (nulls ignored)."""
    if len(hashes) < 2:
        return []
    counts = pc.value_counts(hashes.drop_null())
    out: list[str] = counts.field("values").filter(
        pc.greater(counts.field("counts"), 1)
    ).to_pylist()
    return out


def held_back(rows: pa.Table, key_column: str, collisions: Sequence[str]) -> pa.Array:
    """Mask of the rows whose key has copies elsewhere (the pass's last chunk takes them)."""
    if not collisions or rows.num_rows == 0:
        return pa.array(np.zeros(rows.num_rows, bool))
    mask: pa.Array = pc.fill_null(
        pc.is_in(rows.column(key_column), value_set=pa.array(collisions, pa.string())), False
    )
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return mask


def find_copies(
    source: Source,
    entity: EntityConfig,
    source_types: Mapping[str, str],
    key_columns: Sequence[str],
    lo: KeyTuple | None,
    hi: KeyTuple | None,
) -> tuple[pa.Array, list[str]]:
    """(every key hash the source holds in ``(lo, hi]``, those held more than once)."""
    present = source_key_hashes(source, entity, source_types, key_columns, lo, hi)
    return present, repeated_hashes(present)


@dataclass(frozen=True)
class Gathered:
    """A chunk's rows and every copy of its scope's colliding keys."""

    own: pa.Table
    """The chunk's own rows without those keys, in their order."""
    kept: pa.Array
    """Mask over the chunk's own rows: True where the row stayed."""
    copies: list[pa.Table]
    """Every copy of the colliding keys the source holds in the range, as read."""
    copy_hashes: pa.ChunkedArray
    """Their key hashes, in order."""


def gather_copies(
    source: Source,
    entity: EntityConfig,
    source_types: Mapping[str, str],
    key_columns: Sequence[str],
    own: pa.Table,
    lo: KeyTuple | None,
    hi: KeyTuple | None,
    wanted: Sequence[str],
) -> Gathered:
    """``own``'s rows without the ``wanted`` key hashes, and every copy of those the source
    holds in ``(lo, hi]`` (read in full, filtered chunk by chunk: only those are kept)."""
    value_set = pa.array(sorted(set(wanted)), pa.string())
    own = own.drop_columns([ROW_ID]) if ROW_ID in own.column_names else own
    mine = raw_key_hashes(own, entity, source_types, key_columns)
    kept = pc.invert(pc.fill_null(pc.is_in(mine, value_set=value_set), False))
    found: list[pa.Table] = []
    found_hashes: list[pa.Array] = []
    for chunk in source.read(entity.source, key_columns, lo, hi, _SCAN_CHUNK):
        hashes = raw_key_hashes(chunk, entity, source_types, key_columns)
        hit = pc.fill_null(pc.is_in(hashes, value_set=value_set), False)
        if pc.any(hit).as_py():
            found.append(chunk.filter(hit))
            found_hashes.append(hashes.filter(hit))
    if isinstance(kept, pa.ChunkedArray):
        kept = kept.combine_chunks()
    return Gathered(own.filter(kept), kept, found, pa.chunked_array(found_hashes, pa.string()))
