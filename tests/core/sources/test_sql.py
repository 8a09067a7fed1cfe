"""SqlSource against real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncflow_core.config import SourceRef
from syncflow_core.errors import SourceError
from syncflow_core.slices import plan_slices
from syncflow_core.sources.sql import SqlSource

REF = SourceRef(table="orders")


def _sqlite(path: Path, ddl: str, rows: list[tuple[Any, ...]], insert: str) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute(ddl)
        if rows:
            conn.executemany(insert, rows)
    return f"sqlite:///{path}"


def _keys(chunks: Iterator[pa.Table], fields: list[str]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for chunk in chunks:
        cols = [chunk.column(f).to_pylist() for f in fields]
        out.extend(zip(*cols, strict=True))
    return out


def _read_plan(src: SqlSource, ref: SourceRef, fields: list[str], n: int,
               chunk: int) -> list[list[tuple[Any, ...]]]:
    return [_keys(src.read(ref, fields, s.lo, s.hi, chunk), fields)
            for s in plan_slices(src, ref, fields, n)]


def test_columns_keep_oracle_style_declared_types(tmp_path: Path) -> None:
    url = _sqlite(tmp_path / "erp.db",
                  "CREATE TABLE orders (order_no VARCHAR2(20), amount NUMBER(12,2), "
                  "placed DATE, qty INTEGER, note)", [], "SELECT 1")
    src = SqlSource(url)
    assert src.columns(REF) == {"order_no": "VARCHAR2(20)", "amount": "NUMBER(12,2)",
                                "placed": "DATE", "qty": "INTEGER", "note": ""}
    src.close()


def test_unknown_table_is_a_source_error_naming_it(tmp_path: Path) -> None:
    src = SqlSource(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SourceError, match="'nope' not found"):
        src.columns(SourceRef(table="nope"))
    with pytest.raises(SourceError, match="key field 'missing' is not a column"):
        url = _sqlite(tmp_path / "e2.db", "CREATE TABLE orders (a INTEGER)", [], "SELECT 1")
        list(SqlSource(url).read(REF, ["missing"], None, None, 10))


keysets = st.sets(st.tuples(st.integers(-50, 50), st.text("abcé", max_size=3)),
                  max_size=80)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=keysets, chunk=st.integers(1, 30), n=st.integers(1, 9))
def test_composite_keyset_slices_cover_every_row_exactly_once(
    keys: set[tuple[int, str]], chunk: int, n: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        url = _sqlite(Path(d) / "k.db", "CREATE TABLE orders (a INTEGER, b VARCHAR2(5), v TEXT)",
                      [(a, b, f"{a}/{b}") for a, b in keys], "INSERT INTO orders VALUES (?,?,?)")
        src = SqlSource(url)
        per_slice = _read_plan(src, REF, ["a", "b"], n, chunk)
        src.close()
    flat = [k for s in per_slice for k in s]
    assert sorted(flat) == sorted(keys)  # every row, none twice
    assert flat == sorted(flat)  # slices in order, each slice ordered by key
    if n > 1 and len(keys) >= n:
        assert max(len(s) for s in per_slice) <= len(keys) // n + 1


def test_chunks_respect_chunk_size_and_order(tmp_path: Path) -> None:
    url = _sqlite(tmp_path / "o.db", "CREATE TABLE orders (id INTEGER, v TEXT)",
                  [(i, str(i)) for i in range(1, 101)], "INSERT INTO orders VALUES (?,?)")
    src = SqlSource(url)
    chunks = list(src.read(REF, ["id"], (10,), (55,), 20))
    assert [c.num_rows for c in chunks] == [20, 20, 5]
    assert _keys(iter(chunks), ["id"]) == [(i,) for i in range(11, 56)]


def test_watermark_filters_rows(tmp_path: Path) -> None:
    url = _sqlite(tmp_path / "w.db", "CREATE TABLE orders (id INTEGER, rv INTEGER)",
                  [(i, i % 10) for i in range(1, 51)], "INSERT INTO orders VALUES (?,?)")
    src = SqlSource(url)
    got = _keys(src.read(REF, ["id"], None, None, 7, watermark_field="rv", watermark=7), ["id"])
    assert got == [(i,) for i in range(1, 51) if i % 10 > 7]
    everything = _keys(src.read(REF, ["id"], None, None, 7, watermark_field="rv"), ["id"])
    assert len(everything) == 50


def test_rows_inserted_after_planning_land_in_exactly_one_slice(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    url = _sqlite(db, "CREATE TABLE orders (code VARCHAR2(10), v TEXT)",
                  [(f"C{i:03d}", "x") for i in range(0, 200, 2)], "INSERT INTO orders VALUES (?,?)")
    src = SqlSource(url)
    plan = plan_slices(src, REF, ["code"], 5)
    new = ["A", "C001", "C099", "C1999", "Z", "C197", "C2"]
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO orders VALUES (?, 'new')", [(c,) for c in new])
    seen = {s.slice_key: {k[0] for k in _keys(src.read(REF, ["code"], s.lo, s.hi, 13), ["code"])}
            for s in plan}
    for code in new:
        holders = [k for k, codes in seen.items() if code in codes]
        assert len(holders) == 1, (code, holders)
        assert plan[int(holders[0][-2:]) - 1].contains((code,))
    assert sum(len(v) for v in seen.values()) == 100 + len(new)


def test_fewer_rows_than_slices_and_empty_table(tmp_path: Path) -> None:
    db = tmp_path / "few.db"
    url = _sqlite(db, "CREATE TABLE orders (id INTEGER)", [(1,), (2,)],
                  "INSERT INTO orders VALUES (?)")
    src = SqlSource(url)
    per_slice = _read_plan(src, REF, ["id"], 5, 10)
    assert sorted(k for s in per_slice for k in s) == [(1,), (2,)]
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM orders")
    plan = plan_slices(src, REF, ["id"], 4)
    assert [s.is_empty for s in plan] == [True, True, True, False]
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO orders VALUES (7)")
    assert [_keys(src.read(REF, ["id"], s.lo, s.hi, 10), ["id"]) for s in plan] == [
        [], [], [], [(7,)]]


def test_mixed_type_sqlite_column_is_read_without_loss(tmp_path: Path) -> None:
    # ADBC types a column from its first rows; a messy ERP stores text in NUMBER columns.
    rows: list[tuple[Any, ...]] = [(i, 1.5 if i % 3 else i) for i in range(1, 3000)]
    rows += [(5000, "12,50"), (5001, 0.1), (5002, None), (5003, 2**62)]
    url = _sqlite(tmp_path / "m.db", "CREATE TABLE orders (id INTEGER, amount NUMBER(12,2))",
                  rows, "INSERT INTO orders VALUES (?,?)")
    src = SqlSource(url)
    chunks = list(src.read(REF, ["id"], None, None, 1000))
    got = {r["id"]: r["amount"] for c in chunks for r in c.to_pylist()}
    assert len(got) == len(rows)
    assert got[5000] == "12,50"
    assert got[5001] in (0.1, "0.1")
    assert got[5002] is None
    assert got[5003] in (2**62, str(2**62))
    assert got[3] in (3, 3.0, "3")
    # the clean first chunk stays on the fast typed path
    assert pa.types.is_floating(chunks[0].schema.field("amount").type)


def test_null_keys_are_outside_slices_but_not_lost(tmp_path: Path) -> None:
    url = _sqlite(tmp_path / "n.db", "CREATE TABLE orders (a INTEGER, b TEXT)",
                  [(1, "x"), (None, "y"), (2, None), (3, "z")], "INSERT INTO orders VALUES (?,?)")
    src = SqlSource(url)
    assert _keys(src.read(REF, ["a", "b"], None, None, 1), ["a", "b"]) == [(1, "x"), (3, "z")]
    nulls = [r for c in src.read_null_keys(REF, ["a", "b"], 10) for r in c.to_pylist()]
    assert sorted(nulls, key=str) == sorted([{"a": None, "b": "y"}, {"a": 2, "b": None}],
                                            key=str)


# ---------------------------------------------------------------------------- PostgreSQL


def _pg_orders(pg_url: str, n: int) -> None:
    eng = sa.create_engine(pg_url)
    with eng.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE orders (region varchar(4), order_no integer, amount numeric(12,2), "
            "placed date, note text, rv bigint, PRIMARY KEY (region, order_no))")
        conn.execute(sa.text(
            "INSERT INTO orders SELECT (ARRAY['EU','US','APAC'])[1 + mod(i, 3)], i, i / 7.0, "
            "date '2024-01-01' + mod(i, 100), 'n' || i, mod(i, 13) FROM generate_series(1, :n) i"
        ), {"n": n})
    eng.dispose()


@pytest.mark.postgres
def test_pg_reflection_and_composite_slices(pg_url: str) -> None:
    _pg_orders(pg_url, 1000)
    src = SqlSource(pg_url)
    assert src.columns(REF) == {"region": "VARCHAR(4)", "order_no": "INTEGER",
                                "amount": "NUMERIC(12, 2)", "placed": "DATE", "note": "TEXT",
                                "rv": "BIGINT"}
    per_slice = _read_plan(src, REF, ["region", "order_no"], 7, 37)
    flat = [k for s in per_slice for k in s]
    assert len(flat) == 1000 and len(set(flat)) == 1000
    assert flat == sorted(flat)  # C-locale cluster: Python order == server order here
    chunk = next(src.read(REF, ["region", "order_no"], None, None, 5))
    assert chunk.column("amount").type == pa.decimal128(38, 2)
    assert chunk.to_pylist()[0]["amount"] == Decimal("0.29")  # APAC, order 2 / 7.0
    src.close()


@pytest.mark.postgres
def test_pg_adbc_and_fetchall_paths_agree(pg_url: str) -> None:
    _pg_orders(pg_url, 300)
    fast, slow = SqlSource(pg_url), SqlSource(pg_url, use_adbc=False)
    lo, hi = ("EU", 30), ("US", 200)
    a = pa.concat_tables(fast.read(REF, ["region", "order_no"], lo, hi, 50,
                                   watermark_field="rv", watermark=6))
    b = pa.concat_tables(slow.read(REF, ["region", "order_no"], lo, hi, 50,
                                   watermark_field="rv", watermark=6))
    assert a.to_pylist() == b.to_pylist()
    assert all(r["rv"] > 6 for r in a.to_pylist())
    assert fast.key_bounds(REF, ["amount"], 4) == slow.key_bounds(REF, ["amount"], 4)
    fast.close()
    slow.close()


@pytest.mark.postgres
def test_pg_errors_name_the_table_and_hide_the_password(pg_url: str) -> None:
    bad = sa.engine.make_url(pg_url).set(password="s3cret-pw", database="no_such_db")
    src = SqlSource(bad.render_as_string(hide_password=False))
    with pytest.raises(SourceError) as err:
        list(src.read(REF, ["order_no"], None, None, 10))
    assert "s3cret-pw" not in str(err.value)
    assert "no_such_db" in str(err.value)


@pytest.mark.postgres
def test_pg_key_values_travel_bound_even_on_the_copy_path(pg_url: str) -> None:
    """Keyset bounds reach PostgreSQL as set_config parameters, never as SQL text."""
    names = ["O'Brien", "a\\b", "x'); DROP TABLE people; --", "Zoë", "$1", "plain"]
    eng = sa.create_engine(pg_url)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE people (name text, day date, amount numeric(8,2), "
                             "PRIMARY KEY (name, day, amount))")
        conn.execute(sa.text("INSERT INTO people VALUES (:n, :d, :a)"), [
            {"n": n, "d": f"2024-0{m}-0{m}", "a": Decimal(f"{m}.5")}
            for n in names for m in (1, 2)
        ])
    eng.dispose()
    src = SqlSource(pg_url)
    ref = SourceRef(table="people")
    keys = ["name", "day", "amount"]
    chunks = list(src.read(ref, keys, None, None, 3))
    got = _keys(iter(chunks), keys)
    assert len(got) == 12 and len(set(got)) == 12 and got == sorted(got)
    # The last page was read after binding the previous page's last key as settings.
    with src._adbc_conn().cursor() as cur:  # the source's own session
        cur.execute("SELECT current_setting('syncflow.bind_0')")
        assert cur.fetchone()[0] in names
    lo = got[4]
    rest = _keys(src.read(ref, keys, lo, None, 100), keys)
    assert rest == got[5:]
    with sa.create_engine(pg_url).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM people").scalar_one() == 12
    src.close()


@pytest.mark.postgres
def test_pg_null_key_scan_is_skipped_when_keys_are_declared_not_null(pg_url: str) -> None:
    """Every first chunk asks for NULL-key rows; a primary key makes that a no-op, no scan."""
    eng = sa.create_engine(pg_url)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE keyed (code text PRIMARY KEY, note text)")
        conn.exec_driver_sql("CREATE TABLE loose (code text, note text)")
        for t in ("keyed", "loose"):
            conn.exec_driver_sql(
                f"INSERT INTO {t} SELECT 'c' || i, 'n' FROM generate_series(1, 50) i")
        conn.exec_driver_sql("INSERT INTO loose VALUES (NULL, 'no key')")
    # Building the primary key's index counts as a scan of "keyed" too: let the creating
    # backend exit and hand in its statistics, then count from there.
    eng.dispose()

    def stats() -> dict[str, tuple[int, int]]:
        with eng.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            rows = conn.exec_driver_sql(
                "SELECT relname, seq_scan + coalesce(idx_scan, 0), n_tup_ins "
                "FROM pg_stat_user_tables WHERE relname IN ('keyed', 'loose')").all()
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def wait_for(ready: Any) -> dict[str, tuple[int, int]]:
        deadline = time.monotonic() + 15
        got = stats()
        while not ready(got) and time.monotonic() < deadline:
            time.sleep(0.2)
            got = stats()
        return got

    before = wait_for(lambda s: s.get("keyed", (0, 0))[1] == 50 and s.get("loose", (0, 0))[1] == 51)
    src = SqlSource(pg_url)
    assert list(src.read_null_keys(SourceRef(table="keyed"), ["code"], 10)) == []
    loose = pa.concat_tables(src.read_null_keys(SourceRef(table="loose"), ["code"], 10))
    assert loose.to_pylist() == [{"code": None, "note": "no key"}]
    src.close()  # the source's backend exits and hands in its table statistics

    after = wait_for(lambda s: s["loose"][0] > before["loose"][0])
    assert after["loose"][0] > before["loose"][0]  # the statistics did arrive
    assert after["keyed"][0] == before["keyed"][0]
    eng.dispose()
