"""programme: parties, projects, lanes, tranches and project events, insert-only

Revision ID: 20261123_0002
Revises: 20261123_0001
Create Date: 2026-11-23 05:49:07.420635
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261123_0002'
down_revision = '20261123_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('parties',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uscc', sa.String(length=18), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('revenue_fen', sa.BigInteger(), nullable=True),
    sa.Column('rnd_intensity', sa.String(length=20), nullable=True),
    sa.Column('innovation_star', sa.Boolean(), nullable=False),
    sa.Column('bad_credit', sa.Boolean(), nullable=False),
    sa.Column('uscc_override_reason', sa.Text(), nullable=True),
    sa.Column('recorded_by', sa.String(length=80), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("kind IN ('enterprise', 'university', 'institute', 'other')", name=op.f('ck_parties_kind_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parties')),
    sa.UniqueConstraint('uscc', name=op.f('uq_parties_uscc'))
    )
    op.create_table('party_relations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('party_uscc', sa.String(length=18), nullable=False),
    sa.Column('related_uscc', sa.String(length=18), nullable=False),
    sa.ForeignKeyConstraint(['party_uscc'], ['parties.uscc'], name=op.f('fk_party_relations_party_uscc_parties')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_party_relations')),
    sa.UniqueConstraint('party_uscc', 'related_uscc', name='uq_party_relations_pair')
    )
    with op.batch_alter_table('party_relations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_party_relations_party_uscc'), ['party_uscc'], unique=False)

    op.create_table('projects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('city', sa.String(length=40), nullable=False),
    sa.Column('rules_version', sa.String(length=60), nullable=False),
    sa.Column('category', sa.String(length=30), nullable=False),
    sa.Column('mode', sa.String(length=10), nullable=False),
    sa.Column('demand_uscc', sa.String(length=18), nullable=False),
    sa.Column('total_investment_fen', sa.BigInteger(), nullable=False),
    sa.Column('approved_grant_fen', sa.BigInteger(), nullable=False),
    sa.Column('budget_year', sa.Integer(), nullable=False),
    sa.Column('approval_date', sa.Date(), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("category IN ('tech_breakthrough', 'commercialization')", name=op.f('ck_projects_category_known')),
    sa.CheckConstraint("mode IN ('jbgs', 'saima')", name=op.f('ck_projects_mode_known')),
    sa.CheckConstraint('approved_grant_fen >= 0', name=op.f('ck_projects_grant_not_negative')),
    sa.CheckConstraint('end_date > start_date', name=op.f('ck_projects_period_positive')),
    sa.ForeignKeyConstraint(['demand_uscc'], ['parties.uscc'], name=op.f('fk_projects_demand_uscc_parties')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_projects_entry_id_journal_entries'), initially='DEFERRED', deferrable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    sa.UniqueConstraint('code', name=op.f('uq_projects_code'))
    )
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_projects_demand_uscc'), ['demand_uscc'], unique=False)

    op.create_table('lanes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_code', sa.String(length=40), nullable=False),
    sa.Column('lane_no', sa.Integer(), nullable=False),
    sa.Column('solver_uscc', sa.String(length=18), nullable=False),
    sa.ForeignKeyConstraint(['project_code'], ['projects.code'], name=op.f('fk_lanes_project_code_projects')),
    sa.ForeignKeyConstraint(['solver_uscc'], ['parties.uscc'], name=op.f('fk_lanes_solver_uscc_parties')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lanes')),
    sa.UniqueConstraint('project_code', 'lane_no', name='uq_lanes_project_lane'),
    sa.UniqueConstraint('project_code', 'solver_uscc', name='uq_lanes_project_solver')
    )
    with op.batch_alter_table('lanes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lanes_solver_uscc'), ['solver_uscc'], unique=False)

    op.create_table('tranches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_code', sa.String(length=40), nullable=False),
    sa.Column('lane_no', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('basis', sa.String(length=20), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('conditions', sa.Text(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['project_code'], ['projects.code'], name=op.f('fk_tranches_project_code_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tranches')),
    sa.UniqueConstraint('project_code', 'lane_no', 'seq', name='uq_tranches_slot')
    )
    op.create_table('project_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.Column('project_code', sa.String(length=40), nullable=False),
    sa.Column('value_date', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('lane_no', sa.Integer(), nullable=True),
    sa.Column('stage', sa.String(length=40), nullable=True),
    sa.Column('passed', sa.Boolean(), nullable=True),
    sa.Column('tranche_id', sa.Integer(), nullable=True),
    sa.Column('reference', sa.String(length=120), nullable=True),
    sa.Column('payload', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_project_events_entry_id_journal_entries'), initially='DEFERRED', deferrable=True),
    sa.ForeignKeyConstraint(['tranche_id'], ['tranches.id'], name=op.f('fk_project_events_tranche_id_tranches')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project_events')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_project_events_entry_id'))
    )
    with op.batch_alter_table('project_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_events_project_code'), ['project_code'], unique=False)

    insert_only_triggers(create=True)


def downgrade() -> None:
    insert_only_triggers(create=False)
    with op.batch_alter_table('project_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_project_events_project_code'))

    op.drop_table('project_events')
    op.drop_table('tranches')
    with op.batch_alter_table('lanes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lanes_solver_uscc'))

    op.drop_table('lanes')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_projects_demand_uscc'))

    op.drop_table('projects')
    with op.batch_alter_table('party_relations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_party_relations_party_uscc'))

    op.drop_table('party_relations')
    op.drop_table('parties')


# Programme rows are insert-only: a change is a new event, never an edit of history.
INSERT_ONLY_TABLES = ("parties", "party_relations", "projects", "lanes", "tranches", "project_events")


def insert_only_triggers(*, create: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in INSERT_ONLY_TABLES:
        if sqlite:
            for action in ("UPDATE", "DELETE"):
                name = f"{table}_no_{action.lower()}"
                if create:
                    op.execute(
                        f"CREATE TRIGGER {name} BEFORE {action} ON {table} BEGIN SELECT RAISE(ABORT, "
                        f"'{table} is insert-only: {action} is refused; record a new event instead'); END"
                    )
                else:
                    op.execute(f"DROP TRIGGER IF EXISTS {name}")
        elif create:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION jiebang_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION jiebang_refuse_change()"
            )
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
