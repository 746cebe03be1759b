"""Hostile users against the guards (issue 13, items 1, 2 and 7's first message).

* Temp tables cannot shadow the ledger's tables on PostgreSQL: the logins ``db grant`` makes
  cannot create one, and where TEMP is granted anyway the functions and triggers still read
  the ledger's own tables (schema-qualified, ``search_path = <schema>, pg_temp``).
* Money out is defined by accounts, not by the kind label; a lane's advances never exceed
  what was released to it, whatever the path.
* ``verify`` under an enterprise login says why it cannot verify, in one line.
"""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
import test_roles
from conftest import Cli
from programme_fixtures import JM_APPROVAL, JM_UNIVERSITY, approve, jiangmen_world
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from test_roles import B_DEMAND, A, B, refused, rows

logins = test_roles.logins  # the fixture: logins of every role over real connections

ADV = f"Assets:Fiscal:Advances:{A}:L1"
RELEASED = f"Assets:Memo:Grant:Released:{A}:L1"
FUNDING = "Income:Fiscal:Funding:Y2025"


@contextlib.contextmanager
def _temp_granted(db_url: str, login: str):
    """What a database that kept TEMP for everyone would allow: the guards must hold anyway."""
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        database = conn.execute(text("SELECT current_database()")).scalar_one()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'GRANT TEMPORARY ON DATABASE "{database}" TO "{login}"'))
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM "{login}"'))
        admin.dispose()


def _login(logins, name: str) -> str:
    return make_url(logins["url"][name]).username


# --- temp-table shadowing (PostgreSQL) ------------------------------------------------------


def test_logins_made_by_grant_cannot_create_temp_tables(logins):
    for name in ("officer", "approver", "auditor", "solver_a"):
        refused(logins[name], "CREATE TEMP TABLE settings (id int, name text, value text)")


def test_an_officer_temp_settings_table_does_not_switch_approval_off(logins, engine, db_url):
    from ledger.programme import release

    admin = Cli(db_url, user="admin")
    admin("stage", "--project", A, "--stage", "midterm", "--passed", "--date", "2026-03-01")
    admin("settings", "--require-approval", "on")
    officer = Cli(logins["url"]["officer"], user="maker")
    assert "request 1 recorded" in officer("release", "--project", A, "--date", "2026-03-10").output
    before = rows(engine, "SELECT count(*) FROM journal_entries WHERE kind = 'release'")
    with _temp_granted(db_url, _login(logins, "officer")), logins["officer"].connect() as conn:
        conn.execute(text("CREATE TEMP TABLE settings (id int, name text, value text)"))
        conn.execute(text("INSERT INTO settings VALUES (1, 'require_approval', 'off')"))
        conn.commit()
        with pytest.raises(DBAPIError, match="money_out_must_be_approved"), Session(bind=conn) as session:
                # The service itself reads the temp table (approval "off") and posts; the
                # database's deferred trigger reads the ledger's settings at commit.
                release(session, project=A, lane=None, date=dt.date(2026, 3, 10), voucher="SHADOW-1", actor="maker")
                session.commit()
    assert rows(engine, "SELECT count(*) FROM journal_entries WHERE kind = 'release'") == before
    assert rows(engine, "SELECT status FROM requests") == [("pending",)]
    assert admin("verify").output.startswith("OK")


def test_an_enterprise_temp_lanes_table_does_not_widen_what_it_sees(logins, engine, db_url):
    solver_a = logins["solver_a"]
    own_entries = rows(engine, "SELECT count(*) FROM journal_entries WHERE project_code = :c", c=A)
    assert rows(solver_a, "SELECT code FROM projects") == [(A,)]
    with _temp_granted(db_url, _login(logins, "solver_a")), solver_a.connect() as conn:
        conn.execute(text("CREATE TEMP TABLE lanes (project_code varchar, lane_no int, solver_uscc varchar)"))
        conn.execute(text("INSERT INTO lanes VALUES (:b, 1, :u)"), {"b": B, "u": JM_UNIVERSITY})
        conn.execute(text("CREATE TEMP TABLE enterprise_logins (login varchar, party_uscc varchar)"))
        conn.execute(text("INSERT INTO enterprise_logins VALUES (session_user, :d)"), {"d": B_DEMAND})
        assert [tuple(r) for r in conn.execute(text("SELECT code FROM projects"))] == [(A,)]
        assert [tuple(r) for r in conn.execute(text("SELECT count(*) FROM journal_entries"))] == own_entries
        assert [tuple(r) for r in conn.execute(
            text("SELECT count(*) FROM journal_entries WHERE project_code = :b"), {"b": B})] == [(0,)]
        assert [tuple(r) for r in conn.execute(text("SELECT count(*) FROM parties WHERE uscc = :d"), {"d": B_DEMAND})] == [(0,)]


def test_an_enterprise_cannot_read_other_parties_row_counts(logins, engine):
    solver_a = logins["solver_a"]
    refused(solver_a, "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'journal_entries'")
    refused(solver_a, "SELECT pg_stat_get_live_tuples('journal_entries'::regclass)")
    refused(solver_a, "SELECT reltuples FROM pg_class WHERE relname = 'journal_entries'")
    # The catalog itself stays readable (names, kinds), and staff keep the statistics.
    assert rows(solver_a, "SELECT relkind FROM pg_class WHERE relname = 'journal_entries' "
                          "AND relnamespace = current_schema()::regnamespace") == [("r",)]
    assert len(rows(logins["auditor"], "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'journal_entries'")) >= 1


def test_every_jiebang_function_pins_its_search_path_with_pg_temp_last(engine, backend):
    if backend != "postgresql":
        pytest.skip("functions and search paths are PostgreSQL's")
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        found = conn.execute(text(
            "SELECT proname, proconfig FROM pg_proc WHERE proname LIKE 'jiebang%' "
            "AND pronamespace = current_schema()::regnamespace ORDER BY proname"
        )).all()
    assert len(found) == 17  # 0007 made nine; 0010 adds the portal log guard and two SET ROLE helpers; 0011 the advances bound;
    # 0012 the four helpers of the portal auditors' row-level security
    for name, config in found:
        # The search path first; the two guards that run per entry also plan without
        # sequential scans (migration 0011 says why).
        extra = ["enable_seqscan=off"] if name in ("jiebang_advances_bound", "jiebang_money_out_approved") else []
        assert config in ([f"search_path={schema}, pg_temp", *extra], [f'search_path="{schema}", pg_temp', *extra]), (name, config)


def test_verify_under_an_enterprise_login_says_why_in_one_line(logins):
    result = Cli(logins["url"]["solver_a"])("verify", expect=1)
    assert result.stderr.count("\n") == 1
    assert "sees only its own rows" in result.stderr and "auditor or officer role" in result.stderr
    assert "missing" not in result.stderr
    assert Cli(logins["url"]["auditor"])("verify").output.startswith("OK")


# --- money out by accounts; advances within releases (both backends) -----------------------


@pytest.fixture
def released(engine, db_url):
    with Session(engine) as session, session.begin():
        jiangmen_world(session)
        approve(session, JM_APPROVAL)
    admin = Cli(db_url, user="admin")
    admin("stage", "--project", A, "--stage", "contract_signed", "--passed", "--date", "2025-10-10")
    admin("release", "--project", A, "--date", "2025-10-20")
    return admin


def _balance(engine, account: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT COALESCE(SUM(p.amount_fen), 0) FROM postings p JOIN accounts a ON a.id = p.account_id WHERE a.name = :n"
        ), {"n": account}).scalar_one())


def _csv(tmp_path, name: str, legs: list[tuple[str, str]], kind: str = "adjustment") -> str:
    path = tmp_path / name
    lines = ["txn_id,date,account,amount,kind"] + [f"{name},2025-11-01,{acc},{amount},{kind}" for acc, amount in legs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def test_money_out_under_kind_adjustment_is_refused_while_approval_is_required(released, engine, tmp_path):
    admin = released
    admin("settings", "--require-approval", "on")
    entries = rows(engine, "SELECT count(*) FROM journal_entries")
    out = _csv(tmp_path, "OUT-1", [(ADV, "100.00"), (FUNDING, "-100.00")])
    result = admin("post", "--file", out, expect=1)
    assert result.stderr.count("\n") == 1 and "pays fiscal money out" in result.stderr
    assert f"credits {FUNDING}" in result.stderr or f"debits {ADV}" in result.stderr
    # The same under JSON, and under any other kind label.
    json_out = tmp_path / "out.json"
    json_out.write_text(
        '{"date": "2025-11-01", "kind": "correction", "voucher": "OUT-2", "postings": '
        f'[{{"account": "{ADV}", "amount": "0.01"}}, {{"account": "{FUNDING}", "amount": "-0.01"}}]}}',
        encoding="utf-8",
    )
    assert "pays fiscal money out" in admin("post", "--file", str(json_out), expect=1).stderr
    assert rows(engine, "SELECT count(*) FROM journal_entries") == entries
    # The other side: money coming back (the same accounts, the other way) needs no approval.
    back = _csv(tmp_path, "BACK-1", [(FUNDING, "100.00"), (ADV, "-100.00")])
    admin("post", "--file", back)
    assert rows(engine, "SELECT count(*) FROM journal_entries") == [(entries[0][0] + 1,)]


def test_postgresql_trigger_refuses_money_out_under_any_kind(released, engine, backend):
    if backend != "postgresql":
        pytest.skip("the database trigger is PostgreSQL's; SQLite is covered through the CLI above")
    from ledger.core.journal import EntryDraft, PostingDraft, post

    released("settings", "--require-approval", "on")
    # Money back first (needs no approval), so that taking it again stays within the releases
    # and only the money-out trigger has a reason to refuse.
    give = EntryDraft(value_date=dt.date(2025, 11, 1), kind="adjustment", voucher="RAW-GIVE", actor="x",
                      postings=(PostingDraft(FUNDING, 100), PostingDraft(ADV, -100)))
    with Session(engine) as session, session.begin():
        assert post(session, give).created
    draft = EntryDraft(value_date=dt.date(2025, 11, 1), kind="adjustment", voucher="RAW-ADJ", actor="x",
                       postings=(PostingDraft(ADV, 100), PostingDraft(FUNDING, -100)))
    with pytest.raises(DBAPIError, match="money_out_must_be_approved"), Session(engine) as session, session.begin():
        post(session, draft)  # the bare core: no Python guard, only the database's
    back = EntryDraft(value_date=dt.date(2025, 11, 1), kind="adjustment", voucher="RAW-BACK", actor="x",
                      postings=(PostingDraft(FUNDING, 100), PostingDraft(ADV, -100)))
    with Session(engine) as session, session.begin():
        assert post(session, back).created


def test_advances_never_exceed_releases_one_fen_either_side(released, engine, tmp_path):
    admin = released
    released_fen = _balance(engine, RELEASED)
    assert released_fen > 0 and _balance(engine, ADV) == released_fen
    # Give 1,000.00 back, then try to take back 1,000.01 (refused) and 1,000.00 (posted).
    admin("post", "--file", _csv(tmp_path, "BACK-1", [(FUNDING, "1000.00"), (ADV, "-1000.00")]))
    over = admin("post", "--file", _csv(tmp_path, "TAKE-1", [(ADV, "1000.01"), (FUNDING, "-1000.01")]), expect=1)
    assert over.stderr.count("\n") == 1
    assert f"would be {_yuan(released_fen + 1)} but {_yuan(released_fen)} was released" in over.stderr
    assert _balance(engine, ADV) == released_fen - 100_000
    admin("post", "--file", _csv(tmp_path, "TAKE-2", [(ADV, "1000.00"), (FUNDING, "-1000.00")]))
    assert _balance(engine, ADV) == released_fen
    # The attack from the issue: many times the release, in one file.
    big = admin("post", "--file", _csv(tmp_path, "BIG-1", [(ADV, _yuan(released_fen)), (FUNDING, "-" + _yuan(released_fen))]), expect=1)
    assert "was released" in big.stderr and _balance(engine, ADV) == released_fen


def _raw_take(engine, fen: int, voucher: str, *, replica: bool = False):
    """Post advances of ``fen`` against funding through the bare core: no Python guard."""
    from ledger.core.journal import EntryDraft, PostingDraft, post

    draft = EntryDraft(value_date=dt.date(2025, 11, 1), kind="adjustment", voucher=voucher, actor="x",
                       postings=(PostingDraft(ADV, fen), PostingDraft(FUNDING, -fen)))
    with Session(engine) as session, session.begin():
        if replica:  # a superuser switching the database's triggers off, to reach verify
            session.execute(text("SET LOCAL session_replication_role = replica"))
        return post(session, draft)


def test_postgresql_trigger_keeps_advances_within_releases_one_fen_either_side(released, engine, backend):
    if backend != "postgresql":
        pytest.skip("the database trigger is PostgreSQL's; SQLite relies on the Python guard and verify")
    released_fen = _balance(engine, RELEASED)
    # Give 1,000.00 back through the CLI, then take back one fen more (refused at commit by the
    # trigger, whoever writes) and exactly as much (accepted).
    from ledger.core.journal import EntryDraft, PostingDraft, post

    with Session(engine) as session, session.begin():
        post(session, EntryDraft(value_date=dt.date(2025, 11, 1), kind="adjustment", voucher="RAW-GIVE", actor="x",
                                 postings=(PostingDraft(FUNDING, 100_000), PostingDraft(ADV, -100_000))))
    with pytest.raises(DBAPIError, match="advances_must_not_exceed_released"):
        _raw_take(engine, 100_001, "RAW-TAKE-1")
    assert _balance(engine, ADV) == released_fen - 100_000
    assert _raw_take(engine, 100_000, "RAW-TAKE-2").created
    assert _balance(engine, ADV) == released_fen


def test_verify_names_the_entry_after_which_advances_exceeded_releases(released, engine, backend):
    admin = released
    assert admin("verify").output.startswith("OK")
    released_fen = _balance(engine, RELEASED)
    # On SQLite the bare core has no guard; on PostgreSQL only a superuser switching the
    # triggers off gets the rows in. Either way verify must notice.
    posted = _raw_take(engine, 1, "RAW-OVER", replica=backend == "postgresql")
    assert _balance(engine, ADV) == released_fen + 1
    result = admin("verify", expect=1)
    assert result.stderr.count("\n") == 1
    assert f"entry {posted.entry_id} raised the advances of {A} lane 1" in result.stderr
    assert "never exceed its releases" in result.stderr
