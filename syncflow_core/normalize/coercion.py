"""Layer 1: coerce columns to the Arrow type their declared source type implies.

Physical values (ints, floats, decimals, timestamps, binary) are cast now, losslessly: a value
that does not fit (too many digits for NUMBER(5,2), a fraction in an integer column, a float
that is not the nearest double of any NUMBER(p,s) value) is a reject naming column and value.
Text in a numeric or datetime column is left as text for layers 3 and 4 (after layer 2 cleans
it). Naive timestamps stay naive here; layer 4 localizes them from the field's time zone.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.batch import StageResult
from syncflow_core.config import EntityConfig
from syncflow_core.normalize.bytescan import to_hex
from syncflow_core.normalize.plan import FieldPlan, plan_fields
from syncflow_core.normalize.rejecting import RejectCollector, ensure_row_ids
from syncflow_core.normalize.safe_cast import BoolMask, as_array, bool_mask, try_cast

__all__ = ["STAGE", "coerce_types", "digits_exceed"]

STAGE = "type_coercion"

_TRUE = ["true", "t", "yes", "y", "1", "on"]
_FALSE = ["false", "f", "no", "n", "0", "off"]


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t)
                or pa.types.is_string_view(t))


def _is_binary(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t) or pa.types.is_binary_view(t))


def _to_text(arr: pa.Array, col: str, rc: RejectCollector) -> pa.Array:
    if _is_text(arr.type):
        return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())
    if pa.types.is_dictionary(arr.type):
        return _to_text(arr.dictionary_decode(), col, rc)
    out, failed = try_cast(arr, pa.string())  # binary that is not UTF-8 fails here
    rc.add(failed, "invalid_value", col, arr, "not valid text")
    return out


def _bool(arr: pa.Array, col: str, rc: RejectCollector) -> pa.Array:
    t = arr.type
    if pa.types.is_boolean(t):
        return arr
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return pc.not_equal(arr, pa.scalar(0).cast(t))
    if pa.types.is_null(t):
        return arr.cast(pa.bool_())
    text = pc.utf8_lower(pc.utf8_trim_whitespace(_to_text(arr, col, rc)))
    is_true = pc.is_in(text, value_set=pa.array(_TRUE))
    is_false = pc.is_in(text, value_set=pa.array(_FALSE))
    empty = pc.equal(text, "")
    failed = bool_mask(pc.and_not(pc.is_valid(text), pc.or_(pc.or_(is_true, is_false), empty)))
    rc.add(failed, "invalid_boolean", col, arr, "not a boolean (true/false/yes/no/1/0)")
    return pc.if_else(pc.or_(is_true, is_false), is_true, pa.scalar(None, pa.bool_()))


def _int(arr: pa.Array, plan: FieldPlan, col: str, rc: RejectCollector) -> pa.Array:
    t = arr.type
    if pa.types.is_boolean(t) or pa.types.is_null(t):
        return arr.cast(pa.int64())
    # Arrow's safe cast flags fractions, NaN and overflow; try_cast isolates them per value.
    out, failed = try_cast(arr, pa.int64())
    rc.add(failed, "value_out_of_range", col, arr, "does not fit an integer (int64)")
    too_long = digits_exceed(out, plan.precision)
    if too_long is not None:
        rc.add(too_long, "value_out_of_range", col, arr,
               f"has more than {plan.precision} digits ({plan.declared})")
        out = pc.if_else(pa.array(~too_long), out, pa.scalar(None, pa.int64()))
    return out


def digits_exceed(values: pa.Array, precision: int | None) -> BoolMask | None:
    """Rows of an int64 array whose value has more than ``precision`` digits (None: no limit
    or no such row)."""
    if precision is None or precision >= 19 or not len(values):
        return None
    limit = 10**precision
    over = bool_mask(pc.or_(pc.greater_equal(values, limit), pc.less_equal(values, -limit)))
    return over if over.any() else None


def _decimal(arr: pa.Array, plan: FieldPlan, col: str, rc: RejectCollector) -> pa.Array:
    target = plan.arrow_type
    t = arr.type
    why = f"does not fit {plan.declared or target}"
    if pa.types.is_null(t):
        return arr.cast(target)
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        # Arrow requires room for any int64 before it checks values: widen, then narrow.
        scale = target.scale
        wide = arr.cast(pa.int64()).cast(pa.decimal128(min(38, 19 + scale), scale))
        out, failed = try_cast(wide, target)
        rc.add(failed, "value_out_of_range", col, arr, why)
        return out
    if pa.types.is_floating(t):
        f = arr.cast(pa.float64())
        finite = pc.is_finite(f)
        candidate = pc.if_else(finite, f, pa.scalar(None, pa.float64()))
        # Via the shortest round-trip text: a REAL holding 0.35 means the decimal 0.35 (the
        # double's binary expansion is a storage artifact); more digits than the scale is a
        # reject, never a rounding. Arrow's direct float->decimal cast truncates instead.
        out, failed = try_cast(candidate.cast(pa.string()), target)
        failed = failed | (bool_mask(pc.invert(finite)) & bool_mask(pc.is_valid(f)))
        rc.add(failed, "value_out_of_range", col, arr, why)
        return out
    if pa.types.is_decimal(t):
        out, failed = try_cast(arr, target)
        rc.add(failed, "value_out_of_range", col, arr, why)
        return out
    return arr  # text: layer 3


def _float(arr: pa.Array) -> pa.Array:
    if pa.types.is_integer(arr.type) or pa.types.is_decimal(arr.type) \
            or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type) \
            or pa.types.is_null(arr.type):
        # FLOAT is approximate by declaration: rounding a huge int to a double is expected.
        return arr.cast(pa.float64(), safe=False)
    return arr


def _temporal(arr: pa.Array, plan: FieldPlan, col: str, rc: RejectCollector) -> pa.Array:
    t = arr.type
    if pa.types.is_null(t):
        return arr.cast(plan.arrow_type)
    if plan.kind == "date":
        if pa.types.is_date(t):
            return arr.cast(pa.date32())
        if pa.types.is_timestamp(t):
            local = pc.local_timestamp(arr) if t.tz else arr
            day = local.cast(pa.date32())
            failed = bool_mask(pc.not_equal(day.cast(local.type), local))
            rc.add(failed, "value_out_of_range", col, arr, "has a time of day but is a date")
            return pc.if_else(pa.array(~failed), day, pa.scalar(None, pa.date32()))
    else:
        if pa.types.is_timestamp(t):
            to = pa.timestamp("us", tz="UTC") if t.tz else pa.timestamp("us")
            out, failed = try_cast(arr, to)
            rc.add(failed, "value_out_of_range", col, arr, "has sub-microsecond precision")
            return out
        if pa.types.is_date(t):
            return arr.cast(pa.timestamp("us"))  # midnight, local to the field's zone
    if _is_text(t):
        return arr if pa.types.is_string(t) else arr.cast(pa.string())
    # Numbers as dates (YYYYMMDD, epoch): let layer 4 read their digits.
    return _to_text(arr, col, rc)


def coerce_types(
    table: pa.Table,
    entity: EntityConfig,
    source_types: Mapping[str, str] | None = None,
    plans: Mapping[str, FieldPlan] | None = None,
) -> StageResult:
    """Layer 1: cast each column to the type its declared (or inferred) kind implies.

    Text in numeric/datetime columns stays text for layers 3/4; CHAR padding is stripped;
    binary becomes lowercase hex (``binary: text``: decoded as UTF-8, else a reject). Values
    that do not fit are rejects (stage ``type_coercion``).
    """
    table = ensure_row_ids(table)
    if plans is None:
        plans = plan_fields(table.schema, entity, source_types)
    rc = RejectCollector(table, STAGE)
    for col, plan in plans.items():
        if col not in table.column_names:
            continue
        arr = as_array(table.column(col))
        t = arr.type
        if pa.types.is_dictionary(t):
            arr = arr.dictionary_decode()
            t = arr.type
        kind = plan.kind
        if kind in ("string", "char"):
            out = _to_text(arr, col, rc)
            if kind == "char":
                out = pc.utf8_rtrim(out, " ")
        elif kind == "binary" and plan.options.binary == "text":
            out = _to_text(arr, col, rc)  # UTF-8 payloads (JSON, XML) as text
        elif kind == "binary":
            out = to_hex(arr) if _is_binary(t) else pc.utf8_lower(_to_text(arr, col, rc))
        elif kind == "bool":
            out = _bool(arr, col, rc)
        elif _is_text(t):
            out = arr if pa.types.is_string(t) else arr.cast(pa.string())
        elif kind == "int":
            out = _int(arr, plan, col, rc)
        elif kind == "decimal":
            out = _decimal(arr, plan, col, rc)
        elif kind == "float":
            out = _float(arr)
        else:
            out = _temporal(arr, plan, col, rc)
        if out is not arr or out.type != table.schema.field(col).type:
            table = table.set_column(table.schema.get_field_index(col), col, out)
    return rc.result(table)

