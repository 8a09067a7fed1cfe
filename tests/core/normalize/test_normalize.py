"""All five layers together: types, rejects with the raw row, ROW_ID, one reject per row."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa

from syncflow_core.normalize import normalize
from syncflow_core.rejects import ROW_ID, materialize_rejects, with_row_ids
from tests.core.normalize.entities import entity

SOURCE_TYPES = {"line_no": "NUMBER(10,0)", "item": "CHAR(8)", "qty": "NUMBER(12,3)",
                "price": "NUMBER(12,2)", "booked": "DATE", "note": "VARCHAR2(200)",
                "blob": "RAW(4)"}

RAW = pa.table({
    "line_no": pa.array([1, 2, 3, 4, 5], pa.int64()),
    "item": ["AB-1    ", "CD-2    ", "EF-3    ", "GH-4    ", "IJ-5    "],
    "qty": ["1.000,5", "2", "x", "4", "5"],
    "price": pa.array([10.5, 20.0, 30.0, 40.0, 1234.567]),
    "booked": ["05-JAN-24 10:00:00", "31.01.2024", "2024-02-30", "2024-02-01", "2024-02-02"],
    "note": ["MÃ¼nchen\u00a0", "", "ok", "tab\there", "x"],
    "blob": [b"\x0a\x0b", None, b"\x00", b"\xff", b"\x01"],
})

ENT = entity(
    {"qty": {"locale": "de_DE"}, "booked": {"timezone": "Europe/Berlin"}},
    [{"op": "rename", "field": "item", "to": "item_code"},
     {"op": "value_map", "field": "note", "mapping": {"ok": "OK"}},
     {"op": "constant", "field": "source", "value": "erp"}],
)


def test_layers_together_produce_clean_types() -> None:
    r = normalize(RAW, ENT, SOURCE_TYPES, reference_year=2024)
    t = r.table
    assert t.schema.field("line_no").type == pa.int64()
    assert t.schema.field("qty").type == pa.decimal128(12, 3)
    assert t.schema.field("price").type == pa.decimal128(12, 2)
    assert t.schema.field("booked").type == pa.timestamp("us", tz="UTC")
    rows = {r["line_no"]: r for r in t.to_pylist()}
    assert set(rows) == {1, 2, 4}
    assert rows[1]["item_code"] == "AB-1"
    assert rows[1]["qty"] == Decimal("1000.500")
    assert rows[1]["booked"] == dt.datetime(2024, 1, 5, 9, tzinfo=dt.UTC)
    assert rows[1]["note"] == "München"
    assert rows[1]["blob"] == "0a0b"
    assert rows[2]["note"] is None  # '' is NULL
    assert rows[4]["note"] == "tab here"
    assert rows[1]["source"] == "erp"


def test_row_id_is_preserved_and_points_at_the_raw_row() -> None:
    r = normalize(RAW, ENT, SOURCE_TYPES)
    assert t_ids(r.table) == [0, 1, 3]
    assert r.table.column_names[-1] == ROW_ID or ROW_ID in r.table.column_names


def t_ids(t: pa.Table) -> list[int]:
    return t.column(ROW_ID).to_pylist()


def test_rejects_carry_stage_code_message_and_the_raw_row() -> None:
    r = normalize(RAW, ENT, SOURCE_TYPES)
    rej = materialize_rejects(with_row_ids(RAW), r.rejects, "order_lines").to_pylist()
    by_line = {json.loads(x["raw_row"])["line_no"]: x for x in rej}
    assert set(by_line) == {3, 5}
    # Row 3 is bad in two layers (qty 'x' and an impossible date): rejected once, by layer 3.
    assert by_line[3]["stage"] == "numbers"
    assert by_line[3]["error_code"] == "invalid_number"
    assert by_line[3]["message"] == "qty: not a number: 'x'"
    assert json.loads(by_line[3]["raw_row"])["booked"] == "2024-02-30"
    assert by_line[5]["stage"] == "type_coercion"
    assert "price" in by_line[5]["message"] and "1234.567" in by_line[5]["message"]
    raw5 = json.loads(by_line[5]["raw_row"])
    assert raw5["item"] == "IJ-5    "  # the raw row, not a cleaned copy


def test_existing_row_ids_are_kept() -> None:
    chunk = with_row_ids(RAW.slice(2), offset=1000)
    r = normalize(chunk, ENT, SOURCE_TYPES)
    assert t_ids(r.table) == [1001]
    assert sorted(r.rejects.column(ROW_ID).to_pylist()) == [1000, 1002]


def test_chunked_input_and_empty_input() -> None:
    chunked = pa.concat_tables([RAW.slice(0, 2), RAW.slice(2)])
    assert normalize(chunked, ENT, SOURCE_TYPES).table.num_rows == 3
    empty = normalize(RAW.slice(0, 0), ENT, SOURCE_TYPES)
    assert empty.table.num_rows == 0 and empty.rejects.num_rows == 0
    assert empty.table.schema.field("qty").type == pa.decimal128(12, 3)


def test_no_declared_types_keeps_text_as_text() -> None:
    t = pa.table({"line_no": [1], "qty": [" 1,000 "]})
    r = normalize(t, entity())
    assert r.table.column("qty").to_pylist() == ["1,000"]
