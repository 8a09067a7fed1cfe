"""Where each key of a chunk ends up in the state store: waiting, failed, or neither.

Conservation: after a sync every source row of the slice is in exactly one place: live in the
target, waiting in ``pending_children`` or open in ``failed_records``. The target write puts the
loaded rows in place; `settle_chunk` makes the state store agree with it in the same
transaction, key by key:

- a key that passed the delta (it loads, is unchanged, or waits) closes its open failed
  records: its failure is over;
- a key that no longer waits (it loads, is unchanged, is rejected or left the source) leaves
  ``pending_children``; a key that waits gets exactly the waiting rows of this chunk;
- a key that left the source (soft-deleted) closes its failed records too;
- the chunk's rejects are recorded last, so a key rejected again in this very chunk (a second
  copy of a duplicate key) re-opens its record.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from syncflow_core.state.store import StateStore

__all__ = ["settle_chunk"]


def _keys(*arrays: pa.Array | pa.ChunkedArray | None) -> pa.Array:
    chunks: list[pa.Array] = []
    for a in arrays:
        if a is None or len(a) == 0:
            continue
        a = a.cast(pa.string())
        chunks.extend(a.chunks if isinstance(a, pa.ChunkedArray) else [a])
    if not chunks:
        return pa.array([], pa.string())
    out: pa.Array = pc.unique(pa.chunked_array(chunks, pa.string()).combine_chunks())
    return out.drop_null()


def _chained(*arrays: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    chunks: list[pa.Array] = []
    for a in arrays:
        a = a.cast(pa.string())
        chunks.extend(a.chunks if isinstance(a, pa.ChunkedArray) else [a])
    return pa.chunked_array(chunks, pa.string())


def settle_chunk(
    state: StateStore,
    entity: str,
    run_id: str,
    *,
    settled: pa.Array | pa.ChunkedArray,
    rejects: pa.Table,
    deletes: pa.Array | pa.ChunkedArray,
    pending: pa.Table | None,
    had_pending: bool,
    conn: sa.Connection | None,
    slice_key: str | None = None,
) -> None:
    """Bring failed records and waiting children in line with a chunk just written.

    ``settled``: key hashes of the rows that passed the delta; ``rejects``: the chunk's rejects
    (`rejects.REJECT_SCHEMA`, ``key_hash`` where known); ``deletes``: keys soft-deleted;
    ``pending``: the chunk's waiting rows (`resolve.WAITING_SCHEMA`); ``had_pending``: whether
    the entity had waiting children before (skips the per-key cleanup when it had none);
    ``slice_key``: the slice synced, recorded with its failed records.
    """
    waiting = _keys(None if pending is None else pending.column("key_hash"))
    rejected = _keys(rejects.column("key_hash") if "key_hash" in rejects.column_names else None)
    if had_pending:
        leave = _keys(settled, rejected, deletes)
        if len(waiting):
            leave = leave.filter(pc.invert(pc.is_in(leave, value_set=waiting)))
        if len(leave):
            state.delete_pending(entity, leave, conn=conn)
    if pending is not None and pending.num_rows:
        state.upsert_pending(pending, conn=conn)
    # No unique() over the chunk's keys here: the store intersects them with the (usually
    # few) open keys first, which costs one probe per key.
    state.close_failed_records(entity, _chained(settled, deletes), run_id, conn=conn)
    if rejects.num_rows:
        state.add_failed_records(rejects, run_id, conn=conn, slice_key=slice_key)
