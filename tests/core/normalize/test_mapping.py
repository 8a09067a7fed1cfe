"""Layer 5: declarative field mapping."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from syncflow_core.errors import ConfigError
from syncflow_core.normalize import apply_mappings
from syncflow_core.rejects import ROW_ID
from tests.core.normalize.entities import entity


def _map(table: pa.Table, *steps: dict[str, Any]) -> tuple[pa.Table, list[dict[str, Any]]]:
    r = apply_mappings(table, entity(mappings=list(steps)))
    assert ROW_ID in r.table.column_names
    return r.table, r.rejects.to_pylist()


T = pa.table({"code": ["a1", "b2", None], "qty": [1, 2, None], "status": ["O", "C", "X"]})


def test_rename_drop_upper_lower() -> None:
    out, _ = _map(T, {"op": "rename", "field": "code", "to": "item"},
                  {"op": "upper", "field": "item"}, {"op": "drop", "field": "status"},
                  {"op": "lower", "field": "item"}, {"op": "upper", "field": "item"})
    assert out.column_names == ["item", "qty", ROW_ID]
    assert out.column("item").to_pylist() == ["A1", "B2", None]


@pytest.mark.parametrize(
    ("to", "values", "expected", "bad"),
    [
        ("int64", ["1", "x", None], [1, None], [1]),
        ("float64", ["1.5", "2", "y"], [1.5, 2.0], [2]),
        ("decimal(6,2)", ["1.5", "123456", "2"], [Decimal("1.50"), Decimal("2.00")], [1]),
        ("bool", ["true", "false", "maybe"], [True, False], [2]),
        ("date", ["2024-01-31", "2024-02-30", None], [dt.date(2024, 1, 31), None], [1]),
        ("timestamp", ["2024-01-31 10:00:00", "nope", None],
         [dt.datetime(2024, 1, 31, 10, tzinfo=dt.UTC), None], [1]),
        ("string", ["a", "b", None], ["a", "b", None], []),
    ],
)
def test_cast_failures_are_rejects(to: str, values: list[Any], expected: list[Any],
                                   bad: list[int]) -> None:
    out, rej = _map(pa.table({"v": values}), {"op": "cast", "field": "v", "to": to})
    assert out.column("v").to_pylist() == expected
    assert [r[ROW_ID] for r in rej] == bad
    for r in rej:
        assert r["stage"] == "field_mapping" and r["error_code"] == "invalid_cast"
        assert str(r["message"]).startswith("v: cannot cast to")


def test_cast_numbers_to_string() -> None:
    out, _ = _map(T, {"op": "cast", "field": "qty", "to": "string"})
    assert out.column("qty").to_pylist() == ["1", "2", None]


def test_unknown_cast_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown type"):
        _map(T, {"op": "cast", "field": "qty", "to": "uint7"})


def test_default_and_constant() -> None:
    out, _ = _map(T, {"op": "default", "field": "qty", "value": 0},
                  {"op": "constant", "field": "source", "value": "ERP"},
                  {"op": "constant", "field": "status", "value": "Z"})
    assert out.column("qty").to_pylist() == [1, 2, 0]
    assert out.column("source").to_pylist() == ["ERP"] * 3
    assert out.column("status").to_pylist() == ["Z"] * 3
    assert out.column_names[-1] == ROW_ID


def test_value_map_by_text_keeps_unmapped_values() -> None:
    out, _ = _map(T, {"op": "value_map", "field": "status",
                      "mapping": {"O": "open", "C": "closed"}},
                  {"op": "value_map", "field": "qty", "mapping": {"1": 10}})
    assert out.column("status").to_pylist() == ["open", "closed", "X"]
    assert out.column("qty").to_pylist() == [10, 2, None]


def test_value_map_to_another_type_makes_text() -> None:
    out, _ = _map(T, {"op": "value_map", "field": "qty", "mapping": {"1": "one"}})
    assert out.column("qty").to_pylist() == ["one", "2", None]


def test_concat_and_substring() -> None:
    out, _ = _map(T, {"op": "concat", "field": "key", "fields": ["code", "status"],
                      "separator": "-"},
                  {"op": "substring", "field": "key", "start": 1, "length": 3})
    assert out.column("key").to_pylist() == ["1-O", "2-C", "X"]


def test_missing_column_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no such column"):
        _map(T, {"op": "upper", "field": "nope"})


def test_row_id_cannot_be_touched_and_survives_every_step() -> None:
    with pytest.raises(ConfigError):
        _map(T, {"op": "rename", "field": "code", "to": "__sf_row"})
    with pytest.raises(ConfigError):
        _map(T, {"op": "drop", "field": "__sf_row"})
    out, _ = _map(T, {"op": "drop", "field": "code"}, {"op": "drop", "field": "qty"})
    assert out.column(ROW_ID).to_pylist() == [0, 1, 2]
