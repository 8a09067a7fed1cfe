"""Keyset paging over keys that repeat, and over linguistic collations, on SQLite and PostgreSQL.

An ERP table without a unique key may hold one business key twice. A chunk never ends inside
a run of equal keys (the next chunk starts *after* the last key read), so every row is read
exactly once, whatever the chunk size. Text keys are paged byte by byte, also when the
column's collation is case-insensitive or linguistic.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncflow_core.config import SourceRef
from syncflow_core.sources.sql import SqlSource

REF = SourceRef(table="lines")
KEYS = ["a", "b", "b", "b", "c", "d", "d", "e", "f", "f", "f", "f", "g", "h", "h"]
ROWS = [(k, i) for i, k in enumerate(KEYS)]


def _sqlite(tmp_path: Path, ddl: str) -> str:
    with sqlite3.connect(tmp_path / "src.db") as conn:
        conn.execute(ddl)
        conn.executemany("INSERT INTO lines VALUES (?, ?)", ROWS)
    return f"sqlite:///{tmp_path / 'src.db'}"


def _pg(url: str, ddl: str) -> str:
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.exec_driver_sql(ddl)
        conn.execute(sa.text("INSERT INTO lines VALUES (:k, :v)"),
                     [{"k": k, "v": v} for k, v in ROWS])
    eng.dispose()
    return url


def _chunks(src: SqlSource, size: int) -> list[list[tuple[Any, Any]]]:
    return [list(zip(c.column("k").to_pylist(), c.column("v").to_pylist(), strict=True))
            for c in src.read(REF, ["k"], None, None, size)]


def _check_runs(src: SqlSource) -> None:
    for size in (1, 2, 3, 4, 5, 100):
        chunks = _chunks(src, size)
        got = [r for c in chunks for r in c]
        assert Counter(got) == Counter(ROWS), size  # every row once
        keys = [k for k, _ in got]
        assert keys == sorted(keys)
        for before, after in itertools.pairwise(chunks):
            assert before[-1][0] < after[0][0], size  # no run split over two chunks
        assert all(len(c) >= size for c in chunks[:-1])


def test_sqlite_duplicate_keys_are_never_split_or_skipped(tmp_path: Path) -> None:
    src = SqlSource(_sqlite(tmp_path, "CREATE TABLE lines (k TEXT, v INTEGER)"))
    assert not src.key_traits(REF).is_unique(["k"])
    _check_runs(src)
    src.close()


@pytest.mark.postgres
def test_pg_duplicate_keys_are_never_split_or_skipped(pg_url: str) -> None:
    src = SqlSource(_pg(pg_url, "CREATE TABLE lines (k TEXT, v INTEGER)"))
    _check_runs(src)
    src.close()


def test_sqlite_declared_unique_key_keeps_the_plain_limit_path(tmp_path: Path) -> None:
    url = _sqlite(tmp_path, "CREATE TABLE lines (k TEXT, v INTEGER PRIMARY KEY)")
    src = SqlSource(url)
    assert src.key_traits(REF).is_unique(["v"]) and not src.key_traits(REF).is_unique(["k"])
    assert src.key_traits(REF).collate == {}
    src.close()


def test_sqlite_nocase_column_is_paged_in_binary_order(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "src.db") as conn:
        conn.execute('CREATE TABLE lines ("k" TEXT COLLATE NOCASE, v INTEGER)')
        conn.executemany("INSERT INTO lines VALUES (?, ?)",
                         [(k, i) for i, k in enumerate(["b", "A", "a2", "B2", "é", "Z"])])
    src = SqlSource(f"sqlite:///{tmp_path / 'src.db'}")
    assert src.key_traits(REF).paging_collation(["k"]) == {"k": "BINARY"}
    keys = [k for c in _chunks(src, 2) for k, _ in c]
    assert keys == sorted(keys) == ["A", "B2", "Z", "a2", "b", "é"]
    src.close()


def test_sqlite_nocase_primary_key_is_paged_on_its_index(tmp_path: Path) -> None:
    # Binary paging could not use the NOCASE index (a scan and sort per chunk): NOCASE order.
    with sqlite3.connect(tmp_path / "src.db") as conn:
        conn.execute('CREATE TABLE lines ("k" TEXT COLLATE NOCASE PRIMARY KEY, v INTEGER)')
        conn.executemany("INSERT INTO lines VALUES (?, ?)",
                         [(k, i) for i, k in enumerate(["b", "A", "a2", "B2", "é", "Z"])])
    src = SqlSource(f"sqlite:///{tmp_path / 'src.db'}")
    assert src.key_traits(REF).paging_collation(["k"]) == {}
    for size in (1, 2, 4):
        keys = [k for c in _chunks(src, size) for k, _ in c]
        assert keys == ["A", "a2", "b", "B2", "Z", "é"], size
    src.close()


@pytest.mark.postgres
@pytest.mark.parametrize(("index", "binary"), [
    ("", True),
    ("CREATE INDEX lines_k ON lines (k)", False),
    ('CREATE INDEX lines_k ON lines (k COLLATE "C")', True),
])
def test_pg_icu_column_paging_order_follows_its_index(
    pg_url: str, index: str, binary: bool
) -> None:
    ddl = ("CREATE COLLATION IF NOT EXISTS en_icu (provider = icu, locale = 'en-US');"
           "CREATE TABLE lines (k TEXT COLLATE en_icu, v INTEGER);" + index)
    src = SqlSource(_pg(pg_url, ddl))
    assert src.key_traits(REF).collate == {"k": "C"}
    assert src.key_traits(REF).paging_collation(["k"]) == ({"k": "C"} if binary else {})
    for size in (2, 3):
        chunks = _chunks(src, size)
        got = [r for c in chunks for r in c]
        assert Counter(got) == Counter(ROWS)
        if binary:
            keys = [k for k, _ in got]
            assert keys == sorted(keys)
    bounds = [b[0] for b in src.key_bounds(REF, ["k"], 3)]
    if binary:
        assert bounds == sorted(bounds)
    src.close()
