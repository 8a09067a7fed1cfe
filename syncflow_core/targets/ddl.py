"""Arrow types <-> SQL column types of a target table, and which type changes are safe.

A `ColumnType` is the logical type of a target column. It is derived from the normalized
Arrow schema when creating or extending a table, and read back from the database (PostgreSQL's
catalog; SQLite's declared types plus our record of widenings, since SQLite cannot ALTER a
column's type) so reads come back as the same Arrow types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import UserDefinedType

__all__ = [
    "UNCONSTRAINED_KEY",
    "UNCONSTRAINED_SCALE",
    "ColumnType",
    "Kind",
    "TypeName",
    "from_arrow",
    "from_declared",
    "from_field",
    "from_pg_catalog",
    "holds",
    "narrowest_scale",
    "sa_type",
]

Kind = Literal["int", "decimal", "float", "text", "bool", "date", "timestamptz", "timestamp"]

UNCONSTRAINED_SCALE = 10
"""Fractional digits an unconstrained NUMERIC reads back with (normalization's default)."""
UNCONSTRAINED_KEY = b"syncflow.numeric"
"""Arrow field metadata that asks for an unconstrained NUMERIC column (normalize.plan)."""

# Decimal digits an integer of N bits needs (int64 max has 19 digits).
_INT_DIGITS = {16: 5, 32: 10, 64: 19}


@dataclass(frozen=True)
class ColumnType:
    """Logical column type: ``size`` is bits for int/float; precision/scale for decimal."""

    kind: Kind
    size: int = 0
    precision: int = 0
    scale: int = 0

    def arrow(self) -> pa.DataType:
        """The Arrow type this column reads back as."""
        if self.kind == "int":
            return {16: pa.int16(), 32: pa.int32()}.get(self.size, pa.int64())
        if self.kind == "decimal":
            if not self.precision:
                # Unconstrained NUMERIC: what normalization holds a bare NUMBER in.
                return pa.decimal128(38, UNCONSTRAINED_SCALE)
            p = self.precision
            return pa.decimal128(p, self.scale) if p <= 38 else pa.decimal256(p, self.scale)
        if self.kind == "float":
            return pa.float32() if self.size == 32 else pa.float64()
        if self.kind == "bool":
            return pa.bool_()
        if self.kind == "date":
            return pa.date32()
        if self.kind == "timestamptz":
            return pa.timestamp("us", tz="UTC")
        if self.kind == "timestamp":
            return pa.timestamp("us")
        return pa.string()

    def sql(self, dialect: str) -> str:
        """The SQL type name as declared (``NUMERIC(12,2)``, ``TIMESTAMPTZ`` ...)."""
        if self.kind == "int":
            return {16: "SMALLINT", 32: "INTEGER"}.get(self.size, "BIGINT")
        if self.kind == "decimal":
            return f"NUMERIC({self.precision},{self.scale})" if self.precision else "NUMERIC"
        if self.kind == "float":
            return "REAL" if self.size == 32 else "DOUBLE PRECISION"
        if self.kind == "bool":
            return "BOOLEAN"
        if self.kind == "date":
            return "DATE"
        if self.kind == "timestamptz":
            return "TIMESTAMP WITH TIME ZONE" if dialect == "postgresql" else "TIMESTAMPTZ"
        if self.kind == "timestamp":
            return "TIMESTAMP WITHOUT TIME ZONE" if dialect == "postgresql" else "TIMESTAMP"
        return "TEXT"

    def __str__(self) -> str:
        return self.sql("postgresql")


def from_arrow(t: pa.DataType, where: str = "column") -> ColumnType:
    """The column type for an Arrow type of the normalized schema; TypeError if unsupported."""
    if pa.types.is_boolean(t):
        return ColumnType("bool")
    if pa.types.is_integer(t):
        bits = t.bit_width + (1 if pa.types.is_unsigned_integer(t) else 0)
        if bits > 64:  # uint64 does not fit BIGINT
            return ColumnType("decimal", precision=20, scale=0)
        return ColumnType("int", size=next(b for b in (16, 32, 64) if bits <= b))
    if pa.types.is_decimal(t):
        return ColumnType("decimal", precision=t.precision, scale=t.scale)
    if pa.types.is_floating(t):
        return ColumnType("float", size=64 if t.bit_width == 64 else 32)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return ColumnType("text")
    if pa.types.is_date(t):
        return ColumnType("date")
    if pa.types.is_timestamp(t):
        return ColumnType("timestamptz" if t.tz is not None else "timestamp")
    raise TypeError(f"{where}: Arrow type {t} has no SQL column type in SyncFlow targets")


def from_field(f: pa.Field, where: str = "column") -> ColumnType:
    """`from_arrow` of a field; a decimal flagged unconstrained becomes plain ``NUMERIC``."""
    if pa.types.is_decimal(f.type) and f.metadata and \
            f.metadata.get(UNCONSTRAINED_KEY) == b"unconstrained":
        return ColumnType("decimal")
    return from_arrow(f.type, where)


def narrowest_scale(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Decimals cast to the smallest scale that keeps every value exact.

    For unconstrained NUMERIC columns: PostgreSQL keeps the scale it is given, so integers
    written at scale 10 would read ``10.0000000000``; at scale 0 they stay ``10``.
    """
    t = values.type
    if not pa.types.is_decimal128(t) or t.scale <= 0:
        return values
    for scale in range(t.scale):
        try:
            return values.cast(pa.decimal128(min(38, t.precision), scale))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return values


_DECL = re.compile(r"^\s*([A-Za-z ]+?)\s*(?:\(\s*(\d+)\s*(?:,\s*(-?\d+)\s*)?\))?\s*$")

_NAMES: dict[str, ColumnType] = {
    "SMALLINT": ColumnType("int", 16),
    "INT2": ColumnType("int", 16),
    "INTEGER": ColumnType("int", 32),
    "INT": ColumnType("int", 32),
    "INT4": ColumnType("int", 32),
    "BIGINT": ColumnType("int", 64),
    "INT8": ColumnType("int", 64),
    "REAL": ColumnType("float", 32),
    "FLOAT4": ColumnType("float", 32),
    "DOUBLE PRECISION": ColumnType("float", 64),
    "DOUBLE": ColumnType("float", 64),
    "FLOAT": ColumnType("float", 64),
    "FLOAT8": ColumnType("float", 64),
    "TEXT": ColumnType("text"),
    "VARCHAR": ColumnType("text"),
    "CHARACTER VARYING": ColumnType("text"),
    "CHAR": ColumnType("text"),
    "CHARACTER": ColumnType("text"),
    "BOOLEAN": ColumnType("bool"),
    "BOOL": ColumnType("bool"),
    "DATE": ColumnType("date"),
    "TIMESTAMPTZ": ColumnType("timestamptz"),
    "TIMESTAMP WITH TIME ZONE": ColumnType("timestamptz"),
    "TIMESTAMP": ColumnType("timestamp"),
    "DATETIME": ColumnType("timestamp"),
    "TIMESTAMP WITHOUT TIME ZONE": ColumnType("timestamp"),
}


def from_declared(decl: str) -> ColumnType:
    """Parse a declared type (``NUMERIC(12,2)``, ``BIGINT``); unknown names read as text."""
    m = _DECL.match(decl or "")
    if not m:
        return ColumnType("text")
    name = " ".join(m.group(1).upper().split())
    if name in ("NUMERIC", "DECIMAL"):
        return ColumnType(
            "decimal",
            precision=int(m.group(2)) if m.group(2) else 0,
            scale=int(m.group(3)) if m.group(3) else 0,
        )
    return _NAMES.get(name, ColumnType("text"))


def from_pg_catalog(data_type: str, precision: int | None, scale: int | None) -> ColumnType:
    """From ``information_schema.columns`` (data_type, numeric_precision, numeric_scale)."""
    if data_type == "numeric":
        return ColumnType("decimal", precision=precision or 0, scale=scale or 0)
    return from_declared(data_type)


def holds(wide: ColumnType, narrow: ColumnType) -> bool:
    """True when every value of type ``narrow`` fits ``wide`` exactly."""
    if wide == narrow:
        return True
    if wide.kind == "int" and narrow.kind == "int":
        return wide.size >= narrow.size
    if wide.kind == "float" and narrow.kind == "float":
        return wide.size >= narrow.size
    if wide.kind == "decimal" and narrow.kind in ("int", "decimal"):
        if wide.precision == 0:  # unconstrained NUMERIC takes any number
            return True
        if narrow.kind == "int":
            return wide.precision - wide.scale >= _INT_DIGITS.get(narrow.size, 19)
        if narrow.precision == 0:
            return False
        return (
            wide.scale >= narrow.scale
            and wide.precision - wide.scale >= narrow.precision - narrow.scale
        )
    return False


class TypeName(UserDefinedType[Any]):
    """A column type rendered exactly as we declare it (SQLite keeps the declared text)."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **_kw: Any) -> str:
        return self.name


def sa_type(ct: ColumnType, dialect: str) -> sa.types.TypeEngine[Any]:
    """The SQLAlchemy type used in DDL and for binding parameters."""
    if dialect != "postgresql":
        return TypeName(ct.sql(dialect))
    if ct.kind == "int":
        return {16: sa.SmallInteger(), 32: sa.Integer()}.get(ct.size, sa.BigInteger())
    if ct.kind == "decimal":
        return sa.Numeric(ct.precision, ct.scale) if ct.precision else sa.Numeric()
    if ct.kind == "float":
        return sa.REAL() if ct.size == 32 else sa.DOUBLE_PRECISION()
    if ct.kind == "bool":
        return sa.Boolean()
    if ct.kind == "date":
        return sa.Date()
    if ct.kind == "timestamptz":
        return postgresql.TIMESTAMP(timezone=True)
    if ct.kind == "timestamp":
        return postgresql.TIMESTAMP(timezone=False)
    return sa.Text()
