"""Rejected rows: every stage reports, never drops.

Stages work on tables that carry a hidden row-position column (`ROW_ID`) pointing into the raw
input. A stage reports rejects as a small table of (`ROW_ID`, stage, error_code, message); the
caller turns those into full records with the raw source row as JSON (`materialize_rejects`),
so the raw row is what the source sent, not a half-cleaned copy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.utf8_check import readable_text

__all__ = [
    "REJECT_SCHEMA",
    "REJECT_SPEC_SCHEMA",
    "ROW_ID",
    "concat_reject_specs",
    "empty_reject_specs",
    "jsonable",
    "materialize_rejects",
    "reject_specs",
    "with_row_ids",
    "without_row_ids",
]

ROW_ID = "__sf_row"

REJECT_SPEC_SCHEMA = pa.schema(
    [
        pa.field(ROW_ID, pa.int64(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("error_code", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        pa.field("entity", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("error_code", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("bridge_ref", pa.string()),
        pa.field("raw_row", pa.string(), nullable=False),
        # The row's BK_HASH where its key could be read (see `syncflow_core.reject_keys`):
        # a key whose row is rejected keeps its target row and is never soft-deleted.
        pa.field("key_hash", pa.string()),
    ]
)


def with_row_ids(table: pa.Table, offset: int = 0) -> pa.Table:
    """Append `ROW_ID` (positions ``offset..offset+n``) unless the table already has it."""
    if ROW_ID in table.column_names:
        return table
    # From numpy: building it from a Python range cost ~0.2 s per 1M rows.
    ids = pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64))
    return table.append_column(pa.field(ROW_ID, pa.int64(), nullable=False), ids)


def without_row_ids(table: pa.Table) -> pa.Table:
    """Drop the hidden `ROW_ID` column if present."""
    if ROW_ID in table.column_names:
        return table.drop_columns([ROW_ID])
    return table


def empty_reject_specs() -> pa.Table:
    """A reject-spec table with no rows."""
    return REJECT_SPEC_SCHEMA.empty_table()


def reject_specs(
    row_ids: pa.Array | pa.ChunkedArray,
    stage: str,
    error_code: str | pa.Array | pa.ChunkedArray,
    message: str | pa.Array | pa.ChunkedArray,
) -> pa.Table:
    """Build reject specs for the given row ids; code/message are scalars or per-row arrays."""
    n = len(row_ids)

    def col(v: str | pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        if isinstance(v, str):
            return pa.array([v] * n, pa.string())
        return v.cast(pa.string())

    return pa.table(
        [
            row_ids.cast(pa.int64()),
            pa.array([stage] * n, pa.string()),
            col(error_code),
            col(message),
        ],
        schema=REJECT_SPEC_SCHEMA,
    )


def concat_reject_specs(parts: Sequence[pa.Table]) -> pa.Table:
    """Concatenate reject specs (empty input gives an empty table)."""
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return empty_reject_specs()
    return pa.concat_tables(
        [p.select(REJECT_SPEC_SCHEMA.names).cast(REJECT_SPEC_SCHEMA) for p in parts]
    )


def jsonable(v: Any) -> Any:
    """A row value as JSON can hold it (dates ISO, decimals as text, bytes as hex)."""
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    return v


def materialize_rejects(
    raw: pa.Table,
    specs: pa.Table,
    entity: str,
    bridge_refs: pa.Array | pa.ChunkedArray | None = None,
    key_hashes: pa.Array | pa.ChunkedArray | None = None,
) -> pa.Table:
    """Turn reject specs into records carrying the raw source row as JSON.

    ``raw`` is the input as the source sent it, with `ROW_ID`; ``bridge_refs`` and
    ``key_hashes`` (aligned with ``specs``) may give each rejected row's `_bridge_ref` and
    `_bridge_key_hash` when they are known; when not given they are taken from ``raw``'s own
    ``_bridge_ref``/``_bridge_key_hash`` columns if it has them (an identified batch).
    """
    if specs.num_rows == 0:
        return REJECT_SCHEMA.empty_table()
    if ROW_ID not in raw.column_names:
        raise ValueError(f"raw table lacks {ROW_ID}")
    ids = raw.column(ROW_ID)
    # Positions of the rejected ids within `raw` (ids need not be 0..n-1 after chunking).
    positions = pc.index_in(specs.column(ROW_ID), value_set=ids)
    taken = raw.drop_columns([ROW_ID]).take(positions)
    # Invalid UTF-8 (the reason for some of these rejects) cannot become Python text as is.
    taken = pa.table(
        [readable_text(c.combine_chunks()) for c in taken.columns], names=taken.column_names
    )
    rows = taken.to_pylist()
    raw_json = [
        json.dumps({k: jsonable(v) for k, v in r.items()}, ensure_ascii=False) for r in rows
    ]
    n = specs.num_rows
    if bridge_refs is None:
        bridge_refs = _own(raw, _REF, positions, n)
    if key_hashes is None:
        key_hashes = _own(raw, _KEY_HASH, positions, n)
    return pa.table(
        [
            pa.array([entity] * specs.num_rows, pa.string()),
            specs.column("stage"),
            specs.column("error_code"),
            specs.column("message"),
            bridge_refs.cast(pa.string()),
            pa.array(raw_json, pa.string()),
            key_hashes.cast(pa.string()),
        ],
        schema=REJECT_SCHEMA,
    )


# Spelled here, not imported: identity imports this module.
_REF = "_bridge_ref"
_KEY_HASH = "_bridge_key_hash"


def _own(raw: pa.Table, name: str, positions: pa.Array, n: int) -> pa.Array | pa.ChunkedArray:
    if name in raw.column_names:
        return raw.column(name).take(positions)
    return pa.nulls(n, pa.string())
