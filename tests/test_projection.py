"""The journal is the record: every programme row is a projection of hashed entry facts.

For every programme table, every column that affects money, and the accounts table, a row
is changed, inserted or deleted behind the application's back. With the database's guards
in place the change is refused; with them dropped, ``verify`` names the table, the row and
the column. Both on SQLite and PostgreSQL, on the demo ledger (nine projects of two cities)
plus a party relation, a setting and two maker–checker requests (1 pending, 2 rejected).
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ledger.programme import projection

D = dt.date


def _drop_guards(session: Session, table: str) -> None:
    if session.get_bind().dialect.name == "sqlite":
        names = session.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"), {"t": table}
        ).scalars().all()
        for name in names:
            session.execute(text(f'DROP TRIGGER "{name}"'))
    else:
        session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))


def _problem(engine, table: str, sql: str) -> str | None:
    """Run ``sql`` with the table's guards dropped, then verify in the same transaction; roll
    back. A change a foreign key or constraint still refuses comes back as "refused: ..."."""
    with Session(engine) as session:
        session.begin()
        try:
            _drop_guards(session, table)
            try:
                with session.begin_nested():
                    session.execute(text(sql))
                    session.flush()
            except DBAPIError as exc:
                return f"refused: {exc.orig}"
            return projection.verify_ledger(session).problem
        finally:
            session.rollback()


def _refused(engine, sql: str) -> bool:
    with Session(engine) as session:
        session.begin()
        try:
            session.execute(text(sql))
            session.flush()
        except DBAPIError:
            return True
        finally:
            session.rollback()
    return False


# (table, column, new value as SQL, WHERE clause picking one row)
CHANGES = [
    ("parties", "name", "'改名'", "uscc = '91440703MA4W1A276P'"),
    ("parties", "kind", "'other'", "uscc = '91440703MA4W1A276P'"),
    ("parties", "revenue_fen", "1", "uscc = '91440703MA4W1A276P'"),
    ("parties", "rnd_intensity", "'0.5'", "uscc = '91440703MA4W1A276P'"),
    ("parties", "innovation_star", "NOT innovation_star", "uscc = '91440703MA4W1A276P'"),
    ("parties", "bad_credit", "NOT bad_credit", "uscc = '91440703MA4W1A276P'"),
    ("parties", "uscc_override_reason", "'forged'", "uscc = '91440703MA4W1A276P'"),
    ("party_relations", "related_uscc", "'91440700MA51A0004H'", "party_uscc = '91440700MA51A0003E'"),
    ("projects", "name", "'改名'", "code = 'JM2024-002'"),
    ("projects", "city", "'urumqi'", "code = 'JM2024-002'"),
    ("projects", "rules_version", "'urumqi-2024-33'", "code = 'JM2024-002'"),
    ("projects", "category", "CASE WHEN category = 'commercialization' THEN 'tech_breakthrough' ELSE 'commercialization' END", "code = 'JM2024-002'"),
    ("projects", "mode", "CASE WHEN mode = 'saima' THEN 'jbgs' ELSE 'saima' END", "code = 'JM2024-002'"),
    ("projects", "demand_uscc", "'91440700MA51A0003E'", "code = 'JM2024-002'"),
    ("projects", "total_investment_fen", "total_investment_fen + 1", "code = 'JM2024-002'"),
    ("projects", "approved_grant_fen", "approved_grant_fen * 2", "code = 'JM2024-002'"),
    ("projects", "budget_year", "budget_year + 1", "code = 'JM2024-002'"),
    ("projects", "approval_date", "'2024-01-02'", "code = 'JM2024-002'"),
    ("projects", "start_date", "'2024-01-02'", "code = 'JM2024-002'"),
    ("projects", "end_date", "'2030-12-31'", "code = 'JM2024-002'"),
    ("projects", "entry_id", "1", "code = 'JM2024-002'"),
    ("lanes", "solver_uscc", "'91440700MA51A0003E'", "project_code = 'JM2024-002' AND lane_no = 1"),
    ("lanes", "lane_no", "9", "project_code = 'JM2024-002' AND lane_no = 1"),
    ("tranches", "name", "'x'", "project_code = 'JM2024-002' AND lane_no = 1 AND seq = 2"),
    ("tranches", "basis", "'subsidy_earned'", "project_code = 'JM2024-002' AND lane_no = 1 AND seq = 2"),
    ("tranches", "amount_fen", "amount_fen + 60000000", "project_code = 'JM2024-002' AND lane_no = 1 AND seq = 2"),
    ("tranches", "conditions", "'[\"approved\"]'", "project_code = 'JM2024-002' AND lane_no = 1 AND seq = 2"),
    ("tranches", "source", "'forged'", "project_code = 'JM2024-002' AND lane_no = 1 AND seq = 2"),
    ("tranches", "seq", "7", "project_code = 'JM2024-002' AND lane_no = 1 AND seq = 2"),
    ("project_events", "kind", "'closure'", "kind = 'stage' AND project_code = 'JM2024-002'"),
    ("project_events", "lane_no", "2", "kind = 'stage' AND project_code = 'JM2024-002'"),
    ("project_events", "stage", "'acceptance'", "kind = 'stage' AND project_code = 'JM2024-002'"),
    ("project_events", "passed", "NOT passed", "kind = 'stage' AND project_code = 'JM2024-002'"),
    ("project_events", "reference", "'forged'", "kind = 'stage' AND project_code = 'JM2024-002'"),
    ("project_events", "value_date", "'2024-01-02'", "kind = 'stage' AND project_code = 'JM2024-002'"),
    ("project_events", "project_code", "'JM2024-001'", "kind = 'stage' AND project_code = 'JM2024-002'"),
    ("project_events", "payload", "'{\"months\": 36}'", "kind = 'extension'"),
    ("project_events", "tranche_id", "tranche_id + 1", "kind = 'release' AND project_code = 'JM2024-002'"),
    ("settings", "value", "'off'", "name = 'require_approval'"),
    ("settings", "name", "'approvers'", "name = 'require_approval'"),
    ("settings", "set_by", "'someone'", "name = 'require_approval'"),
    ("requests", "kind", "'revocation'", "id = 1"),
    ("requests", "project_code", "'UR2025-002'", "id = 1"),
    ("requests", "arguments", "'{\"project\": \"UR2025-002\"}'", "id = 1"),
    ("requests", "requested_by", "'someone'", "id = 1"),
    ("requests", "entry_id", "entry_id - 1", "id = 1"),
    ("requests", "id", "9", "id = 1"),
    ("requests", "status", "'approved'", "id = 2"),
    ("requests", "decided_by", "'someone'", "id = 2"),
    ("requests", "decision_reason", "'forged'", "id = 2"),
    ("requests", "decision_entry_id", "decision_entry_id - 1", "id = 2"),
    ("accounts", "book", "'memo'", "name LIKE 'Assets:Fiscal:Advances:JM2024-002:L1'"),
    ("accounts", "type", "'Liabilities'", "name LIKE 'Assets:Fiscal:Advances:JM2024-002:L1'"),
    ("accounts", "project_code", "'JM2025-003'", "name LIKE 'Assets:Fiscal:Advances:JM2024-002:L1'"),
    ("accounts", "lane", "'91440700MA51A0003E'", "name LIKE 'Assets:Fiscal:Advances:JM2024-002:L1'"),
    ("accounts", "opened_on", "'2020-01-01'", "name LIKE 'Assets:Fiscal:Advances:JM2024-002:L1'"),
    ("accounts", "name", "'Assets:Fiscal:Advances:JM2024-002:L9'", "name LIKE 'Assets:Fiscal:Advances:JM2024-002:L1'"),
    ("accounts", "closed_on", "opened_on", "name LIKE 'Assets:Fiscal:Advances:JM2024-002:L1'"),
]


@pytest.mark.parametrize("table,column,value,where", CHANGES, ids=[f"{t}.{c}" for t, c, _, _ in CHANGES])
def test_a_changed_row_is_refused_or_named_by_verify(demo_engine, backend, table, column, value, where):
    if backend == "postgresql" and value.startswith("'20"):
        value = f"DATE {value}"
    update = f"UPDATE {table} SET {column} = {value} WHERE {where}"
    # Closing an account is the one change its row allows (once); every other is refused.
    assert column == "closed_on" or _refused(demo_engine, update), f"the database let {update} through"
    problem = _problem(demo_engine, table, update)
    assert problem is not None, f"verify missed {update}"
    if column == "closed_on":
        assert "outside its dates" in problem, problem
    elif table == "accounts" and column in ("name", "book"):
        # Name and book are in every posting's hashed content: the chain itself breaks.
        assert "was altered after posting" in problem or "the account is in the memo book" in problem, problem
    elif problem.startswith("refused"):
        assert column in ("lane_no", "seq"), problem  # a unique key or foreign key still held
    else:
        assert f"table {table}" in problem, problem


DELETES = [
    ("parties", "uscc = '91440700MA51A0003E'"),
    ("party_relations", "party_uscc = '91440700MA51A0003E'"),
    ("projects", "code = 'JM2024-002'"),
    ("lanes", "project_code = 'JM2024-002'"),
    ("tranches", "project_code = 'JM2024-002' AND seq = 2"),
    ("project_events", "kind = 'stage' AND project_code = 'JM2024-002'"),
    ("settings", "name = 'require_approval'"),
    ("requests", "id = 2"),
    ("accounts", "name = 'Assets:Fiscal:Advances:JM2024-002:L1'"),
]


@pytest.mark.parametrize("table,where", DELETES, ids=[t for t, _ in DELETES])
def test_a_deleted_row_is_refused_or_named_by_verify(demo_engine, table, where):
    delete = f"DELETE FROM {table} WHERE {where}"
    assert _refused(demo_engine, delete), f"the database let {delete} through"
    problem = _problem(demo_engine, table, delete)
    assert problem is not None, f"verify missed {delete}"
    assert problem.startswith("refused") or f"table {table}" in problem, problem


INSERTS = [
    ("parties", ("INSERT INTO parties (uscc, name, kind, innovation_star, bad_credit, recorded_by) "
                "VALUES ('91440700MA51A0005L', '伪造', 'enterprise', false, false, 'x')")),
    ("party_relations", "INSERT INTO party_relations (party_uscc, related_uscc) VALUES ('91440703MA4W1A276P', '91440700MA51A0004H')"),
    ("lanes", "INSERT INTO lanes (project_code, lane_no, solver_uscc) VALUES ('JM2024-002', 5, '91440700MA51A0003E')"),
    ("tranches", ("INSERT INTO tranches (project_code, lane_no, seq, name, basis, amount_fen, conditions, source) "
                 "VALUES ('JM2024-002', 1, 9, 'x', 'grant_share', 100, '[]', '')")),
    # The attack of issue 12: a mid-term pass recorded without a journal entry of its own.
    ("project_events", ("INSERT INTO project_events (entry_id, project_code, value_date, kind, lane_no, stage, passed) "
                       "VALUES (3, 'JM2025-003', DATE '2025-01-01', 'stage', NULL, 'midterm', true)")),
    ("settings", "INSERT INTO settings (name, value, set_by, entry_id) VALUES ('require_approval', 'off', 'x', NULL)"),
    ("requests", ("INSERT INTO requests (id, kind, project_code, arguments, requested_by, status) "
                 "VALUES (9, 'release', 'JM2024-002', '{}', 'x', 'pending')")),
    # A release passed off as approved: a request nobody recorded, pointing at a money entry.
    ("requests", ("INSERT INTO requests (id, kind, project_code, arguments, requested_by, status, decided_by, decided_at, "
                 "decision_entry_id) SELECT 9, 'release', project_code, '{}', 'x', 'approved', 'y', CURRENT_TIMESTAMP, id "
                 "FROM journal_entries WHERE kind = 'release' AND project_code = 'JM2024-002' ORDER BY id LIMIT 1")),
    ("accounts", ("INSERT INTO accounts (name, book, type, project_code, lane, opened_on) "
                 "VALUES ('Assets:Fiscal:Advances:JM2024-002:L1:Extra', 'fiscal', 'Assets', 'JM2025-003', NULL, DATE '2024-01-01')")),
]


@pytest.mark.parametrize("table,sql", INSERTS, ids=[t for t, _ in INSERTS])
def test_an_inserted_row_is_named_by_verify(demo_engine, backend, table, sql):
    if backend == "sqlite":
        sql = sql.replace("DATE '", "'")
    problem = _problem(demo_engine, table, sql)
    assert problem is not None and (f"table {table}" in problem or "account" in problem), problem


def test_the_fold_rebuilds_every_programme_table_from_the_journal(demo_engine):
    """The projection of the journal equals the tables, row for row, on the demo ledger."""
    with Session(demo_engine) as session:
        assert projection.differences(session) is None
        folded = projection.fold(projection.journal_events(session))
        assert len(folded["projects"]) == 9
        assert len(folded["tranches"]) == len(projection.table_rows(session, "tranches"))
