"""Migration 20261201_0004 (journal indexes) goes down and up again on a ledger with entries,
keeping every row, the chain and the guards."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import text
from sqlalchemy.orm import Session

import migrations
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    PostingDraft,
    open_accounts,
    post_many,
    reverse,
)
from ledger.core.verify import verify


def _journal(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT id, kind, voucher, reverses_id, content_hash, hash FROM journal_entries ORDER BY id")).all()


def test_0004_down_and_up_keeps_the_journal(engine, session_factory):
    with session_factory() as session:
        open_accounts(session, [AccountSpec("Assets:Treasury", "fiscal", dt.date(2025, 1, 1)),
                                AccountSpec("Equity:Appropriations", "fiscal", dt.date(2025, 1, 1))])
        post_many(session, [
            EntryDraft(dt.date(2025, 1, 2), "appropriation", (PostingDraft("Assets:Treasury", 500), PostingDraft("Equity:Appropriations", -500)),
                       project_code="JM2025-003" if n else None, voucher=f"A-{n}")
            for n in range(3)
        ])
        reverse(session, 2, reason="keyed twice")
    before = _journal(engine)
    migrations.migrate(engine, "20261123_0003")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "20261123_0003"
    assert _journal(engine) == before
    migrations.migrate(engine, "head")
    assert _journal(engine) == before
    with Session(engine) as session, session.begin():
        assert verify(session).ok
    # The guards came back with the table: a second reversal of entry 2 is refused by the index.
    with engine.connect() as conn:
        duplicate = conn.execute(text("SELECT COUNT(*) FROM journal_entries WHERE reverses_id = 2")).scalar()
    assert duplicate == 1


def test_requests_recorded_before_0006_are_covered_by_a_snapshot_entry(engine, session_factory):
    """A ledger with facts and a request made before requests were in the chain: after the
    upgrade the request has no entry, ``jiebang init`` records it in one snapshot entry, and
    verify folds it from there (a later decision completes it)."""
    from ledger.programme import projection
    from ledger.programme.approvals import change_setting

    migrations.migrate(engine, "20261204_0005")
    with session_factory() as session:
        change_setting(session, "require_approval", "on", user="officer-a")
        # PostgreSQL's trigger wants the request in the login's name.
        user = "current_user" if session.get_bind().dialect.name == "postgresql" else "'officer-a'"
        session.execute(text(
            "INSERT INTO requests (kind, project_code, arguments, requested_by) "
            f"VALUES ('release', 'JM2025-003', '{{\"project\": \"JM2025-003\"}}', {user})"))
    migrations.migrate(engine, "head")
    with session_factory() as session:
        assert "table requests holds row (1)" in projection.verify_ledger(session).problem
        assert projection.needs_snapshot(session)
        posted = projection.record_snapshot(session, actor="admin", revision=migrations.HEAD)
    with session_factory() as session:
        assert not projection.needs_snapshot(session)
        assert projection.verify_ledger(session).ok
        facts = session.execute(text("SELECT facts FROM journal_entries WHERE id = :i"), {"i": posted.entry_id}).scalar()
    assert list(json.loads(facts)["snapshot"]) == ["requests"]
