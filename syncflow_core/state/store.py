"""SyncFlow's runtime state: slice plans and cursors, watermarks, failed records, pending children.

Every write method takes an optional ``conn``: when the state store shares the target's
database, the pipeline passes the target's transaction so a chunk's rows, its failed records,
its pending children and the slice cursor commit together (or not at all). Without ``conn`` a
method runs in its own short transaction. Writes are bulk (one executemany / chunked IN per
call), never a round trip per row of a big batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
import uuid6
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite

from syncflow_core.errors import StateStoreError
from syncflow_core.keycodec import dumps_key, loads_key
from syncflow_core.redaction import db_errors, guard_db_errors
from syncflow_core.slices import SliceBounds
from syncflow_core.state.payloads import PayloadCipher, open_payload
from syncflow_core.state.tables import (
    VERSION_TABLE,
    failed_records,
    pending_children,
    slice_cursors,
    slice_plans,
    watermarks,
)
from syncflow_core.targets.engine import create_sql_engine

__all__ = [
    "FAILED_RECORD_SCHEMA",
    "PENDING_SCHEMA",
    "Cursor",
    "PendingCounts",
    "SliceBounds",
    "StateStore",
    "fingerprint",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant: serializes concurrent `upgrade()` calls on one PostgreSQL database.
_MIGRATION_LOCK = 0x5F5F_5359_4E43
# Arbitrary constant: with hashtext(entity), the advisory lock serializing an entity's planners.
_PLAN_LOCK_CLASS = 0x5346_504C

Key = tuple[Any, ...]
CursorStatus = str  # 'running' | 'paused' | 'done'

_TS = pa.timestamp("us", tz="UTC")
_FAILED = "sf_failed_records"
_PENDING = "sf_pending_children"

FAILED_RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("entity", pa.string()),
        ("stage", pa.string()),
        ("error_code", pa.string()),
        ("message", pa.string()),
        ("bridge_ref", pa.string()),
        ("raw_row", pa.string()),
        ("fingerprint", pa.string()),
        ("first_seen_at", _TS),
        ("last_seen_at", _TS),
        ("last_run_id", pa.string()),
        ("occurrences", pa.int64()),
        ("status", pa.string()),
        ("key_hash", pa.string()),
        ("closed_at", _TS),
        ("closed_run_id", pa.string()),
        ("slice_key", pa.string()),
    ]
)

PENDING_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("entity", pa.string()),
        ("key_hash", pa.string()),
        ("parent_entity", pa.string()),
        ("parent_key", pa.string()),
        ("parent_key_hash", pa.string()),
        ("attempts", pa.int64()),
        ("next_retry_at", _TS),
        ("first_seen_at", _TS),
        ("last_attempt_at", _TS),
        ("row_json", pa.string()),
        ("run_id", pa.string()),
    ]
)


@dataclass(frozen=True)
class Cursor:
    """Progress inside one slice (the seed's ``current_offset`` is ``last_key``)."""

    entity: str
    slice_key: str
    pass_no: int
    last_key: Key | None
    rows_done: int
    status: CursorStatus
    run_id: str | None
    updated_at: datetime


@dataclass(frozen=True)
class PendingCounts:
    """How many children of an entity wait for a parent, and how long they have tried."""

    total: int
    due: int
    by_parent: dict[str, int]
    max_attempts: int


def fingerprint(entity: str, stage: str, error_code: str, raw_row: str) -> str:
    """Identity of a failed record: the same bad row failing the same way is one record."""
    h = hashlib.blake2b(digest_size=16)
    for part in (entity, stage, error_code, raw_row):
        data = part.encode("utf-8")
        # Length-prefix each part so ("ab", "c") and ("a", "bc") differ.
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return str(uuid6.uuid7())


def _values(arr: pa.Array | pa.ChunkedArray | Sequence[Any]) -> list[Any]:
    if isinstance(arr, pa.Array | pa.ChunkedArray):
        values: list[Any] = arr.to_pylist()
        return values
    return list(arr)


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    """A dialect insert that supports ``on_conflict_do_update``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"state store does not support {conn.dialect.name}")


def _chunk_size(conn: sa.Connection) -> int:
    # SQLite builds before 3.32 allow 999 bound variables per statement.
    return 900 if conn.dialect.name == "sqlite" else 10_000


def _chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _wm_encode(value: int | str) -> tuple[str, str]:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"watermark must be int or str, got {type(value).__name__}")
    return (str(value), "int") if isinstance(value, int) else (value, "text")


@cache
def _head_revision() -> str | None:
    """The newest migration shipped with this code (read once per process)."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


@guard_db_errors(StateStoreError)
class StateStore:
    """The state tables in one database (SQLite file or PostgreSQL), migrated by Alembic."""

    def __init__(
        self,
        url: str,
        *,
        _engine: sa.Engine | None = None,
        cipher: PayloadCipher | None = None,
    ) -> None:
        """``cipher``: seal raw rows at rest (`state.payloads`); None keeps them plain."""
        self._owns_engine = _engine is None
        self.engine: sa.Engine = _engine if _engine is not None else create_sql_engine(url)
        self.cipher = cipher

    @classmethod
    def from_engine(cls, engine: sa.Engine, cipher: PayloadCipher | None = None) -> StateStore:
        """A store on an existing engine (e.g. the target's, to share its transactions)."""
        return cls(str(engine.url), _engine=engine, cipher=cipher)

    # ------------------------------------------------------------------ payloads at rest

    def _seal(self, text: str, table: str, entity: str) -> tuple[str, str | None]:
        if self.cipher is None:
            return text, None
        return self.cipher.encrypt(text, f"{table}/{entity}"), self.cipher.active

    def _open(self, text: str, key_id: str | None, table: str, entity: str) -> str:
        return open_payload(self.cipher, text, key_id, f"{table}/{entity}")

    # ------------------------------------------------------------------ lifecycle

    def upgrade(self) -> None:
        """Migrate the database to the newest revision (idempotent; safe to run concurrently
        on PostgreSQL, where an advisory lock serializes migrators).

        A database already at head costs one query: every op of a run opens the store, and
        Alembic's upgrade command (scripts loaded, lock taken) took ~0.1-0.3 s each time.
        """
        if self.revision() == _head_revision():
            return
        cfg = _alembic_config()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @staticmethod
    def head_revision() -> str:
        """The newest migration revision this version of SyncFlow ships."""
        head = _head_revision()
        assert head is not None
        return head

    def revision(self) -> str | None:
        """The revision the database is at (None: never migrated). Reads only (our own version
        table, `tables.VERSION_TABLE`)."""
        with self.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()

    def list_cursors(self, entity: str, conn: sa.Connection | None = None) -> list[Cursor]:
        """Every slice cursor of the entity, by slice key."""
        q = (
            sa.select(slice_cursors)
            .where(slice_cursors.c.entity == entity)
            .order_by(slice_cursors.c.slice_key)
        )
        with self._tx(conn) as c:
            rows = c.execute(q).all()
        return [
            Cursor(r.entity, r.slice_key, r.pass_no, loads_key(r.last_key), r.rows_done,
                   r.status, r.run_id, r.updated_at)
            for r in rows
        ]

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """One transaction on the state database (database errors become `StateStoreError`)."""
        with db_errors(StateStoreError, self._where()), self.engine.begin() as conn:
            yield conn

    def _where(self) -> str:
        return f"{self.engine.dialect.name} state store"

    def ping(self) -> str:
        """Connect and run ``SELECT 1`` (a health check); what answered."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return f"{self.engine.dialect.name} reachable"

    def close(self) -> None:
        """Release the engine's connections (only when this store created the engine)."""
        if self._owns_engine:
            self.engine.dispose()

    @contextmanager
    def _tx(self, conn: sa.Connection | None) -> Iterator[sa.Connection]:
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as own:
                yield own

    # ------------------------------------------------------------------ slice plans

    def save_slice_plan(
        self, entity: str, slices: Sequence[SliceBounds], conn: sa.Connection | None = None
    ) -> None:
        """Store (replace) the entity's slice plan, in the given order (`slices.SliceBounds`)."""
        now = _now()
        rows = [
            {
                "id": _new_id(),
                "entity": entity,
                "slice_key": s.slice_key,
                "position": i,
                "lo_key": dumps_key(s.lo),
                "hi_key": dumps_key(s.hi),
                "created_at": now,
            }
            for i, s in enumerate(slices)
        ]
        with self._tx(conn) as c:
            c.execute(sa.delete(slice_plans).where(slice_plans.c.entity == entity))
            if rows:
                c.execute(sa.insert(slice_plans), rows)

    def claim_slice_plan(self, entity: str, slices: Sequence[SliceBounds]) -> list[SliceBounds]:
        """Store ``slices`` as the entity's plan unless a plan with as many slices is already
        stored; return the plan that is stored now.

        Safe when several runs plan one entity at once (the first runs of two slices): planners
        are serialized, so the first one's plan wins and every caller gets that plan (no
        ``uq_sf_slice_plans_entity_slice`` violation). On PostgreSQL a transaction-scoped
        advisory lock per entity serializes them; on SQLite the database's write lock, taken
        before the read.
        """
        with self.engine.begin() as c:
            if c.dialect.name == "postgresql":
                c.execute(sa.select(sa.func.pg_advisory_xact_lock(
                    _PLAN_LOCK_CLASS, sa.func.hashtext(entity))))
            else:
                # A write statement takes SQLite's write lock (waiting out the busy timeout)
                # even when it matches nothing; reading first could not upgrade safely.
                c.execute(sa.delete(slice_plans).where(sa.false()))
            stored = self.get_slice_plan(entity, conn=c)
            if stored is not None and len(stored) == len(slices):
                return stored
            self.save_slice_plan(entity, slices, conn=c)
        return list(slices)

    def get_slice_plan(
        self, entity: str, conn: sa.Connection | None = None
    ) -> list[SliceBounds] | None:
        """The entity's slices in order, or None when no plan was saved."""
        q = (
            sa.select(slice_plans.c.slice_key, slice_plans.c.lo_key, slice_plans.c.hi_key)
            .where(slice_plans.c.entity == entity)
            .order_by(slice_plans.c.position)
        )
        with self._tx(conn) as c:
            rows = c.execute(q).all()
        if not rows:
            return None
        return [SliceBounds(r.slice_key, loads_key(r.lo_key), loads_key(r.hi_key)) for r in rows]

    # ------------------------------------------------------------------ cursors

    def get_cursor(
        self, entity: str, slice_key: str, conn: sa.Connection | None = None
    ) -> Cursor | None:
        """The slice's cursor, or None before its first committed chunk."""
        q = sa.select(slice_cursors).where(
            slice_cursors.c.entity == entity, slice_cursors.c.slice_key == slice_key
        )
        with self._tx(conn) as c:
            r = c.execute(q).first()
        if r is None:
            return None
        return Cursor(
            entity=r.entity,
            slice_key=r.slice_key,
            pass_no=r.pass_no,
            last_key=loads_key(r.last_key),
            rows_done=r.rows_done,
            status=r.status,
            run_id=r.run_id,
            updated_at=r.updated_at,
        )

    def _upsert_cursor(
        self, conn: sa.Connection, values: dict[str, Any], on_conflict: dict[str, Any]
    ) -> None:
        stmt = _insert(conn, slice_cursors).values(id=_new_id(), **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[slice_cursors.c.entity, slice_cursors.c.slice_key], set_=on_conflict
        )
        conn.execute(stmt)

    def save_cursor(
        self,
        entity: str,
        slice_key: str,
        last_key: Key | None,
        rows_done: int = 0,
        run_id: str | None = None,
        status: CursorStatus = "running",
        conn: sa.Connection | None = None,
    ) -> None:
        """Record progress after a committed chunk (``last_key`` = last key written).

        ``rows_done`` is the chunk's rows: they add up over the pass (a pass that is running or
        paused), and start again with a new pass.
        """
        if status not in ("running", "paused"):
            raise ValueError(f"save_cursor status must be 'running' or 'paused', not {status!r}")
        now = _now()
        common = {
            "last_key": dumps_key(last_key),
            "rows_done": rows_done,
            "status": status,
            "run_id": run_id,
            "updated_at": now,
        }
        in_pass = slice_cursors.c.status.in_(("running", "paused"))
        update = {
            **common,
            "rows_done": sa.case(
                (in_pass, slice_cursors.c.rows_done + rows_done), else_=rows_done
            ),
        }
        with self._tx(conn) as c:
            self._upsert_cursor(
                c, {"entity": entity, "slice_key": slice_key, "pass_no": 1, **common}, update
            )

    def finish_slice(
        self,
        entity: str,
        slice_key: str,
        run_id: str | None = None,
        rows_done: int | None = None,
        conn: sa.Connection | None = None,
    ) -> None:
        """Mark the slice's pass done: status 'done', ``pass_no`` + 1, cursor back to the start."""
        now = _now()
        update: dict[str, Any] = {
            "last_key": None,
            "status": "done",
            "run_id": run_id,
            "updated_at": now,
            "pass_no": slice_cursors.c.pass_no + 1,
        }
        if rows_done is not None:  # the last chunk's rows, added to the pass's as in save_cursor
            in_pass = slice_cursors.c.status.in_(("running", "paused"))
            update["rows_done"] = sa.case(
                (in_pass, slice_cursors.c.rows_done + rows_done), else_=rows_done
            )
        insert = {
            "entity": entity,
            "slice_key": slice_key,
            "pass_no": 2,
            "last_key": None,
            "rows_done": rows_done or 0,
            "status": "done",
            "run_id": run_id,
            "updated_at": now,
        }
        with self._tx(conn) as c:
            self._upsert_cursor(c, insert, update)

    def pause_cursor(
        self,
        entity: str,
        slice_key: str,
        run_id: str | None = None,
        conn: sa.Connection | None = None,
    ) -> bool:
        """Mark a running slice paused (window closed); False when it has no running cursor."""
        stmt = (
            sa.update(slice_cursors)
            .where(
                slice_cursors.c.entity == entity,
                slice_cursors.c.slice_key == slice_key,
                slice_cursors.c.status == "running",
            )
            .values(status="paused", run_id=run_id, updated_at=_now())
        )
        with self._tx(conn) as c:
            return c.execute(stmt).rowcount > 0

    # ------------------------------------------------------------------ watermarks

    def get_watermark(
        self, entity: str, slice_key: str | None = None, conn: sa.Connection | None = None
    ) -> int | str | None:
        """The stored row-version watermark (an int or a str, as it was set), or None."""
        q = sa.select(watermarks.c.value, watermarks.c.value_type).where(
            watermarks.c.entity == entity, self._wm_slice(slice_key)
        )
        with self._tx(conn) as c:
            r = c.execute(q).first()
        if r is None:
            return None
        return int(r.value) if r.value_type == "int" else str(r.value)

    @staticmethod
    def _wm_slice(slice_key: str | None) -> sa.ColumnElement[bool]:
        if slice_key is None:
            return watermarks.c.slice_key.is_(None)
        return watermarks.c.slice_key == slice_key

    def set_watermark(
        self,
        entity: str,
        slice_key: str | None,
        value: int | str,
        conn: sa.Connection | None = None,
    ) -> None:
        """Store the watermark for the entity (``slice_key=None``) or one slice."""
        text, kind = _wm_encode(value)
        now = _now()
        with self._tx(conn) as c:
            done = c.execute(
                sa.update(watermarks)
                .where(watermarks.c.entity == entity, self._wm_slice(slice_key))
                .values(value=text, value_type=kind, updated_at=now)
            ).rowcount
            if not done:
                c.execute(
                    sa.insert(watermarks).values(
                        id=_new_id(), entity=entity, slice_key=slice_key, value=text,
                        value_type=kind, updated_at=now,
                    )
                )

    def delete_watermark(
        self, entity: str, slice_key: str | None, conn: sa.Connection | None = None
    ) -> None:
        """Forget the watermark of the entity (``slice_key=None``) or one slice."""
        with self._tx(conn) as c:
            c.execute(
                sa.delete(watermarks).where(
                    watermarks.c.entity == entity, self._wm_slice(slice_key)
                )
            )

    # ------------------------------------------------------------------ failed records

    def known_failed_records(self, rejects: pa.Table, conn: sa.Connection | None = None) -> int:
        """How many of ``rejects`` are already recorded (the same bad row seen in an earlier run).

        A bad row the ERP still holds comes back every sync (rowversion strategies re-read it
        until it loads); the reject ratio of a batch counts only what is new. A record written
        by a batch the reject-ratio gate refused (``gate_blocked``) is not on record: the
        retry of that batch must be refused as well, not pass because its rejects are known.
        """
        if rejects.num_rows == 0:
            return 0
        fps = _fingerprints(rejects)
        known: set[str] = set()
        with self._tx(conn) as c:
            for part in _chunks(sorted(set(fps)), _chunk_size(c)):
                q = sa.select(failed_records.c.fingerprint).where(
                    failed_records.c.fingerprint.in_(part),
                    failed_records.c.gate_blocked.is_(False),
                )
                known.update(c.execute(q).scalars())
        return sum(1 for fp in fps if fp in known)

    def add_failed_records(
        self,
        rejects: pa.Table,
        run_id: str | None,
        conn: sa.Connection | None = None,
        *,
        gate_blocked: bool = False,
        slice_key: str | None = None,
    ) -> int:
        """Record rejects (`rejects.REJECT_SCHEMA`); return how many *new* records were opened.

        A row already recorded (same entity, stage, error code and raw row) is not doubled: its
        ``occurrences`` grows, ``last_seen_at``/``last_run_id`` move on and it is re-opened.
        ``gate_blocked``: the batch is refused by the reject-ratio gate (see
        `known_failed_records`); a later recording by a batch that loads clears the mark.
        ``slice_key``: the slice being synced (see `open_failed_keys`).
        The optional ``key_hash`` column (the rejected row's BK_HASH) is kept for
        `close_failed_records`.
        """
        if rejects.num_rows == 0:
            return 0
        cols = {
            n: rejects.column(n).to_pylist()
            for n in ("entity", "stage", "error_code", "message", "bridge_ref", "raw_row")
        }
        keys = (
            rejects.column("key_hash").to_pylist()
            if "key_hash" in rejects.column_names
            else [None] * rejects.num_rows
        )
        fps = _fingerprints(rejects)
        now = _now()
        by_fp: dict[str, dict[str, Any]] = {}
        for i, fp in enumerate(fps):
            rec = by_fp.get(fp)
            if rec is not None:
                rec["occurrences"] += 1
                continue
            entity = cols["entity"][i]
            raw_row, key_id = self._seal(cols["raw_row"][i], _FAILED, entity)
            message, _ = self._seal(cols["message"][i], _FAILED, entity)
            by_fp[fp] = {
                "id": _new_id(),
                "entity": entity,
                "stage": cols["stage"][i],
                "error_code": cols["error_code"][i],
                "message": message,
                "bridge_ref": cols["bridge_ref"][i],
                "raw_row": raw_row,
                "payload_key_id": key_id,
                "fingerprint": fp,
                "first_seen_at": now,
                "last_seen_at": now,
                "last_run_id": run_id,
                "occurrences": 1,
                "status": "open",
                "key_hash": keys[i],
                "closed_at": None,
                "closed_run_id": None,
                "slice_key": slice_key,
                "gate_blocked": gate_blocked,
            }
        unique = list(by_fp)
        with self._tx(conn) as c:
            known: set[str] = set()
            for part in _chunks(unique, _chunk_size(c)):
                q = sa.select(failed_records.c.fingerprint).where(
                    failed_records.c.fingerprint.in_(part)
                )
                known.update(c.execute(q).scalars())
            stmt = _insert(c, failed_records)
            stmt = stmt.on_conflict_do_update(
                index_elements=[failed_records.c.fingerprint],
                set_={
                    "occurrences": failed_records.c.occurrences + stmt.excluded.occurrences,
                    "last_seen_at": stmt.excluded.last_seen_at,
                    "last_run_id": stmt.excluded.last_run_id,
                    "message": stmt.excluded.message,
                    "bridge_ref": stmt.excluded.bridge_ref,
                    # Re-sealed under the active key (rotation), with its id beside it.
                    "raw_row": stmt.excluded.raw_row,
                    "payload_key_id": stmt.excluded.payload_key_id,
                    "status": "open",
                    "key_hash": sa.func.coalesce(
                        stmt.excluded.key_hash, failed_records.c.key_hash
                    ),
                    "closed_at": None,
                    "closed_run_id": None,
                    "slice_key": sa.func.coalesce(
                        stmt.excluded.slice_key, failed_records.c.slice_key
                    ),
                    "gate_blocked": stmt.excluded.gate_blocked,
                },
            )
            c.execute(stmt, list(by_fp.values()))
        return len(unique) - len(known)

    def open_failed_keys(
        self, entity: str, slice_key: str, conn: sa.Connection | None = None
    ) -> pa.Array:
        """Key hashes of the entity's open failed records rejected by syncs of ``slice_key``."""
        fr = failed_records.c
        q = (
            sa.select(fr.key_hash)
            .where(
                fr.entity == entity,
                fr.slice_key == slice_key,
                fr.status == "open",
                fr.key_hash.is_not(None),
            )
            .distinct()
        )
        with self._tx(conn) as c:
            return pa.array(list(c.execute(q).scalars()), pa.string())

    def close_failed_records(
        self,
        entity: str,
        key_hashes: pa.Array | pa.ChunkedArray,
        run_id: str,
        conn: sa.Connection | None = None,
    ) -> int:
        """Close the entity's open failed records of these keys; return how many closed.

        Called when a key's row loads (or is found unchanged, or waits for a parent, or leaves
        the source): its earlier failures are over. A closed record has status 'resolved',
        ``closed_at`` and ``closed_run_id``; failing again re-opens it. Cheap when nothing is
        open: the open keys of the entity are read first and only matches are updated.
        """
        if len(key_hashes) == 0:
            return 0
        fr = failed_records.c
        with self._tx(conn) as c:
            open_keys = list(
                c.execute(
                    sa.select(fr.key_hash)
                    .where(fr.entity == entity, fr.status == "open", fr.key_hash.is_not(None))
                    .distinct()
                ).scalars()
            )
            if not open_keys:
                return 0
            given = key_hashes.cast(pa.string())
            found = given.filter(pc.is_in(given, value_set=pa.array(open_keys, pa.string())))
            if isinstance(found, pa.ChunkedArray):
                found = found.combine_chunks()
            hits = pc.unique(found)
            n = 0
            now = _now()
            for part in _chunks(hits.to_pylist(), _chunk_size(c)):
                n += c.execute(
                    sa.update(failed_records)
                    .where(fr.entity == entity, fr.status == "open", fr.key_hash.in_(part))
                    .values(status="resolved", closed_at=now, closed_run_id=run_id)
                ).rowcount
        return n

    def list_failed_records(
        self,
        entity: str | None = None,
        status: str | None = "open",
        conn: sa.Connection | None = None,
    ) -> pa.Table:
        """Failed records (`FAILED_RECORD_SCHEMA`), oldest first; ``None`` filters nothing.

        Sealed payloads (raw row, message) come back decrypted.
        """
        q = sa.select(*[failed_records.c[n] for n in FAILED_RECORD_SCHEMA.names],
                      failed_records.c.payload_key_id)
        if entity is not None:
            q = q.where(failed_records.c.entity == entity)
        if status is not None:
            q = q.where(failed_records.c.status == status)
        q = q.order_by(failed_records.c.first_seen_at, failed_records.c.id)
        with self._tx(conn) as c:
            rows = [self._open_failed(dict(r._mapping)) for r in c.execute(q)]
        return pa.Table.from_pylist(rows, schema=FAILED_RECORD_SCHEMA)

    def _open_failed(self, rec: dict[str, Any]) -> dict[str, Any]:
        key_id = rec.pop("payload_key_id", None)
        if key_id is not None:
            rec["raw_row"] = self._open(rec["raw_row"], key_id, _FAILED, rec["entity"])
            rec["message"] = self._open(rec["message"], key_id, _FAILED, rec["entity"])
        return rec

    def get_failed_record(self, record_id: str) -> dict[str, Any] | None:
        """One failed record (`FAILED_RECORD_SCHEMA` fields), or None."""
        q = sa.select(*[failed_records.c[n] for n in FAILED_RECORD_SCHEMA.names],
                      failed_records.c.payload_key_id).where(failed_records.c.id == record_id)
        with self._tx(None) as c:
            r = c.execute(q).first()
        return None if r is None else self._open_failed(dict(r._mapping))

    def get_pending(self, pending_id: str) -> dict[str, Any] | None:
        """One waiting child's row (`PENDING_SCHEMA` fields), or None."""
        q = sa.select(*[pending_children.c[n] for n in PENDING_SCHEMA.names],
                      pending_children.c.payload_key_id).where(pending_children.c.id == pending_id)
        with self._tx(None) as c:
            r = c.execute(q).first()
        return None if r is None else self._open_pending(dict(r._mapping))

    def _open_pending(self, row: dict[str, Any]) -> dict[str, Any]:
        key_id = row.pop("payload_key_id", None)
        if key_id is not None:
            row["row_json"] = self._open(row["row_json"], key_id, _PENDING, row["entity"])
        return row

    def set_failed_status(
        self,
        ids: pa.Array | pa.ChunkedArray | Sequence[str],
        status: str,
        conn: sa.Connection | None = None,
    ) -> int:
        """Move failed records to 'open', 'replayed' or 'resolved'; return how many changed."""
        if status not in ("open", "replayed", "resolved"):
            raise ValueError(f"unknown failed-record status {status!r}")
        n = 0
        with self._tx(conn) as c:
            for part in _chunks(_values(ids), _chunk_size(c)):
                n += c.execute(
                    sa.update(failed_records)
                    .where(failed_records.c.id.in_(part))
                    .values(status=status)
                ).rowcount
        return n

    # ------------------------------------------------------------------ pending children

    def upsert_pending(self, rows: pa.Table, conn: sa.Connection | None = None) -> int:
        """Queue children waiting for a parent; a child already waiting gets the newer row.

        ``rows`` has entity, key_hash, parent_entity, parent_key (JSON text from
        `keycodec.dumps_key`, or a list column), parent_key_hash, row_json, next_retry_at
        (UTC timestamps) and run_id: one row per (child, missing parent key). The rows given
        for a child *replace* all its waiting rows (a newer version may wait for other
        parents); its attempts and ``first_seen_at`` carry over, so all rows of one child
        share them. Returns how many rows were written.
        """
        if rows.num_rows == 0:
            return 0
        names = ["entity", "key_hash", "parent_entity", "parent_key_hash", "row_json",
                 "next_retry_at", "run_id"]
        missing = [n for n in [*names, "parent_key"] if n not in rows.column_names]
        if missing:
            raise ValueError(f"pending rows lack columns {missing}")
        cols = {n: rows.column(n).to_pylist() for n in names}
        pk_col = rows.column("parent_key")
        parent_keys: list[Any] = pk_col.to_pylist()
        if not pa.types.is_string(pk_col.type) and not pa.types.is_large_string(pk_col.type):
            parent_keys = [dumps_key(tuple(v)) for v in parent_keys]
        now = _now()
        by_key: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        children: dict[str, set[str]] = {}
        for i in range(rows.num_rows):
            k = (cols["entity"][i], cols["key_hash"][i], cols["parent_entity"][i],
                 cols["parent_key_hash"][i])
            children.setdefault(k[0], set()).add(k[1])
            row_json, key_id = self._seal(cols["row_json"][i], _PENDING, k[0])
            # The last occurrence wins: it is the newest version of the child row.
            by_key[k] = {
                "entity": k[0],
                "key_hash": k[1],
                "parent_entity": k[2],
                "parent_key": parent_keys[i],
                "parent_key_hash": k[3],
                "row_json": row_json,
                "payload_key_id": key_id,
                "next_retry_at": cols["next_retry_at"][i],
                "run_id": cols["run_id"][i],
            }
        pc_ = pending_children.c
        with self._tx(conn) as c:
            carried: dict[tuple[str, str], tuple[int, datetime, datetime | None]] = {}
            for entity, keys in children.items():
                for part in _chunks(sorted(keys), _chunk_size(c)):
                    where = sa.and_(pc_.entity == entity, pc_.key_hash.in_(part))
                    q = (
                        sa.select(
                            pc_.key_hash,
                            sa.func.max(pc_.attempts),
                            sa.func.min(pc_.first_seen_at),
                            sa.func.max(pc_.last_attempt_at),
                        )
                        .where(where)
                        .group_by(pc_.key_hash)
                    )
                    for r in c.execute(q).all():
                        first = _as_utc(r[2])
                        last = _as_utc(r[3]) if r[3] is not None else None
                        carried[(entity, r[0])] = (int(r[1]), first, last)
                    c.execute(sa.delete(pending_children).where(where))
            values = []
            for k, v in by_key.items():
                attempts, first_seen, last_attempt = carried.get((k[0], k[1]), (0, now, None))
                # Every row of one child retries together (the newest row's schedule).
                values.append(
                    {
                        **v,
                        "id": _new_id(),
                        "attempts": attempts,
                        "first_seen_at": first_seen,
                        "last_attempt_at": last_attempt,
                    }
                )
            c.execute(sa.insert(pending_children), values)
        return len(by_key)

    def pending_for(
        self,
        entity: str,
        key_hashes: pa.Array | pa.ChunkedArray | Sequence[str],
        conn: sa.Connection | None = None,
    ) -> pa.Table:
        """All waiting rows (`PENDING_SCHEMA`) of these children of ``entity`` (decrypted)."""
        base = sa.select(*[pending_children.c[n] for n in PENDING_SCHEMA.names],
                         pending_children.c.payload_key_id).where(
            pending_children.c.entity == entity
        )
        rows: list[Any] = []
        with self._tx(conn) as c:
            for part in _chunks(_values(key_hashes), _chunk_size(c)):
                rows.extend(c.execute(base.where(pending_children.c.key_hash.in_(part))).all())
        rows.sort(key=lambda r: (r.first_seen_at, r.id))
        opened = [self._open_pending(dict(r._mapping)) for r in rows]
        return pa.Table.from_pylist(opened, schema=PENDING_SCHEMA)

    def due_pending(
        self,
        entity: str,
        now: datetime | None,
        parent_key_hashes: pa.Array | pa.ChunkedArray | Sequence[str] | None = None,
        conn: sa.Connection | None = None,
    ) -> pa.Table:
        """Waiting children of ``entity`` (`PENDING_SCHEMA`), oldest first.

        ``now`` given: only those due (``next_retry_at <= now``); ``None``: all of them.
        ``parent_key_hashes`` given: only those waiting on one of these parent keys.
        """
        base = sa.select(*[pending_children.c[n] for n in PENDING_SCHEMA.names],
                         pending_children.c.payload_key_id).where(
            pending_children.c.entity == entity
        )
        if now is not None:
            base = base.where(pending_children.c.next_retry_at <= now)
        order = (pending_children.c.first_seen_at, pending_children.c.id)
        with self._tx(conn) as c:
            if parent_key_hashes is None:
                rows = list(c.execute(base.order_by(*order)).all())
            else:
                rows = []
                for part in _chunks(_values(parent_key_hashes), _chunk_size(c)):
                    q = base.where(pending_children.c.parent_key_hash.in_(part))
                    rows.extend(c.execute(q).all())
                rows.sort(key=lambda r: (r.first_seen_at, r.id))
        # Decrypted here, so resolution sees plain rows whatever the key configuration.
        opened = [self._open_pending(dict(r._mapping)) for r in rows]
        return pa.Table.from_pylist(opened, schema=PENDING_SCHEMA)

    def bump_pending(
        self,
        ids: pa.Array | pa.ChunkedArray | Sequence[str],
        next_retry_at: datetime,
        conn: sa.Connection | None = None,
    ) -> int:
        """Count one more failed attempt and schedule the next; return rows changed."""
        now = _now()
        n = 0
        with self._tx(conn) as c:
            for part in _chunks(_values(ids), _chunk_size(c)):
                n += c.execute(
                    sa.update(pending_children)
                    .where(pending_children.c.id.in_(part))
                    .values(
                        attempts=pending_children.c.attempts + 1,
                        last_attempt_at=now,
                        next_retry_at=next_retry_at,
                    )
                ).rowcount
        return n

    def bump_pending_children(
        self,
        entity: str,
        key_hashes: pa.Array | pa.ChunkedArray | Sequence[str],
        conn: sa.Connection | None = None,
    ) -> int:
        """Count one more failed attempt for every waiting row of these children."""
        now = _now()
        n = 0
        with self._tx(conn) as c:
            for part in _chunks(_values(key_hashes), _chunk_size(c)):
                n += c.execute(
                    sa.update(pending_children)
                    .where(
                        pending_children.c.entity == entity,
                        pending_children.c.key_hash.in_(part),
                    )
                    .values(attempts=pending_children.c.attempts + 1, last_attempt_at=now)
                ).rowcount
        return n

    def delete_pending(
        self,
        entity: str,
        key_hashes: pa.Array | pa.ChunkedArray | Sequence[str],
        conn: sa.Connection | None = None,
    ) -> int:
        """Stop waiting for these children (loaded or failed); return rows removed."""
        n = 0
        with self._tx(conn) as c:
            for part in _chunks(_values(key_hashes), _chunk_size(c)):
                n += c.execute(
                    sa.delete(pending_children).where(
                        pending_children.c.entity == entity,
                        pending_children.c.key_hash.in_(part),
                    )
                ).rowcount
        return n

    def pending_counts(
        self, entity: str, now: datetime | None = None, conn: sa.Connection | None = None
    ) -> PendingCounts:
        """Totals of the entity's waiting children (for asset checks and metadata)."""
        now = now or _now()
        pc_ = pending_children.c
        due = sa.func.sum(sa.case((pc_.next_retry_at <= now, 1), else_=0))
        q = (
            sa.select(pc_.parent_entity, sa.func.count(), due, sa.func.max(pc_.attempts))
            .where(pc_.entity == entity)
            .group_by(pc_.parent_entity)
        )
        with self._tx(conn) as c:
            rows = c.execute(q).all()
        by_parent = {r[0]: int(r[1]) for r in rows}
        return PendingCounts(
            total=sum(by_parent.values()),
            due=sum(int(r[2] or 0) for r in rows),
            by_parent=by_parent,
            max_attempts=max((int(r[3]) for r in rows), default=0),
        )


def _as_utc(value: Any) -> datetime:
    """An aggregate's timestamp (SQLite returns text for min/max, untouched by the column type)."""
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _fingerprints(rejects: pa.Table) -> list[str]:
    cols = [rejects.column(n).to_pylist() for n in ("entity", "stage", "error_code", "raw_row")]
    return [fingerprint(*vals) for vals in zip(*cols, strict=True)]
