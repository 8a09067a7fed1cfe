"""Duplicate business keys in a source without a unique key, and entities smaller than a slice.

The rule: every copy of a key that occurs more than once is an open failed record
(``duplicate_key``, one per distinct row), nothing of it loads, and this holds whether the
copies fall in one chunk or several. Every source row thus ends in exactly one place.
"""

from __future__ import annotations

import json

from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import Erp, make_config, sync_all

ROWS = [("a", "1"), ("b", "2"), ("b", "3"), ("b", "4"), ("c", "5"), ("d", "6"), ("d", "7")]


def test_duplicates_across_chunk_boundaries_all_become_failed_records(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "L" ("K" TEXT, "V" TEXT)')
    erp.execute('INSERT INTO "L" VALUES (:k, :v)', [{"k": k, "v": v} for k, v in ROWS])
    for chunk in (1, 2, 3):
        ent = {"source": {"connection": "erp", "table": "L"}, "business_key_fields": ["K"],
               "slices": 1, "chunk_size": chunk, "target_table": f"l{chunk}"}
        cfg = make_config(src_url, tgt_url, {f"l{chunk}": ent})
        with Runtime.open(cfg, {}) as rt:
            counts = sync_all(rt, f"l{chunk}", "run-1")
            assert (counts.fetched, counts.inserted, counts.rejected) == (7, 2, 5), chunk
            loaded = {r["K"] for r in rt.target.read_table(f"l{chunk}").to_pylist()}
            assert loaded == {"a", "c"}
            failed = rt.state.list_failed_records(f"l{chunk}").to_pylist()
            assert {f["error_code"] for f in failed} == {"duplicate_key"}
            assert sorted(json.loads(f["raw_row"])["V"] for f in failed) == ["2", "3", "4",
                                                                            "6", "7"]
            again = sync_all(rt, f"l{chunk}", "run-2")
            assert (again.inserted, again.rejected, again.rejected_new) == (0, 5, 0)
    erp.close()


def test_entity_with_fewer_rows_than_slices(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "TINY" ("K" TEXT, "V" TEXT)')
    erp.execute('INSERT INTO "TINY" VALUES (:k, :v)', [{"k": "x", "v": "1"}, {"k": "y", "v": "2"}])
    ent = {"source": {"connection": "erp", "table": "TINY"}, "business_key_fields": ["K"],
           "slices": 5, "chunk_size": 10}
    cfg = make_config(src_url, tgt_url, {"tiny": ent})
    with Runtime.open(cfg, {}) as rt:
        assert sync_all(rt, "tiny", "run-1").inserted == 2
        again = sync_all(rt, "tiny", "run-2")
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
        erp.execute('DELETE FROM "TINY" WHERE "K" = \'x\'')
        erp.execute('INSERT INTO "TINY" VALUES (\'a\', \'3\'), (\'z\', \'4\')')
        changed = sync_all(rt, "tiny", "run-3")
        assert (changed.inserted, changed.deleted) == (2, 1)
        live = {r["K"] for r in rt.target.read_table("tiny").to_pylist()
                if r["_bridge_deleted_at"] is None}
        assert live == {"a", "y", "z"}
    erp.close()
