"""Self-funding: pledges (承诺函) and contributions (到位) by budget category."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from funding_rules import checks
from ledger.core.journal import (
    EntryDraft,
    Posted,
    PostingDraft,
)
from ledger.programme import chart
from ledger.programme.common import _category, _post_event, _voucher, event_facts, idempotent, lock
from ledger.programme.state import load_project
from ledger.programme.words import BUDGET_CATEGORY_ZH, zh

# --- self-funding -----------------------------------------------------------------------


@idempotent("pledge")
def pledge(session: Session, *, project: str, amount_fen: int, date: dt.date, voucher: str | None, actor: str, category: str | None = None) -> Posted:
    """Record self-funding promised (自投研发资金承诺函), memo book."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    facts = checks.SelfFundingFacts(event_facts(state, "pledge", date), amount_fen, category or None)
    checks.enforce(checks.SELF_FUNDING_CHECKS, facts, state.rules)
    category = _category(category) if category else None
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="pledge",
            postings=(
                PostingDraft(chart.self_funding_outstanding(code), amount_fen, category, "self_funded"),
                PostingDraft(chart.self_funding_pledged(code), -amount_fen, category, "self_funded"),
            ),
            project_code=code,
            voucher=_voucher(voucher, f"PLEDGE-{code}-{date.isoformat()}-{amount_fen}"),
            memo="自筹资金承诺（自投研发资金承诺函）",
            actor=actor,
            rules_version=state.rules.version,
        ),
        [],
        {"project_code": code},
    )


@idempotent("contribution")
def contribute(session: Session, *, project: str, amount_fen: int, category: str, date: dt.date, voucher: str | None, actor: str, memo: str = "") -> Posted:
    """Record self-funding evidenced as arrived, by budget category, memo book."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    facts = checks.SelfFundingFacts(event_facts(state, "contribution", date), amount_fen, category)
    checks.enforce(checks.SELF_FUNDING_CHECKS, facts, state.rules)
    category = _category(category)
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="contribution",
            postings=(
                PostingDraft(chart.self_funding_contributed(code, category), amount_fen, category, "self_funded"),
                PostingDraft(chart.self_funding_outstanding(code), -amount_fen, category, "self_funded"),
            ),
            project_code=code,
            voucher=_voucher(voucher, f"CONTRIB-{code}-{date.isoformat()}-{amount_fen}"),
            memo=memo or f"自筹资金到位（{zh(BUDGET_CATEGORY_ZH, category)}）",
            actor=actor,
            rules_version=state.rules.version,
        ),
        [],
        {"project_code": code},
    )
