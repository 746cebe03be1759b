"""Extension, termination and revocation with their recovery, collection, remittance,
write-off, and closure after acceptance."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from funding_rules import checks
from ledger.core.errors import Refusal
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    PostingDraft,
    post,
)
from ledger.core.models import JournalEntry, Posting
from ledger.core.money import format_fen
from ledger.programme import chart
from ledger.programme.budget import _sum_account
from ledger.programme.common import (
    CATEGORIES,
    _post_event,
    _voucher,
    _yuan,
    event_facts,
    idempotent,
    lock,
    reversed_entries,
)
from ledger.programme.models import ProjectEvent
from ledger.programme.state import (
    CONDITION_HINTS,
    ProjectState,
    _lane_sums,
    _spent_by_category,
    load_project,
)
from ledger.programme.words import ENDING_ZH, zh


@idempotent("extension")
def extend(session: Session, *, project: str, months: int, date: dt.date, reference: str, voucher: str | None, actor: str) -> Posted:
    """Record an approved extension of the project period (bounded by the rules)."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    facts = checks.ExtensionFacts(
        code, state.extensions, months, date, state.end_date, event=event_facts(state, "extension", date), reference=reference or ""
    )
    checks.enforce(checks.EXTENSION_CHECKS, facts, rules)
    new_end = checks.add_months(state.end_date, months)
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind="extension", postings=(), project_code=code,
            voucher=_voucher(voucher, f"EXT-{code}-{state.extensions + 1}"),
            memo=f"延期 {months} 个月，至 {new_end}", actor=actor, rules_version=rules.version,
            trace={"months": months, "end_before": state.end_date.isoformat(), "end_after": new_end.isoformat(), "reference": reference},
            fact=True,
        ),
        [],
        {"project_code": code, "reference": reference, "payload": {"months": months}},
    )


@dataclass(frozen=True)
class Misuse:
    """A misused (违规使用) amount named by the officer, tied to an earlier spend voucher."""

    spend_voucher: str
    amount_fen: int


def _closing_postings(
    session: Session, state: ProjectState, lanes: list[int], *, misused: list[Misuse], recover_all_rate: Decimal | None
) -> tuple[list[PostingDraft], dict]:
    """Clawback, deobligation and forfeit postings for lanes that stop, with the computation."""
    code, rules = state.project.code, state.rules
    year = state.project.budget_year
    postings: list[PostingDraft] = []
    trace: dict = {"lanes": {}}
    # The termination checks (check_misuse) have tied every misused amount to a spend.
    spends = _spend_entries(session, code)
    # Misuse can be named on any lane's spending, including a lane eliminated earlier whose
    # unspent advance was already assessed: each misused amount is reclassified to that
    # lane's clawback receivable here.
    for n in sorted({spends[m.spend_voucher][0] for m in misused} - set(lanes)):
        lane_misuse = [m for m in misused if spends[m.spend_voucher][0] == n]
        for m in lane_misuse:
            category = spends[m.spend_voucher][1]
            postings.append(PostingDraft(chart.grant_spent(code, n, category), -m.amount_fen, category, "city_fiscal"))
        total_misuse = sum(m.amount_fen for m in lane_misuse)
        postings.append(PostingDraft(chart.clawback_receivable(code, n), total_misuse, None, "city_fiscal"))
        trace["lanes"][f"L{n}"] = {"misused": {m.spend_voucher: format_fen(m.amount_fen) for m in lane_misuse},
                                   "formula": "misused (lane eliminated earlier)", "clawback": format_fen(total_misuse)}
    for n in lanes:
        sums = _lane_sums(session, state, n)
        unspent = sums.get("advances", 0)
        unreleased = sums.get("grant_unreleased", 0)
        payable = -sums.get("subsidy_payable", 0)
        lane_misuse = [m for m in misused if spends[m.spend_voucher][0] == n]
        lane_trace = {"advances_outstanding": format_fen(unspent), "unreleased_obligation": format_fen(unreleased)}
        if recover_all_rate is not None:
            released = sums.get("grant_released", 0)
            target = int((Decimal(released) * recover_all_rate).to_integral_value(rounding="ROUND_HALF_UP"))
            clawback = target
            take_advances = min(unspent, target)
            rest = target - take_advances
            if take_advances:
                postings.append(PostingDraft(chart.advances(code, n), -take_advances, None, "city_fiscal"))
            spent_by_cat = _spent_by_category(sums)
            for cat in CATEGORIES:
                take = min(rest, spent_by_cat.get(cat, 0))
                if take:
                    postings.append(PostingDraft(chart.grant_spent(code, n, cat), -take, cat, "city_fiscal"))
                    rest -= take
            released_subsidy = sums.get("subsidy_expense", 0) - payable
            take = min(rest, released_subsidy)
            if take:
                postings.append(PostingDraft(chart.subsidy_expense(code, n), -take, None, "city_fiscal"))
                rest -= take
            if rest:
                raise Refusal("revocation_must_be_covered", f"cannot source {_yuan(rest)} of the revocation clawback of {code} L{n}.")
            lane_trace |= {"released": format_fen(released), "rate": str(recover_all_rate),
                           "formula": "round_half_up(rate × released)", "clawback": format_fen(clawback)}
        else:
            misuse_total = 0
            for m in lane_misuse:
                _, category, _ = spends[m.spend_voucher]
                postings.append(PostingDraft(chart.grant_spent(code, n, category), -m.amount_fen, category, "city_fiscal"))
                misuse_total += m.amount_fen
            if unspent:
                postings.append(PostingDraft(chart.advances(code, n), -unspent, None, "city_fiscal"))
            clawback = unspent + misuse_total
            lane_trace |= {"misused": {m.spend_voucher: format_fen(m.amount_fen) for m in lane_misuse},
                           "formula": "advances outstanding + misused", "clawback": format_fen(clawback)}
        if clawback:
            postings.append(PostingDraft(chart.clawback_receivable(code, n), clawback, None, "city_fiscal"))
        if unreleased:
            postings.append(PostingDraft(chart.grant_unreleased(code, n), -unreleased, None, "city_fiscal"))
            postings.append(PostingDraft(chart.budget_available(year), unreleased, None, "city_fiscal"))
            lane_trace["deobligated"] = format_fen(unreleased)
        if payable and rules.funding.unpaid_subsidy_on_termination == "forfeit":
            postings.append(PostingDraft(chart.subsidy_payable(code, n), payable, None, "city_fiscal"))
            postings.append(PostingDraft(chart.subsidy_expense(code, n), -payable, None, "city_fiscal"))
            lane_trace["subsidy_forfeited"] = format_fen(payable)
        trace["lanes"][f"L{n}"] = lane_trace
    return postings, trace


def _spend_entries(session: Session, code: str) -> dict[str, tuple[int, str, int]]:
    """Spend vouchers of a project: voucher -> (lane, category, amount), not reversed."""
    rows = session.execute(
        select(JournalEntry.voucher, ProjectEvent.lane_no, ProjectEvent.stage, Posting.amount_fen)
        .join(ProjectEvent, ProjectEvent.entry_id == JournalEntry.id)
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .where(JournalEntry.project_code == code, JournalEntry.kind == "spend", Posting.amount_fen > 0,
               JournalEntry.id.not_in(reversed_entries()))
    ).all()
    return {v: (lane_no, category, int(amount)) for v, lane_no, category, amount in rows}


@idempotent(lambda arguments: "revocation" if arguments.get("revoke") else "termination")
def terminate(
    session: Session,
    *,
    project: str,
    date: dt.date,
    reference: str,
    voucher: str | None,
    actor: str,
    misused: list[Misuse] = (),
    revoke: bool = False,
) -> Posted:
    """Terminate (or revoke) a project: assess the clawback, deobligate, cancel unreleased tranches."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    kind = "revocation" if revoke else "termination"
    spends = _spend_entries(session, code)
    facts = checks.TerminationFacts(
        event_facts(state, kind, date),
        reference or "",
        tuple(checks.MisuseFacts(m.spend_voucher, m.amount_fen, spends[m.spend_voucher][2] if m.spend_voucher in spends else None)
              for m in misused),
    )
    checks.enforce(checks.TERMINATION_CHECKS, facts, rules)
    lanes = [n for n in sorted(state.lanes) if n not in state.eliminated]
    postings, trace = _closing_postings(
        session, state, lanes, misused=list(misused), recover_all_rate=rules.funding.revocation_recovery_rate if revoke else None
    )
    trace |= {"reference": reference, "rules_version": rules.version,
              "clause": rules.clause("closure.termination_recovers") if not revoke else rules.clause("funding.revocation_recovery_rate")}
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind=kind, postings=tuple(postings), project_code=code,
            voucher=_voucher(voucher, f"{kind.upper()}-{code}"),
            memo=zh(ENDING_ZH, kind), actor=actor, rules_version=rules.version, trace=trace, fact=not postings,
        ),
        [AccountSpec(chart.budget_available(state.project.budget_year), "memo", chart.year_accounts_open_on(state.project.budget_year))],
        {"project_code": code, "reference": reference},
    )


def eliminate_lane_postings(session: Session, state: ProjectState, n: int) -> tuple[list[PostingDraft], dict]:
    """What a failed 赛马 stage assessment assesses: the lane's clawback and deobligation."""
    if not state.rules.funding.eliminated_racer_recovers_balance:
        postings, trace = _closing_postings(session, state, [n], misused=[], recover_all_rate=None)
        # The lane keeps its advance; only the unreleased obligation and unpaid subsidy stop.
        keep = {chart.advances(state.project.code, n), chart.clawback_receivable(state.project.code, n)}
        return [p for p in postings if p.account not in keep], trace
    return _closing_postings(session, state, [n], misused=[], recover_all_rate=None)


@idempotent("collection")
def collect(session: Session, *, project: str, lane: str | None, amount_fen: int, date: dt.date, voucher: str | None, actor: str) -> Posted:
    """Record recovered money received; it is owed to the finance bureau (应缴财政款) until remitted."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    n = state.lane_of(lane)
    outstanding = _lane_sums(session, state, n).get("clawback_receivable", 0)
    checks.enforce(checks.COLLECTION_CHECKS, checks.CollectionFacts(code, n, amount_fen, outstanding), state.rules)
    recoveries = chart.recoveries_owed(date.year)
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind="collection",
            postings=(
                PostingDraft(chart.RECOVERIES_BANK, amount_fen, None, "city_fiscal"),
                PostingDraft(chart.clawback_receivable(code, n), -amount_fen, None, "city_fiscal"),
                PostingDraft(recoveries, amount_fen, None, "city_fiscal"),
                PostingDraft(chart.DUE_TO_FINANCE, -amount_fen, None, "city_fiscal"),
            ),
            project_code=code, voucher=_voucher(voucher, f"COLLECT-{code}-L{n}-{date.isoformat()}-{amount_fen}"),
            memo=f"追回款收回 L{n}", actor=actor, rules_version=state.rules.version,
            trace={"outstanding_before": format_fen(outstanding), "collected": format_fen(amount_fen)},
        ),
        [AccountSpec(chart.RECOVERIES_BANK, "fiscal", dt.date(2000, 1, 1)),
         AccountSpec(chart.DUE_TO_FINANCE, "fiscal", dt.date(2000, 1, 1)),
         AccountSpec(recoveries, "fiscal", chart.year_accounts_open_on(date.year))],
        {"project_code": code, "lane_no": n},
    )


def remit(session: Session, *, amount_fen: int, date: dt.date, voucher: str | None, actor: str) -> Posted:
    """Record recovered money handed over to the finance bureau."""
    lock(session)
    owed = -_sum_account(session, chart.DUE_TO_FINANCE)
    checks.enforce(checks.REMITTANCE_CHECKS, checks.RemittanceFacts(amount_fen, owed), None)
    return post(
        session,
        EntryDraft(
            value_date=date, kind="remittance",
            postings=(PostingDraft(chart.DUE_TO_FINANCE, amount_fen), PostingDraft(chart.RECOVERIES_BANK, -amount_fen)),
            voucher=_voucher(voucher, f"REMIT-{date.isoformat()}-{amount_fen}"),
            memo="追回款上缴财政（应缴财政款）", actor=actor,
        ),
    )


@idempotent("write_off")
def write_off(
    session: Session, *, project: str, lane: str | None, amount_fen: int, date: dt.date, reason: str, approval: str, voucher: str | None, actor: str
) -> Posted:
    """Write off an uncollectable clawback, with a reason and an approval reference."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    n = state.lane_of(lane)
    outstanding = _lane_sums(session, state, n).get("clawback_receivable", 0)
    facts = checks.WriteOffFacts(code, n, amount_fen, outstanding, reason or "", approval or "")
    checks.enforce(checks.WRITE_OFF_CHECKS, facts, state.rules)
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind="write_off",
            postings=(PostingDraft(chart.write_offs(code), amount_fen, None, "city_fiscal"),
                      PostingDraft(chart.clawback_receivable(code, n), -amount_fen, None, "city_fiscal")),
            project_code=code, voucher=_voucher(voucher, f"WRITEOFF-{code}-L{n}-{date.isoformat()}"),
            memo=f"追回核销：{reason.strip()}", actor=actor, rules_version=state.rules.version,
            trace={"reason": reason.strip(), "approval": approval.strip(), "outstanding_before": format_fen(outstanding)},
        ),
        [AccountSpec(chart.write_offs(code), "fiscal", state.project.approval_date, code)],
        {"project_code": code, "lane_no": n, "reference": approval.strip()},
    )




@idempotent("closure")
def close(session: Session, *, project: str, date: dt.date, reference: str, voucher: str | None, actor: str) -> Posted:
    """Close a project after a passed acceptance: what was never released is deobligated.

    The balance left with the unit follows the rules (``closure.balance_after_acceptance``;
    the national 2021 rule retains it), so advances stay as they are. Unpaid subsidy must be
    released before closing, since closing ends every tranche.
    """
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    missing = [c for c in ("acceptance_passed",) + (("audit_report_received",) if checks.audit_required(state.project.approved_grant_fen, rules) else ())
               if c not in state.met(0)]
    active = [n for n in sorted(state.lanes) if n not in state.eliminated]
    lane_sums = {n: _lane_sums(session, state, n) for n in active}
    facts = checks.ClosureFacts(
        event_facts(state, "closure", date),
        tuple(CONDITION_HINTS[c] for c in missing),
        reference or "",
        tuple((n, -sums.get("subsidy_payable", 0)) for n, sums in lane_sums.items()),
    )
    checks.enforce(checks.CLOSURE_CHECKS, facts, rules)
    year = state.project.budget_year
    postings: list[PostingDraft] = []
    trace: dict = {"reference": reference, "balance_after_acceptance": rules.closure.balance_after_acceptance, "lanes": {}}
    for n, sums in lane_sums.items():
        unreleased = sums.get("grant_unreleased", 0)
        if unreleased:
            postings += [PostingDraft(chart.grant_unreleased(code, n), -unreleased, None, "city_fiscal"),
                         PostingDraft(chart.budget_available(year), unreleased, None, "city_fiscal")]
        trace["lanes"][f"L{n}"] = {"deobligated": format_fen(unreleased), "advances_retained": format_fen(sums.get("advances", 0))}
    return _post_event(
        session,
        EntryDraft(value_date=date, kind="closure", postings=tuple(postings), project_code=code,
                   voucher=_voucher(voucher, f"CLOSE-{code}"), memo="验收后结题", actor=actor,
                   rules_version=rules.version, trace=trace, fact=not postings),
        [AccountSpec(chart.budget_available(year), "memo", chart.year_accounts_open_on(year))],
        {"project_code": code, "reference": reference},
    )
