"""PostgreSQL bulk paths: Arrow -> COPY (psycopg 3) and query -> Arrow (ADBC).

COPY goes in PostgreSQL's binary format when the table's column types are known and match the
data's Arrow types, encoded by pgpq (Arrow -> PostgreSQL binary COPY, in Rust: 1M target rows
in ~0.27 s); the server then skips the text parse of every numeric and timestamp (1M rows:
~1.5 s of server time against ~2.6 s as CSV). Otherwise it goes as Arrow-written CSV
(pyarrow's CSV writer): CSV, not PostgreSQL's text format, because pyarrow quotes every
string and writes NULL as an unquoted empty field, which is exactly how PostgreSQL's CSV COPY
tells an empty string from NULL. Reads go through ADBC, which decodes PostgreSQL's binary
COPY into Arrow in C (about 4x faster than fetchall + pa.array).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pgpq
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from psycopg import sql

from syncflow_core.pg_binds import set_settings_sql
from syncflow_core.targets.ddl import ColumnType

__all__ = [
    "adbc_uri",
    "analyze",
    "binary_encodable",
    "column_defaults",
    "copy_table",
    "create_stage",
    "drop_indexes",
    "drop_stage",
    "fetch_arrow",
    "has_rows",
    "local_setting",
    "lock_exclusive",
    "recreate_indexes",
    "unique_index_on",
]

_COPY_BATCH_ROWS = 100_000
_INDEX_BUILD_MEMORY = "256MB"  # a 1M-key index build sorts in memory instead of spilling


def copy_table(
    dbapi_conn: Any,
    table: str,
    columns: Sequence[str],
    data: pa.Table,
    schema: str | None = None,
    types: Mapping[str, ColumnType] | None = None,
) -> None:
    """COPY ``data`` (columns in ``columns`` order) into ``table`` on a psycopg connection.

    With the table's column ``types``, rows go in PostgreSQL's binary format (pgpq) whenever
    every column's Arrow type has a binary form for its column type (`binary_encodable`);
    otherwise as CSV.
    """
    target = sql.Identifier(schema, table) if schema else sql.Identifier(table)
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    data = data.select(list(columns))
    if types is not None and all(
        c in types and binary_encodable(data.schema.field(c).type, types[c]) for c in columns
    ):
        wire = _wire_types(data)
        encoder = pgpq.ArrowToPostgresBinaryEncoder(wire.schema)
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(target, names)
        with dbapi_conn.cursor() as cur, cur.copy(stmt) as copy:
            copy.write(encoder.write_header())
            for batch in wire.to_batches(max_chunksize=_COPY_BATCH_ROWS):
                copy.write(encoder.write_batch(batch))
            copy.write(encoder.finish())
        return
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(target, names)
    opts = pacsv.WriteOptions(include_header=False)
    zoned = [i for i, f in enumerate(data.schema) if pa.types.is_timestamp(f.type) and f.type.tz]
    for i in zoned:
        # Arrow formats zoned timestamps ~15x slower than naive ones; the naive cast keeps the
        # UTC instant, and the session zone is UTC while copying (restored afterwards).
        naive = pa.timestamp(data.schema.field(i).type.unit)
        data = data.set_column(i, pa.field(data.field(i).name, naive), data.column(i).cast(naive))
    with dbapi_conn.cursor() as cur:
        old_zone = None
        if zoned:
            old_zone = cur.execute("SELECT current_setting('TimeZone')").fetchone()[0]
            cur.execute("SELECT set_config('TimeZone', 'UTC', true)")
        with cur.copy(stmt) as copy:
            for batch in data.to_batches(max_chunksize=_COPY_BATCH_ROWS):
                buf = io.BytesIO()
                pacsv.write_csv(batch, buf, opts)
                copy.write(buf.getbuffer())
        if old_zone is not None:
            cur.execute("SELECT set_config('TimeZone', %s, true)", (old_zone,))


def binary_encodable(t: pa.DataType, column: ColumnType) -> bool:
    """Whether values of Arrow type ``t`` go into ``column`` as binary COPY: pgpq writes each
    Arrow type as one PostgreSQL type, and the server takes only that exact type."""
    kind = column.kind
    if kind == "text":
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))
    if kind == "int":
        return bool(pa.types.is_signed_integer(t)) and t.bit_width == column.size
    if kind == "float":
        return bool(pa.types.is_floating(t)) and t.bit_width == column.size
    if kind == "decimal":
        return bool(pa.types.is_decimal128(t))
    if kind == "date":
        return bool(pa.types.is_date(t))
    if kind in ("timestamp", "timestamptz"):
        # Both are microseconds since 2000-01-01 on the wire (timestamptz: the UTC instant).
        return bool(pa.types.is_timestamp(t) and (t.tz is not None) == (kind == "timestamptz"))
    if kind == "bool":
        return bool(pa.types.is_boolean(t))
    return False


def _wire_types(data: pa.Table) -> pa.Table:
    """Dates as date32 and timestamps in microseconds (the units pgpq writes)."""
    for i, f in enumerate(data.schema):
        want = None
        if pa.types.is_date64(f.type):
            want = pa.date32()
        elif pa.types.is_timestamp(f.type) and f.type.unit != "us":
            want = pa.timestamp("us", f.type.tz)
        if want is not None:
            data = data.set_column(i, pa.field(f.name, want), data.column(i).cast(want))
    return data


def adbc_uri(url: sa.URL) -> str:
    """A libpq URI for ADBC from a SQLAlchemy PostgreSQL URL (any +driver dropped)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def fetch_arrow(
    adbc_conn: Any, query: str, params: Sequence[str], settings: Sequence[str] = ()
) -> pa.Table:
    """Run a ``$n``-parameterized query over ADBC and return its result as Arrow.

    ``settings``: values from `pg_binds.binds_as_settings`, set on the session first.
    """
    with adbc_conn.cursor() as cur:
        if settings:
            cur.execute(set_settings_sql(len(settings)), parameters=tuple(settings))
            cur.fetchall()
        if params:
            cur.execute(query, parameters=tuple(params))
        else:
            cur.execute(query)
        table: pa.Table = cur.fetch_arrow_table()
    return table


def create_stage(dbapi_conn: Any, stage: str, like: str, schema: str | None = None) -> None:
    """A temporary table shaped like ``like`` (dropped at commit at the latest)."""
    source = sql.Identifier(schema, like) if schema else sql.Identifier(like)
    dbapi_conn.execute(
        sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
            sql.Identifier(stage), source
        )
    )


def analyze(dbapi_conn: Any, table: str, columns: Sequence[str] = ()) -> None:
    """Collect planner statistics for a freshly loaded (staging) table.

    With ``columns``, only theirs (plus the table's row count, which ANALYZE always sets).
    """
    q = sql.SQL("ANALYZE {}").format(sql.Identifier(table))
    if columns:
        q = sql.SQL("{} ({})").format(q, sql.SQL(", ").join(map(sql.Identifier, columns)))
    dbapi_conn.execute(q)


def drop_stage(dbapi_conn: Any, stage: str) -> None:
    """Drop a staging table now (frees it before the transaction ends)."""
    dbapi_conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(stage)))


def _qualified(table: str, schema: str | None) -> sql.Identifier:
    return sql.Identifier(schema, table) if schema else sql.Identifier(table)


def has_rows(dbapi_conn: Any, table: str, schema: str | None = None) -> bool:
    """True when ``table`` holds at least one row visible to this connection."""
    q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(_qualified(table, schema))
    return bool(dbapi_conn.execute(q).fetchone()[0])


def lock_exclusive(dbapi_conn: Any, table: str, schema: str | None = None) -> None:
    """ACCESS EXCLUSIVE lock on ``table`` until the transaction ends (waits for others)."""
    dbapi_conn.execute(
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(_qualified(table, schema))
    )


def drop_indexes(dbapi_conn: Any, table: str, schema: str | None = None) -> list[str]:
    """Drop the table's indexes that back no constraint; return their definitions.

    The definitions are PostgreSQL's own (`pg_get_indexdef`), so `recreate_indexes` rebuilds
    exactly what was there, including indexes someone added by hand.
    """
    rows = _plain_indexes(dbapi_conn, table, schema)
    for nsp, idx, _ in rows:
        dbapi_conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(nsp, idx)))
    return [r[2] for r in rows]


def has_plain_indexes(dbapi_conn: Any, table: str, schema: str | None = None) -> bool:
    """True when ``table`` has an index that backs no constraint (what `drop_indexes` drops)."""
    return bool(_plain_indexes(dbapi_conn, table, schema))


def _plain_indexes(dbapi_conn: Any, table: str, schema: str | None) -> list[tuple[str, str, str]]:
    return dbapi_conn.execute(  # type: ignore[no-any-return]
        "SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE i.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
        "ORDER BY c.relname",
        (_qualified(table, schema).as_string(dbapi_conn),),
    ).fetchall()


def unique_index_on(
    dbapi_conn: Any, table: str, column: str, schema: str | None = None
) -> str | None:
    """The name of a valid, plain unique index on exactly ``column`` of ``table``, or None."""
    row = dbapi_conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indisvalid "
        "AND i.indnatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL "
        "AND a.attname = %s ORDER BY c.relname LIMIT 1",
        (_qualified(table, schema).as_string(dbapi_conn), column),
    ).fetchone()
    return None if row is None else str(row[0])


@contextmanager
def local_setting(dbapi_conn: Any, name: str, value: str) -> Iterator[None]:
    """Set a server setting for the statements inside, then put the caller's value back."""
    old = dbapi_conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]
    dbapi_conn.execute("SELECT set_config(%s, %s, true)", (name, value))
    # Not in a `finally`: after an error the transaction is aborted (and rolls the setting
    # back); a statement there would only replace the real error with InFailedSqlTransaction.
    yield
    dbapi_conn.execute("SELECT set_config(%s, %s, true)", (name, old))


@contextmanager
def column_defaults(
    dbapi_conn: Any, table: str, values: dict[str, str], schema: str | None = None
) -> Iterator[None]:
    """Give columns a constant DEFAULT for the statements inside (then none again).

    For a COPY of constant columns (the write marks): the server then need not parse the same
    value once per row; a timestamptz per row costs about 0.35 s of server time per 1M rows.
    DDL takes no parameters, so the values are bound to session settings and the server quotes
    them itself (``format('%L')``); only our quoted identifiers are written into the SQL. It
    alters the table: use it only under the table's exclusive lock.
    """
    target = _qualified(table, schema)
    names = list(values)
    dbapi_conn.execute(
        "SELECT " + ", ".join(
            f"set_config('syncflow.default_{i}', %s, true)" for i in range(len(names))
        ),
        [values[n] for n in names],
    )
    alters = sql.SQL(", ").join(
        sql.SQL("ALTER COLUMN {} SET DEFAULT %L").format(sql.Identifier(n)) for n in names
    )
    template = sql.SQL("ALTER TABLE {} {}").format(target, alters).as_string(dbapi_conn)
    args = sql.SQL(", ").join(
        sql.SQL("current_setting({})").format(sql.Literal(f"syncflow.default_{i}"))
        for i in range(len(names))
    )
    dbapi_conn.execute(
        sql.SQL("DO $syncflow$ BEGIN EXECUTE format({}, {}); END $syncflow$").format(
            sql.Literal(template), args
        )
    )
    yield  # after an error the rollback drops the defaults (see `local_setting`)
    drops = sql.SQL(", ").join(
        sql.SQL("ALTER COLUMN {} DROP DEFAULT").format(sql.Identifier(n)) for n in names
    )
    dbapi_conn.execute(sql.SQL("ALTER TABLE {} {}").format(target, drops))


def recreate_indexes(dbapi_conn: Any, definitions: Sequence[str]) -> None:
    """Run `drop_indexes`' definitions again, with more sort memory for the builds."""
    if not definitions:
        return
    with local_setting(dbapi_conn, "maintenance_work_mem", _INDEX_BUILD_MEMORY):
        for definition in definitions:
            # Catalog text from pg_get_indexdef (identifiers quoted by the server), no user input.
            dbapi_conn.execute(sql.SQL(definition))
