"""The business key of a rejected row, so a key whose row turns bad is never soft-deleted.

A row rejected by normalization (a bad date, a bad number) never reaches identity, so it has no
``_bridge_key_hash`` of its own. Its key is usually fine: only its key columns are normalized
again here (the other source columns nulled, so their bad values cannot reject it again) and
hashed exactly as identity hashes them. The delta stage then spares these keys from deletion
(the target keeps the row as it was) and the failed record carries the key, so the sync that
loads the key again closes it.

A row whose *key* is bad (it cannot be normalized, or is null) gets no key hash: it is a failed
record and protects no target row. That is right: normalization is a deterministic function of
the raw key, and a key that loaded before normalized then, so a raw key that fails now is a
different key, and the target row of the old key is gone from the source (soft-deleted as
usual).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.config import EntityConfig
from syncflow_core.identity import key_hashes
from syncflow_core.normalize import normalize
from syncflow_core.rejects import ROW_ID, materialize_rejects

__all__ = ["keyed_rejects", "raw_key_hashes", "rejected_key_hashes"]


def raw_key_hashes(
    rows: pa.Table,
    entity: EntityConfig,
    source_types: Mapping[str, str],
    key_columns: Sequence[str],
) -> pa.Array:
    """BK_HASH of each raw source row (aligned with ``rows``), null where the key is bad.

    ``rows`` may hold every source column or only ``key_columns`` (the source columns the
    business key comes from): only those are normalized, the others count as null.
    """
    n = rows.num_rows
    if n == 0:
        return pa.array([], pa.string())
    keep = set(key_columns)
    names = [c for c in rows.column_names if c != ROW_ID]
    names += [c for c in source_types if c not in names]
    # Same columns (so the same normalization plan), values only in the key columns.
    cols = [
        rows.column(name) if name in keep and name in rows.column_names
        else pa.nulls(n, rows.column(name).type if name in rows.column_names else pa.string())
        for name in names
    ]
    only_keys = pa.table(cols, names=names).append_column(
        ROW_ID, pa.array(np.arange(n, dtype=np.int64))
    )
    cleaned = normalize(only_keys, entity, source_types).table
    fields = list(entity.business_key_fields)
    if cleaned.num_rows == 0 or any(f not in cleaned.column_names for f in fields):
        return pa.nulls(n, pa.string())
    hashes = key_hashes(cleaned, fields).combine_chunks()  # null where a key value is null
    if cleaned.num_rows == n:
        return hashes  # nothing dropped: row order kept
    out = np.full(n, None, dtype=object)
    out[cleaned.column(ROW_ID).to_numpy()] = hashes.to_numpy(zero_copy_only=False)
    return pa.array(out, pa.string())


def rejected_key_hashes(
    raw: pa.Table,
    specs: pa.Table,
    entity: EntityConfig,
    source_types: Mapping[str, str],
    key_columns: Sequence[str],
) -> pa.Array:
    """BK_HASH of each rejected row of ``specs`` (aligned with it), null where the key is bad.

    ``raw`` is the extract with `ROW_ID`; ``key_columns`` are the source columns the business
    key comes from.
    """
    if specs.num_rows == 0:
        return pa.array([], pa.string())
    positions = pc.index_in(specs.column(ROW_ID), value_set=raw.column(ROW_ID))
    rows = raw.drop_columns([ROW_ID]).take(positions)
    return raw_key_hashes(rows, entity, source_types, key_columns)


def keyed_rejects(
    raw: pa.Table,
    specs: pa.Table,
    entity: EntityConfig,
    source_types: Mapping[str, str],
    key_columns: Sequence[str],
) -> pa.Table:
    """`rejects.materialize_rejects` with each row's key hash (`rejected_key_hashes`)."""
    if specs.num_rows == 0:
        return materialize_rejects(raw, specs, entity.name)
    hashes = rejected_key_hashes(raw, specs, entity, source_types, key_columns)
    return materialize_rejects(raw, specs, entity.name, key_hashes=hashes)
