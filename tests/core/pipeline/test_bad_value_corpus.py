"""A corpus of bad values: each becomes one failed record with a reason; its chunk loads.

Every bad value sits in a chunk with good rows (one chunk holds them all). On PostgreSQL the
source database is ``SQL_ASCII``, the only encoding that stores bytes that are not UTF-8.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import make_config, sqlite_urls, sync_all
from tests.pg import PgCluster

# key -> (hex bytes of T, N, D, E): one bad value per row, the rest good.
GOOD = {f"G{i:02d}": ("6f6b", str(i), "01.02.2023", 1_600_000_000 + i) for i in range(1, 21)}
BAD = {
    "B-utf8": ("61ff62", "1", "01.02.2023", 1_600_000_000),  # a lone Latin-1 byte
    "B-cesu": ("eda080eda080", "1", "01.02.2023", 1_600_000_000),  # CESU-8 surrogates
    "B-overlong": ("c0af", "1", "01.02.2023", 1_600_000_000),  # overlong '/'
    "B-epoch-big": ("6f6b", "1", "01.02.2023", 10**17),
    "B-epoch-neg": ("6f6b", "1", "01.02.2023", -(10**15)),
    "B-nan": ("6f6b", "NaN", "01.02.2023", 1_600_000_000),
    "B-inf": ("6f6b", "-Infinity", "01.02.2023", 1_600_000_000),
    "B-long-number": ("6f6b", "1" * 40, "01.02.2023", 1_600_000_000),
    "B-text-number": ("6f6b", "12x", "01.02.2023", 1_600_000_000),
    "B-feb-31": ("6f6b", "1", "31.02.2023", 1_600_000_000),
    "B-month-13": ("6f6b", "1", "01.13.2023", 1_600_000_000),
    "\x01\x02": ("6f6b", "1", "01.02.2023", 1_600_000_000),  # key of control characters only
}
# Keys that are not UTF-8 (escaped as in the failed record's raw row): a chunk may end on one,
# so paging must step over it (bound back as the same bytes).
RAW_KEYS = {bytes.fromhex("422dff"): "B-\\xff", bytes.fromhex("472d30eda080"): "G-0\\xed\\xa0\\x80"}
FIELDS = {
    "N": {"type": "NUMBER(10)"},
    "D": {"type": "DATE", "date_formats": ["%d.%m.%Y"]},
    "E": {"type": "TIMESTAMP", "epoch_unit": "s"},
}


def _fill_sqlite(url: str) -> None:
    import sqlite3

    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    conn.execute('CREATE TABLE "BAD" ("K" TEXT, "T" TEXT, "N" TEXT, "D" TEXT, "E" INTEGER)')
    conn.executemany(
        "INSERT INTO \"BAD\" VALUES (CAST(? AS TEXT), CAST(? AS TEXT), ?, ?, ?)",
        [(k.encode(), bytes.fromhex(t), n, d, e) for k, (t, n, d, e) in {**GOOD, **BAD}.items()]
        + [(k, b"ok", "1", "01.02.2023", 1_600_000_000) for k in RAW_KEYS],
    )
    conn.commit()
    conn.close()


def _fill_pg(pg: PgCluster, name: str) -> str:
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE \"{name}\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' "
                     "LC_CTYPE 'C' TEMPLATE template0")
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname=name,
                         autocommit=True) as conn:
        conn.execute('CREATE TABLE "BAD" ("K" TEXT, "T" TEXT, "N" TEXT, "D" TEXT, "E" BIGINT)')
        rows = [(k.encode(), bytes.fromhex(t), n, d, e)
                for k, (t, n, d, e) in {**GOOD, **BAD}.items()]
        rows += [(k, b"ok", "1", "01.02.2023", 1_600_000_000) for k in RAW_KEYS]
        for row in rows:
            conn.execute(
                "INSERT INTO \"BAD\" VALUES (convert_from(%s, 'SQL_ASCII'), "
                "convert_from(%s, 'SQL_ASCII'), %s, %s, %s)",
                row,
            )
    return pg.url(name)


def _check(src_url: str, tgt_url: str) -> None:
    # One chunk holding everything; then small chunks over slices, whose bounds and cursors
    # land on bad keys too.
    _check_once(src_url, tgt_url, slices=1, chunk=1000)
    _check_once(src_url, tgt_url, slices=5, chunk=2)  # a bound and a cursor on "G-0\xed…"


def _check_once(src_url: str, tgt_url: str, slices: int, chunk: int) -> None:
    ent = {
        "source": {"connection": "erp", "table": "BAD"},
        "business_key_fields": ["K"],
        "fields": FIELDS,
        "slices": slices,
        "chunk_size": chunk,
        "reject_ratio_limit": 1.0,
    }
    name = f"bad{chunk}"
    cfg = make_config(src_url, tgt_url, {name: ent})
    n_bad = len(BAD) + len(RAW_KEYS)
    with Runtime.open(cfg, {}) as rt:
        counts = sync_all(rt, name, "run-1")
        assert (counts.fetched, counts.inserted, counts.rejected) == (
            len(GOOD) + n_bad, len(GOOD), n_bad
        )
        loaded = {r["K"] for r in rt.target.read_table(name).to_pylist()}
        assert loaded == set(GOOD)
        failed = rt.state.list_failed_records(name).to_pylist()
        by_key = {json.loads(f["raw_row"])["K"]: f for f in failed}
        assert set(by_key) == set(BAD) | set(RAW_KEYS.values()) and len(failed) == n_bad
        for f in failed:
            assert f["stage"] and f["error_code"] and f["message"], f
        assert by_key["B-utf8"]["error_code"] == "invalid_utf8"
        assert json.loads(by_key["B-utf8"]["raw_row"])["T"] == "a\\xffb"  # bytes kept, escaped
        assert by_key["B-cesu"]["error_code"] == "invalid_utf8"
        assert by_key["B-epoch-big"]["stage"] == "datetimes"
        assert by_key["B-feb-31"]["stage"] == "datetimes"
        assert by_key["B-nan"]["stage"] == "numbers"
        assert by_key["\x01\x02"]["stage"] == "identity"
        assert {by_key[k]["error_code"] for k in RAW_KEYS.values()} == {"invalid_utf8"}
        # A rerun opens nothing new and loads nothing twice.
        again = sync_all(rt, name, "run-2")
        assert (again.inserted, again.updated, again.rejected_new) == (0, 0, 0)
        assert rt.state.list_failed_records(name).num_rows == n_bad


def test_bad_value_corpus_sqlite(tmp_path: Path) -> None:
    src_url, tgt_url = sqlite_urls(tmp_path)
    _fill_sqlite(src_url)
    _check(src_url, tgt_url)


@pytest.mark.postgres
def test_bad_value_corpus_postgres_sql_ascii(pg: PgCluster, pg_url: str) -> None:
    src_url = _fill_pg(pg, pg_url.rsplit("/", 1)[1] + "_ascii")
    _check(src_url, pg_url)
