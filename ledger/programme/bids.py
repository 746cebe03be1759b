"""Bid money per lane: contracts and payments by form, and the Urumqi subsidy accrual."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from funding_rules import checks
from ledger.core.journal import (
    EntryDraft,
    Posted,
    PostingDraft,
)
from ledger.core.money import format_fen
from ledger.programme import chart
from ledger.programme.budget import available_budget
from ledger.programme.common import (
    PAYMENT_FORMS,
    _post_event,
    _voucher,
    event_facts,
    idempotent,
    lock,
)
from ledger.programme.state import _lane_sums, load_project
from ledger.programme.words import FORM_ZH, zh

# --- bids -------------------------------------------------------------------------------


@idempotent("bid_contract")
def bid_contract(session: Session, *, project: str, lane: str | None, amount_fen: int, date: dt.date, voucher: str | None, actor: str) -> Posted:
    """Record (more) contracted bid money for a lane; under bid-subsidy rules it obligates the ceiling too."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    n = state.lane_of(lane)
    sums = _lane_sums(session, state, n)
    contracted_before = -sums.get("bid_contracted", 0)
    year = state.project.budget_year
    available = available_budget(session, year) if rules.funding.model == "bid_subsidy" else 0
    facts = checks.BidContractFacts(event_facts(state, "bid contract", date, n), amount_fen, contracted_before, available, year)
    checks.enforce(checks.BID_CONTRACT_CHECKS, facts, rules)
    postings = [PostingDraft(chart.bid_unpaid(code, n), amount_fen, None, "bid"), PostingDraft(chart.bid_contracted(code, n), -amount_fen, None, "bid")]
    trace: dict = {"lane": f"L{n}", "contracted_added": format_fen(amount_fen)}
    if rules.funding.model == "bid_subsidy":
        ceiling_before = checks.subsidy_ceiling_fen([contracted_before], rules)
        ceiling_after = checks.subsidy_ceiling_fen([contracted_before + amount_fen], rules)
        extra = checks.added_subsidy_ceiling_fen(contracted_before, amount_fen, rules)
        if extra:
            postings += [PostingDraft(chart.grant_unreleased(code, n), extra), PostingDraft(chart.budget_available(year), -extra)]
        trace |= {"ceiling_before": format_fen(ceiling_before), "ceiling_after": format_fen(ceiling_after), "obligated": format_fen(extra)}
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="bid_contract",
            postings=tuple(postings),
            project_code=code,
            voucher=_voucher(voucher, f"BIDC-{code}-L{n}-{date.isoformat()}-{amount_fen}"),
            memo=f"揭榜合同 L{n}",
            actor=actor,
            rules_version=rules.version,
            trace=trace,
        ),
        [],
        {"project_code": code, "lane_no": n},
    )


@idempotent("bid_payment")
def bid_pay(
    session: Session,
    *,
    project: str,
    lane: str | None,
    amount_fen: int,
    form: str,
    date: dt.date,
    voucher: str | None,
    actor: str,
) -> Posted:
    """Record bid money paid by the demand side to a lane; accrue the subsidy where the rules pay one."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    n = state.lane_of(lane)
    sums = _lane_sums(session, state, n)
    contracted = -sums.get("bid_contracted", 0)
    paid = {f: sums.get(f"bid_paid_{f}", 0) for f in PAYMENT_FORMS}
    facts = checks.BidPaymentFacts(
        project_code=code,
        lane=f"L{n}",
        contracted_fen=contracted,
        paid_so_far_fen=sum(paid.values()),
        amount_fen=amount_fen,
        form=form,
        lane_status="eliminated" if n in state.eliminated else "active",
        payment_date=date,
        approval_date=state.project.approval_date,
        event=event_facts(state, "bid payment", date, n),
        acceptance_passed="acceptance_passed" in state.met(n),
    )
    checks.enforce(checks.BID_PAYMENT_CHECKS, facts, rules)
    postings = [
        PostingDraft(chart.bid_paid(code, n, form), amount_fen, None, "bid"),
        PostingDraft(chart.bid_unpaid(code, n), -amount_fen, None, "bid"),
    ]
    trace: dict = {"lane": f"L{n}", "form": form, "amount": format_fen(amount_fen)}
    if rules.funding.model == "bid_subsidy":
        cash_after = paid["cash"] + (amount_fen if form in rules.funding.eligible_payment_forms else 0)
        excluded = {f: paid[f] + (amount_fen if f == form else 0) for f in PAYMENT_FORMS if f not in rules.funding.eligible_payment_forms}
        earned_before = sums.get("subsidy_expense", 0)
        due, subsidy_trace = checks.subsidy_due(cash_after, contracted, earned_before, rules, excluded_fen=excluded)
        trace["subsidy"] = subsidy_trace
        if due > 0:
            postings += [
                PostingDraft(chart.subsidy_expense(code, n), due, None, "city_fiscal"),
                PostingDraft(chart.subsidy_payable(code, n), -due, None, "city_fiscal"),
            ]
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="bid_payment",
            postings=tuple(postings),
            project_code=code,
            voucher=_voucher(voucher, f"BIDP-{code}-L{n}-{date.isoformat()}-{form}-{amount_fen}"),
            memo=f"揭榜金额支付 L{n}（{zh(FORM_ZH, form)}）",
            actor=actor,
            rules_version=rules.version,
            trace=trace,
        ),
        [],
        {"project_code": code, "lane_no": n, "payload": {"form": form}},
    )
