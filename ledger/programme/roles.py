"""Database roles on PostgreSQL: officer, approver, auditor, enterprise.

``grant(session, role, login, party=None)`` creates (or brings up to date) the four group
roles, their privileges on the ledger's schema and the row-level security policies, then
creates the LOGIN and makes it a member of the role. It is idempotent: run it again after an
upgrade to re-apply the privileges to new tables. It must run as a superuser, or as the
owner of the ledger's tables with CREATEROLE.

Roles are cluster-wide (one set serves every ledger database and schema on the server);
privileges and policies are per schema, so ``grant`` is run once per ledger.

* ``jiebang_officer``: SELECT everywhere it records events, INSERT on the tables events
  write, UPDATE only on ``chain_head`` (the writers' lock and the chain's last hash). No
  DELETE or TRUNCATE anywhere; settings and the login mapping are read-only.
* ``jiebang_approver``: an officer that may also fill in the decision columns of requests.
* ``jiebang_auditor``: SELECT on every table, nothing else.
* ``jiebang_enterprise``: SELECT on projects, lanes, tranches, project_events,
  journal_entries, postings, accounts and parties, restricted by row-level security to the
  projects where its party (``enterprise_logins``) is the demand side or a lane's solver.
* ``jiebang_portal_auditor`` (no login; the portal's auditors' requests): SELECT on the same
  tables, restricted to the projects assigned to the portal account the request names, the
  entries that post to their accounts and the accounts those entries name.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.core.errors import Refusal

ROLES = ("officer", "approver", "auditor", "enterprise")
GROUP = {role: f"jiebang_{role}" for role in ROLES}
STAFF = ("jiebang_officer", "jiebang_approver", "jiebang_auditor")

# What an officer writes when it records events (INSERT) and reads (SELECT).
OFFICER_INSERT = (
    "accounts", "journal_entries", "postings", "parties", "party_relations", "projects", "lanes", "tranches",
    "project_events", "requests", "verify_checkpoints",
)
OFFICER_SELECT = (*OFFICER_INSERT, "chain_head", "settings", "alembic_version")
DECISION_COLUMNS = ("status", "decided_by", "decided_at", "decision_reason", "decision_entry_id")

# Row-level security: which rows of each table an enterprise sees.
# ``{s}`` is the ledger's quoted schema: every name in a policy is qualified.
# Keyed on current_user (migration 20261205_0010): a login connecting as itself and the portal
# running a request under ``SET LOCAL ROLE <login>`` are limited alike.
_MINE = "project_code IN (SELECT {s}.jiebang_projects_of(current_user))"
ENTERPRISE_ROWS = {
    "projects": "code IN (SELECT {s}.jiebang_projects_of(current_user))",
    "lanes": _MINE,
    "tranches": _MINE,
    "project_events": _MINE,
    "journal_entries": _MINE,
    "accounts": _MINE,
    # A posting is visible when its entry is (the entries policy applies inside the subquery).
    "postings": "entry_id IN (SELECT id FROM {s}.journal_entries)",
    "parties": "uscc IN (SELECT {s}.jiebang_parties_of(current_user))",
}

PORTAL_TABLES = ("portal_users", "portal_auditor_projects", "portal_invites", "portal_log")

# The role of a portal auditor's requests (no login of its own: the portal's login sets it with
# SET LOCAL ROLE and names the portal account in ``jiebang.portal_auditor``): the same tables as
# an enterprise, limited to the account's assigned projects, the entries that post to their
# accounts and what those entries name (the audit pack's extract needs them). Functions of
# migration 20261206_0012.
PORTAL_AUDITOR = "jiebang_portal_auditor"
PORTAL_AUDITOR_ROWS = {
    "projects": "code IN (SELECT {s}.jiebang_audited_projects())",
    "lanes": "project_code IN (SELECT {s}.jiebang_audited_projects())",
    "tranches": "project_code IN (SELECT {s}.jiebang_audited_projects())",
    "project_events": "project_code IN (SELECT {s}.jiebang_audited_projects()) OR entry_id IN (SELECT {s}.jiebang_audited_entries())",
    "journal_entries": "id IN (SELECT {s}.jiebang_audited_entries())",
    "accounts": "id IN (SELECT {s}.jiebang_audited_accounts())",
    "postings": "entry_id IN (SELECT {s}.jiebang_audited_entries())",
    "parties": "uscc IN (SELECT {s}.jiebang_audited_parties())",
}

LOGIN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def grant(session: Session, role: str, login: str, *, party: str | None = None) -> list[str]:
    """Create or maintain the roles, privileges and policies, and give ``login`` the role.

    Returns what was done, one line each, for the command to print.
    """
    if session.get_bind().dialect.name != "postgresql":
        raise Refusal(
            "roles_need_postgresql",
            "database roles exist only on PostgreSQL; a SQLite ledger is a file: protect it with file permissions.",
        )
    if role not in ROLES:
        raise Refusal("role_must_be_known", f"role must be one of {', '.join(ROLES)}, not {role!r}.")
    if not LOGIN_RE.match(login or "") or login.startswith(("pg_", "jiebang_")):
        raise Refusal(
            "login_must_be_a_plain_name",
            f"login {login!r} must be 1-63 letters, digits, _ or -, start with a letter or _, and not start with pg_ or jiebang_.",
        )
    if role == "enterprise" and not party:
        raise Refusal("enterprise_login_needs_party", "an enterprise login needs --party USCC: the party whose projects it may see.")
    if role != "enterprise" and party:
        raise Refusal("party_only_for_enterprise", "--party applies to enterprise logins only.")

    execute = lambda sql, **params: session.execute(text(sql), params)
    schema = execute("SELECT current_schema()").scalar_one()
    if schema is None:
        raise Refusal("schema_must_exist", "the connection has no current schema; check the URL's search_path.")
    s = _ident(schema)
    if execute("SELECT to_regclass(:t) IS NULL", t=f"{s}.journal_entries").scalar_one():
        raise Refusal("database_must_be_a_ledger", f"schema {schema} holds no jiebang ledger; run `jiebang init` first.")
    if party is not None and execute(f"SELECT count(*) FROM {s}.parties WHERE uscc = :u", u=party).scalar_one() == 0:
        raise Refusal("party_must_exist", f"party {party} is not registered in this ledger; add it with `jiebang party add` first.")
    done = []

    # 1. The group roles, cluster-wide (created once; a concurrent creator is tolerated).
    for group in GROUP.values():
        execute(
            f"DO $$ BEGIN CREATE ROLE {group} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
    execute(
        f"DO $$ BEGIN CREATE ROLE {PORTAL_AUDITOR} NOLOGIN; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )
    execute("GRANT jiebang_officer TO jiebang_approver")

    # 2. Privileges in this schema, from scratch each time so that the set is exact.
    groups = ", ".join((*GROUP.values(), PORTAL_AUDITOR))
    execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {groups}")
    execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {groups}")
    execute(f"GRANT USAGE ON SCHEMA {s} TO {groups}")
    execute(f"GRANT SELECT ON {s}.alembic_version TO {groups}")
    execute(f"GRANT SELECT ON {', '.join(f'{s}.{t}' for t in OFFICER_SELECT)} TO jiebang_officer")
    execute(f"GRANT INSERT ON {', '.join(f'{s}.{t}' for t in OFFICER_INSERT)} TO jiebang_officer")
    execute(f"GRANT UPDATE ON {s}.chain_head TO jiebang_officer")
    execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO jiebang_officer")
    execute(f"GRANT UPDATE ({', '.join(DECISION_COLUMNS)}) ON {s}.requests TO jiebang_approver")
    execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO jiebang_auditor")
    # The portal's sign-in tables (password hashes, invitations, its log) are no auditor's business.
    execute(f"REVOKE ALL ON {', '.join(f'{s}.{t}' for t in PORTAL_TABLES)} FROM jiebang_auditor")
    execute(f"GRANT SELECT ON {', '.join(f'{s}.{t}' for t in ENTERPRISE_ROWS)} TO jiebang_enterprise")
    execute(f"GRANT SELECT ON {', '.join(f'{s}.{t}' for t in PORTAL_AUDITOR_ROWS)} TO {PORTAL_AUDITOR}")
    done.append(f"privileges of {groups} set on schema {schema}")

    # 3. Row-level security: staff see every row; an enterprise sees its own projects' rows.
    for table, rows in ENTERPRISE_ROWS.items():
        execute(f"ALTER TABLE {s}.{table} ENABLE ROW LEVEL SECURITY")
        execute(f"DROP POLICY IF EXISTS jiebang_staff ON {s}.{table}")
        execute(f"CREATE POLICY jiebang_staff ON {s}.{table} TO {', '.join(STAFF)} USING (true) WITH CHECK (true)")
        execute(f"DROP POLICY IF EXISTS jiebang_enterprise ON {s}.{table}")
        execute(f"CREATE POLICY jiebang_enterprise ON {s}.{table} FOR SELECT TO jiebang_enterprise USING ({rows.replace('{s}', s)})")
        execute(f"DROP POLICY IF EXISTS {PORTAL_AUDITOR} ON {s}.{table}")
        execute(f"CREATE POLICY {PORTAL_AUDITOR} ON {s}.{table} FOR SELECT TO {PORTAL_AUDITOR} "
                f"USING ({PORTAL_AUDITOR_ROWS[table].replace('{s}', s)})")
    done.append(f"row-level security on {', '.join(ENTERPRISE_ROWS)} (enterprises; the portal's auditors)")

    # 4. No temporary tables, no other parties' row counts (docs/access.md says what remains).
    done.extend(_close_side_channels(execute))

    # 5. The login, its role and (for an enterprise) its party.
    exists = execute("SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = :l", l=login).scalar_one()
    execute(f"{'ALTER' if exists else 'CREATE'} ROLE {_ident(login)} LOGIN")
    execute(f"GRANT {GROUP[role]} TO {_ident(login)}")
    if party is not None:
        execute(
            f"INSERT INTO {s}.enterprise_logins (login, party_uscc) VALUES (:l, :u) "
            "ON CONFLICT (login) DO UPDATE SET party_uscc = excluded.party_uscc, granted_at = now()",
            l=login, u=party,
        )
    done.append(f"login {login} {'updated' if exists else 'created'}, member of {GROUP[role]}"
                + (f", sees the projects of party {party}" if party else ""))
    return done


# The statistics views and functions that give any table's row counts (live, inserted,
# scanned ...). PostgreSQL grants them to PUBLIC; privileges on them are per database.
STATS_VIEWS = (
    "pg_stat_all_tables", "pg_stat_user_tables", "pg_stat_sys_tables",
    "pg_stat_xact_all_tables", "pg_stat_xact_user_tables", "pg_stat_xact_sys_tables",
    "pg_statio_all_tables", "pg_statio_user_tables", "pg_statio_sys_tables",
    "pg_stat_all_indexes", "pg_stat_user_indexes", "pg_stat_sys_indexes",
    "pg_statio_all_indexes", "pg_statio_user_indexes", "pg_statio_sys_indexes",
)
STATS_FUNCTIONS = (
    "pg_stat_get_live_tuples", "pg_stat_get_dead_tuples", "pg_stat_get_numscans", "pg_stat_get_tuples_returned",
    "pg_stat_get_tuples_fetched", "pg_stat_get_tuples_inserted", "pg_stat_get_tuples_updated",
    "pg_stat_get_tuples_deleted", "pg_stat_get_tuples_hot_updated", "pg_stat_get_blocks_fetched",
    "pg_stat_get_blocks_hit", "pg_stat_get_mod_since_analyze", "pg_stat_get_ins_since_vacuum",
    "pg_stat_get_xact_numscans", "pg_stat_get_xact_tuples_returned", "pg_stat_get_xact_tuples_fetched",
    "pg_stat_get_xact_tuples_inserted", "pg_stat_get_xact_tuples_updated", "pg_stat_get_xact_tuples_deleted",
    "pg_stat_get_xact_tuples_hot_updated", "pg_stat_get_xact_blocks_fetched", "pg_stat_get_xact_blocks_hit",
)
# pg_class columns that estimate a table's size; every other column stays readable by all.
PG_CLASS_HIDDEN = ("reltuples", "relpages", "relallvisible")


def _close_side_channels(execute) -> list[str]:
    """Database-wide choices (PUBLIC's privileges cannot be taken from one role only):

    * TEMP on the ledger's database is revoked from PUBLIC and from the jiebang roles: no login
      made by ``grant`` can create a temporary table (none needs one) to shadow a ledger table;
    * the statistics views and functions that count any table's rows, and pg_class's size
      estimates, are revoked from PUBLIC and granted to pg_monitor and the staff roles.
    """
    database = _ident(execute("SELECT current_database()").scalar_one())
    groups = ", ".join((*GROUP.values(), PORTAL_AUDITOR))
    execute(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC")
    execute(f"REVOKE TEMPORARY ON DATABASE {database} FROM {groups}")
    readers = ", ".join(("pg_monitor", *STAFF))
    views = ", ".join(f"pg_catalog.{v}" for v in STATS_VIEWS)
    execute(f"REVOKE SELECT ON {views} FROM PUBLIC")
    execute(f"GRANT SELECT ON {views} TO {readers}")
    present = [
        name for (name,) in execute(
            "SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace "
            "AND p.proname = ANY(:names) AND p.pronargs = 1 AND p.proargtypes[0] = 'oid'::regtype",
            names=list(STATS_FUNCTIONS),
        )
    ]
    for name in present:
        execute(f"REVOKE EXECUTE ON FUNCTION pg_catalog.{name}(oid) FROM PUBLIC")
        execute(f"GRANT EXECUTE ON FUNCTION pg_catalog.{name}(oid) TO {readers}")
    visible = [
        column for (column,) in execute(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = 'pg_catalog.pg_class'::regclass "
            "AND attnum > 0 AND NOT attisdropped AND attname <> ALL(:hidden) ORDER BY attnum",
            hidden=list(PG_CLASS_HIDDEN),
        )
    ]
    execute("REVOKE SELECT ON pg_catalog.pg_class FROM PUBLIC")
    execute(f"GRANT SELECT ({', '.join(visible)}) ON pg_catalog.pg_class TO PUBLIC")
    execute(f"GRANT SELECT ON pg_catalog.pg_class TO {readers}")
    return [
        (f"TEMP on database {database} revoked from PUBLIC and {groups} (a database-wide choice: grant TEMP "
        "back by name to any other role that needs temporary tables)"),
        (f"row-count statistics ({len(STATS_VIEWS)} views, {len(present)} functions, pg_class."
        f"{'/'.join(PG_CLASS_HIDDEN)}) revoked from PUBLIC, granted to pg_monitor and the staff roles"),
    ]


def refuse_if_rows_hidden(session: Session) -> None:
    """Refuse when row-level security hides rows from this login (an enterprise login):
    a verification over a part of the chain would read as tampering."""
    if session.get_bind().dialect.name != "postgresql":
        return
    login, hidden = session.execute(text(
        "SELECT current_user, pg_catalog.row_security_active('journal_entries') AND NOT EXISTS ("
        "SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = ANY(:staff) "
        "AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER'))"
    ), {"staff": list(STAFF)}).one()
    if hidden:
        raise Refusal(
            "verify_needs_staff_role",
            f"login {login} sees only its own rows (row-level security), so it cannot verify the chain; "
            "verification needs the auditor or officer role: run verify as such a login (jiebang db grant auditor LOGIN).",
        )
