"""Concurrent first runs of one entity's slices plan it at once: no error, one plan."""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa

from syncflow_core.slices import SliceBounds
from syncflow_core.state.store import StateStore
from syncflow_core.state.tables import slice_plans

PLANNERS = 6


def _plan(planner: int) -> list[SliceBounds]:
    """Each planner computes its own bounds (as runs would if the source moved between them)."""
    edge = (100 + planner,)
    return [SliceBounds("slice-01", None, edge), SliceBounds("slice-02", edge, None)]


def _race(url: str, claim: Callable[[StateStore, int], list[SliceBounds]]
          ) -> tuple[list[list[SliceBounds]], list[BaseException]]:
    """Every planner on its own engine, released together by a barrier."""
    stores = [StateStore(url) for _ in range(PLANNERS)]
    barrier = threading.Barrier(PLANNERS)
    results: list[list[SliceBounds]] = []
    errors: list[BaseException] = []

    def plan(i: int) -> None:
        barrier.wait()
        try:
            results.append(claim(stores[i], i))
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=plan, args=(i,)) for i in range(PLANNERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in stores:
        s.close()
    return results, errors


def test_concurrent_first_plans_of_one_entity_agree_on_one_plan(store: StateStore,
                                                                db_url: str) -> None:
    results, errors = _race(db_url, lambda s, i: s.claim_slice_plan("orders", _plan(i)))
    assert errors == []
    assert len(results) == PLANNERS
    winner = results[0]
    assert winner in [_plan(i) for i in range(PLANNERS)]
    assert all(r == winner for r in results)  # every run slices by the plan that was stored
    assert store.get_slice_plan("orders") == winner
    with store.begin() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(slice_plans)).scalar_one()
    assert rows == len(winner)


def test_a_changed_slice_count_replaces_the_plan_and_an_equal_one_keeps_it(
    store: StateStore,
) -> None:
    first = store.claim_slice_plan("orders", _plan(1))
    assert store.claim_slice_plan("orders", _plan(2)) == first  # same count: the stored plan
    one = [SliceBounds("slice-01", None, None)]
    assert store.claim_slice_plan("orders", one) == one  # slices: 2 -> 1 in config: re-planned
    assert store.get_slice_plan("orders") == one
