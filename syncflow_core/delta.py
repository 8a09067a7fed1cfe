"""Classify an identified batch against the identities the target holds for its key range.

`classify` splits the incoming rows into inserts, updates and unchanged, finds stored rows the
batch no longer has (deletes) and turns duplicate business keys into rejects.

Strategies:

- ``full``: every incoming row is written: stored key -> update, new key -> insert.
  ``unchanged`` is always 0. Stored live keys missing from the batch are deletes.
- ``hash``: a stored key whose ``_bridge_data_hash`` differs is an update, equal is unchanged,
  new is an insert. Stored live keys missing from the batch are deletes.
- ``rowversion``: a stored key is an update unless both row versions are non-null and equal
  (a version that cannot be compared is written rather than skipped); new is an insert. Never
  deletes: a rowversion extract only returns rows above the watermark.

In every strategy a key whose stored row is soft-deleted (``_bridge_deleted_at`` not null) is
an update, even with unchanged data: it un-deletes the row. Deletes are only computed when the
caller says the stored table is exactly the key range the batch covers (``complete_scope``).

Duplicates: incoming rows sharing a key hash are all rejected (stage ``delta``, code
``duplicate_key``) unless a row-version field exists and exactly one of them has the strictly
highest row version: that row goes on, the others are counted as ``superseded``.

The join: key hashes are joined as uint64 of their first 64 bits (parsed from hex with numpy)
in an Acero full outer join that carries only row indices; matched pairs are then verified on
the full 128-bit hex. Any prefix collision (or a duplicate stored key) falls back to joining
the full hex strings. Measured on 1M x 1M (2 cores): string-key join ~0.25-0.39 s, uint64
prefix join ~0.18 s + 2 x 0.05 s parsing, ``pc.index_in`` on strings ~0.42 s, on
fixed_size_binary(16) ~0.35 s, numpy argsort/searchsorted ~0.33 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.identity import DATA_HASH, DELETED_AT, KEY_HASH, REF, ROWVERSION
from syncflow_core.rejects import ROW_ID, empty_reject_specs, reject_specs

__all__ = ["STORED_SCHEMA", "DeltaResult", "Strategy", "classify", "empty_stored"]

Strategy = Literal["full", "rowversion", "hash"]

STORED_SCHEMA = pa.schema(
    [
        pa.field(KEY_HASH, pa.string(), nullable=False),
        pa.field(DATA_HASH, pa.string()),
        # int64 is accepted as well: whatever type the target keeps the row version in.
        pa.field(ROWVERSION, pa.string()),
        pa.field(DELETED_AT, pa.timestamp("us", "UTC")),
    ]
)
"""What the target returns for a key range (``_bridge_rowversion`` may also be int64)."""


def empty_stored(rowversion_type: pa.DataType | None = None) -> pa.Table:
    """A stored-identity table with no rows (e.g. a first sync into an empty target)."""
    schema = STORED_SCHEMA
    if rowversion_type is not None:
        schema = schema.set(2, pa.field(ROWVERSION, rowversion_type))
    return schema.empty_table()


@dataclass(frozen=True)
class DeltaResult:
    """Outcome of `classify`. ``inserts``/``updates`` are incoming rows in their batch order."""

    inserts: pa.Table
    updates: pa.Table
    unchanged: int
    deletes: pa.Array
    """Key hashes of stored live rows the batch lacks (string)."""
    rejects: pa.Table
    superseded: int


_NIBBLE = np.zeros(256, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def _prefix_u64(hexes: pa.ChunkedArray | pa.Array, what: str) -> np.ndarray:
    """First 64 bits of each 32-char hex hash as uint64 (vectorized; validates the shape)."""
    arr = hexes.combine_chunks() if isinstance(hexes, pa.ChunkedArray) else hexes
    arr = arr.cast(pa.string())
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.uint64)
    if arr.null_count:
        raise ValueError(f"{what}: {KEY_HASH} has null values")
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], np.int32, count=n + 1, offset=arr.offset * 4)
    if off[-1] - off[0] != 32 * n or not (np.diff(off) == 32).all():
        raise ValueError(f"{what}: {KEY_HASH} values must be 32 hex characters")
    raw = np.frombuffer(bufs[2], np.uint8)[off[0] : off[-1]].reshape(n, 32)[:, :16]
    nib = _NIBBLE[raw]
    packed = np.ascontiguousarray((nib[:, 0::2] << 4) | nib[:, 1::2])
    return packed.view(">u8").ravel().astype(np.uint64)


def _join_indices(
    inc_keys: pa.Array, st_keys: pa.Array, ik: np.ndarray, sk: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(incoming idx, stored idx) of matches and stored-only idx, or None if the prefix lied."""
    # Repeated prefixes on either side would multiply join rows (a target holding hashes that
    # are not ours could even make it quadratic): go straight to the full-key join then.
    if pc.count_distinct(pa.array(ik)).as_py() != len(ik):
        return None
    if pc.count_distinct(pa.array(sk)).as_py() != len(sk):
        return None
    left = pa.table({"k": ik, "i": np.arange(len(ik), dtype=np.int64)})
    right = pa.table({"k": sk, "s": np.arange(len(sk), dtype=np.int64)})
    j = left.join(right, "k", join_type="full outer")
    i = pc.fill_null(j.column("i"), -1).to_numpy()
    s = pc.fill_null(j.column("s"), -1).to_numpy()
    i_valid, s_valid = i >= 0, s >= 0
    # Each side's rows appear at least once in a full outer join; more means a prefix (or a
    # stored key) matched twice.
    if int(i_valid.sum()) != len(ik) or int(s_valid.sum()) != len(sk):
        return None
    both = i_valid & s_valid
    mi, ms = i[both], s[both]
    if len(mi) and not pc.all(
        pc.equal(inc_keys.take(pa.array(mi)), st_keys.take(pa.array(ms)))
    ).as_py():
        return None
    only_s = s[s_valid & ~i_valid]
    return mi, ms, only_s


def _join_strings(
    inc_keys: pa.Array, st_keys: pa.Array
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    st_unique = pc.count_distinct(st_keys).as_py()
    if st_unique != len(st_keys):
        raise ValueError(f"stored identities hold duplicate {KEY_HASH} values")
    pos = pc.index_in(inc_keys, value_set=st_keys)
    valid = pc.is_valid(pos).to_numpy(zero_copy_only=False)
    mi = np.nonzero(valid)[0].astype(np.int64)
    ms = pos.filter(pc.is_valid(pos)).to_numpy().astype(np.int64)
    seen = np.zeros(len(st_keys), bool)
    seen[ms] = True
    return mi, ms, np.nonzero(~seen)[0].astype(np.int64)


def _dedupe(
    incoming: pa.Table, ik: np.ndarray, rowversion_field: str | None
) -> tuple[np.ndarray, pa.Table, int]:
    """Keep-mask over incoming rows, duplicate-key reject specs and the superseded count."""
    n = incoming.num_rows
    keep = np.ones(n, bool)
    if n < 2 or len(pc.unique(pa.array(ik))) == n:
        return keep, empty_reject_specs(), 0
    counts = pc.value_counts(pa.array(ik))
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    cand = np.nonzero(pc.is_in(pa.array(ik), value_set=repeated).to_numpy(zero_copy_only=False))[0]
    sub = incoming.select([KEY_HASH]).take(pa.array(cand))
    use_rv = rowversion_field is not None and ROWVERSION in incoming.column_names
    cols = {"k": sub.column(KEY_HASH), "pos": pa.array(cand)}
    if use_rv:
        cols["rv"] = incoming.column(ROWVERSION).take(pa.array(cand))
    sub = pa.table(cols)
    # Candidates came from the 64-bit prefix: group on the full hash to drop prefix collisions.
    groups = sub.group_by("k").aggregate([("pos", "count")])
    dup_keys = groups.column("k").filter(pc.greater(groups.column("pos_count"), 1))
    sub = sub.filter(pc.is_in(sub.column("k"), value_set=dup_keys))
    losers = sub
    superseded = 0
    if use_rv and sub.num_rows:
        best = sub.group_by("k").aggregate([("rv", "max")])
        with_best = sub.join(best, "k")
        is_top = pc.fill_null(pc.equal(with_best.column("rv"), with_best.column("rv_max")), False)
        tops = with_best.filter(is_top).group_by("k").aggregate([("pos", "count")])
        single = tops.column("k").filter(pc.equal(tops.column("pos_count"), 1))
        resolved = pc.is_in(with_best.column("k"), value_set=single)
        winners = with_best.filter(pc.and_(resolved, is_top)).column("pos")
        beaten = with_best.filter(pc.and_(resolved, pc.invert(is_top))).column("pos")
        superseded = len(beaten)
        keep[beaten.to_numpy()] = False
        keep[winners.to_numpy()] = True
        losers = with_best.filter(pc.invert(resolved))
    if losers.num_rows == 0:
        return keep, empty_reject_specs(), superseded
    pos = losers.column("pos").combine_chunks()
    keep[pos.to_numpy()] = False
    lost = incoming.take(pos)
    count = losers.group_by("k").aggregate([("pos", "count")])
    per_row = pa.table({"k": losers.column("k")}).join(count, "k").column("pos_count")
    label = lost.column(REF) if REF in lost.column_names else lost.column(KEY_HASH)
    message = pc.binary_join_element_wise(
        "duplicate business key ", label, ": ", per_row.cast(pa.string()),
        " rows of the batch share it", "",
    )
    if ROW_ID not in lost.column_names:
        raise ValueError(f"incoming rows lack {ROW_ID}: run identity first")
    return keep, reject_specs(lost.column(ROW_ID), "delta", "duplicate_key", message), superseded


def _differs(a: pa.Array, b: pa.Array) -> np.ndarray:
    """True unless both are non-null and equal (types unified through text if they differ)."""
    if a.type != b.type:
        a, b = a.cast(pa.string()), b.cast(pa.string())
    eq = pc.fill_null(pc.equal(a, b), False)
    return ~np.asarray(eq.to_numpy(zero_copy_only=False), dtype=bool)


def classify(
    incoming: pa.Table,
    stored: pa.Table,
    strategy: Strategy,
    *,
    rowversion_field: str | None,
    complete_scope: bool = True,
) -> DeltaResult:
    """Split identified ``incoming`` rows against ``stored`` identities (`STORED_SCHEMA`).

    ``stored`` must hold the identities of exactly the key range the batch covers when
    ``complete_scope`` is true (deletes are computed from it for ``full``/``hash``).
    """
    if strategy not in ("full", "rowversion", "hash"):
        raise ValueError(f"unknown delta strategy {strategy!r}")
    for col in (KEY_HASH, DATA_HASH):
        if col not in incoming.column_names:
            raise ValueError(f"incoming rows lack {col}: run identity first")
    missing = [c for c in (KEY_HASH, DATA_HASH, ROWVERSION, DELETED_AT)
               if c not in stored.column_names]
    if missing:
        raise ValueError(f"stored identities lack {', '.join(missing)}")

    ik_all = _prefix_u64(incoming.column(KEY_HASH), "incoming")
    keep, rejects, superseded = _dedupe(incoming, ik_all, rowversion_field)
    if keep.all():
        rows, ik = incoming, ik_all
    else:
        rows, ik = incoming.filter(pa.array(keep)), ik_all[keep]

    inc_keys = rows.column(KEY_HASH).combine_chunks().cast(pa.string())
    st_keys = stored.column(KEY_HASH).combine_chunks().cast(pa.string())
    sk = _prefix_u64(st_keys, "stored")
    joined = _join_indices(inc_keys, st_keys, ik, sk)
    mi, ms, only_s = joined if joined is not None else _join_strings(inc_keys, st_keys)

    n = rows.num_rows
    write = np.ones(n, bool)  # new keys are inserts; matched ones decided below
    matched = np.zeros(n, bool)
    matched[mi] = True
    if len(mi):
        st_m = stored.take(pa.array(ms))
        undelete = pc.is_valid(st_m.column(DELETED_AT)).to_numpy(zero_copy_only=False)
        if strategy == "hash":
            changed = _differs(
                rows.column(DATA_HASH).take(pa.array(mi)).combine_chunks(),
                st_m.column(DATA_HASH).combine_chunks(),
            )
            write[mi] = changed | undelete
        elif strategy == "rowversion":
            if ROWVERSION not in rows.column_names:
                raise ValueError(f"incoming rows lack {ROWVERSION}: run identity first")
            changed = _differs(
                rows.column(ROWVERSION).take(pa.array(mi)).combine_chunks(),
                st_m.column(ROWVERSION).combine_chunks(),
            )
            write[mi] = changed | undelete
    inserts = rows.filter(pa.array(~matched))
    updates = rows.filter(pa.array(matched & write))
    unchanged = int((matched & ~write).sum())

    deletes = pa.array([], pa.string())
    if complete_scope and strategy in ("full", "hash") and len(only_s):
        gone = stored.select([KEY_HASH, DELETED_AT]).take(pa.array(only_s))
        live = gone.filter(pc.is_null(gone.column(DELETED_AT)))
        deletes = live.column(KEY_HASH).combine_chunks().cast(pa.string())
    return DeltaResult(inserts, updates, unchanged, deletes, rejects, superseded)
