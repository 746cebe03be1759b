"""Maker–checker for money out, on both backends, through the command line.

On SQLite the acting user is ``--user`` and approvers are named in the settings (an honour
system). On PostgreSQL the acting user is the database login: each user here is a real login
made with ``jiebang db grant`` (roles are cluster-wide, so the names are unique per test and
dropped at the end).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from conftest import Cli
from programme_fixtures import JM_APPROVAL, approve, assert_verified, jiangmen_world
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

CODE = JM_APPROVAL.code
RECORDED = "recorded; it needs approval by another user with the approver role"


@pytest.fixture
def users(db_url, backend, engine):
    """``users(name, role)`` -> a Cli acting as that user; the admin Cli is ``users.admin``."""
    admin = Cli(db_url, user="admin")
    logins: list[str] = []
    tag = uuid.uuid4().hex[:8]

    def make(name: str, role: str) -> Cli:
        if backend == "sqlite":
            if role == "approver":
                admin("settings", "--approver", name)
            return Cli(db_url, user=name)
        login = f"jb_{tag}_{name}"
        admin("db", "grant", role, login)
        logins.append(login)
        url = make_url(db_url).set(username=login).render_as_string(hide_password=False)
        cli = Cli(url, user=name)
        cli.login = login
        return cli

    make.admin = admin
    make.name = lambda cli: getattr(cli, "login", cli.user)
    yield make
    if logins:
        import gc

        gc.collect()  # close pooled connections of the in-process CLI runs
        drop = create_engine(db_url, isolation_level="AUTOCOMMIT")
        with drop.connect() as conn:
            for login in logins:
                conn.execute(text(f'DROP ROLE IF EXISTS "{login}"'))
        drop.dispose()


@pytest.fixture
def world(engine, users):
    """A Jiangmen 揭榜挂帅 project whose first tranche (contract signed) is due."""
    with Session(engine) as session, session.begin():
        jiangmen_world(session)
        approve(session, JM_APPROVAL)
    users.admin("stage", "--project", CODE, "--stage", "contract_signed", "--passed", "--date", "2025-10-10")
    return users


def _entries(engine, kind: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            text("SELECT id, actor, memo FROM journal_entries WHERE kind = :k ORDER BY id"), {"k": kind}).mappings()]


def _requests(cli, *args) -> list[dict]:
    return json.loads(cli("requests", "--format", "json", *args).stdout)


def test_off_by_default_money_out_posts_at_once(world, engine):
    admin = world.admin
    shown = json.loads(admin("settings", "--format", "json").stdout)
    assert {r["setting"]: r["value"] for r in shown}["require_approval"] == "off"
    result = admin("release", "--project", CODE, "--date", "2025-10-20")
    assert result.stdout.startswith(f"拨付 {CODE} L1 第1期：") and "request" not in result.stdout
    assert len(_entries(engine, "release")) == 1
    assert _requests(admin) == []


def test_a_request_waits_for_another_user_with_the_approver_role(world, engine):
    admin = world.admin
    maker, checker, other = world("maker", "officer"), world("checker", "approver"), world("other", "officer")
    admin("settings", "--require-approval", "on")
    setting = _entries(engine, "setting")[-1]
    assert "require_approval = on" in setting["memo"]

    # A request the rules refuse today is refused at once, nothing recorded.
    early = maker("release", "--project", CODE, "--date", "2025-10-01", "--tranche", "2", expect=1)
    assert "error:" in early.stderr and _requests(admin) == []

    result = maker("release", "--project", CODE, "--date", "2025-10-20", "--voucher", "ZF-1")
    assert result.stdout.strip() == f"request 1 {RECORDED}."
    assert _entries(engine, "release") == []
    [pending] = _requests(admin, "--status", "pending")
    assert pending["kind"] == "release" and pending["requested_by"] == world.name(maker)
    assert pending["arguments"]["voucher"] == "ZF-1" and pending["arguments"]["date"] == "2025-10-20"
    assert pending["requested_at"] and pending["decided_by"] is None

    own = maker("approve", "1", expect=1)
    assert "another user with the approver role" in own.stderr
    not_approver = other("approve", "1", expect=1)
    assert "is not an approver" in not_approver.stderr
    assert _requests(admin, "--status", "pending")[0]["id"] == 1

    approved = checker("approve", "1")
    [entry] = _entries(engine, "release")
    assert f"entry {entry['id']}." in approved.stdout
    assert entry["actor"] == f"{world.name(maker)} approved by {world.name(checker)}"
    [done] = _requests(admin, "--status", "approved")
    assert done["decided_by"] == world.name(checker) and done["entry"] == entry["id"] and done["decided_at"]
    again = checker("approve", "1", expect=1)
    assert "already approved" in again.stderr
    assert_verified(admin)


def test_approval_rechecks_every_rule_and_a_refusal_leaves_the_request_pending(world, engine):
    admin = world.admin
    maker, checker = world("maker", "officer"), world("checker", "approver")
    admin("settings", "--require-approval", "on")
    maker("release", "--project", CODE, "--tranche", "1", "--date", "2025-10-20", "--voucher", "ZF-A")
    maker("release", "--project", CODE, "--tranche", "1", "--date", "2025-10-21", "--voucher", "ZF-B")
    checker("approve", "1")
    refused = checker("approve", "2", expect=1)
    assert "request 2 stays pending" in refused.stderr and "already released" in refused.stderr
    assert [r["id"] for r in _requests(admin, "--status", "pending")] == [2]
    assert len(_entries(engine, "release")) == 1

    checker("reject", "2", "--reason", "duplicate of request 1")
    [rejected] = _requests(admin, "--status", "rejected")
    assert rejected["reason"] == "duplicate of request 1" and rejected["decided_by"] == world.name(checker)
    [fact] = _entries(engine, "request_rejection")
    assert rejected["entry"] == fact["id"] and "duplicate of request 1" in fact["memo"]
    checker("approve", "2", expect=1)  # decided once

    # Termination and write-off go through the same gate, with their arguments stored.
    maker("terminate", "--project", CODE, "--reference", "江科〔2026〕9号", "--date", "2026-01-10")
    checker("approve", "3")
    assert len(_entries(engine, "termination")) == 1
    maker("write-off", "--project", CODE, "--amount", "1,000.00", "--reason", "单位注销", "--approval", "江财〔2026〕2号",
          "--date", "2026-02-01")
    [write_off] = _requests(admin, "--status", "pending")
    assert write_off["kind"] == "write_off" and write_off["arguments"]["amount_fen"] == 100000
    checker("reject", str(write_off["id"]), "--reason", "collect first")
    assert _entries(engine, "write_off") == []
    assert_verified(admin)


def test_the_requests_table_is_insert_only_except_one_decision(world, engine, backend):
    admin = world.admin
    maker = world("maker", "officer")
    admin("settings", "--require-approval", "on")
    maker("release", "--project", CODE, "--date", "2025-10-20")
    for statement in (
        "UPDATE requests SET arguments = '{}' WHERE id = 1",
        "DELETE FROM requests WHERE id = 1",
        "UPDATE requests SET status = 'approved', decided_by = requested_by, decided_at = CURRENT_TIMESTAMP, decision_entry_id = 1 WHERE id = 1",
        "UPDATE settings SET value = 'off'",
        "DELETE FROM settings",
    ):
        with engine.connect() as conn, pytest.raises(DBAPIError):
            conn.execute(text(statement))
            conn.commit()
    assert _requests(admin)[0]["status"] == "pending"


def test_postgresql_refuses_unapproved_money_out_even_behind_the_commands(world, engine, backend, db_url):
    if backend != "postgresql":
        pytest.skip("the database-level approval check is PostgreSQL's (SQLite: honour system, see docs/access.md)")
    from ledger.core.errors import Refusal
    from ledger.core.journal import AccountSpec, EntryDraft, PostingDraft, open_accounts, post
    from ledger.programme import chart, release

    maker = world("maker", "officer")
    world.admin("settings", "--require-approval", "on")
    maker_engine = create_engine(make_url(db_url).set(username=maker.login))
    try:
        # The service refuses in Python (money out by accounts, ledger.programme.guards) ...
        with pytest.raises(Refusal, match="money_out_must_be_approved|pays fiscal money out"), \
                Session(maker_engine) as session, session.begin():
            release(session, project=CODE, lane=None, date=dt.date(2025, 10, 20), voucher="RAW-1", actor="maker")
        # ... and the database refuses the same postings written through the bare core, with
        # the release's memo legs too (so that the advances stay within the releases and only
        # the approval is missing).
        raw = EntryDraft(
            value_date=dt.date(2025, 10, 20), kind="release", voucher="RAW-1", actor="maker", postings=(
                PostingDraft(chart.advances(CODE, 1), 100), PostingDraft(chart.funding(2025), -100),
                PostingDraft(chart.grant_released(CODE, 1), 100), PostingDraft(chart.grant_unreleased(CODE, 1), -100)),
        )
        with pytest.raises(DBAPIError, match="money_out_must_be_approved"), Session(maker_engine) as session, session.begin():
            open_accounts(session, [AccountSpec(chart.funding(2025), "fiscal", dt.date(2025, 1, 1), None, None)])
            post(session, raw)
    finally:
        maker_engine.dispose()
    assert _entries(engine, "release") == []


def test_the_chain_holds_each_request_and_its_decision(world, engine, backend):
    """The request is a fact entry; the approval's decision rides in the money entry it posts.
    Pointing the approval at another entry behind the guards' back is named by verify."""
    from ledger.programme.projection import verify_ledger

    admin = world.admin
    maker, checker = world("maker", "officer"), world("checker", "approver")
    admin("settings", "--require-approval", "on")
    maker("release", "--project", CODE, "--date", "2025-10-20", "--voucher", "ZF-1")
    checker("approve", "1")
    with engine.connect() as conn:
        facts = {kind: json.loads(f) for kind, f in conn.execute(
            text("SELECT kind, facts FROM journal_entries WHERE kind IN ('request', 'release')"))}
        request_entry, release_entry = conn.execute(
            text("SELECT entry_id, decision_entry_id FROM requests WHERE id = 1")).one()
    request = facts["request"]["request"]
    assert {k: v for k, v in request.items() if k != "arguments"} == {
        "id": 1, "kind": "release", "project_code": CODE, "requested_by": world.name(maker)}
    assert request["arguments"]["voucher"] == "ZF-1" and request["arguments"]["date"] == "2025-10-20"
    assert facts["release"]["decision"] == {"request": 1, "status": "approved", "decided_by": world.name(checker),
                                            "reason": None}
    assert request_entry < release_entry
    with Session(engine) as session:
        session.begin()
        if backend == "sqlite":
            session.execute(text("DROP TRIGGER requests_decide_once"))
        else:
            session.execute(text("ALTER TABLE requests DISABLE TRIGGER USER"))
        session.execute(text("UPDATE requests SET decision_entry_id = entry_id WHERE id = 1"))
        problem = verify_ledger(session).problem
        session.rollback()
    assert problem == (f"table requests, row (1), column decision_entry_id: the journal says {release_entry}, "
                       f"the table holds {request_entry}")
