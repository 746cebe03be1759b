"""checkpoints: the chain positions a full verification found sound

Revision ID: 20261205_0008
Revises: 20261205_0007
Create Date: 2026-12-05 12:00:00.000000

* ``verify_checkpoints`` records, each time ``jiebang verify`` passes, the entry it ended at
  and that entry's hash, who ran it, when (the database's clock) and whether the programme
  tables were compared too. ``jiebang verify --since-checkpoint`` and the audit pack's
  integrity section then recompute only the entries after the newest checkpoint.
* Insert-only like the journal: triggers refuse UPDATE, DELETE (and TRUNCATE on
  PostgreSQL), and an insert whose hash is not the hash its entry holds, so a checkpoint can
  only name a position of the chain as it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261205_0008'
down_revision = '20261205_0007'
branch_labels = None
depends_on = None

_REFUSED = "verify checkpoints are insert-only: {op} is refused; a passing jiebang verify records a new one"
_MISMATCH = "checkpoint_must_match_entry: a checkpoint names an entry id and the hash that entry holds"

SQLITE_TRIGGERS = [
    *[
        f"""CREATE TRIGGER verify_checkpoints_no_{action.lower()} BEFORE {action} ON verify_checkpoints
        BEGIN SELECT RAISE(ABORT, '{_REFUSED.format(op=action)}'); END"""
        for action in ("UPDATE", "DELETE")
    ],
    f"""CREATE TRIGGER verify_checkpoints_match_entry BEFORE INSERT ON verify_checkpoints
    WHEN NEW.hash IS NOT (SELECT hash FROM journal_entries WHERE id = NEW.entry_id)
    BEGIN SELECT RAISE(ABORT, '{_MISMATCH}'); END""",
]
SQLITE_TRIGGER_NAMES = ["verify_checkpoints_no_update", "verify_checkpoints_no_delete", "verify_checkpoints_match_entry"]

POSTGRES_TRIGGERS = [
    f"""CREATE FUNCTION jiebang_checkpoint_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        IF NEW.hash IS DISTINCT FROM (SELECT hash FROM journal_entries WHERE id = NEW.entry_id) THEN
          RAISE EXCEPTION '{_MISMATCH}' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
      END IF;
      RAISE EXCEPTION 'verify checkpoints are insert-only: % is refused; a passing jiebang verify records a new one', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
    END $$""",
    """CREATE TRIGGER verify_checkpoints_guard BEFORE INSERT OR UPDATE OR DELETE ON verify_checkpoints
    FOR EACH ROW EXECUTE FUNCTION jiebang_checkpoint_guard()""",
    """CREATE TRIGGER verify_checkpoints_no_truncate BEFORE TRUNCATE ON verify_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION jiebang_checkpoint_guard()""",
]


def upgrade() -> None:
    op.create_table('verify_checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('recorded_by', sa.String(length=80), nullable=False),
    sa.Column('projections_checked', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_verify_checkpoints'))
    )
    op.create_index('ix_verify_checkpoints_entry_id', 'verify_checkpoints', ['entry_id', 'id'], unique=False)
    for statement in SQLITE_TRIGGERS if op.get_bind().dialect.name == "sqlite" else POSTGRES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS verify_checkpoints_guard ON verify_checkpoints")
        op.execute("DROP TRIGGER IF EXISTS verify_checkpoints_no_truncate ON verify_checkpoints")
        op.execute("DROP FUNCTION IF EXISTS jiebang_checkpoint_guard()")
    op.drop_index('ix_verify_checkpoints_entry_id', table_name='verify_checkpoints')
    op.drop_table('verify_checkpoints')
