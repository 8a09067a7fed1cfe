"""The SQL target: entity tables with `_bridge_*` tracking columns on SQLite or PostgreSQL.

Writes only what the caller passes (inserts + updates, and key hashes to soft-delete); rows it
is not given are never touched. SQLite uses one executemany of an ``ON CONFLICT`` upsert.
Names are validated (`names.check_name`: any text but control characters, outer spaces and
more than 63 bytes, so ``Order Details`` works) and quoted by SQLAlchemy / psycopg; every value
is a bound parameter. PostgreSQL writes take one of three routes, all inside the caller's
transaction:

- bulk load: >= `_BULK_ROWS` rows into a table that is empty (checked, then locked ACCESS
  EXCLUSIVE and checked again): drop its indexes, COPY straight into it, rebuild them;
- hinted inserts (``insert_mask``): COPY straight into the table under a savepoint; a key that
  exists after all rolls back to the savepoint and those rows take the next route;
- the rest: COPY -> temp staging table -> ``UPDATE ... FROM``, then an anti-join ``INSERT``
  only when some staged key was not updated.

New PostgreSQL tables get ``COLLATE "C"`` hash columns and fillfactor 90 (HOT updates).
Measured on the 2-core dev box (noisy, shared), 1M rows x 10 cols (``bench/target_write.py``)
before -> after: initial write 9.6-15.7 s -> 5.6-6.1 s (prepare 0.4, COPY 3.0-3.6, index build
1.0-1.2); 10 % updates 2.0-3.3 s -> 1.2-1.8 s; 10 % hinted inserts into the filled table 0.5 s.
PostgreSQL's side of COPY dominates: binary COPY (ADBC) was only 10-15 % faster than CSV on
the same data, not enough to pay for a scratch table and a second INSERT ... SELECT pass.

Type storage on SQLite: timestamps are UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` (fixed width,
so text order is time order), dates ISO text, decimals NUMERIC affinity (exact up to 15
significant digits, read back quantized to the column's scale), booleans 0/1.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.base import PGDialect

from syncflow_core.errors import ConfigError, TargetError, TargetSchemaError
from syncflow_core.identity import (
    BATCH_ID,
    BRIDGE_COLUMNS,
    DATA_HASH,
    DELETED_AT,
    KEY_HASH,
    REF,
    ROWVERSION,
    SYNCED_AT,
)
from syncflow_core.key_order import key_compare, pg_collations
from syncflow_core.names import check_name
from syncflow_core.pg_binds import binds_as_settings
from syncflow_core.redaction import db_errors, guard_db_errors
from syncflow_core.rejects import ROW_ID
from syncflow_core.targets import pg_copy
from syncflow_core.targets.ddl import (
    ColumnType,
    from_arrow,
    from_declared,
    from_field,
    from_pg_catalog,
    holds,
    narrowest_scale,
)
from syncflow_core.targets.ddl import sa_type as _sa_type
from syncflow_core.targets.engine import create_sql_engine

__all__ = [
    "BATCH_ID",
    "BRIDGE_COLUMNS",
    "DATA_HASH",
    "DELETED_AT",
    "IDENTITY_COLUMNS",
    "KEY_HASH",
    "REF",
    "ROWVERSION",
    "SYNCED_AT",
    "SqlTarget",
    "WriteCounts",
]

IDENTITY_COLUMNS = (KEY_HASH, DATA_HASH, ROWVERSION, DELETED_AT)
# Set by `write` itself, never taken from the caller's table.
_WRITE_SET = (BATCH_ID, SYNCED_AT, DELETED_AT)

_TEXT = ColumnType("text")
_TSTZ = ColumnType("timestamptz")
_BRIDGE_DEFAULTS = {
    KEY_HASH: _TEXT, DATA_HASH: _TEXT, ROWVERSION: _TEXT, REF: _TEXT,
    BATCH_ID: _TEXT, SYNCED_AT: _TSTZ, DELETED_AT: _TSTZ,
}
_SQLITE_TS = "%Y-%m-%d %H:%M:%S"  # Arrow's %S prints the microseconds of a us timestamp
# SQLite cannot ALTER a column's type; widenings are recorded here (logical type wins).
_SQLITE_TYPES_TABLE = "sf_target_column_types"
_PG_PARAMS = PGDialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
# Hex digests need no linguistic collation: under "C" a btree comparison is a memcmp instead of
# strcoll/ICU (index build on 1M keys 1.07 -> 0.78 s, indexed INSERT 3.8 -> 2.6 s vs en-US ICU).
_HEX_COLUMNS = (KEY_HASH, DATA_HASH)
HEX_WIDTH = 32  # characters of a key/data hash
# Room on each page for updated row versions: an update that changes no indexed column (the
# normal case: the keys stay) is then HOT and writes no index entries (10 % update 1.8 -> 1.2 s).
_PG_FILLFACTOR = 90
# From this many rows a write into an empty PostgreSQL table drops the indexes, COPYs straight
# into the table and rebuilds them (1M rows: 2.9 s COPY + ~1 s build vs 8 s indexed COPY).
_BULK_ROWS = 10_000
# The UPDATE's hash over 100k staged rows (~25 MB) spills to 16 batches under the default 4MB.
_JOIN_MEMORY = "64MB"
# PostgreSQL tables leave a tenth of each page free, so an update can put the new row version
# on the same page (a HOT update) and skip both indexes: 100k updates of a 1M-row table took
# 1.65 s packed full, 1.09 s at 90. Costs about a tenth more disk.
_FILLFACTOR = 90


_DDL_ATTEMPTS = 3
_DDL_BACKOFF_SECONDS = 1.0


def _lock_timed_out(exc: sa.exc.OperationalError) -> bool:
    """PostgreSQL's lock_timeout (SQLSTATE 55P03) or SQLite's busy timeout."""
    if isinstance(exc.orig, psycopg.errors.LockNotAvailable):
        return True
    return "database is locked" in str(exc.orig)


def _require_keys(name: str, cols: Mapping[str, ColumnType], key_fields: Sequence[str]) -> None:
    """A clear error when the configured key is not the existing table's (a renamed key)."""
    missing = [k for k in key_fields if k not in cols]
    if missing:
        have = ", ".join(c for c in cols if c not in BRIDGE_COLUMNS)
        raise TargetSchemaError(
            f"table {name!r}: business key field(s) {missing} are not columns of the existing "
            f"target table (it has: {have}). Was a key column renamed? Key hashes do not "
            "depend on names: rename the target column to match (ALTER TABLE ... RENAME "
            "COLUMN), or sync into a new target_table"
        )


class WriteCounts(NamedTuple):
    """Rows written by one `SqlTarget.write`."""

    upserted: int
    deleted: int


def _ident(value: str, what: str) -> str:
    try:
        return check_name(value, what)
    except ValueError as exc:
        raise ConfigError(f"{exc} (not a valid name)") from None


def _index_name(table: str, suffix: str) -> str:
    name = f"{table}_{suffix}"
    if len(name.encode("utf-8")) <= 63:
        return name
    import hashlib

    tag = hashlib.blake2b(table.encode(), digest_size=4).hexdigest()
    head = table.encode("utf-8")[: 62 - len(suffix) - 9].decode("utf-8", "ignore")
    return f"{head}_{tag}_{suffix}"


def _sqlite_ts(v: datetime) -> str:
    if v.tzinfo is not None:
        v = v.astimezone(UTC).replace(tzinfo=None)
    return v.strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_bind(v: Any) -> Any:
    """A key value as SQLite stores it (see the module docstring)."""
    if isinstance(v, datetime):
        return _sqlite_ts(v)
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    return v


def _text_param(v: Any) -> str:
    """A key value as text for a typed ``CAST($n AS type)`` parameter (ADBC path)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, float):
        return repr(v)
    return str(v)


# Odd 64-bit multipliers that fold a 32-byte hex key into one word (any fold would do: a
# collision only sends the check to the exact path).
_FOLD = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 1], np.uint64)


def _surely_distinct(keys: pa.ChunkedArray) -> bool:
    """True when the (32-char hex) keys are certainly all distinct; False means "ask exactly".

    Distinct folded 64-bit words imply distinct keys; sorting 1M uint64s is ~4x faster than
    `count_distinct` over 1M strings (0.42 s -> 0.1 s).
    """
    arr = keys.combine_chunks()
    n = len(arr)
    if n == 0 or arr.null_count or not pa.types.is_string(arr.type):
        return False
    offsets = np.frombuffer(arr.buffers()[1], np.int32, n + 1, arr.offset * 4)
    if not (np.diff(offsets) == HEX_WIDTH).all():
        return False
    words = np.frombuffer(
        arr.buffers()[2], np.uint64, n * HEX_WIDTH // 8, int(offsets[0])
    ).reshape(n, HEX_WIDTH // 8)
    folded = words[:, 0] * _FOLD[0]
    for i in range(1, HEX_WIDTH // 8):
        folded += words[:, i] * _FOLD[i]
    folded.sort()
    return bool((folded[1:] != folded[:-1]).all())


def _chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _to_arrow(values: Sequence[Any], ct: ColumnType) -> pa.Array:
    """Python values as fetched (SQLite storage or psycopg objects) -> the column's Arrow type."""
    t = ct.arrow()
    vals = list(values)
    if ct.kind in ("timestamptz", "timestamp"):
        if any(isinstance(v, str) for v in vals):
            arr = pa.array(vals, pa.string()).cast(pa.timestamp("us"))
            return arr.cast(t)
        return pa.array(vals, t)
    if ct.kind == "date" and any(isinstance(v, str) for v in vals):
        return pa.array(vals, pa.string()).cast(t)
    if ct.kind == "bool":
        return pa.array([None if v is None else bool(v) for v in vals], t)
    if ct.kind == "decimal":
        if ct.precision == 0:
            return pa.array([None if v is None else str(v) for v in vals], pa.string()).cast(t)
        q = Decimal(1).scaleb(-ct.scale)
        return pa.array(
            [None if v is None else Decimal(str(v)).quantize(q) for v in vals], t
        )
    return pa.array(vals, t)


@guard_db_errors(TargetError)
class SqlTarget:
    """Entity tables in one SQL database (SQLite file or PostgreSQL), optionally in a schema."""

    def __init__(
        self, url: str, schema: str | None = None, *, ddl_lock_timeout: float = 10.0
    ) -> None:
        """``ddl_lock_timeout``: seconds one schema change waits for its table lock."""
        self.schema = None if schema is None else _ident(schema, "schema")
        self.ddl_lock_timeout = ddl_lock_timeout
        self.engine: sa.Engine = create_sql_engine(url)
        self.dialect: str = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"target: unsupported database {self.dialect!r}")
        self._types: dict[str, dict[str, ColumnType]] = {}
        # Per table: the columns `ensure_table` last made sure of (every chunk asks again; a
        # reflection per chunk cost ~10 ms).
        self._ensured: dict[str, dict[str, ColumnType]] = {}
        # Per table: key columns to compare under COLLATE "C" (PostgreSQL columns not binary).
        self._collate: dict[str, dict[str, str]] = {}
        self._adbc: Any = None
        self._adbc_lock = threading.Lock()  # reads may open it from two threads at once
        # ... and may overlap (a chunk's read ahead with the one before): one connection
        # serves one query at a time.
        self._adbc_use = threading.Lock()
        # Tables in a streamed first load: name -> index definitions dropped for it (None
        # until the first bulk write drops them). See `begin_bulk`.
        self._bulk: dict[str, list[str] | None] = {}

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """One transaction on the target (the pipeline writes state in it when shared).

        A database error inside the block (also the commit's) becomes a `TargetError` whose
        text carries no statement, parameter or row value.
        """
        with db_errors(TargetError, self._where()), self.engine.begin() as conn:
            yield conn

    def _where(self) -> str:
        return f"{getattr(self, 'dialect', 'sql')} target"

    def lock_for_write(self, conn: sa.Connection, name: str) -> None:
        """Serialize writers of one table until ``conn``'s transaction ends.

        Dagster's run queue keeps two tagged runs of an entity apart, but a run launched
        without the tag (the UI's "Materialize") must not interleave its writes with another:
        PostgreSQL takes a transaction-scoped advisory lock on the table's name; SQLite already
        admits one writer at a time.
        """
        if self.dialect == "postgresql":
            key = f"syncflow:{self.schema or ''}.{name}"
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key}
            )

    def ping(self) -> str:
        """Connect and run ``SELECT 1`` (a health check); what answered."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return f"{self.engine.dialect.name} reachable"

    def close(self) -> None:
        """Close the ADBC connection and dispose of the engine."""
        if self._adbc is not None:
            self._adbc.close()
            self._adbc = None
        self.engine.dispose()

    @contextmanager
    def _tx(self, conn: sa.Connection | None) -> Iterator[sa.Connection]:
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as own:
                yield own

    def _adbc_conn(self) -> Any:
        with self._adbc_lock:
            if self._adbc is None:
                import adbc_driver_postgresql.dbapi as adbc

                self._adbc = adbc.connect(pg_copy.adbc_uri(self.engine.url), autocommit=True)
            return self._adbc

    def open_reader(self) -> None:
        """Open the connection identity reads use now (PostgreSQL: ADBC, ~0.05-0.1 s with its
        type catalogue), so that the first read does not wait for it. Safe on a thread."""
        if self.dialect == "postgresql":
            self._adbc_conn()

    def _reflect(self, conn: sa.Connection, name: str) -> dict[str, ColumnType]:
        if self.dialect == "postgresql":
            rows = conn.execute(
                sa.text(
                    "SELECT column_name, data_type, numeric_precision, numeric_scale "
                    "FROM information_schema.columns "
                    "WHERE table_schema = coalesce(:s, current_schema()) AND table_name = :t "
                    "ORDER BY ordinal_position"
                ),
                {"s": self.schema, "t": name},
            ).all()
            return {r[0]: from_pg_catalog(r[1], r[2], r[3]) for r in rows}
        info = sa.select(sa.column("name", sa.Text), sa.column("type", sa.Text)).select_from(
            sa.func.pragma_table_info(name, self.schema or "main")
        )
        cols = {r[0]: from_declared(r[1]) for r in conn.execute(info).all()}
        if cols:
            cols.update(self._sqlite_recorded(conn, name))
        return cols

    def _columns(
        self, name: str, conn: sa.Connection | None = None, refresh: bool = False
    ) -> dict[str, ColumnType]:
        _ident(name, "table")
        if refresh or name not in self._types:
            with self._tx(conn) as c:
                cols = self._reflect(c, name)
            if not cols:
                self._types.pop(name, None)
                return {}
            self._types[name] = cols
        return self._types[name]

    def _require(self, name: str, conn: sa.Connection | None = None) -> dict[str, ColumnType]:
        cols = self._columns(name, conn)
        if not cols:
            raise TargetSchemaError(f"target table {name!r} does not exist (ensure_table first)")
        return cols

    def _table(
        self,
        name: str,
        cols: dict[str, ColumnType],
        create: bool = False,
        key_fields: Sequence[str] = (),
    ) -> sa.Table:
        md = sa.MetaData()
        columns = []
        binary = (*_HEX_COLUMNS, *key_fields)
        for c, t in cols.items():
            typ = _sa_type(t, self.dialect)
            # Text keys in binary order: the order the pipeline cuts key ranges in (a memcmp,
            # whatever the database's default collation), and their index serves those ranges.
            if create and self.dialect == "postgresql" and c in binary and t == _TEXT:
                typ = sa.Text(collation="C")
            columns.append(sa.Column(c, typ))
        options: dict[str, Any] = {}
        if create and self.dialect == "postgresql":
            options["postgresql_with"] = {"fillfactor": _PG_FILLFACTOR}
        return sa.Table(name, md, *columns, schema=self.schema, **options)

    # ------------------------------------------------------------------ schema

    def table_exists(self, name: str, *, refresh: bool = True) -> bool:
        """True when the table exists (``refresh=False``: a table seen before is taken to be
        there still, without a round trip)."""
        return bool(self._columns(name, refresh=refresh))

    def arrow_schema(self, name: str) -> pa.Schema:
        """The table's columns as the Arrow types they read back as."""
        cols = self._require(name)
        return pa.schema([(c, t.arrow()) for c, t in cols.items()])

    def ensure_table(
        self, name: str, arrow_schema: pa.Schema, key_fields: Sequence[str]
    ) -> None:
        """Create the table for a normalized Arrow schema, or add its new columns.

        Never drops a column. A type change that would lose data raises `TargetSchemaError`;
        a widening (int -> wide enough NUMERIC, NUMERIC(10,2) -> NUMERIC(12,2), ...) is applied
        (ALTER on PostgreSQL; recorded on SQLite, whose types are affinities). A column that
        holds only NULLs may change type freely.
        """
        _ident(name, "table")
        for k in key_fields:
            _ident(k, "business key field")
        desired: dict[str, ColumnType] = {}
        for f in arrow_schema:
            if f.name == ROW_ID or pa.types.is_null(f.type):
                continue  # hidden row ids never land; all-null columns wait for a real type
            _ident(f.name, "column")
            try:
                desired[f.name] = from_field(f, f"table {name!r}: column {f.name!r}")
            except TypeError as exc:
                raise TargetSchemaError(str(exc)) from None
        for k in key_fields:
            if k not in desired:
                raise TargetSchemaError(
                    f"table {name!r}: business key field {k!r} is not in the data's schema"
                )
        folded: dict[str, str] = {}
        for col in desired:
            other = folded.setdefault(col.lower(), col)
            if other != col:  # SQLite (and SQL Server) would see one column twice
                raise TargetSchemaError(
                    f"table {name!r}: columns {other!r} and {col!r} differ only in case; "
                    "rename one with a field mapping"
                )
        for col, ct in _BRIDGE_DEFAULTS.items():
            desired.setdefault(col, ct)
        if name in self._types and self._ensured.get(name) == desired:
            return  # made sure of already, and the table was seen since (not dropped)
        for attempt in range(1, _DDL_ATTEMPTS + 1):
            try:
                self._apply_schema(name, desired, key_fields)
                break
            except sa.exc.OperationalError as exc:
                if not _lock_timed_out(exc):
                    raise
                if attempt == _DDL_ATTEMPTS:
                    raise TargetSchemaError(
                        f"table {name!r}: a schema change (new or widened columns) waited "
                        f"{self.ddl_lock_timeout:g} s for the table's lock {_DDL_ATTEMPTS} "
                        "times: long-running readers or writers hold it. Retry later, or "
                        "raise target.ddl_lock_timeout_seconds"
                    ) from None
                time.sleep(_DDL_BACKOFF_SECONDS * attempt)
        self._types.pop(name, None)
        self._ensured[name] = desired

    def _apply_schema(
        self, name: str, desired: dict[str, ColumnType], key_fields: Sequence[str]
    ) -> None:
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Parallel runs of one entity's slices may all try to create/alter the table.
                conn.execute(
                    sa.select(sa.func.pg_advisory_xact_lock(
                        sa.func.hashtext(f"syncflow-target:{self.schema}.{name}")))
                )
                # An ALTER waiting for its lock makes every new reader of the table queue
                # behind it: wait a bounded time, then let go (and retry).
                ms = str(max(1, int(self.ddl_lock_timeout * 1000)))
                conn.execute(sa.select(sa.func.set_config("lock_timeout", ms, True)))
            existing = self._reflect(conn, name)
            if not existing:
                self._create(conn, name, desired, key_fields)
                self._collate.pop(name, None)
            else:
                _require_keys(name, existing, key_fields)
                self._evolve(conn, name, existing, desired)

    def _create(
        self,
        conn: sa.Connection,
        name: str,
        cols: dict[str, ColumnType],
        key_fields: Sequence[str],
    ) -> None:
        table = self._table(name, cols, create=True, key_fields=key_fields)
        conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
        if self.dialect == "postgresql":
            quoted = conn.dialect.identifier_preparer.format_table(table)
            conn.execute(sa.text(f"ALTER TABLE {quoted} SET (fillfactor = {_FILLFACTOR})"))
        unique = sa.Index(_index_name(name, "bkh_uq"), table.c[KEY_HASH], unique=True)
        keys = sa.Index(_index_name(name, "bk_ix"), *[table.c[k] for k in key_fields])
        conn.execute(sa.schema.CreateIndex(unique, if_not_exists=True))
        conn.execute(sa.schema.CreateIndex(keys, if_not_exists=True))

    def _evolve(
        self,
        conn: sa.Connection,
        name: str,
        existing: dict[str, ColumnType],
        desired: dict[str, ColumnType],
    ) -> None:
        ops = Operations(MigrationContext.configure(conn))
        for col, want in desired.items():
            have = existing.get(col)
            if have is None:
                ops.add_column(name, sa.Column(col, _sa_type(want, self.dialect)),
                               schema=self.schema)
                continue
            if holds(have, want):
                continue  # the column already takes every value of the new type
            widening = holds(want, have)
            if not widening and self._has_values(conn, name, col):
                raise TargetSchemaError(
                    f"table {name!r}: column {col!r} is {have} in the target but the data is "
                    f"{want}; changing it would lose data (migrate the column by hand or "
                    "fix the entity's normalization)"
                )
            if self.dialect == "postgresql":
                ops.alter_column(
                    name, col, type_=_sa_type(want, self.dialect), schema=self.schema,
                    postgresql_using=None if widening else f"NULL::{want.sql(self.dialect)}",
                )
            else:
                self._sqlite_record(conn, name, col, want)

    def _has_values(self, conn: sa.Connection, name: str, col: str) -> bool:
        t = sa.table(name, sa.column(col), schema=self.schema)
        q = sa.select(sa.literal(1)).select_from(t).where(t.c[col].is_not(None)).limit(1)
        return conn.execute(q).first() is not None

    def _sqlite_types_table(self) -> sa.Table:
        return sa.Table(
            _SQLITE_TYPES_TABLE, sa.MetaData(),
            sa.Column("table_name", sa.Text, primary_key=True),
            sa.Column("column_name", sa.Text, primary_key=True),
            sa.Column("declared", sa.Text, nullable=False),
            schema=self.schema,
        )

    def _sqlite_record(self, conn: sa.Connection, name: str, col: str, ct: ColumnType) -> None:
        t = self._sqlite_types_table()
        conn.execute(sa.schema.CreateTable(t, if_not_exists=True))
        stmt = sqlite.insert(t).values(table_name=name, column_name=col, declared=ct.sql("sqlite"))
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[t.c.table_name, t.c.column_name], set_={"declared": ct.sql("sqlite")}
        ))

    def _sqlite_recorded(self, conn: sa.Connection, name: str) -> dict[str, ColumnType]:
        t = self._sqlite_types_table()
        if not sa.inspect(conn).has_table(_SQLITE_TYPES_TABLE, schema=self.schema):
            return {}
        rows = conn.execute(
            sa.select(t.c.column_name, t.c.declared).where(t.c.table_name == name)
        ).all()
        return {r[0]: from_declared(r[1]) for r in rows}

    # ------------------------------------------------------------------ reads

    def _identity_schema(self, cols: dict[str, ColumnType]) -> pa.Schema:
        return pa.schema([(c, cols[c].arrow()) for c in IDENTITY_COLUMNS])

    def _key_collations(self, name: str) -> dict[str, str]:
        """Columns to compare under an explicit binary collation (tables created before their
        text keys were created ``COLLATE "C"``, in a database with a linguistic default)."""
        found = self._collate.get(name)
        if found is None:
            with self.engine.connect() as conn:
                found = pg_collations(conn, self.schema, name)
            self._collate[name] = found
        return found

    def _key_condition(
        self,
        name: str,
        table: sa.Table,
        cols: dict[str, ColumnType],
        key_fields: Sequence[str],
        bound: tuple[Any, ...],
        op: str,
    ) -> sa.ColumnElement[bool]:
        if len(bound) != len(key_fields):
            raise ValueError(f"key bound {bound!r} does not match key fields {list(key_fields)}")
        binds: list[sa.ColumnElement[Any]] = []
        for f, v in zip(key_fields, bound, strict=True):
            if self.dialect == "postgresql":
                # Text parameter + typed CAST: ADBC needs no type inference from Python values.
                p = sa.bindparam(None, _text_param(v), type_=sa.Text())
                binds.append(sa.cast(p, _sa_type(cols[f], self.dialect)))
            else:
                binds.append(sa.bindparam(None, _sqlite_bind(v), type_=sa.types.NullType()))
        collate = self._key_collations(name) if self.dialect == "postgresql" else {}
        keys = [table.c[k].collate(collate[k]) if k in collate else table.c[k] for k in key_fields]
        return key_compare(keys, binds, op)

    def read_identities(
        self,
        name: str,
        key_fields: Sequence[str],
        lo: tuple[Any, ...] | None,
        hi: tuple[Any, ...] | None,
    ) -> pa.Table:
        """Identities of the rows whose business key is in ``(lo, hi]`` (None = unbounded,
        ``()`` = the bottom of the key space, as in a slice plan), soft-deleted rows
        included: `_bridge_key_hash`, `_bridge_data_hash`,
        `_bridge_rowversion`, `_bridge_deleted_at`."""
        q = self.identities_query(name, key_fields, lo, hi)
        schema = self._identity_schema(self._require(name))
        return schema.empty_table() if q is None else self._fetch(q, schema)

    def identities_query(
        self,
        name: str,
        key_fields: Sequence[str],
        lo: tuple[Any, ...] | None,
        hi: tuple[Any, ...] | None,
    ) -> sa.Select[Any] | None:
        """The query `read_identities` runs (None: the range holds no key)."""
        for k in key_fields:
            _ident(k, "business key field")
        cols = self._require(name)
        _require_keys(name, cols, key_fields)
        if hi == ():  # the bottom of the key space: an empty slice holds no key
            return None
        table = self._table(name, cols)
        conds = []
        if lo:  # None and () are both "no lower bound"
            conds.append(self._key_condition(name, table, cols, key_fields, lo, ">"))
        if hi is not None:
            conds.append(self._key_condition(name, table, cols, key_fields, hi, "<="))
        return sa.select(*[table.c[c] for c in IDENTITY_COLUMNS]).where(*conds)

    def _fetch(self, q: sa.Select[Any], schema: pa.Schema) -> pa.Table:
        if self.dialect == "postgresql":
            q, settings = binds_as_settings(q)  # no parameters left: ADBC's COPY path
            compiled = q.compile(dialect=_PG_PARAMS)
            params = [compiled.params[n] for n in compiled.positiontup or ()]
            conn = self._adbc_conn()
            with self._adbc_use:
                got = pg_copy.fetch_arrow(conn, str(compiled), params, settings)
            return pa.table(
                [got.column(i).cast(f.type) for i, f in enumerate(schema)], schema=schema
            )
        return self._fetch_rows(q, schema)

    def _fetch_rows(self, q: sa.Select[Any], schema: pa.Schema) -> pa.Table:
        """Through the SQLAlchemy driver (SQLite; small PostgreSQL reads with array binds)."""
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        kinds = [from_arrow(f.type) for f in schema]
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
        return pa.table(
            [_to_arrow(v, ct) for v, ct in zip(columns, kinds, strict=True)], schema=schema
        )

    def identities_for(
        self, name: str, key_hashes: pa.Array | pa.ChunkedArray
    ) -> pa.Table:
        """Identities (as `read_identities`) of the rows with these key hashes."""
        cols = self._require(name)
        table = self._table(name, cols)
        hashes = [h for h in pc.unique(key_hashes).to_pylist() if h is not None]
        schema = self._identity_schema(cols)
        picked = [table.c[c] for c in IDENTITY_COLUMNS]
        if self.dialect == "postgresql":
            if not hashes:
                return schema.empty_table()
            # Every hash in one text value (hex holds no comma), split by the server: the query
            # keeps no parameter and takes ADBC's COPY path (an array parameter went through
            # Python rows, ~5x slower on 50k hashes).
            joined = sa.bindparam("h", ",".join(hashes), type_=sa.Text())
            arr = sa.func.string_to_array(joined, sa.literal_column("','"))
            return self._fetch(sa.select(*picked).where(table.c[KEY_HASH] == sa.any_(arr)), schema)
        parts = [
            self._fetch_rows(sa.select(*picked).where(table.c[KEY_HASH].in_(part)), schema)
            for part in _chunks(hashes, 900)
        ]
        return pa.concat_tables(parts) if parts else schema.empty_table()

    def refs_for(self, name: str, key_hashes: Sequence[str]) -> dict[str, str | None]:
        """`_bridge_ref` of the stored rows with these key hashes (a few, for display)."""
        cols = self._require(name)
        table = self._table(name, cols)
        out: dict[str, str | None] = {}
        with self.engine.connect() as conn:
            for part in _chunks(list(key_hashes), 900):
                q = sa.select(table.c[KEY_HASH], table.c[REF]).where(table.c[KEY_HASH].in_(part))
                out.update({r[0]: r[1] for r in conn.execute(q)})
        return out

    def existing_keys(self, name: str, key_hashes: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Per input hash: is there a live (not soft-deleted) row with it?"""
        cols = self._require(name)
        table = self._table(name, cols)
        hashes = [h for h in pc.unique(key_hashes).to_pylist() if h is not None]
        found: list[str] = []
        with self.engine.connect() as conn:
            if self.dialect == "postgresql" and hashes:
                arr = sa.bindparam("h", hashes, type_=postgresql.ARRAY(sa.Text()))
                q = sa.select(table.c[KEY_HASH]).where(
                    table.c[KEY_HASH] == sa.any_(arr), table.c[DELETED_AT].is_(None)
                )
                found.extend(conn.execute(q).scalars())
            else:
                for part in _chunks(hashes, 900):
                    q = sa.select(table.c[KEY_HASH]).where(
                        table.c[KEY_HASH].in_(part), table.c[DELETED_AT].is_(None)
                    )
                    found.extend(conn.execute(q).scalars())
        if isinstance(key_hashes, pa.ChunkedArray):
            key_hashes = key_hashes.combine_chunks()
        result: pa.Array = pc.is_in(key_hashes, value_set=pa.array(found, pa.string()))
        return pc.fill_null(result, False)

    def read_table(self, name: str) -> pa.Table:
        """The whole table as Arrow (tests, demo, small tables)."""
        cols = self._require(name)
        table = self._table(name, cols)
        schema = pa.schema([(c, t.arrow()) for c, t in cols.items()])
        return self._fetch(sa.select(*table.c), schema)

    def row_count(self, name: str, live_only: bool = True) -> int:
        """Rows in the table (without soft-deleted ones unless ``live_only=False``)."""
        table = self._table(name, self._require(name))
        q = sa.select(sa.func.count()).select_from(table)
        if live_only:
            q = q.where(table.c[DELETED_AT].is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def is_empty(self, name: str) -> bool:
        """True when the table does not exist or holds no row at all (stops at the first)."""
        if not self.table_exists(name):
            return True
        table = self._table(name, self._require(name))
        q = sa.select(sa.exists(sa.select(sa.literal(1)).select_from(table)))
        with self.engine.connect() as conn:
            return not conn.execute(q).scalar_one()

    # ------------------------------------------------------------------ streamed first load

    def begin_bulk(self, name: str) -> bool:
        """Start a streamed first load of ``name`` when it is empty (or absent) on PostgreSQL.

        Until `end_bulk`, every `write` with ``bulk=True`` COPYs its rows straight into the
        table with its indexes dropped (dropped by the first such write, once the table
        exists); `end_bulk` builds them once. The caller guarantees what makes that safe: it
        is the table's only writer (one run per entity), its chunks' keys are disjoint, and it
        knows nothing is stored (so it skips identity reads). Returns False where no bulk
        load applies (SQLite, a table with rows): writes then take their usual routes.
        """
        if self.dialect != "postgresql" or not self.is_empty(name):
            return False
        self._bulk[name] = None
        return True

    def in_bulk(self, name: str) -> bool:
        """Whether a streamed first load of ``name`` is under way (`begin_bulk` ... `end_bulk`)."""
        return name in self._bulk

    def end_bulk(self, name: str) -> None:
        """Rebuild the indexes a streamed first load dropped (once, for all its chunks)."""
        definitions = self._bulk.pop(name, None)
        if not definitions:
            return
        with self.engine.begin() as conn:
            raw = conn.connection.driver_connection
            # The indexes went in one transaction with the first bulk chunk: if that chunk
            # failed, the drop was rolled back with it and they are all still there.
            if not pg_copy.has_plain_indexes(raw, name, self.schema):
                pg_copy.recreate_indexes(raw, definitions)

    def ensure_indexes(self, name: str, key_fields: Sequence[str]) -> list[str]:
        """Recreate SyncFlow's own indexes of ``name`` if missing; return those recreated.

        A run killed during a streamed first load leaves its table without indexes (they are
        built at the end); the next sync calls this before it reads or writes the table.
        """
        cols = self._require(name)
        _require_keys(name, cols, key_fields)
        table = self._table(name, cols)
        wanted = [
            sa.Index(_index_name(name, "bkh_uq"), table.c[KEY_HASH], unique=True),
            sa.Index(_index_name(name, "bk_ix"), *[table.c[k] for k in key_fields]),
        ]
        have = {i["name"] for i in sa.inspect(self.engine).get_indexes(name, schema=self.schema)}
        missing = [i for i in wanted if i.name not in have]
        if missing:
            with self.engine.begin() as conn:
                for index in missing:
                    conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
        return [str(i.name) for i in missing]

    def unique_key_index(self, name: str) -> str | None:
        """The valid unique index on exactly `_bridge_key_hash`, if the database has one.

        While it exists the database itself rules out duplicate key hashes, so counting them
        (a GROUP BY over the whole table: ~1 s per 1M rows) can be skipped.
        """
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                raw = conn.connection.driver_connection
                return pg_copy.unique_index_on(raw, name, KEY_HASH, self.schema)
        for index in sa.inspect(self.engine).get_indexes(name, schema=self.schema):
            partial = (index.get("dialect_options") or {}).get("sqlite_where") is not None
            if index.get("unique") and index.get("column_names") == [KEY_HASH] and not partial:
                return str(index["name"])
        return None

    def duplicate_key_hashes(self, name: str) -> int:
        """How many key hashes are held by more than one row (0 unless the index is gone)."""
        table = self._table(name, self._require(name))
        dup = (
            sa.select(table.c[KEY_HASH]).group_by(table.c[KEY_HASH])
            .having(sa.func.count() > 1).subquery()
        )
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(dup)).scalar_one())

    # ------------------------------------------------------------------ writes

    def _prepare(
        self, name: str, upserts: pa.Table, cols: dict[str, ColumnType], *, distinct: bool = False
    ) -> pa.Table:
        drop = [
            c for c in upserts.column_names
            if c == ROW_ID or c in _WRITE_SET
            or (c not in cols and pa.types.is_null(upserts.schema.field(c).type))
        ]
        data = upserts.drop_columns(drop) if drop else upserts
        unknown = [c for c in data.column_names if c not in cols]
        if unknown:
            raise TargetSchemaError(
                f"table {name!r} has no columns {unknown}: call ensure_table with the new schema"
            )
        if KEY_HASH not in data.column_names:
            raise ValueError(f"upserts for {name!r} lack {KEY_HASH}")
        if data.num_rows == 0:
            return data
        # A column the source no longer has (dropped or renamed) is NULL in every row written
        # from now on, as it is in the DATA hash those rows carry; rows not written keep what
        # they had, and their stored hash still describes them.
        for c, ct in cols.items():
            if c not in data.column_names and c not in BRIDGE_COLUMNS:
                data = data.append_column(c, pa.nulls(data.num_rows, ct.arrow()))
        keys = data.column(KEY_HASH)
        if keys.null_count:
            raise ValueError(f"upserts for {name!r}: {keys.null_count} rows without {KEY_HASH}")
        if not distinct:
            n = data.num_rows if _surely_distinct(keys) else pc.count_distinct(keys).as_py()
            if n != data.num_rows:
                raise ValueError(
                    f"upserts for {name!r}: {data.num_rows - n} duplicate {KEY_HASH} values "
                    "(one row per key per write)"
                )
        arrays = []
        for c in data.column_names:
            want = cols[c].arrow()
            try:
                values = data.column(c).cast(want)
                if cols[c].kind == "decimal" and not cols[c].precision:
                    values = narrowest_scale(values)
                arrays.append(values)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise TargetSchemaError(
                    f"table {name!r}: column {c!r} ({cols[c]}) cannot take the data's "
                    f"{data.schema.field(c).type} values: {exc}"
                ) from None
        return pa.table(arrays, names=data.column_names)

    def write(
        self,
        name: str,
        upserts: pa.Table,
        deletes: pa.Array | pa.ChunkedArray,
        batch_id: str,
        synced_at: datetime,
        conn: sa.Connection | None = None,
        *,
        insert_mask: pa.Array | pa.ChunkedArray | None = None,
        bulk: bool = False,
        keys_distinct: bool = False,
    ) -> WriteCounts:
        """Insert/update ``upserts`` and soft-delete the ``deletes`` key hashes.

        Written rows get ``batch_id``/``synced_at`` and are un-deleted; deletes set
        `_bridge_deleted_at` = ``synced_at`` on live rows only. Runs in ``conn``'s transaction
        (or its own).

        ``insert_mask`` (optional, one boolean per upsert row) is a speed hint: True where the
        caller believes no row with that key is stored (the delta's inserts). PostgreSQL COPYs
        those rows straight into the table; should one exist after all, they take the
        update path instead, so a wrong hint costs time, never correctness.

        ``bulk=True`` (inside `begin_bulk` ... `end_bulk`): every row is new; COPY them straight
        into the table, its indexes dropped by the first such write.

        ``keys_distinct=True``: the caller vouches that no key hash repeats in ``upserts`` (the
        delta engine's output), which is otherwise checked (~15 ms per 50k rows).
        """
        if synced_at.tzinfo is None:
            raise ValueError("synced_at must be timezone-aware (UTC)")
        if insert_mask is not None and len(insert_mask) != upserts.num_rows:
            raise ValueError(
                f"insert_mask has {len(insert_mask)} values for {upserts.num_rows} upserts"
            )
        cols = self._require(name, conn)
        data = self._prepare(name, upserts, cols, distinct=keys_distinct)
        if isinstance(deletes, pa.ChunkedArray):
            deletes = deletes.combine_chunks()
        gone = [h for h in pc.unique(deletes).to_pylist() if h is not None]
        table = self._table(name, cols)
        upserted = deleted = 0
        with self._tx(conn) as c:
            if data.num_rows and bulk and name in self._bulk:
                raw = c.connection.driver_connection
                if self._bulk[name] is None:
                    self._bulk[name] = pg_copy.drop_indexes(raw, name, self.schema)
                self._copy_rows(raw, name, data, batch_id, synced_at)
                upserted = data.num_rows
            elif data.num_rows:
                if self.dialect == "postgresql":
                    upserted = self._upsert_pg(
                        c, name, table, data, batch_id, synced_at, insert_mask
                    )
                else:
                    upserted = self._upsert_sqlite(c, table, data, cols, batch_id, synced_at)
            if gone:
                deleted = self._soft_delete(c, table, gone, batch_id, synced_at)
        return WriteCounts(upserted, deleted)

    def _upsert_pg(
        self,
        conn: sa.Connection,
        name: str,
        table: sa.Table,
        data: pa.Table,
        batch_id: str,
        synced_at: datetime,
        insert_mask: pa.Array | pa.ChunkedArray | None,
    ) -> int:
        raw = conn.connection.driver_connection
        n = int(data.num_rows)
        if n >= _BULK_ROWS and self._empty_locked(conn, raw, name):
            # Nobody else can write the table now, and it is empty: every row is an insert.
            definitions = pg_copy.drop_indexes(raw, name, self.schema)
            marks = {BATCH_ID: batch_id, SYNCED_AT: synced_at.isoformat()}
            with pg_copy.column_defaults(raw, name, marks, self.schema):
                # The marks come from the defaults; `_bridge_deleted_at` stays NULL.
                pg_copy.copy_table(raw, name, data.column_names, data, self.schema,
                                   self._columns(name))
            pg_copy.recreate_indexes(raw, definitions)
            return n
        rest = data
        if insert_mask is not None:
            mask = pc.fill_null(insert_mask, False)
            inserts = data.filter(mask)
            if inserts.num_rows:
                rest = data.filter(pc.invert(mask))
                try:
                    with conn.begin_nested():  # a stored key rolls back just this COPY
                        self._copy_rows(raw, name, inserts, batch_id, synced_at)
                except psycopg.errors.UniqueViolation:
                    rest = data  # the hint was wrong: let the update path sort it out
        if rest.num_rows:
            self._stage_upsert(conn, raw, name, table, rest, batch_id, synced_at)
        return n

    def _empty_locked(self, conn: sa.Connection, raw: Any, name: str) -> bool:
        """True when the table is empty, and then locked against other writers.

        The first look runs on another connection so that this transaction holds no lock on
        the table unless it takes the exclusive one (two writers each holding ACCESS SHARE and
        both asking for ACCESS EXCLUSIVE would deadlock). The second look, under the lock, is
        the one that counts.
        """
        with self.engine.connect() as peek:
            if pg_copy.has_rows(peek.connection.driver_connection, name, self.schema):
                return False
        pg_copy.lock_exclusive(raw, name, self.schema)
        return not pg_copy.has_rows(raw, name, self.schema)

    def _copy_rows(
        self, raw: Any, name: str, data: pa.Table, batch_id: str, synced_at: datetime
    ) -> None:
        """COPY rows (and their write marks) straight into the target table."""
        n = data.num_rows
        zeros = pa.array(np.zeros(n, np.int32))
        marks = {
            BATCH_ID: pa.array([batch_id], pa.string()).take(zeros),
            SYNCED_AT: pa.array([synced_at], pa.timestamp("us", tz="UTC")).take(zeros),
            DELETED_AT: pa.nulls(n, pa.timestamp("us", tz="UTC")),
        }
        full = data
        for col, values in marks.items():
            full = full.append_column(col, values)
        pg_copy.copy_table(raw, name, full.column_names, full, self.schema, self._columns(name))

    def _stage_upsert(
        self,
        conn: sa.Connection,
        raw: Any,
        name: str,
        table: sa.Table,
        data: pa.Table,
        batch_id: str,
        synced_at: datetime,
    ) -> None:
        stage = f"sf_stage_{uuid.uuid4().hex[:16]}"
        names = data.column_names
        pg_copy.create_stage(raw, stage, name, self.schema)
        pg_copy.copy_table(raw, stage, names, data, types=self._columns(name))  # LIKE name
        if data.num_rows >= 10_000:
            # The join below needs the row count and the key's statistics, nothing else:
            # sampling every column cost ~0.17 s per 100k staged rows.
            pg_copy.analyze(raw, stage, [KEY_HASH])
        stg = sa.table(stage, *[sa.column(n) for n in names])
        # UPDATE ... FROM + anti-join INSERT instead of one INSERT ... ON CONFLICT: speculative
        # insertion costs an extra index probe per row (about 2x on a 1M-row load). Keys are
        # written by one run at a time (slices are disjoint, runs per entity limited to one);
        # should two writers still race on a key, the unique index fails the later one loudly.
        marks = {BATCH_ID: batch_id, SYNCED_AT: synced_at, DELETED_AT: None}
        upd = (
            sa.update(table)
            .where(table.c[KEY_HASH] == stg.c[KEY_HASH])
            .values({**{n: stg.c[n] for n in names if n != KEY_HASH}, **marks})
        )
        with pg_copy.local_setting(raw, "work_mem", _JOIN_MEMORY):
            updated = conn.execute(upd).rowcount
        if updated > data.num_rows:
            raise RuntimeError(f"{name}: updated {updated} rows for {data.num_rows} keys")
        if updated < data.num_rows:
            # Keys are unique on both sides: when every staged key was updated there is
            # nothing left to insert, and the anti-join's probe per row can be skipped.
            current = table.alias("sf_current")
            sel = sa.select(
                *[stg.c[n] for n in names],
                sa.literal(batch_id, sa.Text()),
                sa.literal(synced_at, postgresql.TIMESTAMP(timezone=True)),
                sa.null(),
            ).where(~sa.exists().where(current.c[KEY_HASH] == stg.c[KEY_HASH]))
            ins = postgresql.insert(table).from_select([*names, *_WRITE_SET], sel)
            conn.execute(ins)
        pg_copy.drop_stage(raw, stage)

    def _upsert_sqlite(
        self,
        conn: sa.Connection,
        table: sa.Table,
        data: pa.Table,
        cols: dict[str, ColumnType],
        batch_id: str,
        synced_at: datetime,
    ) -> int:
        names = [*data.column_names, *_WRITE_SET]
        ins = sqlite.insert(table).values({n: sa.bindparam(f"v{i}") for i, n in enumerate(names)})
        ins = ins.on_conflict_do_update(
            index_elements=[table.c[KEY_HASH]],
            set_={n: ins.excluded[n] for n in names if n != KEY_HASH},
        )
        compiled = ins.compile(dialect=conn.dialect)
        # Vectorized conversion to SQLite's storage form, then one executemany.
        values: dict[str, Any] = {}
        for i, n in enumerate(data.column_names):
            values[f"v{i}"] = self._sqlite_values(data.column(n), cols[n])
        k = len(data.column_names)
        values[f"v{k}"] = itertools.repeat(batch_id)
        values[f"v{k + 1}"] = itertools.repeat(_sqlite_ts(synced_at))
        values[f"v{k + 2}"] = itertools.repeat(None)
        order = compiled.positiontup or []
        rows = list(zip(*[values[p] for p in order]))  # noqa: B905 (repeat() is endless)
        conn.exec_driver_sql(str(compiled), rows)
        return int(data.num_rows)

    @staticmethod
    def _sqlite_values(col: pa.ChunkedArray, ct: ColumnType) -> list[Any]:
        if ct.kind in ("timestamptz", "timestamp"):
            ts = col.cast(pa.timestamp("us", tz="UTC") if ct.kind == "timestamptz"
                          else pa.timestamp("us"))
            out: list[Any] = pc.strftime(ts, _SQLITE_TS).to_pylist()
            return out
        if ct.kind in ("date", "decimal"):
            text: list[Any] = col.cast(pa.string()).to_pylist()
            return text
        values: list[Any] = col.to_pylist()
        return values

    def _soft_delete(
        self,
        conn: sa.Connection,
        table: sa.Table,
        hashes: list[str],
        batch_id: str,
        synced_at: datetime,
    ) -> int:
        at: Any = synced_at if self.dialect == "postgresql" else _sqlite_ts(synced_at)
        values = {DELETED_AT: at, BATCH_ID: batch_id}
        if self.dialect == "postgresql":
            arr = sa.bindparam("h", hashes, type_=postgresql.ARRAY(sa.Text()))
            upd = (
                sa.update(table)
                .where(table.c[KEY_HASH] == sa.any_(arr), table.c[DELETED_AT].is_(None))
                .values(values)
            )
            return int(conn.execute(upd).rowcount)
        n = 0
        for part in _chunks(hashes, 900):
            upd = (
                sa.update(table)
                .where(table.c[KEY_HASH].in_(part), table.c[DELETED_AT].is_(None))
                .values(values)
            )
            n += conn.execute(upd).rowcount
        return n
