"""Shared fixtures: real SQLite files and a real throw-away PostgreSQL."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests.pg import PgCluster, find_pg_bin, pg_cluster

_db_counter = itertools.count()


def _pg_required() -> bool:
    return os.environ.get("SYNCFLOW_REQUIRE_POSTGRES", "") not in ("", "0", "false")


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    """One PostgreSQL cluster for the session; skips (or fails under CI) without binaries."""
    if find_pg_bin() is None:
        if _pg_required():
            pytest.fail("PostgreSQL binaries not found and SYNCFLOW_REQUIRE_POSTGRES is set")
        pytest.skip("PostgreSQL server binaries not found")
    with pg_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg: PgCluster) -> str:
    """A fresh, empty database in the session cluster (SQLAlchemy psycopg3 URL)."""
    return pg.create_database(f"t{os.getpid()}_{next(_db_counter)}")
