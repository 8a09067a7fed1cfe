"""Layer 5: declarative field mapping (`config.FieldMapping` steps, applied in order).

No ``eval``: each op is a fixed, vectorized transformation. `ROW_ID` survives every step
(renaming to, dropping or overwriting it is refused).

- ``rename`` field -> to; ``drop`` field;
- ``cast`` field to ``int64``, ``float64``, ``string``, ``bool``, ``date``, ``timestamp`` or
  ``decimal(p,s)``; a value that does not cast is a reject with code ``invalid_cast``.
  ``timestamp`` means ``timestamp('us', 'UTC')``; text without an offset is read as UTC;
- ``default``: fill nulls with ``value``; ``constant``: set (or create) field to ``value``;
- ``value_map``: replace values by the text of the value (``mapping`` keys are text; a number
  1 matches ``"1"``, a bool matches ``"true"``); unmapped values stay as they are. The column
  keeps its type when every mapped value fits it, else it becomes text;
- ``upper`` / ``lower``; ``concat`` ``fields`` with ``separator`` into ``field`` (a null input
  counts as empty text); ``substring`` of ``field`` from ``start`` (0-based) for ``length``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.batch import StageResult
from syncflow_core.config import EntityConfig, FieldMapping
from syncflow_core.errors import ConfigError
from syncflow_core.normalize.rejecting import RejectCollector, ensure_row_ids
from syncflow_core.normalize.safe_cast import BoolMask, as_array, bool_mask, scatter, try_cast
from syncflow_core.rejects import ROW_ID

__all__ = ["STAGE", "apply_mappings", "cast_target_type"]

STAGE = "field_mapping"
CODE = "invalid_cast"

_DECIMAL = re.compile(r"^decimal(?:128)?\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_NAMED: dict[str, pa.DataType] = {
    "int64": pa.int64(), "int": pa.int64(), "integer": pa.int64(),
    "float64": pa.float64(), "float": pa.float64(), "double": pa.float64(),
    "string": pa.string(), "str": pa.string(), "text": pa.string(),
    "bool": pa.bool_(), "boolean": pa.bool_(),
    "date": pa.date32(), "date32": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def cast_target_type(name: str) -> pa.DataType:
    """The Arrow type a ``cast`` step names; `ConfigError` for an unknown name."""
    key = name.strip().lower()
    if key in _NAMED:
        return _NAMED[key]
    m = _DECIMAL.match(key)
    if m:
        p, s = int(m.group(1)), int(m.group(2))
        if 1 <= p <= 38 and s <= p:
            return pa.decimal128(p, s)
    raise ConfigError(
        f"field_mappings: cast to {name!r}: unknown type (use int64, float64, string, bool, "
        "date, timestamp or decimal(p,s) with p <= 38)"
    )


def _text(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_timestamp(arr.type) and arr.type.tz is not None:
        return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S.%fZ") if len(arr) else \
            pa.array([], pa.string())
    return arr.cast(pa.string())


def _text_to_utc(src: pa.Array) -> tuple[pa.Array, BoolMask]:
    # Text without an offset is read as UTC; text with one (Z, +02:00) is converted.
    naive, failed = try_cast(src, pa.timestamp("us"))
    out = naive.cast(pa.timestamp("us", tz="UTC"))
    if failed.any():
        idx = np.flatnonzero(failed)
        aware, still = try_cast(src.take(pa.array(idx)), pa.timestamp("us", tz="UTC"))
        fixed = failed.copy()
        fixed[idx[still]] = False
        out = scatter(out, fixed, aware.filter(pa.array(~still)))
        failed = np.zeros_like(failed)
        failed[idx[still]] = True
    return out, failed


def _scalar_for(value: Any, t: pa.DataType | None) -> pa.Scalar:
    if t is None:
        return pa.scalar(value)
    try:
        return pa.scalar(value).cast(t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ConfigError(f"field_mappings: value {value!r} does not fit type {t}") from exc


def _column(table: pa.Table, name: str, step: FieldMapping) -> pa.Array:
    if name not in table.column_names:
        raise ConfigError(f"field_mappings: {step.op} {name!r}: no such column "
                          f"(have {', '.join(c for c in table.column_names if c != ROW_ID)})")
    return as_array(table.column(name))


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), name, values)
    # New columns go before the hidden row id so user columns stay together.
    pos = table.num_columns - 1 if table.column_names[-1] == ROW_ID else table.num_columns
    return table.add_column(pos, name, values)


def _value_map(arr: pa.Array, mapping: Mapping[str, Any]) -> pa.Array:
    text = _text(arr)
    idx = pc.index_in(text, value_set=pa.array(list(mapping), pa.string()))
    hit = pa.array(bool_mask(pc.is_valid(idx)))
    new = pa.array(list(mapping.values()))
    try:
        new = new.cast(arr.type)
        base = arr
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        # Mapped values that do not fit the column's type make it a text column.
        new, base = _text(new), text
    return pc.if_else(hit, new.take(pc.fill_null(idx, 0)), base)


def _check_name(step: FieldMapping, names: Sequence[str]) -> None:
    for n in names:
        if n == ROW_ID:
            raise ConfigError(f"field_mappings: {step.op} may not touch the hidden row id")


def apply_mappings(
    table: pa.Table,
    entity: EntityConfig,
    mappings: Sequence[FieldMapping] | None = None,
) -> StageResult:
    """Layer 5: apply ``entity.field_mappings`` (or ``mappings``) in order.

    Raises `ConfigError` for a step naming a missing column or an unknown cast type; a value
    that fails a ``cast`` is a reject (``invalid_cast``) naming column and value.
    """
    table = ensure_row_ids(table)
    rc = RejectCollector(table, STAGE)
    steps = entity.field_mappings if mappings is None else mappings
    for step in steps:
        _check_name(step, [step.field, step.to or ""])
        op = step.op
        if op == "rename":
            assert step.to is not None  # validated by FieldMapping
            arr = _column(table, step.field, step)
            if step.to in table.column_names and step.to != step.field:
                raise ConfigError(f"field_mappings: rename {step.field!r} -> {step.to!r}: "
                                  f"{step.to!r} already exists")
            table = table.rename_columns([step.to if c == step.field else c
                                          for c in table.column_names])
        elif op == "drop":
            _column(table, step.field, step)
            table = table.drop_columns([step.field])
        elif op == "cast":
            assert step.to is not None
            arr = _column(table, step.field, step)
            to = cast_target_type(step.to)
            src = _text(arr) if pa.types.is_string(to) else arr
            if pa.types.is_timestamp(to) and pa.types.is_timestamp(arr.type) \
                    and arr.type.tz is None:
                src = arr.cast(pa.timestamp("us"))
            out, failed = try_cast(src, to)
            if pa.types.is_timestamp(to) and pa.types.is_string(src.type):
                out, failed = _text_to_utc(src)
            rc.add(failed, CODE, step.field, arr, f"cannot cast to {step.to}")
            table = _set(table, step.field, out)
        elif op == "default":
            arr = _column(table, step.field, step)
            table = _set(table, step.field, pc.fill_null(arr, _scalar_for(step.value, arr.type)))
        elif op == "constant":
            t = as_array(table.column(step.field)).type if step.field in table.column_names \
                else None
            if t is not None and pa.types.is_null(t):
                t = None
            s = _scalar_for(step.value, t)
            table = _set(table, step.field, pa.repeat(s, table.num_rows))
        elif op == "value_map":
            assert step.mapping is not None
            arr = _column(table, step.field, step)
            table = _set(table, step.field, _value_map(arr, step.mapping))
        elif op in ("upper", "lower"):
            arr = _text(_column(table, step.field, step))
            fn = pc.utf8_upper if op == "upper" else pc.utf8_lower
            table = _set(table, step.field, fn(arr))
        elif op == "concat":
            parts = [pc.fill_null(_text(_column(table, f, step)), "") for f in step.fields]
            table = _set(table, step.field, pc.binary_join_element_wise(*parts, step.separator))
        elif op == "substring":
            arr = _text(_column(table, step.field, step))
            stop = None if step.length is None else step.start + step.length
            table = _set(table, step.field,
                         pc.utf8_slice_codeunits(arr, start=step.start, stop=stop))
    return rc.result(table)
