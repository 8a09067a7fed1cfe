"""The fused prepare stage that `sync_slice` uses equals the Dagster ops' two stages."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from syncflow_core.parallel import DEFAULT_MIN_ROWS
from syncflow_core.pipeline import extract, identify_batch, normalize_batch, prepare_batch
from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import Erp, entity_config, make_config, products, sqlite_urls


def _sorted(table: pa.Table, by: str) -> list[dict[str, object]]:
    return table.sort_by(by).to_pylist()


def test_prepare_equals_normalize_then_identify_on_the_workers(tmp_path: Path) -> None:
    src_url, tgt_url = sqlite_urls(tmp_path)
    erp = Erp(src_url)
    n = DEFAULT_MIN_ROWS + 5_000  # large enough for the worker processes
    erp.create_products(products(n))
    erp.execute(  # rejects of three different stages, each must keep its raw row
        'INSERT INTO "PRODUCTS" ("CODE", "NAME", "PRICE", "QTY", "CREATED", "ROWVER") VALUES '
        "(NULL, 'No key', '1.00', '1', '2023-01-01', 1), "
        "('P0008B', 'Bad price', '12,3x', '1', '2023-01-01', 2), "
        "('P0015B', 'Bad date', '5.00', '1', '31.02.2023', 3)"
    )
    cfg = make_config(src_url, tgt_url, {"products": entity_config(
        extra={"slices": 1, "chunk_size": 2 * n})})
    with Runtime.open(cfg, {}) as rt:
        raw = extract(rt, "products", "slice-01")
        assert raw.info["fetched"] == n + 3
        fused = prepare_batch(rt, "products", raw)
        staged = identify_batch(rt, "products", normalize_batch(rt, "products", raw))
        assert set(fused.tables) == set(staged.tables) == {"rows", "rejects"}
        assert fused.table("rows").num_rows == n
        assert _sorted(fused.table("rows"), "_bridge_key_hash") == _sorted(
            staged.table("rows"), "_bridge_key_hash")
        assert _sorted(fused.table("rejects"), "raw_row") == _sorted(
            staged.table("rejects"), "raw_row")
        assert sorted(fused.table("rejects").column("stage").to_pylist()) == [
            "datetimes", "identity", "numbers"]
    erp.close()
