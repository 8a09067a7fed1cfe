"""Rowversion passes over several chunks: an edit behind the cursor is never skipped."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from syncflow_core.pipeline import SyncCounts, sync_slice
from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import (
    Erp,
    business_values,
    entity_config,
    expected,
    make_config,
    products,
    target_rows,
)

N = 30  # five chunks of 7 in one slice


def test_edit_behind_the_cursor_is_picked_up_by_the_next_pass(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    source = sorted(products(N), key=lambda p: p.code)
    erp.create_products(source)
    ent: dict[str, Any] = entity_config(strategy="rowversion", extra={"slices": 1})
    cfg = make_config(src_url, tgt_url, {"products": ent})
    with Runtime.open(cfg, {}) as rt:
        assert sync_slice(rt, "products", "slice-01", "pass-1").inserted == N

        # Every row changes, so the next pass reads all five chunks.
        source = [replace(p, name=f"{p.name} v2", rowver=10_000 + i) for i, p in enumerate(source)]
        for p in source:
            erp.update_product(p)
        behind = replace(source[1], name="edited behind the cursor", rowver=50_000)
        ahead = replace(source[25], name="edited ahead of the cursor", rowver=50_001)

        def edit_after_first_chunk(counts: SyncCounts) -> None:
            if counts.fetched and behind.name not in {p.name for p in source}:
                # Chunk 1 is loaded; chunk 4 is not read yet (read-ahead reaches chunk 2).
                erp.update_product(behind)
                erp.update_product(ahead)
                source[1], source[25] = behind, ahead

        second = sync_slice(rt, "products", "slice-01", "pass-2",
                            after_chunk=edit_after_first_chunk)
        assert second.complete and second.updated == N
        rows = target_rows(rt, "products")
        assert rows[ahead.code]["name"] == ahead.name  # read in its chunk, after the edit
        assert rows[behind.code]["name"] != behind.name  # its chunk was read before the edit

        third = sync_slice(rt, "products", "slice-01", "pass-3")
        assert third.complete and third.updated == 1  # the edit behind the cursor
        rows = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in rows.items()} == expected(source)
    erp.close()
