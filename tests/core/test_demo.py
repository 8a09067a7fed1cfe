"""The bundled demo ERP: deterministic, realistically messy, changes as reported, config valid."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from syncflow_core.config import check_source_columns, load_config
from syncflow_core.demo import (
    DEMO_CONFIG,
    DEMO_TABLES,
    apply_business_day,
    generate_demo_erp,
    insert_late_orders,
    pending_late_orders,
)


def _checksums(path: Path) -> dict[str, str]:
    con = sqlite3.connect(path)
    try:
        out = {}
        for table in DEMO_TABLES:
            h = hashlib.sha256()
            for row in con.execute(f"SELECT * FROM {table} ORDER BY rowid"):
                h.update(repr(row).encode())
            out[table] = h.hexdigest()
        return out
    finally:
        con.close()


def _q(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _one(path: Path, sql: str) -> object:
    return _q(path, sql)[0][0]


@pytest.fixture(scope="module")
def small_erp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("demo") / "erp.sqlite"
    return path, generate_demo_erp(path, seed=42, scale=0.1)


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "c.sqlite"
    assert generate_demo_erp(a, seed=7, scale=0.05) == generate_demo_erp(b, seed=7, scale=0.05)
    generate_demo_erp(c, seed=8, scale=0.05)
    assert _checksums(a) == _checksums(b)
    assert a.read_bytes() == b.read_bytes()
    assert _checksums(a)["CUSTOMERS"] != _checksums(c)["CUSTOMERS"]
    apply_business_day(a, seed=43)
    apply_business_day(b, seed=43)
    assert _checksums(a) == _checksums(b)


def test_counts_match_the_file_and_scale(small_erp: tuple[Path, dict[str, int]]) -> None:
    path, counts = small_erp
    for table in DEMO_TABLES:
        assert _one(path, f"SELECT COUNT(*) FROM {table}") == counts[table]
    assert 1_000 <= counts["CUSTOMERS"] <= 1_050
    assert 500 <= counts["ITEMS"] <= 520
    assert 2_950 <= counts["SALES_ORDERS"] <= 3_050
    assert 13_000 <= counts["ORDER_LINES"] <= 17_000
    assert 200 <= counts["EMPLOYEES"] <= 210


def test_declared_oracle_types_are_kept(small_erp: tuple[Path, dict[str, int]]) -> None:
    path, _ = small_erp
    types = {r[1]: r[2] for r in _q(path, "PRAGMA table_info(CUSTOMERS)")}
    assert types["CUSTOMER_NO"] == "CHAR(10)"
    assert types["CREDIT_LIMIT"] == "NUMBER(12,2)"
    assert types["CREATED"] == "DATE"
    lines = {r[1]: r[2] for r in _q(path, "PRAGMA table_info(ORDER_LINES)")}
    assert lines["QTY"] == "NUMBER(12,3)"


def test_data_is_messy_the_way_erps_are(small_erp: tuple[Path, dict[str, int]]) -> None:
    path, _ = small_erp
    names = [str(r[0]) for r in _q(path, "SELECT NAME FROM CUSTOMERS")]
    assert any("Ã" in n for n in names)  # mojibake
    assert any("\u00a0" in n for n in names)
    assert any(any(ord(ch) < 32 for ch in n) for n in names)  # control characters
    codes = [r[0] for r in _q(path, "SELECT CUSTOMER_NO FROM CUSTOMERS")]
    assert any(c is not None and c.endswith(" ") for c in codes)  # CHAR padding
    assert not any(c is not None and c.startswith(" ") for c in codes)  # keys keep their order
    assert all(c is None or len(c) == 10 or c.endswith("\u00a0") for c in codes)  # CHAR(10)
    created = [str(r[0]) for r in _q(path, "SELECT CREATED FROM CUSTOMERS")]
    assert any(len(c) == 10 and c[4] == "-" for c in created)  # 2023-04-01
    assert any(len(c) == 9 and c[2] == "-" and c[3:6].isalpha() for c in created)  # 01-APR-23
    assert any(len(c) == 19 for c in created)  # with a time
    # One locale per column: German amounts never carry a dot before two final digits.
    prices = [str(r[0]) for r in _q(path, "SELECT UNIT_PRICE FROM ITEMS")]
    assert any("." in p and "," in p for p in prices)
    assert all(p[-3] == "," for p in prices if p != "12,3x")
    totals = [str(r[0]) for r in _q(path, "SELECT TOTAL FROM SALES_ORDERS")]
    assert any(t.startswith("€ ") for t in totals) and any(t.startswith("(") for t in totals)
    dates = [str(r[0]) for r in _q(path, "SELECT ORDER_DATE FROM SALES_ORDERS")]
    assert all(len(d) == 10 and d[2] == "/" for d in dates)
    assert any(int(d[:2]) > 12 for d in dates)  # day first, visibly
    assert _one(path, "SELECT COUNT(*) FROM ORDER_LINES WHERE DELIVERY_DATE = '00000000'")
    assert _one(path, "SELECT COUNT(*) FROM ORDER_LINES WHERE DISCOUNT_PCT LIKE '%\\%' ESCAPE '\\'")
    hired = [str(r[0]) for r in _q(path, "SELECT HIRED FROM EMPLOYEES")]
    assert all(len(h) == 11 and h[3:6].isupper() for h in hired)  # 01-APR-2019


def test_a_few_deliberately_bad_rows(small_erp: tuple[Path, dict[str, int]]) -> None:
    path, counts = small_erp
    checks = {
        "CUSTOMERS": "CUSTOMER_NO IS NULL OR CREDIT_LIMIT = '12,3x' OR CREATED IN "
        "('2024-02-30', '31-FEB-23')",
        "ITEMS": "ITEM_NO IS NULL OR UNIT_PRICE = '12,3x' OR UPDATED_AT LIKE '2024-02-30%'",
        "SALES_ORDERS": "ORDER_NO IS NULL OR ORDER_DATE = '31/02/2024' OR TOTAL = '€ 12,3x'",
        "ORDER_LINES": "LINE_NO IS NULL OR QTY = '12,3x' OR DELIVERY_DATE = '20240231'",
        "EMPLOYEES": "EMP_NO IS NULL OR HIRED = '31-FEB-2020' OR SALARY = '12,3x'",
    }
    for table, where in checks.items():
        bad = _one(path, f"SELECT COUNT(*) FROM {table} WHERE {where}")
        assert isinstance(bad, int)
        assert 3 <= bad <= 20, table
        assert bad / counts[table] < 0.02, table  # well under the default 5 % reject limit
    # One customer code duplicated once trimmed (NBSP included, as the strings layer trims).
    trimmed = [c.strip() for (c,) in _q(path, "SELECT CUSTOMER_NO FROM CUSTOMERS") if c]
    assert len(trimmed) - len(set(trimmed)) == 1


def test_references_resolve_except_late_orders_and_one_unknown_item(
    small_erp: tuple[Path, dict[str, int]],
) -> None:
    path, _ = small_erp
    missing_customers = _one(
        path,
        "SELECT COUNT(*) FROM SALES_ORDERS o WHERE o.CUSTOMER_NO "
        "NOT IN (SELECT TRIM(CUSTOMER_NO) FROM CUSTOMERS "
        "WHERE CUSTOMER_NO IS NOT NULL)",
    )
    assert missing_customers == 0
    unknown_items = _q(
        path,
        "SELECT DISTINCT ITEM_NO FROM ORDER_LINES WHERE ITEM_NO NOT IN "
        "(SELECT ITEM_NO FROM ITEMS WHERE ITEM_NO IS NOT NULL)",
    )
    assert unknown_items == [("ART-99999",)]
    managers = _one(
        path,
        "SELECT COUNT(*) FROM EMPLOYEES WHERE MANAGER_NO IS NOT NULL AND "
        "MANAGER_NO NOT IN (SELECT EMP_NO FROM EMPLOYEES WHERE EMP_NO IS NOT NULL)",
    )
    assert managers == 0
    assert _one(path, "SELECT COUNT(*) FROM EMPLOYEES WHERE MANAGER_NO IS NULL") == 3
    # A manager's number is often higher than a report's: slices see children first.
    assert _one(path, "SELECT COUNT(*) FROM EMPLOYEES WHERE MANAGER_NO > EMP_NO")


def test_late_orders_arrive_with_insert_late_orders(tmp_path: Path) -> None:
    path = tmp_path / "erp.sqlite"
    generate_demo_erp(path, seed=1, scale=0.2)
    orphan_sql = (
        "SELECT COUNT(*), COUNT(DISTINCT ORDER_NO) FROM ORDER_LINES WHERE ORDER_NO "
        "NOT IN (SELECT ORDER_NO FROM SALES_ORDERS WHERE ORDER_NO IS NOT NULL)"
    )
    lines, orders = _q(path, orphan_sql)[0]
    assert orders == pending_late_orders(path) == 8
    assert 8 <= int(str(lines)) <= 72
    rowver_before = _one(path, "SELECT MAX(ROWVER) FROM SALES_ORDERS")
    assert insert_late_orders(path) == 8
    assert _q(path, orphan_sql)[0][0] == 0
    assert pending_late_orders(path) == 0
    # Written "now": above the rowversion watermark of everything synced before.
    assert (
        _one(
            path,
            "SELECT MIN(ROWVER) FROM (SELECT ROWVER FROM SALES_ORDERS "
            "ORDER BY ROWVER DESC LIMIT 8)",
        )
        == int(str(rowver_before)) + 1
    )


def test_business_day_changes_are_as_reported(tmp_path: Path) -> None:
    path = tmp_path / "erp.sqlite"
    counts = generate_demo_erp(path, seed=42, scale=0.1)
    top_cust = _one(path, "SELECT MAX(LAST_CHANGE) FROM CUSTOMERS")
    top_order = _one(path, "SELECT MAX(ROWVER) FROM SALES_ORDERS")
    before = _checksums(path)

    day = apply_business_day(path, seed=43)

    for table in DEMO_TABLES:
        c = day[table]
        expected = counts[table] + c["inserted"] - c["deleted"] + c.get("late_inserted", 0)
        assert _one(path, f"SELECT COUNT(*) FROM {table}") == expected, table
        assert 0.005 * expected <= c["updated"] <= 0.02 * expected, table  # about 1 %
        assert 0.002 * expected <= c["inserted"] <= 0.01 * expected, table  # about 0.5 %
    assert day["SALES_ORDERS"]["late_inserted"] == 4
    assert day["CUSTOMERS"]["deleted"] == 5 and day["ORDER_LINES"]["deleted"] == 10
    # Every updated or inserted customer/order got a row version above the old maximum.
    bumped = _one(path, f"SELECT COUNT(*) FROM CUSTOMERS WHERE LAST_CHANGE > {top_cust}")
    assert bumped == day["CUSTOMERS"]["updated"] + day["CUSTOMERS"]["inserted"]
    bumped = _one(path, f"SELECT COUNT(*) FROM SALES_ORDERS WHERE ROWVER > {top_order}")
    s = day["SALES_ORDERS"]
    assert bumped == s["updated"] + s["inserted"] + s["late_inserted"]
    # The new column: present, filled only on changed and new items.
    assert day["ITEMS"]["columns_added"] == 1
    assert "COLOR" in [r[1] for r in _q(path, "PRAGMA table_info(ITEMS)")]
    colored = _one(path, "SELECT COUNT(*) FROM ITEMS WHERE COLOR IS NOT NULL")
    assert colored == day["ITEMS"]["updated"] + day["ITEMS"]["inserted"]
    # Nothing is orphaned any more but the unknown item's lines.
    assert (
        _one(
            path,
            "SELECT COUNT(*) FROM ORDER_LINES WHERE ORDER_NO NOT IN "
            "(SELECT ORDER_NO FROM SALES_ORDERS WHERE ORDER_NO IS NOT NULL)",
        )
        == 0
    )
    assert all(_checksums(path)[t] != before[t] for t in DEMO_TABLES)

    second = apply_business_day(path, seed=44)
    assert second["ITEMS"]["columns_added"] == 0
    assert second["SALES_ORDERS"]["late_inserted"] == 0
    assert _one(path, "SELECT VALUE FROM SYNCFLOW_DEMO_META WHERE KEY = 'business_date'") == (
        "2025-01-02"
    )


def test_demo_config_validates_against_the_generated_erp(
    small_erp: tuple[Path, dict[str, int]],
) -> None:
    path, _ = small_erp
    cfg = load_config(DEMO_CONFIG)
    assert set(cfg.entities) == {"customers", "items", "orders", "order_lines", "employees"}
    assert cfg.sources["erp"].kind == "sql"
    assert cfg.entity("order_lines").business_key_fields == ("order_no", "line_no")
    assert cfg.entity("orders").delta_strategy == "rowversion"
    assert cfg.entity("employees").delta_strategy == "hash"
    assert cfg.entity("order_lines").schedule.days_to_complete == 7
    (manager,) = cfg.entity("employees").parent_refs
    assert manager.entity == "employees" and not manager.required
    for ent in cfg.entities.values():
        assert ent.source.table is not None
        columns = [str(r[1]) for r in _q(path, f"PRAGMA table_info({ent.source.table})")]
        assert columns, ent.source.table
        renamed = {m.field: m.to for m in ent.field_mappings if m.op == "rename"}
        # Every ERP column gets a lower-case name; config may name source or output columns.
        assert set(renamed) == set(columns), ent.name
        check_source_columns(cfg, ent, [*columns, *[str(v) for v in renamed.values()]])


@pytest.mark.slow
def test_full_scale_generation_is_sized(tmp_path: Path) -> None:
    # Its speed is a figure the demo prints, not a limit here (a timed test fails on a busy CI
    # machine for no fault of the code).
    path = tmp_path / "erp.sqlite"
    t0 = time.perf_counter()
    counts = generate_demo_erp(path)
    took = time.perf_counter() - t0
    print(f"generate_demo_erp(scale=1.0): {sum(counts.values())} rows in {took:.2f} s")
    assert 10_000 <= counts["CUSTOMERS"] <= 10_050
    assert 5_000 <= counts["ITEMS"] <= 5_020
    assert 29_900 <= counts["SALES_ORDERS"] <= 30_050
    assert 140_000 <= counts["ORDER_LINES"] <= 160_000
    assert 2_000 <= counts["EMPLOYEES"] <= 2_020
    assert 190_000 <= sum(counts.values()) <= 215_000
    late_lines = _one(
        path,
        "SELECT COUNT(*) FROM ORDER_LINES WHERE ORDER_NO NOT IN "
        "(SELECT ORDER_NO FROM SALES_ORDERS WHERE ORDER_NO IS NOT NULL)",
    )
    assert pending_late_orders(path) == 40
    assert 120 <= int(str(late_lines)) <= 320
    t0 = time.perf_counter()
    day = apply_business_day(path)
    print(f"apply_business_day: {time.perf_counter() - t0:.2f} s, {day}")
    assert day["SALES_ORDERS"]["late_inserted"] == 40
