"""A slice's first chunk read ahead of its sync (`read_ahead`, what the extract op starts)."""

from __future__ import annotations

from dataclasses import replace

from syncflow_core.pipeline import read_ahead, sync_slice
from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import (
    business_values,
    expected,
    products_source,
    target_rows,
)


def test_a_sync_takes_the_chunk_read_ahead_and_loads_the_whole_slice(
    engine_urls: tuple[str, str],
) -> None:
    _erp, rows, cfg = products_source(engine_urls, 450)
    with Runtime.open(cfg, {}) as rt:
        ahead = read_ahead(rt, "products", "slice-01")
        counts = sync_slice(rt, "products", "slice-01", "run-1", ahead=ahead)
        assert ahead.batch.done()
        assert counts.complete and counts.fetched == 450 and counts.inserted == 450
        got = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in got.items()} == expected(rows)


def test_a_read_ahead_overtaken_by_another_sync_is_dropped_not_loaded(
    engine_urls: tuple[str, str],
) -> None:
    """Read ahead for run 2, then run 1 syncs first and the source changes: run 2 must load
    today's rows from where run 1 left the slice, not the first chunk it read before."""
    erp, rows, cfg = products_source(engine_urls, 250)
    with Runtime.open(cfg, {}) as rt:
        # Run 1 pauses after its first chunk: the cursor moves past the first 100 keys.
        stop_after_one = iter([True])
        sync_slice(rt, "products", "slice-01", "run-1",
                   should_stop=lambda: next(stop_after_one, True))
        stale = read_ahead(rt, "products", "slice-01")  # from run 1's cursor
        stale.batch.result()
        # Another sync finishes the pass, and the first products change in the ERP.
        sync_slice(rt, "products", "slice-01", "run-1b")
        changed = [replace(p, name=p.name + " (rev)") for p in rows[:20]]
        for p in changed:
            erp.update_product(p)
        counts = sync_slice(rt, "products", "slice-01", "run-2", ahead=stale)
        # A new pass from the slice's start: every row read once, the 20 changes written.
        assert counts.complete and counts.fetched == 250
        assert counts.updated == 20 and counts.inserted == 0
        got = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in got.items()} == expected(changed + rows[20:])
