"""Initial load, source changes and no-change reruns, end to end on real databases."""

from __future__ import annotations

from datetime import datetime

import pytest

from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import (
    Erp,
    Product,
    bump,
    business_values,
    entity_config,
    expected,
    key_hashes_unique,
    live,
    make_config,
    products,
    sync_all,
    target_rows,
)

N = 40


def _assert_matches(rows: dict[str, dict[str, object]], want: list[Product]) -> None:
    got = {k: business_values(r) for k, r in live(rows).items()}
    assert got == expected(want)


@pytest.mark.parametrize("strategy", ["hash", "rowversion", "full"])
def test_initial_load_changes_and_rerun(engine_urls: tuple[str, str], strategy: str) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    source = products(N)
    erp.create_products(source)
    cfg = make_config(src_url, tgt_url, {"products": entity_config(strategy=strategy)})
    rt = Runtime.open(cfg, {})
    try:
        # ---- initial load: every row, normalized, tracked
        c1 = sync_all(rt, "products", "run-1")
        assert (c1.fetched, c1.inserted, c1.updated, c1.deleted, c1.rejected) == (N, N, 0, 0, 0)
        rows1 = target_rows(rt, "products")
        _assert_matches(rows1, source)
        for r in rows1.values():
            assert r["_bridge_batch_id"] == "run-1"
            assert isinstance(r["_bridge_synced_at"], datetime)
            assert len(r["_bridge_key_hash"]) == 32 and len(r["_bridge_data_hash"]) == 32
            assert r["_bridge_ref"] == f"products[code={r['code']}]"
            assert r["_bridge_deleted_at"] is None
            if strategy == "rowversion":
                assert int(r["_bridge_rowversion"]) == r["rowver"]
        assert key_hashes_unique(rt, "products")
        for key in ("slice-01", "slice-02", "slice-03"):
            cur = rt.state.get_cursor("products", key)
            assert cur is not None and cur.status == "done" and cur.pass_no == 2

        # ---- a rerun with no source change
        c2 = sync_all(rt, "products", "run-2")
        rows2 = target_rows(rt, "products")
        if strategy == "full":  # replace semantics: every row is rewritten, none inserted
            assert (c2.inserted, c2.updated, c2.deleted) == (0, N, 0)
            assert {r["_bridge_batch_id"] for r in rows2.values()} == {"run-2"}
        else:
            assert (c2.inserted, c2.updated, c2.deleted) == (0, 0, 0)
            if strategy == "hash":
                assert c2.unchanged == N
            assert {k: r["_bridge_batch_id"] for k, r in rows2.items()} == {
                k: "run-1" for k in rows1
            }
            assert all(rows2[k]["_bridge_synced_at"] == rows1[k]["_bridge_synced_at"]
                       for k in rows1)
        if strategy == "rowversion":
            # Only rows above the pass floor come back (see test_rowversion), all unchanged.
            assert c2.unchanged == c2.fetched < N
        _assert_matches(rows2, source)

        # ---- changes: 3 updates, 2 inserts (middle and end), 2 deletes, a new column
        by_code = {p.code: p for p in source}
        changed = [
            bump(by_code["P0003"], price=by_code["P0003"].price + 1),
            bump(by_code["P0020"], name="Renamed 20"),
            bump(by_code["P0039"], qty=999),
        ]
        for p in changed:
            erp.update_product(p)
        new = [Product("P0020A", "Inserted mid", source[0].price, 1,
                       source[0].created, 9000),
               Product("P0100", "Inserted end", source[1].price, 2, source[1].created, 9001)]
        erp.insert_products(new)
        erp.delete_products(["P0010", "P0030"])
        erp.execute('ALTER TABLE "PRODUCTS" ADD COLUMN "COLOR" TEXT')
        # A run opens its own Runtime (as each Dagster step does), so it sees the new column.
        rt.close()
        rt = Runtime.open(cfg, {})
        before = target_rows(rt, "products")
        c3 = sync_all(rt, "products", "run-3")
        rows3 = target_rows(rt, "products")
        now_source = [by_code[k] for k in by_code if k not in ("P0010", "P0030")]
        now_source = [next((c for c in changed if c.code == p.code), p) for p in now_source]
        now_source += new
        touched = {p.code for p in changed} | {p.code for p in new}
        if strategy == "rowversion":
            # A rowversion extract sees only rows above the watermark; the deletes come from
            # the keys-only reconciliation at the end of each slice's pass.
            assert c3.fetched == 5
            assert (c3.inserted, c3.updated, c3.deleted) == (2, 3, 2)
            assert live(rows3).keys() == {p.code for p in now_source}
            _assert_matches(
                {k: v for k, v in rows3.items() if k not in ("P0010", "P0030")}, now_source
            )
        else:
            want_updated = 3 if strategy == "hash" else N - 2
            assert (c3.inserted, c3.updated, c3.deleted) == (2, want_updated, 2)
            _assert_matches(rows3, now_source)
            for gone in ("P0010", "P0030"):
                assert rows3[gone]["_bridge_deleted_at"] is not None
                assert rows3[gone]["_bridge_batch_id"] == "run-3"
        for k, r in rows3.items():
            if k in touched or (strategy == "full" and k in live(rows3)):
                assert r["_bridge_batch_id"] == "run-3", k
                if k in before:
                    assert r["_bridge_synced_at"] > before[k]["_bridge_synced_at"], k
            elif k not in ("P0010", "P0030"):
                assert r["_bridge_batch_id"] == before[k]["_bridge_batch_id"], k
                assert r["_bridge_synced_at"] == before[k]["_bridge_synced_at"], k
        assert key_hashes_unique(rt, "products")

        # ---- the new column carries a value for one row: that row (and only it) updates
        colored = bump(by_code["P0005"], color="red")
        erp.update_product(colored)
        c4 = sync_all(rt, "products", "run-4")
        rows4 = target_rows(rt, "products")
        assert rows4["P0005"].get("COLOR") == "red"
        assert rows4["P0005"]["_bridge_batch_id"] == "run-4"
        if strategy != "full":
            assert (c4.inserted, c4.updated, c4.deleted) == (0, 1, 0)
            assert sum(r["_bridge_batch_id"] == "run-4" for r in rows4.values()) == 1

        # ---- a deleted key comes back: the row is un-deleted, not doubled
        erp.insert_products([by_code["P0010"]])
        if strategy == "rowversion":
            erp.execute('UPDATE "PRODUCTS" SET "ROWVER" = 10000000 WHERE TRIM("CODE") = \'P0010\'')
        c5 = sync_all(rt, "products", "run-5")
        rows5 = target_rows(rt, "products")
        assert rows5["P0010"]["_bridge_deleted_at"] is None
        assert rows5["P0010"]["_bridge_batch_id"] == "run-5"
        assert c5.inserted == 0 and c5.updated >= 1
        assert len(rows5) == N + 2  # every key ever seen, once
        assert key_hashes_unique(rt, "products")

        # ---- and a final rerun writes nothing
        if strategy != "full":
            c6 = sync_all(rt, "products", "run-6")
            assert (c6.inserted, c6.updated, c6.deleted) == (0, 0, 0)
            rows6 = target_rows(rt, "products")
            assert {k: r["_bridge_batch_id"] for k, r in rows6.items()} == {
                k: r["_bridge_batch_id"] for k, r in rows5.items()
            }
    finally:
        rt.close()
        erp.close()
