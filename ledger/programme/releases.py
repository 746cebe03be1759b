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
from ledger.programme.common import _post_event, _voucher, event_facts, idempotent, lock
from ledger.programme.models import Project
from ledger.programme.state import (
    CONDITION_HINTS,
    _lane_sums,
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
            tuple(CONDITION_HINTS.get(c, c) for c in target.unmet), target.source,
        ),
        payable_fen=payable,
        unreleased_fen=unreleased,
    )
    checks.enforce(checks.RELEASE_CHECKS, facts, rules)
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
    # An offset nets a clawback the recipient owes to this city against money this city pays
    # it. A grant tranche is paid to the lane's unit (the solver); a bid subsidy goes to the
    # demand side, which owes no lane clawback, so subsidy releases are never offset.
    offsets = (
        _offsets(session, state.lanes[n], state.project.city, amount)
        if rules.funding.clawback_offset_allowed and target.basis == "grant_share"
        else []
    )
    paid = amount - sum(value for _, value in offsets)
    postings = [
        PostingDraft(chart.grant_released(code, n), amount, None, "city_fiscal"),
        PostingDraft(chart.grant_unreleased(code, n), -amount, None, "city_fiscal"),
        PostingDraft(fiscal_debit, amount, None, "city_fiscal"),
    ]
    if paid:
        postings.append(PostingDraft(funding, -paid, None, "city_fiscal"))
    for account, value in offsets:
        postings.append(PostingDraft(account, -value, None, "city_fiscal"))
    if offsets:
        trace |= {"offset": {account: format_fen(value) for account, value in offsets}, "paid": format_fen(paid),
                  "offset_clause": rules.clause("funding.clawback_offset_allowed")}
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
        [AccountSpec(funding, "fiscal", chart.year_accounts_open_on(date.year))],
        {"project_code": code, "lane_no": n, "tranche": [target.lane_no, target.seq]},
    )


def _offsets(session: Session, party_uscc: str, city: str, amount: int) -> list[tuple[str, int]]:
    """Outstanding clawbacks the same unit owes as a lane's solver in this city's projects,
    oldest account first, up to ``amount``."""
    same_city = select(Project.code).where(Project.city == city)
    rows = session.execute(
        select(Account.name, func.coalesce(func.sum(Posting.amount_fen), 0))
        .join(Posting, Posting.account_id == Account.id)
        .where(
            Account.lane == party_uscc,
            Account.name.like("Assets:Fiscal:ClawbackReceivable:%"),
            Account.project_code.in_(same_city),
        )
        .group_by(Account.name, Account.id)
        .order_by(Account.id)
    ).all()
    offsets, left = [], amount
    for name, outstanding in rows:
        take = min(int(outstanding), left)
        if take > 0:
            offsets.append((name, take))
            left -= take
    return offsets
