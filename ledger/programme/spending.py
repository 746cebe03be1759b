"""Fiscal spending reports by budget category."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from funding_rules import checks
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    PostingDraft,
)
from ledger.core.money import format_fen
from ledger.programme import chart
from ledger.programme.common import (
    _category,
    _post_event,
    _voucher,
    event_facts,
    idempotent,
    lock,
)
from ledger.programme.state import _lane_sums, _spent_by_category, load_project
from ledger.programme.words import BUDGET_CATEGORY_ZH, zh

# --- money out and back: spending, extension, termination, revocation, recovery ---------


@idempotent("spend")
def spend(
    session: Session,
    *,
    project: str,
    lane: str | None,
    amount_fen: int,
    category: str,
    date: dt.date,
    voucher: str | None,
    actor: str,
    counterparty: str | None = None,
    justification: str | None = None,
    memo: str = "",
) -> Posted:
    """Record fiscal money spent by a lane, by budget category; it draws down the advance."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    n = state.lane_of(lane)
    sums = _lane_sums(session, state, n)
    # Under a tracked bid subsidy (Urumqi) the recipient reports the subsidy released to it;
    # otherwise the lane's unit reports the grant advanced to it.
    tracked = rules.funding.subsidy_use_tracked
    spent_by_category = _spent_by_category(sums, "subsidy_reported" if tracked else "grant_spent")
    facts = checks.SpendFacts(
        event=event_facts(state, "spending", date, n),
        amount_fen=amount_fen,
        category=category,
        period_start=state.project.start_date,
        period_end=state.end_date,
        advances_fen=sums.get("subsidy_unreported" if tracked else "advances", 0),
        justification=justification,
        direct_spent_fen=sum(v for c, v in spent_by_category.items() if c != "indirect"),
        equipment_spent_fen=spent_by_category.get("equipment", 0),
        indirect_spent_fen=spent_by_category.get("indirect", 0),
    )
    checks.enforce(checks.SPEND_CHECKS, facts, rules)
    category = _category(category, rules.spending.legacy_category_map)
    trace: dict = {"lane": f"L{n}", "category": category, "advances_before": format_fen(facts.advances_fen)}
    if tracked:
        debit, credit = chart.subsidy_reported(code, n, category), chart.subsidy_unreported(code, n)
        accounts = [AccountSpec(debit, "memo", state.project.approval_date, code, state.lanes[n])]
        trace |= {"subsidy_use": True, "clause": rules.clause("funding.subsidy_use_tracked")}
    else:
        debit, credit, accounts = chart.grant_spent(code, n, category), chart.advances(code, n), []
    if category == "indirect":
        cap = checks.spend_indirect_cap_fen(facts, rules)
        trace |= {"direct_spent": format_fen(facts.direct_spent_fen), "equipment_spent": format_fen(facts.equipment_spent_fen),
                  "indirect_cap": format_fen(cap), "indirect_after": format_fen(facts.indirect_spent_fen + amount_fen),
                  "formula": "indirect_cap_fen(direct − equipment) by tiers"}
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="spend",
            postings=(
                PostingDraft(debit, amount_fen, category, "city_fiscal"),
                PostingDraft(credit, -amount_fen, category, "city_fiscal"),
            ),
            project_code=code,
            voucher=_voucher(voucher, f"SPEND-{code}-L{n}-{date.isoformat()}-{category}-{amount_fen}"),
            memo=memo or f"{zh(BUDGET_CATEGORY_ZH, category)}支出 L{n}" + (f"，付 {counterparty}" if counterparty else ""),
            actor=actor,
            rules_version=rules.version,
            trace=trace | {"counterparty": counterparty, "justification": justification},
        ),
        accounts,
        {"project_code": code, "lane_no": n, "stage": category,
         "payload": {"counterparty": counterparty, "justification": justification, "category": category}},
    )
