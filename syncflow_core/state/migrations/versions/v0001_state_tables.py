"""State tables: slice plans and cursors, watermarks, failed records, pending children.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sf_slice_plans",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("slice_key", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("lo_key", sa.Text),
        sa.Column("hi_key", sa.Text),
        sa.Column("created_at", _ts(), nullable=False),
        sa.UniqueConstraint("entity", "slice_key", name="uq_sf_slice_plans_entity_slice"),
    )
    op.create_table(
        "sf_slice_cursors",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("slice_key", sa.String(32), nullable=False),
        sa.Column("pass_no", sa.Integer, nullable=False),
        sa.Column("last_key", sa.Text),
        sa.Column("rows_done", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.UniqueConstraint("entity", "slice_key", name="uq_sf_slice_cursors_entity_slice"),
        sa.CheckConstraint(
            "status IN ('running', 'paused', 'done')", name="ck_sf_slice_cursors_status"
        ),
    )
    op.create_table(
        "sf_watermarks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("slice_key", sa.String(32)),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("value_type", sa.String(8), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.CheckConstraint("value_type IN ('int', 'text')", name="ck_sf_watermarks_value_type"),
    )
    op.create_index(
        "uq_sf_watermarks_entity_slice",
        "sf_watermarks",
        ["entity", sa.text("coalesce(slice_key, '')")],
        unique=True,
    )
    op.create_table(
        "sf_failed_records",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("bridge_ref", sa.Text),
        sa.Column("raw_row", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("first_seen_at", _ts(), nullable=False),
        sa.Column("last_seen_at", _ts(), nullable=False),
        sa.Column("last_run_id", sa.String(64)),
        sa.Column("occurrences", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.UniqueConstraint("fingerprint", name="uq_sf_failed_records_fingerprint"),
        sa.CheckConstraint(
            "status IN ('open', 'replayed', 'resolved')", name="ck_sf_failed_records_status"
        ),
    )
    op.create_index(
        "ix_sf_failed_records_entity_status", "sf_failed_records", ["entity", "status"]
    )
    op.create_table(
        "sf_pending_children",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("key_hash", sa.String(32), nullable=False),
        sa.Column("parent_entity", sa.String(63), nullable=False),
        sa.Column("parent_key", sa.Text, nullable=False),
        sa.Column("parent_key_hash", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_retry_at", _ts(), nullable=False),
        sa.Column("first_seen_at", _ts(), nullable=False),
        sa.Column("last_attempt_at", _ts()),
        sa.Column("row_json", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.UniqueConstraint(
            "entity", "key_hash", "parent_entity",
            name="uq_sf_pending_children_entity_key_parent",
        ),
    )
    op.create_index(
        "ix_sf_pending_children_parent",
        "sf_pending_children",
        ["parent_entity", "parent_key_hash"],
    )
    op.create_index(
        "ix_sf_pending_children_due", "sf_pending_children", ["entity", "next_retry_at"]
    )


def downgrade() -> None:
    op.drop_table("sf_pending_children")
    op.drop_table("sf_failed_records")
    op.drop_table("sf_watermarks")
    op.drop_table("sf_slice_cursors")
    op.drop_table("sf_slice_plans")
