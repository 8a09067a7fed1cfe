"""The state store's tables as SQLAlchemy Core metadata (the migrations create them).

Primary keys are UUIDv7 as 36-char text: time-ordered (index-friendly) and the same type on
SQLite and PostgreSQL. JSON columns are plain text holding our typed key encoding
(`syncflow_core.keycodec`), so a bound comes back as the same Python type.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

__all__ = [
    "VERSION_TABLE",
    "UtcDateTime",
    "failed_records",
    "metadata",
    "pending_children",
    "slice_cursors",
    "slice_plans",
    "watermarks",
]

# Our own Alembic version table: the state store may share a database with other Alembic users.
VERSION_TABLE = "sf_alembic_version"


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: state timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if dt.tzinfo is None:
            return dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC)


def _id() -> sa.Column[str]:
    return sa.Column("id", sa.String(36), primary_key=True)


metadata = sa.MetaData()

slice_plans = sa.Table(
    "sf_slice_plans",
    metadata,
    _id(),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("slice_key", sa.String(32), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("lo_key", sa.Text),
    sa.Column("hi_key", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("entity", "slice_key", name="uq_sf_slice_plans_entity_slice"),
)

slice_cursors = sa.Table(
    "sf_slice_cursors",
    metadata,
    _id(),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("slice_key", sa.String(32), nullable=False),
    sa.Column("pass_no", sa.Integer, nullable=False),
    sa.Column("last_key", sa.Text),
    sa.Column("rows_done", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("entity", "slice_key", name="uq_sf_slice_cursors_entity_slice"),
    sa.CheckConstraint(
        "status IN ('running', 'paused', 'done')", name="ck_sf_slice_cursors_status"
    ),
)

watermarks = sa.Table(
    "sf_watermarks",
    metadata,
    _id(),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("slice_key", sa.String(32)),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("value_type", sa.String(8), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("value_type IN ('int', 'text')", name="ck_sf_watermarks_value_type"),
)
# NULL slice_key (entity-wide watermark) must be unique too: index the coalesced value.
sa.Index(
    "uq_sf_watermarks_entity_slice",
    watermarks.c.entity,
    sa.func.coalesce(watermarks.c.slice_key, ""),
    unique=True,
)

failed_records = sa.Table(
    "sf_failed_records",
    metadata,
    _id(),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("error_code", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("bridge_ref", sa.Text),
    sa.Column("raw_row", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("first_seen_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.Column("last_run_id", sa.String(64)),
    sa.Column("occurrences", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # The rejected row's BK_HASH (null when the key itself is bad): a sync that loads the key
    # closes the record, and a key whose row is rejected is never soft-deleted.
    sa.Column("key_hash", sa.String(32)),
    sa.Column("closed_at", UtcDateTime),
    sa.Column("closed_run_id", sa.String(64)),
    sa.Column("slice_key", sa.String(32)),  # the slice whose sync rejected the row
    # Written by a batch the reject-ratio gate refused: not "on record" for the gate's next try.
    sa.Column("gate_blocked", sa.Boolean, nullable=False, server_default=sa.false()),
    # Id of the key that sealed raw_row and message (NULL: plain text); `state.payloads`.
    sa.Column("payload_key_id", sa.String(32)),
    sa.UniqueConstraint("fingerprint", name="uq_sf_failed_records_fingerprint"),
    sa.CheckConstraint(
        "status IN ('open', 'replayed', 'resolved')", name="ck_sf_failed_records_status"
    ),
)
sa.Index("ix_sf_failed_records_entity_status", failed_records.c.entity, failed_records.c.status)
sa.Index("ix_sf_failed_records_entity_key", failed_records.c.entity, failed_records.c.key_hash)

pending_children = sa.Table(
    "sf_pending_children",
    metadata,
    _id(),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("key_hash", sa.String(32), nullable=False),
    sa.Column("parent_entity", sa.String(63), nullable=False),
    sa.Column("parent_key", sa.Text, nullable=False),
    sa.Column("parent_key_hash", sa.String(32), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_retry_at", UtcDateTime, nullable=False),
    sa.Column("first_seen_at", UtcDateTime, nullable=False),
    sa.Column("last_attempt_at", UtcDateTime),
    sa.Column("row_json", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(64)),
    # One row per (waiting child, missing parent key): a child missing a department and a
    # manager waits twice; it loads only when both exist (every row carries the whole child).
    sa.Column("payload_key_id", sa.String(32)),  # the key that sealed row_json (NULL: plain)
    sa.UniqueConstraint(
        "entity",
        "key_hash",
        "parent_entity",
        "parent_key_hash",
        name="uq_sf_pending_children_entity_key_parent",
    ),
)
sa.Index(
    "ix_sf_pending_children_parent",
    pending_children.c.parent_entity,
    pending_children.c.parent_key_hash,
)
sa.Index("ix_sf_pending_children_child", pending_children.c.entity, pending_children.c.key_hash)
sa.Index("ix_sf_pending_children_due", pending_children.c.entity, pending_children.c.next_retry_at)
