"""portal: sign-in tables of the web portal; its log append-only; RLS helpers for SET ROLE

Revision ID: 20261205_0010
Revises: 20261205_0009
Create Date: 2026-12-05 02:00:00.000000

* ``portal_users``, ``portal_auditor_projects``, ``portal_invites`` and ``portal_log`` hold
  who may sign in to ``jiebang serve``. They are not money facts: not journal entries, not
  folded, not verified. ``portal_log`` (sign-ins, failed sign-ins, invitations, revocations,
  downloads) is append-only by trigger on both backends.
* PostgreSQL: ``jiebang_projects_of(login)`` / ``jiebang_parties_of(login)``, SECURITY
  DEFINER like ``jiebang_my_projects()`` but keyed on the login the policy passes
  (``current_user``), so that a portal connection running a request under
  ``SET LOCAL ROLE <enterprise login>`` is limited to that enterprise's rows. They answer
  only when the session's login is that login or a member of it (a superuser, or the
  portal's login granted the role): an enterprise cannot ask for another's projects.
  ``jiebang db grant`` installs the policies that call them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261205_0010'
down_revision = '20261205_0009'
branch_labels = None
depends_on = None

LOG_MESSAGE = "portal_log is append-only: % of a sign-in or download record is refused"

RLS_FUNCTIONS = {
    "jiebang_projects_of": """
      SELECT p.code FROM {s}.projects p JOIN {s}.enterprise_logins e ON e.party_uscc = p.demand_uscc
       WHERE e.login = who AND {allowed}
      UNION
      SELECT l.project_code FROM {s}.lanes l JOIN {s}.enterprise_logins e ON e.party_uscc = l.solver_uscc
       WHERE e.login = who AND {allowed}
    """,
    "jiebang_parties_of": """
      SELECT party_uscc FROM {s}.enterprise_logins WHERE login = who AND {allowed}
      UNION
      SELECT demand_uscc FROM {s}.projects WHERE code IN (SELECT {s}.jiebang_projects_of(who))
      UNION
      SELECT solver_uscc FROM {s}.lanes WHERE project_code IN (SELECT {s}.jiebang_projects_of(who))
    """,
}
# The session's login is the login asked about, or may SET ROLE to it.
ALLOWED = ("EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = who "
           "AND pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER'))")


def upgrade() -> None:
    op.create_table('portal_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('login', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('party_uscc', sa.String(length=18), nullable=True),
    sa.Column('db_role', sa.String(length=63), nullable=True),
    sa.Column('password_hash', sa.Text(), nullable=True),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('enterprise', 'auditor', 'bureau')", name=op.f('ck_portal_users_kind_known')),
    sa.ForeignKeyConstraint(['party_uscc'], ['parties.uscc'], name=op.f('fk_portal_users_party_uscc_parties')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_users')),
    sa.UniqueConstraint('login', name=op.f('uq_portal_users_login'))
    )
    op.create_table('portal_auditor_projects',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('project_code', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['project_code'], ['projects.code'], name=op.f('fk_portal_auditor_projects_project_code_projects')),
    sa.ForeignKeyConstraint(['user_id'], ['portal_users.id'], name=op.f('fk_portal_auditor_projects_user_id_portal_users')),
    sa.PrimaryKeyConstraint('user_id', 'project_code', name=op.f('pk_portal_auditor_projects'))
    )
    op.create_table('portal_invites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['portal_users.id'], name=op.f('fk_portal_invites_user_id_portal_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_invites')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_portal_invites_token_sha256'))
    )
    op.create_index(op.f('ix_portal_invites_user_id'), 'portal_invites', ['user_id'], unique=False)
    op.create_table('portal_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('login', sa.String(length=80), nullable=False),
    sa.Column('event', sa.String(length=30), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_log'))
    )
    op.create_index('ix_portal_log_login_at', 'portal_log', ['login', 'at'], unique=False)
    op.create_index('ix_portal_log_address_at', 'portal_log', ['address', 'at'], unique=False)

    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER portal_log_no_{action.lower()} BEFORE {action} ON portal_log "
                f"BEGIN SELECT RAISE(ABORT, '{LOG_MESSAGE.replace('%', action)}'); END"
            )
        return
    schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    s = '"' + schema.replace('"', '""') + '"'
    op.execute(
        f"CREATE FUNCTION {s}.jiebang_portal_log_append_only() RETURNS trigger LANGUAGE plpgsql "
        f"SET search_path = {s}, pg_temp AS $$ BEGIN "
        f"RAISE EXCEPTION '{LOG_MESSAGE}', TG_OP USING ERRCODE = 'integrity_constraint_violation'; END $$"
    )
    op.execute(f"CREATE TRIGGER portal_log_guard BEFORE UPDATE OR DELETE ON {s}.portal_log "
               f"FOR EACH ROW EXECUTE FUNCTION {s}.jiebang_portal_log_append_only()")
    op.execute(f"CREATE TRIGGER portal_log_no_truncate BEFORE TRUNCATE ON {s}.portal_log "
               f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.jiebang_portal_log_append_only()")
    for name, body in RLS_FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {s}.{name}(who name) RETURNS SETOF varchar LANGUAGE sql STABLE SECURITY DEFINER "
            f"SET search_path = {s}, pg_temp AS $$"
            f"{body.replace('{allowed}', ALLOWED).replace('{s}', s)}$$"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS portal_log_no_{action}")
    else:
        schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
        s = '"' + schema.replace('"', '""') + '"'
        op.execute(f"DROP TRIGGER IF EXISTS portal_log_guard ON {s}.portal_log")
        op.execute(f"DROP TRIGGER IF EXISTS portal_log_no_truncate ON {s}.portal_log")
        op.execute(f"DROP FUNCTION IF EXISTS {s}.jiebang_portal_log_append_only()")
        op.execute(f"DROP FUNCTION IF EXISTS {s}.jiebang_parties_of(name)")
        op.execute(f"DROP FUNCTION IF EXISTS {s}.jiebang_projects_of(name)")
    op.drop_index('ix_portal_log_address_at', table_name='portal_log')
    op.drop_index('ix_portal_log_login_at', table_name='portal_log')
    op.drop_table('portal_log')
    op.drop_index(op.f('ix_portal_invites_user_id'), table_name='portal_invites')
    op.drop_table('portal_invites')
    op.drop_table('portal_auditor_projects')
    op.drop_table('portal_users')
