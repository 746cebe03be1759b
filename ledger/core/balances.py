"""Balances as of a date, aggregated in SQL: by account, account prefix, project and book."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.core import reads
from ledger.core.models import Account, JournalEntry, Posting


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """One account's balance (debits positive, credits negative, beancount's convention).

    Attributes:
      account / book / project_code / lane: who the balance belongs to.
      balance_fen: the sum of its postings up to and including the as-of date.
    """

    account: str
    book: str
    project_code: str | None
    lane: str | None
    balance_fen: int


def account_balances(
    session: Session,
    *,
    as_of: dt.date | None = None,
    book: str | None = None,
    prefix: str | None = None,
    project_code: str | None = None,
    lane: str | None = None,
    include_zero: bool = False,
) -> list[AccountBalance]:
    """Balances of every matching account, one GROUP BY over the postings.

    The statement is ``reads.account_rows``, the same one the CLI runs without SQLAlchemy.
    """
    rows = reads.account_rows(
        reads.session_runner(session),
        as_of=as_of, book=book, prefix=prefix, project_code=project_code, lane=lane, include_zero=include_zero,
    )
    return [AccountBalance(*row) for row in rows]


def book_totals(session: Session, *, as_of: dt.date | None = None) -> dict[str, int]:
    """The sum of every posting per book: zero for a healthy ledger."""
    query = select(Posting.book, func.sum(Posting.amount_fen)).group_by(Posting.book)
    if as_of:
        query = query.where(Posting.value_date <= as_of)
    return {book: int(amount) for book, amount in session.execute(query)}


def journal_rows(
    session: Session,
    *,
    as_of: dt.date | None = None,
    since: dt.date | None = None,
    project_code: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
):
    """Entries with their postings, in chain order, for the journal listing."""
    query = (
        select(
            JournalEntry.id,
            JournalEntry.value_date,
            JournalEntry.kind,
            JournalEntry.project_code,
            JournalEntry.voucher,
            JournalEntry.memo,
            JournalEntry.reverses_id,
            Account.name.label("account"),
            Posting.book,
            Posting.amount_fen,
            Posting.budget_category,
            Posting.fund_source,
        )
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(Account, Account.id == Posting.account_id)
        .order_by(JournalEntry.id, Posting.id)
    )
    if as_of:
        query = query.where(JournalEntry.value_date <= as_of)
    if since:
        query = query.where(JournalEntry.value_date >= since)
    if project_code:
        query = query.where(JournalEntry.project_code == project_code)
    if kind:
        query = query.where(JournalEntry.kind == kind)
    if limit:
        ids = select(JournalEntry.id).order_by(JournalEntry.id.desc()).limit(limit)
        if as_of:
            ids = ids.where(JournalEntry.value_date <= as_of)
        if project_code:
            ids = ids.where(JournalEntry.project_code == project_code)
        if kind:
            ids = ids.where(JournalEntry.kind == kind)
        query = query.where(JournalEntry.id.in_(ids.scalar_subquery()))
    return session.execute(query)
