"""Text that is not UTF-8: found per column, turned into failed records, never a crash.

A SQLite ``TEXT`` may hold any bytes, and a PostgreSQL ``SQL_ASCII`` database stores bytes
unchecked; ADBC hands them over as Arrow strings without validating them. Invalid UTF-8 (a
stray Latin-1 byte, CESU-8 surrogate halves ``ED A0 80``, overlong forms) then makes vectorized
kernels (NFC normalization, regexes) fail for the whole chunk. Arrow validates a whole array
in one vectorized pass; only a column that fails it is scanned value by value
(`syncflow_core.utf8_check`), to find the rows to reject (stage ``strings``, code
``invalid_utf8``). Their raw rows are kept with the bad bytes shown as ``\\xNN`` escapes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from syncflow_core.batch import StageResult
from syncflow_core.normalize.rejecting import RejectCollector, ensure_row_ids
from syncflow_core.normalize.safe_cast import as_array
from syncflow_core.rejects import ROW_ID
from syncflow_core.utf8_check import invalid_utf8

__all__ = ["CODE", "reject_invalid_utf8"]

CODE = "invalid_utf8"
STAGE = "strings"


def reject_invalid_utf8(table: pa.Table) -> StageResult:
    """The table without its rows holding invalid UTF-8 text, and their reject specs."""
    table = ensure_row_ids(table)
    rc = RejectCollector(table, STAGE)
    for i, field in enumerate(table.schema):
        if field.name == ROW_ID:
            continue
        bad = invalid_utf8(as_array(table.column(i)))
        if bad is not None:
            idx = np.flatnonzero(bad)
            msg = f"{field.name}: text is not valid UTF-8 (a byte sequence no encoder writes)"
            rc.add_messages(idx, CODE, [msg] * len(idx))
    return rc.result(table)
