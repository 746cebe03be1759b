"""Balances as of a date, aggregated in SQL: by account, account prefix, project and book."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.core import reads
from ledger.core.models import Posting


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
