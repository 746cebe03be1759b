"""portal auditor RLS: the row-level-security helpers that limit a portal auditor's requests

Revision ID: 20261206_0012
Revises: 20261205_0011
Create Date: 2026-12-06 00:12:00.000000

PostgreSQL only (SQLite: nothing). The portal runs an auditor's request under
``SET LOCAL ROLE jiebang_portal_auditor`` with ``SET LOCAL jiebang.portal_auditor = <account
number>``; the policies that ``jiebang db grant`` installs for that role call these SECURITY
DEFINER functions, which read the assignment from ``portal_auditor_projects``:

* ``jiebang_audited_projects()``: the projects assigned to that portal auditor (not revoked);
* ``jiebang_audited_entries()``: the entries of those projects and any other entry that posts
  to one of their accounts (a release of another project offset against an audited project's
  clawback: the audit pack's extract holds it);
* ``jiebang_audited_accounts()``: those projects' accounts and every account those entries
  post to (the shared treasury and appropriation accounts, the other side of an offset);
* ``jiebang_audited_parties()``: those projects' demand sides and lanes' solvers.

They answer only when the session's login may ``SET ROLE jiebang_portal_auditor`` (the
portal's login, or a superuser): anyone else, setting the variable to any number, gets
nothing. Every name is schema-qualified and ``search_path = <schema>, pg_temp``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261206_0012'
down_revision = '20261205_0011'
branch_labels = None
depends_on = None

ALLOWED = ("EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = 'jiebang_portal_auditor' "
           "AND pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER'))")
FUNCTIONS = {
    "jiebang_audited_projects": ("varchar", """
      SELECT a.project_code FROM {s}.portal_auditor_projects a JOIN {s}.portal_users u ON u.id = a.user_id
       WHERE u.id = NULLIF(pg_catalog.current_setting('jiebang.portal_auditor', true), '')::integer
         AND u.kind = 'auditor' AND u.revoked_at IS NULL AND {allowed}
    """),
    "jiebang_audited_entries": ("bigint", """
      SELECT e.id FROM {s}.journal_entries e WHERE e.project_code IN (SELECT {s}.jiebang_audited_projects())
      UNION
      SELECT p.entry_id FROM {s}.postings p JOIN {s}.accounts a ON a.id = p.account_id
       WHERE a.project_code IN (SELECT {s}.jiebang_audited_projects())
    """),
    "jiebang_audited_accounts": ("bigint", """
      SELECT a.id FROM {s}.accounts a WHERE a.project_code IN (SELECT {s}.jiebang_audited_projects())
      UNION
      SELECT p.account_id FROM {s}.postings p WHERE p.entry_id IN (SELECT {s}.jiebang_audited_entries())
    """),
    "jiebang_audited_parties": ("varchar", """
      SELECT demand_uscc FROM {s}.projects WHERE code IN (SELECT {s}.jiebang_audited_projects())
      UNION
      SELECT solver_uscc FROM {s}.lanes WHERE project_code IN (SELECT {s}.jiebang_audited_projects())
    """),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    s = '"' + schema.replace('"', '""') + '"'
    for name, (returns, body) in FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {s}.{name}() RETURNS SETOF {returns} LANGUAGE sql STABLE SECURITY DEFINER "
            f"SET search_path = {s}, pg_temp AS $$"
            f"{body.replace('{allowed}', ALLOWED).replace('{s}', s)}$$"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    s = '"' + schema.replace('"', '""') + '"'
    for name in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION IF EXISTS {s}.{name}() CASCADE")  # and the policies db grant made with them
