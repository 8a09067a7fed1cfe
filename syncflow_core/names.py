"""Table and column names as the databases hold them (validated here, quoted where used)."""

from __future__ import annotations

import re

__all__ = ["MAX_NAME_BYTES", "RESERVED_TABLE_PREFIX", "check_name", "check_table_name"]

MAX_NAME_BYTES = 63
"""PostgreSQL's identifier limit (longer names are silently truncated there)."""
RESERVED_TABLE_PREFIX = "sf_"
"""SyncFlow's own tables (state store, staging, recorded SQLite types) start with this."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_name(value: str, what: str = "name") -> str:
    """A table or column name as the databases hold it: any text, quoted wherever it is used.

    ERPs have names like ``Order Details`` or ``Unit Price``; SyncFlow quotes every identifier
    (SQLAlchemy, psycopg ``sql.Identifier``), so only what no quoting can carry is refused:
    empty names, control characters (NUL, newlines), leading or trailing spaces (invisible in
    every tool) and names over 63 UTF-8 bytes (PostgreSQL would truncate them silently).
    Raises ``ValueError``.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if _CONTROL.search(value):
        raise ValueError(f"{what} {value!r} contains a control character")
    if value != value.strip():
        raise ValueError(f"{what} {value!r} has leading or trailing spaces")
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"{what} {value!r} is longer than {MAX_NAME_BYTES} bytes")
    return value


def check_table_name(value: str, what: str) -> str:
    """``table`` or ``schema.table`` (the first dot separates the schema)."""
    for part in value.split(".", 1):
        check_name(part, what)
    return value


