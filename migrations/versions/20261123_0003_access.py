"""access: settings, maker-checker requests, enterprise login mapping; their guard triggers

Revision ID: 20261123_0003
Revises: 20261123_0002
Create Date: 2026-11-23 09:00:00.000000

* ``settings`` is insert-only like the journal: the current value of a setting is its newest
  row, and each change is also a fact journal entry of kind ``setting``.
* ``requests`` is insert-only except its decision columns, which may be filled once:
  pending -> approved or rejected, by someone other than the requester. On PostgreSQL the
  trigger also requires ``requested_by`` / ``decided_by`` to be the database login and the
  decider to be a member of ``jiebang_approver`` (or a superuser).
* On PostgreSQL, while ``require_approval`` is on, a deferred constraint trigger refuses at
  commit any release, write-off, termination or revocation entry that no approved request
  points at (``decision_entry_id``), whoever inserts it and however.
* ``enterprise_logins`` maps a database login to the party (USCC) it may see; the SECURITY
  DEFINER functions ``jiebang_my_projects()`` / ``jiebang_my_parties()`` read it for the
  row-level security policies that ``jiebang db grant`` installs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261123_0003'
down_revision = '20261123_0002'
branch_labels = None
depends_on = None

MONEY_OUT = "('release', 'write_off', 'termination', 'revocation')"


def upgrade() -> None:
    op.create_table('settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('set_by', sa.String(length=80), nullable=False),
    sa.Column('set_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_settings_entry_id_journal_entries'), initially='DEFERRED', deferrable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settings'))
    )
    with op.batch_alter_table('settings', schema=None) as batch_op:
        batch_op.create_index('ix_settings_name_id', ['name', 'id'], unique=False)

    op.create_table('requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('project_code', sa.String(length=40), nullable=True),
    sa.Column('arguments', sa.Text(), nullable=False),
    sa.Column('requested_by', sa.String(length=80), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('status', sa.String(length=10), server_default='pending', nullable=False),
    sa.Column('decided_by', sa.String(length=80), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.Column('decision_entry_id', sa.BigInteger(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name=op.f('ck_requests_status_known')),
    sa.CheckConstraint(f"kind IN {MONEY_OUT}", name=op.f('ck_requests_kind_money_out')),
    sa.ForeignKeyConstraint(['decision_entry_id'], ['journal_entries.id'], name=op.f('fk_requests_decision_entry_id_journal_entries'), initially='DEFERRED', deferrable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requests'))
    )
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.create_index('ix_requests_status', ['status'], unique=False)
        batch_op.create_index('ix_requests_decision_entry_id', ['decision_entry_id'], unique=False)

    op.create_table('enterprise_logins',
    sa.Column('login', sa.String(length=63), nullable=False),
    sa.Column('party_uscc', sa.String(length=18), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['party_uscc'], ['parties.uscc'], name=op.f('fk_enterprise_logins_party_uscc_parties')),
    sa.PrimaryKeyConstraint('login', name=op.f('pk_enterprise_logins'))
    )
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    else:
        for statement in POSTGRES_TRIGGERS:
            op.execute(statement)
        schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
        quoted = '"' + schema.replace('"', '""') + '"'
        for statement in POSTGRES_RLS_FUNCTIONS:
            op.execute(statement.replace("{schema}", quoted))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS journal_entries_money_out_approved ON journal_entries")
        for table in ("settings", "requests"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_guard ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        for function in ("jiebang_money_out_approved", "jiebang_request_guard", "jiebang_my_parties", "jiebang_my_projects"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}() CASCADE")
    op.drop_table('enterprise_logins')
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_index('ix_requests_decision_entry_id')
        batch_op.drop_index('ix_requests_status')
    op.drop_table('requests')
    with op.batch_alter_table('settings', schema=None) as batch_op:
        batch_op.drop_index('ix_settings_name_id')
    op.drop_table('settings')


_DECISION_BROKEN = (
    "OLD.status <> 'pending' OR NEW.status NOT IN ('approved', 'rejected')"
    " OR NEW.id IS NOT OLD.id OR NEW.kind IS NOT OLD.kind OR NEW.project_code IS NOT OLD.project_code"
    " OR NEW.arguments IS NOT OLD.arguments OR NEW.requested_by IS NOT OLD.requested_by"
    " OR NEW.requested_at IS NOT OLD.requested_at"
    " OR NEW.decided_by IS NULL OR NEW.decided_at IS NULL OR NEW.decision_entry_id IS NULL"
    " OR NEW.decided_by = OLD.requested_by"
)
_INSERT_BROKEN = (
    "NEW.status <> 'pending' OR NEW.decided_by IS NOT NULL OR NEW.decided_at IS NOT NULL"
    " OR NEW.decision_reason IS NOT NULL OR NEW.decision_entry_id IS NOT NULL"
)
_REQUEST_MESSAGE = (
    "requests are insert-only except their decision, made once (pending to approved or rejected) "
    "by someone other than the requester"
)

SQLITE_TRIGGERS = [
    *[
        f"""CREATE TRIGGER settings_no_{action.lower()} BEFORE {action} ON settings
        BEGIN SELECT RAISE(ABORT, 'settings are insert-only: {action} is refused; record a new value instead'); END"""
        for action in ("UPDATE", "DELETE")
    ],
    f"""CREATE TRIGGER requests_no_delete BEFORE DELETE ON requests
    BEGIN SELECT RAISE(ABORT, 'request_must_not_be_deleted: {_REQUEST_MESSAGE}'); END""",
    f"""CREATE TRIGGER requests_insert_pending BEFORE INSERT ON requests
    WHEN {_INSERT_BROKEN}
    BEGIN SELECT RAISE(ABORT, 'request_must_start_pending: {_REQUEST_MESSAGE}'); END""",
    f"""CREATE TRIGGER requests_decide_once BEFORE UPDATE ON requests
    WHEN {_DECISION_BROKEN}
    BEGIN SELECT RAISE(ABORT, 'request_must_be_decided_once: {_REQUEST_MESSAGE}'); END""",
]
SQLITE_TRIGGER_NAMES = [
    "settings_no_update", "settings_no_delete", "requests_no_delete", "requests_insert_pending", "requests_decide_once",
]

POSTGRES_TRIGGERS = [
    """CREATE TRIGGER settings_guard BEFORE UPDATE OR DELETE ON settings
    FOR EACH ROW EXECUTE FUNCTION jiebang_refuse_change()""",
    """CREATE TRIGGER settings_no_truncate BEFORE TRUNCATE ON settings
    FOR EACH STATEMENT EXECUTE FUNCTION jiebang_refuse_change()""",
    """CREATE TRIGGER requests_no_truncate BEFORE TRUNCATE ON requests
    FOR EACH STATEMENT EXECUTE FUNCTION jiebang_refuse_change()""",
    f"""CREATE FUNCTION jiebang_request_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'request_must_not_be_deleted: {_REQUEST_MESSAGE}' USING ERRCODE = 'integrity_constraint_violation';
      ELSIF TG_OP = 'INSERT' THEN
        IF {_INSERT_BROKEN} THEN
          RAISE EXCEPTION 'request_must_start_pending: {_REQUEST_MESSAGE}' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF NEW.requested_by IS DISTINCT FROM current_user::text THEN
          RAISE EXCEPTION 'request_must_name_the_login: requested_by % is not the database login %', NEW.requested_by, current_user
            USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
      END IF;
      IF {_DECISION_BROKEN.replace(' IS NOT OLD', ' IS DISTINCT FROM OLD')} THEN
        RAISE EXCEPTION 'request_must_be_decided_once: request % (%): {_REQUEST_MESSAGE}', OLD.id, OLD.status
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      IF NEW.decided_by IS DISTINCT FROM current_user::text THEN
        RAISE EXCEPTION 'decision_must_name_the_login: decided_by % is not the database login %', NEW.decided_by, current_user
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      IF NOT (COALESCE((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false)
              OR (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jiebang_approver')
                  AND pg_has_role(current_user, 'jiebang_approver', 'MEMBER'))) THEN
        RAISE EXCEPTION 'approver_must_have_the_role: % is not a member of jiebang_approver', current_user
          USING ERRCODE = 'insufficient_privilege';
      END IF;
      RETURN NEW;
    END $$""",
    """CREATE TRIGGER requests_guard BEFORE INSERT OR UPDATE OR DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION jiebang_request_guard()""",
    """CREATE FUNCTION jiebang_money_out_approved() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF COALESCE((SELECT value FROM settings WHERE name = 'require_approval' ORDER BY id DESC LIMIT 1), 'off') = 'on'
         AND NOT EXISTS (SELECT 1 FROM requests WHERE decision_entry_id = NEW.id AND status = 'approved') THEN
        RAISE EXCEPTION 'money_out_must_be_approved: % entry % has no approved request while approval is required; record a request (jiebang %) and have an approver approve it',
          NEW.kind, NEW.id, replace(NEW.kind, '_', '-') USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NULL;
    END $$""",
    f"""CREATE CONSTRAINT TRIGGER journal_entries_money_out_approved AFTER INSERT ON journal_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.kind IN {MONEY_OUT})
    EXECUTE FUNCTION jiebang_money_out_approved()""",
]

# Row-level security helpers: SECURITY DEFINER so the policies of one table can look at the
# others without recursing through their policies; keyed on session_user (the login).
POSTGRES_RLS_FUNCTIONS = [
    """CREATE FUNCTION jiebang_my_projects() RETURNS SETOF varchar LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = {schema} AS $$
      SELECT p.code FROM projects p JOIN enterprise_logins e ON e.party_uscc = p.demand_uscc WHERE e.login = session_user
      UNION
      SELECT l.project_code FROM lanes l JOIN enterprise_logins e ON e.party_uscc = l.solver_uscc WHERE e.login = session_user
    $$""",
    """CREATE FUNCTION jiebang_my_parties() RETURNS SETOF varchar LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = {schema} AS $$
      SELECT party_uscc FROM enterprise_logins WHERE login = session_user
      UNION
      SELECT demand_uscc FROM projects WHERE code IN (SELECT jiebang_my_projects())
      UNION
      SELECT solver_uscc FROM lanes WHERE project_code IN (SELECT jiebang_my_projects())
    $$""",
]
