"""Layer 3: parse numbers from text for int/decimal/float fields.

Accepted (``D`` = the field's decimal separator, ``G`` = grouping):

- grouping by the other separator, a space, NBSP (U+00A0), figure space (U+2007), thin space
  (U+2009), narrow NBSP (U+202F) or an apostrophe (ASCII or U+2019), in groups of three:
  ``10,000``, ``1.234,56``, ``1 234,56``, ``1'234.50``. Grouping that is not in threes
  (``1,5`` in a ``.``-field) is a reject, because it is usually a wrong decimal separator.
- a sign: leading ``+``/``-``, trailing ``-`` (``1234-``) or accounting parentheses
  (``(1,234.50)`` -> -1234.5);
- a currency symbol or code before or after the number: ``€ $ £ ¥ EUR USD GBP CHF JPY``;
- an exponent: ``1.5E3``;
- a percent sign: **``12.5%`` means 0.125** (the value is divided by 100, always). A
  percentage stored as 12.5 should be written without the sign.

A value that matches none of this, has a fraction for an int field, has more fractional digits
than a decimal field's scale, or overflows, is a reject with code ``invalid_number``; never NaN.

Speed: for int and decimal fields the common shape (optional sign, groups by the locale's own
grouping character, a decimal part, at most 18 digits at the field's scale) is read straight
from the UTF-8 bytes with numpy into the integer / unscaled decimal value. The other rows take
the text path: a strict regex recognizes the same shape, canonicalized with two literal
replaces; only what is left goes through the full ``extract_regex``. Casts are Arrow's safe
casts; the rare failures are isolated per value (`try_cast`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.batch import StageResult
from syncflow_core.compiled import compiled_module
from syncflow_core.config import EntityConfig
from syncflow_core.normalize.bytescan import RowBytes, delete_byte, row_bytes
from syncflow_core.normalize.coercion import digits_exceed
from syncflow_core.normalize.plan import FieldPlan, plan_fields
from syncflow_core.normalize.rejecting import RejectCollector, ensure_row_ids
from syncflow_core.normalize.safe_cast import BoolMask, as_array, bool_mask, scatter, try_cast

_numscan = compiled_module("_numscan")  # None: the numpy reference below

__all__ = ["STAGE", "parse_number_text", "parse_numbers"]

STAGE = "numbers"
CODE = "invalid_number"

_SPACES = " \u00a0\u2007\u2009\u202f'\u2019"
_CURRENCY = r"(?:[€$£¥]|(?i:EUR|USD|GBP|CHF|JPY))"


def _patterns(dec: str) -> tuple[str, str, str]:
    grp = "," if dec == "." else "."
    d, g = re.escape(dec), re.escape(grp)
    simple = rf"^[+-]?(?:\d{{1,3}}(?:{g}\d{{3}})+|\d+)(?:{d}\d+)?$"
    gclass = f"[{g}{_SPACES}]"
    full = (
        rf"^(?P<open>\()?\s*(?P<s1>[+-])?\s*{_CURRENCY}?\s*(?P<s2>[+-])?\s*"
        rf"(?P<int>\d{{1,3}}(?:{gclass}\d{{3}})+|\d*)(?:{d}(?P<frac>\d*))?"
        rf"(?:[eE](?P<exp>[+-]?\d{{1,4}}))?\s*(?P<pct>%)?\s*{_CURRENCY}?\s*(?P<pct2>%)?\s*"
        rf"(?P<trail>-)?\s*(?P<close>\))?$"
    )
    return simple, full, gclass


def _canonical_full(values: pa.Array, dec: str) -> pa.Array:
    """Canonical ``[-]digits[.digits][e±n]`` text for messy values; null where invalid."""
    _, full, gclass = _patterns(dec)
    parts = pc.extract_regex(values, full)
    f = {name: pc.struct_field(parts, name) for name in
         ("open", "s1", "s2", "int", "frac", "exp", "pct", "pct2", "trail", "close")}
    ok = pc.is_valid(parts)
    has_open, has_close = pc.not_equal(f["open"], ""), pc.not_equal(f["close"], "")
    ok = pc.and_(ok, pc.equal(has_open, has_close))
    ok = pc.and_(ok, pc.or_(pc.not_equal(f["int"], ""), pc.not_equal(f["frac"], "")))
    minus = pc.add(
        pc.add(pc.equal(f["s1"], "-").cast(pa.int8()), pc.equal(f["s2"], "-").cast(pa.int8())),
        pc.add(pc.equal(f["trail"], "-").cast(pa.int8()), has_open.cast(pa.int8())),
    )
    signs = pc.add(pc.add(pc.not_equal(f["s1"], "").cast(pa.int8()),
                          pc.not_equal(f["s2"], "").cast(pa.int8())),
                   pc.add(pc.not_equal(f["trail"], "").cast(pa.int8()),
                          has_open.cast(pa.int8())))
    ok = pc.and_(ok, pc.less_equal(signs, 1))  # one sign marker at most
    pct = pc.or_(pc.not_equal(f["pct"], ""), pc.not_equal(f["pct2"], ""))
    ok = pc.and_(ok, pc.invert(pc.and_(pc.not_equal(f["pct"], ""), pc.not_equal(f["pct2"], ""))))
    digits = pc.replace_substring_regex(f["int"], gclass, "")
    digits = pc.if_else(pc.equal(digits, ""), "0", digits)
    frac = pc.if_else(pc.equal(f["frac"], ""), "0", f["frac"])
    # int64 cast refuses a leading '+' ('1.5E+02'); drop it.
    exp_text = pc.replace_substring(f["exp"], "+", "")
    exp = pc.if_else(pc.equal(exp_text, ""), "0", exp_text).cast(pa.int64())
    exp = pc.subtract(exp, pc.multiply(pct.cast(pa.int64()), 2))
    sign = pc.if_else(pc.greater(minus, 0), "-", "")
    body = pc.binary_join_element_wise(sign, digits, ".", frac, "")
    with_exp = pc.binary_join_element_wise(body, "e", exp.cast(pa.string()), "")
    canon = pc.if_else(pc.equal(exp, 0), body, with_exp)
    return pc.if_else(ok, canon, pa.scalar(None, pa.string()))


def parse_number_text(values: pa.Array, dec: str) -> pa.Array:
    """Canonical number text (``-1234.5``, ``1.5e3``) for each value; null where invalid."""
    simple, _, _ = _patterns(dec)
    grp = "," if dec == "." else "."
    is_simple = bool_mask(pc.match_substring_regex(values, simple))
    canon = values
    if is_simple.any():
        canon = delete_byte(values, grp, (",", ".") if dec == "," else None)
    rest = ~is_simple & bool_mask(pc.is_valid(values))
    out = pc.if_else(pa.array(is_simple), canon, pa.scalar(None, pa.string()))
    if rest.any():
        idx = pa.array(np.flatnonzero(rest))
        out = scatter(out, rest, _canonical_full(values.take(idx), dec))
    return out


_POW10 = 10 ** np.arange(19, dtype=np.int64)
_MAX_DIGITS = 18  # any 18-digit value fits int64
_MAX_WIDTH = 24  # longer text (rare) takes the text path


def _simple_values(values: pa.Array, dec: str, scale: int, precision: int | None
                   ) -> tuple[npt.NDArray[np.int64], BoolMask]:
    """(value * 10**scale as int64, ok) of the rows in the strict common shape.

    ``ok`` marks rows that are exactly ``^[+-]?(?:\\d{1,3}(?:G\\d{3})+|\\d+)(?:D\\d+)?$``
    (G/D the grouping/decimal separators), with at most ``scale`` fractional digits, at most
    18 digits in all at that scale and (with ``precision``) a value below 10**precision.
    Where ``ok`` is false the value means nothing. Read in C (`syncflow_core._numscan`, one
    pass per row) where it was built, else with numpy (`_simple_values_numpy`, the reference).
    """
    rb, candidate = _candidates(values)
    if _numscan is None:
        return _simple_values_numpy(rb, candidate, dec, scale, precision)
    grp = "," if dec == "." else "."
    raw_values, raw_ok = _numscan.simple_decimals(
        rb.data, rb.offsets, candidate.view(np.uint8), ord(dec), ord(grp), scale,
        -1 if precision is None else precision,
    )
    return np.frombuffer(raw_values, np.int64), np.frombuffer(raw_ok, np.bool_)


def _candidates(values: pa.Array) -> tuple[RowBytes, BoolMask]:
    """The rows' bytes and which rows may have the common shape (valid, 1-24 bytes)."""
    rb = row_bytes(values)
    lengths = rb.lengths
    # A null slot may still hold bytes (kernels are free to leave them): mask by validity.
    candidate = (lengths > 0) & (lengths <= _MAX_WIDTH)
    if values.null_count:
        candidate &= bool_mask(pc.is_valid(values))
    return rb, candidate


def _simple_values_numpy(rb: RowBytes, candidate: BoolMask, dec: str, scale: int,
                         precision: int | None) -> tuple[npt.NDArray[np.int64], BoolMask]:
    """`_simple_values` with numpy: a (width, rows) block of the candidates' bytes."""
    n = rb.n
    out = np.zeros(n, np.int64)
    ok = np.zeros(n, np.bool_)
    lengths = rb.lengths
    pos = np.flatnonzero(candidate)
    if not len(pos):
        return out, ok
    length = lengths[pos].astype(np.int8)
    width = int(length.max())
    # A (width, rows) block: column j of every row is one contiguous vector, so the per-row
    # sums below run along axis 0 (elementwise adds, fast), and the arrays stay uint8/int8.
    starts = rb.offsets[pos]
    padded = np.concatenate([rb.data, np.zeros(width, np.uint8)])
    col = np.arange(width, dtype=np.int8)[:, None]
    block = np.empty((width, len(pos)), np.uint8)
    for j in range(width):
        block[j] = padded[starts + j]
    block *= col < length  # bytes past a row's end become 0: neither digit nor separator
    digit = block - np.uint8(48)  # wraps below '0': one compare checks for a digit
    is_digit = digit <= 9
    is_dec = block == ord(dec)
    is_grp = block == ord("," if dec == "." else ".")
    first = block[0]
    signed = ((first == ord("+")) | (first == ord("-"))).astype(np.int8)
    n_dec = is_dec.sum(axis=0, dtype=np.int8)
    known = (is_digit | is_dec | is_grp).sum(axis=0, dtype=np.int8)
    good = (known + signed == length) & (n_dec <= 1)
    # With at most one separator its position is the sum of flagged positions.
    point = np.where(n_dec > 0, (is_dec * col).sum(axis=0, dtype=np.int8), length)
    frac = np.where(n_dec > 0, length - point - 1, 0).astype(np.int8)
    good &= (point - signed >= 1) & ((n_dec == 0) | (frac >= 1)) & (frac <= scale)
    # Grouping: separators exactly every fourth position left of the point, first group 1-3.
    grouped = is_grp.any(axis=0)
    if grouped.any():
        rel = point - col
        fourth = (rel & 3) == 0
        bad_grp = (is_grp & ((rel <= 0) | ~fourth)).any(axis=0)
        bad_digit = (is_digit & (rel > 0) & fourth).any(axis=0) & grouped
        empty_lead = grouped & ((point - signed) & 3 == 0)  # ",000" has no first group
        good &= ~bad_grp & ~bad_digit & ~empty_lead
    whole = is_digit.sum(axis=0, dtype=np.int8) - frac
    good &= whole + scale <= _MAX_DIGITS
    # Horner over the columns: a digit shifts the value left, anything else leaves it.
    value = np.zeros(len(pos), np.int64)
    with np.errstate(over="ignore"):  # rows past 18 digits are discarded by ``good``
        for j in range(width):
            value *= np.where(is_digit[j], 10, 1)
            value += digit[j] * is_digit[j]
        value *= _POW10[np.clip(scale - frac, 0, _MAX_DIGITS)]
    value = np.where(first == ord("-"), -value, value)
    if precision is not None and precision < _MAX_DIGITS:
        good &= np.abs(value) < _POW10[precision]
    out[pos] = value
    ok[pos] = good
    return out, ok


def _fast_column(arr: pa.Array, plan: FieldPlan, dec: str
                 ) -> tuple[pa.Array, BoolMask, BoolMask] | None:
    """(numbers, unparsed, failed) of an int/decimal text column: the byte path for the
    common shape, the text path for the rest. None for kinds it does not handle."""
    if plan.kind == "int":
        scale, precision, target = 0, plan.precision, pa.int64()
    elif plan.kind == "decimal" and (plan.scale or 0) <= _MAX_DIGITS:
        target = plan.arrow_type
        scale, precision = target.scale, target.precision
    else:
        return None
    n = len(arr)
    value, ok = _simple_values(arr, dec, scale, precision)
    validity = pa.py_buffer(np.packbits(ok, bitorder="little"))
    null_count = n - int(ok.sum())
    if plan.kind == "int":
        out = pa.Array.from_buffers(target, n, [validity, pa.py_buffer(value)],
                                    null_count=null_count)
    else:
        # decimal128 is a little-endian 128-bit integer: the int64 and its sign extension.
        words = np.empty((n, 2), np.int64)
        words[:, 0] = value
        words[:, 1] = value >> 63
        out = pa.Array.from_buffers(target, n, [validity, pa.py_buffer(words)],
                                    null_count=null_count)
    unparsed = np.zeros(n, np.bool_)
    failed = np.zeros(n, np.bool_)
    rest = ~ok & bool_mask(pc.is_valid(arr))
    if rest.any():
        sub = arr.filter(pa.array(rest))
        canon = parse_number_text(sub, dec)
        sub_out, sub_failed = _to_number(canon, plan)
        out = scatter(out, rest, sub_out)
        unparsed[rest] = bool_mask(pc.and_not(pc.is_valid(sub), pc.is_valid(canon)))
        failed[rest] = sub_failed
    return out, unparsed, failed


def _to_number(canon: pa.Array, plan: FieldPlan) -> tuple[pa.Array, BoolMask]:
    if plan.kind == "float":
        out, failed = try_cast(canon, pa.float64())
        inf = bool_mask(pc.is_inf(out))
        return pc.if_else(pa.array(inf), pa.scalar(None, pa.float64()), out), failed | inf
    if plan.kind == "int":
        # Through a wide decimal: Arrow then flags fractions and overflow per value.
        wide, f1 = try_cast(canon, pa.decimal128(38, 18))
        out, f2 = try_cast(wide, pa.int64())
        failed = f1 | f2
        too_long = digits_exceed(out, plan.precision)  # NUMBER(10) holds 10 digits
        if too_long is not None:
            failed = failed | too_long
            out = pc.if_else(pa.array(~too_long), out, pa.scalar(None, pa.int64()))
        return out, failed
    return try_cast(canon, plan.arrow_type)


def parse_numbers(
    table: pa.Table,
    entity: EntityConfig,
    source_types: Mapping[str, str] | None = None,
    plans: Mapping[str, FieldPlan] | None = None,
) -> StageResult:
    """Layer 3: text columns planned as int/decimal/float become numbers (see module doc)."""
    table = ensure_row_ids(table)
    if plans is None:
        plans = plan_fields(table.schema, entity, source_types)
    rc = RejectCollector(table, STAGE)
    for col, plan in plans.items():
        if not plan.is_numeric or col not in table.column_names:
            continue
        arr = as_array(table.column(col))
        if not pa.types.is_string(arr.type):
            continue
        dec = plan.options.effective_decimal_separator()
        fast = _fast_column(arr, plan, dec)
        if fast is not None:
            out, unparsed, failed = fast
        else:
            canon = parse_number_text(arr, dec)
            out, failed = _to_number(canon, plan)
            unparsed = bool_mask(pc.and_not(pc.is_valid(arr), pc.is_valid(canon)))
        rc.add(unparsed, CODE, col, arr, "not a number")
        what = {"int": "an integer (int64)", "float": "a float"}.get(
            plan.kind, str(plan.declared or plan.arrow_type))
        if plan.kind == "int" and plan.precision is not None:
            what = str(plan.declared)
        rc.add(failed, CODE, col, arr, f"does not fit {what}")
        table = table.set_column(table.schema.get_field_index(col), col, out)
    return rc.result(table)
