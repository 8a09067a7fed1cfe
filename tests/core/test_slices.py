"""The slice plan: partition keys, contiguous bounds, lookup."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncflow_core.config import SourceRef
from syncflow_core.slices import SliceBounds, plan_slices, slice_keys, slice_of
from syncflow_core.sources.sql import SqlSource


def test_slice_keys_are_zero_padded_and_partition_safe() -> None:
    assert slice_keys(3) == ["slice-01", "slice-02", "slice-03"]
    assert slice_keys(7)[-1] == "slice-07"
    assert slice_keys(120)[0] == "slice-001"
    with pytest.raises(ValueError):
        slice_keys(0)


def test_plan_is_contiguous_open_at_both_ends_and_balanced(tmp_path: Path) -> None:
    db = tmp_path / "erp.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (item_no INTEGER)")
        conn.executemany("INSERT INTO items VALUES (?)", [(i,) for i in range(1, 701)])
    src = SqlSource(f"sqlite:///{db}")
    plan = plan_slices(src, SourceRef(table="items"), ["item_no"], 7)
    assert [s.slice_key for s in plan] == slice_keys(7)
    assert plan[0].lo is None and plan[-1].hi is None
    assert all(a.hi == b.lo for a, b in itertools.pairwise(plan))
    assert [s.hi for s in plan[:-1]] == [(100,), (200,), (300,), (400,), (500,), (600,)]
    assert slice_of(plan, "slice-03") == SliceBounds("slice-03", (200,), (300,))
    with pytest.raises(KeyError, match="slice-09"):
        slice_of(plan, "slice-09")
    src.close()


@given(st.lists(st.integers(-5, 5), min_size=0, max_size=6, unique=True).map(sorted),
       st.integers(-7, 7))
def test_every_key_is_in_exactly_one_slice(bounds: list[int], key: int) -> None:
    b = [None, *[(v,) for v in bounds], None]
    plan = [SliceBounds(f"s{i}", b[i], b[i + 1]) for i in range(len(b) - 1)]
    assert sum(s.contains((key,)) for s in plan) == 1


def test_bottom_bound_makes_empty_slices() -> None:
    empty = SliceBounds("slice-01", None, ())
    last = SliceBounds("slice-02", (), None)
    assert empty.is_empty and not empty.contains(("",)) and last.contains(("",))
