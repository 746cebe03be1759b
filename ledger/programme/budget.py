"""Budget authority: appropriations by year and what is left of them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from funding_rules import checks
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    PostingDraft,
)
from ledger.core.models import Account, Posting
from ledger.programme import cache as state_cache
from ledger.programme import chart
from ledger.programme.common import _post_event, _voucher, idempotent, lock

# --- appropriations ---------------------------------------------------------------------


@idempotent("appropriation")
def appropriate(session: Session, *, year: int, amount_fen: int, date: dt.date, voucher: str | None, actor: str) -> Posted:
    """Record budget authority for a year (memo book)."""
    lock(session)
    checks.enforce(checks.APPROPRIATION_CHECKS, checks.AppropriationFacts(year, amount_fen), None)
    opened = min(chart.year_accounts_open_on(year), date)
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="appropriation",
            postings=(
                PostingDraft(chart.budget_available(year), amount_fen),
                PostingDraft(chart.budget_appropriated(year), -amount_fen),
            ),
            voucher=_voucher(voucher, f"APPROP-{year}-{date.isoformat()}-{amount_fen}"),
            memo=f"{year} 年度预算指标",
            actor=actor,
        ),
        [
            AccountSpec(chart.budget_available(year), "memo", opened),
            AccountSpec(chart.budget_appropriated(year), "memo", opened),
        ],
        None,
    )


def available_budget(session: Session, year: int) -> int:
    """Appropriated minus obligated for a year, from postings (every date: a budget is a pool);
    during an import, summed once and advanced by each entry posted."""
    name = chart.budget_available(year)
    cache = state_cache.active(session)
    if cache is None:
        return _sum_account(session, name)
    if name not in cache.balances:
        cache.balances[name] = _sum_account(session, name)
    return cache.balances[name]


def _sum_account(session: Session, name: str, as_of: dt.date | None = None) -> int:
    query = select(func.coalesce(func.sum(Posting.amount_fen), 0)).join(Account, Account.id == Posting.account_id).where(
        Account.name == name
    )
    if as_of is not None:
        query = query.where(Posting.value_date <= as_of)
    return int(session.execute(query).scalar_one())
