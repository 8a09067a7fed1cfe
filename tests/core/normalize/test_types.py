"""Layer 1: declared source types -> Arrow types, lossless casts, rejects for misfits."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from syncflow_core.normalize import coerce_types, parse_declared_type, plan_fields
from syncflow_core.rejects import ROW_ID
from tests.core.normalize.entities import entity


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("NUMBER(10,0)", ("int", 10, None)),
        ("NUMBER(10)", ("int", 10, None)),
        ("NUMBER(18,0)", ("int", 18, None)),
        ("NUMBER(20,0)", ("decimal", 20, 0)),
        ("NUMBER(12,2)", ("decimal", 12, 2)),
        ("number ( 12 , 2 )", ("decimal", 12, 2)),
        ("NUMBER", ("decimal", 38, 10)),
        ("NUMBER(*,2)", ("decimal", 38, 2)),
        ("NUMBER(5,-2)", ("int", 7, None)),
        ("FLOAT", ("float", None, None)),
        ("FLOAT(126)", ("float", None, None)),
        ("BINARY_DOUBLE", ("float", None, None)),
        ("BINARY_FLOAT", ("float", None, None)),
        ("DATE", ("timestamp", None, None)),
        ("TIMESTAMP(6)", ("timestamp", None, None)),
        ("TIMESTAMP(6) WITH TIME ZONE", ("timestamptz", None, None)),
        ("TIMESTAMP WITH LOCAL TIME ZONE", ("timestamptz", None, None)),
        ("CHAR(10)", ("char", None, None)),
        ("NCHAR(3)", ("char", None, None)),
        ("VARCHAR2(40)", ("string", None, None)),
        ("NVARCHAR2(40)", ("string", None, None)),
        ("CLOB", ("string", None, None)),
        ("NCLOB", ("string", None, None)),
        ("RAW(16)", ("binary", None, None)),
        ("BLOB", ("binary", None, None)),
        # SQL types as SQLAlchemy reflects them from PostgreSQL and SQLite.
        ("INTEGER", ("int", None, None)),
        ("BIGINT", ("int", None, None)),
        ("SMALLINT", ("int", None, None)),
        ("NUMERIC(10, 2)", ("decimal", 10, 2)),
        ("NUMERIC", ("decimal", 38, 10)),
        ("DECIMAL(8,3)", ("decimal", 8, 3)),
        ("REAL", ("float", None, None)),
        ("DOUBLE PRECISION", ("float", None, None)),
        ("TEXT", ("string", None, None)),
        ("VARCHAR(20)", ("string", None, None)),
        ("CHARACTER VARYING(20)", ("string", None, None)),
        ("BOOLEAN", ("bool", None, None)),
        ("TIMESTAMP WITHOUT TIME ZONE", ("timestamp", None, None)),
        ("TIMESTAMPTZ", ("timestamptz", None, None)),
        ("BYTEA", ("binary", None, None)),
        ("INTERVAL", None),
    ],
)
def test_declared_types_map_to_kinds(declared: str, expected: object) -> None:
    assert parse_declared_type(declared) == expected


def test_field_option_type_overrides_reflected_type() -> None:
    schema = pa.schema([("qty", pa.string())])
    ent = entity({"qty": {"type": "NUMBER(10,3)"}})
    plan = plan_fields(schema, ent, {"qty": "VARCHAR2(10)"})["qty"]
    assert (plan.kind, plan.precision, plan.scale) == ("decimal", 10, 3)


def test_missing_type_is_inferred_from_arrow_and_text_stays_text() -> None:
    schema = pa.schema([("a", pa.string()), ("b", pa.int32()), ("c", pa.timestamp("s", "UTC")),
                        ("d", pa.list_(pa.int8()))])
    plans = plan_fields(schema, entity(), None)
    assert {k: p.kind for k, p in plans.items()} == {"a": "string", "b": "int",
                                                     "c": "timestamptz"}


def test_date_is_a_timestamp_unless_the_driver_returned_dates() -> None:
    schema = pa.schema([("oracle", pa.timestamp("us")), ("pg", pa.date32()), ("csv", pa.string())])
    plans = plan_fields(schema, entity(), {"oracle": "DATE", "pg": "DATE", "csv": "DATE"})
    assert plans["oracle"].kind == "timestamp"
    assert plans["pg"].kind == "date"
    assert plans["csv"].kind == "timestamp"


def _coerce(table: pa.Table, types: dict[str, str]) -> tuple[pa.Table, pa.Table]:
    r = coerce_types(table, entity(), types)
    return r.table, r.rejects


def test_numbers_cast_losslessly_and_misfits_are_rejects_naming_column_and_value() -> None:
    t = pa.table({
        "qty": pa.array([1, 2, 3], pa.int64()),
        "price": pa.array([1.1, 0.3, 123.456]),
        "big": pa.array([Decimal("12345678901234567890"), Decimal(1), Decimal(2)],
                        pa.decimal128(20, 0)),
        "rate": pa.array([Decimal("999.99"), Decimal("1000.00"), Decimal("1.5")],
                         pa.decimal128(6, 2)),
    })
    out, rej = _coerce(t, {"qty": "NUMBER(10,0)", "price": "NUMBER(12,2)",
                           "big": "NUMBER(20)", "rate": "NUMBER(5,2)"})
    assert out.schema.field("qty").type == pa.int64()
    assert out.schema.field("price").type == pa.decimal128(12, 2)
    assert out.schema.field("big").type == pa.decimal128(20, 0)
    assert out.column("price").to_pylist() == [Decimal("1.10")]
    assert out.column("big").to_pylist() == [Decimal("12345678901234567890")]
    rows = {r[ROW_ID]: r for r in rej.to_pylist()}
    assert set(rows) == {1, 2}
    assert rows[1]["stage"] == "type_coercion"
    assert rows[1]["error_code"] == "value_out_of_range"
    assert "rate" in rows[1]["message"] and "1000.00" in rows[1]["message"]
    assert "price" in rows[2]["message"] and "123.456" in rows[2]["message"]


def test_int_field_rejects_fractions_and_overflow() -> None:
    t = pa.table({"n": pa.array([1.0, 2.5, 2.0**70, float("nan"), None])})
    out, rej = _coerce(t, {"n": "INTEGER"})
    assert out.column("n").to_pylist() == [1, None]
    assert sorted(rej.column(ROW_ID).to_pylist()) == [1, 2, 3]


def test_int_into_narrow_decimal_is_checked_per_value() -> None:
    t = pa.table({"n": pa.array([12, 123456, -999], pa.int64())})
    out, rej = _coerce(t, {"n": "NUMBER(5,2)"})
    assert out.column("n").to_pylist() == [Decimal("12.00"), Decimal("-999.00")]
    assert rej.column("message").to_pylist() == ["n: does not fit NUMBER(5,2): 123456"]


def test_float_types_become_float64() -> None:
    t = pa.table({"a": pa.array([1, 2**60 + 1]), "b": pa.array([1.5], pa.float32()).take([0, 0])})
    out, rej = _coerce(t, {"a": "BINARY_DOUBLE", "b": "BINARY_FLOAT"})
    assert out.schema.field("a").type == pa.float64()
    assert out.schema.field("b").type == pa.float64()
    assert rej.num_rows == 0


def test_text_in_numeric_or_datetime_columns_is_left_for_later_layers() -> None:
    t = pa.table({"qty": [" 1.234,5 "], "at": ["05-JAN-24"]})
    out, rej = _coerce(t, {"qty": "NUMBER(10,2)", "at": "DATE"})
    assert out.column("qty").to_pylist() == [" 1.234,5 "]
    assert out.column("at").to_pylist() == ["05-JAN-24"]
    assert rej.num_rows == 0


def test_char_padding_is_stripped_and_varchar_kept() -> None:
    t = pa.table({"code": ["AB   ", "C", None], "name": ["x  ", "y", "z"]})
    out, _ = _coerce(t, {"code": "CHAR(5)", "name": "VARCHAR2(10)"})
    assert out.column("code").to_pylist() == ["AB", "C", None]
    assert out.column("name").to_pylist() == ["x  ", "y", "z"]


def test_non_text_values_in_text_columns_become_text() -> None:
    t = pa.table({"code": pa.array([10, 20]), "flag": pa.array([True, False])})
    out, _ = _coerce(t, {"code": "VARCHAR2(10)", "flag": "TEXT"})
    assert out.column("code").to_pylist() == ["10", "20"]
    assert out.column("flag").to_pylist() == ["true", "false"]


def test_binary_becomes_lowercase_hex() -> None:
    t = pa.table({"raw": pa.array([b"\x00\xff\x10", None, b"", b"AB"]).slice(0),
                  "blob": pa.array([b"\xde\xad", b"\xbe\xef", None, b"\x01"])})
    out, _ = _coerce(t, {"raw": "RAW(16)", "blob": "BYTEA"})
    assert out.column("raw").to_pylist() == ["00ff10", None, "", "4142"]
    assert out.column("blob").to_pylist() == ["dead", "beef", None, "01"]


def test_sliced_binary_hex_respects_offsets() -> None:
    arr = pa.array([b"\x01", b"\x02\x03", None, b"\x04"]).slice(1, 3)
    out, _ = _coerce(pa.table({"b": arr}), {"b": "BLOB"})
    assert out.column("b").to_pylist() == ["0203", None, "04"]


def test_booleans_from_ints_and_text() -> None:
    t = pa.table({"a": pa.array([0, 1, 2]), "b": [" Yes", "n", "maybe"]})
    out, rej = _coerce(t, {"a": "BOOLEAN", "b": "BOOLEAN"})
    assert out.column("a").to_pylist() == [False, True]
    assert out.column("b").to_pylist() == [True, False]
    assert rej.to_pylist()[0]["error_code"] == "invalid_boolean"
    assert "'maybe'" in rej.to_pylist()[0]["message"]


def test_timestamps_cast_to_microseconds_and_aware_ones_to_utc() -> None:
    naive = pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("s"))
    aware = pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)],
                     pa.timestamp("ns", tz="Europe/Berlin"))
    ns_loss = pa.array([1_000, 1_001], pa.timestamp("ns"))
    t = pa.table({"d": naive.take([0, 0]), "z": aware.take([0, 0]), "x": ns_loss})
    out, rej = _coerce(t, {"d": "DATE", "z": "TIMESTAMP WITH TIME ZONE", "x": "TIMESTAMP"})
    assert out.schema.field("d").type == pa.timestamp("us")
    assert out.schema.field("z").type == pa.timestamp("us", tz="UTC")
    assert out.column("z").to_pylist()[0] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert rej.column(ROW_ID).to_pylist() == [1]
    assert "sub-microsecond" in rej.column("message")[0].as_py()


def test_dates_stay_dates_for_date_fields() -> None:
    t = pa.table({"d": pa.array([dt.date(2024, 2, 29)])})
    out, _ = _coerce(t, {"d": "DATE"})
    assert out.schema.field("d").type == pa.date32()
    assert out.column("d").to_pylist() == [dt.date(2024, 2, 29)]


def test_row_ids_are_added_and_kept() -> None:
    out, _ = _coerce(pa.table({"a": [1, 2]}), {})
    assert out.column(ROW_ID).to_pylist() == [0, 1]
