"""Row identity: business-key hash, data hash, row version and a human-readable ref.

`identify` adds four tracking columns to a normalized batch:

- ``_bridge_key_hash``: XXH3-128 (seed 0, canonical big-endian bytes) of the BK input below,
  32 lowercase hex chars.
- ``_bridge_data_hash``: BLAKE3 (unkeyed) of the DATA input below, first 16 bytes of the
  output, 32 lowercase hex chars.
- ``_bridge_rowversion``: the entity's ``rowversion_field`` as int64 (integer types, decimals of
  scale <= 0 that fit) or string (text types as they are, anything else as its canonical
  text); a null string column when the entity has no row version.
- ``_bridge_ref``: ``entity[field=value,...]`` with the canonical text of each key value.

Rows with a null business-key value are rejected (stage ``identity``, code
``null_business_key``); `ROW_ID` is kept (added if missing).

Data fields are all columns except: hidden ``__sf_*`` columns (`ROW_ID`), ``_bridge_*``
columns, the row-version field and the business-key fields.

Canonical encoding, version 1 (hashes are persisted: changing anything here forces a re-hash
migration; ``tests/core/golden/identity_v1.json`` freezes it)
-----------------------------------------------------------------------------------------------
Each non-null value is turned into text from its Arrow type; ``encode_column`` returns this
text, null stays null:

====  =====================================  ==================================================
tag   Arrow types                            text
====  =====================================  ==================================================
s     string, large_string, string_view,     the string's UTF-8 bytes as they are (layer 2
      dictionary of those                    of normalization has made them NFC; identity
                                             does not normalize again)
i     int8..int64, uint8..uint64             decimal digits, ``-`` sign, no leading zeros
n     decimal32/64/128/256                   plain positional notation, no exponent, no
                                             trailing fractional zeros, no trailing ``.``;
                                             zero is ``0`` (``10.50`` -> ``10.5``, ``10.00``
                                             -> ``10``, ``-0.00`` -> ``0``); decimals of
                                             different scale but equal value encode equal
f     float16/32/64                          Arrow's float->string cast (double-conversion
                                             shortest round-trip digits: ``0.1``, ``1``,
                                             ``1e+20``, ``1e-7``, ``nan``, ``inf``, ``-inf``);
                                             ``-0`` -> ``0``; float16 goes through float32
d     date32, date64                         ``YYYY-MM-DD``
t     timestamp (any unit, any zone)         UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always 6
                                             fraction digits; naive timestamps are taken as
                                             UTC; nanoseconds are truncated to microseconds)
h     time32, time64                         ``HH:MM:SS.ffffff``
b     bool                                   ``true`` / ``false``
x     binary, large_binary, fixed_size_      lowercase hex of the bytes
      binary, binary_view
====  =====================================  ==================================================

A *tagged* value is ``<tag>:<text>`` where, in ``s`` text only (no other text can contain
them), ``\\`` is written ``\\\\`` and ``|`` is written ``\\|`` (escape first, then separator).
The separator ``|`` therefore never occurs unescaped inside a tagged value, so splitting on
unescaped ``|`` recovers the tuple: ``("a|b", "c")`` -> ``s:a\\|b|s:c`` and ``("a", "b|c")`` ->
``s:a|s:b\\|c`` differ.

- BK input: the tagged business-key values in configured key order joined by ``|``, e.g.
  ``s:SO-1001|i:3``. Field names are not part of it, so a child's columns that carry a
  parent's key (`key_hashes`) hash like the parent's own key when the types match.
- DATA input: ``name=tagged`` for every *non-null* data field, sorted by column name (Unicode
  code point order, i.e. Python's ``sorted``), joined by ``|``, e.g.
  ``amount=n:10.5|name=s:Foo``. In names ``\\``, ``|`` and ``=`` are backslash-escaped. A row
  whose data fields are all null has the empty string as input. Because nulls are left out,
  adding an all-null column or reordering columns changes no hash; a null therefore needs no
  marker.

Column types other than those above (lists, structs, durations, ...) are rejected with a
``TypeError`` naming the column: they have no canonical text yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from functools import reduce
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.batch import StageResult
from syncflow_core.config import EntityConfig
from syncflow_core.errors import ConfigError
from syncflow_core.hexdigest import hash_hex, hash_rows, native_hashing
from syncflow_core.rejects import ROW_ID, empty_reject_specs, reject_specs, with_row_ids

__all__ = [
    "BATCH_ID",
    "BRIDGE_COLUMNS",
    "DATA_HASH",
    "DELETED_AT",
    "ENCODING_VERSION",
    "ESCAPE",
    "KEY_HASH",
    "REF",
    "ROWVERSION",
    "SEPARATOR",
    "SYNCED_AT",
    "data_fields",
    "data_hashes",
    "data_inputs",
    "encode_column",
    "identify",
    "key_hashes",
    "key_inputs",
    "type_tag",
]

KEY_HASH = "_bridge_key_hash"
DATA_HASH = "_bridge_data_hash"
ROWVERSION = "_bridge_rowversion"
REF = "_bridge_ref"
BATCH_ID = "_bridge_batch_id"
SYNCED_AT = "_bridge_synced_at"
DELETED_AT = "_bridge_deleted_at"
BRIDGE_COLUMNS = (KEY_HASH, DATA_HASH, ROWVERSION, REF, BATCH_ID, SYNCED_AT, DELETED_AT)

ENCODING_VERSION = 1
SEPARATOR = "|"
ESCAPE = "\\"
_HIDDEN_PREFIX = "__sf_"
_BRIDGE_PREFIX = "_bridge_"

Column: TypeAlias = pa.Array | pa.ChunkedArray


def type_tag(t: pa.DataType) -> str:
    """The one-letter tag of an Arrow type in the canonical encoding (``TypeError`` if none)."""
    if pa.types.is_dictionary(t):
        return type_tag(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "s"
    if pa.types.is_integer(t):
        return "i"
    if pa.types.is_decimal(t):
        return "n"
    if pa.types.is_floating(t):
        return "f"
    if pa.types.is_date(t):
        return "d"
    if pa.types.is_timestamp(t):
        return "t"
    if pa.types.is_time(t):
        return "h"
    if pa.types.is_boolean(t):
        return "b"
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    ):
        return "x"
    raise TypeError(f"no canonical encoding for Arrow type {t}")


def _chunks(arr: Column) -> list[pa.Array]:
    return list(arr.chunks) if isinstance(arr, pa.ChunkedArray) else [arr]


def _map_chunks(fn: Callable[[pa.Array], pa.Array], arr: Column) -> pa.ChunkedArray:
    return pa.chunked_array([fn(c) for c in _chunks(arr)], pa.string())


_HEX_LUT = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint16)


def _hex_chunk(arr: pa.Array) -> pa.Array:
    n = len(arr)
    t = arr.type
    if pa.types.is_fixed_size_binary(t):
        width = t.byte_width
        buf = arr.buffers()[1]
        raw = np.frombuffer(buf, np.uint8)[arr.offset * width : (arr.offset + n) * width]
        offsets = np.arange(0, 2 * width * (n + 1), 2 * width, dtype=np.int64)
    else:
        if not pa.types.is_large_binary(t):
            arr = arr.cast(pa.large_binary())
        bufs = arr.buffers()
        off = np.frombuffer(bufs[1], np.int64, count=n + 1, offset=arr.offset * 8)
        raw = (
            np.frombuffer(bufs[2], np.uint8)[off[0] : off[-1]]
            if bufs[2] is not None
            else np.zeros(0, np.uint8)
        )
        offsets = (off - off[0]) * 2
    hexed = _HEX_LUT[raw]
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    out = pa.Array.from_buffers(
        pa.large_string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(hexed)]
    )
    return out.cast(pa.string())


def _decimal_chunk(arr: pa.Array) -> pa.Array:
    s = arr.cast(pa.string())
    out = s
    if arr.type.scale > 0:
        # Every plain value has a '.', so stripping zeros stops at it at worst; then drop a
        # bare '.'.
        out = pc.ascii_rtrim(pc.ascii_rtrim(s, "0"), ".")
    # Arrow prints an exponent for |x| < 1e-6 (and zero) at scales > 6 and for negative
    # scales; those few values are rewritten from Python's Decimal.
    if 0 <= arr.type.scale <= 6:
        return out
    flagged = pc.match_substring(s, "E")
    if not pc.any(flagged).as_py():
        return out
    zero = pc.starts_with(s, "0E")  # zero is common: keep it vectorized
    out = pc.if_else(zero, "0", out)
    flagged = pc.and_(flagged, pc.invert(zero))
    if not pc.any(flagged).as_py():
        return out
    fixed = []
    for text in pc.filter(s, flagged).to_pylist():
        d = Decimal(text)
        fixed.append("0" if d == 0 else format(d.normalize(), "f"))
    return pc.replace_with_mask(out, flagged, pa.array(fixed, pa.string()))


_TS_WIDTH = 26  # "YYYY-MM-DD HH:MM:SS.ffffff": Arrow's text of a naive microsecond timestamp


def _timestamp_chunk(arr: pa.Array) -> pa.Array:
    utc = pc.cast(arr, pa.timestamp("us", "UTC"), safe=False)
    # Dropping the zone keeps the UTC instant; printing a naive timestamp is ~20x faster
    # than a zoned one (which consults the tz database per value).
    naive = utc.cast(pa.timestamp("us"))
    n = len(naive)
    filled = pc.fill_null(naive, 0) if naive.null_count else naive
    text = filled.cast(pa.string())
    bufs = text.buffers()
    off = np.frombuffer(bufs[1], np.int32, count=n + 1, offset=text.offset * 4)
    if n == 0 or off[-1] - off[0] != _TS_WIDTH * n or not (np.diff(off) == _TS_WIDTH).all():
        # Years outside 0000-9999 print wider: the general (slower) string kernels.
        return _join([pc.replace_substring(naive.cast(pa.string()), " ", "T",
                                           max_replacements=1), "Z"], "").combine_chunks()
    # Every value has the same width: write "T" and "Z" into a copy of the bytes in one pass.
    raw = np.frombuffer(bufs[2], np.uint8)[off[0]: off[-1]].reshape(n, _TS_WIDTH)
    out = np.empty((n, _TS_WIDTH + 1), np.uint8)
    out[:, :_TS_WIDTH] = raw
    out[:, 10] = ord("T")
    out[:, _TS_WIDTH] = ord("Z")
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    offsets = np.arange(0, (_TS_WIDTH + 1) * (n + 1), _TS_WIDTH + 1, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(out)],
        null_count=arr.null_count,
    )


def _encode(arr: Column) -> pa.ChunkedArray:
    t = arr.type
    if pa.types.is_null(t):
        return pa.chunked_array([pa.nulls(len(c), pa.string()) for c in _chunks(arr)], pa.string())
    if pa.types.is_dictionary(t):
        return _encode(arr.cast(t.value_type))
    tag = type_tag(t)
    out: Column
    if tag == "s":
        # As is: normalization (layer 2) already made strings NFC; redoing it here cost
        # ~0.2 s per 1M non-ASCII values.
        out = arr.cast(pa.string())
    elif tag in ("i", "b"):
        out = arr.cast(pa.string())
    elif tag == "n":
        out = _map_chunks(_decimal_chunk, arr)
    elif tag == "f":
        if pa.types.is_float16(t):
            arr = arr.cast(pa.float32())
        s = arr.cast(pa.string())
        out = pc.if_else(pc.equal(s, "-0"), "0", s)
    elif tag == "d":
        out = arr.cast(pa.date32()).cast(pa.string())
    elif tag == "t":
        out = _map_chunks(_timestamp_chunk, arr)
    elif tag == "h":
        out = arr.cast(pa.time64("us")).cast(pa.string())
    else:  # "x"
        out = _map_chunks(_hex_chunk, arr)
    return pa.chunked_array(_chunks(out), pa.string())


def encode_column(arr: Column) -> Column:
    """Canonical text (untagged, unescaped) of each value; null stays null.

    Returns the same shape it was given (Array or ChunkedArray). See the module docstring.
    """
    out = _encode(arr)
    if isinstance(arr, pa.Array):
        return out.combine_chunks() if out.num_chunks != 1 else out.chunk(0)
    return out


def _has_escape_bytes(s: pa.ChunkedArray) -> bool:
    for c in s.chunks:
        data = c.buffers()[2]
        if data is None:
            continue
        # '|' is 0x7C and '\\' is 0x5C: they differ only in bit 0x20, one compare finds both.
        if ((np.frombuffer(data, np.uint8) | 0x20) == 0x7C).any():
            return True
    return False


def _tag_of(arr: Column, name: str) -> str:
    if pa.types.is_null(arr.type):
        return "s"  # only nulls: the tag never reaches a hash input
    try:
        return type_tag(arr.type)
    except TypeError as exc:
        raise TypeError(f"column {name!r}: {exc}") from None


def _escaped(arr: Column, name: str) -> tuple[str, pa.ChunkedArray]:
    """(tag, canonical text with separator/escape chars escaped) of one column."""
    tag = _tag_of(arr, name)
    return tag, _escape_text(tag, _encode(arr))


def _escape_text(tag: str, text: pa.ChunkedArray) -> pa.ChunkedArray:
    if tag == "s" and _has_escape_bytes(text):
        text = pc.replace_substring(text, ESCAPE, ESCAPE + ESCAPE)
        text = pc.replace_substring(text, SEPARATOR, ESCAPE + SEPARATOR)
    return pa.chunked_array(_chunks(text), pa.string())


def _escape_name(name: str) -> str:
    out = name.replace(ESCAPE, ESCAPE + ESCAPE)
    return out.replace(SEPARATOR, ESCAPE + SEPARATOR).replace("=", ESCAPE + "=")


def _join(parts: Sequence[Column | str], sep: str, nulls_as_empty: bool = False) -> pa.ChunkedArray:
    # null_handling="skip" is not used: in pyarrow 26 it drops rows whose inputs are all null
    # (the output comes back shorter than the input). "replace" with "" keeps every row.
    if nulls_as_empty:
        out = pc.binary_join_element_wise(*parts, sep, null_handling="replace",
                                          null_replacement="")
    else:
        out = pc.binary_join_element_wise(*parts, sep)
    return pa.chunked_array(_chunks(out), pa.string())


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if table.column_names.count(name) != 1:
        have = "is missing" if name not in table.column_names else "appears more than once"
        raise ValueError(f"column {name!r} {have} in the batch")
    return table.column(name)


def key_inputs(table: pa.Table, fields: Sequence[str]) -> pa.ChunkedArray:
    """The BK hash input strings (tagged, escaped, ``|``-joined); null if any value is null."""
    if not fields:
        raise ValueError("a business key needs at least one field")
    return _key_input(table, fields, {})


def _key_input(table: pa.Table, fields: Sequence[str],
               texts: dict[str, pa.ChunkedArray]) -> pa.ChunkedArray:
    # One join over [tag, value, |tag, value, ...]: each value is copied once. A null value
    # makes the row's input null.
    parts: list[Column | str] = []
    for i, f in enumerate(fields):
        col = _column(table, f)
        tag = _tag_of(col, f)
        text = texts[f] if f in texts else _encode(col)
        parts += [f"{SEPARATOR if i else ''}{tag}:", _escape_text(tag, text)]
    return _join(parts, "")


def key_hashes(table: pa.Table, fields: Sequence[str]) -> pa.ChunkedArray:
    """``_bridge_key_hash`` of the values in ``fields`` (in that order); null if any is null.

    For the parent resolver: pass the child's columns that hold the parent key, in the
    parent's key order; the result equals the parent's own key hashes when the types match.
    """
    return hash_hex(key_inputs(table, fields), "xxh3_128")


def data_fields(column_names: Iterable[str], entity: EntityConfig) -> list[str]:
    """The data fields of a batch, sorted by name (see the module docstring for exclusions)."""
    excluded = set(entity.business_key_fields)
    if entity.rowversion_field:
        excluded.add(entity.rowversion_field)
    return sorted(
        c
        for c in set(column_names)
        if c not in excluded and not c.startswith((_HIDDEN_PREFIX, _BRIDGE_PREFIX))
    )


def _separated_pairs(table: pa.Table, fields: Iterable[str]) -> pa.ChunkedArray:
    """``|name=tagged`` of each non-null data field, concatenated: DATA input with a leading
    ``|`` on every non-empty row (the hash loop skips that byte instead of copying strings)."""
    parts: list[Column | str] = []
    has_nulls = False
    for f in sorted(set(fields)):
        col = _column(table, f)
        if pa.types.is_null(col.type) or col.null_count == len(col):
            continue  # contributes nothing to any row; skipping saves the string work
        tag, text = _escaped(col, f)
        prefix = f"{SEPARATOR}{_escape_name(f)}={tag}:"
        if col.null_count:
            # Prefix and value together, null where the value is: the final join drops both.
            parts.append(_join([prefix, text], ""))
            has_nulls = True
        else:
            parts += [prefix, text]  # no nulls: the one final join copies each value once
    if not parts:
        return pa.chunked_array([pa.array([""] * table.num_rows, pa.string())], pa.string())
    return _join(parts, "", nulls_as_empty=has_nulls)


def data_inputs(table: pa.Table, fields: Iterable[str]) -> pa.ChunkedArray:
    """The DATA hash input strings: ``name=tagged`` of the non-null fields, sorted, ``|``-joined."""
    return pa.chunked_array(
        _chunks(pc.utf8_slice_codeunits(_separated_pairs(table, fields), 1)), pa.string()
    )


def data_hashes(table: pa.Table, data_fields: Iterable[str]) -> pa.ChunkedArray:
    """``_bridge_data_hash`` of each row over ``data_fields`` (order and nulls don't matter)."""
    if native_hashing() and table.num_rows:
        # The same bytes as `_separated_pairs`, hashed piece by piece in C: the joined
        # strings (~0.3 s per 1M rows) are never built.
        return _data_hashes_pieces(table, data_fields)
    return hash_hex(_separated_pairs(table, data_fields), "blake3_128", skip_first_byte=True)


def _data_hashes_pieces(table: pa.Table, fields: Iterable[str]) -> pa.ChunkedArray:
    pieces: list[tuple[bytes, pa.Buffer | bytes, np.ndarray, np.ndarray | None]] = []
    for f in sorted(set(fields)):
        col = _column(table, f)
        if pa.types.is_null(col.type) or col.null_count == len(col):
            continue
        tag, text = _escaped(col, f)
        arr = text.combine_chunks() if text.num_chunks != 1 else text.chunk(0)
        bufs = arr.buffers()
        offsets = np.frombuffer(bufs[1], np.int32, count=len(arr) + 1, offset=arr.offset * 4)
        valid = None
        if arr.null_count:
            valid = pc.is_valid(arr).to_numpy(zero_copy_only=False).view(np.uint8)
        prefix = f"{SEPARATOR}{_escape_name(f)}={tag}:".encode()
        pieces.append((prefix, bufs[2] if bufs[2] is not None else b"", offsets, valid))
    return hash_rows(table.num_rows, pieces, "blake3_128", skip_first_byte=True)


def _rowversion(table: pa.Table, field: str | None) -> pa.ChunkedArray:
    if field is None:
        return pa.chunked_array([pa.nulls(table.num_rows, pa.string())], pa.string())
    col = _column(table, field)
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if pa.types.is_int64(t) or pa.types.is_string(t):
        return col
    if pa.types.is_integer(t) or (pa.types.is_decimal(t) and t.scale <= 0):
        try:
            return col.cast(pa.int64())
        except pa.ArrowInvalid:
            pass  # does not fit int64: fall through to its canonical text
    if pa.types.is_null(t):
        return pa.chunked_array([pa.nulls(table.num_rows, pa.string())], pa.string())
    return encode_column(col)


def _refs(entity: str, texts: Sequence[tuple[str, pa.ChunkedArray]]) -> pa.ChunkedArray:
    parts: list[Column | str] = []
    for i, (name, text) in enumerate(texts):
        parts.append(f"{entity}[{name}=" if i == 0 else f",{name}=")
        parts.append(text)
    parts.append("]")
    return _join(parts, "")


def _null_key_message(rejected: pa.Table, fields: Sequence[str]) -> pa.Array:
    names = _join(
        [pc.if_else(pc.is_null(rejected.column(f)), f"'{f}', ", None) for f in fields],
        "",
        nulls_as_empty=True,
    )
    several = pc.greater(pc.count_substring(names, "', "), 1)
    prefix = pc.if_else(several, "null business key fields: ", "null business key field: ")
    # Each name ends with its closing quote, so this trims only the last ", ".
    return _join([prefix, pc.utf8_rtrim(names, ", ")], "").combine_chunks()


def identify(table: pa.Table, entity: EntityConfig) -> StageResult:
    """Add ``_bridge_key_hash``, ``_bridge_data_hash``, ``_bridge_rowversion``, ``_bridge_ref``.

    Rows with a null business-key value become rejects (stage ``identity``, code
    ``null_business_key``, message naming the field). Existing tracking columns of those names
    are replaced. Raises `ConfigError` if a key or row-version field is not a column.
    """
    bk = entity.business_key_fields
    for f in (*bk, *([entity.rowversion_field] if entity.rowversion_field else [])):
        if f not in table.column_names:
            raise ConfigError(
                f"entity '{entity.name}': field {f!r} is not a column of the batch "
                f"(columns: {', '.join(c for c in table.column_names if c != ROW_ID)})"
            )
    table = with_row_ids(table)
    table = table.drop_columns([c for c in (KEY_HASH, DATA_HASH, ROWVERSION, REF)
                                if c in table.column_names])

    rejects = empty_reject_specs()
    if any(table.column(f).null_count for f in bk):
        null_key = reduce(pc.or_, [pc.is_null(table.column(f)) for f in bk])
        bad = table.filter(null_key)
        rejects = reject_specs(
            bad.column(ROW_ID), "identity", "null_business_key", _null_key_message(bad, bk)
        )
        table = table.filter(pc.invert(null_key))

    # Each key column is encoded once: for the hash input and for the ref (which shows the
    # plain canonical text; it is for humans, not for parsing).
    texts = {f: _encode(table.column(f)) for f in bk}
    ref_texts = [(f, texts[f]) for f in bk]
    key = hash_hex(_key_input(table, bk, texts), "xxh3_128")
    data = data_hashes(table, data_fields(table.column_names, entity))
    out = (
        table.append_column(KEY_HASH, key)
        .append_column(DATA_HASH, data)
        .append_column(ROWVERSION, _rowversion(table, entity.rowversion_field))
        .append_column(REF, _refs(entity.name, ref_texts))
    )
    return StageResult(out, rejects)
