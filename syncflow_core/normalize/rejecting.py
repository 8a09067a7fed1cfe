"""Collecting a layer's rejects column by column, each row rejected at most once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from syncflow_core.batch import StageResult
from syncflow_core.rejects import ROW_ID, concat_reject_specs, reject_specs, with_row_ids

__all__ = ["RejectCollector", "quote_value"]


def quote_value(v: object, limit: int = 80) -> str:
    """A value for a reject message: repr, cut to ``limit`` characters."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RejectCollector:
    """Accumulates (row mask, code, messages) per column; the first failure of a row wins."""

    def __init__(self, table: pa.Table, stage: str) -> None:
        self.stage = stage
        self.rejected = np.zeros(table.num_rows, dtype=np.bool_)
        self._parts: list[tuple[npt.NDArray[np.intp], str, list[str]]] = []

    def add(self, failed: npt.NDArray[np.bool_], code: str, column: str,
            values: pa.Array, reason: str) -> None:
        """Reject rows in ``failed`` (not yet rejected) with a message naming column and value.

        ``values`` is the column as it was before this layer touched it (aligned with the
        table); only the failing values are converted to Python, to build the messages.
        """
        new = failed & ~self.rejected
        if not new.any():
            return
        idx = np.flatnonzero(new)
        shown = values.take(pa.array(idx)).to_pylist()
        msgs = [f"{column}: {reason}: {quote_value(v)}" for v in shown]
        self.add_messages(idx, code, msgs)

    def add_messages(self, idx: npt.NDArray[np.intp], code: str, messages: Sequence[str]) -> None:
        """Reject rows at positions ``idx`` with ready-made messages (already-rejected skipped)."""
        keep = ~self.rejected[idx]
        idx = idx[keep]
        msgs = [m for m, k in zip(messages, keep, strict=True) if k]
        if len(idx):
            self.rejected[idx] = True
            self._parts.append((idx, code, msgs))

    def result(self, table: pa.Table) -> StageResult:
        """``table`` without the rejected rows, plus the reject specs."""
        table = with_row_ids(table)
        if not self._parts:
            return StageResult(table, concat_reject_specs([]))
        ids = table.column(ROW_ID)
        specs = [
            reject_specs(ids.take(pa.array(idx)), self.stage, code, pa.array(msgs, pa.string()))
            for idx, code, msgs in self._parts
        ]
        kept = table.filter(pa.array(~self.rejected))
        return StageResult(kept, concat_reject_specs(specs))


def ensure_row_ids(table: pa.Table) -> pa.Table:
    """The table with `ROW_ID` (added as 0..n-1 when missing)."""
    return with_row_ids(table)
