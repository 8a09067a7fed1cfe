"""A one-table source keyed on text, and the check every key-order test makes of it.

The check: the source loads over several slices and small chunks, a rerun writes nothing, and
updates, inserts and deletes arrive exactly (the deleted keys, and only they, soft-deleted).
"""

from __future__ import annotations

from typing import Any

from syncflow_core.key_scope import keys_unordered
from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import Erp, make_config, sync_all

SLICES = 3
CHUNK = 4


def keyed_entity(table: str, keys: list[str], **fields: dict[str, Any]) -> dict[str, Any]:
    """Entity block: ``keys`` are the source key columns, ``V`` the one data column."""
    return {
        "source": {"connection": "erp", "table": table},
        "business_key_fields": keys,
        "fields": fields,
        "slices": SLICES,
        "chunk_size": CHUNK,
    }


def _live(rt: Runtime, entity: str, keys: list[str]) -> dict[tuple[Any, ...], str]:
    rows = rt.target.read_table(entity).to_pylist()
    return {tuple(r[k] for k in keys): r["V"] for r in rows if r["_bridge_deleted_at"] is None}


def _deleted(rt: Runtime, entity: str, keys: list[str]) -> set[tuple[Any, ...]]:
    rows = rt.target.read_table(entity).to_pylist()
    return {tuple(r[k] for k in keys) for r in rows if r["_bridge_deleted_at"] is not None}


def check_sync_exact(
    erp: Erp,
    tgt_url: str,
    table: str,
    entity: dict[str, Any],
    rows: dict[tuple[Any, ...], tuple[Any, ...]],
    *,
    update: list[tuple[Any, ...]],
    delete: list[tuple[Any, ...]],
    insert: dict[tuple[Any, ...], tuple[Any, ...]],
) -> bool:
    """Load, rerun, change, sync, rerun; assert exact results at each step.

    ``rows``/``insert`` map a source key tuple to the key tuple the target must hold
    (cleaned); ``update``/``delete`` name source keys. Values are ``'v-<source key>'``.
    Returns whether the entity ended on the order-free path (`syncflow_core.key_scope`).
    """
    keys = entity["business_key_fields"]
    cols = ", ".join(f'"{k}"' for k in keys)
    marks = ", ".join(f":k{i}" for i in range(len(keys)))

    def put(src: dict[tuple[Any, ...], tuple[Any, ...]]) -> None:
        erp.execute(
            f'INSERT INTO "{table}" ({cols}, "V") VALUES ({marks}, :v)',
            [{**{f"k{i}": v for i, v in enumerate(k)}, "v": f"v-{k}"} for k in src],
        )

    def where() -> str:
        # Byte-exact on SQLite: under NOCASE 'APPLE' = 'apple'.
        exact = " COLLATE BINARY" if erp.dialect == "sqlite" else ""
        return " AND ".join(f'"{k}"{exact} = :k{i}' for i, k in enumerate(keys))

    put(rows)
    cfg = make_config(erp.url, tgt_url, {"t": entity})
    want = {rows[k]: f"v-{k}" for k in rows}
    with Runtime.open(cfg, {}) as rt:
        first = sync_all(rt, "t", "run-1")
        assert (first.inserted, first.rejected) == (len(rows), 0)
        assert _live(rt, "t", keys) == want
        again = sync_all(rt, "t", "run-2")
        assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)
        assert again.unchanged == len(rows)

        for k in update:
            erp.execute(
                f'UPDATE "{table}" SET "V" = :v WHERE {where()}',
                {**{f"k{i}": v for i, v in enumerate(k)}, "v": f"new-{k}"},
            )
            want[rows[k]] = f"new-{k}"
        for k in delete:
            erp.execute(
                f'DELETE FROM "{table}" WHERE {where()}', {f"k{i}": v for i, v in enumerate(k)}
            )
            del want[rows[k]]
        put(insert)
        want.update({insert[k]: f"v-{k}" for k in insert})
        changed = sync_all(rt, "t", "run-3")
        assert (changed.inserted, changed.updated, changed.deleted) == (
            len(insert), len(update), len(delete)
        )
        assert _live(rt, "t", keys) == want
        assert _deleted(rt, "t", keys) == {rows[k] for k in delete}
        last = sync_all(rt, "t", "run-4")
        assert (last.inserted, last.updated, last.deleted) == (0, 0, 0)
        assert rt.state.list_failed_records("t").num_rows == 0
        return keys_unordered(rt, "t")
