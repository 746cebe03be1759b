"""Database roles on PostgreSQL: each role logs in over a real connection and shows what it
can and cannot do. Officers record events but cannot UPDATE or DELETE; auditors only read;
an enterprise reads its own projects and, through raw SQL, gets no rows of anyone else's.

Roles are cluster-wide: the logins made here carry a unique tag and are dropped at the end.
"""

from __future__ import annotations

import uuid

import pytest
from conftest import Cli
from programme_fixtures import (
    JM_APPROVAL,
    JM_DEMAND,
    JM_FIRM,
    JM_OTHER,
    JM_UNIVERSITY,
    add_party,
    approve,
    jiangmen_world,
    jm_approval,
    yuan,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

A = JM_APPROVAL.code  # demand JM_DEMAND, solver JM_UNIVERSITY
B = "JM2025-004"  # demand JM_OTHER[0], solver JM_FIRM
B_DEMAND = JM_OTHER[0]


def test_db_grant_is_refused_on_sqlite_in_one_line(db_url, backend):
    if backend != "sqlite":
        pytest.skip("the SQLite refusal; PostgreSQL roles are tested below")
    result = Cli(db_url)("db", "grant", "officer", "chen", expect=1)
    assert result.stderr.startswith("error: database roles exist only on PostgreSQL")


@pytest.fixture
def logins(db_url, backend, engine):
    if backend != "postgresql":
        pytest.skip("database roles and row-level security are PostgreSQL features; SQLite has file permissions")
    with Session(engine) as session, session.begin():
        jiangmen_world(session)
        add_party(session, B_DEMAND, "江门市另一装备有限公司", revenue_fen=yuan("600,000,000.00"))
        approve(session, JM_APPROVAL)
        approve(session, jm_approval(code=B, demand_uscc=B_DEMAND, solver_usccs=(JM_FIRM,)))
    admin = Cli(db_url, user="admin")
    admin("stage", "--project", A, "--stage", "contract_signed", "--passed", "--date", "2025-10-10")
    admin("release", "--project", A, "--date", "2025-10-20")
    admin("stage", "--project", B, "--stage", "contract_signed", "--passed", "--date", "2025-10-10")
    admin("release", "--project", B, "--date", "2025-10-20")

    tag = uuid.uuid4().hex[:8]
    names = {
        "officer": ("officer", None), "approver": ("approver", None), "auditor": ("auditor", None),
        "solver_a": ("enterprise", JM_UNIVERSITY), "demand_b": ("enterprise", B_DEMAND),
    }
    engines: dict[str, object] = {}
    made: list[str] = []
    try:
        for name, (role, party) in names.items():
            login = f"jb_{tag}_{name}"
            admin("db", "grant", role, login, *(["--party", party] if party else []))
            made.append(login)
            engines[name] = create_engine(make_url(db_url).set(username=login))
        engines["url"] = {name: make_url(db_url).set(username=f"jb_{tag}_{name}").render_as_string(hide_password=False)
                          for name in names}
        yield engines
    finally:
        for name, value in engines.items():
            if name != "url":
                value.dispose()
        import gc

        gc.collect()
        drop = create_engine(db_url, isolation_level="AUTOCOMMIT")
        with drop.connect() as conn:
            for login in made:
                conn.execute(text(f'DROP ROLE IF EXISTS "{login}"'))
        drop.dispose()


def rows(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def refused(engine, sql: str, says: str = "permission denied") -> None:
    with engine.connect() as conn, pytest.raises(DBAPIError) as caught:
        conn.execute(text(sql))
        conn.commit()
    assert says in str(caught.value.orig), caught.value.orig


def test_officer_records_events_but_cannot_update_or_delete(logins, engine):
    officer = Cli(logins["url"]["officer"], user="ignored")
    officer("stage", "--project", A, "--stage", "midterm", "--passed", "--date", "2026-03-01")
    [(actor,)] = rows(engine, "SELECT actor FROM journal_entries WHERE kind = 'stage' ORDER BY id DESC LIMIT 1")
    assert actor == "ignored"  # journal actor stays --user; the login is what maker-checker uses
    officer("verify")
    for sql in (
        "UPDATE journal_entries SET memo = 'x'",
        "DELETE FROM postings",
        "UPDATE projects SET approved_grant_fen = 1",
        "DELETE FROM parties",
        "UPDATE accounts SET closed_on = NULL",
        "TRUNCATE journal_entries",
        "INSERT INTO settings (name, value, set_by) VALUES ('require_approval', 'off', 'x')",
        "UPDATE requests SET status = 'approved'",
        f"INSERT INTO enterprise_logins (login, party_uscc) VALUES ('x', '{JM_FIRM}')",
        "CREATE TABLE sneaky (id int)",
    ):
        refused(logins["officer"], sql)
    assert rows(logins["officer"], "SELECT count(*) FROM projects") == [(2,)]


def test_approver_decides_requests_but_edits_nothing_else(logins, engine):
    approver = logins["approver"]
    for sql in (
        "UPDATE requests SET arguments = '{}'",
        "UPDATE requests SET requested_by = 'x'",
        "DELETE FROM requests",
        "UPDATE journal_entries SET memo = 'x'",
        "INSERT INTO settings (name, value, set_by) VALUES ('require_approval', 'off', 'x')",
    ):
        refused(approver, sql)
    # The decision columns are writable, but the trigger still demands a pending request
    # decided once, under the approver's own login: there is no request 99 to decide.
    with approver.connect() as conn:
        changed = conn.execute(text("UPDATE requests SET status = 'approved' WHERE id = 99")).rowcount
    assert changed == 0


def test_auditor_reads_everything_and_changes_nothing(logins, engine):
    auditor = logins["auditor"]
    for table in ("journal_entries", "postings", "projects", "parties", "settings", "requests", "chain_head"):
        assert rows(auditor, f"SELECT count(*) FROM {table}") == rows(engine, f"SELECT count(*) FROM {table}")
    for sql in (
        "INSERT INTO parties (uscc, name, kind, innovation_star, bad_credit, recorded_by) VALUES ('x', 'x', 'other', false, false, 'x')",
        "UPDATE chain_head SET last_entry_id = 0",
        "DELETE FROM requests",
        "SELECT id FROM chain_head FOR UPDATE",
    ):
        refused(auditor, sql)
    Cli(logins["url"]["auditor"])("verify")
    result = Cli(logins["url"]["auditor"])("stage", "--project", A, "--stage", "midterm", "--passed", "--date", "2026-03-01", expect=1)
    assert "permission denied" in result.stderr


def test_an_enterprise_sees_only_its_own_projects_even_through_raw_sql(logins, engine):
    solver_a, demand_b = logins["solver_a"], logins["demand_b"]
    assert rows(solver_a, "SELECT code FROM projects") == [(A,)]
    assert rows(demand_b, "SELECT code FROM projects") == [(B,)]
    # Another's project by name: no rows, in every table that carries it.
    assert rows(solver_a, "SELECT * FROM projects WHERE code = :c", c=B) == []
    for table in ("lanes", "tranches", "project_events", "journal_entries", "accounts"):
        assert rows(solver_a, f"SELECT count(*) FROM {table} WHERE project_code = :c", c=B) == [(0,)]
        mine = rows(engine, f"SELECT count(*) FROM {table} WHERE project_code = :c", c=A)
        assert rows(solver_a, f"SELECT count(*) FROM {table}") == mine and mine[0][0] > 0
    # Postings: exactly those of its own project's entries.
    own_postings = rows(engine, "SELECT count(*) FROM postings p JOIN journal_entries e ON e.id = p.entry_id "
                                "WHERE e.project_code = :c", c=A)
    assert rows(solver_a, "SELECT count(*) FROM postings") == own_postings
    assert rows(solver_a, "SELECT count(*) FROM postings WHERE entry_id IN "
                          "(SELECT id FROM journal_entries WHERE project_code = :c)", c=B) == [(0,)]
    # Parties: itself and its project's counterpart, not B's demand side or solver.
    assert sorted(u for (u,) in rows(solver_a, "SELECT uscc FROM parties")) == sorted([JM_DEMAND, JM_UNIVERSITY])
    assert rows(demand_b, "SELECT uscc FROM parties WHERE uscc = :u", u=JM_UNIVERSITY) == []
    # Nothing outside its tables, and no writes.
    for sql in ("SELECT * FROM settings", "SELECT * FROM requests", "SELECT * FROM chain_head",
                "SELECT * FROM party_relations", "SELECT * FROM enterprise_logins",
                "UPDATE projects SET name = 'x'", "DELETE FROM journal_entries",
                f"INSERT INTO lanes (project_code, lane_no, solver_uscc) VALUES ('{B}', 9, '{JM_UNIVERSITY}')"):
        refused(solver_a, sql)


def test_grant_refuses_bad_requests_in_one_line(logins, db_url, engine):
    admin = Cli(db_url)
    assert "needs --party" in admin("db", "grant", "enterprise", "jb_nobody_x", expect=1).stderr
    assert "not registered" in admin("db", "grant", "enterprise", "jb_nobody_x", "--party", "91440700MA51A00999", expect=1).stderr
    assert "enterprise logins only" in admin("db", "grant", "auditor", "jb_nobody_x", "--party", JM_FIRM, expect=1).stderr
    assert "must be 1-63" in admin("db", "grant", "auditor", "bad name;", expect=1).stderr
    assert rows(engine, "SELECT count(*) FROM pg_roles WHERE rolname = 'jb_nobody_x'") == [(0,)]
