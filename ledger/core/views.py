"""Journal listings for the command line: the accounts and the entries with their postings.

A view takes a session and plain arguments and returns plain rows, one dict per line of the
listing, keyed by the listing's column names; it never writes. Values are what the
listing shows and what ``--format json`` prints: dates in ISO form, amounts in yuan
(``format_fen``), None where a column is empty. ``cli.py`` only renders them.

Balances are not here: ``ledger.core.reads`` reads them without SQLAlchemy, for speed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.core.models import Account, JournalEntry, Posting
from ledger.core.money import format_fen

ACCOUNT_COLUMNS = ("account", "book", "type", "project", "lane", "opened_on", "closed_on")
JOURNAL_COLUMNS = ("entry", "date", "kind", "project", "voucher", "account", "book", "amount", "category", "source", "memo")


def account_list(session: Session, *, book: str | None = None, project_code: str | None = None) -> list[dict]:
    """Accounts by book, then name; only one book's or one project's when given."""
    query = select(Account).order_by(Account.book, Account.name)
    if book:
        query = query.where(Account.book == book)
    if project_code:
        query = query.where(Account.project_code == project_code)
    return [
        {
            "account": a.name,
            "book": a.book,
            "type": a.type,
            "project": a.project_code,
            "lane": a.lane,
            "opened_on": a.opened_on.isoformat(),
            "closed_on": a.closed_on.isoformat() if a.closed_on else None,
        }
        for a in session.scalars(query)
    ]


def journal_listing(
    session: Session,
    *,
    as_of: dt.date | None = None,
    since: dt.date | None = None,
    project_code: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Entries with their postings in chain order, one row per posting.

    An entry that moves no money (a stage result, a party's facts) is one row with the
    posting columns empty: the listing shows every entry of the record. ``limit`` keeps
    the last N entries that match every other filter, with all of their postings.
    """
    return [
        {
            "entry": r.id,
            "date": r.value_date.isoformat(),
            "kind": r.kind,
            "project": r.project_code,
            "voucher": r.voucher,
            "account": r.account,
            "book": r.book,
            "amount": None if r.amount_fen is None else format_fen(r.amount_fen),
            "category": r.budget_category,
            "source": r.fund_source,
            "memo": r.memo,
        }
        for r in session.execute(_journal_query(as_of=as_of, since=since, project_code=project_code, kind=kind, limit=limit))
    ]


def _journal_query(*, as_of, since, project_code, kind, limit):
    query = (
        select(
            JournalEntry.id,
            JournalEntry.value_date,
            JournalEntry.kind,
            JournalEntry.project_code,
            JournalEntry.voucher,
            JournalEntry.memo,
            Account.name.label("account"),
            Posting.book,
            Posting.amount_fen,
            Posting.budget_category,
            Posting.fund_source,
        )
        .outerjoin(Posting, Posting.entry_id == JournalEntry.id)
        .outerjoin(Account, Account.id == Posting.account_id)
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
        if since:
            ids = ids.where(JournalEntry.value_date >= since)
        if project_code:
            ids = ids.where(JournalEntry.project_code == project_code)
        if kind:
            ids = ids.where(JournalEntry.kind == kind)
        query = query.where(JournalEntry.id.in_(ids.scalar_subquery()))
    return query
