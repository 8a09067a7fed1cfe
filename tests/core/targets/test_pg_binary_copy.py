"""Binary COPY (pgpq) stores exactly what CSV COPY stores, for every column type it takes."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from syncflow_core.targets import pg_copy
from syncflow_core.targets.ddl import ColumnType

pytestmark = pytest.mark.postgres

COLUMNS: dict[str, tuple[pa.DataType, ColumnType, list[Any]]] = {
    "t": (pa.string(), ColumnType("text"),
          ["", "plain", 'quote " and , comma', "line\nbreak\ttab", "Müller ✓ 𝄞", None]),
    "lt": (pa.large_string(), ColumnType("text"), ["large", "", None, "x" * 3000, "é", "z"]),
    "i2": (pa.int16(), ColumnType("int", 16), [-32768, 32767, 0, None, -1, 7]),
    "i4": (pa.int32(), ColumnType("int", 32), [-(2**31), 2**31 - 1, 0, None, 12, -5]),
    "i8": (pa.int64(), ColumnType("int", 64), [-(2**63), 2**63 - 1, 0, None, 10**12, -9]),
    "f8": (pa.float64(), ColumnType("float", 64),
           [0.1, -0.0, math.inf, None, 1e-300, -123456.789]),
    "f4": (pa.float32(), ColumnType("float", 32), [0.5, -2.25, None, 3.0, 0.0, 1e10]),
    "n0": (pa.decimal128(20, 0), ColumnType("decimal", precision=20, scale=0),
           [Decimal("0"), Decimal("-12345678901234567890"), Decimal("10000"), None,
            Decimal("99999999999999999999"), Decimal("1")]),
    "n2": (pa.decimal128(12, 2), ColumnType("decimal", precision=12, scale=2),
           [Decimal("10.50"), Decimal("-0.01"), Decimal("0.00"), None,
            Decimal("9999999999.99"), Decimal("100.00")]),
    "n7": (pa.decimal128(35, 7), ColumnType("decimal", precision=35, scale=7),
           [Decimal("0.0000001"), Decimal("-1234567890123456789012345678.1234567"),
            Decimal("10000.0000000"), None, Decimal("-0.5000000"), Decimal("42.0000001")]),
    "nu": (pa.decimal128(9, 4), ColumnType("decimal"),  # unconstrained NUMERIC
           [Decimal("1.2500"), Decimal("-3.0000"), None, Decimal("0.0001"), Decimal("0"),
            Decimal("12345.6789")]),
    "d": (pa.date32(), ColumnType("date"),
          [date(1999, 12, 31), date(2000, 1, 1), date(1900, 3, 1), None, date(2262, 4, 11),
           date(1970, 1, 1)]),
    "ts": (pa.timestamp("us"), ColumnType("timestamp"),
           [datetime(1999, 12, 31, 23, 59, 59, 999999), datetime(2000, 1, 1),
            datetime(1850, 6, 1, 12, 0, 0, 1), None, datetime(2100, 1, 1, 0, 0, 0, 500000),
            datetime(2026, 11, 26, 12, 0)]),
    "tz": (pa.timestamp("us", "UTC"), ColumnType("timestamptz"),
           [datetime(2026, 1, 5, 22, 0, tzinfo=UTC), None,
            datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
            datetime(2000, 1, 1, tzinfo=UTC) - timedelta(microseconds=1),
            datetime(2030, 3, 1, 8, 30, tzinfo=timezone(timedelta(hours=5))),
            datetime(2000, 1, 1, tzinfo=UTC)]),
    "tzns": (pa.timestamp("ns", "Europe/Berlin"), ColumnType("timestamptz"),
             [datetime(2026, 3, 29, 1, 30, tzinfo=UTC), None, None, None, None,
              datetime(2026, 10, 25, 0, 59, 59, 123456, tzinfo=UTC)]),
    "b": (pa.bool_(), ColumnType("bool"), [True, False, None, True, False, False]),
    "d64": (pa.date64(), ColumnType("date"),
            [date(2024, 2, 29), None, date(1999, 1, 1), date(2000, 1, 2), None, None]),
    "allnull": (pa.int64(), ColumnType("int", 64), [None] * 6),
}
COLUMNS_INDEX = {n: i for i, n in enumerate(COLUMNS)}


def _table() -> pa.Table:
    return pa.table({n: pa.array(v, t) for n, (t, _, v) in COLUMNS.items()})


def _ddl(name: str) -> str:
    sql_types = {"text": "text", "date": "date", "timestamp": "timestamp",
                 "timestamptz": "timestamptz", "bool": "boolean"}

    def one(ct: ColumnType) -> str:
        if ct.kind == "int":
            return {16: "smallint", 32: "integer", 64: "bigint"}[ct.size]
        if ct.kind == "float":
            return "double precision" if ct.size == 64 else "real"
        if ct.kind == "decimal":
            return f"numeric({ct.precision},{ct.scale})" if ct.precision else "numeric"
        return sql_types[ct.kind]

    cols = ", ".join(f"{n} {one(ct)}" for n, (_, ct, _) in COLUMNS.items())
    return f"CREATE TABLE {name} (pos serial, {cols})"


def _load(pg_url: str, table: pa.Table, name: str, binary: bool) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            raw.execute(_ddl(name))
            types = {n: ct for n, (_, ct, _) in COLUMNS.items()} if binary else None
            pg_copy.copy_table(raw, name, table.column_names, table, types=types)
            # Text output: compares what is stored (numeric scale, float digits) exactly.
            cols = ", ".join(f"{n}::text" for n in COLUMNS)
            return [tuple(r) for r in raw.execute(f"SELECT {cols} FROM {name} ORDER BY pos")]
    finally:
        engine.dispose()


def test_every_column_type_stores_the_same_as_csv(pg_url: str) -> None:
    table = _table()
    for name, (t, ct, _) in COLUMNS.items():
        assert pg_copy.binary_encodable(t, ct), name
    binary = _load(pg_url, table, "via_binary", binary=True)
    csv = _load(pg_url, table, "via_csv", binary=False)
    assert binary == csv
    assert binary[0][COLUMNS_INDEX["n2"]] == "10.50"
    assert binary[1][COLUMNS_INDEX["n7"]] == "-1234567890123456789012345678.1234567"


def test_sliced_batches_store_their_own_rows(pg_url: str) -> None:
    table = _table().slice(2, 3)
    assert _load(pg_url, table, "sliced_bin", True) == _load(pg_url, table, "sliced_csv", False)


def test_an_empty_table_copies_nothing(pg_url: str) -> None:
    assert _load(pg_url, _table().slice(0, 0), "empty_bin", True) == []


@pytest.mark.parametrize(
    ("arrow", "column"),
    [
        (pa.timestamp("us"), ColumnType("timestamptz")),  # naive into zoned
        (pa.int64(), ColumnType("decimal", precision=20, scale=0)),
        (pa.int64(), ColumnType("int", 32)),  # the server takes only the exact width
        (pa.uint32(), ColumnType("int", 64)),
        (pa.string(), ColumnType("int", 64)),
        (pa.null(), ColumnType("text")),
    ],
)
def test_pairs_without_a_binary_form_go_as_csv(arrow: pa.DataType, column: ColumnType) -> None:
    assert not pg_copy.binary_encodable(arrow, column)
