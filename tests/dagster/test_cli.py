"""The `syncflow` CLI on the demo ERP, with target and state in SQLite and in PostgreSQL.

One template per backend is synced once (customers through Dagster runs on a real instance,
order lines through the core, so that children wait for their orders); every test works on a
copy of it (files copied, a PostgreSQL database cloned from the template), so tests are
independent in any order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from syncflow_core import pipeline
from syncflow_core.config import load_config
from syncflow_core.keycodec import loads_key
from syncflow_core.runtime import Runtime
from syncflow_core.state.store import StateStore
from syncflow_dagster.cli import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_NOT_FOUND, main
from syncflow_dagster.resources import CONFIG_ENV, default_config_path
from tests.pg import PgCluster

pytestmark = [pytest.mark.dagster, pytest.mark.slow]

URL_ENVS = ("SYNCFLOW_ERP_URL", "SYNCFLOW_TARGET_URL", "SYNCFLOW_STATE_URL")
BAD_CREDIT = "12,3x"  # the demo's customer with an unreadable credit limit


@dataclass
class Template:
    root: Path
    backend: str
    target_url: str
    pg: PgCluster | None


@dataclass
class OpsEnv:
    root: Path
    erp: Path
    target_url: str
    env: dict[str, str]

    def run(self, *args: str) -> Result:
        result = CliRunner().invoke(main, list(args), env=self.env, catch_exceptions=False)
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        result = self.run(*args, "--json")
        assert result.exit_code == code, result.output
        return json.loads(result.stdout)

    def runtime(self) -> Runtime:
        return Runtime.open(load_config(default_config_path()), self.env)


def _sync_customers_through_dagster(env: dict[str, str]) -> None:
    from dagster import DagsterInstance

    from syncflow_dagster.definitions import build_definitions
    from syncflow_dagster.demo import sync_all

    config = load_config(default_config_path())
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        sync_all(build_definitions(config), config, instance, log=lambda _: None,
                 entities=["customers"])
    finally:
        instance.dispose()


def _env(root: Path, target_url: str) -> dict[str, str]:
    return {**os.environ, CONFIG_ENV: default_config_path(),
            "DAGSTER_HOME": str(root / "dagster_home"),
            "SYNCFLOW_ERP_URL": f"sqlite:///{root / 'erp.sqlite'}",
            "SYNCFLOW_TARGET_URL": target_url, "SYNCFLOW_STATE_URL": target_url}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def template(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    from syncflow_core.demo.erp import generate_demo_erp

    root = tmp_path_factory.mktemp(f"cli-{request.param}")
    generate_demo_erp(root / "erp.sqlite", seed=7, scale=0.02)
    (root / "dagster_home").mkdir()
    shutil.copy(Path(default_config_path()).parents[2] / "syncflow_dagster" / "dagster.yaml",
                root / "dagster_home")
    pg: PgCluster | None = None
    if request.param == "postgres":
        pg = request.getfixturevalue("pg")
        url = pg.create_database(f"cli_template_{os.getpid()}")
    else:
        url = f"sqlite:///{root / 'target.sqlite'}"
    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", *URL_ENVS)}
    env = _env(root, url)
    os.environ.update({k: env[k] for k in saved})
    try:
        _sync_customers_through_dagster(env)
        with Runtime.open(load_config(default_config_path()), env) as rt:
            pipeline.sync_slice(rt, "order_lines", "slice-01", "core-run")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield Template(root, request.param, url, pg)


_copies = iter(range(10_000))


@pytest.fixture
def ops(template: Template, tmp_path: Path) -> OpsEnv:
    for name in ("erp.sqlite", "dagster_home"):
        src = template.root / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    if template.pg is not None:
        import psycopg

        name = f"cli_{os.getpid()}_{next(_copies)}"
        with psycopg.connect(host=template.pg.host, port=template.pg.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            source_db = template.target_url.rsplit("/", 1)[1]
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source_db}"')
        url = template.pg.url(name)
    else:
        shutil.copy(template.root / "target.sqlite", tmp_path / "target.sqlite")
        url = f"sqlite:///{tmp_path / 'target.sqlite'}"
    return OpsEnv(tmp_path, tmp_path / "erp.sqlite", url, _env(tmp_path, url))


def _checksums(url: str) -> dict[str, str]:
    """A digest of every row of every table in the target/state database."""
    engine = sa.create_engine(url)
    try:
        out = {}
        with engine.connect() as conn:
            for table in sorted(sa.inspect(conn).get_table_names()):
                rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()
                digest = hashlib.sha256()
                for row in sorted(repr(tuple(r)) for r in rows):
                    digest.update(row.encode())
                out[table] = digest.hexdigest()
        return out
    finally:
        engine.dispose()


def _erp(ops: OpsEnv, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(ops.erp)
    try:
        with con:
            return con.execute(sql, args).fetchall()
    finally:
        con.close()


# ---------------------------------------------------------------------------------- tests


def test_status_shows_runs_progress_failed_and_pending(ops: OpsEnv) -> None:
    rows = {r["entity"]: r for r in ops.json("status")}
    customers, lines = rows["customers"], rows["order_lines"]
    assert customers["last_run"]["status"] == "SUCCESS"
    # One pass over the 3 slices is done; the next has not started.
    assert (customers["passes_completed"], customers["done_in_pass"], customers["slices"]) == (
        1, 0, 3)
    assert lines["passes_completed"] == 0 and lines["done_in_pass"] == 1  # slice-01 of 7
    with ops.runtime() as rt:
        assert customers["failed_open"] == rt.state.list_failed_records("customers").num_rows > 0
        assert lines["pending"] == rt.state.pending_counts("order_lines").total > 0
    assert lines["last_run"] is None  # synced outside Dagster: no run in its history
    text = ops.run("status").output
    assert "0/3 of pass 2 (1 done)" in text and "1/7 of pass 1" in text


def test_history_lists_the_runs_with_their_counts(ops: OpsEnv) -> None:
    runs = ops.json("history", "customers")
    assert [r["partitions"] for r in runs] == [["slice-03"], ["slice-02"], ["slice-01"]]
    fetched = sum(r["counts"]["customers"]["fetched"] for r in runs)
    assert fetched == _erp(ops, "SELECT COUNT(*) FROM CUSTOMERS")[0][0]
    assert ops.run("history", "nope").exit_code == EXIT_NOT_FOUND


def test_diff_predicts_the_sync_and_writes_nothing(ops: OpsEnv) -> None:
    _erp(ops, "UPDATE CUSTOMERS SET NAME = NAME || ' GmbH', LAST_CHANGE = LAST_CHANGE + 5000 "
              "WHERE CUSTOMER_NO IN (SELECT CUSTOMER_NO FROM CUSTOMERS "
              "WHERE CUSTOMER_NO IS NOT NULL ORDER BY CUSTOMER_NO LIMIT 2)")
    _erp(ops, "DELETE FROM CUSTOMERS WHERE CUSTOMER_NO = (SELECT MAX(CUSTOMER_NO) "
              "FROM CUSTOMERS WHERE CUSTOMER_NO LIKE 'C0000%')")
    before = _checksums(ops.target_url)
    report = ops.json("diff", "customers", "--slice", "slice-01")
    lines = ops.json("diff", "order_lines")
    assert _checksums(ops.target_url) == before  # target and state tables: not a row changed
    assert report["update"] == 2 and len(report["samples"]["update"]) == 2
    assert lines["pending"] > 0 and lines["samples"]["pending"]
    with ops.runtime() as rt:
        done = pipeline.sync_slice(rt, "customers", "slice-01", "after-diff")
    assert (done.inserted, done.updated) == (report["insert"], report["update"])


def test_failed_replay_closes_records_once_the_source_is_fixed(ops: OpsEnv) -> None:
    records = ops.json("failed", "list", "--entity", "customers")
    bad = next(r for r in records if r["error_code"] == "invalid_number")
    shown = ops.json("failed", "show", bad["id"])
    assert BAD_CREDIT in shown["raw_row"]
    # Before the fix a replay changes nothing and says so (exit 1: records still open).
    again = ops.json("failed", "replay", bad["id"], code=EXIT_CHECK_FAILED)
    assert again["closed"] == 0 and again["still_open"] == 1
    _erp(ops, "UPDATE CUSTOMERS SET CREDIT_LIMIT = '12.30' WHERE CREDIT_LIMIT = ?", BAD_CREDIT)
    done = ops.json("failed", "replay", bad["id"])
    assert done["closed_ids"] == [bad["id"]] and done["loaded"] == 1
    open_ids = {r["id"] for r in ops.json("failed", "list", "--entity", "customers")}
    assert bad["id"] not in open_ids and len(open_ids) == len(records) - 1
    with ops.runtime() as rt:
        table = rt.target.read_table("customers")
    mine = [r for r in table.to_pylist() if r["_bridge_batch_id"] == done["run_id"]]
    assert len(mine) == 1 and str(mine[0]["credit_limit"]) == "12.30"
    assert ops.run("failed", "show", "no-such-id").exit_code == EXIT_NOT_FOUND


@pytest.mark.skipif(not hasattr(StateStore, "close_failed_records"),
                    reason="a normal sync closes failed records with #13a's close_failed_records")
def test_a_normal_sync_closes_failed_records_too(ops: OpsEnv) -> None:
    before = ops.json("failed", "list", "--entity", "customers")
    bad = next(r for r in before if r["error_code"] == "invalid_number")
    _erp(ops, "UPDATE CUSTOMERS SET CREDIT_LIMIT = '12.30', LAST_CHANGE = LAST_CHANGE + 9000 "
              "WHERE CREDIT_LIMIT = ?", BAD_CREDIT)
    with ops.runtime() as rt:
        for key in ("slice-01", "slice-02", "slice-03"):
            pipeline.sync_slice(rt, "customers", key, "normal-sync")
    assert bad["id"] not in {r["id"] for r in ops.json("failed", "list", "--entity", "customers")}


def test_pending_list_and_why(ops: OpsEnv) -> None:
    waiting = ops.json("pending", "list", "--entity", "order_lines")
    assert waiting and {w["parent_entity"] for w in waiting} <= {"orders", "items"}
    why = ops.json("pending", "why", waiting[0]["id"])
    assert why["parent_entity"] == waiting[0]["parent_entity"]
    assert why["parent_present"] is False and why["attempts"] == 0
    assert tuple(why["parent_key"]) == loads_key(waiting[0]["parent_key"])
    assert "waits for" in ops.run("pending", "why", waiting[0]["id"]).output
    assert ops.run("pending", "why", "nope").exit_code == EXIT_NOT_FOUND


def test_health_names_the_database_that_is_down(ops: OpsEnv, tmp_path: Path) -> None:
    ok = ops.json("health")
    assert ok["ok"] and {c["name"] for c in ok["checks"]} == {
        "source erp", "target", "state store", "state migrations", "dagster instance"}
    if ops.target_url.startswith("sqlite"):
        down = f"sqlite:///{tmp_path / 'no-such-dir' / 'target.sqlite'}"
    else:
        down = ops.target_url.rsplit("/", 1)[0] + "/no_such_database"
    result = CliRunner().invoke(main, ["health"], env={**ops.env, "SYNCFLOW_TARGET_URL": down})
    assert result.exit_code == EXIT_CHECK_FAILED
    target_line = next(x for x in result.output.splitlines() if " target " in f" {x} ")
    assert target_line.startswith("DOWN") and "TargetError" in target_line
    assert "ok   state store" in result.output  # only the target is named


def test_migrate_brings_a_fresh_state_store_to_head(ops: OpsEnv, tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'state.sqlite'}"
    env = {**ops.env, "SYNCFLOW_STATE_URL": fresh}
    before = CliRunner().invoke(main, ["health"], env=env)
    assert before.exit_code == EXIT_CHECK_FAILED and "run `syncflow migrate`" in before.output
    done = CliRunner().invoke(main, ["migrate", "--json"], env=env)
    assert done.exit_code == 0 and json.loads(done.stdout)["to"] == StateStore.head_revision()
    assert CliRunner().invoke(main, ["health"], env=env).exit_code == 0


def test_config_check_reports_what_does_not_fit(ops: OpsEnv, tmp_path: Path) -> None:
    findings = ops.json("config", "check", code=EXIT_CHECK_FAILED)
    # The demo ERP holds one customer number twice (padded): a real finding.
    assert any(f["entity"] == "customers" and "occur more than once" in f["message"]
               for f in findings if f["level"] == "error")
    assert {f["entity"] for f in findings if f["level"] == "ok"} >= {"items", "order_lines"}
    broken = tmp_path / "syncflow.yaml"
    text = Path(default_config_path()).read_text()
    broken.write_text(text.replace("LINE_NO: {type: 'NUMBER(5)'}", "LINE_NO: {type: 'NUMBR(5)'}"))
    result = ops.json("config", "check", "--config", str(broken), code=EXIT_CHECK_FAILED)
    assert any("fields.LINE_NO.type" in f["message"] and f["entity"] == "order_lines"
               for f in result)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _serve(ops: OpsEnv, preexec: Callable[[], None] | None = None) -> tuple[Any, int]:
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    exe = str(Path(sys.executable).with_name("syncflow"))
    proc = subprocess.Popen([exe, "metrics", "serve", "--port", str(port)], env=ops.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec)
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).close()
            return proc, port
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise AssertionError(proc.communicate()[1].decode()) from None
            time.sleep(0.2)


def test_metrics_over_http_match_the_runs(ops: OpsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import AssetKey, DagsterInstance

    from syncflow_core.window import in_window
    from syncflow_dagster.definitions import build_definitions
    from syncflow_dagster.demo import QUIET
    from syncflow_dagster.jobs import entity_job_name

    proc, port = _serve(ops)
    try:
        first = _scrape(port)
        customers = (("entity", "customers"),)

        def rows(scrape: dict[Any, float], op: str) -> float:
            return scrape[("syncflow_rows_total", (("entity", "customers"), ("operation", op)))]

        instance = DagsterInstance.from_config(ops.env["DAGSTER_HOME"])
        try:
            mats = instance.fetch_materializations(AssetKey(["erp", "customers"]), limit=100)
            meta = [r.asset_materialization.metadata for r in mats.records]
            assert rows(first, "inserted") == sum(m["inserted"].value for m in meta) > 0
            assert rows(first, "rejected") == sum(m["rejected"].value for m in meta)
            assert first[("syncflow_sync_duration_seconds_count", customers)] == len(meta) == 3
            assert first[("syncflow_last_success_timestamp_seconds", customers)] == max(
                r.timestamp for r in mats.records)
            with ops.runtime() as rt:
                assert first[("syncflow_failed_records", customers)] == (
                    rt.state.list_failed_records("customers").num_rows)
                assert first[("syncflow_pending_children", (("entity", "order_lines"),))] == (
                    rt.state.pending_counts("order_lines").total) > 0
                now = datetime.now(UTC)
                assert first[("syncflow_window_open", customers)] == float(
                    in_window(now, rt.entity("customers").schedule))
            # One more run: the scrape moves by exactly that run's counts.
            _erp(ops, "UPDATE CUSTOMERS SET CITY = CITY || '-Nord', LAST_CHANGE = LAST_CHANGE "
                      "+ 7000 WHERE CUSTOMER_NO IN (SELECT CUSTOMER_NO FROM CUSTOMERS WHERE "
                      "CUSTOMER_NO IS NOT NULL ORDER BY CUSTOMER_NO LIMIT 3)")
            for name in URL_ENVS:  # the run below executes in this process
                monkeypatch.setenv(name, ops.env[name])
            config = load_config(default_config_path())
            job = build_definitions(config).resolve_job_def(
                entity_job_name(config.entity("customers")))
            result = job.execute_in_process(run_config=QUIET, instance=instance,
                                            partition_key="slice-01")
            (event,) = result.get_asset_materialization_events()
            last = event.materialization.metadata
        finally:
            instance.dispose()
        second = _scrape(port)
        assert last["updated"].value == 3
        for op in ("inserted", "updated", "unchanged", "deleted", "rejected"):
            assert rows(second, op) - rows(first, op) == last[op].value, op
        assert second[("syncflow_sync_duration_seconds_count", customers)] == 4
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_failed_show_decrypts_sealed_payloads_and_refuses_a_wrong_key(ops: OpsEnv) -> None:
    import base64

    key, other = base64.b64encode(b"k" * 32).decode(), base64.b64encode(b"w" * 32).decode()
    sealed = {**ops.env, "SYNCFLOW_PAYLOAD_KEYS": f"k1:{key}"}
    # A sync with a key configured re-reads the bad rows and seals their records.
    with Runtime.open(load_config(default_config_path()), sealed) as rt:
        for key in ("slice-01", "slice-02", "slice-03"):
            pipeline.sync_slice(rt, "customers", key, "sealed-run")
    engine = sa.create_engine(ops.target_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT raw_row, message, payload_key_id FROM sf_failed_records "
            "WHERE entity = 'customers'")).all()
    engine.dispose()
    assert stored and all(r.payload_key_id == "k1" for r in stored)
    assert BAD_CREDIT not in repr(stored)  # ciphertext at rest
    listed = CliRunner().invoke(main, ["failed", "list", "--json"], env=sealed)
    record = next(r for r in json.loads(listed.stdout) if r["error_code"] == "invalid_number")
    shown = CliRunner().invoke(main, ["failed", "show", record["id"], "--json"], env=sealed)
    assert shown.exit_code == 0 and BAD_CREDIT in json.loads(shown.stdout)["raw_row"]
    wrong = CliRunner().invoke(main, ["failed", "show", record["id"]],
                               env={**ops.env, "SYNCFLOW_PAYLOAD_KEYS": f"k1:{other}"})
    assert wrong.exit_code == EXIT_ERROR
    assert "PayloadKeyError: payload key 'k1' does not decrypt" in wrong.stderr
    assert BAD_CREDIT not in wrong.output


def test_metrics_server_stops_on_sigterm_even_when_started_with_it_ignored(ops: OpsEnv) -> None:
    """A parent that ran Dagster in process may pass SIGTERM on as ignored (Dagster maps it to
    SIGINT's handler, which test runners and some supervisors ignore); the server must still
    stop when Kubernetes (or anyone) sends it."""
    import signal

    def ignore_sigterm() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    proc, _port = _serve(ops, preexec=ignore_sigterm)
    try:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
