"""A first load reads one big first chunk (bulk-loaded); later chunks and passes do not."""

from __future__ import annotations

from dataclasses import replace

import pytest

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


def test_first_load_takes_one_big_chunk_then_the_configured_size(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    good = products(1_000)
    erp.create_products(good)
    ent = entity_config(extra={"slices": 1, "chunk_size": 100, "first_load_chunk_size": 700})
    cfg = make_config(src_url, tgt_url, {"products": ent})
    with Runtime.open(cfg, {}) as rt:
        seen: list[int] = []
        counts = sync_slice(rt, "products", "slice-01", "run-1",
                            after_chunk=lambda c: seen.append(c.fetched))
        # 700 into the empty table, then the configured 100 per chunk for the rest.
        # (A full last chunk is followed by an empty one that closes the pass.)
        assert [n for n in seen if n] == [700, 100, 100, 100] and counts.complete
        assert counts.inserted == len(good)
        rows = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in rows.items()} == expected(good)

        changed = [replace(p, name=p.name + " (rev)") for p in good[::50]]
        for p in changed:
            erp.update_product(p)
        seen.clear()
        again = sync_slice(rt, "products", "slice-01", "run-2",
                           after_chunk=lambda c: seen.append(c.fetched))
        assert [n for n in seen if n] == [100] * 10  # rows stored now: no big first chunk
        assert (again.inserted, again.updated, again.deleted) == (0, len(changed), 0)
    erp.close()


def test_without_the_setting_every_chunk_has_the_configured_size(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.create_products(products(250))
    ent = entity_config(extra={"slices": 1, "chunk_size": 100})
    cfg = make_config(src_url, tgt_url, {"products": ent})
    with Runtime.open(cfg, {}) as rt:
        seen: list[int] = []
        sync_slice(rt, "products", "slice-01", "run-1",
                   after_chunk=lambda c: seen.append(c.fetched))
        assert [n for n in seen if n] == [100, 100, 50]
    erp.close()


@pytest.mark.parametrize("size", [0, -5])
def test_a_first_load_chunk_size_below_one_is_a_config_error(size: int) -> None:
    from pydantic import ValidationError

    from syncflow_core.config import EntityConfig

    body = entity_config(extra={"first_load_chunk_size": size})
    with pytest.raises(ValidationError, match="first_load_chunk_size"):
        EntityConfig.model_validate({"name": "products", **body})
