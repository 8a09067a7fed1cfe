"""Finding text that is not valid UTF-8 in Arrow string arrays (shared by normalize and rejects).

Arrow validates a whole array in one vectorized pass; only an array that fails it is scanned
value by value.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["RawText", "invalid_utf8", "readable_text", "scalar_value"]


def invalid_utf8(arr: pa.Array) -> npt.NDArray[np.bool_] | None:
    """Rows of a string array whose bytes are not valid UTF-8; None when all are valid."""
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        return None
    data = arr.buffers()[2]
    if data is None or not len(data) or np.frombuffer(data, np.uint8).max() < 0x80:
        return None  # ASCII is UTF-8 (one max over the bytes: ~6x cheaper than validating)
    try:
        arr.validate(full=True)
        return None
    except pa.ArrowInvalid:
        pass
    raw = arr.view(pa.binary() if pa.types.is_string(arr.type) else pa.large_binary())
    bad = np.zeros(len(arr), dtype=np.bool_)
    for i, value in enumerate(raw.to_pylist()):  # only a column that failed validation
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                bad[i] = True
    return bad if bad.any() else None


def readable_text(arr: pa.Array) -> pa.Array:
    """``arr`` with every invalid UTF-8 value re-decoded with ``\\xNN`` escapes."""
    bad = invalid_utf8(arr)
    if bad is None:
        return arr
    raw = arr.view(pa.binary() if pa.types.is_string(arr.type) else pa.large_binary())
    values = [
        None if v is None else v.decode("utf-8", "backslashreplace") for v in raw.to_pylist()
    ]
    return pa.array(values, pa.string())


class RawText(bytes):
    """A text value whose bytes are not UTF-8 (a key a cursor or slice bound must name).

    It binds back to the source as text with exactly these bytes, so keyset paging can step
    over it; normalization rejects the row that holds it.
    """

    def __repr__(self) -> str:
        return f"RawText({bytes(self)!r})"


def scalar_value(col: pa.ChunkedArray | pa.Array, i: int) -> object:
    """Value ``i`` of a column as Python; invalid UTF-8 text as `RawText` instead of an error."""
    try:
        return col[i].as_py()
    except UnicodeDecodeError:
        one = col.slice(i, 1)
        arr = one.combine_chunks() if isinstance(one, pa.ChunkedArray) else one
        wide = pa.types.is_large_string(arr.type)
        return RawText(arr.view(pa.large_binary() if wide else pa.binary())[0].as_py())
