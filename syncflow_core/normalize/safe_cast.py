"""Per-value casts on top of Arrow's all-or-nothing cast.

Arrow's safe cast fails the whole array on the first value that does not fit. Values that do
not fit are rare in practice, so `try_cast` casts optimistically and, only on failure,
bisects the array to isolate the offending values (O(k log n) small casts for k failures).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["as_array", "bool_mask", "cast_or_none", "scatter", "try_cast"]

BoolMask = npt.NDArray[np.bool_]

# Below this size a failing slice is cast value by value.
_LEAF = 32


def as_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array for a column (chunks concatenated)."""
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        if col.num_chunks == 0:
            return pa.array([], col.type)
        return col.combine_chunks()
    return col


def bool_mask(arr: pa.Array | pa.ChunkedArray) -> BoolMask:
    """A boolean Arrow array as numpy, null counting as False."""
    filled = pc.fill_null(as_array(arr), False)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.bool_)


def scatter(base: pa.Array, mask: BoolMask, values: pa.Array) -> pa.Array:
    """``base`` with the positions where ``mask`` is True replaced by ``values`` (in order)."""
    if not mask.any():
        return base
    if values.type != base.type:
        values = values.cast(base.type)
    return pc.replace_with_mask(base, pa.array(mask), values)


def cast_or_none(arr: pa.Array, to: pa.DataType) -> pa.Array | None:
    """``arr`` safely cast to ``to``, or None if any value does not fit."""
    try:
        return arr.cast(to, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        return None


def _bisect(arr: pa.Array, to: pa.DataType, start: int, out: list[pa.Array],
            failed: BoolMask) -> None:
    n = len(arr)
    ok = cast_or_none(arr, to)
    if ok is not None:
        out.append(ok)
        return
    if n <= _LEAF:
        for i in range(n):
            one = cast_or_none(arr.slice(i, 1), to)
            if one is None:
                failed[start + i] = True
                out.append(pa.nulls(1, to))
            else:
                out.append(one)
        return
    half = n // 2
    _bisect(arr.slice(0, half), to, start, out, failed)
    _bisect(arr.slice(half), to, start + half, out, failed)


def try_cast(arr: pa.Array, to: pa.DataType) -> tuple[pa.Array, BoolMask]:
    """Cast ``arr`` to ``to`` safely; values that cannot be cast become null and are flagged.

    Returns the cast array and a mask of the positions whose (non-null) value failed.
    """
    failed = np.zeros(len(arr), dtype=np.bool_)
    ok = cast_or_none(arr, to)
    if ok is not None:
        return ok, failed
    parts: list[pa.Array] = []
    _bisect(arr, to, 0, parts, failed)
    return pa.concat_arrays(parts) if parts else pa.array([], to), failed
