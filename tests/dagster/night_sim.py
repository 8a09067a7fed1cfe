"""A controlled clock and a night-by-night driver for the night-window schedule.

`NightSim` evaluates the real ``order_lines_night_window`` schedule of the project's own
Definitions on a real `DagsterInstance` at chosen instants, executes each `RunRequest` as a
real run of ``order_lines_sync`` (the request's partition and tags, as the daemon launches
it), and keeps a table per night: runs launched, done, paused, failed, killed, launches
outside the window (checked here with plain `zoneinfo`, not with SyncFlow's window code) and
rows read by the runs that reported.

Time has one seam: `SimClock`, a `Clock` resource reading the simulated instant from a file.
The tick's ``scheduled_execution_time`` and the window check inside runs (``WINDOW_END_TAG``
against `SyncFlowResource.now`) both read it, so a test moves time for both at once, also
while a run works (the file is read at every chunk boundary, from any process).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    RunRequest,
    RunsFilter,
    build_schedule_context,
)
from dagster._serdes import serialize_value

from syncflow_dagster.background import BACKGROUND_TAG, PAUSED_TAG
from syncflow_dagster.resources import Clock, SyncFlowResource
from syncflow_dagster.translation import ENTITY_TAG

ENTITY = "order_lines"
BERLIN = ZoneInfo("Europe/Berlin")


class SimClock(Clock):
    """The simulated instant, read from a file (shared with worker processes)."""

    path: str

    def now(self) -> datetime:
        """The instant last set with `set_clock`."""
        return datetime.fromisoformat(Path(self.path).read_text())


def set_clock(path: Path, at: datetime) -> None:
    """Move the simulated clock to ``at`` (aware)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(at.astimezone(UTC).isoformat())
    tmp.replace(path)  # atomic: a run never reads half a timestamp


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """Berlin wall time on ``day`` (aware)."""
    return datetime.combine(day, clock_time(hour, minute), tzinfo=BERLIN)


def in_window_berlin(at: datetime) -> bool:
    """19:00-07:00 Berlin wall time, computed independently of SyncFlow's window code."""
    hour = at.astimezone(BERLIN).hour
    return hour >= 19 or hour < 7


def tick_times(night: date, dense: bool = False) -> list[datetime]:
    """The instants a night is ticked at: around the window's edges, its first hour (every
    15 min: launches, retries), later in the night and the day after.

    ``dense``: every 15 minutes of the whole window, as the daemon ticks.
    """
    nxt = night + timedelta(days=1)
    if dense:
        # Real 15-minute steps (a DST night has 44 or 52 of them, not 48).
        at, end = local(night, 19).astimezone(UTC), local(nxt, 7).astimezone(UTC)
        inside = []
        while at < end:
            inside.append(at.astimezone(BERLIN))
            at += timedelta(minutes=15)
    else:
        inside = [local(night, 19) + timedelta(minutes=15 * i) for i in range(5)]  # to 20:00
        inside += [local(nxt, 3)]
    return [local(night, 18, 45), *inside, local(nxt, 7), local(nxt, 12)]


@dataclass
class NightRow:
    """One night of a scenario."""

    night: int
    day: date
    ticks: int = 0
    launched: int = 0
    done: int = 0
    paused: int = 0
    failed: int = 0
    killed: int = 0
    outside: int = 0
    rows_read: int = 0
    slices_done: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    """What one executed request did."""

    request: RunRequest
    run: DagsterRun | None
    metadata: dict[str, Any]
    checks: dict[str, bool] = field(default_factory=dict)


Executor = Callable[["NightSim", RunRequest], RunOutcome | None]


class NightSim:
    """Ticks the schedule night after night and runs what it requests."""

    def __init__(
        self,
        defs: Definitions,
        instance: DagsterInstance,
        clock_path: Path,
        first_night: date,
        config_path: str,
    ) -> None:
        self.defs = defs
        self.instance = instance
        self.clock_path = clock_path
        self.first_night = first_night
        self.config_path = config_path
        self.rows: list[NightRow] = []
        self.source_rows = 0
        """Rows of the entity in the source (set by the test)."""
        self.progress: Callable[[], int] | None = None
        """Slices done in the pass (read after each night into `NightRow.slices_done`)."""
        self.outcomes: list[RunOutcome] = []
        self.skips: list[tuple[datetime, str]] = []
        self.schedule = defs.resolve_schedule_def(f"{ENTITY}_night_window")
        self.job = defs.resolve_job_def(f"{ENTITY}_sync")
        self.resource = SyncFlowResource(config_path=config_path, clock=SimClock(
            path=str(clock_path)))

    # ----------------------------------------------------------------- time and ticks

    def set_clock(self, at: datetime) -> None:
        """Move the simulated clock (ticks and runs)."""
        set_clock(self.clock_path, at)

    def tick(self, at: datetime) -> list[RunRequest]:
        """Evaluate the schedule at ``at``; the requests it makes."""
        self.set_clock(at)
        with build_schedule_context(
            instance=self.instance,
            scheduled_execution_time=at,
            resources={"syncflow": self.resource},
            repository_def=self.defs.get_repository_def(),
        ) as ctx:
            data = self.schedule.evaluate_tick(ctx)
        if data.skip_message:
            self.skips.append((at, data.skip_message))
        reqs = list(data.run_requests or [])
        row = self.rows[-1]
        row.ticks += 1
        row.launched += len(reqs)
        row.outside += sum(1 for _ in reqs if not in_window_berlin(at))
        return reqs

    # ----------------------------------------------------------------- runs

    def execute(self, req: RunRequest) -> RunOutcome:
        """Run the request for real, in this process, at the clock's current instant."""
        result = self.job.execute_in_process(
            instance=self.instance,
            partition_key=req.partition_key,
            tags=dict(req.tags),
            raise_on_error=False,
        )
        meta: dict[str, Any] = {}
        for event in result.get_asset_materialization_events():
            mat = event.step_materialization_data.materialization
            if mat is not None:
                for k, v in mat.metadata.items():
                    if isinstance(v.value, int | float) and not isinstance(v.value, bool):
                        meta[k] = meta.get(k, 0) + v.value
        run = self.instance.get_run_by_id(result.run_id)
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        return self.record(RunOutcome(req, run, meta, checks))

    def record(self, outcome: RunOutcome) -> RunOutcome:
        """Count an outcome in tonight's row."""
        row = self.rows[-1]
        run = outcome.run
        if run is None or run.status == DagsterRunStatus.STARTED:
            row.killed += 1
        elif run.status == DagsterRunStatus.SUCCESS:
            if PAUSED_TAG in run.tags:
                row.paused += 1
            else:
                row.done += 1
        else:
            row.failed += 1
        row.rows_read += int(outcome.metadata.get("fetched", 0))
        self.outcomes.append(outcome)
        return outcome

    def night(
        self,
        n: int,
        *,
        daemon_down: bool = False,
        dense: bool = False,
        executor: Executor | None = None,
    ) -> NightRow:
        """Night ``n`` (1-based): tick it and execute every request right away.

        ``executor`` may run a request its own way (None: `execute`); returning None skips it.
        """
        row = self.begin(n)
        if daemon_down:
            row.notes.append("daemon down")
        else:
            for at in tick_times(row.day, dense):
                for req in self.tick(at):
                    if executor is None:
                        self.execute(req)
                    else:
                        executor(self, req)
        return self.finish()

    def begin(self, n: int) -> NightRow:
        """Start night ``n``'s row (`night` does; a test driving ticks itself calls it)."""
        self.rows.append(NightRow(n, self.first_night + timedelta(days=n - 1)))
        return self.rows[-1]

    def finish(self) -> NightRow:
        """Close tonight's row: how many slices the pass has done now."""
        row = self.rows[-1]
        if self.progress is not None:
            row.slices_done = self.progress()
        return row

    # ----------------------------------------------------------------- reporting

    def table(self, title: str) -> str:
        """The scenario's table: one line per night."""
        head = (f"{title}\nnight  date        ticks  launched  done  paused  failed  killed  "
                "outside-window  rows-read  slices-done  notes")
        lines = [head]
        for r in self.rows:
            lines.append(
                f"{r.night:>5}  {r.day}  {r.ticks:>5}  {r.launched:>8}  {r.done:>4}  "
                f"{r.paused:>6}  {r.failed:>6}  {r.killed:>6}  {r.outside:>14}  "
                f"{r.rows_read:>9}  {r.slices_done:>11}  {'; '.join(r.notes)}"
            )
        total = sum(r.launched for r in self.rows)
        lines.append(f"total launched {total}, outside the window "
                     f"{sum(r.outside for r in self.rows)}")
        return "\n".join(lines)

    def background_runs(self, **tags: str) -> list[DagsterRun]:
        """Background runs of the entity (optionally with more tags), oldest first."""
        records = self.instance.get_run_records(
            RunsFilter(tags={ENTITY_TAG: ENTITY, BACKGROUND_TAG: "true", **tags})
        )
        return [r.dagster_run for r in reversed(records)]


# --------------------------------------------------------------------- target faults


def rows_written_by_run(con: sqlite3.Connection, table: str, run_id: str) -> int:
    """Target rows whose last write was ``run_id``'s."""
    try:
        return int(con.execute(
            f'SELECT COUNT(*) FROM "{table}" WHERE "_bridge_batch_id" = ?', (run_id,)
        ).fetchone()[0])
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0


def started_run_id(instance: DagsterInstance) -> str | None:
    """The entity's run in progress, if any."""
    records = instance.get_run_records(
        RunsFilter(tags={ENTITY_TAG: ENTITY}, statuses=[DagsterRunStatus.STARTED]), limit=1
    )
    return records[0].dagster_run.run_id if records else None


def when_run_committed(
    target: Path,
    instance: DagsterInstance,
    rows: int,
    action: Callable[[str, int], None],
    running: Callable[[], bool],
) -> dict[str, Any]:
    """Wait until the entity's running run has committed ``rows`` target rows, then call
    ``action(run_id, committed)`` at once (the run is then busy with its next chunk).

    Reads the target like any other reader (WAL: it never blocks the run's writes); gives up
    when ``running()`` turns false. Returns what it saw.
    """
    seen: dict[str, Any] = {"committed": None, "run_id": None}
    con = sqlite3.connect(target, timeout=30)
    try:
        while running():
            run_id = started_run_id(instance)
            committed = 0 if run_id is None else rows_written_by_run(con, ENTITY, run_id)
            if run_id is not None and committed >= rows:
                action(run_id, committed)
                seen.update(committed=committed, run_id=run_id)
                return seen
            time.sleep(0.005)
    finally:
        con.close()
    return seen


def slow_target(target: Path) -> None:
    """Make every row written to the target slow (an expensive trigger, ~5-15 ms a row)."""
    with sqlite3.connect(target) as con:
        con.execute("CREATE TABLE sim_slow (n INTEGER)")
        con.executemany("INSERT INTO sim_slow VALUES (?)", [(i,) for i in range(200)])
        con.execute(
            "CREATE TRIGGER sim_slow_load BEFORE INSERT ON order_lines BEGIN "
            "SELECT COUNT(*) FROM sim_slow a, sim_slow b WHERE a.n + b.n >= 0; END"
        )


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``fn`` on a thread; its result lands in the returned dict under "result"."""
    out: dict[str, Any] = {}

    def target() -> None:
        out["result"] = fn()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


# --------------------------------------------------------------------- a worker process

WORKER = """
import json, sys
from dagster import DagsterInstance
from dagster._serdes import deserialize_value
from syncflow_core.config import load_config
from syncflow_dagster.definitions import build_definitions
from tests.dagster.night_sim import SimClock
ref, config_path, clock_path, partition, tags = sys.argv[1:6]
instance = DagsterInstance.from_ref(deserialize_value(ref))
defs = build_definitions(load_config(config_path), config_path, clock=SimClock(path=clock_path))
job = defs.resolve_job_def("order_lines_sync")
job.execute_in_process(instance=instance, partition_key=partition, tags=json.loads(tags),
                       raise_on_error=False)
"""


def start_worker(sim: NightSim, req: RunRequest) -> subprocess.Popen[bytes]:
    """Execute ``req`` as a run in a separate worker process (which a test may kill)."""
    args = [
        serialize_value(sim.instance.get_ref()),
        sim.config_path,
        str(sim.clock_path),
        str(req.partition_key),
        json.dumps(dict(req.tags)),
    ]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen([sys.executable, "-c", WORKER, *args], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """``kill -9`` the worker: no chance to report anything."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
