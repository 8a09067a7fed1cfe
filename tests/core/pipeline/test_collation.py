"""Text keys in a linguistic collation load exactly, over several slices.

Mixed case, accents and spaces sort differently under ICU ``en-US`` or SQLite ``NOCASE`` than
byte by byte (``'a' < 'B'`` there, ``'B' < 'a'`` here). Where no index stands in the way (none
at all, or one in binary order) the source is paged in binary order, the order of the cleaned
keys and the target's key ranges: the fast path. Where the key's only index is in its own
collation it is paged in that order, on the index, and the entity takes the order-free path
(`syncflow_core.key_scope`). Both end exact.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.core.pipeline.erp import Erp, sqlite_urls
from tests.core.pipeline.keyed_source import check_sync_exact, keyed_entity
from tests.pg import PgCluster

WORDS = [
    "apple", "Apple", "APPLE", "banana", "Banana", "cherry", "Cherry pie", "cherry pie",
    "éclair", "Éclair", "eclair", "Zürich", "zebra", "Zebra", "mañana", "Manana", "new york",
    "New York", "NEW  YORK", "o'hara", "O'Hara", "ångström", "Ångström", "b c",
]
ROWS = {(w,): (w,) for w in WORDS}
INSERT = {(w,): (w,) for w in ["Aardvark", "aardvark", "Émile", "émile", "zz top"]}
UPDATE = [("apple",), ("Zürich",), ("New York",)]
DELETE = [("APPLE",), ("éclair",), ("Zebra",), ("b c",)]


@pytest.mark.parametrize(("index", "binary_paging"), [
    ("", True),  # no index: paged in binary order, deletes by key range
    ('CREATE INDEX "words_k" ON "WORDS" ("K")', False),  # its NOCASE index: its own order
], ids=["no-index", "nocase-index"])
def test_sqlite_nocase_key_column(tmp_path: Path, index: str, binary_paging: bool) -> None:
    src_url, tgt_url = sqlite_urls(tmp_path)
    erp = Erp(src_url)
    # Unique under NOCASE would refuse 'apple' beside 'Apple': a plain NOCASE column.
    erp.execute('CREATE TABLE "WORDS" ("K" TEXT COLLATE NOCASE NOT NULL, "V" TEXT)')
    if index:
        erp.execute(index)
    unordered = check_sync_exact(
        erp, tgt_url, "WORDS", keyed_entity("WORDS", ["K"]), ROWS,
        update=UPDATE, delete=DELETE, insert=INSERT,
    )
    # Paged in NOCASE order, mixed case reorders once cleaned: the order-free path.
    assert unordered is not binary_paging
    erp.close()


def _icu_database(pg: PgCluster, name: str) -> str:
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(
            f'CREATE DATABASE "{name}" LOCALE_PROVIDER icu ICU_LOCALE \'en-US\' '
            "TEMPLATE template0"
        )
    return pg.url(name)


@pytest.mark.postgres
@pytest.mark.parametrize(("ddl", "binary_paging"), [
    ('CREATE TABLE "WORDS" ("K" VARCHAR(40) PRIMARY KEY, "V" TEXT)', False),
    ('CREATE TABLE "WORDS" ("K" VARCHAR(40) PRIMARY KEY, "V" TEXT); '
     'CREATE INDEX "words_c" ON "WORDS" ("K" COLLATE "C")', True),
    ('CREATE TABLE "WORDS" ("K" VARCHAR(40), "V" TEXT)', True),
], ids=["primary-key", "c-index", "no-index"])
def test_postgres_icu_en_us_database(
    pg: PgCluster, pg_url: str, ddl: str, binary_paging: bool
) -> None:
    src_url = _icu_database(pg, pg_url.rsplit("/", 1)[1] + "_icu")
    erp = Erp(src_url)
    with erp.engine.connect() as conn:  # the database really sorts linguistically
        got = conn.exec_driver_sql("SELECT 'a' < 'B', 'é' < 'f'").one()
    assert tuple(got) == (True, True)
    for statement in ddl.split("; "):
        erp.execute(statement)
    unordered = check_sync_exact(
        erp, pg_url, "WORDS", keyed_entity("WORDS", ["K"]), ROWS,
        update=UPDATE, delete=DELETE, insert=INSERT,
    )
    assert unordered is not binary_paging
    erp.close()


@pytest.mark.postgres
def test_postgres_icu_target_database(pg: PgCluster, pg_url: str) -> None:
    """The target's database sorts linguistically too: its key ranges still compare bytes."""
    tgt_url = _icu_database(pg, pg_url.rsplit("/", 1)[1] + "_icut")
    erp = Erp(pg_url)
    erp.execute('CREATE TABLE "WORDS" ("K" TEXT, "V" TEXT)')
    unordered = check_sync_exact(
        erp, tgt_url, "WORDS", keyed_entity("WORDS", ["K"]), ROWS,
        update=UPDATE, delete=DELETE, insert=INSERT,
    )
    assert not unordered
    erp.close()
