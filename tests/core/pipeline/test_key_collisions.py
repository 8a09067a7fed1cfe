"""Copies of one business key that no single chunk sees together (`syncflow_core.collisions`).

Two source keys that clean to one business key (``'ab'`` and ``'ab '`` once trimmed) fall in
different chunks, or slices; a ``rowversion`` extract never re-reads an old copy of a key. In
both shapes each copy still ends in exactly one place, by the rule that holds inside a chunk:
every copy is an open failed record (for ``rowversion``: the highest version loads, the other
copies are failed records), and fixing the source closes them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncflow_core.pipeline import SyncCounts, sync_slice
from syncflow_core.runtime import Runtime
from syncflow_core.slices import slice_keys
from tests.core.pipeline.erp import Erp, make_config, sync_all


def _entity(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"connection": "erp", "table": "L"},
        "business_key_fields": ["K"],
        "fields": {"RV": {"type": "NUMBER(19)"}},
        "slices": 1,
        "chunk_size": 2,
    }
    body.update(extra)
    return body


def _source(url: str, rows: list[tuple[str, str, int]]) -> Erp:
    erp = Erp(url)
    intt = "BIGINT" if erp.dialect == "postgresql" else "INTEGER"
    erp.execute(f'CREATE TABLE "L" ("K" TEXT, "V" TEXT, "RV" {intt})')
    _insert(erp, rows)
    return erp


def _insert(erp: Erp, rows: list[tuple[str, str, int]]) -> None:
    erp.execute('INSERT INTO "L" VALUES (:k, :v, :rv)',
                [{"k": k, "v": v, "rv": rv} for k, v, rv in rows])


def _live(rt: Runtime) -> dict[str, str]:
    return {r["K"]: r["V"] for r in rt.target.read_table("l").to_pylist()
            if r["_bridge_deleted_at"] is None}


def _failed(rt: Runtime) -> list[str]:
    """The V of each open failed record's row."""
    return sorted(json.loads(f["raw_row"])["V"] for f in rt.state.list_failed_records("l")
                  .to_pylist())


ROWS = [("a", "1", 1), ("ab", "2", 2), ("ab ", "3", 3), ("b", "4", 4), ("c", "5", 5),
        ("d", "6", 6)]


def test_keys_that_clean_alike_in_different_chunks_all_become_failed_records(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = _source(src_url, ROWS)  # chunks of 2: 'ab' ends the first, 'ab ' starts the second
    with Runtime.open(make_config(src_url, tgt_url, {"l": _entity()}), {}) as rt:
        first = sync_all(rt, "l", "run-1")  # on PostgreSQL a streamed first load
        # Each chunk loaded its copy before the pass's last chunk met both: the target keeps
        # what the key holds (as for any rejected key), and both copies are failed records.
        held = _live(rt).pop("ab")
        assert {k: v for k, v in _live(rt).items() if k != "ab"} == {
            "a": "1", "b": "4", "c": "5", "d": "6"}
        assert _failed(rt) == ["2", "3"]
        assert first.rejected_new == 2
        codes = {f["error_code"] for f in rt.state.list_failed_records("l").to_pylist()}
        assert codes == {"duplicate_key"}

        again = sync_all(rt, "l", "run-2")  # a rerun writes nothing and opens nothing new
        assert (again.inserted, again.updated, again.rejected_new) == (0, 0, 0)
        assert _failed(rt) == ["2", "3"] and _live(rt)["ab"] == held

        erp.execute("DELETE FROM \"L\" WHERE \"K\" = 'ab '")  # the source is fixed
        sync_all(rt, "l", "run-3")
        assert _live(rt)["ab"] == "2"
        assert _failed(rt) == []

        _insert(erp, [("ab  ", "7", 7)])  # a new spelling of the same key
        sync_all(rt, "l", "run-4")
        # A collision new in this pass: a copy may have loaded before the copies met.
        assert _failed(rt) == ["2", "7"] and "ab" in _live(rt)

        erp.execute("DELETE FROM \"L\" WHERE \"K\" LIKE 'ab%'")  # the key leaves the source
        gone = sync_all(rt, "l", "run-5")
        assert gone.deleted == 1 and "ab" not in _live(rt)
        assert _failed(rt) == []
    erp.close()


def test_keys_that_clean_alike_in_different_slices(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    # ' zz' sorts first, 'zz' last: with two slices they fall in different ones.
    rows = [(" zz", "1", 1), *[(f"k{i}", str(i + 10), i + 10) for i in range(8)], ("zz", "2", 2)]
    erp = _source(src_url, rows)
    cfg = make_config(src_url, tgt_url, {"l": _entity(slices=2, chunk_size=3)})
    with Runtime.open(cfg, {}) as rt:
        sync_all(rt, "l", "run-1")
        plan = rt.state.get_slice_plan("l")
        assert plan is not None and len(plan) == 2
        bound = plan[0].hi
        assert bound is not None and (" zz",) <= bound < ("zz",)  # (paged byte by byte)
        assert _failed(rt) == ["1", "2"]
        assert len({k: v for k, v in _live(rt).items() if k != "zz"}) == 8
        erp.execute("DELETE FROM \"L\" WHERE \"K\" = ' zz'")
        sync_all(rt, "l", "run-2")
        assert _live(rt)["zz"] == "2" and _failed(rt) == []
    erp.close()


class _Crash(Exception):
    pass


@pytest.mark.parametrize("strategy", ["hash", "rowversion"])
def test_a_pass_killed_between_chunks_resumes_without_false_collisions(
    engine_urls: tuple[str, str], strategy: str
) -> None:
    src_url, tgt_url = engine_urls
    # ' k04' sorts first, 'k04' in the middle: their copies are chunks apart.
    erp = _source(src_url, [(f"k{i:02}", str(i), i) for i in range(9)] + [(" k04", "40", 40)])
    extra = {"delta_strategy": "rowversion", "rowversion_field": "RV"}
    if strategy == "hash":
        extra = {}
    cfg = make_config(src_url, tgt_url, {"l": _entity(**extra)})
    loaded = {f"k{i:02}": str(i) for i in range(9)}
    del loaded["k04"]
    if strategy == "rowversion":
        loaded["k04"] = "40"  # the highest version of the key loads
    with Runtime.open(cfg, {}) as rt:
        for kill_after in (1, 3, 5):
            done = [kill_after]  # chunks left before the crash

            def crash(_: SyncCounts, left: list[int] = done) -> None:
                left[0] -= 1
                if left[0] == 0:
                    raise _Crash

            with pytest.raises(_Crash):
                for key in slice_keys(1):
                    sync_slice(rt, "l", key, f"run-{kill_after}", after_chunk=crash)
            sync_all(rt, "l", f"run-{kill_after}-resume")
            live = _live(rt)
            if strategy == "hash":
                live.pop("k04", None)  # what a chunk may have loaded before the copies met
            assert live == loaded, kill_after
            if strategy == "hash":
                assert _failed(rt) == ["4", "40"], kill_after
            else:  # the highest version loads, the other copy is a failed record
                assert _failed(rt) == ["4"], kill_after
            _insert(erp, [(f"n{kill_after}", "30", 30 + kill_after)])  # the next pass has work
            loaded[f"n{kill_after}"] = "30"
    erp.close()


def test_rowversion_duplicates_end_in_one_place_and_close_when_fixed(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = _source(src_url, [("a", "1", 1), ("x", "old", 2), ("x", "new", 5), ("z", "9", 3)])
    cfg = make_config(src_url, tgt_url,
                      {"l": _entity(delta_strategy="rowversion", rowversion_field="RV")})
    with Runtime.open(cfg, {}) as rt:
        first = sync_all(rt, "l", "run-1")
        assert _live(rt) == {"a": "1", "x": "new", "z": "9"}
        assert _failed(rt) == ["old"]  # the superseded copy: no longer nowhere
        assert first.rejected_new == 1

        # Fixed: the superseded copy leaves. The winner is not re-read (its version is below
        # the watermark), yet the record closes within the pass.
        erp.execute("DELETE FROM \"L\" WHERE \"V\" = 'old'")
        sync_all(rt, "l", "run-2")
        assert _failed(rt) == [] and _live(rt)["x"] == "new"

        # An old copy (below the watermark) meets a new one only at the pass's end.
        _insert(erp, [("x", "newer", 8)])
        sync_all(rt, "l", "run-3")
        assert _live(rt)["x"] == "newer" and _failed(rt) == ["new"]

        # The winner leaves: the copy left (below the watermark) loads, its record closes.
        erp.execute("DELETE FROM \"L\" WHERE \"V\" = 'newer'")
        sync_all(rt, "l", "run-4")
        assert _live(rt)["x"] == "new" and _failed(rt) == []
        quiet = sync_all(rt, "l", "run-5")
        assert (quiet.inserted, quiet.updated, quiet.rejected) == (0, 0, 0)
    erp.close()


def test_rowversion_deletes_arrive_when_cleaning_reorders_keys(
    engine_urls: tuple[str, str],
) -> None:
    """Leading spaces reorder the keys: the entity reads stored rows by key hash, and the
    pass's keys-only read (the one that finds copies) finds its deletes as well."""
    src_url, tgt_url = engine_urls
    rows = [(" z", "1", 1), ("a", "2", 2), (" b", "3", 3), ("c", "4", 4), ("  d", "5", 5)]
    erp = _source(src_url, rows)
    cfg = make_config(src_url, tgt_url,
                      {"l": _entity(delta_strategy="rowversion", rowversion_field="RV")})
    with Runtime.open(cfg, {}) as rt:
        sync_all(rt, "l", "run-1")
        assert _live(rt) == {"z": "1", "a": "2", "b": "3", "c": "4", "d": "5"}
        erp.execute("DELETE FROM \"L\" WHERE \"K\" IN (' z', 'c')")
        gone = sync_all(rt, "l", "run-2")
        assert gone.deleted == 2 and _live(rt) == {"a": "2", "b": "3", "d": "5"}
    erp.close()


def test_a_slice_that_gathers_another_slices_copies_deletes_none_of_them(
    engine_urls: tuple[str, str],
) -> None:
    """An unordered entity's copies are gathered by the last chunk of whichever slice ends a
    pass, and their failed records name that slice. Its later passes must not take the key
    for gone from the source because its own key range lacks it."""
    src_url, tgt_url = engine_urls
    # " zy" cleans to a key after the k-keys: the entity is unordered.
    rows = [(" zy", "1", 1), *[(f"k{i}", str(i + 10), i + 10) for i in range(8)], ("zz", "2", 2)]
    erp = _source(src_url, rows)
    cfg = make_config(src_url, tgt_url, {"l": _entity(slices=2, chunk_size=3)})
    with Runtime.open(cfg, {}) as rt:
        sync_all(rt, "l", "run-1")
        assert _live(rt)["zz"] == "2"
        _insert(erp, [("zz ", "3", 3)])  # both copies in slice 2
        sync_all(rt, "l", "run-2")
        assert _failed(rt) == ["2", "3"]
        held = _live(rt)["zz"]
        for n in range(3, 5):  # only the first slice runs (partitions run on their own)
            sync_slice(rt, "l", "slice-01", f"run-{n}")
            assert _live(rt).get("zz") == held, n  # still in the source: never soft-deleted
            assert _failed(rt) == ["2", "3"], n
    erp.close()
