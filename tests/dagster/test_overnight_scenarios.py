"""Overnight operation, simulated night by night with a controlled clock on a real instance.

The demo's ``order_lines`` (~3k rows at the test scale, 7 slices, ``days_to_complete: 7``,
``chunk_size: 60`` so each slice is ~7 chunks) under its real night-window schedule in
Europe/Berlin. Each scenario ticks the schedule (`tests.dagster.night_sim`), executes every
request as a real run with the request's tags, and prints its table (``pytest -s``):

- a plain week (across the March DST change): the pass ends on night 7, nothing outside;
- the October DST nights: one launch a night, the window ends at 07:00 local;
- night 3 interrupted (daemon down / a run failing half way / a worker killed): the pass ends
  by night 8, no committed row read twice, target = source;
- one slice failing every time from night 3: at most the budgeted attempts a night, the
  other six complete, the check and the skip reasons say which slice needs attention;
- the window closing while a load waits on a slow target: the run pauses at the next chunk
  boundary and the next night resumes it.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterRunStatus, RunRequest, instance_for_test

from syncflow_core.config import load_config
from syncflow_core.pipeline import sync_slice
from syncflow_core.runtime import Runtime
from syncflow_core.slices import slice_keys
from syncflow_dagster.background import (
    LAUNCHED_AT_TAG,
    NIGHT_TAG,
    PASS_TAG,
    PAUSED_TAG,
    WINDOW_END_TAG,
)
from syncflow_dagster.definitions import build_definitions
from syncflow_dagster.resources import CONFIG_ENV, default_config_path
from tests.dagster.conftest import DemoEnv
from tests.dagster.night_sim import (
    BERLIN,
    ENTITY,
    Executor,
    NightSim,
    RunOutcome,
    SimClock,
    in_thread,
    kill,
    local,
    slow_target,
    start_worker,
    when_run_committed,
)

pytestmark = [pytest.mark.dagster, pytest.mark.slow]

CHUNK = 60
KEYS = slice_keys(7)
REPORT_ENV = "SYNCFLOW_NIGHT_REPORT"
"""File the scenario tables are appended to (optional)."""


# --------------------------------------------------------------------- setup


def _config(tmp_path: Path, **schedule: Any) -> Path:
    doc = yaml.safe_load(Path(default_config_path()).read_text())
    ent = doc["entities"][ENTITY]
    ent["chunk_size"] = CHUNK
    ent["schedule"] = {**ent["schedule"], **schedule}
    path = tmp_path / "syncflow.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _load_parents(demo: DemoEnv) -> None:
    """Orders, items and customers already synced, so order lines can load."""
    with Runtime.open(demo.config, demo.env) as rt:
        for name in ("customers", "items", "orders"):
            for key in slice_keys(demo.config.entity(name).slice_count):
                sync_slice(rt, name, key, "parents")


@pytest.fixture
def scenario(
    demo_env: DemoEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Builds a `NightSim` on a fresh instance: ``scenario(first_night, **schedule)``."""
    _load_parents(demo_env)
    with instance_for_test() as instance:

        def make(first_night: date, **schedule: Any) -> NightSim:
            path = _config(tmp_path, **schedule)
            monkeypatch.setenv(CONFIG_ENV, str(path))
            clock = tmp_path / "clock.txt"
            defs = build_definitions(load_config(path), str(path),
                                     clock=SimClock(path=str(clock)))
            sim = NightSim(defs, instance, clock, first_night, str(path))
            sim.progress = lambda: _slices_done(demo_env)
            sim.source_rows = _source_count(demo_env.erp)
            return sim

        yield make


def _slices_done(demo: DemoEnv) -> int:
    with Runtime.open(demo.config, demo.env) as rt:
        cursors = [rt.state.get_cursor(ENTITY, k) for k in KEYS]
    return sum(1 for c in cursors if c is not None and c.pass_no >= 2)


# --------------------------------------------------------------------- shared assertions


def _source_count(erp: Path) -> int:
    with sqlite3.connect(erp) as con:
        return int(con.execute("SELECT COUNT(*) FROM ORDER_LINES").fetchone()[0])


def _assert_target_equals_source(demo: DemoEnv) -> None:
    """Every source row is live in the target, waiting for a parent, or a failed record."""
    with sqlite3.connect(demo.target) as con:
        rows = con.execute(
            'SELECT order_no, line_no FROM "order_lines" WHERE "_bridge_deleted_at" IS NULL'
        ).fetchall()
    with Runtime.open(demo.config, demo.env) as rt:
        pending = len(set(rt.state.due_pending(ENTITY, None).column("key_hash").to_pylist()))
        failed = sum(rt.state.list_failed_records(ENTITY).column("occurrences").to_pylist())
    assert len(rows) == len(set(rows)), "no doubled rows"
    assert len(rows) + pending + failed == _source_count(demo.erp)


def _assert_nothing_read_twice(sim: NightSim) -> None:
    """Across pass 1 no run read a row an earlier run had committed.

    On a first load a row read again comes back ``unchanged`` (or as an already known
    reject); the rows a dead run had in flight were never committed, so they come back new.
    """
    pass1 = [o for o in sim.outcomes if o.request.tags[PASS_TAG] == "1"]
    assert sum(int(o.metadata.get("unchanged", 0)) for o in pass1) == 0
    known = sum(int(o.metadata.get("rejected", 0)) - int(o.metadata.get("rejected_new", 0))
                for o in pass1)
    assert known == 0
    assert sum(int(o.metadata.get("fetched", 0)) for o in pass1) <= sim.source_rows


def _night_of_completion(sim: NightSim) -> int | None:
    return next((r.night for r in sim.rows if r.slices_done == len(KEYS)), None)


def _report(sim: NightSim, title: str) -> None:
    """Print the scenario's table (``pytest -s``); also append it to ``$SYNCFLOW_NIGHT_REPORT``
    when set (xdist workers do not show prints)."""
    inside = [(at, msg) for at, msg in sim.skips if not msg.startswith("outside")]
    text = sim.table(title) + "".join(
        f"\n  skip reason {at.astimezone(BERLIN):%Y-%m-%d %H:%M}: {msg}"
        for at, msg in [*inside[-2:], *sim.skips[-1:]]
    )
    print("\n" + text)
    if os.environ.get(REPORT_ENV):
        with open(os.environ[REPORT_ENV], "a", encoding="utf-8") as out:
            out.write(text + "\n\n")


def _window_end(req: RunRequest) -> datetime:
    return datetime.fromisoformat(req.tags[WINDOW_END_TAG])


def _assert_one_launch_a_night_ending_at_seven(outcomes: list[RunOutcome], days: list[date]
                                               ) -> None:
    """One run a night, tagged with its local night, its window ending 07:00 local next day."""
    by_night: dict[str, list[RunOutcome]] = {}
    for o in outcomes:
        by_night.setdefault(o.request.tags[NIGHT_TAG], []).append(o)
    assert sorted(by_night) == [d.isoformat() for d in days], "no night skipped or doubled"
    for night, outs in by_night.items():
        assert len(outs) == 1, night
        end = _window_end(outs[0].request)
        assert end == local(date.fromisoformat(night) + timedelta(days=1), 7), night


# --------------------------------------------------------------------- scenarios


def test_plain_week_across_the_march_dst_change(scenario: Any, demo_env: DemoEnv) -> None:
    # Nights of 24-30 March 2027; clocks go forward in the night of the 27th (night 4).
    sim: NightSim = scenario(date(2027, 3, 24))
    for n in range(1, 8):
        sim.night(n)
    _assert_target_equals_source(demo_env)
    sim.night(8)
    _report(sim, "plain week, Europe/Berlin, 24-31 March 2027 (DST starts night 4)")
    assert _night_of_completion(sim) == 7
    assert [r.slices_done for r in sim.rows[:7]] == [1, 2, 3, 4, 5, 6, 7]
    assert sum(r.outside for r in sim.rows) == 0
    assert sum(r.failed + r.paused for r in sim.rows) == 0
    outcomes = sim.outcomes
    _assert_one_launch_a_night_ending_at_seven(outcomes[:7], [r.day for r in sim.rows[:7]])
    # The short night: 19:00 CET (18:00 UTC) to 07:00 CEST (05:00 UTC), 11 hours.
    dst = outcomes[3].request
    assert dst.tags[NIGHT_TAG] == "2027-03-27"
    assert _window_end(dst) == datetime(2027, 3, 28, 5, 0, tzinfo=UTC)
    # One pass number in both places: pass 1 in the tags while the state says pass 1, and
    # night 8 starts pass 2 with slice-01 as the state table counts it.
    assert {o.request.tags[PASS_TAG] for o in outcomes[:7]} == {"1"}
    assert outcomes[7].request.partition_key == "slice-01"
    assert outcomes[7].request.tags[PASS_TAG] == "2"
    with Runtime.open(demo_env.config, demo_env.env) as rt:
        assert {rt.state.get_cursor(ENTITY, k).pass_no for k in KEYS[1:]} == {2}  # type: ignore[union-attr]
    _assert_nothing_read_twice(sim)


def test_october_dst_nights(scenario: Any) -> None:
    # Clocks go back in the night of 30/31 October 2027: a 13-hour night.
    sim: NightSim = scenario(date(2027, 10, 29))
    sim.night(1)
    sim.night(2)
    # The repeated hour: every real 15 minutes from 01:30 CEST to 03:30 CET (02:00-03:00
    # comes twice) is ticked and launches nothing more (tonight's slice already ran).
    start = datetime(2027, 10, 30, 23, 30, tzinfo=UTC)  # 01:30 CEST
    repeated = [start + timedelta(minutes=15 * i) for i in range(13)]  # to 03:30 CET
    assert [t.astimezone(BERLIN).strftime("%H:%M") for t in repeated].count("02:30") == 2
    assert all(sim.tick(t) == [] for t in repeated)
    sim.finish()
    sim.night(3)
    _report(sim, "October DST nights, Europe/Berlin, 29-31 October 2027 (night 2: 13 h)")
    assert [r.launched for r in sim.rows] == [1, 1, 1]
    assert sum(r.outside for r in sim.rows) == 0
    _assert_one_launch_a_night_ending_at_seven(sim.outcomes, [r.day for r in sim.rows])
    assert _window_end(sim.outcomes[1].request) == datetime(2027, 10, 31, 6, 0, tzinfo=UTC)


def _fault_after_rows(target: Path, rows: int) -> None:
    """The target refuses a run's writes once that run wrote ``rows`` rows (a disk fills)."""
    with sqlite3.connect(target) as con:
        con.execute(
            "CREATE TRIGGER sim_fault BEFORE INSERT ON order_lines WHEN (SELECT COUNT(*) FROM "
            "order_lines WHERE _bridge_batch_id = NEW._bridge_batch_id) >= "
            f"{int(rows)} BEGIN SELECT RAISE(ABORT, 'simulated target fault'); END"
        )


def _drop_fault(target: Path) -> None:
    with sqlite3.connect(target) as con:
        con.execute("DROP TRIGGER IF EXISTS sim_fault")


def _fail_once(sim: NightSim, req: RunRequest, target: Path) -> RunOutcome:
    """Night 3's first run fails half way (after two chunks); the fault is then fixed."""
    _fault_after_rows(target, 2 * CHUNK)
    try:
        return sim.execute(req)
    finally:
        _drop_fault(target)


def _kill_worker(sim: NightSim, req: RunRequest, target: Path) -> RunOutcome:
    """Run in a worker process and ``kill -9`` it once it has committed two chunks."""
    proc = start_worker(sim, req)
    seen = when_run_committed(
        target, sim.instance, 2 * CHUNK, lambda run_id, n: kill(proc),
        running=lambda: proc.poll() is None,
    )
    assert seen["run_id"] is not None, "the worker finished before it could be killed"
    run = sim.instance.get_run_by_id(seen["run_id"])
    assert run is not None and run.status == DagsterRunStatus.STARTED  # as monitoring finds it
    outcome = sim.record(RunOutcome(req, run, {}))
    sim.rows[-1].notes.append(f"worker killed after {seen['committed']} rows committed")
    return outcome


def _first_run_hit(fault: str, target: Path) -> Executor:
    """An executor whose first run fails half way or loses its worker; later ones run."""
    first = [True]

    def execute(sim: NightSim, req: RunRequest) -> RunOutcome:
        if not first[0]:
            return sim.execute(req)
        first[0] = False
        if fault == "run_fails_half_way":
            return _fail_once(sim, req, target)
        return _kill_worker(sim, req, target)

    return execute


@pytest.mark.parametrize("fault", ["daemon_down", "run_fails_half_way", "worker_killed"])
def test_night_3_interrupted(scenario: Any, demo_env: DemoEnv, fault: str) -> None:
    sim: NightSim = scenario(date(2027, 1, 4))
    target = demo_env.target
    for n in range(1, 9):  # until the pass is done, night 8 at the latest
        if n != 3:
            row = sim.night(n)
        elif fault == "daemon_down":
            row = sim.night(n, daemon_down=True)
        else:
            row = sim.night(n, executor=_first_run_hit(fault, target))
        if row.slices_done == len(KEYS):
            break
    _report(sim, f"night 3 interrupted: {fault}")
    done_on = _night_of_completion(sim)
    assert done_on is not None and done_on <= 8
    assert sum(r.outside for r in sim.rows) == 0
    night3 = sim.rows[2]
    if fault == "run_fails_half_way":
        # It failed once and its retry, 15 minutes later the same night, finished the slice.
        assert (night3.failed, night3.done) == (1, 1)
        tries = sim.background_runs(**{NIGHT_TAG: "2027-01-06"})
        gap = (datetime.fromisoformat(tries[1].tags[LAUNCHED_AT_TAG])
               - datetime.fromisoformat(tries[0].tags[LAUNCHED_AT_TAG]))
        assert gap == timedelta(minutes=15)
    if fault == "worker_killed":
        # The dead run held the slot all night; the next night's first tick failed it and
        # relaunched its slice, which resumed from its committed cursor.
        assert night3.killed == 1 and night3.launched == 1
        dead = sim.background_runs(**{NIGHT_TAG: "2027-01-06"})[0]
        assert dead.status == DagsterRunStatus.FAILURE
        night4 = [o.request.partition_key for o in sim.outcomes
                  if o.request.tags[NIGHT_TAG] == "2027-01-07"]
        if sim.rows[2].slices_done == 2:
            # Killed mid-slice: its slice comes first the next night, from its cursor.
            assert night4[0] == dead.tags["dagster/partition"] == "slice-03"
        else:
            # The engine had committed the whole slice before the kill: nothing to redo.
            assert night4[0] == "slice-04"
        # Night 3's later ticks saw it "running" and launched nothing.
        night3_skips = [m for at, m in sim.skips
                        if local(date(2027, 1, 6), 19) <= at < local(date(2027, 1, 7), 7)]
        assert night3_skips and all("1 running" in m for m in night3_skips)
    _assert_nothing_read_twice(sim)
    _assert_target_equals_source(demo_env)


def _middle_order_of_slice(demo: DemoEnv, key: str) -> str:
    """An order number in the middle of the slice (its lines make that slice fail)."""
    with Runtime.open(demo.config, demo.env) as rt:
        bounds = next(b for b in rt.state.get_slice_plan(ENTITY) or [] if b.slice_key == key)
    with sqlite3.connect(demo.erp) as con:
        rows = con.execute("SELECT ORDER_NO, LINE_NO FROM ORDER_LINES").fetchall()
    inside = sorted(r for r in rows if r[0] is not None and r[1] is not None
                    and bounds.contains(r))
    clean = [o for o, _ in inside if o == o.strip() and o.isascii()]
    return str(clean[len(clean) // 2])


def test_one_slice_failing_every_time_from_night_3(scenario: Any, demo_env: DemoEnv) -> None:
    sim: NightSim = scenario(date(2027, 1, 4), retry_attempts=3)
    sim.night(1)
    sim.night(2)
    order = _middle_order_of_slice(demo_env, "slice-03")
    with sqlite3.connect(demo_env.target) as con:  # a permanent fault in slice-03's rows
        con.execute(
            "CREATE TRIGGER sim_fault BEFORE INSERT ON order_lines WHEN NEW.order_no = "
            f"'{order}' BEGIN SELECT RAISE(ABORT, 'simulated permanent fault'); END"
        )
    for n in range(3, 7):
        sim.night(n, dense=n == 3)  # night 3 ticks every 15 minutes all night
    _report(sim, "slice-03 fails every time from night 3 (retry_attempts: 3)")
    assert sum(r.outside for r in sim.rows) == 0
    for r in sim.rows[2:]:
        night = r.day.isoformat()
        tries = [run for run in sim.background_runs(**{NIGHT_TAG: night})
                 if run.tags["dagster/partition"] == "slice-03"]
        assert len(tries) == 3, (night, len(tries))  # the budget, never more
        assert all(t.status == DagsterRunStatus.FAILURE for t in tries)
        launched = [datetime.fromisoformat(t.tags[LAUNCHED_AT_TAG]) for t in tries]
        assert [b - a for a, b in itertools.pairwise(launched)] == [
            timedelta(minutes=15), timedelta(minutes=30)]
    # The other six slices complete (by night 6: once slice-03 gives up each night, its
    # place goes to the next slice); only slice-03 is left.
    with Runtime.open(demo_env.config, demo_env.env) as rt:
        done = {k for k in KEYS if (c := rt.state.get_cursor(ENTITY, k)) and c.pass_no >= 2}
    assert done == set(KEYS) - {"slice-03"}
    # The UI says so: the asset check fails, and the skip reasons name the slice.
    checks = [o.checks.get("background_retries") for o in sim.outcomes if o.checks]
    assert checks[:2] == [True, True]  # nights 1-2
    assert checks[-1] is False
    given_up = [m for _, m in sim.skips if "slice-03 gave up tonight" in m]
    assert given_up and "NEEDS ATTENTION" in given_up[-1]
    waiting = [m for _, m in sim.skips if "slice-03 failed, next attempt at" in m]
    assert waiting and "CET (" in waiting[0]


def test_window_closing_during_a_slow_load_pauses_at_the_next_chunk(
    scenario: Any, demo_env: DemoEnv
) -> None:
    sim: NightSim = scenario(date(2027, 1, 4))
    sim.night(1)
    # From night 2 the target is slow: writing a chunk takes most of the chunk's time. Once
    # slice-02's run has two chunks in, the clock passes the window's end while it works on
    # the third (loading it, most likely).
    slow_target(demo_env.target)
    sim.begin(2)
    (req,) = sim.tick(local(date(2027, 1, 5), 19))
    assert req.partition_key == "slice-02"
    closes = _window_end(req)
    running = [True]
    thread, seen = in_thread(lambda: when_run_committed(
        demo_env.target, sim.instance, 2 * CHUNK - 10,
        lambda run_id, n: sim.set_clock(closes + timedelta(minutes=1)),
        running=lambda: running[0],
    ))
    try:
        outcome = sim.execute(req)
    finally:
        running[0] = False
        thread.join(timeout=60)
    committed = seen["result"]["committed"]
    assert committed is not None, "the run ended before the window closed"
    run = outcome.run
    assert run is not None and run.status == DagsterRunStatus.SUCCESS
    assert run.tags.get(PAUSED_TAG) == "slice-02"
    with Runtime.open(demo_env.config, demo_env.env) as rt:
        cursor = rt.state.get_cursor(ENTITY, "slice-02")
    assert cursor is not None and cursor.status == "paused"
    with sqlite3.connect(demo_env.target) as con:
        written = con.execute(
            'SELECT COUNT(*) FROM order_lines WHERE "_bridge_batch_id" = ?', (run.run_id,)
        ).fetchone()[0]
        con.execute("DROP TRIGGER sim_slow_load")
    # Exactly the chunk in flight was finished after the window closed, then it stopped.
    assert committed < written <= committed + CHUNK
    assert outcome.metadata["fetched"] < 400  # far from the slice's ~430 rows
    # Later ticks of night 2 launch nothing (the paused slice used tonight's place); night 3
    # resumes it at its cursor: nothing committed is read again.
    for at in (local(date(2027, 1, 5), 19, 15), local(date(2027, 1, 6), 3)):
        assert sim.tick(at) == []
    sim.finish()
    sim.night(3)
    _report(sim, "window closes during a slow load (night 2), resumed night 3")
    assert sim.outcomes[1].request.partition_key == "slice-02"
    assert sim.rows[2].slices_done == 3
    _assert_nothing_read_twice(sim)
