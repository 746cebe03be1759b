"""The journal: posting per book, refusals that write nothing, reversal, vouchers, bulk, triggers.

Every test runs on a fresh SQLite file and, with JIEBANG_TEST_PG set, on a fresh PostgreSQL
database. A refused post is attempted inside a transaction that is then committed anyway,
so "nothing written" is a property of the service, not of a rollback.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ledger.core import journal
from ledger.core.balances import account_balances, book_totals
from ledger.core.errors import Refusal
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    PostingDraft,
    chain_head,
    close_account,
    open_accounts,
    post,
    post_many,
    reverse,
)
from ledger.core.models import GENESIS_HASH
from ledger.core.verify import verify

D = dt.date
TREASURY = "Assets:Treasury"
APPROPRIATIONS = "Equity:Appropriations:Y2025"
ADVANCES = "Assets:Advances:JM2025-003"
OBLIGATIONS = "Assets:Obligations:JM2025-003"
AUTHORITY = "Equity:BudgetAuthority:Y2025"

RELEASE_DATE = D(2025, 3, 10)

CHART = [
    AccountSpec(TREASURY, "fiscal", D(2025, 1, 1)),
    AccountSpec(APPROPRIATIONS, "fiscal", D(2025, 1, 1)),
    AccountSpec(ADVANCES, "fiscal", D(2025, 3, 1), "JM2025-003"),
    AccountSpec(OBLIGATIONS, "memo", D(2025, 3, 1), "JM2025-003"),
    AccountSpec(AUTHORITY, "memo", D(2025, 1, 1)),
]


def legs(*pairs: tuple[str, int]) -> tuple[PostingDraft, ...]:
    return tuple(PostingDraft(account, amount) for account, amount in pairs)


def release(amount_fen: int = 60_000_000, *, voucher: str | None = "PV-2025-001", when: D = RELEASE_DATE, memo: str = "tranche 1") -> EntryDraft:
    """A tranche release: fiscal money moves to the project, the memo obligation is drawn down."""
    return EntryDraft(
        value_date=when,
        kind="release",
        project_code="JM2025-003",
        voucher=voucher,
        memo=memo,
        actor="officer-a",
        postings=legs(
            (ADVANCES, amount_fen), (TREASURY, -amount_fen), (OBLIGATIONS, -amount_fen), (AUTHORITY, amount_fen)
        ),
    )


def counts(engine) -> tuple[int, int, int, int, str]:
    """Rows in entries, postings and accounts, and the chain head, read with plain SQL."""
    with engine.connect() as conn:
        entries = conn.execute(text("SELECT count(*) FROM journal_entries")).scalar_one()
        postings = conn.execute(text("SELECT count(*) FROM postings")).scalar_one()
        accounts = conn.execute(text("SELECT count(*) FROM accounts")).scalar_one()
        head = conn.execute(text("SELECT last_entry_id, last_hash FROM chain_head WHERE id = 1")).one()
    return entries, postings, accounts, head[0], head[1]


@pytest.fixture
def chart(session_factory):
    with session_factory() as session:
        return open_accounts(session, CHART)


def refuse(session_factory, engine, action) -> Refusal:
    """Run ``action(session)``, expect a refusal, commit anyway, and check nothing changed."""
    before = counts(engine)
    with session_factory() as session, pytest.raises(Refusal) as refused:
        action(session)
    assert counts(engine) == before
    assert "\n" not in refused.value.message
    return refused.value


def raw_refused(engine, *statements: str) -> str:
    """Execute statements on a raw connection; the last must be refused by the database."""
    with engine.connect() as conn:
        for statement in statements[:-1]:
            conn.execute(text(statement))
        with pytest.raises(DBAPIError) as refused:
            conn.execute(text(statements[-1]))
        conn.rollback()
    return str(refused.value.orig)


# --- posting ----------------------------------------------------------------------------


def test_post_balances_in_each_book(session_factory, engine, chart):
    with session_factory() as session:
        posted = post(session, release())
    assert posted.entry_id == 1 and posted.created
    assert counts(engine) == (1, 4, 5, 1, posted.hash)
    with session_factory() as session:
        balances = {b.account: (b.book, b.balance_fen) for b in account_balances(session)}
        assert balances == {
            ADVANCES: ("fiscal", 60_000_000),
            TREASURY: ("fiscal", -60_000_000),
            OBLIGATIONS: ("memo", -60_000_000),
            AUTHORITY: ("memo", 60_000_000),
        }
        assert book_totals(session) == {"fiscal": 0, "memo": 0}
    with engine.connect() as conn:
        per_book = conn.execute(
            text("SELECT book, count(*), sum(amount_fen) FROM postings WHERE entry_id = 1 GROUP BY book ORDER BY book")
        ).all()
    assert [tuple(row) for row in per_book] == [("fiscal", 2, 0), ("memo", 2, 0)]


def test_entry_ids_are_gapless_and_chained(session_factory, engine, chart):
    with session_factory() as session:
        first = post(session, release(voucher="PV-1"))
    with session_factory() as session:
        second = post(session, release(voucher="PV-2"))
    assert (first.entry_id, second.entry_id) == (1, 2)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, prev_hash, hash FROM journal_entries ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(1, GENESIS_HASH, first.hash), (2, first.hash, second.hash)]
    with session_factory() as session:
        assert chain_head(session) == (2, second.hash)


def test_an_entry_must_balance_in_each_book(session_factory, engine, chart):
    fiscal = EntryDraft(D(2025, 3, 10), "release", legs((ADVANCES, 100_000), (TREASURY, -99_999)), voucher="PV-9")
    refusal = refuse(session_factory, engine, lambda s: post(s, fiscal))
    assert refusal.code == "entry_must_balance_per_book"
    assert refusal.message == (
        "entry release PV-9 does not balance in the fiscal book: postings sum to 0.01, not 0.00; "
        "fix the amounts so debits equal credits."
    )
    # The fiscal legs balance; the memo legs do not.
    memo = EntryDraft(
        D(2025, 3, 10), "release", legs((ADVANCES, 500), (TREASURY, -500), (OBLIGATIONS, -500), (AUTHORITY, 400))
    )
    refusal = refuse(session_factory, engine, lambda s: post(s, memo))
    assert refusal.code == "entry_must_balance_per_book"
    assert refusal.message == (
        "entry release does not balance in the memo book: postings sum to -1.00, not 0.00; "
        "fix the amounts so debits equal credits."
    )
    # Fiscal +5.00 and memo -5.00 sum to zero overall, but each book must balance on its own.
    across = EntryDraft(D(2025, 3, 10), "release", legs((ADVANCES, 500), (OBLIGATIONS, -500)))
    refusal = refuse(session_factory, engine, lambda s: post(s, across))
    assert refusal.code == "entry_must_balance_per_book"
    assert "does not balance in the fiscal book: postings sum to 5.00, not 0.00" in refusal.message


def test_accounts_must_exist_and_be_open_on_the_entry_date(session_factory, engine, chart):
    def draft(when, counter=TREASURY):
        return EntryDraft(when, "release", legs((ADVANCES, 500), (counter, -500)))

    refusal = refuse(session_factory, engine, lambda s: post(s, draft(D(2025, 3, 10), "Assets:Nowhere")))
    assert refusal.code == "account_must_exist"
    assert refusal.message == "account Assets:Nowhere does not exist; open it first (jiebang accounts lists them)."

    refusal = refuse(session_factory, engine, lambda s: post(s, draft(D(2025, 2, 28))))
    assert refusal.code == "account_must_be_open"
    assert refusal.message == (
        f"account {ADVANCES} opens on 2025-03-01, after the entry's date 2025-02-28; "
        "date the entry on or after the opening."
    )
    with session_factory() as session:
        assert post(session, draft(D(2025, 3, 1))).entry_id == 1  # the opening day is allowed

    with session_factory() as session:
        close_account(session, TREASURY, D(2025, 6, 30))
    refusal = refuse(session_factory, engine, lambda s: post(s, draft(D(2025, 7, 1))))
    assert refusal.code == "account_must_be_open"
    assert refusal.message == f"account {TREASURY} closed on 2025-06-30, before the entry's date 2025-07-01."
    with session_factory() as session:
        assert post(session, draft(D(2025, 6, 30))).entry_id == 2  # the closing day is still open


MALFORMED_POSTINGS = [
    (legs((ADVANCES, 0), (TREASURY, 0)), "amount_must_not_be_zero", f"posting to {ADVANCES} is zero; leave it out."),
    (
        legs((ADVANCES, 500), (TREASURY, -500), (AUTHORITY, 0)),
        "amount_must_not_be_zero",
        f"posting to {AUTHORITY} is zero; leave it out.",
    ),
    (
        (PostingDraft(ADVANCES, 5.0), PostingDraft(TREASURY, -5.0)),
        "amount_must_be_whole_fen",
        f"posting to {ADVANCES} must be whole fen, got 5.0.",
    ),
    (
        (PostingDraft(ADVANCES, "500"), PostingDraft(TREASURY, -500)),
        "amount_must_be_whole_fen",
        f"posting to {ADVANCES} must be whole fen, got '500'.",
    ),
    (
        (PostingDraft(ADVANCES, True), PostingDraft(TREASURY, -1)),
        "amount_must_be_whole_fen",
        f"posting to {ADVANCES} must be whole fen, got True.",
    ),
    (legs((ADVANCES, 500)), "entry_must_have_two_postings", "an entry needs at least two postings; got 1."),
    ((), "entry_must_have_two_postings", "an entry needs at least two postings; got 0."),
]


def test_malformed_postings_are_refused(session_factory, engine, chart):
    # One database for all cases (PostgreSQL databases cost ~0.4 s each); each case checks
    # the row counts on its own.
    for postings, code, message in MALFORMED_POSTINGS:
        draft = EntryDraft(D(2025, 3, 10), "release", postings)
        refusal = refuse(session_factory, engine, lambda s, draft=draft: post(s, draft))
        assert (refusal.code, refusal.message) == (code, message), postings


def test_malformed_kind_and_voucher_are_refused(session_factory, engine, chart):
    cases = [
        ("Release", None, "kind_must_be_a_word"),
        ("", None, "kind_must_be_a_word"),
        ("release now", None, "kind_must_be_a_word"),
        ("release", "", "voucher_must_be_short_text"),
        ("release", "   ", "voucher_must_be_short_text"),
        ("release", "V" * 121, "voucher_must_be_short_text"),
    ]
    for kind, voucher, code in cases:
        draft = EntryDraft(D(2025, 3, 10), kind, legs((ADVANCES, 500), (TREASURY, -500)), voucher=voucher)
        assert refuse(session_factory, engine, lambda s, draft=draft: post(s, draft)).code == code, (kind, voucher)
    with session_factory() as session:  # the longest voucher allowed is accepted
        assert post(session, EntryDraft(D(2025, 3, 10), "release", legs((ADVANCES, 5), (TREASURY, -5)), voucher="V" * 120)).created


INVALID_NAMES = [
    "assets:Treasury",
    "Assets",
    "Assets:treasury",
    "Asset:Treasury",
    "Assets:Tre asury",
    "Assets::Treasury",
    "Assets:Treasury:",
    "Assets:资金",
]


def test_account_names_must_be_valid_beancount_names(session_factory, engine):
    for name in INVALID_NAMES:
        refusal = refuse(session_factory, engine, lambda s, name=name: open_accounts(s, [AccountSpec(name, "fiscal", D(2025, 1, 1))]))
        assert refusal.code == "account_name_must_be_valid"
        assert refusal.message.startswith(f"account name {name!r} is not a valid beancount name"), name
    names = [
        "Assets:Advances:JM2025-003",
        "Liabilities:SubsidyPayable:UR2025-011",
        "Expenses:Subsidy:JM2025-003:Equipment",
        "Income:Clawback:9144030078",
        "Equity:Appropriations:Y2025",
    ]
    with session_factory() as session:
        ids = open_accounts(session, [AccountSpec(n, "fiscal", D(2025, 1, 1)) for n in names])
    assert sorted(ids) == sorted(names)
    assert counts(engine)[2] == 5


def test_an_account_keeps_its_book_and_opening_date(session_factory, engine, chart):
    refusal = refuse(session_factory, engine, lambda s: open_accounts(s, [AccountSpec(TREASURY, "memo", D(2025, 1, 1))]))
    assert refusal.code == "account_must_stay_in_its_book"
    assert refusal.message == f"account {TREASURY} is in the fiscal book; it cannot be used in the memo book."
    refusal = refuse(session_factory, engine, lambda s: open_accounts(s, [AccountSpec("Assets:Other", "cash", D(2025, 1, 1))]))
    assert refusal.code == "book_must_be_known"
    # Opening it again, even with another date, returns the same account unchanged.
    with session_factory() as session:
        again = open_accounts(session, [AccountSpec(TREASURY, "fiscal", D(2024, 1, 1))])
    assert again == {TREASURY: chart[TREASURY]}
    with engine.connect() as conn:
        opened = conn.execute(text("SELECT opened_on FROM accounts WHERE name = :n"), {"n": TREASURY}).scalar_one()
    assert str(opened) == "2025-01-01"


# --- reversal ---------------------------------------------------------------------------


def _postings_of(engine, entry_id: int) -> list[tuple[str, str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.name, p.book, p.amount_fen FROM postings p JOIN accounts a ON a.id = p.account_id "
                "WHERE p.entry_id = :id ORDER BY p.id"
            ),
            {"id": entry_id},
        ).all()
    return [tuple(row) for row in rows]


def test_reversal_mirrors_and_links(session_factory, engine, chart):
    with session_factory() as session:
        original = post(session, release())
    with session_factory() as session:
        reversal = reverse(session, original.entry_id, reason="voucher keyed twice", actor="officer-b", value_date=D(2025, 4, 1))
    assert reversal.entry_id == 2 and reversal.created
    assert _postings_of(engine, 2) == [(account, book, -amount) for account, book, amount in _postings_of(engine, 1)]
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT kind, voucher, memo, actor, reverses_id, value_date, project_code FROM journal_entries WHERE id = 2")
        ).one()
    assert tuple(row[:5]) == ("reversal", "reverses-1", "voucher keyed twice", "officer-b", 1)
    assert str(row[5]) == "2025-04-01" and row[6] == "JM2025-003"
    with session_factory() as session:
        assert account_balances(session) == []
        assert {b.account: b.balance_fen for b in account_balances(session, as_of=D(2025, 3, 31))}[ADVANCES] == 60_000_000
        assert verify(session).ok


def test_an_entry_is_reversed_at_most_once_and_a_reversal_never(session_factory, engine, chart):
    with session_factory() as session:
        post(session, release())
        reverse(session, 1, reason="wrong project")
    refusal = refuse(session_factory, engine, lambda s: reverse(s, 1, reason="again"))
    assert refusal.code == "entry_must_be_reversed_at_most_once"
    assert refusal.message == "entry 1 was already reversed by entry 2; nothing more to undo."
    refusal = refuse(session_factory, engine, lambda s: reverse(s, 2, reason="undo the undo"))
    assert refusal.code == "reversal_must_not_be_reversed"
    assert refusal.message == (
        "entry 2 is itself the reversal of entry 1; to restore the original, record the event again with a new voucher."
    )


def test_reversal_refusals(session_factory, engine, chart):
    with session_factory() as session:
        post(session, release())
    assert refuse(session_factory, engine, lambda s: reverse(s, 7, reason="x")).message == (
        "entry 7 does not exist; `jiebang journal` lists entries."
    )
    assert refuse(session_factory, engine, lambda s: reverse(s, 1, reason="  ")).code == "reversal_must_have_reason"
    refusal = refuse(session_factory, engine, lambda s: reverse(s, 1, reason="x", value_date=D(2025, 3, 9)))
    assert refusal.message == "reversal date 2025-03-09 is before entry 1's date 2025-03-10."


# --- vouchers ---------------------------------------------------------------------------


def test_same_voucher_same_content_returns_the_first_entry(session_factory, engine, chart):
    with session_factory() as session:
        first = post(session, release())
    before = counts(engine)
    with session_factory() as session:
        again = post(session, release())
    assert again == Posted(first.entry_id, first.hash, created=False)
    assert counts(engine) == before
    # A retry recorded by another officer is still the same event.
    with session_factory() as session:
        by_other = post(session, EntryDraft(**{**_fields(release()), "actor": "officer-b"}))
    assert by_other == Posted(1, first.hash, created=False)
    assert counts(engine) == before
    # The voucher is unique per kind: the same voucher under another kind is another event.
    with session_factory() as session:
        other_kind = post(session, EntryDraft(**{**_fields(release()), "kind": "release.adjustment"}))
    assert (other_kind.entry_id, other_kind.created) == (2, True)


def _fields(draft: EntryDraft) -> dict:
    return {name: getattr(draft, name) for name in EntryDraft.__slots__}


def test_same_voucher_other_content_is_refused_naming_the_entry(session_factory, engine, chart):
    with session_factory() as session:
        post(session, release(voucher="PV-7"))
        post(session, release(voucher="PV-8"))
    for changed in (release(60_000_001, voucher="PV-8"), release(voucher="PV-8", memo="tranche one"), release(voucher="PV-8", when=D(2025, 3, 11))):
        refusal = refuse(session_factory, engine, lambda s, changed=changed: post(s, changed))
        assert refusal.code == "voucher_must_match_first_use"
        assert refusal.message == (
            "voucher PV-8 was already used for release entry 2 with different content; "
            "use a new voucher, or reverse entry 2 first if it was wrong."
        )


def test_voucher_repeated_inside_one_batch(session_factory, engine, chart):
    with session_factory() as session:
        results = post_many(session, [release(), release(voucher="PV-2"), release()])
    assert [(r.entry_id, r.created) for r in results] == [(1, True), (2, True), (1, False)]
    assert results[2].hash == results[0].hash
    assert counts(engine)[:2] == (2, 8)
    refusal = refuse(session_factory, engine, lambda s: post_many(s, [release(voucher="PV-3"), release(5, voucher="PV-3")]))
    assert refusal.code == "voucher_must_match_first_use"
    assert "release entry 3 with different content" in refusal.message


# --- bulk -------------------------------------------------------------------------------


def _bulk_drafts(n: int) -> list[EntryDraft]:
    return [
        EntryDraft(
            value_date=D(2025, 3, 1) + dt.timedelta(days=i % 300),
            kind="release",
            voucher=f"BULK-{i:05d}",
            postings=legs((ADVANCES, 100 + i), (TREASURY, -(100 + i))),
        )
        for i in range(n)
    ]


def test_post_many_writes_2000_entries_in_one_transaction(session_factory, engine, chart):
    advanced = []
    with session_factory() as session:
        results = post_many(session, _bulk_drafts(2_000), progress=advanced.append)
    assert sum(advanced) == 2_000
    assert [r.entry_id for r in results] == list(range(1, 2_001))
    assert all(r.created for r in results)
    assert counts(engine) == (2_000, 4_000, 5, 2_000, results[-1].hash)
    expected = sum(100 + i for i in range(2_000))
    with session_factory() as session:
        balances = {b.account: b.balance_fen for b in account_balances(session)}
        assert balances == {ADVANCES: expected, TREASURY: -expected}
        result = verify(session)
    assert (result.ok, result.entries, result.head_hash) == (True, 2_000, results[-1].hash)


def test_post_many_splits_into_chunks_without_losing_postings(session_factory, engine, chart, monkeypatch):
    monkeypatch.setattr(journal, "BULK_CHUNK", 7)
    drafts = [
        EntryDraft(D(2025, 3, 2), "release", legs(*[(ADVANCES, 10)] * (i % 3 + 1), (TREASURY, -10 * (i % 3 + 1))), voucher=f"C-{i}")
        for i in range(50)
    ]
    with session_factory() as session:
        post_many(session, drafts)
        assert verify(session).ok
    with engine.connect() as conn:
        per_entry = dict(conn.execute(text("SELECT entry_id, count(*) FROM postings GROUP BY entry_id")).all())
    assert per_entry == {i + 1: i % 3 + 2 for i in range(50)}


def test_a_bulk_batch_with_one_bad_draft_writes_nothing(session_factory, engine, chart):
    bad_drafts = [
        (EntryDraft(D(2025, 5, 1), "release", legs((ADVANCES, 100), (TREASURY, -99))), "entry_must_balance_per_book"),
        (EntryDraft(D(2025, 5, 1), "release", legs((ADVANCES, 100), ("Assets:Unknown", -100))), "account_must_exist"),
        (EntryDraft(D(2025, 2, 1), "release", legs((ADVANCES, 100), (TREASURY, -100))), "account_must_be_open"),
        (EntryDraft(D(2025, 5, 1), "release", legs((ADVANCES, 0), (TREASURY, 0))), "amount_must_not_be_zero"),
    ]
    for bad, code in bad_drafts:
        drafts = _bulk_drafts(2_000)
        drafts[1_234] = bad
        refusal = refuse(session_factory, engine, lambda s, drafts=drafts: post_many(s, drafts))
        assert refusal.code == code
        assert counts(engine) == (0, 0, 5, 0, GENESIS_HASH)


# --- the database's own guards -----------------------------------------------------------


@pytest.fixture
def posted(session_factory, chart):
    with session_factory() as session:
        return post_many(session, [release(voucher="PV-1"), release(voucher="PV-2")])


APPEND_ONLY_VIOLATIONS = [
    "UPDATE journal_entries SET memo = 'changed' WHERE id = 1",
    "UPDATE journal_entries SET value_date = value_date",
    "DELETE FROM journal_entries WHERE id = 2",
    "DELETE FROM journal_entries",
    "UPDATE postings SET amount_fen = amount_fen * 2 WHERE entry_id = 1",
    "DELETE FROM postings WHERE entry_id = 2",
    "DELETE FROM postings",
]


def test_raw_update_and_delete_are_refused_by_the_database(engine, posted):
    before = counts(engine)
    for statement in APPEND_ONLY_VIOLATIONS:
        message = raw_refused(engine, statement)
        assert "journal is append-only" in message, statement
        assert "post a reversing entry instead" in message, statement
        assert counts(engine) == before


def test_truncate_is_refused_on_postgresql(engine, posted):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; DELETE without WHERE is covered above")
    before = counts(engine)
    for statement in ("TRUNCATE postings", "TRUNCATE journal_entries CASCADE", "TRUNCATE postings, journal_entries CASCADE"):
        message = raw_refused(engine, statement)
        assert "journal is append-only: TRUNCATE of" in message, statement
        assert counts(engine) == before


def _raw_posting(entry_id: int, account_id: int, amount: int, *, book: str = "fiscal", when: str = "2025-03-10") -> str:
    return (
        "INSERT INTO postings (entry_id, account_id, value_date, book, amount_fen) "
        f"VALUES ({entry_id}, {account_id}, '{when}', '{book}', {amount})"
    )


def _entry_row(entry_id: int, *, when: str = "2025-03-10") -> str:
    digest = (str(entry_id) * 64)[:64]
    return (
        "INSERT INTO journal_entries (id, value_date, kind, memo, actor, content_hash, prev_hash, hash) "
        f"VALUES ({entry_id}, '{when}', 'manual', '', 'sql', '{'c' * 64}', '{'0' * 64}', '{digest}')"
    )


def test_an_unbalanced_entry_written_in_sql_is_refused(engine, chart):
    cases = {
        "fiscal": [(ADVANCES, 500, "fiscal"), (TREASURY, -499, "fiscal")],
        "memo": [(ADVANCES, 500, "fiscal"), (TREASURY, -500, "fiscal"), (OBLIGATIONS, -500, "memo"), (AUTHORITY, 499, "memo")],
        "across books": [(ADVANCES, 500, "fiscal"), (OBLIGATIONS, -500, "memo")],
        "single posting": [(ADVANCES, 500, "fiscal")],
    }
    before = counts(engine)
    for case, postings in cases.items():
        statements = [_raw_posting(1, chart[account], amount, book=book) for account, amount, book in postings]
        message = raw_refused(engine, *statements, _entry_row(1))
        assert "entry_must_balance_per_book" in message, case
        assert counts(engine) == before
    message = raw_refused(
        engine,
        _raw_posting(1, chart[ADVANCES], 500, when="2025-03-10"),
        _raw_posting(1, chart[TREASURY], -500, when="2025-03-11"),
        _entry_row(1, when="2025-03-10"),
    )
    assert "entry_must_balance_per_book" in message, "postings dated otherwise than their entry"
    message = raw_refused(engine, _raw_posting(1, chart[ADVANCES], 500, book="memo"))
    assert "posting_book_must_match_account" in message
    assert counts(engine) == before
    # The control: the same triggers accept an entry written in SQL that balances.
    with engine.begin() as conn:
        conn.execute(text(_raw_posting(1, chart[ADVANCES], 500)))
        conn.execute(text(_raw_posting(1, chart[TREASURY], -500)))
        conn.execute(text(_entry_row(1)))
    assert counts(engine)[:2] == (1, 2)


def test_postings_cannot_be_added_to_a_written_entry_or_left_without_one(engine, posted, chart):
    before = counts(engine)
    message = raw_refused(engine, _raw_posting(1, chart[ADVANCES], 1))
    assert "entry_must_be_sealed" in message
    # Even a pair that balances on its own cannot be slipped into a sealed entry.
    message = raw_refused(engine, _raw_posting(2, chart[ADVANCES], 7))
    assert "entry_must_be_sealed" in message
    assert counts(engine) == before
    # Postings written for an entry that never comes cannot be committed either.
    with pytest.raises(DBAPIError) as refused, engine.begin() as conn:
        conn.execute(text(_raw_posting(3, chart[ADVANCES], 500)))
        conn.execute(text(_raw_posting(3, chart[TREASURY], -500)))
    assert "foreign key" in str(refused.value.orig).lower()
    assert counts(engine) == before


def test_an_unbalanced_entry_past_the_checks_is_refused_by_the_bulk_path(cli, engine, chart, tmp_path, monkeypatch):
    """The bulk writer (COPY on PostgreSQL) surfaces the trigger's refusal like an INSERT's.

    The Python checks are switched off so the database sees the entry; chunks of one entry
    put a balanced entry in the database first, which the refusal must take back too.
    """
    from ledger.core import bulk

    monkeypatch.setattr(bulk, "_balance_problem", lambda batch, posting_book: None)
    monkeypatch.setattr(journal, "BULK_CHUNK", 1)
    path = tmp_path / "entries.csv"
    path.write_text(
        "txn_id,date,account,amount\n"
        f"ok,2025-03-10,{ADVANCES},5.00\nok,2025-03-10,{TREASURY},-5.00\n"
        f"bad,2025-03-10,{ADVANCES},5.00\nbad,2025-03-10,{TREASURY},-4.99\n",
        encoding="utf-8",
    )
    before = counts(engine)
    result = cli("post", "--file", str(path), expect=1)
    assert "the database refused the operation: entry_must_balance_per_book" in result.stderr
    assert "nothing was written" in result.stderr
    assert counts(engine) == before
