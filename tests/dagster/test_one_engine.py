"""The asset path is the engine: chunk by chunk, a cursor per chunk, nothing stale, no stage files.

Each test materializes the products entity of the pipeline tests' messy ERP through its real
Dagster job, on a real instance, with PostgreSQL source and target, the config as a file (what
a deployment serves) and slices of many chunks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    DagsterEventType,
    DagsterInstance,
    JobDefinition,
    ReexecutionOptions,
    execute_job,
    instance_for_test,
    reconstructable,
)
from dagster._core.definitions.reconstruct import ReconstructableJob

from syncflow_core.config import SyncFlowConfig, load_config
from syncflow_core.runtime import Runtime
from syncflow_dagster.background import BACKGROUND_TAG, PAUSED_TAG, WINDOW_END_TAG
from syncflow_dagster.definitions import build_definitions
from syncflow_dagster.resources import CONFIG_ENV
from tests.core.pipeline.erp import (
    Erp,
    Product,
    bump,
    business_values,
    entity_config,
    expected,
    key_hashes_unique,
    live,
    products,
    target_rows,
)

pytestmark = [pytest.mark.dagster, pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
JOB = "products_sync"


@dataclass
class Setup:
    """A products ERP in PostgreSQL, a PostgreSQL target, and the config file serving them."""

    erp: Erp
    target_url: str
    config_path: Path
    config: SyncFlowConfig
    rows: list[Product]

    def runtime(self) -> Runtime:
        return Runtime.open(self.config)


def _setup(pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, n: int, chunk: int,
           strategy: str = "hash") -> Setup:
    tag = f"e{os.getpid()}_{time.monotonic_ns() % 10**9}"
    erp_url = pg.create_database(f"{tag}_erp")
    target_url = pg.create_database(f"{tag}_tgt")
    erp = Erp(erp_url)
    rows = products(n)
    erp.create_products(rows)
    doc = {
        "version": 1,
        "sources": {"erp": {"kind": "sql", "url": erp_url}},
        "target": {"url": target_url},
        "entities": {
            "products": entity_config(strategy=strategy,
                                      extra={"slices": 1, "chunk_size": chunk}),
        },
    }
    path = tmp_path / "syncflow.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv(CONFIG_ENV, str(path))
    return Setup(erp, target_url, path, load_config(path), rows)


def _job(setup: Setup) -> JobDefinition:
    return build_definitions(setup.config, str(setup.config_path)).resolve_job_def(JOB)


def _products_job() -> JobDefinition:
    """Module-level so `reconstructable` can rebuild it (re-execution needs that)."""
    path = os.environ[CONFIG_ENV]
    return build_definitions(load_config(path), path).resolve_job_def(JOB)


def _recon() -> Any:
    # Dagster keeps the last reconstructed definition per code pointer; each test has its own
    # config file (and databases), so forget the previous test's.
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    return reconstructable(_products_job)


def _meta(instance: DagsterInstance, run_id: str) -> dict[str, Any]:
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    mat = records[-1].event_log_entry.asset_materialization
    assert mat is not None
    return {k: v.value for k, v in mat.metadata.items()}


def _assert_target_is_source(setup: Setup, rows: list[Product]) -> None:
    with setup.runtime() as rt:
        got = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in live(got).items()} == expected(rows)
        assert rt.target.row_count("products", live_only=False) == len(rows)  # none doubled
        assert key_hashes_unique(rt, "products")
        assert rt.target.unique_key_index("products") == "products_bkh_uq"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as inst:
        yield inst


_RUN_IN_CHILD = textwrap.dedent("""
    import sys
    from dagster import DagsterInstance
    from syncflow_core.config import load_config
    from syncflow_dagster.definitions import build_definitions

    path = sys.argv[1]
    job = build_definitions(load_config(path), path).resolve_job_def("products_sync")
    with DagsterInstance.get() as instance:
        job.execute_in_process(instance=instance, partition_key="slice-01")
    sys.exit(3)  # the test kills this process before the run ends
""")


def test_kill_9_mid_slice_then_a_new_run_finishes_without_loss_or_doubles(
    pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: DagsterInstance
) -> None:
    setup = _setup(pg, tmp_path, monkeypatch, n=3000, chunk=25)  # 120 chunks, one slice
    env = {**os.environ, "DAGSTER_HOME": str(instance.root_directory),
           CONFIG_ENV: str(setup.config_path)}
    (Path(instance.root_directory) / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    child = subprocess.Popen(  # its own process group: the kill takes its workers too
        [sys.executable, "-c", _RUN_IN_CHILD, str(setup.config_path)],
        cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    done_before_kill = 0
    try:
        deadline = time.monotonic() + 120
        with setup.runtime() as rt:
            while time.monotonic() < deadline and child.poll() is None:
                cursor = rt.state.get_cursor("products", "slice-01")
                if cursor is not None and cursor.rows_done >= 250:
                    done_before_kill = cursor.rows_done
                    break
                time.sleep(0.02)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        out = child.communicate()[0].decode(errors="replace")
    assert child.returncode == -signal.SIGKILL, out
    assert 250 <= done_before_kill < 3000
    # Chunks may have committed between that look and the kill: what counts is the cursor
    # the killed run left behind.
    with setup.runtime() as rt:
        left = rt.state.get_cursor("products", "slice-01")
    assert left is not None and left.status == "running"
    assert done_before_kill <= left.rows_done < 3000

    result = _job(setup).execute_in_process(instance=instance, partition_key="slice-01")
    assert result.success
    meta = _meta(instance, result.run_id)
    # It resumed from the committed cursor: it read exactly the rows the killed run had not.
    assert meta["fetched"] == 3000 - left.rows_done < 3000
    _assert_target_is_source(setup, setup.rows)


@pytest.mark.parametrize("strategy", ["hash", "rowversion"])
def test_reexecuting_a_failed_run_never_writes_rows_older_than_the_target(
    pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: DagsterInstance,
    strategy: str,
) -> None:
    setup = _setup(pg, tmp_path, monkeypatch, n=200, chunk=40, strategy=strategy)
    recon = _recon()
    part = {"dagster/partition": "slice-01"}
    assert execute_job(recon, instance, tags=part).success  # the first load

    rows = list(setup.rows)
    rows[0] = bump(rows[0], name="edited in R1's time")
    setup.erp.update_product(rows[0])
    # R1's load fails: the target refuses writes (a trigger, as a broken target would).
    with setup.runtime() as rt, rt.target.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'target refuses writes'; END $$")
        conn.exec_driver_sql(
            'CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON "products" '
            "FOR EACH ROW EXECUTE FUNCTION refuse()")
    r1 = execute_job(recon, instance, tags=part)
    assert not r1.success
    with setup.runtime() as rt, rt.target.begin() as conn:
        conn.exec_driver_sql('DROP TRIGGER refuse ON "products"')

    # R2 syncs a newer edit of the same row.
    rows[0] = bump(rows[0], name="edited in R2's time")
    setup.erp.update_product(rows[0])
    assert execute_job(recon, instance, tags=part).success
    _assert_target_is_source(setup, rows)

    # Re-executing R1 from its failure must not bring R1's view back.
    again = execute_job(recon, instance, tags=part,
                        reexecution_options=ReexecutionOptions.from_failure(r1.run_id, instance))
    assert again.success
    _assert_target_is_source(setup, rows)
    # ... and the slice goes on from there: a later edit still arrives (a watermark that
    # moved past a stale write would hide it for good).
    rows[1] = bump(rows[1], name="edited later")
    setup.erp.update_product(rows[1])
    assert execute_job(recon, instance, tags=part).success
    _assert_target_is_source(setup, rows)


def test_window_closing_mid_slice_pauses_at_a_chunk_boundary_and_the_next_run_resumes(
    pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: DagsterInstance
) -> None:
    setup = _setup(pg, tmp_path, monkeypatch, n=300, chunk=50)  # 6 chunks
    job = _job(setup)
    closed = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    paused = job.execute_in_process(instance=instance, partition_key="slice-01", tags={
        BACKGROUND_TAG: "true", WINDOW_END_TAG: closed})
    assert paused.success
    run = instance.get_run_by_id(paused.run_id)
    assert run is not None and run.tags[PAUSED_TAG] == "slice-01"
    meta = _meta(instance, paused.run_id)
    assert meta["paused"] is True and meta["fetched"] == 50  # one chunk, then the boundary
    with setup.runtime() as rt:
        cursor = rt.state.get_cursor("products", "slice-01")
        assert cursor is not None and cursor.status == "paused" and cursor.rows_done == 50
        assert len(live(target_rows(rt, "products"))) == 50

    resumed = job.execute_in_process(instance=instance, partition_key="slice-01")
    assert resumed.success
    assert _meta(instance, resumed.run_id)["fetched"] == 250  # no row read twice
    _assert_target_is_source(setup, setup.rows)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_runs_leave_no_stage_files_after_success_or_failure(
    pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: DagsterInstance
) -> None:
    setup = _setup(pg, tmp_path, monkeypatch, n=400, chunk=50)
    root = Path(instance.root_directory)
    before = _files(root)
    ok = _job(setup).execute_in_process(instance=instance, partition_key="slice-01")
    assert ok.success
    setup.erp.execute('ALTER TABLE "PRODUCTS" RENAME TO "MOVED"')
    failed = _job(setup).execute_in_process(instance=instance, partition_key="slice-01",
                                            raise_on_error=False)
    assert not failed.success
    # Whatever the runs added is Dagster's own storage (run/event databases, compute logs).
    added = _files(root) - before
    ours = [f for f in added if not (f.endswith((".db", ".db-wal", ".db-shm", ".out", ".err",
                                                  ".complete"))
                                     or "compute_logs" in f or "schedules" in f)]
    assert ours == []
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("syncflow*batch*"))
