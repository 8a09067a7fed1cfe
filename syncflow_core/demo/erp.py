"""Generate the demo ERP: a realistic, messy SQLite database, deterministic by seed.

Tables carry Oracle-style *declared* types (SQLite keeps the text, e.g. ``NUMBER(12,2)``), and
values the way old ERPs store them: amounts as locale-formatted text (one locale per column),
mixed date spellings, padded ``CHAR`` codes, mojibake. Because SQLite applies NUMERIC affinity
to ``NUMBER``/``DATE`` columns, text that looks like a plain number (``'500'``) is stored as a
number while ``'1.234,56'`` stays text: such columns hold mixed storage classes, as a real
SQLite-backed ERP would.

Deliberately bad rows (a handful per table, appended with their own keys so no other row
depends on them): a null business key, an unparseable number (``'12,3x'``), an impossible date
(``31/02/2024``); plus one customer whose code duplicates another's after trimming, and a few
order lines that reference an item that never exists (they end as ``parent_missing``).

About 40 orders are held back ("the order arrives later"): their ~200 lines are in
``ORDER_LINES`` but the orders sit in `LATE_ORDERS_TABLE` until `insert_late_orders` (or
``apply_business_day``) moves them into ``SALES_ORDERS``.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from syncflow_core.demo.formats import (
    de_amount,
    en_amount,
    oracle_date,
    oracle_date_long,
    roughen_text,
)

__all__ = [
    "AS_OF",
    "DDL",
    "DEMO_TABLES",
    "LATE_ORDERS_TABLE",
    "META_TABLE",
    "business_date",
    "customer_row",
    "employee_row",
    "generate_demo_erp",
    "insert_late_orders",
    "item_row",
    "order_lines_for",
    "order_row",
    "pending_late_orders",
    "set_business_date",
]

DEMO_TABLES = ("CUSTOMERS", "ITEMS", "SALES_ORDERS", "ORDER_LINES", "EMPLOYEES")
LATE_ORDERS_TABLE = "SYNCFLOW_DEMO_LATE_ORDERS"
"""Orders generated but not yet "arrived" in ``SALES_ORDERS``."""
META_TABLE = "SYNCFLOW_DEMO_META"
"""Demo bookkeeping (the current business date); not an ERP table."""
AS_OF = date(2024, 12, 31)
"""The business date the generated data is "as of"; each business day advances it by one."""

_ORDERS_COLUMNS = (
    "ORDER_NO VARCHAR2(12), CUSTOMER_NO VARCHAR2(12), ORDER_DATE DATE, "
    "TOTAL NUMBER(14,2), STATUS VARCHAR2(12), ROWVER NUMBER(19)"
)

DDL: dict[str, str] = {
    "CUSTOMERS": (
        "CREATE TABLE CUSTOMERS (CUSTOMER_NO CHAR(10), NAME VARCHAR2(80), CITY VARCHAR2(40), "
        "COUNTRY CHAR(2), CREDIT_LIMIT NUMBER(12,2), OPEN_BALANCE NUMBER(12,2), CREATED DATE, "
        "LAST_CHANGE NUMBER(19))"
    ),
    "ITEMS": (
        "CREATE TABLE ITEMS (ITEM_NO VARCHAR2(20), DESCRIPTION VARCHAR2(100), "
        "UNIT_PRICE NUMBER(12,2), WEIGHT_KG FLOAT, ACTIVE CHAR(1), UPDATED_AT TIMESTAMP)"
    ),
    "SALES_ORDERS": f"CREATE TABLE SALES_ORDERS ({_ORDERS_COLUMNS})",
    "ORDER_LINES": (
        "CREATE TABLE ORDER_LINES (ORDER_NO VARCHAR2(12), LINE_NO NUMBER(5), "
        "ITEM_NO VARCHAR2(20), QTY NUMBER(12,3), PRICE NUMBER(12,2), DISCOUNT_PCT NUMBER(5,2), "
        "DELIVERY_DATE VARCHAR2(8))"
    ),
    "EMPLOYEES": (
        "CREATE TABLE EMPLOYEES (EMP_NO NUMBER(6), NAME VARCHAR2(80), MANAGER_NO NUMBER(6), "
        "HIRED DATE, SALARY NUMBER(10,2))"
    ),
    LATE_ORDERS_TABLE: f"CREATE TABLE {LATE_ORDERS_TABLE} ({_ORDERS_COLUMNS})",
    META_TABLE: f"CREATE TABLE {META_TABLE} (KEY TEXT PRIMARY KEY, VALUE TEXT)",
}

# Non-unique on purpose: the ERP holds null and duplicate keys. They keep keyset reads fast.
_INDEXES = (
    "CREATE INDEX IX_CUSTOMERS_NO ON CUSTOMERS (CUSTOMER_NO)",
    "CREATE INDEX IX_ITEMS_NO ON ITEMS (ITEM_NO)",
    "CREATE INDEX IX_SALES_ORDERS_NO ON SALES_ORDERS (ORDER_NO)",
    "CREATE INDEX IX_ORDER_LINES_KEY ON ORDER_LINES (ORDER_NO, LINE_NO)",
    "CREATE INDEX IX_EMPLOYEES_NO ON EMPLOYEES (EMP_NO)",
)

_FIRST = (
    "Anna",
    "Jörg",
    "Søren",
    "Zoë",
    "Lukas",
    "Jürgen",
    "Marie",
    "François",
    "Björn",
    "Sophie",
    "Ömer",
    "Hélène",
    "Paul",
    "Renée",
    "Max",
    "Ingrid",
    "José",
    "Katarzyna",
)
_LAST = (
    "Müller",
    "Schäfer",
    "Weiß",
    "Größ",
    "Köhler",
    "Bäcker",
    "Schmidt",
    "Fischer",
    "Meyer",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Schröder",
    "Krüger",
    "Lange",
    "Dubois",
    "Jansen",
    "Nowak",
    "Łukasiewicz",
    "Öztürk",
    "Vogel",
    "Brandt",
    "Hübner",
    "Zimmermann",
)
_SUFFIX = ("GmbH", "AG", "KG", "GmbH & Co. KG", "e.K.", "SE", "Ltd.", "S.A.", "B.V.", "OHG")
_TRADE = (
    "Maschinenbau",
    "Logistik",
    "Handel",
    "Elektrotechnik",
    "Feinmechanik",
    "Bau",
    "Agrar",
    "Stahlhandel",
    "Verpackung",
    "Kältetechnik",
)
_CITIES = (
    ("München", "DE"),
    ("Köln", "DE"),
    ("Düsseldorf", "DE"),
    ("Nürnberg", "DE"),
    ("Hamburg", "DE"),
    ("Berlin", "DE"),
    ("Frankfurt am Main", "DE"),
    ("Stuttgart", "DE"),
    ("Würzburg", "DE"),
    ("Wien", "AT"),
    ("Graz", "AT"),
    ("Zürich", "CH"),
    ("Genève", "CH"),
    ("Amsterdam", "NL"),
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("New York", "US"),
)
_PARTS = (
    "Schraube",
    "Mutter",
    "Kugellager",
    "Hydraulikschlauch",
    "Dichtring",
    "Zahnrad",
    "Keilriemen",
    "Flansch",
    "Ventil",
    "Sensor",
    "Kabelbinder",
    "Winkel",
    "Scharnier",
)
_SPECS = (
    "M8 x 40 verzinkt",
    "6204-2RS",
    "DN10 1,5m",
    "Ø 25 mm",
    "Edelstahl A2",
    "24 V DC",
    "PN16",
    "10 Stk.",
    "schwarz",
    "90°",
    "rostfrei",
    "Größe XL",
)
_STATUS = ("OPEN", "SHIPPED", "INVOICED", "CANCELLED")


def _scaled(n: int, scale: float) -> int:
    return max(1, round(n * scale))


def _bad_count(k: int, n: int) -> int:
    """``k`` bad rows of a kind, but never more than 0.5 % of the table (small scales)."""
    return max(1, min(k, n // 200))


def _day(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randrange((last - first).days + 1))


def _company(rng: random.Random) -> str:
    style = rng.random()
    if style < 0.5:
        name = f"{rng.choice(_LAST)} {rng.choice(_TRADE)} {rng.choice(_SUFFIX)}"
    elif style < 0.8:
        name = f"{rng.choice(_LAST)} & {rng.choice(_LAST)} {rng.choice(_SUFFIX)}"
    else:
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)} {rng.choice(_SUFFIX)}"
    return roughen_text(rng, name)


def _customer_code(number: int, rng: random.Random) -> str:
    code = f"C{number:06d}"
    # CHAR(10) pads on the right. Never on the left: a key that keeps its order when trimmed
    # stays on the fast path (see syncflow_core.key_scope). The draw keeps the seed's stream
    # as it was.
    rng.random()
    return code.ljust(10)


def _created(rng: random.Random) -> str:
    d = _day(rng, date(2012, 1, 1), AS_OF)
    r = rng.random()
    if r < 0.6:
        return d.isoformat()
    if r < 0.85:
        return oracle_date(d)
    return f"{d.isoformat()} {rng.randrange(7, 19):02d}:{rng.randrange(60):02d}:00"


def _credit_limit(rng: random.Random) -> str:
    cents = rng.choice((500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 250_000)) * 100
    if rng.random() < 0.1:
        cents += rng.randrange(100_00)
    return en_amount(cents)


def customer_row(rng: random.Random, number: int, version: int) -> tuple[Any, ...]:
    """One well-formed (if messy) CUSTOMERS row."""
    city, country = rng.choice(_CITIES)
    balance = rng.randrange(-50_000_00, 500_000_00) if rng.random() < 0.7 else 0
    return (
        _customer_code(number, rng),
        _company(rng),
        city,
        country,
        _credit_limit(rng),
        de_amount(balance),
        _created(rng),
        version,
    )


def _unit_price_cents(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.4:
        return rng.randrange(5, 1_000)
    if r < 0.9:
        return rng.randrange(1_000, 100_000)
    return rng.randrange(100_000, 2_000_000)


def _timestamp(rng: random.Random, d: date) -> str:
    return (
        f"{d.isoformat()} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
    )


def item_row(rng: random.Random, number: int, price_cents: int, updated: date) -> tuple[Any, ...]:
    """One ITEMS row (``UNIT_PRICE`` in German notation)."""
    desc = f"{rng.choice(_PARTS)} {rng.choice(_SPECS)}"
    if rng.random() < 0.03:
        desc = desc.replace(" ", "  ", 1)  # double space from a copy-paste
    desc = roughen_text(rng, desc)
    active = "Y" if rng.random() < 0.9 else "N"
    if rng.random() < 0.01:
        active = active.lower()
    return (
        f"ART-{number:05d}",
        desc,
        de_amount(price_cents),
        round(rng.uniform(0.005, 250.0), 3),
        active,
        _timestamp(rng, updated),
    )


def _total_text(rng: random.Random, cents: int) -> str:
    if cents < 0:
        return f"({de_amount(-cents)})" if rng.random() < 0.7 else f"€ {de_amount(cents)}"
    return f"€ {de_amount(cents)}" if rng.random() < 0.8 else de_amount(cents)


def _status(rng: random.Random) -> str:
    status = rng.choice(_STATUS)
    r = rng.random()
    if r < 0.05:
        return status.lower()
    if r < 0.08:
        return status + "  "
    return status


def order_lines_for(
    rng: random.Random,
    order_no: str,
    order_day: date,
    items: Sequence[tuple[str, int]],
    credit: bool,
) -> tuple[list[tuple[Any, ...]], int]:
    """Lines of one order and the order's total in cents."""
    step = 10 if rng.random() < 0.3 else 1  # SAP-style 10, 20, 30 numbering in some orders
    lines: list[tuple[Any, ...]] = []
    total = 0
    for i in range(1, rng.randint(1, 9) + 1):
        item_no, price = items[rng.randrange(len(items))]
        bulk = price < 1_000 and rng.random() < 0.1  # cheap parts go by the thousand
        qty = rng.randint(1_000, 20_000) if bulk else rng.randint(1, 50)
        if credit:
            qty = -qty
        disc = rng.choice((0, 0, 0, 0, 5, 10, 12.5, 15, 20))
        disc_text = "" if disc == 0 and rng.random() < 0.3 else f"{disc}%"
        total += round(qty * price * (100 - disc) / 100)
        deliver = order_day + timedelta(days=rng.randint(3, 30))
        # SAP's "initial" date: no delivery date yet (kept rare: normalizers may reject it).
        deliver_text = "00000000" if rng.random() < 0.01 else deliver.strftime("%Y%m%d")
        qty_text = f"{qty:,}"  # '1,000': English thousands separator
        lines.append((order_no, i * step, item_no, qty_text, price / 100, disc_text, deliver_text))
    return lines, total


def order_row(
    rng: random.Random, order_no: str, customer_no: str, day: date, total: int, rowver: int
) -> tuple[Any, ...]:
    """One SALES_ORDERS row (day-first date, German currency text)."""
    return (
        order_no,
        customer_no,
        day.strftime("%d/%m/%Y"),
        _total_text(rng, total),
        _status(rng),
        rowver,
    )


def _person(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    name = f"{last}, {first}" if rng.random() < 0.3 else f"{first} {last}"
    return roughen_text(rng, name)


def employee_row(rng: random.Random, emp_no: int, manager: int | None) -> tuple[Any, ...]:
    """One EMPLOYEES row (``HIRED`` as Oracle ``DD-MON-YYYY``)."""
    return (
        emp_no,
        _person(rng),
        manager,
        oracle_date_long(_day(rng, date(1995, 1, 1), AS_OF)),
        round(rng.uniform(28_000, 160_000), 2),
    )


def _create(con: sqlite3.Connection) -> None:
    for ddl in DDL.values():
        con.execute(ddl)


def _insert(con: sqlite3.Connection, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        # `table` is one of our constant names, never input.
        con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)  # noqa: S608


def _customers(rng: random.Random, n: int) -> tuple[list[tuple[Any, ...]], list[str]]:
    versions = list(range(1, n + 1))
    rng.shuffle(versions)
    rows = [customer_row(rng, i, versions[i - 1]) for i in range(1, n + 1)]
    codes = [str(r[0]).strip() for r in rows]
    nxt = n + 1
    bad: list[tuple[Any, ...]] = []
    for _ in range(_bad_count(3, n)):
        bad.append((None, *customer_row(rng, 0, n + len(bad) + 1)[1:]))
    for kind, k in (("number", 3), ("date", 3)):
        for _ in range(_bad_count(k, n)):
            row = list(customer_row(rng, nxt, n + len(bad) + 1))
            if kind == "number":
                row[4] = "12,3x"
            else:
                row[6] = rng.choice(("2024-02-30", "31-FEB-23"))
            bad.append(tuple(row))
            nxt += 1
    # One code duplicated after trimming: 'C000042<NBSP>' next to 'C000042   ' (adjacent in
    # source order, so trimming keeps the order).
    dup = list(customer_row(rng, 0, n + len(bad) + 1))
    dup[0] = codes[min(41, n - 1)].rstrip() + "\u00a0"
    bad.append(tuple(dup))
    return rows + bad, codes


def _items(rng: random.Random, n: int) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]]]:
    rows: list[tuple[Any, ...]] = []
    refs: list[tuple[str, int]] = []
    for i in range(1, n + 1):
        price = _unit_price_cents(rng)
        rows.append(item_row(rng, i, price, _day(rng, date(2020, 1, 1), AS_OF)))
        refs.append((f"ART-{i:05d}", price))
    nxt = n + 1
    bad: list[tuple[Any, ...]] = []
    for _ in range(_bad_count(2, n)):
        bad.append((None, *item_row(rng, 0, 100, AS_OF)[1:]))
    for _ in range(_bad_count(3, n)):
        row = list(item_row(rng, nxt, 100, AS_OF))
        row[2] = "12,3x"
        bad.append(tuple(row))
        nxt += 1
    for _ in range(_bad_count(2, n)):
        row = list(item_row(rng, nxt, 100, AS_OF))
        row[5] = "2024-02-30 10:00:00"
        bad.append(tuple(row))
        nxt += 1
    # Naive local times that do not exist / exist twice in Europe/Berlin (DST), both valid.
    if len(rows) > 2:
        rows[0] = (*rows[0][:5], "2024-03-31 02:30:00")
        rows[1] = (*rows[1][:5], "2024-10-27 02:30:00")
    return rows + bad, refs


def _employees(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    # Build the tree in hire order, then hand out numbers at random so a manager's number is
    # often higher than a report's (a keyset slice can hold a child before its parent).
    numbers = list(range(10_001, 10_001 + n))
    rng.shuffle(numbers)
    top = min(3, n)
    rows = []
    for i in range(n):
        manager = None if i < top else numbers[rng.randrange(max(top, i // 4))]
        rows.append(employee_row(rng, numbers[i], manager))
    bad: list[tuple[Any, ...]] = []
    nxt = 10_001 + n
    for _ in range(_bad_count(2, n)):
        bad.append((None, *employee_row(rng, 0, numbers[0])[1:]))
    for kind, k in (("date", 3), ("number", 2)):
        for _ in range(_bad_count(k, n)):
            row = list(employee_row(rng, nxt, numbers[0]))
            if kind == "date":
                row[3] = "31-FEB-2020"
            else:
                row[4] = "12,3x"
            bad.append(tuple(row))
            nxt += 1
    return rows + bad


def _meta(con: sqlite3.Connection, key: str, value: str) -> None:
    con.execute(f"INSERT OR REPLACE INTO {META_TABLE} VALUES (?, ?)", (key, value))  # noqa: S608


def generate_demo_erp(path: Path, seed: int = 42, scale: float = 1.0) -> dict[str, int]:
    """Write the demo ERP to the SQLite file ``path`` (replaced if it exists).

    Returns the row count of each ERP table (`DEMO_TABLES`). At ``scale`` 1.0 that is about
    10k customers, 5k items, 30k orders, 150k order lines and 2k employees; the same seed and
    scale give the same rows.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    path = Path(path)
    path.unlink(missing_ok=True)
    rng = random.Random(seed)
    n_cust, n_items = _scaled(10_000, scale), _scaled(5_000, scale)
    n_orders, n_emp = _scaled(30_000, scale), _scaled(2_000, scale)

    customers, codes = _customers(rng, n_cust)
    items, item_refs = _items(rng, n_items)

    orders: list[tuple[Any, ...]] = []
    lines: list[tuple[Any, ...]] = []
    versions = list(range(1, n_orders + 1))
    rng.shuffle(versions)
    for i in range(1, n_orders + 1):
        order_no = f"SO-{i:07d}"
        day = _day(rng, date(2022, 1, 1), AS_OF)
        order_lines, total = order_lines_for(rng, order_no, day, item_refs, rng.random() < 0.02)
        lines.extend(order_lines)
        orders.append(
            order_row(rng, order_no, codes[rng.randrange(n_cust)], day, total, versions[i - 1])
        )
    # "The order arrives later": hold back ~40 orders whose lines are already there.
    held = set(rng.sample(range(n_orders), min(n_orders, _scaled(40, scale))))
    late = [o for i, o in enumerate(orders) if i in held]
    orders = [o for i, o in enumerate(orders) if i not in held]
    orders.extend(_bad_orders(rng, n_orders, codes))
    lines.extend(_bad_lines(rng, orders[0][0], len(lines)))

    employees = _employees(rng, n_emp)

    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=OFF")  # a fixture file: no crash safety needed
        con.execute("PRAGMA synchronous=OFF")
        _create(con)
        for table, rows in (
            ("CUSTOMERS", customers),
            ("ITEMS", items),
            ("SALES_ORDERS", orders),
            ("ORDER_LINES", lines),
            ("EMPLOYEES", employees),
            (LATE_ORDERS_TABLE, late),
        ):
            _insert(con, table, rows)
        for ix in _INDEXES:
            con.execute(ix)
        _meta(con, "business_date", AS_OF.isoformat())
        _meta(con, "seed", str(seed))
        _meta(con, "scale", repr(scale))
        con.commit()
    finally:
        con.close()
    return {
        "CUSTOMERS": len(customers),
        "ITEMS": len(items),
        "SALES_ORDERS": len(orders),
        "ORDER_LINES": len(lines),
        "EMPLOYEES": len(employees),
    }


def _bad_orders(rng: random.Random, n: int, codes: Sequence[str]) -> list[tuple[Any, ...]]:
    bad: list[tuple[Any, ...]] = []
    nxt = n + 1
    for kind, k in (("key", 2), ("date", 5), ("number", 3)):
        for _ in range(_bad_count(k, n)):
            row = list(order_row(rng, f"SO-{nxt:07d}", codes[0], AS_OF, 100, n + len(bad) + 1))
            if kind == "key":
                row[0] = None
            elif kind == "date":
                row[2] = "31/02/2024"
            else:
                row[3] = "€ 12,3x"
            if kind != "key":
                nxt += 1
            bad.append(tuple(row))
    return bad


def _bad_lines(rng: random.Random, order_no: str, n: int) -> list[tuple[Any, ...]]:
    """Bad lines hang off one real order with line numbers 900+ (no line number clashes)."""
    bad: list[tuple[Any, ...]] = []
    line_no = 900
    for kind, k in (("number", 5), ("date", 5), ("key", 3), ("orphan", 3)):
        for _ in range(_bad_count(k, n)):
            row = [order_no, line_no, "ART-00001", "3", 1.5, "", "20240115"]
            if kind == "number":
                row[3] = "12,3x"
            elif kind == "date":
                row[6] = "20240231"
            elif kind == "key":
                row[1] = None
            else:
                row[2] = "ART-99999"  # an item that never exists: ends as parent_missing
            line_no += 1
            bad.append(tuple(row))
    return bad


def pending_late_orders(path: Path) -> int:
    """How many held-back orders have not arrived in ``SALES_ORDERS`` yet."""
    con = sqlite3.connect(path)
    try:
        (n,) = con.execute(f"SELECT COUNT(*) FROM {LATE_ORDERS_TABLE}").fetchone()  # noqa: S608
        return int(n)
    finally:
        con.close()


def insert_late_orders(path: Path) -> int:
    """Move the held-back orders into ``SALES_ORDERS`` (with fresh row versions)."""
    con = sqlite3.connect(path)
    try:
        with con:
            return _move_late_orders(con)
    finally:
        con.close()


def _move_late_orders(con: sqlite3.Connection) -> int:
    (top,) = con.execute("SELECT COALESCE(MAX(ROWVER), 0) FROM SALES_ORDERS").fetchone()
    late = con.execute(
        f"SELECT ORDER_NO, CUSTOMER_NO, ORDER_DATE, TOTAL, STATUS FROM {LATE_ORDERS_TABLE} "  # noqa: S608
        "ORDER BY ORDER_NO"
    ).fetchall()
    # Written now, so above any stored rowversion watermark.
    rows = [(*r, int(top) + i) for i, r in enumerate(late, start=1)]
    _insert(con, "SALES_ORDERS", rows)
    con.execute(f"DELETE FROM {LATE_ORDERS_TABLE}")  # noqa: S608
    return len(rows)


def business_date(con: sqlite3.Connection) -> date:
    """The demo's current business date (advanced by each business day)."""
    row = con.execute(f"SELECT VALUE FROM {META_TABLE} WHERE KEY = 'business_date'").fetchone()  # noqa: S608
    return date.fromisoformat(row[0]) if row else AS_OF


def set_business_date(con: sqlite3.Connection, d: date) -> None:
    """Record the demo's current business date."""
    _meta(con, "business_date", d.isoformat())
