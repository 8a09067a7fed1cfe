"""Conservation: failed records know their row's key and when they closed; a pending child
waits once per missing parent key.

- ``sf_failed_records.key_hash``: the business-key hash of the rejected row (null when the key
  itself is bad), so a sync that loads the key closes its record and a key whose row is
  rejected is never soft-deleted.
- ``closed_at`` / ``closed_run_id``: when and by which run a record was closed (the row loaded
  later, or left the source).
- ``slice_key``: the slice whose sync rejected the row; when that slice's pass ends, its
  open records whose key left the source close.
- ``gate_blocked``: the record was written by a batch the reject-ratio gate refused; it does
  not count as "already on record" for the next try of that batch.
- ``sf_pending_children`` is unique per (entity, key_hash, parent_entity, parent_key_hash):
  a child referencing two rows of one parent entity (manager and mentor) waits for both.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sf_failed_records") as batch:
        batch.add_column(sa.Column("key_hash", sa.String(32)))
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("closed_run_id", sa.String(64)))
        batch.add_column(sa.Column("slice_key", sa.String(32)))
        batch.add_column(
            sa.Column("gate_blocked", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_index(
        "ix_sf_failed_records_entity_key", "sf_failed_records", ["entity", "key_hash"]
    )
    with op.batch_alter_table("sf_pending_children") as batch:
        batch.drop_constraint("uq_sf_pending_children_entity_key_parent", type_="unique")
        batch.create_unique_constraint(
            "uq_sf_pending_children_entity_key_parent",
            ["entity", "key_hash", "parent_entity", "parent_key_hash"],
        )
    op.create_index("ix_sf_pending_children_child", "sf_pending_children", ["entity", "key_hash"])


def downgrade() -> None:
    op.drop_index("ix_sf_pending_children_child", "sf_pending_children")
    with op.batch_alter_table("sf_pending_children") as batch:
        batch.drop_constraint("uq_sf_pending_children_entity_key_parent", type_="unique")
        batch.create_unique_constraint(
            "uq_sf_pending_children_entity_key_parent", ["entity", "key_hash", "parent_entity"]
        )
    op.drop_index("ix_sf_failed_records_entity_key", "sf_failed_records")
    with op.batch_alter_table("sf_failed_records") as batch:
        batch.drop_column("gate_blocked")
        batch.drop_column("slice_key")
        batch.drop_column("closed_run_id")
        batch.drop_column("closed_at")
        batch.drop_column("key_hash")
