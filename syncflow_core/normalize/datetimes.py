"""Layer 4: parse datetimes from text and bring every datetime to UTC.

Formats recognized for text in date/timestamp/timestamptz fields (classified by regex once,
each class parsed with one vectorized cast):

- ISO 8601: ``2024-01-31``, ``2024-01-31 10:20:30``, ``2024-01-31T10:20:30.123456``, with
  ``Z`` or an offset (``+02:00``, ``+0200``, ``+02``), which makes the value absolute;
- ``DD/MM/YYYY`` or ``MM/DD/YYYY`` (by ``day_first``), ``DD.MM.YYYY``, each with an optional
  `` HH:MM[:SS]`` time;
- Oracle ``DD-MON-YY`` / ``DD-MON-YYYY`` with optional `` HH24:MI:SS`` (English month, any
  case). Two-digit years follow Oracle's RR rule relative to a reference year (default: the
  current year): with reference year's last two digits < 50, years 00-49 fall in its century
  and 50-99 in the previous one; with >= 50, 00-49 fall in the next century and 50-99 in its own.
- ``YYYYMMDD`` (``00000000`` is null, the ERP's "no date");
- epoch seconds (10 digits) or milliseconds (13 digits); with ``epoch_unit`` set, every digit
  string is an epoch in that unit (then ``YYYYMMDD`` is not recognized). Epochs are UTC. An
  epoch before 1900 or after 9999-12-31 is a reject (a 13-digit millisecond value under
  ``epoch_unit: s`` would be the year ~55841);
- then each of ``date_formats`` (strptime syntax), in order; a trailing ``%f`` reads 1-9
  fractional digits (Oracle ``TIMESTAMP(9)`` exports), truncated to microseconds.

Naive values are wall-clock times in the field's ``timezone`` (default UTC) and are converted
to UTC. DST rule: a nonexistent local time (in the spring-forward gap) is a reject; an
ambiguous one (the repeated autumn hour) takes the earliest instant, i.e. the first occurrence.
Impossible dates (``31/02/2024``, ``2024-13-01``) and text matching no format are rejects with
code ``invalid_datetime``. Date fields keep the calendar date as written; a non-midnight time
in a date field is a reject.

Speed: the fixed-width date shapes (``YYYY-MM-DD``, ``DD.MM.YYYY``, ``DD/MM/YYYY`` or
``MM/DD/YYYY``, ``YYYYMMDD``) are read straight from the UTF-8 bytes with numpy (digits ->
year/month/day -> days since the epoch, days-in-month checked vectorized). Only values of other
shapes, and impossible dates (to be rejected with the usual message), take the regex path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import sliding_window_view

from syncflow_core.batch import StageResult
from syncflow_core.config import EntityConfig, FieldOptions
from syncflow_core.normalize.bytescan import row_bytes
from syncflow_core.normalize.plan import FieldPlan, plan_fields
from syncflow_core.normalize.rejecting import RejectCollector, ensure_row_ids
from syncflow_core.normalize.safe_cast import (
    BoolMask,
    as_array,
    bool_mask,
    cast_or_none,
    scatter,
    try_cast,
)

__all__ = ["STAGE", "localize", "parse_datetime_text", "parse_datetimes", "rr_year"]

STAGE = "datetimes"
CODE = "invalid_datetime"

NAIVE = pa.timestamp("us")
UTC = pa.timestamp("us", tz="UTC")

_TIME = r"(?P<t>\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)"
_ISO_BODY = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}(?::\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?)?"
_ISO_NAIVE = _ISO_BODY + "$"
_ISO_TZ = _ISO_BODY + r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"
_SLASH = rf"^(?P<a>\d{{1,2}})/(?P<b>\d{{1,2}})/(?P<y>\d{{4}})(?:[ T]{_TIME})?$"
_DOT = rf"^(?P<a>\d{{1,2}})\.(?P<b>\d{{1,2}})\.(?P<y>\d{{4}})(?:[ T]{_TIME})?$"
_ORACLE = (r"^(?P<a>\d{1,2})-(?P<mon>[A-Za-z]{3})-(?P<y>\d{4}|\d{2})"
           r"(?:[ ](?P<t>\d{1,2}:\d{2}:\d{2}))?$")
_MONTHS = pa.array(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                    "DEC"])


def rr_year(yy: pa.Array, reference_year: int) -> pa.Array:
    """Oracle's RR rule: the full year of two-digit years ``yy`` relative to a reference year."""
    century, cy = divmod(reference_year, 100)
    low = pc.less(yy, 50)
    if cy < 50:
        cent = pc.if_else(low, century, century - 1)
    else:
        cent = pc.if_else(low, century + 1, century)
    return pc.add(pc.multiply(cent.cast(pa.int64()), 100), yy.cast(pa.int64()))


def _pad(a: pa.Array, width: int) -> pa.Array:
    return pc.utf8_lpad(a.cast(pa.string()), width=width, padding="0")


def _canonical(y: pa.Array, m: pa.Array, d: pa.Array, t: pa.Array | None) -> pa.Array:
    """``YYYY-MM-DD[ HH:MM[:SS[.f]]]`` from components (Arrow's ISO cast then validates)."""
    date = pc.binary_join_element_wise(_pad(y, 4), _pad(m, 2), _pad(d, 2), "-")
    if t is None:
        return date
    t = pc.replace_substring_regex(t, r"^(\d):", r"0\1:")
    with_time = pc.binary_join_element_wise(date, t, " ")
    return pc.if_else(pc.equal(t, ""), date, with_time)


class _Parsed:
    """Accumulates per-row results of one column: naive wall time, absolute flag, failures."""

    def __init__(self, n: int) -> None:
        self.out = pa.nulls(n, NAIVE)
        self.absolute = np.zeros(n, np.bool_)
        self.failed = np.zeros(n, np.bool_)
        self.done = np.zeros(n, np.bool_)

    def put(self, pos: np.ndarray, values: pa.Array, failed: BoolMask,
            absolute: bool = False) -> None:
        mask = np.zeros(len(self.done), np.bool_)
        mask[pos] = True
        self.out = scatter(self.out, mask, values.cast(NAIVE))
        self.failed[pos[failed]] = True
        self.done[pos] = True
        if absolute:
            self.absolute[pos] = True


def _classify(values: pa.Array, pattern: str, pos: np.ndarray) -> np.ndarray:
    """Positions (of ``pos``) whose value matches ``pattern``."""
    if not len(pos):
        return pos
    hit = bool_mask(pc.match_substring_regex(values.take(pa.array(pos)), pattern))
    return pos[hit]


def _user_formats(values: pa.Array, pos: np.ndarray, formats: tuple[str, ...],
                  res: _Parsed) -> np.ndarray:
    for fmt in formats:
        if not len(pos):
            break
        sub = values.take(pa.array(pos))
        fraction = None
        if fmt.endswith("%f") and not fmt.endswith("%%f"):
            # Arrow's strptime has no %f: split the trailing 1-9 digits off and add them.
            sub, fraction = _split_fraction(sub)
            fmt = fmt[:-2]
        parsed = pc.strptime(sub, format=fmt, unit="us", error_is_null=True)
        if fraction is not None:
            parsed = pc.add(parsed, fraction)
        ok = bool_mask(pc.is_valid(parsed))
        if not ok.any():
            continue
        # Arrow's strptime rolls 31/02 over to 02/03: a round trip exposes that; values that
        # do not round-trip (e.g. unpadded days) are checked by Python's strict strptime.
        back = bool_mask(pc.equal(pc.strftime(parsed, format=fmt), sub))
        doubt = np.flatnonzero(ok & ~back)
        if len(doubt):
            texts = sub.take(pa.array(doubt)).to_pylist()
            for j, text in zip(doubt, texts, strict=True):
                try:
                    dt.datetime.strptime(text, fmt)
                except ValueError:
                    ok[j] = False
        aware = getattr(parsed.type, "tz", None) is not None
        good = pos[ok]
        vals = parsed.filter(pa.array(ok))
        if aware:
            vals = vals.cast(UTC).cast(NAIVE)  # the UTC wall time, flagged absolute
        res.put(good, vals, np.zeros(len(good), np.bool_), absolute=aware)
        pos = pos[~ok]
    return pos


# Epochs outside 1900-01-01 .. 9999-12-31 are a unit mix-up (milliseconds read as seconds
# land in the year ~55000), not dates: a reject, never a value no reader can open.
_EPOCH_MIN_US = int((dt.datetime(1900, 1, 1) - dt.datetime(1970, 1, 1)).total_seconds()) * 10**6
_EPOCH_END_US = int((dt.datetime(9999, 12, 31) - dt.datetime(1970, 1, 1)).total_seconds() + 86400) \
    * 10**6


def _implausible_epoch(micros: pa.Array) -> BoolMask:
    out = pc.or_(pc.less(micros, _EPOCH_MIN_US), pc.greater_equal(micros, _EPOCH_END_US))
    return bool_mask(pc.fill_null(out, False))


def _epoch_shaped(values: pa.Array, opts: FieldOptions) -> BoolMask:
    """Rows read as epochs: any digit string under ``epoch_unit``, else 10 or 13 digits."""
    pattern = r"^-?\d+$" if opts.epoch_unit else r"^(?:\d{10}|\d{13})$"
    return bool_mask(pc.fill_null(pc.match_substring_regex(values, pattern), False))


_FRACTION = r"^(?P<head>.*?)(?P<frac>\d{1,9})$"


def _split_fraction(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(text without its trailing fractional digits, those digits as a duration in us).

    Up to 9 digits (Oracle TIMESTAMP(9)); digits past the sixth are truncated, as the
    identity encoding truncates nanoseconds. Values without trailing digits become null.
    """
    parts = pc.extract_regex(values, _FRACTION)
    head = pc.struct_field(parts, "head")
    frac = pc.utf8_rpad(pc.utf8_slice_codeunits(pc.struct_field(parts, "frac"), 0, 6), 6, "0")
    micros = frac.cast(pa.int64()).cast(pa.duration("us"))
    return head, micros


_CUM_DAYS = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], np.int64)
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)
_DAY_US = 86_400_000_000


def _days_since_epoch(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Proleptic Gregorian days since 1970-01-01 of valid (y >= 1, m, d) arrays."""
    y1 = y - 1
    before = y1 * 365 + y1 // 4 - y1 // 100 + y1 // 400  # days in years 1 .. y-1
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    doy = _CUM_DAYS[m - 1] + (leap & (m > 2)) + d - 1
    out: np.ndarray = before + doy - 719_162  # 719162 = days from 0001-01-01 to 1970-01-01
    return out


def _number(digits: np.ndarray, lo: int, hi: int) -> np.ndarray:
    out = digits[:, lo].astype(np.int32)
    for j in range(lo + 1, hi):
        out *= 10
        out += digits[:, j]
    return out


def _fixed_width_dates(values: pa.Array, opts: FieldOptions
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(naive micros, parsed, null) of the fixed-width date shapes, read from the bytes.

    ``parsed`` marks the rows this handled: valid dates in ``YYYY-MM-DD``, ``DD.MM.YYYY``,
    ``DD/MM/YYYY`` (``MM/DD/YYYY`` unless ``day_first``) and, without ``epoch_unit``,
    ``YYYYMMDD`` (``null`` marks its ``00000000``). Everything else is left to the regex path,
    which also rejects impossible dates with the usual message.
    """
    rb = row_bytes(values)
    n = rb.n
    micros = np.zeros(n, np.int64)
    parsed = np.zeros(n, np.bool_)
    null = np.zeros(n, np.bool_)
    lengths = rb.lengths
    if values.null_count:
        # A null slot may still hold bytes (kernels are free to leave them): never parse it.
        lengths = np.where(bool_mask(pc.is_valid(values)), lengths, 0)
    for width in (10, 8):
        if width == 8 and opts.epoch_unit is not None:
            continue  # every digit string is an epoch then
        pos = np.flatnonzero(lengths == width)
        if not len(pos):
            continue
        # Row gather from a zero-copy sliding window: one memcpy-like copy of each value.
        block = sliding_window_view(rb.data, width)[rb.offsets[pos]]
        digits = block - np.uint8(48)  # wraps around below '0', so one compare checks digits
        is_digit = digits <= 9
        if width == 8:
            ok = is_digit.all(axis=1)
            y, m, d = _number(digits, 0, 4), _number(digits, 4, 6), _number(digits, 6, 8)
            zero = ok & (y == 0) & (m == 0) & (d == 0)
            null[pos[zero]] = True
            parsed[pos[zero]] = True
            ok &= ~zero
        else:
            iso = (block[:, 4] == 45) & (block[:, 7] == 45)  # '-'
            dotted = (block[:, 2] == 46) & (block[:, 5] == 46)  # '.'
            slashed = (block[:, 2] == 47) & (block[:, 5] == 47)  # '/'
            # The two separators are not digits: eight digits means all the others are.
            ok = (iso | dotted | slashed) & (is_digit.sum(axis=1, dtype=np.int8) == 8)
            a, b = _number(digits, 0, 2), _number(digits, 3, 5)
            day_first = dotted | (slashed & bool(opts.day_first))
            y = np.where(iso, _number(digits, 0, 4), _number(digits, 6, 10))
            m = np.where(iso, _number(digits, 5, 7), np.where(day_first, b, a))
            d = np.where(iso, _number(digits, 8, 10), np.where(day_first, a, b))
        leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
        in_month = (m >= 1) & (m <= 12)
        dim = _MONTH_DAYS[np.clip(m, 1, 12) - 1] + (leap & (m == 2))
        ok &= (y >= 1) & in_month & (d >= 1) & (d <= dim)
        good = pos[ok]
        micros[good] = _days_since_epoch(y[ok].astype(np.int64), m[ok], d[ok]) * _DAY_US
        parsed[good] = True
    return micros, parsed, null


def parse_datetime_text(values: pa.Array, opts: FieldOptions,
                        reference_year: int | None = None) -> tuple[pa.Array, BoolMask,
                                                                     BoolMask]:
    """Parse text to naive ``timestamp('us')``.

    Returns (values, absolute, failed): ``absolute`` rows are already UTC wall times (had an
    offset or were epochs); the others are wall times in the field's zone. ``failed`` rows
    matched no format or were impossible dates.
    """
    n = len(values)
    micros, fast, null = _fixed_width_dates(values, opts)
    valid = bool_mask(pc.is_valid(values))
    rest = np.flatnonzero(valid & ~fast)
    absolute = np.zeros(n, np.bool_)
    failed = np.zeros(n, np.bool_)
    present = fast & ~null
    out = pa.Array.from_buffers(
        NAIVE, n, [pa.py_buffer(np.packbits(present, bitorder="little")),
                   pa.py_buffer(micros)],
        null_count=n - int(present.sum()),
    )
    if not len(rest):
        return out, absolute, failed
    sub, sub_abs, sub_failed = _parse_text(values.take(pa.array(rest)), opts, reference_year)
    if len(rest) == n:
        return sub, sub_abs, sub_failed
    mask = np.zeros(n, np.bool_)
    mask[rest] = True
    absolute[rest] = sub_abs
    failed[rest] = sub_failed
    return scatter(out, mask, sub), absolute, failed


def _parse_text(values: pa.Array, opts: FieldOptions,
                reference_year: int | None) -> tuple[pa.Array, BoolMask, BoolMask]:
    ref_year = reference_year or dt.date.today().year
    n = len(values)
    res = _Parsed(n)
    valid = bool_mask(pc.is_valid(values))
    # Fast path: Arrow's ISO cast accepts only offset-free ISO text, so if the whole column
    # casts, every value was naive ISO (the usual case for database-exported timestamps).
    whole = cast_or_none(values, NAIVE)
    if whole is not None:
        return whole, np.zeros(n, np.bool_), np.zeros(n, np.bool_)
    iso_naive = bool_mask(pc.match_substring_regex(values, _ISO_NAIVE))
    maybe_tz = np.flatnonzero(valid & ~iso_naive)
    has_tz = np.zeros(n, np.bool_)
    has_tz[_classify(values, _ISO_TZ, maybe_tz)] = True
    iso = iso_naive | has_tz
    for mask, to in ((iso_naive, NAIVE), (has_tz, UTC)):
        pos = np.flatnonzero(mask)
        if len(pos):
            parsed, failed = try_cast(values.take(pa.array(pos)), to)
            res.put(pos, parsed.cast(UTC).cast(NAIVE) if to == UTC else parsed, failed,
                    absolute=to == UTC)
    rest = np.flatnonzero(valid & ~iso)
    if len(rest):
        rest = _parse_rest(values, rest, opts, ref_year, res)
    res.failed[rest] = True
    return res.out, res.absolute, res.failed


_MIN_MICROS = -62_135_596_800 * 1_000_000  # 0001-01-01T00:00:00Z
_MAX_MICROS = 253_402_300_799 * 1_000_000  # 9999-12-31T23:59:59Z


def _parse_rest(values: pa.Array, rest: np.ndarray, opts: FieldOptions, ref_year: int,
                res: _Parsed) -> np.ndarray:
    # Epochs (UTC by definition).
    epoch_classes = [("s", r"^-?\d+$")] if opts.epoch_unit == "s" else \
        [("ms", r"^-?\d+$")] if opts.epoch_unit == "ms" else \
        [("s", r"^\d{10}$"), ("ms", r"^\d{13}$")]
    for unit, pattern in epoch_classes:
        pos = _classify(values, pattern, rest)
        if len(pos):
            nums, failed = try_cast(values.take(pa.array(pos)), pa.int64())
            scale = 1_000_000 if unit == "s" else 1_000
            # Out of the years 1-9999 (a datetime's range) is no time: a reject, and no
            # overflow of the whole chunk's multiply below.
            lo, hi = _MIN_MICROS // scale, _MAX_MICROS // scale
            out = pc.fill_null(pc.or_(pc.less(nums, lo), pc.greater(nums, hi)), False)
            failed = failed | bool_mask(out)
            nums = pc.if_else(out, pa.scalar(None, pa.int64()), nums)
            micros, f2 = try_cast(pc.multiply(nums, scale), pa.int64())
            failed = failed | f2 | _implausible_epoch(micros)
            res.put(pos, micros.cast(NAIVE), failed, absolute=True)
            rest = np.setdiff1d(rest, pos, assume_unique=True)
    if opts.epoch_unit is None:
        pos = _classify(values, r"^\d{8}$", rest)
        if len(pos):
            sub = values.take(pa.array(pos))
            zero = bool_mask(pc.equal(sub, "00000000"))
            canon = _canonical(pc.utf8_slice_codeunits(sub, 0, 4),
                               pc.utf8_slice_codeunits(sub, 4, 6),
                               pc.utf8_slice_codeunits(sub, 6, 8), None)
            canon = pc.if_else(pa.array(zero), pa.scalar(None, pa.string()), canon)
            parsed, failed = try_cast(canon, NAIVE)
            res.put(pos, parsed, failed)
            rest = np.setdiff1d(rest, pos, assume_unique=True)
    day_first_slash = opts.day_first
    for pattern, day_first in ((_SLASH, day_first_slash), (_DOT, True)):
        pos = _classify(values, pattern, rest)
        if len(pos):
            parts = pc.extract_regex(values.take(pa.array(pos)), pattern)
            a, b = pc.struct_field(parts, "a"), pc.struct_field(parts, "b")
            d, m = (a, b) if day_first else (b, a)
            canon = _canonical(pc.struct_field(parts, "y"), m, d, pc.struct_field(parts, "t"))
            parsed, failed = try_cast(canon, NAIVE)
            res.put(pos, parsed, failed)
            rest = np.setdiff1d(rest, pos, assume_unique=True)
    pos = _classify(values, _ORACLE, rest)
    if len(pos):
        parts = pc.extract_regex(values.take(pa.array(pos)), _ORACLE)
        month = pc.index_in(pc.utf8_upper(pc.struct_field(parts, "mon")), value_set=_MONTHS)
        bad_month = bool_mask(pc.is_null(month))
        y = pc.struct_field(parts, "y")
        two = pc.equal(pc.utf8_length(y), 2)
        year = pc.if_else(two, rr_year(pc.cast(y, pa.int64()), ref_year), y.cast(pa.int64()))
        canon = _canonical(year, pc.add(pc.fill_null(month, 0), 1), pc.struct_field(parts, "a"),
                           pc.struct_field(parts, "t"))
        canon = pc.if_else(pa.array(bad_month), pa.scalar(None, pa.string()), canon)
        parsed, failed = try_cast(canon, NAIVE)
        res.put(pos, parsed, failed | bad_month)
        rest = np.setdiff1d(rest, pos, assume_unique=True)
    if opts.date_formats and len(rest):
        rest = _user_formats(values, rest, opts.date_formats, res)
    return rest


def localize(naive: pa.Array, timezone: str | None) -> tuple[pa.Array, BoolMask]:
    """Naive wall times in ``timezone`` -> ``timestamp('us', 'UTC')``.

    Returns (utc, nonexistent): times in a DST gap are null and flagged; ambiguous times take
    the earliest instant.
    """
    naive = naive.cast(NAIVE)
    if not timezone or ZoneInfo(timezone) == ZoneInfo("UTC"):
        return naive.cast(UTC), np.zeros(len(naive), np.bool_)
    early = pc.assume_timezone(naive, timezone=timezone, ambiguous="earliest",
                               nonexistent="earliest")
    late = pc.assume_timezone(naive, timezone=timezone, ambiguous="earliest",
                              nonexistent="latest")
    gap = bool_mask(pc.not_equal(early, late))
    out = early.cast(UTC)
    if gap.any():
        out = pc.if_else(pa.array(gap), pa.scalar(None, UTC), out)
    return out, gap


def _finish(naive: pa.Array, absolute: BoolMask, plan: FieldPlan, col: str, raw: pa.Array,
            rc: RejectCollector) -> pa.Array:
    if plan.kind == "date":
        day = naive.cast(pa.date32())
        timed = bool_mask(pc.not_equal(day.cast(NAIVE), naive))
        rc.add(timed, CODE, col, raw, "has a time of day but is a date")
        return pc.if_else(pa.array(timed), pa.scalar(None, pa.date32()), day)
    local, gap = localize(naive, plan.options.timezone)
    gap &= ~absolute
    rc.add(gap, CODE, col, raw,
           f"does not exist in {plan.options.timezone} (DST gap)")
    if absolute.any():
        return pc.if_else(pa.array(absolute), naive.cast(UTC), local)
    return local


def parse_datetimes(
    table: pa.Table,
    entity: EntityConfig,
    source_types: Mapping[str, str] | None = None,
    plans: Mapping[str, FieldPlan] | None = None,
    *,
    reference_year: int | None = None,
) -> StageResult:
    """Layer 4: datetime fields from text (and naive timestamps) to UTC; dates to date32.

    ``reference_year`` anchors Oracle's RR two-digit-year rule (default: the current year).
    """
    table = ensure_row_ids(table)
    if plans is None:
        plans = plan_fields(table.schema, entity, source_types)
    rc = RejectCollector(table, STAGE)
    for col, plan in plans.items():
        if not plan.is_temporal or col not in table.column_names:
            continue
        arr = as_array(table.column(col))
        t = arr.type
        if pa.types.is_string(t):
            naive, absolute, failed = parse_datetime_text(arr, plan.options, reference_year)
            if failed.any():
                rc.add(failed & _epoch_shaped(arr, plan.options), CODE, col, arr,
                       "not a plausible epoch (before 1900 or after 9999: check epoch_unit)")
            rc.add(failed, CODE, col, arr, "not a valid date/time")
            out = _finish(naive, absolute, plan, col, arr, rc)
        elif pa.types.is_timestamp(t) and t.tz is None and plan.kind != "date":
            out = _finish(arr, np.zeros(len(arr), np.bool_), plan, col, arr, rc)
        elif pa.types.is_timestamp(t) and plan.kind != "date":
            out = arr.cast(UTC)
        else:
            continue
        table = table.set_column(table.schema.get_field_index(col), col, out)
    return rc.result(table)
