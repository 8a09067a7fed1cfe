"""Big chunks: rows go to the workers while they are read, the result is the same."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from syncflow_core.parallel import DEFAULT_MIN_ROWS
from syncflow_core.pipeline import sync_slice
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

pytestmark = pytest.mark.slow


def test_chunks_fed_to_workers_while_read_load_exactly_once(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    chunk = DEFAULT_MIN_ROWS  # the smallest chunk that goes to the workers
    good = products(2 * chunk + 7_000)  # three chunks, the last one partial
    erp.create_products(good)
    erp.execute(  # a NULL key (read before the first chunk) and two bad values
        'INSERT INTO "PRODUCTS" ("CODE", "NAME", "PRICE", "QTY", "CREATED", "ROWVER") VALUES '
        "(NULL, 'No key', '1.00', '1', '2023-01-01', 1), "
        "('P0008B', 'Bad price', '12,3x', '1', '2023-01-01', 2), "
        "('P9999B', 'Bad date', '5.00', '1', '31.02.2023', 3)"
    )
    ent = entity_config(extra={"slices": 1, "chunk_size": chunk})
    cfg = make_config(src_url, tgt_url, {"products": ent})
    with Runtime.open(cfg, {}) as rt:
        seen = []
        counts = sync_slice(rt, "products", "slice-01", "run-1", after_chunk=seen.append)
        assert len(seen) == 3 and counts.complete
        assert (counts.inserted, counts.rejected) == (len(good), 3)
        rows = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in rows.items()} == expected(good)
        failed = {json.loads(f["raw_row"])["NAME"]: f
                  for f in rt.state.list_failed_records("products").to_pylist()}
        assert {n: f["stage"] for n, f in failed.items()} == {
            "No key": "identity", "Bad price": "numbers", "Bad date": "datetimes"}
        assert json.loads(failed["Bad price"]["raw_row"])["PRICE"] == "12,3x"

        changed = [replace(p, name=p.name + " (rev)") for p in good[5::5000]]
        for p in changed:
            erp.update_product(p)
        good = [by_code.get(p.code, p) for p in good] if (by_code := {
            c.code: c for c in changed}) else good
        again = sync_slice(rt, "products", "slice-01", "run-2")
        assert (again.inserted, again.updated, again.deleted) == (0, len(changed), 0)
        assert again.unchanged == len(good) - len(changed)
        rows = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in rows.items()} == expected(good)
    erp.close()
