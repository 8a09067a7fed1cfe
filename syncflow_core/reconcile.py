"""Keys-only delete reconciliation for ``rowversion`` entities.

A rowversion extract reads only rows whose version is above the watermark, so a row deleted in
the source is never seen again and its target row would stay live forever. When a slice's pass
completes (every ``reconcile_deletes_every``-th pass; default every pass, 0 = never), the load
of its last chunk also reads **only the key columns** of the slice's whole range from the source
(one unordered query, no other column), hashes them like identity does, and soft-deletes the
slice's live target keys the source no longer has, in the same transaction as that chunk.

The same keys-only read also clears **waiting children gone from the source** (any strategy):
a child that waits for its parent is not in the target, so no delta sees it leave; when a
slice's pass completes and the entity has waiting children in the slice's range, those whose
key the source no longer holds stop waiting (`gone_waiting`) instead of loading when their
parent arrives. Likewise the open failed records a slice's syncs wrote: a bad row deleted
from the source before it ever loaded closes its record.

Cheap by construction: nothing is read when the slice has no live target row; otherwise one
key-only scan of the source range and one read of the target's identities of the range, joined
by hash (``bench.reconcile`` measures it at 1M keys). A key the source still holds but whose row
is bad is not deleted (its key is still read); a row whose *key* turned unreadable is a
different key (see `syncflow_core.reject_keys`), so its old key is deleted as gone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.config import EntityConfig
from syncflow_core.identity import DELETED_AT, KEY_HASH
from syncflow_core.reject_keys import raw_key_hashes
from syncflow_core.resolve import rows_from_json
from syncflow_core.sources.base import KeyTuple, Source
from syncflow_core.sources.files import key_range_mask

__all__ = ["gone_keys", "gone_waiting", "reconcile_due", "source_key_hashes"]


def reconcile_due(entity: EntityConfig, pass_no: int) -> bool:
    """Whether the pass ``pass_no`` (1-based) of a slice ends with a reconciliation."""
    every = entity.reconcile_deletes_every
    return entity.delta_strategy == "rowversion" and every > 0 and pass_no % every == 0


def source_key_hashes(
    source: Source,
    entity: EntityConfig,
    source_types: Mapping[str, str],
    key_columns: Sequence[str],
    lo: KeyTuple | None,
    hi: KeyTuple | None,
) -> pa.Array:
    """BK_HASH of every key the source holds in ``(lo, hi]`` (bad keys left out)."""
    read_keys = getattr(source, "read_keys", None)
    if read_keys is not None:
        keys: pa.Table = read_keys(entity.source, key_columns, lo, hi)
    else:  # sources without a keys-only read: their rows, key columns kept
        chunks = [
            c.select(list(key_columns))
            for c in source.read(entity.source, key_columns, lo, hi, entity.chunk_size)
        ]
        keys = (
            pa.concat_tables(chunks, promote_options="permissive")
            if chunks
            else pa.table({k: pa.array([], pa.string()) for k in key_columns})
        )
    return raw_key_hashes(keys, entity, source_types, key_columns).drop_null()


def gone_keys(
    stored: pa.Table,
    read_source_keys: Any,
) -> pa.Array:
    """Key hashes of the live ``stored`` identities (`delta.STORED_SCHEMA`) whose key is not
    among ``read_source_keys()`` (called only when there is a live stored row)."""
    live = stored.filter(pc.is_null(stored.column(DELETED_AT))).column(KEY_HASH)
    live = live.combine_chunks().cast(pa.string())
    if len(live) == 0:
        return pa.array([], pa.string())
    present: pa.Array = read_source_keys()
    if isinstance(present, pa.ChunkedArray):
        present = present.combine_chunks()
    gone: pa.Array = live.filter(pc.invert(pc.is_in(live, value_set=present)))
    return gone


def gone_waiting(
    waiting: pa.Table,
    key_schema: pa.Schema,
    lo: KeyTuple | None,
    hi: KeyTuple | None,
    read_source_keys: Callable[[], pa.Array],
) -> pa.Array:
    """Key hashes of waiting children (`state.store.PENDING_SCHEMA` rows) whose key lies in
    ``(lo, hi]`` (normalized, as the target holds keys) but is not among ``read_source_keys()``
    (called only when one lies in the range). ``key_schema``: the business-key fields' types."""
    if waiting.num_rows == 0:
        return pa.array([], pa.string())
    keys = rows_from_json(waiting.column("row_json"), key_schema)
    inside = pc.fill_null(key_range_mask(keys, key_schema.names, lo, hi), False)
    hashes = waiting.column("key_hash").filter(inside).combine_chunks()
    if len(hashes) == 0:
        return pa.array([], pa.string())
    present = read_source_keys()
    gone: pa.Array = pc.unique(hashes.filter(pc.invert(pc.is_in(hashes, value_set=present))))
    return gone
