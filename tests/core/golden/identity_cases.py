"""The golden identity inputs (one column per encoded type) and how JSON rows become Arrow."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.config import EntityConfig

ENTITY = EntityConfig(
    name="order_lines",
    source={"table": "order_lines"},
    business_key_fields=("order_no", "line_no"),
    rowversion_field="rv",
)

# (column, type); JSON can't hold every value natively, so values are text where needed:
# decimals as strings, floats as repr() text, dates/times ISO, binary as hex.
SCHEMA: list[list[str]] = [
    ["order_no", "string"],
    ["line_no", "int32"],
    ["rv", "int64"],
    ["name", "string"],
    ["qty", "int64"],
    ["amount", "decimal128(12,4)"],
    ["tiny", "decimal128(20,10)"],
    ["ratio", "float64"],
    ["due", "date32"],
    ["shipped_at", "timestamp[us, UTC]"],
    ["local_at", "timestamp[ns, Europe/Berlin]"],
    ["cutoff", "time64[us]"],
    ["active", "bool"],
    ["blob", "binary"],
    ["note", "large_string"],
    ["nothing", "string"],
]

ROWS: list[dict[str, Any]] = [
    {"order_no": "SO-1001", "line_no": 1, "rv": 1, "name": "Widget", "qty": 5,
     "amount": "10.5000", "tiny": "0.0000000100", "ratio": "0.1", "due": "2024-01-31",
     "shipped_at": "2024-01-31T12:34:56.000007", "local_at": "2024-06-30T23:59:59.123456789",
     "cutoff": "17:30:00", "active": True, "blob": "00ff10", "note": "plain", "nothing": None},
    {"order_no": "SO-1001", "line_no": 2, "rv": 7, "name": "Müller Straße", "qty": -3,
     "amount": "-12.3400", "tiny": "0E-10", "ratio": "-0.0", "due": "1999-12-31",
     "shipped_at": "1970-01-01T00:00:00", "local_at": "2024-01-01T00:00:00",
     "cutoff": "00:00:00.000001", "active": False, "blob": "", "note": None, "nothing": None},
    {"order_no": "a|b", "line_no": 3, "rv": 2, "name": "sep|in|value", "qty": 0,
     "amount": "-0.0000", "tiny": "-1.5000000000", "ratio": "1e+20", "due": "2000-02-29",
     "shipped_at": None, "local_at": None, "cutoff": None, "active": None, "blob": None,
     "note": "x", "nothing": None},
    {"order_no": "a", "line_no": 3, "rv": 3, "name": "b|c", "qty": 9223372036854775807,
     "amount": "100.0000", "tiny": None, "ratio": "1e-07", "due": None,
     "shipped_at": "2038-01-19T03:14:07.999999", "local_at": None, "cutoff": None,
     "active": True, "blob": "deadbeef", "note": None, "nothing": None},
    {"order_no": "back\\slash", "line_no": 4, "rv": 4, "name": "ends with \\", "qty": 1,
     "amount": "0.0001", "tiny": None, "ratio": "nan", "due": None, "shipped_at": None,
     "local_at": None, "cutoff": None, "active": None, "blob": None, "note": None,
     "nothing": None},
    {"order_no": "back", "line_no": 4, "rv": 5, "name": "\\|", "qty": None, "amount": None,
     "tiny": None, "ratio": "inf", "due": None, "shipped_at": None, "local_at": None,
     "cutoff": None, "active": None, "blob": None, "note": None, "nothing": None},
    {"order_no": "eq=sign", "line_no": 5, "rv": 6, "name": "k=v", "qty": None,
     "amount": None, "tiny": None, "ratio": "-inf", "due": None, "shipped_at": None,
     "local_at": None, "cutoff": None, "active": None, "blob": None, "note": None,
     "nothing": None},
    {"order_no": "Café", "line_no": 6, "rv": 8, "name": "Cafe\u0301 (NFD stays NFD)",
     "qty": 42, "amount": "42.0000", "tiny": None, "ratio": "1.0", "due": "2024-02-29",
     "shipped_at": None, "local_at": None, "cutoff": None, "active": None, "blob": None,
     "note": None, "nothing": None},
    {"order_no": "日本語-注文", "line_no": 7, "rv": None, "name": "emoji 🚚 and tab\tinside",
     "qty": None, "amount": None, "tiny": None, "ratio": "123456789.125", "due": None,
     "shipped_at": None, "local_at": None, "cutoff": None, "active": None, "blob": None,
     "note": None, "nothing": None},
    {"order_no": "", "line_no": 0, "rv": 10, "name": "", "qty": None, "amount": None,
     "tiny": None, "ratio": None, "due": None, "shipped_at": None, "local_at": None,
     "cutoff": None, "active": None, "blob": None, "note": None, "nothing": None},
    {"order_no": "ALL-NULL-DATA", "line_no": -1, "rv": 11, "name": None, "qty": None,
     "amount": None, "tiny": None, "ratio": None, "due": None, "shipped_at": None,
     "local_at": None, "cutoff": None, "active": None, "blob": None, "note": None,
     "nothing": None},
    {"order_no": "SO-1002", "line_no": 1, "rv": 12, "name": "Widget", "qty": 5,
     "amount": "10.5000", "tiny": None, "ratio": "0.30000000000000004", "due": "2024-01-31",
     "shipped_at": "2024-01-31T12:34:56", "local_at": None, "cutoff": None, "active": False,
     "blob": "00", "note": None, "nothing": None},
    {"order_no": "SO-1002", "line_no": 2147483647, "rv": -5, "name": " padded  ", "qty": -1,
     "amount": "-0.5000", "tiny": "12345678.1234567890", "ratio": "5e-324", "due": None,
     "shipped_at": None, "local_at": None, "cutoff": None, "active": None, "blob": None,
     "note": None, "nothing": None},
    {"order_no": "SO-1002", "line_no": -2147483648, "rv": 13, "name": "line\nbreak",
     "qty": None, "amount": "99999999.9999", "tiny": None, "ratio": "1.7976931348623157e+308",
     "due": None, "shipped_at": None, "local_at": None, "cutoff": None, "active": None,
     "blob": None, "note": None, "nothing": None},
    {"order_no": "SO-1003", "line_no": 1, "rv": 14, "name": "same data as SO-1002/1",
     "qty": None, "amount": None, "tiny": None, "ratio": None, "due": None,
     "shipped_at": None, "local_at": None, "cutoff": None, "active": None, "blob": None,
     "note": None, "nothing": None},
    {"order_no": "SO-1004", "line_no": 1, "rv": 15, "name": "Widget", "qty": 5,
     "amount": "10.5000", "tiny": None, "ratio": "0.30000000000000004", "due": "2024-01-31",
     "shipped_at": "2024-01-31T12:34:56", "local_at": None, "cutoff": None, "active": False,
     "blob": "00", "note": None, "nothing": None},
    {"order_no": None, "line_no": 1, "rv": 16, "name": "null key: rejected", "qty": None,
     "amount": None, "tiny": None, "ratio": None, "due": None, "shipped_at": None,
     "local_at": None, "cutoff": None, "active": None, "blob": None, "note": None,
     "nothing": None},
    {"order_no": None, "line_no": None, "rv": 17, "name": "both key fields null",
     "qty": None, "amount": None, "tiny": None, "ratio": None, "due": None,
     "shipped_at": None, "local_at": None, "cutoff": None, "active": None, "blob": None,
     "note": None, "nothing": None},
    {"order_no": "SO-1005", "line_no": 1, "rv": 18, "name": "Ã¼ mojibake kept as is",
     "qty": 1000000, "amount": "1000000.0000", "tiny": "0.0000001000", "ratio": "2.5e-05",
     "due": "0001-01-01", "shipped_at": "2024-12-31T23:59:59.999999", "local_at": None,
     "cutoff": "23:59:59.999999", "active": True, "blob": "7c5c", "note": "large string",
     "nothing": None},
    {"order_no": "SO-1006", "line_no": 1, "rv": 19, "name": "x", "qty": None,
     "amount": None, "tiny": None, "ratio": None, "due": None, "shipped_at": None,
     "local_at": "2024-03-31T03:30:00", "cutoff": None, "active": None, "blob": None,
     "note": None, "nothing": None},
]


def arrow_type(text: str) -> pa.DataType:
    """The Arrow type named in SCHEMA."""
    simple = {
        "string": pa.string(), "large_string": pa.large_string(), "int32": pa.int32(),
        "int64": pa.int64(), "float64": pa.float64(), "date32": pa.date32(),
        "time64[us]": pa.time64("us"), "bool": pa.bool_(), "binary": pa.binary(),
        "timestamp[us, UTC]": pa.timestamp("us", "UTC"),
        "timestamp[ns, Europe/Berlin]": pa.timestamp("ns", "Europe/Berlin"),
    }
    if text in simple:
        return simple[text]
    if text.startswith("decimal128("):
        p, s = text.removeprefix("decimal128(").rstrip(")").split(",")
        return pa.decimal128(int(p), int(s))
    raise ValueError(text)


def _value(v: Any, t: pa.DataType) -> Any:
    if v is None:
        return None
    if pa.types.is_decimal(t):
        return Decimal(v)
    if pa.types.is_floating(t):
        return float(v)
    if pa.types.is_date(t):
        return date.fromisoformat(v)
    if pa.types.is_time(t):
        return time.fromisoformat(v)
    if pa.types.is_binary(t):
        return bytes.fromhex(v)
    return v


def _timestamps(values: list[Any], t: pa.TimestampType) -> pa.Array:
    # ISO text (naive = wall clock in the column's zone) -> Arrow, via Arrow's own parser so
    # nanoseconds survive.
    naive = pa.array(values, pa.string()).cast(pa.timestamp(t.unit))
    if t.tz is None or t.tz == "UTC":
        return naive.cast(t)
    return pc.assume_timezone(naive, t.tz)


def build_table(rows: list[dict[str, Any]], schema: list[list[str]] = SCHEMA) -> pa.Table:
    """An Arrow table of the JSON rows, typed by ``schema``."""
    cols = {}
    for name, type_text in schema:
        t = arrow_type(type_text)
        values = [r[name] for r in rows]
        if pa.types.is_timestamp(t):
            cols[name] = _timestamps(values, t)
        else:
            cols[name] = pa.array([_value(v, t) for v in values], t)
    return pa.table(cols)
