"""Which slices a night-window tick launches: quota, catch-up, backoff and give-up."""

from __future__ import annotations

from syncflow_core.night import plan_night
from syncflow_core.slices import slice_keys

KEYS = slice_keys(7)


def test_one_slice_a_night_in_order_with_the_state_tables_pass_number() -> None:
    plan = plan_night(KEYS, {}, 7, finished_tonight=set(), in_flight=set())
    assert (plan.pass_no, plan.quota, plan.launch) == (1, 1, ("slice-01",))
    # Two slices done in pass 1 (their cursors say pass 2): the next one, still pass 1.
    done = {"slice-01": 1, "slice-02": 1}
    plan = plan_night(KEYS, done, 7, finished_tonight=set(), in_flight=set(), nights_left=5)
    assert (plan.pass_no, plan.launch) == (1, ("slice-03",))
    # Every slice finished pass 1: pass 2 starts over.
    plan = plan_night(KEYS, dict.fromkeys(KEYS, 1), 7, finished_tonight=set(), in_flight=set())
    assert (plan.pass_no, plan.launch) == (2, ("slice-01",))


def test_quota_counts_finished_and_running_slices() -> None:
    assert not plan_night(KEYS, {}, 7, finished_tonight={"slice-01"}, in_flight=set()).launch
    assert not plan_night(KEYS, {}, 7, finished_tonight=set(), in_flight={"slice-01"}).launch


def test_a_short_night_is_caught_up_by_the_nights_left() -> None:
    done = {"slice-01": 1, "slice-02": 1}
    # Night 4 of 7 with 5 slices left: ceil(5 / 4) = 2 tonight.
    plan = plan_night(KEYS, done, 7, finished_tonight=set(), in_flight=set(), nights_left=4)
    assert plan.launch == ("slice-03", "slice-04")


def test_a_slice_backing_off_keeps_its_place_and_one_that_gave_up_frees_it() -> None:
    done = {"slice-01": 1, "slice-02": 1}
    waiting = plan_night(KEYS, done, 7, finished_tonight=set(), in_flight=set(), nights_left=5,
                         backing_off=frozenset({"slice-03"}))
    assert waiting.launch == ()  # tonight's one place is held by slice-03's next attempt
    moved_on = plan_night(KEYS, done, 7, finished_tonight=set(), in_flight=set(),
                          nights_left=5, given_up=frozenset({"slice-03"}))
    assert moved_on.launch == ("slice-04",)
    # The next night the failing slice gets its turn again, first in order.
    next_night = plan_night(KEYS, {**done, "slice-04": 1}, 7, finished_tonight=set(),
                            in_flight=set(), nights_left=4)
    assert next_night.launch[0] == "slice-03"
