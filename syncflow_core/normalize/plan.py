"""Which logical kind each column has: declared source type first, then the Arrow type.

The plan is computed once and shared by the five layers, so every layer agrees on what a
column *should* become (e.g. layer 3 parses text only for columns planned as numbers).

Declared-type rules (case-insensitive, arguments in parentheses):

- ``NUMBER(p,0)`` / ``NUMERIC(p,0)`` / ``DECIMAL(p,0)`` / ``NUMBER(p)``: ``int`` (int64) when
  p <= 18, else ``decimal(p,0)``; ``NUMBER(p,s)`` with s > 0: ``decimal(p,s)``; a negative
  scale rounds to 10^-s, so it counts as p - s integer digits. The precision is enforced: a
  value with more integer digits (11 digits in a ``NUMBER(10)``) is a reject.
- ``NUMBER`` / ``NUMERIC`` / ``DECIMAL`` without arguments: ``decimal(38,10)`` in memory,
  flagged ``unconstrained``. Oracle's unconstrained NUMBER has 38 significant digits and a
  floating scale; 28 integer + 10 fractional digits covers money, quantities and rates. A value
  needing more fractional digits is a reject (never silently rounded). The target column is an
  unconstrained ``NUMERIC`` and each write uses the smallest scale its values need, so integer
  keys stay ``10``, not ``10.0000000000`` (`mark_unconstrained`). Declare the field's ``type``
  to choose otherwise.
- ``FLOAT``, ``BINARY_DOUBLE``, ``BINARY_FLOAT``, ``REAL``, ``DOUBLE PRECISION``: ``float``.
- ``INTEGER``, ``INT``, ``BIGINT``, ``SMALLINT`` (and PostgreSQL/SQLite spellings): ``int``.
- ``DATE``: ``timestamp`` (Oracle's DATE carries a time) unless the physical Arrow column is
  already a date (PostgreSQL/SQLite drivers return ``date`` objects), then ``date``.
  ``DATE32`` forces a calendar date for text sources.
- ``TIMESTAMP``, ``DATETIME``: ``timestamp``; ``... WITH (LOCAL) TIME ZONE``, ``TIMESTAMPTZ``:
  ``timestamptz``. Both end as ``timestamp('us', 'UTC')``.
- ``CHAR(n)``, ``NCHAR(n)``, ``CHARACTER(n)``, ``BPCHAR``: ``char`` (blank-padded string).
- ``VARCHAR2``, ``NVARCHAR2``, ``VARCHAR``, ``TEXT``, ``CLOB``, ``NCLOB``, ``LONG``:
  ``string``.
- ``RAW``, ``LONG RAW``, ``BLOB``, ``BYTEA``, ``BINARY``, ``VARBINARY``: ``binary``
  (lowercase hex).
- ``BOOLEAN``, ``BOOL``: ``bool``.
- Anything else (INTERVAL, XMLTYPE, ...) falls back to the Arrow type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from syncflow_core.config import EntityConfig, FieldOptions
from syncflow_core.rejects import ROW_ID

__all__ = [
    "DEFAULT_NUMBER_PRECISION",
    "DEFAULT_NUMBER_SCALE",
    "UNCONSTRAINED_KEY",
    "FieldPlan",
    "Kind",
    "is_unconstrained",
    "mark_unconstrained",
    "parse_declared_type",
    "plan_fields",
]

Kind = Literal[
    "int", "decimal", "float", "string", "char", "binary", "bool", "date", "timestamp",
    "timestamptz",
]

DEFAULT_NUMBER_PRECISION = 38
DEFAULT_NUMBER_SCALE = 10
UNCONSTRAINED_KEY = b"syncflow.numeric"
"""Arrow field metadata key: ``unconstrained`` marks a column from a bare ``NUMBER``."""
_UNCONSTRAINED = {UNCONSTRAINED_KEY: b"unconstrained"}

NUMERIC_KINDS: frozenset[str] = frozenset({"int", "decimal", "float"})
TEMPORAL_KINDS: frozenset[str] = frozenset({"date", "timestamp", "timestamptz"})
TEXT_KINDS: frozenset[str] = frozenset({"string", "char", "binary"})


@dataclass(frozen=True)
class FieldPlan:
    """What one column becomes: logical kind, decimal precision/scale and its options."""

    kind: Kind
    options: FieldOptions
    precision: int | None = None
    scale: int | None = None
    declared: str | None = None
    """The declared type text the kind came from (None when inferred from Arrow)."""
    unconstrained: bool = False
    """A bare ``NUMBER``/``NUMERIC``: exact, no declared precision or scale."""

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type the column has after normalization."""
        if self.kind == "int":
            return pa.int64()
        if self.kind == "decimal":
            return pa.decimal128(self.precision or DEFAULT_NUMBER_PRECISION, self.scale or 0)
        if self.kind == "float":
            return pa.float64()
        if self.kind == "bool":
            return pa.bool_()
        if self.kind == "date":
            return pa.date32()
        if self.kind in TEMPORAL_KINDS:
            return pa.timestamp("us", tz="UTC")
        return pa.string()

    @property
    def is_numeric(self) -> bool:
        """True for int, decimal and float."""
        return self.kind in NUMERIC_KINDS

    @property
    def is_temporal(self) -> bool:
        """True for date, timestamp and timestamptz."""
        return self.kind in TEMPORAL_KINDS


_ARGS = re.compile(r"\(([^)]*)\)")
_INTS = {"INTEGER", "INT", "BIGINT", "SMALLINT", "TINYINT", "MEDIUMINT", "INT2", "INT4", "INT8",
         "SERIAL", "BIGSERIAL", "SMALLSERIAL", "PLS_INTEGER", "BINARY_INTEGER", "UNSIGNED BIG INT"}
_EXACT = {"NUMBER", "NUMERIC", "DECIMAL", "DEC"}
_FLOATS = {"FLOAT", "REAL", "DOUBLE", "DOUBLE PRECISION", "BINARY_DOUBLE", "BINARY_FLOAT",
           "FLOAT4", "FLOAT8"}
_CHARS = {"CHAR", "NCHAR", "CHARACTER", "BPCHAR", "NATIONAL CHAR", "NATIONAL CHARACTER"}
_STRINGS = {"VARCHAR", "VARCHAR2", "NVARCHAR2", "NVARCHAR", "TEXT", "CLOB", "NCLOB", "STRING",
            "LONG", "CITEXT", "CHARACTER VARYING", "CHAR VARYING", "NATIONAL CHARACTER VARYING",
            "NCHAR VARYING", "VARYING CHARACTER", "NATIVE CHARACTER", "NTEXT", "TINYTEXT",
            "MEDIUMTEXT", "LONGTEXT", "UUID", "JSON", "JSONB", "XML", "ROWID", "UROWID", "NAME"}
_BINARY = {"RAW", "LONG RAW", "BLOB", "BYTEA", "BINARY", "VARBINARY", "IMAGE", "LONGBLOB",
           "MEDIUMBLOB", "TINYBLOB"}
_BOOLS = {"BOOLEAN", "BOOL"}
_TIMESTAMPS = {"TIMESTAMP", "DATETIME", "TIMESTAMP WITHOUT TIME ZONE", "DATETIME2",
               "SMALLDATETIME"}
_TIMESTAMPTZ = {"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMP WITH LOCAL TIME ZONE",
                "DATETIMEOFFSET"}


def _exact(args: str | None) -> tuple[Kind, int | None, int | None]:
    if args is None or not args.strip():
        return "decimal", DEFAULT_NUMBER_PRECISION, DEFAULT_NUMBER_SCALE
    parts = [p.strip() for p in args.split(",")]
    p = DEFAULT_NUMBER_PRECISION if parts[0] in ("*", "") else int(parts[0])
    s = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    if s <= 0:
        digits = min(p - s, DEFAULT_NUMBER_PRECISION)
        # An int keeps its precision: NUMBER(10) holds at most 10 digits.
        return ("int", digits, None) if digits <= 18 else ("decimal", digits, 0)
    p = min(max(p, s), DEFAULT_NUMBER_PRECISION)
    return "decimal", p, min(s, p)


def parse_declared_type(text: str) -> tuple[Kind, int | None, int | None] | None:
    """(kind, precision, scale) of a declared SQL type text, or None if not recognized.

    ``DATE`` parses as ``timestamp``; `plan_fields` turns it into ``date`` when the physical
    column already holds dates.
    """
    t = " ".join(text.upper().replace("(", " (").split())
    m = _ARGS.search(t)
    args = m.group(1) if m else None
    base = " ".join(_ARGS.sub(" ", t).split())
    if base in _EXACT:
        try:
            return _exact(args)
        except ValueError:
            return None
    if base in _INTS:
        return "int", None, None
    if base in _FLOATS:
        return "float", None, None
    if base in _CHARS:
        return "char", None, None
    if base in _STRINGS:
        return "string", None, None
    if base in _BINARY:
        return "binary", None, None
    if base in _BOOLS:
        return "bool", None, None
    if base == "DATE":
        return "timestamp", None, None
    if base == "DATE32":
        return "date", None, None
    if base in _TIMESTAMPS:
        return "timestamp", None, None
    if base in _TIMESTAMPTZ:
        return "timestamptz", None, None
    return None


def is_unconstrained(declared: str) -> bool:
    """True for an exact numeric type declared without precision (``NUMBER``, ``NUMERIC``)."""
    t = " ".join(declared.upper().split())
    return t in _EXACT or (t.endswith("()") and t[:-2].strip() in _EXACT)


def _infer(t: pa.DataType) -> tuple[Kind, int | None, int | None] | None:
    if pa.types.is_integer(t):
        return "int", None, None
    if pa.types.is_decimal(t):
        p, s = t.precision, t.scale
        if p > DEFAULT_NUMBER_PRECISION:
            p = DEFAULT_NUMBER_PRECISION
        return "decimal", p, s
    if pa.types.is_floating(t):
        return "float", None, None
    if pa.types.is_boolean(t):
        return "bool", None, None
    if pa.types.is_date(t):
        return "date", None, None
    if pa.types.is_timestamp(t):
        return ("timestamptz" if t.tz else "timestamp"), None, None
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary", None, None
    if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
            or pa.types.is_null(t) or pa.types.is_dictionary(t)):
        return "string", None, None
    return None


def plan_fields(
    table_schema: pa.Schema,
    entity: EntityConfig,
    source_types: Mapping[str, str] | None = None,
) -> dict[str, FieldPlan]:
    """Plan every column of ``table_schema`` (except `ROW_ID`).

    ``entity.field_options(col).type`` overrides ``source_types[col]``; without either the
    kind follows the Arrow type (text stays text). Columns of unsupported Arrow types (lists,
    structs, times, intervals) without a recognized declared type are left out: the layers
    pass them through untouched.
    """
    source_types = source_types or {}
    plans: dict[str, FieldPlan] = {}
    for f in table_schema:
        if f.name == ROW_ID:
            continue
        opts = entity.field_options(f.name)
        declared = opts.type or source_types.get(f.name)
        parsed = parse_declared_type(declared) if declared else None
        if parsed is not None:
            kind, p, s = parsed
            if kind == "timestamp" and pa.types.is_date(f.type) and declared is not None \
                    and declared.strip().upper() == "DATE":
                kind = "date"
            plans[f.name] = FieldPlan(kind, opts, p, s, declared,
                                      unconstrained=bool(declared and is_unconstrained(declared)))
            continue
        inferred = _infer(f.type)
        if inferred is not None:
            plans[f.name] = FieldPlan(inferred[0], opts, inferred[1], inferred[2], None)
    return plans


def mark_unconstrained(
    table: pa.Table, plans: Mapping[str, FieldPlan], entity: EntityConfig
) -> pa.Table:
    """Flag the output columns of unconstrained numbers (field metadata `UNCONSTRAINED_KEY`).

    A source column is followed through the entity's renames; a cast or a value map that
    changes its type drops the flag (the column is then what the mapping made it).
    """
    names = {col for col, plan in plans.items() if plan.unconstrained}
    if not names:
        return table
    for m in entity.field_mappings:
        if m.op == "rename" and m.field in names and m.to:
            names = (names - {m.field}) | {m.to}
        elif m.op == "drop":
            names.discard(m.field)
    wanted = pa.decimal128(DEFAULT_NUMBER_PRECISION, DEFAULT_NUMBER_SCALE)
    fields = [
        f.with_metadata(_UNCONSTRAINED) if f.name in names and f.type == wanted else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields, table.schema.metadata))
