"""What every source offers: reflected columns, key-ordered chunks of a key range, key bounds.

Key ranges follow docs/CONTRACTS.md: a range is ``(lo, hi]`` over tuples of key values in key
order, ``None`` = unbounded. One extra, deliberate value: the empty tuple ``()`` is the
*bottom* of the key space (below every key, as in Python's own tuple order). ``key_bounds``
returns it when there are fewer keys than slices (an empty table included), so surplus slices
are genuinely empty ranges ``(…, ()]`` and every key, present or inserted later, still lands in
exactly one slice.

Rows whose key has a NULL are outside the key space: ``read`` never returns them (a keyset
cursor cannot step over them). ``read_null_keys`` hands them over so the caller can reject them
loudly instead of losing them.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from syncflow_core.config import SourceRef

__all__ = [
    "KeyTuple",
    "Source",
    "boundary_positions",
    "key_run_end",
    "rows_to_table",
    "value_text",
]

KeyTuple = tuple[Any, ...]


@runtime_checkable
class Source(Protocol):
    """A place rows come from (SQL database, file directory, APISmith HTTP API)."""

    def columns(self, ref: SourceRef) -> dict[str, str]:
        """Source column -> declared type text; `SourceError` naming an unknown table/file."""
        ...

    def read(
        self,
        ref: SourceRef,
        key_fields: Sequence[str],
        lo: KeyTuple | None,
        hi: KeyTuple | None,
        chunk_size: int,
        *,
        watermark_field: str | None = None,
        watermark: Any = None,
    ) -> Iterator[pa.Table]:
        """Non-empty chunks (<= chunk_size rows) of keys in ``(lo, hi]``, ordered by key."""
        ...

    def key_bounds(self, ref: SourceRef, key_fields: Sequence[str], n: int) -> list[KeyTuple]:
        """``n - 1`` ascending interior boundaries splitting the keys into ``n`` even ranges."""
        ...

    def read_null_keys(
        self, ref: SourceRef, key_fields: Sequence[str], chunk_size: int
    ) -> Iterator[pa.Table]:
        """Rows with a NULL in any key field (outside every slice), in chunks."""
        ...

    def close(self) -> None:
        """Release connections and caches."""
        ...


def boundary_positions(count: int, n: int) -> list[int]:
    """1-based row positions (in key order) of the ``n - 1`` boundaries over ``count`` keys.

    Position 0 means "no key": the boundary is the bottom ``()``. Slice ``i`` then holds about
    ``count / n`` keys, the remainder spread evenly.
    """
    if n < 1:
        raise ValueError(f"number of slices must be >= 1, got {n}")
    return [(i * count) // n for i in range(1, n)]


def value_text(value: Any) -> str:
    """Lossless text of one value of a column whose values have mixed Python types."""
    if isinstance(value, float):
        # repr is the shortest text that round-trips; str(Decimal(x)) would expose binary noise.
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.hex()
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


def _column_array(values: list[Any]) -> pa.Array:
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        # A messy column (text in a number column, huge ints): keep every value as text.
        return pa.array([None if v is None else value_text(v) for v in values], pa.string())
    if pa.types.is_null(arr.type):
        return arr.cast(pa.string())
    return arr


def rows_to_table(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Python rows -> Arrow table; a column that Arrow cannot type uniformly becomes text."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    if rows and len(cols) != len(names):
        raise ValueError(f"rows have {len(cols)} values, expected {len(names)} columns")
    return pa.table({n: _column_array(list(c)) for n, c in zip(names, cols, strict=True)})


def key_run_end(table: pa.Table, key_fields: Sequence[str], end: int) -> int:
    """``end`` moved past every following row whose key equals row ``end - 1``'s.

    A key-ordered chunk must never end inside a run of equal keys (a source without a unique
    key): the next chunk starts *after* its last key and would skip the rest of the run.
    Python values are compared only along the run (usually no row at all).
    """
    n = int(table.num_rows)
    if end <= 0 or end >= n:
        return min(max(end, 0), n)
    keys = table.select(list(key_fields))
    last = keys.slice(end - 1, 1).to_pylist()[0]
    while end < n and keys.slice(end, 1).to_pylist()[0] == last:
        end += 1
    return end
