"""A schema change waits a bounded time behind open readers (PostgreSQL lock_timeout)."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest
import sqlalchemy as sa

from syncflow_core.errors import TargetSchemaError
from syncflow_core.targets import sql as target_sql
from syncflow_core.targets.sql import SqlTarget

pytestmark = pytest.mark.postgres

KEYS = ["code"]
SCHEMA = pa.schema([("code", pa.string()), ("name", pa.string())])


def _reader_holding_the_table(url: str) -> tuple[sa.Engine, sa.Connection]:
    """A reader with an open transaction that has read the table (ACCESS SHARE held)."""
    engine = sa.create_engine(url)
    conn = engine.connect()
    conn.execute(sa.text("SELECT count(*) FROM items")).scalar_one()
    return engine, conn


def test_alter_behind_an_open_reader_gives_up_with_a_clear_error(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target_sql, "_DDL_BACKOFF_SECONDS", 0.1)
    target = SqlTarget(pg_url, ddl_lock_timeout=0.3)
    target.ensure_table("items", SCHEMA, KEYS)
    engine, reader = _reader_holding_the_table(pg_url)
    errors: list[BaseException] = []

    def alter() -> None:
        try:
            target.ensure_table("items", SCHEMA.append(pa.field("color", pa.string())), KEYS)
        except BaseException as exc:
            errors.append(exc)

    started = time.perf_counter()
    worker = threading.Thread(target=alter)
    worker.start()
    try:
        time.sleep(0.1)  # the ALTER now waits for its lock
        # A new reader queues behind the waiting ALTER only until its lock_timeout ends; an
        # unbounded ALTER would hold it until the first reader's transaction ends.
        with engine.connect() as other:
            other.execute(sa.text("SET lock_timeout = '3s'"))
            began = time.perf_counter()
            assert other.execute(sa.text("SELECT count(*) FROM items")).scalar_one() == 0
            assert time.perf_counter() - began < 1.5
        worker.join(10)
        # Three bounded waits and two short pauses, then a clear error.
        assert time.perf_counter() - started < 5
        assert len(errors) == 1 and isinstance(errors[0], TargetSchemaError)
        assert "waited 0.3 s for the table's lock 3 times" in str(errors[0])
    finally:
        reader.close()
        engine.dispose()
    assert "color" not in target.arrow_schema("items").names
    target.close()


def test_alter_retries_and_succeeds_once_the_reader_is_gone(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target_sql, "_DDL_BACKOFF_SECONDS", 0.2)
    target = SqlTarget(pg_url, ddl_lock_timeout=0.3)
    target.ensure_table("items", SCHEMA, KEYS)
    engine, reader = _reader_holding_the_table(pg_url)
    done = threading.Timer(0.5, reader.close)  # the report finishes while the sync waits
    done.start()
    try:
        target.ensure_table("items", SCHEMA.append(pa.field("color", pa.string())), KEYS)
    finally:
        done.join()
        engine.dispose()
    assert "color" in target.arrow_schema("items").names
    target.close()
