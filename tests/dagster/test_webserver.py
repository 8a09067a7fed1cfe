"""The deployed shape: dagster-webserver + dagster-daemon on the production instance config
(deploy/dagster-postgres.yaml as shipped, Dagster storage in PostgreSQL), a backfill launched
over GraphQL exactly as the UI launches it (no tags), and the run queue keeping one run per
entity at a time."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from syncflow_core.slices import slice_keys
from syncflow_dagster.pools import syncflow_pools
from syncflow_dagster.resources import load_syncflow_config
from tests.dagster.conftest import DemoEnv
from tests.dagster.instance_env import production_home
from tests.pg import PgCluster

pytestmark = [pytest.mark.dagster, pytest.mark.slow, pytest.mark.postgres]
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on UnauthorizedError { message }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_webserver(url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("webserver did not start:\n" + log.read_text())
        time.sleep(0.5)


def _wait_for_pools(home: Path, log: Path) -> None:
    """The deployment is up once the daemon's first `syncflow_pools` tick created the pools
    (seconds after start; a fresh instance's first run queue pass would not limit them)."""
    instance = DagsterInstance.from_config(str(home))
    try:
        deadline = time.monotonic() + 90
        want = set(syncflow_pools(load_syncflow_config()))
        while not want <= instance.event_log_storage.get_concurrency_keys():
            if time.monotonic() > deadline:
                pytest.fail("the syncflow_pools sensor did not run:\n" + log.read_text()[-5000:])
            time.sleep(0.5)
    finally:
        instance.dispose()


@pytest.fixture
def served(
    demo_env: DemoEnv, pg: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path]]:
    """Webserver and daemon on a temp DAGSTER_HOME with the production dagster.yaml."""
    home = demo_env.root / "dagster_home"
    instance_env = production_home(home, pg, f"dagster_web_{os.getpid()}")
    for key, value in instance_env.items():
        monkeypatch.setenv(key, value)  # for the test's own DagsterInstance
    env = {**demo_env.env, **instance_env}
    url = f"http://127.0.0.1:{_free_port()}"
    web_cmd = [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
               "-p", url.rsplit(":", 1)[1]]
    daemon_cmd = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    root = demo_env.root
    procs: list[subprocess.Popen[bytes]] = []
    with open(root / "web.log", "wb") as web_log, open(root / "daemon.log", "wb") as daemon_log:
        try:
            # Both at once: dagster-postgres retries when two processes create its tables.
            # Each in its own process group, so stopping it stops its code server too.
            procs.append(subprocess.Popen(web_cmd, cwd=REPO, env=env, stdout=web_log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            procs.append(subprocess.Popen(daemon_cmd, cwd=REPO, env=env, stdout=daemon_log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            _wait_for_webserver(url, root / "web.log")
            _wait_for_pools(home, root / "daemon.log")
            yield url, home
        finally:
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            stop_by = time.monotonic() + 3  # the runs are over: no need for a graceful exit
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.1, stop_by - time.monotonic()))
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
                proc.wait()


def test_backfill_over_graphql_runs_every_slice_one_run_at_a_time(
    served: tuple[str, Path], demo_env: DemoEnv
) -> None:
    url, home = served
    ent = demo_env.config.entity("customers")
    keys = slice_keys(ent.slice_count)
    # What the UI sends for "Materialize all" of one asset: partitions and asset, no tags.
    params = {"partitionNames": keys, "assetSelection": [{"path": ["erp", "customers"]}]}
    # The code location may still be loading when the webserver answers.
    deadline = time.monotonic() + 60
    while True:
        resp = httpx.post(f"{url}/graphql", json={"query": LAUNCH, "variables": {"params": params}},
                          timeout=30).json()
        result = resp["data"]["launchPartitionBackfill"]
        if result["__typename"] == "LaunchBackfillSuccess" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result["__typename"] == "LaunchBackfillSuccess", resp
    backfill_id = result["backfillId"]

    instance = DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        deadline = time.monotonic() + 240
        while True:
            records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
            done = [r for r in records if r.dagster_run.status in (
                DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)]
            if len(records) == len(keys) and len(done) == len(keys):
                break
            if time.monotonic() > deadline:
                pytest.fail("backfill did not finish:\n"
                            + (demo_env.root / "daemon.log").read_text()[-5000:])
            time.sleep(1)
        assert {r.dagster_run.status for r in records} == {DagsterRunStatus.SUCCESS}
        assert all("syncflow/entity" not in r.dagster_run.tags for r in records)
        # The queue let one customers run at a time: their execution intervals do not overlap.
        spans = sorted((r.start_time, r.end_time) for r in records)
        assert all(s is not None and e is not None for s, e in spans)
        print("backfill run spans (s from first start):",
              [(round(s - spans[0][0], 2), round(e - spans[0][0], 2))  # type: ignore[operator]
               for s, e in spans])
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, spans  # type: ignore[operator]
        key = AssetKey(["erp", "customers"])
        assert instance.get_materialized_partitions(key) == set(keys)
    finally:
        instance.dispose()
    import sqlite3

    with sqlite3.connect(demo_env.target) as con:
        (n,) = con.execute('SELECT COUNT(*) FROM "customers"').fetchone()
    assert n > 0
