"""How a SQL source orders and tells apart key values: collations and unique keys, reflected.

Keyset paging is right in any collation as long as ``ORDER BY``, ``key > cursor`` and
``key <= bound`` use one order, and SQL guarantees that. The rest of the pipeline is faster
when the source's order is also the *binary* order (Python's, Arrow's, the target's
``COLLATE "C"``): cleaned keys then keep the order of the source keys and a chunk's deletes come
from a key range of the target. When cleaned keys do not keep the source's order, the pipeline
notices and takes exact, order-free deletes instead (`syncflow_core.key_scope`), slower but
linear.

So the order a key with a linguistic collation (a PostgreSQL database in ``en_US.UTF-8`` or ICU
``en-US``, a SQLite ``COLLATE NOCASE`` column) is paged in depends on its indexes
(`KeyTraits.paging_collation`):

- an index on the key columns in binary order (``ON t (k COLLATE "C")``): binary order, on it;
- else an index in the columns' own collation: their own order, on that index (paging in
  binary order could not use it: every chunk would scan and sort the table, quadratic);
- no index: binary order (every chunk scans either way; binary keeps the fast delete path).

Binary columns get no ``COLLATE`` clause, so their indexes serve the paging as before. Other
dialects (SQL Server, Oracle, MySQL) are paged in the columns' own collation.

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
from typing import Any

import sqlalchemy as sa

__all__ = ["KeyTraits", "key_compare", "pg_collations", "pg_key_traits", "sqlite_key_traits"]

_BINARY_LOCALES = {"C", "POSIX", "C.UTF-8", "C.utf8"}


def key_compare(
    keys: Sequence[sa.ColumnElement[Any]], values: Sequence[sa.ColumnElement[Any]], op: str
) -> sa.ColumnElement[bool]:
    """``keys > values`` (``op`` ``">"``) or ``keys <= values`` (``"<="``) in key order: a
    plain comparison for one column, a row comparison for several.

    A row comparison comes with the leading column's own bound, which it implies: planners
    estimate that one from their statistics and a row comparison not at all. PostgreSQL,
    once a table was ANALYZEd, guessed a quarter of a 2M-row table for each 50k-row chunk's
    range and scanned all of it (300 ms instead of 13 ms: a pass grew with rows squared).
    """
    if op not in (">", "<="):
        raise ValueError(f"unsupported key comparison {op!r}")
    if len(keys) == 1:
        return keys[0] > values[0] if op == ">" else keys[0] <= values[0]
    left, right = sa.tuple_(*keys), sa.tuple_(*values)
    if op == ">":
        return sa.and_(keys[0] >= values[0], left > right)
    return sa.and_(keys[0] <= values[0], left <= right)


@dataclass(frozen=True)
class KeyTraits:
    """What paging a table by its key columns needs to know about them."""

    collate: dict[str, str] = field(default_factory=dict)
    """Column -> its dialect's binary collation, for each column whose collation is not."""
    unique_sets: tuple[frozenset[str], ...] = ()
    """Column sets the database declares unique."""
    indexes: tuple[tuple[tuple[str, bool], ...], ...] = ()
    """Each (non-partial) index: its columns in order, each with "is in binary order"."""

    def paging_collation(self, key_fields: Sequence[str]) -> dict[str, str]:
        """Key column -> collation to page it in (see the module docstring); {} = as is."""
        linguistic = {k: self.collate[k] for k in key_fields if k in self.collate}
        if not linguistic:
            return {}
        keys = list(key_fields)
        serving = [ix for ix in self.indexes if [c for c, _ in ix[: len(keys)]] == keys]
        lead = len(keys)
        if any(all(binary or c not in linguistic for c, binary in ix[:lead]) for ix in serving):
            return linguistic
        return {} if serving else linguistic

    def is_unique(self, key_fields: Sequence[str]) -> bool:
        """Whether the database guarantees no two rows share a value of ``key_fields``."""
        keys = set(key_fields)
        return any(s and s <= keys for s in self.unique_sets)


def pg_key_traits(conn: sa.Connection, schema: str | None, name: str) -> KeyTraits:
    """Collations, unique column sets and indexes of a PostgreSQL table (catalog queries)."""
    default_binary = _pg_default_binary(conn)
    rows = conn.execute(
        sa.text(
            "SELECT i.indexrelid, a.attname, c.collname, c.collprovider, c.collcollate "
            "FROM pg_index i CROSS JOIN LATERAL "
            "unnest(CAST(i.indkey AS int2[]), CAST(i.indcollation AS oid[])) "
            "WITH ORDINALITY AS k(attnum, coll, ord) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "LEFT JOIN pg_collation c ON c.oid = k.coll "
            "WHERE i.indrelid = CAST(:rel AS regclass) AND i.indpred IS NULL "
            "ORDER BY i.indexrelid, k.ord"
        ),
        {"rel": _pg_regclass(conn, schema, name)},
    ).all()
    indexes: dict[int, list[tuple[str, bool]]] = {}
    for ix, col, collname, provider, collcollate in rows:
        binary = collname is None or _pg_binary(collname, provider, collcollate, default_binary)
        indexes.setdefault(int(ix), []).append((str(col), binary))
    return KeyTraits(
        pg_collations(conn, schema, name),
        tuple(_pg_unique_sets(conn, schema, name)),
        tuple(tuple(cols) for cols in indexes.values()),
    )


def _pg_binary(collname: str, provider: str, collcollate: object, default_binary: bool) -> bool:
    if collname == "default":
        return default_binary
    return collname in ("C", "POSIX") or (provider == "c" and str(collcollate) in _BINARY_LOCALES)


def _pg_default_binary(conn: sa.Connection) -> bool:
    provider = "datlocprovider" if _pg_has_locprovider(conn) else "'c'"  # PostgreSQL < 15: libc
    db = conn.execute(
        sa.text(f"SELECT datcollate, {provider} FROM pg_database "  # noqa: S608 (our text)
                "WHERE datname = current_database()")
    ).one()
    return bool(db[1] == "c" and str(db[0]) in _BINARY_LOCALES)


def pg_collations(conn: sa.Connection, schema: str | None, name: str) -> dict[str, str]:
    """Column -> ``"C"`` for each column of a PostgreSQL table whose collation is not binary."""
    default_binary = _pg_default_binary(conn)
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
        if not _pg_binary(collname, provider, collcollate, default_binary):
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
    indexes: list[tuple[tuple[str, bool], ...]] = []
    for ix in conn.exec_driver_sql(f"PRAGMA {prefix}index_list({q(name)})").fetchall():
        # index_list: (seq, name, unique, origin, partial); index_xinfo: (seqno, cid, name,
        # desc, coll, key) with key = 0 for the rowid tail
        if ix[4]:
            continue
        info_rows = conn.exec_driver_sql(f"PRAGMA {prefix}index_xinfo({q(ix[1])})").fetchall()
        cols = [r for r in info_rows if r[5]]
        if not cols or any(r[2] is None for r in cols):
            continue  # an expression index
        indexes.append(tuple((str(r[2]), str(r[4]).upper() == "BINARY") for r in cols))
        if ix[2]:
            sets.append(frozenset(str(r[2]) for r in cols))
    return KeyTraits(collate, tuple(sets), tuple(indexes))
