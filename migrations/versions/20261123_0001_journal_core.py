"""journal core: accounts, entries, postings, chain head, and the append-only and balance triggers

Revision ID: 20261123_0001
Revises: 
Create Date: 2026-11-23 05:43:21.433703
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261123_0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('book', sa.String(length=10), nullable=False),
    sa.Column('type', sa.String(length=12), nullable=False),
    sa.Column('project_code', sa.String(length=40), nullable=True),
    sa.Column('lane', sa.String(length=40), nullable=True),
    sa.Column('opened_on', sa.Date(), nullable=False),
    sa.Column('closed_on', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("book IN ('fiscal', 'memo')", name=op.f('ck_accounts_book_known')),
    sa.CheckConstraint("type IN ('Assets', 'Liabilities', 'Equity', 'Income', 'Expenses')", name=op.f('ck_accounts_type_known')),
    sa.CheckConstraint('closed_on IS NULL OR closed_on >= opened_on', name=op.f('ck_accounts_closes_after_open')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('name', name=op.f('uq_accounts_name'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_project_code'), ['project_code'], unique=False)

    op.create_table('chain_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_entry_id', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_chain_head_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_head'))
    )
    op.create_table('journal_entries',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('value_date', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('project_code', sa.String(length=40), nullable=True),
    sa.Column('voucher', sa.String(length=120), nullable=True),
    sa.Column('memo', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('rules_version', sa.String(length=60), nullable=True),
    sa.Column('trace', sa.Text(), nullable=True),
    sa.Column('reverses_id', sa.BigInteger(), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('id >= 1', name=op.f('ck_journal_entries_id_positive')),
    sa.CheckConstraint('reverses_id IS NULL OR reverses_id < id', name=op.f('ck_journal_entries_reverses_earlier')),
    sa.ForeignKeyConstraint(['reverses_id'], ['journal_entries.id'], name=op.f('fk_journal_entries_reverses_id_journal_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_entries')),
    sa.UniqueConstraint('hash', name=op.f('uq_journal_entries_hash')),
    sa.UniqueConstraint('kind', 'voucher', name='uq_journal_entries_kind_voucher'),
    sa.UniqueConstraint('reverses_id', name=op.f('uq_journal_entries_reverses_id'))
    )
    with op.batch_alter_table('journal_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_journal_entries_project_code'), ['project_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_journal_entries_value_date'), ['value_date'], unique=False)

    op.create_table('postings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('value_date', sa.Date(), nullable=False),
    sa.Column('book', sa.String(length=10), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('budget_category', sa.String(length=20), nullable=True),
    sa.Column('fund_source', sa.String(length=20), nullable=True),
    sa.CheckConstraint("book IN ('fiscal', 'memo')", name=op.f('ck_postings_book_known')),
    sa.CheckConstraint('amount_fen <> 0', name=op.f('ck_postings_amount_nonzero')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_postings_account_id_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_postings_entry_id_journal_entries'), initially='DEFERRED', deferrable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_postings'))
    )
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.create_index('ix_postings_account_date', ['account_id', 'value_date', 'amount_fen'], unique=False)
        batch_op.create_index('ix_postings_entry', ['entry_id'], unique=False)

    op.execute("INSERT INTO chain_head (id, last_entry_id, last_hash) VALUES (1, 0, '" + '0' * 64 + "')")
    create_journal_triggers()


def downgrade() -> None:
    drop_journal_triggers()
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.drop_index('ix_postings_entry')
        batch_op.drop_index('ix_postings_account_date')

    op.drop_table('postings')
    with op.batch_alter_table('journal_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_journal_entries_value_date'))
        batch_op.drop_index(batch_op.f('ix_journal_entries_project_code'))

    op.drop_table('journal_entries')
    op.drop_table('chain_head')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_project_code'))

    op.drop_table('accounts')


# The journal is append-only and every entry balances per book, enforced by the database:
#
# * UPDATE and DELETE (and TRUNCATE on PostgreSQL) of entries and postings are refused.
# * Postings are inserted before their entry row; once the entry row exists the entry is
#   sealed and no posting can be added to it. Inserting the entry row checks that its
#   postings balance within each book and carry the entry's value date. (An entry with no
#   postings records a fact that moves no money, such as a passed mid-term check.) So an
#   unbalanced entry can never be committed, on either backend. (The posting's reference to
#   its entry is a deferred foreign key, checked at commit, so orphan postings cannot stay.)
# * SQLite runs the balance check per entry row; PostgreSQL runs it once per INSERT
#   statement over the transition table, which keeps bulk posting set-based.

APPEND_ONLY_MESSAGE = "journal is append-only: {op} of {table} is refused; post a reversing entry instead"
SQLITE_TRIGGERS = [
    *[
        f"""CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table}
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE.format(op=op, table=table)}'); END"""
        for table in ("journal_entries", "postings")
        for op in ("UPDATE", "DELETE")
    ],
    """CREATE TRIGGER postings_seal BEFORE INSERT ON postings
    WHEN EXISTS (SELECT 1 FROM journal_entries WHERE id = NEW.entry_id)
    BEGIN SELECT RAISE(ABORT, 'entry_must_be_sealed: postings cannot be added to an entry already written'); END""",
    """CREATE TRIGGER postings_book_matches_account BEFORE INSERT ON postings
    WHEN NEW.book IS NOT (SELECT book FROM accounts WHERE id = NEW.account_id)
    BEGIN SELECT RAISE(ABORT, 'posting_book_must_match_account: a posting is in a different book than its account'); END""",
    """CREATE TRIGGER journal_entries_balance AFTER INSERT ON journal_entries
    WHEN EXISTS (SELECT 1 FROM postings WHERE entry_id = NEW.id GROUP BY book HAVING SUM(amount_fen) <> 0)
      OR EXISTS (SELECT 1 FROM postings WHERE entry_id = NEW.id AND value_date <> NEW.value_date)
    BEGIN SELECT RAISE(ABORT, 'entry_must_balance_per_book: an entry does not balance within a book, or has postings dated otherwise'); END""",
]
SQLITE_TRIGGER_NAMES = [
    "journal_entries_no_update", "journal_entries_no_delete", "postings_no_update", "postings_no_delete",
    "postings_seal", "postings_book_matches_account", "journal_entries_balance",
]

POSTGRES_TRIGGERS = [
    """CREATE FUNCTION jiebang_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'journal is append-only: % of % is refused; post a reversing entry instead',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END $$""",
    *[
        f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION jiebang_refuse_change()"""
        for table in ("journal_entries", "postings")
    ],
    *[
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION jiebang_refuse_change()"""
        for table in ("journal_entries", "postings")
    ],
    """CREATE FUNCTION jiebang_posting_seal() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM journal_entries WHERE id = NEW.entry_id) THEN
        RAISE EXCEPTION 'entry_must_be_sealed: postings cannot be added to entry % already written', NEW.entry_id
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      IF NEW.book IS DISTINCT FROM (SELECT book FROM accounts WHERE id = NEW.account_id) THEN
        RAISE EXCEPTION 'posting_book_must_match_account: posting to account % is in book %', NEW.account_id, NEW.book
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NEW;
    END $$""",
    """CREATE TRIGGER postings_seal BEFORE INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION jiebang_posting_seal()""",
    """CREATE FUNCTION jiebang_entries_balance() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE bad bigint;
    BEGIN
      SELECT n.id INTO bad FROM new_entries n
      WHERE EXISTS (SELECT 1 FROM postings p WHERE p.entry_id = n.id GROUP BY p.book HAVING SUM(p.amount_fen) <> 0)
         OR EXISTS (SELECT 1 FROM postings p WHERE p.entry_id = n.id AND p.value_date <> n.value_date)
      ORDER BY n.id LIMIT 1;
      IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'entry_must_balance_per_book: entry % does not balance within a book, or has postings dated otherwise', bad
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER journal_entries_balance AFTER INSERT ON journal_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION jiebang_entries_balance()""",
]


def create_journal_triggers() -> None:
    dialect = op.get_bind().dialect.name
    statements = SQLITE_TRIGGERS if dialect == "sqlite" else POSTGRES_TRIGGERS
    for statement in statements:
        op.execute(statement)


def drop_journal_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        return
    for table in ("journal_entries", "postings"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP TRIGGER IF EXISTS postings_seal ON postings")
    op.execute("DROP TRIGGER IF EXISTS journal_entries_balance ON journal_entries")
    for function in ("jiebang_refuse_change", "jiebang_posting_seal", "jiebang_entries_balance"):
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
