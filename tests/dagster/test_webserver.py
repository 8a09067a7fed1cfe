"""The deployed shape: dagster-webserver + dagster-daemon on our dagster.yaml, a backfill
launched over GraphQL, and the run queue keeping one run per entity at a time."""

from __future__ import annotations

import os
import shutil
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
from tests.dagster.conftest import DemoEnv

pytestmark = [pytest.mark.dagster, pytest.mark.slow]
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


@pytest.fixture
def served(demo_env: DemoEnv) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """Webserver and daemon on a temp DAGSTER_HOME with our dagster.yaml."""
    home = demo_env.root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "syncflow_dagster" / "dagster.yaml", home / "dagster.yaml")
    env = {**demo_env.env, "DAGSTER_HOME": str(home)}
    port = _free_port()
    logs = demo_env.root
    procs = [
        subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
             "-p", str(port)],
            cwd=REPO, env=env, stdout=open(logs / "web.log", "w"), stderr=subprocess.STDOUT),
        subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO, env=env, stdout=open(logs / "daemon.log", "w"), stderr=subprocess.STDOUT),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("webserver did not start:\n" + (logs / "web.log").read_text())
            time.sleep(0.5)
        yield url, home, env
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_backfill_over_graphql_runs_every_slice_one_run_at_a_time(
    served: tuple[str, Path, dict[str, str]], demo_env: DemoEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, home, env = served
    ent = demo_env.config.entity("customers")
    keys = slice_keys(ent.slice_count)
    params = {
        "partitionNames": keys,
        "assetSelection": [{"path": ["erp", "customers"]}],
        # Backfill runs inherit these tags: the run queue limits them to one at a time.
        "tags": [{"key": "syncflow/entity", "value": "customers"}],
    }
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

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.from_config(str(home))
    try:
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
        assert {r.dagster_run.tags["syncflow/entity"] for r in records} == {"customers"}
        # The queue let one customers run at a time: their execution intervals do not overlap.
        spans = sorted((r.start_time, r.end_time) for r in records)
        assert all(s is not None and e is not None for s, e in spans)
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, spans  # type: ignore[operator]
        key = AssetKey(["erp", "customers"])
        assert instance.get_materialized_partitions(key) == set(keys)
    finally:
        instance.dispose()
    import sqlite3

    with sqlite3.connect(demo_env.target) as con:
        (n,) = con.execute('SELECT COUNT(*) FROM "customers"').fetchone()
    assert n > 0
    assert os.path.exists(home / "storage")
