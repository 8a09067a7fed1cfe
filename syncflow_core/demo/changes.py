"""One business day of changes to the demo ERP, deterministic by seed.

About 1 % of each table's rows are updated (row-version columns bumped), about 0.5 % are
inserted, a few order lines and customers without orders are deleted, the held-back orders
arrive (so their waiting order lines can resolve), and ``ITEMS`` gains a ``COLOR`` column that
only the changed and new items fill (so the other items' data hashes stay the same).
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from syncflow_core.demo.erp import (
    LATE_ORDERS_TABLE,
    _insert,
    _move_late_orders,
    _timestamp,
    _unit_price_cents,
    business_date,
    customer_row,
    employee_row,
    item_row,
    order_lines_for,
    order_row,
    set_business_date,
)
from syncflow_core.demo.formats import de_amount, en_amount

__all__ = ["apply_business_day"]

# Constant table names only; nothing from input.
_CUSTOMERS_WITHOUT_ORDERS = (
    "SELECT rowid FROM CUSTOMERS WHERE CUSTOMER_NO IS NOT NULL AND TRIM(CUSTOMER_NO) NOT IN "  # noqa: S608
    "(SELECT CUSTOMER_NO FROM SALES_ORDERS WHERE CUSTOMER_NO IS NOT NULL "
    f" UNION SELECT CUSTOMER_NO FROM {LATE_ORDERS_TABLE} WHERE CUSTOMER_NO IS NOT NULL) "
    "ORDER BY rowid"
)
_COLORS = ("rot", "blau", "grün", "schwarz", "weiß", "RAL 7035", "silber", "gelb")


def _share(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if n else 0


def _rowids(con: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[int]:
    return [int(r[0]) for r in con.execute(sql, params).fetchall()]


def _top(con: sqlite3.Connection, sql: str) -> int:
    (value,) = con.execute(sql).fetchone()
    return int(value or 0)


def _max_number(values: Sequence[str | None], prefix_len: int) -> int:
    best = 0
    for v in values:
        if v is None:
            continue
        digits = v.strip()[prefix_len:]
        if digits.isdigit():
            best = max(best, int(digits))
    return best


def _customers(con: sqlite3.Connection, rng: random.Random) -> dict[str, int]:
    # Deletes first, so nothing updated or inserted today is deleted again.
    no_orders = _rowids(con, _CUSTOMERS_WITHOUT_ORDERS)
    gone = rng.sample(no_orders, min(5, len(no_orders)))
    con.executemany("DELETE FROM CUSTOMERS WHERE rowid = ?", [(r,) for r in gone])

    ids = _rowids(con, "SELECT rowid FROM CUSTOMERS WHERE CUSTOMER_NO IS NOT NULL ORDER BY rowid")
    top = _top(con, "SELECT MAX(LAST_CHANGE) FROM CUSTOMERS")
    updates = []
    for rowid in rng.sample(ids, _share(len(ids), 0.01)):
        top += 1
        fresh = customer_row(rng, 0, top)
        if rng.random() < 0.5:  # moved: new city and country
            con.execute(
                "UPDATE CUSTOMERS SET CITY = ?, COUNTRY = ?, LAST_CHANGE = ? WHERE rowid = ?",
                (fresh[2], fresh[3], top, rowid),
            )
        else:  # new credit limit
            limit = en_amount(rng.choice((5_000, 20_000, 75_000)) * 100)
            con.execute(
                "UPDATE CUSTOMERS SET CREDIT_LIMIT = ?, LAST_CHANGE = ? WHERE rowid = ?",
                (limit, top, rowid),
            )
        updates.append(rowid)

    codes = [r[0] for r in con.execute("SELECT CUSTOMER_NO FROM CUSTOMERS").fetchall()]
    number = _max_number(codes, 1)
    new = []
    for _ in range(_share(len(ids), 0.005)):
        number += 1
        top += 1
        new.append(customer_row(rng, number, top))
    _insert(con, "CUSTOMERS", new)
    return {"updated": len(updates), "inserted": len(new), "deleted": len(gone)}


def _items(con: sqlite3.Connection, rng: random.Random, day: date) -> dict[str, int]:
    columns = [r[1] for r in con.execute("PRAGMA table_info(ITEMS)").fetchall()]
    added = 0
    if "COLOR" not in columns:
        con.execute("ALTER TABLE ITEMS ADD COLUMN COLOR VARCHAR2(20)")
        added = 1
    ids = _rowids(con, "SELECT rowid FROM ITEMS WHERE ITEM_NO IS NOT NULL ORDER BY rowid")
    picks = rng.sample(ids, _share(len(ids), 0.01))
    con.executemany(
        "UPDATE ITEMS SET UNIT_PRICE = ?, UPDATED_AT = ?, COLOR = ? WHERE rowid = ?",
        [
            (de_amount(_unit_price_cents(rng)), _timestamp(rng, day), rng.choice(_COLORS), r)
            for r in picks
        ],
    )
    number = _max_number([r[0] for r in con.execute("SELECT ITEM_NO FROM ITEMS")], 4)
    new = []
    for i in range(1, _share(len(ids), 0.005) + 1):
        new.append((*item_row(rng, number + i, _unit_price_cents(rng), day), rng.choice(_COLORS)))
    _insert(con, "ITEMS", new)
    return {"updated": len(picks), "inserted": len(new), "deleted": 0, "columns_added": added}


def _item_prices(con: sqlite3.Connection) -> list[tuple[str, int]]:
    out = []
    for item_no, price in con.execute(
        "SELECT ITEM_NO, UNIT_PRICE FROM ITEMS WHERE ITEM_NO IS NOT NULL ORDER BY rowid"
    ):
        digits = str(price).replace(".", "").replace(",", "")
        if digits.isdigit():  # skip the deliberately unparseable prices
            out.append((str(item_no), int(digits)))
    return out


def _orders_and_lines(
    con: sqlite3.Connection, rng: random.Random, day: date
) -> tuple[dict[str, int], dict[str, int]]:
    # Line deletes first, among lines of orders that exist (not the late orders' lines).
    line_ids = _rowids(
        con,
        "SELECT rowid FROM ORDER_LINES WHERE LINE_NO IS NOT NULL AND LINE_NO < 900 AND ORDER_NO IN "
        "(SELECT ORDER_NO FROM SALES_ORDERS) ORDER BY rowid",
    )
    gone = rng.sample(line_ids, min(10, len(line_ids)))
    con.executemany("DELETE FROM ORDER_LINES WHERE rowid = ?", [(r,) for r in gone])

    late = _move_late_orders(con)

    ids = _rowids(con, "SELECT rowid FROM SALES_ORDERS WHERE ORDER_NO IS NOT NULL ORDER BY rowid")
    top = _top(con, "SELECT MAX(ROWVER) FROM SALES_ORDERS")
    progress = {"OPEN": "SHIPPED", "SHIPPED": "INVOICED"}
    order_updates = []
    for rowid in rng.sample(ids, _share(len(ids), 0.01)):
        (status,) = con.execute(
            "SELECT STATUS FROM SALES_ORDERS WHERE rowid = ?", (rowid,)
        ).fetchone()
        top += 1
        new_status = progress.get(str(status).strip().upper(), "CANCELLED")
        order_updates.append((new_status, top, rowid))
    con.executemany("UPDATE SALES_ORDERS SET STATUS = ?, ROWVER = ? WHERE rowid = ?", order_updates)

    line_ids = _rowids(con, "SELECT rowid FROM ORDER_LINES WHERE LINE_NO < 900 ORDER BY rowid")
    line_updates = [
        (f"{rng.randint(1, 60):,}", r) for r in rng.sample(line_ids, _share(len(line_ids), 0.01))
    ]
    con.executemany("UPDATE ORDER_LINES SET QTY = ? WHERE rowid = ?", line_updates)

    number = _max_number([r[0] for r in con.execute("SELECT ORDER_NO FROM SALES_ORDERS")], 3)
    customers = [
        str(r[0]).strip()
        for r in con.execute(
            "SELECT CUSTOMER_NO FROM CUSTOMERS WHERE CUSTOMER_NO IS NOT NULL ORDER BY rowid"
        )
    ]
    items = _item_prices(con)
    new_orders, new_lines = [], []
    for _ in range(_share(len(ids), 0.005)):
        number += 1
        top += 1
        order_no = f"SO-{number:07d}"
        lines, total = order_lines_for(rng, order_no, day, items, credit=False)
        new_lines.extend(lines)
        new_orders.append(order_row(rng, order_no, rng.choice(customers), day, total, top))
    _insert(con, "SALES_ORDERS", new_orders)
    _insert(con, "ORDER_LINES", new_lines)
    return (
        {
            "updated": len(order_updates),
            "inserted": len(new_orders),
            "deleted": 0,
            "late_inserted": late,
        },
        {"updated": len(line_updates), "inserted": len(new_lines), "deleted": len(gone)},
    )


def _employees(con: sqlite3.Connection, rng: random.Random) -> dict[str, int]:
    ids = _rowids(con, "SELECT rowid FROM EMPLOYEES WHERE EMP_NO IS NOT NULL ORDER BY rowid")
    updates = [
        (round(rng.uniform(30_000, 170_000), 2), r) for r in rng.sample(ids, _share(len(ids), 0.01))
    ]
    con.executemany("UPDATE EMPLOYEES SET SALARY = ? WHERE rowid = ?", updates)
    numbers = [
        int(r[0])
        for r in con.execute(
            "SELECT EMP_NO FROM EMPLOYEES WHERE typeof(EMP_NO) = 'integer' ORDER BY rowid"
        )
    ]
    top = max(numbers, default=10_000)
    new = []
    for i in range(1, _share(len(ids), 0.005) + 1):
        new.append(employee_row(rng, top + i, rng.choice(numbers)))
    _insert(con, "EMPLOYEES", new)
    return {"updated": len(updates), "inserted": len(new), "deleted": 0}


def apply_business_day(path: Path, seed: int = 43) -> dict[str, dict[str, int]]:
    """Apply one business day of changes to the demo ERP at ``path``; return what changed.

    The result maps each ERP table to ``updated``/``inserted``/``deleted`` counts, plus
    ``late_inserted`` (held-back orders that arrived) for ``SALES_ORDERS`` and
    ``columns_added`` for ``ITEMS``. Call it again with another seed for another day.
    """
    rng = random.Random(seed)
    con = sqlite3.connect(Path(path))
    try:
        with con:
            day = business_date(con) + timedelta(days=1)
            customers = _customers(con, rng)
            items = _items(con, rng, day)
            orders, lines = _orders_and_lines(con, rng, day)
            employees = _employees(con, rng)
            set_business_date(con, day)
    finally:
        con.close()
    return {
        "CUSTOMERS": customers,
        "ITEMS": items,
        "SALES_ORDERS": orders,
        "ORDER_LINES": lines,
        "EMPLOYEES": employees,
    }
