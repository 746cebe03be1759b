"""Tranche releases: only when the conditions hold, within the obligation, once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from funding_rules import checks
from ledger.core.errors import Refusal
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    PostingDraft,
)
from ledger.core.models import Account, Posting
from ledger.core.money import format_fen
from ledger.programme import chart
from ledger.programme.budget import _sum_account
from ledger.programme.common import _post_event, _voucher, event_facts, idempotent, lock
from ledger.programme.state import (
    _lane_sums,
    condition_hint,
    load_project,
    tranche_views,
)
from ledger.programme.words import tranche_memo

# --- releases ---------------------------------------------------------------------------


@idempotent("release")
def release(
    session: Session,
    *,
    project: str,
    lane: str | None,
    date: dt.date,
    voucher: str | None,
    actor: str,
    tranche: int | None = None,
    offset_approval: str = "",
) -> Posted:
    """Release a tranche to a lane when its conditions hold, within the obligation, once."""
    lock(session)
    state = load_project(session, project, as_of=None)
    code, rules = state.project.code, state.rules
    n = state.lane_of(lane)
    dated = load_project(session, project, as_of=date)
    views = [v for v in tranche_views(session, dated) if v.lane_no == n]
    if tranche is None:
        pending = [v for v in views if v.id not in state.released_tranches]
        target = pending[0] if pending else None
    else:
        matches = [v for v in views if v.seq == tranche]
        if not matches:
            raise Refusal("tranche_must_exist", f"{code} L{n} has tranches 1..{len(views)}, not {tranche}.")
        target = matches[0]
    sums = _lane_sums(session, state, n)
    unreleased = sums.get("grant_unreleased", 0)
    payable = -sums.get("subsidy_payable", 0)
    facts = checks.ReleaseFacts(
        event=event_facts(state, "release", date, n),
        tranche=None if target is None else checks.TrancheFacts(
            target.seq, target.name, target.basis, target.amount_fen, target.id in state.released_tranches,
            tuple(condition_hint(c, code, n, date) for c in target.unmet), target.source,
        ),
        payable_fen=payable,
        unreleased_fen=unreleased,
        offset_approval=offset_approval or "",
        **_pledge_facts(session, state, views, date),
    )
    warnings = checks.enforce(checks.RELEASE_CHECKS, facts, rules)
    amount = checks.release_amount_fen(facts)
    if target.basis == "grant_share":
        trace = {"tranche": target.seq, "name": target.name, "basis": "grant_share", "amount": format_fen(amount)}
        fiscal_debit = chart.advances(code, n)
    else:
        trace = {"tranche": target.seq, "name": target.name, "basis": "subsidy_earned", "payable": format_fen(payable),
                 "unreleased_obligation": format_fen(unreleased), "amount": format_fen(amount),
                 "formula": "min(subsidy payable, unreleased obligation)"}
        fiscal_debit = chart.subsidy_payable(code, n)
    funding = chart.funding(date.year)
    # Recovered money goes back to the treasury (应缴财政款, then remitted); it is netted
    # against a payment only where the rules allow it, within the same project and unit,
    # with an approval reference recorded on this release (checked above).
    receivables = _receivables(session, code, state.lanes[n]) if offset_approval and rules.funding.clawback_offset_allowed else []
    offsets = checks.offset_takes(receivables, code, state.lanes[n], amount)
    paid = amount - sum(value for _, value in offsets)
    postings = [
        PostingDraft(chart.grant_released(code, n), amount, None, "city_fiscal"),
        PostingDraft(chart.grant_unreleased(code, n), -amount, None, "city_fiscal"),
        PostingDraft(fiscal_debit, amount, None, "city_fiscal"),
    ]
    accounts = [AccountSpec(funding, "fiscal", chart.year_accounts_open_on(date.year))]
    if target.basis == "subsidy_earned" and rules.funding.subsidy_use_tracked:
        # The subsidy released to its recipient is tracked (备查) until reported spent.
        postings += [
            PostingDraft(chart.subsidy_unreported(code, n), amount, None, "city_fiscal"),
            PostingDraft(chart.subsidy_use_released(code, n), -amount, None, "city_fiscal"),
        ]
        accounts += [AccountSpec(chart.subsidy_unreported(code, n), "memo", state.project.approval_date, code, state.lanes[n]),
                     AccountSpec(chart.subsidy_use_released(code, n), "memo", state.project.approval_date, code, state.lanes[n])]
        trace["use_tracked"] = rules.clause("funding.subsidy_use_tracked")
    if paid:
        postings.append(PostingDraft(funding, -paid, None, "city_fiscal"))
    for account, value in offsets:
        postings.append(PostingDraft(account, -value, None, "city_fiscal"))
    if offsets:
        # Shown gross: the full tranche is a payment and the netted part a recovery.
        trace |= {"offset": {account: format_fen(value) for account, value in offsets}, "paid": format_fen(paid),
                  "paid_gross": format_fen(amount), "offset_approval": offset_approval.strip(),
                  "offset_clause": rules.clause("funding.clawback_offset_allowed")}
    if warnings:
        trace["warnings"] = [{"code": w.code, "message": w.message} for w in warnings]
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="release",
            postings=postings,
            project_code=code,
            voucher=_voucher(voucher, f"REL-{code}-L{n}-T{target.seq}"),
            memo=tranche_memo(target.seq, target.name, n, offset=bool(offsets)),
            actor=actor,
            rules_version=rules.version,
            trace=trace,
        ),
        accounts,
        {"project_code": code, "lane_no": n, "tranche": [target.lane_no, target.seq]}
        | ({"reference": offset_approval.strip()} if offsets else {}),
    )


def _pledge_facts(session: Session, state, views, date: dt.date) -> dict:
    """Issue 14 point 8: whether this is the lane's first release, and the self-funding
    pledged (承诺函) on file by its date, for ``checks.check_pledge_at_first_release``."""
    if state.rules.funding.pledge_at_first_release == "none":
        return {}
    first = not any(v.id in state.released_tranches for v in views)
    pledged = -_sum_account(session, chart.self_funding_pledged(state.project.code), as_of=date) if first else None
    return {"first_release": first, "pledged_fen": pledged}


def _receivables(session: Session, code: str, party_uscc: str) -> list[checks.Receivable]:
    """Outstanding clawbacks the unit owes on this project, oldest account first."""
    rows = session.execute(
        select(Account.name, Account.project_code, Account.lane, func.coalesce(func.sum(Posting.amount_fen), 0))
        .join(Posting, Posting.account_id == Account.id)
        .where(
            Account.lane == party_uscc,
            Account.name.like("Assets:Fiscal:ClawbackReceivable:%"),
            Account.project_code == code,
        )
        .group_by(Account.name, Account.project_code, Account.lane, Account.id)
        .order_by(Account.id)
    ).all()
    return [checks.Receivable(name, project, unit, int(outstanding)) for name, project, unit, outstanding in rows]
