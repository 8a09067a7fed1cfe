"""How a SQL source orders and tells apart key values: collations and unique keys, reflected.

Keyset paging is right in any collation as long as ``ORDER BY``, ``key > cursor`` and
``key = last`` agree, and SQL guarantees that. The rest of the pipeline is faster when the
source's order is also the *binary* order (Python's, Arrow's, the target's ``COLLATE "C"``):
cleaned keys then keep the order of the source keys and a chunk's deletes come from a key range
of the target. So key columns with a linguistic collation (a PostgreSQL database created with
ICU ``en-US`` or ``en_US.UTF-8``, a SQLite ``COLLATE NOCASE`` column) are paged with an explicit
binary collation. Columns already binary get no ``COLLATE`` clause, so their indexes still
serve the paging. Paging a linguistic column in binary order cannot use its index; an index
``ON t (k COLLATE "C")`` (PostgreSQL) gives that speed back.

Other dialects (SQL Server, Oracle, MySQL) are paged in the column's own collation; when that
order differs from the cleaned keys' order, the pipeline notices and falls back to exact,
order-free deletes (see `syncflow_core.key_scope`).

Uniqueness: when the source declares the key unique (primary key, unique constraint or
non-partial unique index over a subset of the key columns), no two rows share a key and a
plain ``LIMIT`` chunk is exact. Otherwise a chunk is extended to every row of its last key, so
``key > cursor`` never skips the rest of a run of equal keys (duplicates in an ERP table
without a key).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

__all__ = ["KeyTraits", "pg_collations", "pg_key_traits", "sqlite_key_traits"]

_BINARY_LOCALES = {"C", "POSIX", "C.UTF-8", "C.utf8"}


@dataclass(frozen=True)
class KeyTraits:
    """What paging a table by its key columns needs to know about them."""

    collate: dict[str, str] = field(default_factory=dict)
    """Column -> binary collation to page it with (absent: the column is binary already)."""
    unique_sets: tuple[frozenset[str], ...] = ()
    """Column sets the database declares unique."""

    def is_unique(self, key_fields: Sequence[str]) -> bool:
        """Whether the database guarantees no two rows share a value of ``key_fields``."""
        keys = set(key_fields)
        return any(s and s <= keys for s in self.unique_sets)


def pg_key_traits(conn: sa.Connection, schema: str | None, name: str) -> KeyTraits:
    """Collations and unique column sets of a PostgreSQL table (a few catalog queries)."""
    return KeyTraits(pg_collations(conn, schema, name), tuple(_pg_unique_sets(conn, schema, name)))


def pg_collations(conn: sa.Connection, schema: str | None, name: str) -> dict[str, str]:
    """Column -> ``"C"`` for each column of a PostgreSQL table whose collation is not binary."""
    provider = "datlocprovider" if _pg_has_locprovider(conn) else "'c'"  # PostgreSQL < 15: libc
    db = conn.execute(
        sa.text(f"SELECT datcollate, {provider} FROM pg_database "  # noqa: S608 (our text)
                "WHERE datname = current_database()")
    ).one()
    default_binary = db[1] == "c" and str(db[0]) in _BINARY_LOCALES
    rows = conn.execute(
        sa.text(
            "SELECT a.attname, coll.collname, coll.collprovider, coll.collcollate "
            "FROM pg_attribute a JOIN pg_collation coll ON coll.oid = a.attcollation "
            "WHERE a.attrelid = CAST(:rel AS regclass) AND a.attnum > 0 "
            "AND NOT a.attisdropped"
        ),
        {"rel": _pg_regclass(conn, schema, name)},
    ).all()
    collate: dict[str, str] = {}
    for col, collname, provider, collcollate in rows:
        if collname == "default":
            binary = default_binary
        else:
            binary = collname in ("C", "POSIX") or (
                provider == "c" and str(collcollate) in _BINARY_LOCALES
            )
        if not binary:
            collate[str(col)] = "C"
    return collate


def _pg_has_locprovider(conn: sa.Connection) -> bool:
    version = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
    return version >= 150000


def _pg_regclass(conn: sa.Connection, schema: str | None, name: str) -> str:
    prep = conn.dialect.identifier_preparer
    return f"{prep.quote(schema)}.{prep.quote(name)}" if schema else prep.quote(name)


def _pg_unique_sets(conn: sa.Connection, schema: str | None, name: str) -> Iterable[frozenset[str]]:
    insp = sa.inspect(conn)
    pk = insp.get_pk_constraint(name, schema).get("constrained_columns") or []
    if pk:
        yield frozenset(pk)
    for uc in insp.get_unique_constraints(name, schema):
        yield frozenset(uc["column_names"])
    for ix in insp.get_indexes(name, schema):
        cols = ix.get("column_names") or []
        partial = (ix.get("dialect_options") or {}).get("postgresql_where")
        if ix.get("unique") and cols and None not in cols and not partial:
            yield frozenset(c for c in cols if c is not None)


# A column definition's collation in SQLite's CREATE TABLE text (SQLite reflects no collation).
_COLLATE = re.compile(r"\bCOLLATE\s+(\"[^\"]+\"|'[^']+'|`[^`]+`|\[[^\]]+\]|\w+)", re.IGNORECASE)


def _split_top_level(body: str) -> list[str]:
    parts, depth, start, quote = [], 0, 0, ""
    for i, ch in enumerate(body):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'`[":
            quote = "]" if ch == "[" else ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return parts


def _sqlite_column_name(definition: str) -> str | None:
    text = definition.strip()
    if not text:
        return None
    if text[0] in "\"'`[":
        close = "]" if text[0] == "[" else text[0]
        end = text.find(close, 1)
        return text[1:end] if end > 0 else None
    word = text.split(None, 1)[0]
    if word.upper() in ("PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "CONSTRAINT"):
        return None  # a table constraint, not a column
    return word


def sqlite_key_traits(conn: sa.Connection, schema: str | None, name: str) -> KeyTraits:
    """Collations (parsed from the table's SQL) and unique column sets of a SQLite table."""
    q = conn.dialect.identifier_preparer.quote
    master = f"{q(schema)}.sqlite_master" if schema else "sqlite_master"
    sql = conn.execute(
        sa.text(f"SELECT sql FROM {master} WHERE type = 'table' AND name = :n"),  # noqa: S608
        {"n": name},
    ).scalar()
    collate: dict[str, str] = {}
    if sql:
        body = sql[sql.find("(") + 1 : sql.rfind(")")]
        for definition in _split_top_level(body):
            col = _sqlite_column_name(definition)
            found = _COLLATE.search(definition)
            if col is not None and found and found.group(1).strip("\"'`[]").upper() != "BINARY":
                collate[col] = "BINARY"
    prefix = f"{q(schema)}." if schema else ""
    sets: list[frozenset[str]] = []
    info = conn.exec_driver_sql(f"PRAGMA {prefix}table_info({q(name)})").fetchall()
    pk = [str(r[1]) for r in sorted(info, key=lambda r: r[5]) if r[5]]
    if pk:
        sets.append(frozenset(pk))
    for ix in conn.exec_driver_sql(f"PRAGMA {prefix}index_list({q(name)})").fetchall():
        # (seq, name, unique, origin, partial)
        if ix[2] and not ix[4]:
            cols = conn.exec_driver_sql(f"PRAGMA {prefix}index_info({q(ix[1])})").fetchall()
            names = [r[2] for r in cols]
            if names and None not in names:
                sets.append(frozenset(str(n) for n in names))
    return KeyTraits(collate, tuple(sets))
