"""SQL source: SQLAlchemy reflects and builds the queries, ADBC fetches straight into Arrow.

Queries are built with SQLAlchemy (quoted identifiers, bound values, row-value comparisons for
composite keys) over a lightweight table whose columns carry no SQLAlchemy type, so values pass
through raw in both directions: a key read from the database binds back unchanged as a cursor.

The fast path compiles the statement for the dialect and runs it on an ADBC connection
(PostgreSQL, SQLite), which returns an Arrow table without building Python objects. Other
dialects, and SQLite chunks that ADBC cannot type (a number column holding text, as messy ERPs
do), take the SQLAlchemy ``fetchall`` path; a column with mixed value types then comes back as
lossless text rather than failing or dropping values.
"""

from __future__ import annotations

import contextlib
import copy
import decimal
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import URL, Dialect

from syncflow_core.config import SourceRef
from syncflow_core.errors import SourceDatabaseError, SourceError
from syncflow_core.key_order import KeyTraits, key_compare, pg_key_traits, sqlite_key_traits
from syncflow_core.pg_binds import binds_as_settings, set_settings_sql
from syncflow_core.redaction import (
    guard_db_errors,
    is_db_error,
    register_url,
    safe_message,
    translate_db_error,
)
from syncflow_core.sources.base import KeyTuple, boundary_positions, rows_to_table
from syncflow_core.utf8_check import RawText, scalar_value

__all__ = ["SqlSource"]

_ADBC_DIALECTS = ("postgresql", "sqlite")


_AHEAD_BATCHES = 8  # decoded record batches waiting for the consumer (a few MB each)


def _decoded_ahead(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """``reader``'s batches, decoded on a thread while the caller works on the previous ones.

    ADBC decodes the COPY stream in whichever thread asks for the next batch, without the
    GIL; iterated directly, decoding and the caller's work on each batch take turns.
    """
    ready: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(_AHEAD_BATCHES)
    stop = threading.Event()

    def decode() -> None:
        try:
            for rb in reader:
                if stop.is_set():
                    return
                ready.put(rb)
            ready.put(None)
        except BaseException as exc:  # re-raised in the consumer
            ready.put(exc)

    worker = threading.Thread(target=decode, name="syncflow-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a full queue so the thread sees the stop
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.05)
        worker.join()


@guard_db_errors(SourceDatabaseError)
class SqlSource:
    """Rows of SQL tables; see the module docstring for the two read paths."""

    def __init__(self, url: str, schema: str | None = None, *, use_adbc: bool = True) -> None:
        """``url`` is a SQLAlchemy URL; ``schema`` is the default schema of bare table names."""
        register_url(url)
        try:
            self._url: URL = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise SourceError("source: the database URL does not parse (check its scheme and "
                              "that special characters in the password are %-encoded)") from None
        self._schema = schema
        connect_args: dict[str, Any] = {}
        if self._url.get_backend_name() == "postgresql":
            # A SQL_ASCII database would otherwise hand the driver bytes instead of text (and
            # SQLAlchemy fails on the server version at connect); bytes that are not UTF-8
            # become failed records in normalization.
            connect_args["client_encoding"] = "UTF8"
        self._engine = sa.create_engine(self._url, connect_args=connect_args)
        self._use_adbc = use_adbc and self._adbc_uri() is not None
        self._adbc: Any = None
        self._columns: dict[tuple[str | None, str], dict[str, str]] = {}
        self._types: dict[tuple[str | None, str], dict[str, Any]] = {}
        # Columns the database itself declares NOT NULL (a primary key's, typically).
        self._not_null: dict[tuple[str | None, str], set[str]] = {}
        self._traits: dict[tuple[str | None, str], KeyTraits] = {}

    # -- errors -------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self._url.get_backend_name()} source"

    def _error(self, table: str, exc: BaseException) -> SourceError:
        # Driver messages carry the statement, its parameters and the URL: never pass them on.
        where = f"{self._where()}: table {table!r}"
        if is_db_error(exc):
            return translate_db_error(exc, SourceDatabaseError, where)
        return SourceError(f"{where}: {safe_message(exc)}")

    # -- reflection ---------------------------------------------------------------------------

    def _split(self, ref: SourceRef) -> tuple[str | None, str]:
        if not ref.table:
            raise SourceError(f"{self._where()}: the entity's source names no table")
        schema, _, name = ref.table.rpartition(".")
        return (schema or self._schema), name

    def columns(self, ref: SourceRef) -> dict[str, str]:
        """Column -> declared type text (SQLite: the raw declared name, e.g. ``NUMBER(12,2)``)."""
        schema, name = self._split(ref)
        cached = self._columns.get((schema, name))
        if cached is not None:
            return dict(cached)
        try:
            if self._engine.dialect.name == "sqlite":
                cols = self._sqlite_declared(schema, name)
            else:
                insp = sa.inspect(self._engine)
                if not insp.has_table(name, schema=schema):
                    cols = {}
                else:
                    reflected = insp.get_columns(name, schema)
                    cols = {c["name"]: str(c["type"]) for c in reflected}
                    self._types[(schema, name)] = {c["name"]: c["type"] for c in reflected}
                    self._not_null[(schema, name)] = {
                        c["name"] for c in reflected if c.get("nullable") is False
                    }
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(ref.table or name, exc) from None
        if not cols:
            raise SourceError(f"{self._where()}: table {ref.table!r} not found")
        self._columns[(schema, name)] = cols
        return dict(cols)

    def _sqlite_declared(self, schema: str | None, name: str) -> dict[str, str]:
        # SQLAlchemy maps unknown SQLite type names by affinity (NUMBER(12,2) -> NUMERIC);
        # the declared text is what normalization needs, and PRAGMA keeps it verbatim.
        q = self._engine.dialect.identifier_preparer.quote
        prefix = f"{q(schema)}." if schema else ""
        sql = f"PRAGMA {prefix}table_info({q(name)})"
        with self._engine.connect() as conn:
            rows = conn.exec_driver_sql(sql).fetchall()
        # table_info: (cid, name, type, notnull, default, pk). Only an explicit NOT NULL
        # counts: SQLite lets most PRIMARY KEY columns hold NULL.
        self._not_null[(schema, name)] = {str(r[1]) for r in rows if r[3]}
        return {str(r[1]): str(r[2] or "") for r in rows}

    def _table(self, ref: SourceRef) -> sa.TableClause:
        schema, name = self._split(ref)
        names = self.columns(ref)
        # Typed columns only where the server needs them to compare a bound value (PostgreSQL
        # will not compare numeric with text); SQLite columns stay untyped so values pass raw.
        types = self._types.get((schema, name), {})
        return sa.table(name, *(sa.column(c, types.get(c)) for c in names), schema=schema)

    def _bind(self, col: Any, value: Any) -> Any:
        if isinstance(value, RawText):
            # Text whose bytes are not UTF-8 (SQLite TEXT, a PostgreSQL SQL_ASCII database):
            # bound as bytes and turned back into text with exactly those bytes.
            raw: Any = sa.bindparam(None, bytes(value), type_=sa.LargeBinary())
            if self._engine.dialect.name == "postgresql":
                return sa.func.convert_from(raw, sa.literal_column("'SQL_ASCII'"))
            return sa.cast(raw, sa.Text())
        param: Any = sa.bindparam(None, value)
        if isinstance(col.type, sa.types.NullType):
            return param
        typ = col.type
        if getattr(typ, "collation", None):
            # The key side carries the paging collation; a second explicit one would clash.
            typ = copy.copy(typ)
            typ.collation = None
        return sa.cast(param, typ)

    def _col(self, table: sa.TableClause, ref: SourceRef, name: str, role: str) -> Any:
        if name not in table.c:
            raise SourceError(
                f"{self._where()}: table {ref.table!r}: {role} {name!r} is not a column "
                f"(have: {', '.join(table.c.keys())})"
            )
        return table.c[name]

    # -- query building -----------------------------------------------------------------------

    def _stored_as_text(self, ref: SourceRef, name: str) -> bool:
        """True when the column may hold its numbers as text (so ``>`` would compare text)."""
        if self._engine.dialect.name == "sqlite":
            # SQLite's affinity rules: INT -> integer; CHAR/CLOB/TEXT -> text; BLOB or no
            # type -> stored as given (text stays text); REAL/FLOA/DOUB, else -> numeric.
            declared = self.columns(ref).get(name, "").upper()
            if "INT" in declared:
                return False
            return any(t in declared for t in ("CHAR", "CLOB", "TEXT", "BLOB")) or not declared
        typ = self._types.get(self._split(ref), {}).get(name)
        return isinstance(typ, sa.String)

    def _above(self, ref: SourceRef, col: Any, watermark: Any) -> Any:
        """``col > watermark``; numerically when the watermark is a number.

        A row version kept in a text column but declared a number (``type: NUMBER(19)``)
        normalizes to an integer watermark; compared as text, ``'100' < '99'`` would skip
        rows. Text that is not a number is left out on PostgreSQL (its cast would fail the
        query); SQLite's CAST reads it as 0. Either way it was a reject when it was read.
        """
        numeric = isinstance(watermark, int | decimal.Decimal) and not isinstance(watermark, bool)
        if not numeric or not self._stored_as_text(ref, col.name):
            return col > self._bind(col, watermark)
        bound = sa.cast(sa.bindparam(None, watermark), sa.Numeric())
        if self._engine.dialect.name == "postgresql":
            number = sa.case(
                (col.op("~")(r"^\s*[+-]?[0-9]+(\.[0-9]*)?\s*$"), sa.cast(col, sa.Numeric())),
            )
            return number > bound
        return sa.cast(col, sa.Numeric()) > bound

    def _keys(self, table: sa.TableClause, ref: SourceRef, key_fields: Sequence[str]) -> list[Any]:
        if not key_fields:
            raise SourceError(f"{self._where()}: table {ref.table!r}: no key fields given")
        return [self._col(table, ref, k, "key field") for k in key_fields]

    def key_traits(self, ref: SourceRef) -> KeyTraits:
        """The key columns' paging collations and the table's unique column sets (cached)."""
        schema, name = self._split(ref)
        cached = self._traits.get((schema, name))
        if cached is not None:
            return cached
        self.columns(ref)  # a SourceError naming a missing table comes first
        dialect = self._engine.dialect.name
        try:
            with self._engine.connect() as conn:
                if dialect == "postgresql":
                    traits = pg_key_traits(conn, schema, name)
                elif dialect == "sqlite":
                    traits = sqlite_key_traits(conn, schema, name)
                else:
                    traits = KeyTraits()  # paged in the column's own collation
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(ref.table or name, exc) from None
        self._traits[(schema, name)] = traits
        return traits

    def _ordered(self, ref: SourceRef, cols: list[Any]) -> list[Any]:
        """The key columns as paged (in binary order where an index or none allows it, see
        `syncflow_core.key_order`)."""
        collate = self.key_traits(ref).paging_collation([c.name for c in cols])
        return [c.collate(collate[c.name]) if c.name in collate else c for c in cols]

    def _compare(self, cols: list[Any], bound: KeyTuple, op: str, keys: list[Any]) -> Any:
        """``keys op bound``: ``keys`` are the (collated) key expressions of columns ``cols``."""
        if len(bound) != len(cols):
            raise SourceError(f"key bound {bound!r} has {len(bound)} values, key has {len(cols)}")
        params = [self._bind(c, v) for c, v in zip(cols, bound, strict=True)]
        cols = keys
        if len(cols) == 1 or self._engine.dialect.name in (
            "postgresql", "sqlite", "mysql", "mariadb", "oracle"
        ):
            return key_compare(cols, params, op)
        # Dialects without row values: expand the lexicographic comparison.
        terms = []
        for i, c in enumerate(cols):
            eqs = [cols[j] == params[j] for j in range(i)]
            last = (c > params[i]) if op == ">" else (c < params[i])
            terms.append(sa.and_(*eqs, last))
        if op == "<=":
            terms.append(sa.and_(*(c == p for c, p in zip(cols, params, strict=True))))
        return sa.or_(*terms)

    def _range(
        self, cols: list[Any], keys: list[Any], lo: KeyTuple | None, hi: KeyTuple | None
    ) -> list[Any]:
        conds: list[Any] = [c.is_not(None) for c in cols]
        if lo:  # None and () are both "no lower bound"
            conds.append(self._compare(cols, tuple(lo), ">", keys))
        if hi is not None:
            conds.append(self._compare(cols, tuple(hi), "<=", keys))
        return conds

    # -- execution ----------------------------------------------------------------------------

    def _adbc_uri(self) -> str | None:
        backend = self._url.get_backend_name()
        if backend == "postgresql":
            return self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        if backend == "sqlite":
            db = self._url.database
            return db if db and db != ":memory:" else None
        return None

    def _adbc_conn(self) -> Any:
        # autocommit: each query sees the latest data, and no open transaction pins the
        # ERP's snapshot (PostgreSQL vacuum, SQLite's writer).
        if self._adbc is None:
            uri = self._adbc_uri()
            if self._url.get_backend_name() == "postgresql":
                import adbc_driver_postgresql.dbapi as pg

                self._adbc = pg.connect(uri or "", autocommit=True)
            else:
                import adbc_driver_sqlite.dbapi as lite

                self._adbc = lite.connect(uri, autocommit=True)
        return self._adbc

    def _compile(self, stmt: sa.Select[Any]) -> tuple[str, list[Any]]:
        dialect: Dialect = self._engine.dialect
        if dialect.name == "postgresql":
            # libpq's $1, $2 placeholders
            dialect = PGDialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
        compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        values = [compiled.params[name] for name in compiled.positiontup or ()]
        if dialect.name == "postgresql":
            # ADBC cannot bind Decimal; the SQL casts the text back to the column's type.
            values = [str(v) if isinstance(v, decimal.Decimal) else v for v in values]
        return str(compiled), values

    def _fetch(
        self,
        ref: SourceRef,
        stmt: sa.Select[Any],
        on_piece: Callable[[pa.Table], None] | None = None,
    ) -> pa.Table:
        if self._use_adbc:
            settings: list[str] = []
            if self._engine.dialect.name == "postgresql":
                stmt, settings = binds_as_settings(stmt)
            sql, params = self._compile(stmt)
            try:
                cur = self._adbc_conn().cursor()
                try:
                    if settings:
                        cur.execute(set_settings_sql(len(settings)), settings)
                        cur.fetchall()
                    cur.execute(sql, params or None)
                    if on_piece is None:  # `read` passes it only when `streams`
                        return _plain_types(cur.fetch_arrow_table())
                    # ADBC decodes the COPY stream batch by batch: hand each on as it arrives.
                    reader = cur.fetch_record_batch()
                    batches = []
                    for rb in _decoded_ahead(reader):
                        batches.append(rb)
                        on_piece(_plain_types(pa.Table.from_batches([rb])))
                    return _plain_types(pa.Table.from_batches(batches, reader.schema))
                finally:
                    cur.close()
            except Exception as exc:  # ADBC raises its own DB-API errors (and OSError)
                if self._engine.dialect.name != "sqlite":
                    raise self._error(ref.table or "", exc) from None
                # SQLite: ADBC types each column by its first values; mixed storage classes
                # ("12,50" in a NUMBER column) fail, so re-read this chunk the slow, exact way.
        try:
            with self._engine.connect() as conn:
                result = conn.execute(stmt)
                names = list(result.keys())
                rows = result.fetchall()
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(ref.table or "", exc) from None
        return rows_to_table(names, rows)

    @property
    def streams(self) -> bool:
        """True when `read`'s ``on_piece`` sees rows while they arrive (PostgreSQL over ADBC);
        the server then fixes every column's type, the same for every piece."""
        return self._use_adbc and self._engine.dialect.name == "postgresql"

    # -- the Source protocol ------------------------------------------------------------------

    def read(
        self,
        ref: SourceRef,
        key_fields: Sequence[str],
        lo: KeyTuple | None,
        hi: KeyTuple | None,
        chunk_size: int,
        *,
        watermark_field: str | None = None,
        watermark: Any = None,
        on_piece: Callable[[pa.Table], None] | None = None,
        columns: Sequence[str] | None = None,
    ) -> Iterator[pa.Table]:
        """Key-ordered chunks of ``(lo, hi]`` by keyset pagination (see `Source.read`).

        ``columns``: read only these (they must include the key fields); default all.

        ``on_piece`` (PostgreSQL) sees each chunk's rows in pieces while they arrive, before
        the chunk is yielded whole: work on the first rows can start during the read.
        Elsewhere it sees each chunk whole.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if hi == ():
            return  # the empty range below every key
        table = self._table(ref)
        cols = self._keys(table, ref, key_fields)
        keys = self._ordered(ref, cols)
        unique = self.key_traits(ref).is_unique(key_fields)
        extra: list[Any] = []
        if watermark_field is not None and watermark is not None:
            wm = self._col(table, ref, watermark_field, "watermark field")
            extra.append(self._above(ref, wm, watermark))
        limit: Any = sa.literal_column(str(int(chunk_size)))  # our int, not data
        cursor = lo
        while True:
            conds = [*self._range(cols, keys, cursor, hi), *extra]
            picked = [table.c[c] for c in columns] if columns else [table]
            stmt = sa.select(*picked).where(*conds).order_by(*keys)
            if unique:
                stmt = stmt.limit(limit)
            else:
                # Keys may repeat: the chunk runs to its chunk_size-th row's key *and every
                # row sharing it*, or `key > cursor` would skip the rest of that run.
                last = self._nth_key(ref, table, cols, keys, conds, chunk_size)
                if last is not None:
                    stmt = stmt.where(self._compare(cols, last, "<=", keys))
            streamed = on_piece is not None and self.streams
            chunk = self._fetch(ref, stmt, on_piece if streamed else None)
            if chunk.num_rows == 0:
                return
            if on_piece is not None and not streamed:
                on_piece(chunk)
            yield chunk
            if chunk.num_rows < chunk_size:
                return
            last_row = chunk.num_rows - 1
            cursor = tuple(scalar_value(chunk.column(k), last_row) for k in key_fields)

    def _nth_key(
        self,
        ref: SourceRef,
        table: sa.TableClause,
        cols: list[Any],
        keys: list[Any],
        conds: list[Any],
        n: int,
    ) -> KeyTuple | None:
        """The ``n``-th key (in paging order) of the rows matching ``conds``; None: fewer."""
        stmt = (
            sa.select(*cols)
            .where(*conds)
            .order_by(*keys)
            .offset(sa.literal_column(str(int(n) - 1)))  # our ints, not data
            .limit(sa.literal_column("1"))
        )
        got = self._fetch(ref, stmt)
        if got.num_rows == 0:
            return None
        return tuple(scalar_value(got.column(i), 0) for i in range(len(cols)))

    def read_null_keys(
        self, ref: SourceRef, key_fields: Sequence[str], chunk_size: int
    ) -> Iterator[pa.Table]:
        """Rows with a NULL in any key field, in chunks of at most ``chunk_size``.

        Nothing to read (and no scan of the whole table) when the database declares every key
        field NOT NULL.
        """
        table = self._table(ref)
        cols = self._keys(table, ref, key_fields)
        if set(key_fields) <= self._not_null.get(self._split(ref), set()):
            return
        stmt = sa.select(table).where(sa.or_(*(c.is_(None) for c in cols)))
        result = self._fetch(ref, stmt)
        for start in range(0, result.num_rows, chunk_size):
            yield result.slice(start, chunk_size)

    def read_rows_by_key(
        self, ref: SourceRef, key_fields: Sequence[str], keys: Sequence[KeyTuple]
    ) -> pa.Table:
        """The rows whose key is one of ``keys`` (a fresh read of a few rows, e.g. a replay)."""
        table = self._table(ref)
        cols = self._keys(table, ref, key_fields)
        parts: list[pa.Table] = []
        for start in range(0, len(keys), 200):
            conds = [
                sa.and_(*(c == self._bind(c, v) for c, v in zip(cols, key, strict=True)))
                for key in keys[start : start + 200]
            ]
            parts.append(self._fetch(ref, sa.select(table).where(sa.or_(*conds))))
        parts = [p for p in parts if p.num_rows]
        if not parts:
            return pa.table({c.name: pa.array([], pa.string()) for c in table.c})
        return pa.concat_tables(parts, promote_options="permissive")

    def key_bounds(self, ref: SourceRef, key_fields: Sequence[str], n: int) -> list[KeyTuple]:
        """Boundaries at every ``count/n``-th key, in one ROW_NUMBER() pass after a count."""
        table = self._table(ref)
        cols = self._keys(table, ref, key_fields)
        keys = self._ordered(ref, cols)
        present = [c.is_not(None) for c in cols]
        count_stmt = sa.select(sa.func.count().label("n")).select_from(table).where(*present)
        count = int(self._fetch(ref, count_stmt).column(0)[0].as_py())
        positions = boundary_positions(count, n)
        wanted = sorted({p for p in positions if p > 0})
        found: dict[int, KeyTuple] = {}
        if wanted:
            rn = sa.func.row_number().over(order_by=keys).label("sf_rn")
            inner = sa.select(*cols, rn).where(*present).subquery("k")
            stmt = (
                sa.select(*(inner.c[k] for k in key_fields), inner.c.sf_rn)
                .where(inner.c.sf_rn.in_(wanted))
                .order_by(inner.c.sf_rn)
            )
            got = self._fetch(ref, stmt)
            rns = got.column(len(key_fields)).to_pylist()
            for j, r in enumerate(rns):
                found[int(r)] = tuple(
                    scalar_value(got.column(i), j) for i in range(len(key_fields))
                )
        return [found[p] if p > 0 else () for p in positions]

    def read_keys(
        self,
        ref: SourceRef,
        key_fields: Sequence[str],
        lo: KeyTuple | None,
        hi: KeyTuple | None,
    ) -> pa.Table:
        """Only the key columns of every row in ``(lo, hi]``, in one unordered query.

        What the keys-only delete reconciliation reads: no other column, no sort, no paging.
        """
        if hi == ():
            return pa.table({k: pa.array([], pa.string()) for k in key_fields})
        table = self._table(ref)
        cols = self._keys(table, ref, key_fields)
        # The slice's bounds in the order the slice was paged in (`syncflow_core.key_order`).
        keys = self._ordered(ref, cols)
        return self._fetch(ref, sa.select(*cols).where(*self._range(cols, keys, lo, hi)))

    def close(self) -> None:
        """Close the ADBC connection and dispose of the engine's pool."""
        if self._adbc is not None:
            try:
                self._adbc.close()
            finally:
                self._adbc = None
        self._engine.dispose()


_NUMERIC = re.compile(r"^numeric$", re.IGNORECASE)
def _plain_types(table: pa.Table) -> pa.Table:
    """Unwrap ADBC's opaque extension columns (PostgreSQL numeric, uuid, …) to their storage.

    PostgreSQL numeric arrives as exact text; it becomes decimal128 when every value fits the
    widest decimal Arrow can cast to, else stays text (NaN, unconstrained huge scales): exact
    either way.
    """
    if not any(isinstance(f.type, pa.BaseExtensionType) for f in table.schema):
        return table
    cols = []
    for field, col in zip(table.schema, table.columns, strict=True):
        if isinstance(field.type, pa.BaseExtensionType):
            storage = pa.chunked_array(
                [c.storage for c in col.chunks], type=field.type.storage_type
            )
            type_name = getattr(field.type, "type_name", "")
            col = _numeric(storage) if _NUMERIC.match(type_name) else storage
        cols.append(col)
    names = table.schema.names
    return pa.table(cols, names=names)


def _numeric(text: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        casted: pa.ChunkedArray = text.cast(pa.decimal128(38, _scale(text)))
        return casted
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return text


def _scale(text: pa.ChunkedArray) -> int:
    import pyarrow.compute as pc

    frac = pc.utf8_length(pc.replace_substring_regex(text, r"^[^.]*\.?", ""))
    top = pc.max(frac).as_py()
    if top is None or top > 38:
        raise ValueError("scale out of decimal128 range")
    return int(top)
