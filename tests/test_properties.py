"""Invariants of the journal over random sequences of balanced and unbalanced drafts.

A small independent model decides which drafts must be accepted (two or more non-zero legs,
known accounts open on the date, every book summing to zero) and keeps its own running sum
per account. The ledger must agree with it: accepted batches are written in full and
balance per book, refused batches leave no row behind, and ``account_balances`` (also as of
a date) equals the model's sum. ``verify`` passes at the end.

Each hypothesis example works in its own account namespace inside one database per backend
(creating a PostgreSQL database per example would cost ~0.4 s each), so examples cannot
see each other's balances.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from ledger.core.balances import account_balances, book_totals
from ledger.core.errors import Refusal
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    PostingDraft,
    open_accounts,
    post,
    post_many,
)
from ledger.core.verify import verify

START = dt.date(2025, 1, 1)

# (name template, book, opening date); None as the book marks an account never opened.
ACCOUNTS = [
    ("Assets:{ns}:Treasury", "fiscal", START),
    ("Assets:{ns}:Advances", "fiscal", START),
    ("Expenses:{ns}:Equipment", "fiscal", START),
    ("Equity:{ns}:Appropriations", "fiscal", START),
    ("Liabilities:{ns}:Payable", "fiscal", dt.date(2025, 7, 1)),
    ("Assets:{ns}:Obligations", "memo", START),
    ("Equity:{ns}:Authority", "memo", START),
    ("Assets:{ns}:Pledged", "memo", dt.date(2025, 4, 1)),
    ("Assets:{ns}:NeverOpened", None, None),
]
BALANCING = {"fiscal": 0, "memo": 6}  # the account index that takes a book's balancing leg

# Weighted so that about half the batches are valid: one leg in twenty is zero, one account
# in twenty-one was never opened, four drafts in five get their balancing legs.
# (Hypothesis favours small draws, so the rare cases sit at the top of each range.)
amounts = st.tuples(st.integers(0, 19), st.integers(1, 10**9), st.booleans()).map(
    lambda t: 0 if t[0] == 19 else (t[1] if t[2] else -t[1])
)
account_index = st.integers(0, 20).map(lambda k: k % 8 if k < 20 else 8)
leg = st.tuples(account_index, amounts)
draft_shape = st.fixed_dictionaries(
    {
        "legs": st.lists(leg, min_size=1, max_size=5),
        "balance": st.integers(0, 4).map(lambda k: k != 4),
        "day": st.integers(0, 364),
    }
)
operation = st.one_of(
    st.tuples(st.just("batch"), st.lists(draft_shape, min_size=1, max_size=3)),
    st.tuples(st.just("replay"), st.integers(0, 1_000)),
)


def _complete(shape: dict) -> tuple[list[tuple[int, int]], dt.date]:
    """The draft's legs, with a balancing leg per book appended when the shape asks for it."""
    legs = list(shape["legs"])
    if shape["balance"]:
        sums: dict[str, int] = defaultdict(int)
        for index, amount in legs:
            book = ACCOUNTS[index][1]
            if book is not None:
                sums[book] += amount
        for book, amount in sorted(sums.items()):
            if amount != 0:
                legs.append((BALANCING[book], -amount))
    return legs, START + dt.timedelta(days=shape["day"])


def _model_accepts(legs: list[tuple[int, int]], when: dt.date) -> bool:
    if len(legs) < 2:
        return False
    sums: dict[str, int] = defaultdict(int)
    for index, amount in legs:
        _, book, opened = ACCOUNTS[index]
        if amount == 0 or book is None or when < opened:
            return False
        sums[book] += amount
    return all(amount == 0 for amount in sums.values())


def _rows(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM journal_entries")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM postings")).scalar_one(),
        )


def _unbalanced_entries(engine, first: int, last: int) -> list:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT entry_id, book, SUM(amount_fen) FROM postings WHERE entry_id BETWEEN :a AND :b "
                "GROUP BY entry_id, book HAVING SUM(amount_fen) <> 0"
            ),
            {"a": first, "b": last},
        ).all()


def _stored_legs(engine, entry_id: int) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.name, p.amount_fen FROM postings p JOIN accounts a ON a.id = p.account_id "
                "WHERE p.entry_id = :id"
            ),
            {"id": entry_id},
        ).all()
    return sorted((name, amount) for name, amount in rows)


def test_random_drafts_keep_every_invariant(engine, session_factory):
    namespaces = itertools.count(1)
    totals = {"accepted": 0, "refused": 0, "replayed": 0}

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(operations=st.lists(operation, min_size=1, max_size=6), as_of_day=st.integers(0, 364))
    def run(operations, as_of_day):
        ns = f"Ex{next(namespaces)}"
        names = [template.format(ns=ns) for template, _, _ in ACCOUNTS]
        with session_factory() as session:
            open_accounts(
                session,
                [AccountSpec(names[i], book, opened) for i, (_, book, opened) in enumerate(ACCOUNTS) if book is not None],
            )
        model: list[tuple[dt.date, str, int]] = []  # every accepted leg: (date, account, amount)
        accepted: list[tuple[EntryDraft, Posted]] = []
        voucher_numbers = itertools.count(1)

        for kind, payload in operations:
            before = _rows(engine)
            if kind == "replay":
                if not accepted:
                    continue
                draft, first = accepted[payload % len(accepted)]
                with session_factory() as session:
                    again = post(session, draft)
                assert again == Posted(first.entry_id, first.hash, created=False)
                assert _rows(engine) == before
                totals["replayed"] += 1
                continue

            completed = [_complete(shape) for shape in payload]
            drafts = [
                EntryDraft(
                    value_date=when,
                    kind="random",
                    postings=tuple(PostingDraft(names[i], amount) for i, amount in legs),
                    voucher=f"{ns}-{next(voucher_numbers)}",
                )
                for legs, when in completed
            ]
            expect_ok = all(_model_accepts(legs, when) for legs, when in completed)
            refusal = None
            # The transaction is committed even after a refusal: the service itself must
            # have written nothing.
            with session_factory() as session:
                try:
                    results = post(session, drafts[0]) if len(drafts) == 1 else post_many(session, drafts)
                except Refusal as exc:
                    refusal = exc
            if not expect_ok:
                assert refusal is not None, f"the ledger accepted a batch the model refuses: {completed}"
                assert "\n" not in refusal.message
                assert _rows(engine) == before
                totals["refused"] += 1
                continue
            assert refusal is None, f"the ledger refused a valid batch: {refusal} ({refusal.code})"
            results = [results] if isinstance(results, Posted) else results
            assert [r.entry_id for r in results] == list(range(before[0] + 1, before[0] + len(drafts) + 1))
            assert all(r.created for r in results)
            assert _rows(engine) == (before[0] + len(drafts), before[1] + sum(len(legs) for legs, _ in completed))
            assert _unbalanced_entries(engine, results[0].entry_id, results[-1].entry_id) == []
            for draft, result, (legs, when) in zip(drafts, results, completed):
                assert _stored_legs(engine, result.entry_id) == sorted((names[i], amount) for i, amount in legs)
                model.extend((when, names[i], amount) for i, amount in legs)
                accepted.append((draft, result))
            totals["accepted"] += len(drafts)

        as_of = START + dt.timedelta(days=as_of_day)
        with session_factory() as session:
            for cutoff in (None, as_of):
                expected: dict[str, int] = defaultdict(int)
                for when, account, amount in model:
                    if cutoff is None or when <= cutoff:
                        expected[account] += amount
                actual = {
                    b.account: b.balance_fen
                    for b in account_balances(session, as_of=cutoff)
                    if b.account in names
                }
                assert actual == {account: amount for account, amount in expected.items() if amount != 0}

    run()
    # The sequences must have exercised both sides, or the test proves little.
    assert totals["accepted"] > 20 and totals["refused"] > 20, totals
    entries, _ = _rows(engine)
    with session_factory() as session:
        result = verify(session)
        assert result.ok, result.problem
        assert result.entries == entries
        assert set(book_totals(session).values()) <= {0}
