"""Per-field switches for what normalization changes, and the values it refuses.

Defaults are the behaviour existing targets' data hashes were computed with; each switch is
checked against that default on the same values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from syncflow_core.normalize import normalize
from syncflow_core.rejects import ROW_ID
from tests.core.normalize.entities import entity

RAW = ["  Müller \n GmbH ", "MÃ¼nchen", "", "a\tb"]


TEXT = pa.string()


def _text(values: list[Any], typ: pa.DataType = TEXT, **opts: Any
          ) -> tuple[list[Any], pa.Table]:
    table = pa.table({"line_no": list(range(len(values))), "TXT": pa.array(values, typ)})
    ent = entity({"TXT": opts} if opts else None)
    result = normalize(table, ent)
    return result.table.column("TXT").to_pylist(), result.rejects


def test_defaults_trim_space_newlines_fix_mojibake_and_null_empty() -> None:
    assert _text(RAW)[0] == ["Müller   GmbH", "München", None, "a b"]


@pytest.mark.parametrize(
    ("opts", "want"),
    [
        ({"trim": False}, ["  Müller   GmbH ", "München", None, "a b"]),
        ({"newlines": "keep"}, ["Müller \n GmbH", "München", None, "a\tb"]),
        ({"fix_mojibake": False}, ["Müller   GmbH", "MÃ¼nchen", None, "a b"]),
        ({"empty_is_null": False}, ["Müller   GmbH", "München", "", "a b"]),
        ({"trim": False, "newlines": "keep", "fix_mojibake": False, "empty_is_null": False},
         ["  Müller \n GmbH ", "MÃ¼nchen", "", "a\tb"]),
    ],
)
def test_each_string_step_can_be_turned_off_per_field(opts: dict[str, Any],
                                                      want: list[Any]) -> None:
    assert _text(RAW, **opts)[0] == want


def test_trim_off_keeps_trailing_spaces_of_a_key() -> None:
    table = pa.table({"line_no": ["A1 ", "A1"], "X": [1, 2]})
    out = normalize(table, entity({"line_no": {"trim": False}})).table
    assert out.column("line_no").to_pylist() == ["A1 ", "A1"]


def test_blobs_are_hex_by_default_and_text_on_request() -> None:
    payload = json.dumps({"qty": 2, "note": "größer"}).encode()
    hexed, _ = _text([payload, None], pa.binary(), type="BLOB")
    assert hexed == [payload.hex(), None]
    text, rejects = _text([payload, b"\xff\xfe", None], pa.binary(), type="BLOB", binary="text")
    assert text[0] == payload.decode() and json.loads(text[0])["note"] == "größer"
    assert len(text) == 2  # the non-UTF-8 value is a failed record, not a guess
    assert rejects.num_rows == 1 and rejects.column("stage")[0].as_py() == "type_coercion"


def _one(values: list[Any], **opts: Any) -> tuple[list[Any], list[str]]:
    table = pa.table({"line_no": list(range(len(values))), "V": values})
    result = normalize(table, entity({"V": opts}))
    messages = result.rejects.column("message").to_pylist()
    return result.table.column("V").to_pylist(), messages


def test_number_precision_is_enforced_for_text_and_physical_integers() -> None:
    kept, why = _one(["9999999999", "12345678901", "-12345678901", " 42 "], type="NUMBER(10)")
    assert kept == [9_999_999_999, 42]
    assert len(why) == 2 and all("NUMBER(10)" in m for m in why)
    kept, why = _one([9_999_999_999, 12_345_678_901], type="NUMBER(10)")
    assert kept == [9_999_999_999] and "more than 10 digits" in why[0]


def test_epochs_outside_1900_to_9999_are_rejected_not_stored() -> None:
    ms = "1700000000123"  # milliseconds, read under epoch_unit: s -> the year ~55841
    kept, why = _one(["1700000000", ms, "-3000000000"], type="TIMESTAMP", epoch_unit="s")
    assert kept == [datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)]
    assert len(why) == 2 and all("not a plausible epoch" in m for m in why)
    assert ms in why[0]


def test_fractional_seconds_of_up_to_nine_digits_in_date_formats() -> None:
    fmt = "%d-%b-%Y %H.%M.%S.%f"  # Oracle TIMESTAMP(9) as exported
    kept, why = _one(["01-APR-2021 08.20.52.778767919", "01-apr-2021 08.20.52.5",
                      "31-FEB-2021 08.20.52.1"], type="TIMESTAMP", date_formats=[fmt])
    assert [(v.second, v.microsecond) for v in kept] == [(52, 778767), (52, 500000)]
    assert len(why) == 1 and "31-FEB-2021" in why[0]


def test_row_ids_survive_the_switches() -> None:
    table = pa.table({"line_no": [1, 2], "TXT": ["a\n", "b"]})
    out = normalize(table, entity({"TXT": {"newlines": "keep", "trim": False}})).table
    assert out.column(ROW_ID).to_pylist() == [0, 1]
