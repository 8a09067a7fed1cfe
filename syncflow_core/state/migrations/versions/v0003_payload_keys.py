"""Payload key ids: failed records' raw rows and waiting children's rows may be AES-GCM sealed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

The id of the key that sealed a payload sits beside it (NULL: stored as plain text).

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sf_failed_records") as batch:
        batch.add_column(sa.Column("payload_key_id", sa.String(32)))
    with op.batch_alter_table("sf_pending_children") as batch:
        batch.add_column(sa.Column("payload_key_id", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("sf_pending_children") as batch:
        batch.drop_column("payload_key_id")
    with op.batch_alter_table("sf_failed_records") as batch:
        batch.drop_column("payload_key_id")
