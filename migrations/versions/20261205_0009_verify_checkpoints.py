"""verify checkpoints: the chain position a full `verify --checkpoint` found sound

Revision ID: 20261205_0009
Revises: 20261205_0007
Create Date: 2026-12-05 02:00:00.000000

``verify_checkpoints`` holds (entry id, chain hash, entries) of each full verification that
passed and was asked to record itself (``jiebang verify --checkpoint``). The audit pack's
integrity section then checks only what came after the latest checkpoint whose hash is still
the journal's hash at that entry; a full ``verify`` still checks everything. The table is not
a projection of the journal (nothing in the chain says a verification happened); it is
insert-only: a checkpoint is never changed, only superseded by a later one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261205_0009'
down_revision = '20261205_0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verify_checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("recorded_by", sa.String(80), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("entry_id >= 1", name=op.f("ck_verify_checkpoints_entry_id_positive")),
    )
    op.create_index("ix_verify_checkpoints_entry_id", "verify_checkpoints", ["entry_id"])


def downgrade() -> None:
    op.drop_index("ix_verify_checkpoints_entry_id", table_name="verify_checkpoints")
    op.drop_table("verify_checkpoints")
