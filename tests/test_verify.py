"""Tamper evidence: rows changed behind the ledger's back are named by `jiebang verify`.

Each tampering test drops (SQLite) or disables (PostgreSQL) the append-only triggers on a raw
connection, changes rows the way an insider with database access could, and checks that
`jiebang verify` exits 1 naming the entry that was touched.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import text

from ledger.core.journal import AccountSpec, EntryDraft, PostingDraft, open_accounts, post_many

D = dt.date
TREASURY = "Assets:Treasury"
APPROPRIATIONS = "Equity:Appropriations:Y2025"
ADVANCES = "Assets:Advances:JM2025-003"
OTHER_ADVANCES = "Assets:Advances:JM2025-004"
OBLIGATIONS = "Assets:Obligations:JM2025-003"
AUTHORITY = "Equity:BudgetAuthority:Y2025"

# The trigger names of the first migration (SQLite) that stand between a user and an edit.
SQLITE_APPEND_ONLY_TRIGGERS = (
    "journal_entries_no_update",
    "journal_entries_no_delete",
    "postings_no_update",
    "postings_no_delete",
)


def _legs(*pairs):
    return tuple(PostingDraft(account, amount) for account, amount in pairs)


@pytest.fixture
def ledger(session_factory):
    """Three entries: an appropriation, then two tranche releases touching both books."""
    with session_factory() as session:
        open_accounts(
            session,
            [
                AccountSpec(TREASURY, "fiscal", D(2025, 1, 1)),
                AccountSpec(APPROPRIATIONS, "fiscal", D(2025, 1, 1)),
                AccountSpec(ADVANCES, "fiscal", D(2025, 1, 1), "JM2025-003"),
                AccountSpec(OTHER_ADVANCES, "fiscal", D(2025, 1, 1), "JM2025-004"),
                AccountSpec(OBLIGATIONS, "memo", D(2025, 1, 1), "JM2025-003"),
                AccountSpec(AUTHORITY, "memo", D(2025, 1, 1)),
            ],
        )
        releases = [
            EntryDraft(
                D(2025, 3, 10 + n),
                "release",
                _legs((ADVANCES, amount), (TREASURY, -amount), (OBLIGATIONS, -amount), (AUTHORITY, amount)),
                project_code="JM2025-003",
                voucher=f"PV-{n + 2}",
                memo=f"tranche {n + 1}",
                actor="officer-a",
            )
            for n, amount in enumerate((60_000_000, 40_000_000))
        ]
        appropriation = EntryDraft(
            D(2025, 1, 2), "appropriation", _legs((TREASURY, 500_000_000), (APPROPRIATIONS, -500_000_000)), voucher="A-1"
        )
        return post_many(session, [appropriation, *releases])


def _append_only_off(engine) -> None:
    """Switch off the triggers that refuse UPDATE and DELETE, as an insider with DDL rights could."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            for name in SQLITE_APPEND_ONLY_TRIGGERS:
                conn.execute(text(f"DROP TRIGGER {name}"))
        else:
            conn.execute(text("ALTER TABLE journal_entries DISABLE TRIGGER USER"))
            conn.execute(text("ALTER TABLE postings DISABLE TRIGGER USER"))


def _tamper(engine, *statements: str) -> None:
    _append_only_off(engine)
    _run(engine, statements)


def _run(engine, statements) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _snapshot(engine) -> tuple[list[dict], list[dict]]:
    with engine.connect() as conn:
        entries = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM journal_entries ORDER BY id"))]
        postings = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM postings ORDER BY id"))]
    return entries, postings


def _restore(engine, snapshot) -> None:
    """Put the original rows back exactly: postings first, then the entry rows that seal them."""
    entries, postings = snapshot
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM postings"))
        conn.execute(text("DELETE FROM journal_entries"))
        for table, rows in (("postings", postings), ("journal_entries", entries)):
            columns = list(rows[0])
            conn.execute(
                text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"),
                rows,
            )


def test_an_untampered_ledger_verifies_with_its_chain_head(cli, ledger):
    result = cli("verify")
    assert result.stdout == f"OK: 3 entries verified; chain head 3 {ledger[-1].hash}\n"
    assert result.stderr == ""
    result = cli("verify", "--format", "json")
    assert json.loads(result.stdout) == {
        "ok": True,
        "entries": 3,
        "head_id": 3,
        "head_hash": ledger[-1].hash,
        "first_bad_entry": None,
        "problem": None,
    }


def test_an_empty_ledger_verifies(cli):
    assert cli("verify").stdout == f"OK: 0 entries verified; chain head 0 {'0' * 64}\n"


def _entry_2_digest_mismatch() -> str:
    return "FAILED at entry 2: entry 2 (release PV-2) was altered after posting: its content no longer matches its recorded digest"


TAMPERINGS = {
    # Both fiscal legs doubled: the entry still balances, so only the digest can tell.
    "posting amount, both legs": (
        ["UPDATE postings SET amount_fen = amount_fen * 2 WHERE entry_id = 2 AND book = 'fiscal'"],
        _entry_2_digest_mismatch(),
    ),
    "posting amount, one leg": (
        ["UPDATE postings SET amount_fen = amount_fen + 1 WHERE id = (SELECT min(id) FROM postings WHERE entry_id = 2)"],
        "FAILED at entry 2: entry 2 does not balance in the fiscal book: its postings sum to 0.01",
    ),
    "posting moved to another project": (
        [
            (
                "UPDATE postings SET account_id = (SELECT id FROM accounts WHERE name = 'Assets:Advances:JM2025-004') "
                "WHERE entry_id = 2 AND account_id = (SELECT id FROM accounts WHERE name = 'Assets:Advances:JM2025-003')"
            )
        ],
        _entry_2_digest_mismatch(),
    ),
    "memo": (
        ["UPDATE journal_entries SET memo = 'tranche 1 (approved late)' WHERE id = 2"],
        _entry_2_digest_mismatch(),
    ),
    "value date, entry and postings": (
        [
            "UPDATE journal_entries SET value_date = '2025-03-09' WHERE id = 2",
            "UPDATE postings SET value_date = '2025-03-09' WHERE entry_id = 2",
        ],
        _entry_2_digest_mismatch(),
    ),
    "actor": (
        ["UPDATE journal_entries SET actor = 'officer-z' WHERE id = 2"],
        "FAILED at entry 2: entry 2 (release) has a hash that does not match its content and predecessor",
    ),
    "entry and its postings deleted": (
        ["DELETE FROM postings WHERE entry_id = 2", "DELETE FROM journal_entries WHERE id = 2"],
        "FAILED at entry 2: entry 2 is missing: the journal jumps from entry 1 to entry 3",
    ),
    "last entry and its postings deleted": (
        ["DELETE FROM postings WHERE entry_id = 3", "DELETE FROM journal_entries WHERE id = 3"],
        "FAILED at entry 3: the chain head records entry 3 as last, but the journal ends at entry 2",
    ),
    "prev_hash": (
        ["UPDATE journal_entries SET prev_hash = (SELECT hash FROM journal_entries WHERE id = 1) WHERE id = 3"],
        "FAILED at entry 3: entry 3 does not follow entry 2: its prev_hash differs from that entry's hash",
    ),
}


def test_verify_names_the_tampered_entry(cli, engine, ledger):
    # One ledger per backend for all the tamperings (a PostgreSQL database costs ~0.5 s):
    # after each one the original rows are put back and verify must pass again, which also
    # shows that verify judges the rows alone.
    ok = f"OK: 3 entries verified; chain head 3 {ledger[-1].hash}\n"
    original = _snapshot(engine)
    _append_only_off(engine)
    for tampering, (statements, expected) in TAMPERINGS.items():
        _run(engine, statements)
        result = cli("verify", expect=1)
        assert (result.stderr, result.stdout) == (expected + "\n", ""), tampering
        _restore(engine, original)
        assert cli("verify").stdout == ok, f"after restoring from: {tampering}"

    # recorded_at comes from the database clock; it is not part of what an entry says, so
    # re-stamping it (as a restore from backup may) leaves the chain intact.
    _run(engine, ["UPDATE journal_entries SET recorded_at = '2030-01-01 00:00:00+00:00'"])
    assert cli("verify").stdout == ok


def test_verify_json_names_the_tampered_entry(cli, engine, ledger):
    from cli import main

    _tamper(engine, "UPDATE journal_entries SET memo = 'edited' WHERE id = 2")
    result = cli.runner.invoke(main, ["--db", cli.db_url, "verify", "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["ok"], report["first_bad_entry"], report["entries"], report["head_id"]) == (False, 2, 1, 1)
    assert report["head_hash"] == ledger[0].hash


def test_verify_reads_one_snapshot_while_officers_post(engine, ledger, session_factory):
    """Entries committed while verify is reading are not half-seen (PostgreSQL reads are
    REPEATABLE READ; a SQLite read transaction is a snapshot already)."""
    from sqlalchemy.orm import Session

    from ledger.core.db import read_only
    from ledger.core.verify import verify

    with Session(read_only(engine)) as reader, reader.begin():
        reader.execute(text("SELECT COUNT(*) FROM accounts")).scalar()  # the snapshot starts here
        with session_factory() as writer:
            post_many(writer, [EntryDraft(D(2025, 4, 1), "release", _legs((ADVANCES, 100), (TREASURY, -100)), voucher="PV-9")])
        result = verify(reader)
    assert result.ok, result.problem
    assert result.entries == 3
