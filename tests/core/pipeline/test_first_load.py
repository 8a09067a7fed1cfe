"""A first load streams every chunk into the empty table with its indexes dropped, built once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from syncflow_core.config import parse_config
from syncflow_core.errors import ConfigError
from syncflow_core.pipeline import first_load, sync_slice
from syncflow_core.runtime import Runtime
from tests.core.pipeline.conftest import pg_pair
from tests.core.pipeline.erp import (
    business_values,
    entity_config,
    expected,
    make_config,
    products_source,
    target_rows,
)

pytestmark = pytest.mark.postgres


def _indexes(rt: Runtime, table: str) -> set[str]:
    with rt.target.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = :t"),
                            {"t": table})
        return {r[0] for r in rows}


@pytest.fixture
def pg_urls(request: pytest.FixtureRequest) -> tuple[str, str]:
    return pg_pair(request)


def test_every_chunk_of_a_first_load_is_copied_in_and_the_indexes_are_built_once(
    pg_urls: tuple[str, str],
) -> None:
    erp, good, cfg = products_source(pg_urls, 1_000)
    with Runtime.open(cfg, {}) as rt:
        during: list[set[str]] = []
        seen: list[int] = []

        def chunk_done(counts: Any) -> None:
            seen.append(counts.fetched)
            during.append(_indexes(rt, "products"))

        counts = sync_slice(rt, "products", "slice-01", "run-1", after_chunk=chunk_done)
        # Chunks of the configured size, every one committed with no index on the table.
        assert [n for n in seen if n] == [100] * 10 and counts.complete
        assert all(names == set() for names in during)
        assert _indexes(rt, "products") == {"products_bkh_uq", "products_bk_ix"}
        assert counts.inserted == len(good)
        rows = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in rows.items()} == expected(good)

        # The table holds rows now: a rerun classifies against them, indexes stay.
        changed = [replace(p, name=p.name + " (rev)") for p in good[::50]]
        for p in changed:
            erp.update_product(p)
        during.clear()
        again = sync_slice(rt, "products", "slice-01", "run-2", after_chunk=chunk_done)
        assert (again.inserted, again.updated, again.deleted) == (0, len(changed), 0)
        assert all(names == {"products_bkh_uq", "products_bk_ix"} for names in during)
    erp.close()


def test_a_first_load_that_fails_midway_keeps_its_chunks_and_its_indexes(
    pg_urls: tuple[str, str],
) -> None:
    erp, good, cfg = products_source(pg_urls, 500)

    class Crash(RuntimeError):
        pass

    def crash_after_two(counts: Any) -> None:
        if counts.fetched and len(target_rows(rt, "products")) >= 200:
            raise Crash

    with Runtime.open(cfg, {}) as rt:
        with pytest.raises(Crash):
            sync_slice(rt, "products", "slice-01", "run-1", after_chunk=crash_after_two)
        assert _indexes(rt, "products") == {"products_bkh_uq", "products_bk_ix"}
        assert len(target_rows(rt, "products")) == 200
        resumed = sync_slice(rt, "products", "slice-01", "run-2")
        assert resumed.fetched == 300 and resumed.inserted == 300
        rows = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in rows.items()} == expected(good)
    erp.close()


def test_a_table_left_without_indexes_by_a_killed_first_load_gets_them_back(
    pg_urls: tuple[str, str],
) -> None:
    erp, _rows, cfg = products_source(pg_urls, 300)
    with Runtime.open(cfg, {}) as rt:
        sync_slice(rt, "products", "slice-01", "run-1")
    # What a kill -9 between two chunks of a first load leaves: rows, no indexes.
    with Runtime.open(cfg, {}) as rt, rt.target.engine.begin() as conn:
        conn.execute(sa.text('DROP INDEX "products_bkh_uq"'))
        conn.execute(sa.text('DROP INDEX "products_bk_ix"'))
    with Runtime.open(cfg, {}) as rt:
        assert rt.target.unique_key_index("products") is None
        sync_slice(rt, "products", "slice-01", "run-2")
        assert _indexes(rt, "products") == {"products_bkh_uq", "products_bk_ix"}
        assert rt.target.unique_key_index("products") == "products_bkh_uq"
    erp.close()


def test_a_failed_chunk_rolls_back_its_index_drop_and_the_end_still_succeeds(
    pg_urls: tuple[str, str],
) -> None:
    _src_url, tgt_url = pg_urls
    cfg = make_config(_src_url, tgt_url, {"products": entity_config(extra={"slices": 1})})
    with Runtime.open(cfg, {}) as rt:
        target = rt.target
        schema = pa.schema([("_bridge_key_hash", pa.string()), ("code", pa.string())])
        target.ensure_table("products", schema, ["code"])
        assert target.begin_bulk("products")
        rows = pa.table({"_bridge_key_hash": ["a" * 32], "code": ["P1"]})
        with pytest.raises(RuntimeError), target.begin() as conn:
            target.write("products", rows, pa.array([], pa.string()), "r", datetime.now(UTC),
                         conn, bulk=True)
            raise RuntimeError("the chunk fails after its write")
        target.end_bulk("products")  # the drop was rolled back: nothing to rebuild, no error
        assert _indexes(rt, "products") == {"products_bkh_uq", "products_bk_ix"}
        assert target.row_count("products") == 0


def test_first_load_chunk_size_is_gone_with_a_message_saying_why() -> None:
    body = entity_config(extra={"first_load_chunk_size": 700})
    with pytest.raises(ConfigError, match="first_load_chunk_size: no longer a setting"):
        parse_config({"version": 1, "sources": {"erp": {"kind": "sql", "url": "sqlite://"}},
                      "target": {"url": "sqlite://"}, "entities": {"products": body}},
                     source_file="old.yaml")


def test_a_first_load_over_several_slices_is_one_bulk_load(pg_urls: tuple[str, str]) -> None:
    """A run syncing every slice of an empty table (a single-run backfill) COPYs all their
    chunks with the indexes dropped and builds them once, after the last slice."""
    erp, good, cfg = products_source(pg_urls, 900, slices=3)
    with Runtime.open(cfg, {}) as rt:
        during: list[set[str]] = []

        def chunk_done(counts: Any) -> None:
            during.append(_indexes(rt, "products"))

        with first_load(rt, "products"):
            for key in ("slice-01", "slice-02", "slice-03"):
                sync_slice(rt, "products", key, "run-1", after_chunk=chunk_done)
        assert len(during) >= 9 and all(names == set() for names in during)
        assert _indexes(rt, "products") == {"products_bkh_uq", "products_bk_ix"}
        rows = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in rows.items()} == expected(good)

        # Not empty any more: the next run's slices classify against the stored rows.
        during.clear()
        with first_load(rt, "products"):
            again = sync_slice(rt, "products", "slice-02", "run-2", after_chunk=chunk_done)
        assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)
        assert all(names == {"products_bkh_uq", "products_bk_ix"} for names in during)
    erp.close()
