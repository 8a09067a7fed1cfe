"""No row value and no password in anything Dagster keeps or prints about a failed run.

Two runs fail through the `dagster` CLI on a real instance: a load that PostgreSQL refuses
(a CHECK constraint; the driver's DETAIL quotes the whole row) and a target URL whose password
holds an unencoded ``@`` (the driver then quotes the password's tail as a host name). The test
searches every file under DAGSTER_HOME (event-log and run databases, compute logs) and the CLI
processes' stdout and stderr.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from syncflow_core import pipeline
from syncflow_core.config import load_config
from syncflow_core.runtime import Runtime
from syncflow_dagster.resources import CONFIG_ENV, default_config_path

pytestmark = [pytest.mark.dagster, pytest.mark.postgres, pytest.mark.slow]

SECRET_VALUE = "Zebulon-Quartz-4711"
PASSWORD = "s3cr@tPart-9"
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _materialize(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "syncflow_dagster.definitions",
         "--select", "erp/customers", "--partition", "slice-01"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def _stored_text(home: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_failed_runs_leak_no_row_value_and_no_password(tmp_path: Path, pg_url: str) -> None:
    from syncflow_core.demo.erp import generate_demo_erp

    erp = tmp_path / "erp.sqlite"
    generate_demo_erp(erp, seed=7, scale=0.02)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(Path(__file__).parents[2] / "syncflow_dagster" / "dagster.yaml", home)
    env = {**os.environ, "DAGSTER_HOME": str(home), CONFIG_ENV: default_config_path(),
           "SYNCFLOW_ERP_URL": f"sqlite:///{erp}", "SYNCFLOW_TARGET_URL": pg_url,
           "SYNCFLOW_STATE_URL": pg_url}
    # The first load (through the core: quicker than a third CLI run).
    with Runtime.open(load_config(default_config_path()), env) as rt:
        pipeline.sync_slice(rt, "customers", "slice-01", "initial")
    # The ERP changes a customer's name to a value the target refuses.
    con = sqlite3.connect(erp)
    with con:
        (key,) = con.execute("SELECT MIN(CUSTOMER_NO) FROM CUSTOMERS").fetchone()
        con.execute("UPDATE CUSTOMERS SET NAME = ?, LAST_CHANGE = LAST_CHANGE + 100000 "
                    "WHERE CUSTOMER_NO = ?", (SECRET_VALUE, key))
    con.close()
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.exec_driver_sql("ALTER TABLE customers ADD CONSTRAINT customers_name_ok "
                          "CHECK (position('Zebulon' in name) = 0)")
    engine.dispose()

    refused = _materialize(env)
    bad_url = pg_url.replace("postgres@", f"postgres:{PASSWORD}@")
    unreachable = _materialize({**env, "SYNCFLOW_TARGET_URL": bad_url,
                                "SYNCFLOW_STATE_URL": bad_url})

    assert refused.returncode != 0 and unreachable.returncode != 0
    printed = "".join([refused.stdout, refused.stderr, unreachable.stdout, unreachable.stderr])
    stored = _stored_text(home)
    assert list(home.rglob("compute_logs/*.err"))  # the compute logs are among the files
    # The failures are there, and say what failed ...
    assert b"CheckViolation (SQLSTATE 23514)" in stored and b"customers_name_ok" in stored
    assert b"failed to resolve host '***@" in stored
    assert "CheckViolation" in printed and "***@" in printed
    # ... but neither the row's value nor any piece of the password.
    for secret in (SECRET_VALUE, "Zebulon", "s3cr", "tPart-9"):
        assert secret.encode() not in stored, secret
        assert secret not in printed, secret
