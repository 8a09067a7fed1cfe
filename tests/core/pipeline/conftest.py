"""Source and target databases for pipeline tests: two SQLite files, or two PostgreSQL DBs."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from tests.core.pipeline.erp import sqlite_urls

_n = itertools.count()


def pg_pair(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(source, target) URLs of two fresh databases in the session's PostgreSQL cluster."""
    cluster = request.getfixturevalue("pg")
    tag = f"p{os.getpid()}_{next(_n)}"
    return cluster.create_database(f"{tag}_erp"), cluster.create_database(f"{tag}_tgt")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(source URL, target URL): SQLite -> SQLite or PostgreSQL -> PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_urls(tmp_path)
    return pg_pair(request)
