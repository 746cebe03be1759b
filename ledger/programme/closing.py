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
    ProjectState,
    _lane_sums,
    _spent_by_category,
    condition_hint,
    load_project,
)
from ledger.programme.words import ENDING_ZH, zh


@idempotent("extension")
def extend(session: Session, *, project: str, months: int, date: dt.date, reference: str, reason: str, voucher: str | None, actor: str,
           exception: str | None = None) -> Posted:
    """Record an approved extension of the project period (bounded by the rules), with its
    reason; a principle (原则上) limit on extensions is exceeded only with ``exception``."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    facts = checks.ExtensionFacts(
        code, state.extensions, months, date, state.end_date, event=event_facts(state, "extension", date), reference=reference or "",
        reason=(reason or "").strip(),
    )
    principle_exception = checks.parse_exception(exception)
    violations = checks.apply_principle_exception(checks.run_checks(checks.EXTENSION_CHECKS, facts, rules), rules, principle_exception,
                                                  f"the extension of {code}")
    checks.refuse_errors(violations)
    exceptions = checks.exception_records(violations, facts, rules, principle_exception)
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
        {"project_code": code, "reference": reference,
         "payload": {"months": months, "reason": facts.reason} | ({"exceptions": exceptions} if exceptions else {})},
    )


@dataclass(frozen=True)
class Misuse:
    """A misused (违规使用) amount named by the officer, tied to an earlier spend voucher."""

    spend_voucher: str
    amount_fen: int


def _closing_postings(
    session: Session, state: ProjectState, lanes: list[int], *, misused: list[Misuse], recover_all_rate: Decimal | None,
    recover_balance: bool = True,
) -> tuple[list[PostingDraft], dict]:
    """Clawback, deobligation and forfeit postings for lanes that stop, with the computation.

    Without ``recover_balance`` (an eliminated lane under rules that let it keep its advance)
    only misuse is recovered; the unreleased obligation and unpaid subsidy stop all the same.
    """
    code, rules = state.project.code, state.rules
    year = state.project.budget_year
    postings: list[PostingDraft] = []
    trace: dict = {"lanes": {}}
    # The termination checks (check_misuse) have tied every misused amount to a spend.
    spends = _spend_entries(session, code)
    tracked = rules.funding.subsidy_use_tracked
    # Misuse can be named on any lane's spending, including a lane eliminated earlier whose
    # unspent advance was already assessed: each misused amount is reclassified to that
    # lane's clawback receivable here.
    for n in sorted({spends[m.spend_voucher][0] for m in misused} - set(lanes)):
        lane_misuse = [m for m in misused if spends[m.spend_voucher][0] == n]
        misuse_postings, total_misuse = _misuse_postings(code, n, lane_misuse, spends, tracked)
        postings += misuse_postings
        postings.append(PostingDraft(chart.clawback_receivable(code, n), total_misuse, None, "city_fiscal"))
        trace["lanes"][f"L{n}"] = {"misused": {m.spend_voucher: format_fen(m.amount_fen) for m in lane_misuse},
                                   "formula": "misused (lane eliminated earlier)", "clawback": format_fen(total_misuse)}
    for n in lanes:
        sums = _lane_sums(session, state, n)
        unspent = sums.get("advances", 0) if recover_balance else 0
        unreleased = sums.get("grant_unreleased", 0)
        payable = -sums.get("subsidy_payable", 0)
        lane_misuse = [m for m in misused if spends[m.spend_voucher][0] == n]
        lane_trace = {"advances_outstanding": format_fen(sums.get("advances", 0)), "unreleased_obligation": format_fen(unreleased)}
        if not recover_balance:
            lane_trace["balance_retained"] = state.rules.clause("funding.eliminated_racer_recovers_balance")
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
                if tracked:
                    postings += _use_register_reduced(code, n, sums, take)
            if rest:
                raise Refusal("revocation_must_be_covered", f"cannot source {_yuan(rest)} of the revocation clawback of {code} L{n}.")
            lane_trace |= {"released": format_fen(released), "rate": str(recover_all_rate),
                           "formula": "round_half_up(rate × released)", "clawback": format_fen(clawback)}
        elif tracked:
            # A bid subsidy released to its recipient (rules: subsidy_use_tracked): what it has
            # not reported spent, and what it misused, go back; the recovery reduces the subsidy
            # expense (业务活动费用) and the use register (备查) alike.
            recovers = rules.closure.termination_recovers
            unreported = sums.get("subsidy_unreported", 0) if "unspent" in recovers and recover_balance else 0
            lane_misuse = lane_misuse if "misused" in recovers else []
            misuse_postings, misuse_total = _misuse_postings(code, n, lane_misuse, spends, tracked)
            postings += misuse_postings
            if unreported:
                postings += [PostingDraft(chart.subsidy_unreported(code, n), -unreported, None, "city_fiscal"),
                             PostingDraft(chart.subsidy_use_released(code, n), unreported, None, "city_fiscal"),
                             PostingDraft(chart.subsidy_expense(code, n), -unreported, None, "city_fiscal")]
            clawback = unreported + misuse_total
            released_subsidy = sums.get("grant_released", 0)
            reported = sum(_spent_by_category(sums, "subsidy_reported").values())
            lane_trace |= {"subsidy_released": format_fen(released_subsidy), "subsidy_reported_spent": format_fen(reported),
                           "subsidy_unreported": format_fen(unreported),
                           "misused": {m.spend_voucher: format_fen(m.amount_fen) for m in lane_misuse},
                           "recovers": list(recovers),
                           "formula": "subsidy released not reported spent + misused", "clawback": format_fen(clawback),
                           "clause": rules.clause("funding.subsidy_use_tracked")}
        else:
            misuse_postings, misuse_total = _misuse_postings(code, n, lane_misuse, spends, tracked)
            postings += misuse_postings
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


def _misuse_postings(
    code: str, n: int, items: list[Misuse], spends: dict[str, tuple[int, str, int]], tracked: bool
) -> tuple[list[PostingDraft], int]:
    """Misused amounts reclassified out of what was reported spent; the caller debits the
    clawback receivable with the total. Grant spending is a fiscal expense; a tracked bid
    subsidy's use is in the memo register, and its recovery reduces the subsidy expense."""
    postings: list[PostingDraft] = []
    for m in items:
        category = spends[m.spend_voucher][1]
        if tracked:
            postings += [PostingDraft(chart.subsidy_reported(code, n, category), -m.amount_fen, category, "city_fiscal"),
                         PostingDraft(chart.subsidy_use_released(code, n), m.amount_fen, None, "city_fiscal"),
                         PostingDraft(chart.subsidy_expense(code, n), -m.amount_fen, None, "city_fiscal")]
        else:
            postings.append(PostingDraft(chart.grant_spent(code, n, category), -m.amount_fen, category, "city_fiscal"))
    return postings, sum(m.amount_fen for m in items)


def _use_register_reduced(code: str, n: int, sums: dict[str, int], amount: int) -> list[PostingDraft]:
    """The use register (备查) of a revoked subsidy: what is recovered leaves it, the unreported
    part first, then what was reported spent, category by category."""
    postings, rest = [], amount
    take = min(rest, sums.get("subsidy_unreported", 0))
    if take:
        postings.append(PostingDraft(chart.subsidy_unreported(code, n), -take, None, "city_fiscal"))
        rest -= take
    for cat, spent in _spent_by_category(sums, "subsidy_reported").items():
        take = min(rest, spent)
        if take:
            postings.append(PostingDraft(chart.subsidy_reported(code, n, cat), -take, cat, "city_fiscal"))
            rest -= take
    used = amount - rest
    if used:
        postings.append(PostingDraft(chart.subsidy_use_released(code, n), used, None, "city_fiscal"))
    return postings


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


def misuse_facts(session: Session, code: str, misused: list[Misuse]) -> tuple[checks.MisuseFacts, ...]:
    """The misused amounts named, each with the spend it cites (amount and lane), for the checks."""
    if not misused:
        return ()
    spends = _spend_entries(session, code)
    return tuple(
        checks.MisuseFacts(m.spend_voucher, m.amount_fen, spends[m.spend_voucher][2] if m.spend_voucher in spends else None,
                           spends[m.spend_voucher][0] if m.spend_voucher in spends else None)
        for m in misused
    )


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
    lane: str | None = None,
) -> Posted:
    """Terminate (or revoke) a project, or with ``lane`` one 赛马 lane: assess the clawback,
    deobligate, cancel unreleased tranches. A lane's termination moves that lane's money only."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    kind = "revocation" if revoke else "termination"
    n = state.lane_of(lane) if lane is not None else None
    facts = checks.TerminationFacts(event_facts(state, kind, date, n), reference or "", misuse_facts(session, code, list(misused)))
    checks.enforce(checks.TERMINATION_CHECKS, facts, rules)
    lanes = [n] if n is not None else [m for m in sorted(state.lanes) if m not in state.eliminated]
    postings, trace = _closing_postings(
        session, state, lanes, misused=list(misused), recover_all_rate=rules.funding.revocation_recovery_rate if revoke else None
    )
    trace |= {"reference": reference, "rules_version": rules.version,
              "clause": rules.clause("closure.termination_recovers") if not revoke else rules.clause("funding.revocation_recovery_rate")}
    if n is not None:
        trace["lane"] = f"L{n}"
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind=kind, postings=tuple(postings), project_code=code,
            voucher=_voucher(voucher, f"{kind.upper()}-{code}" + (f"-L{n}" if n is not None else "")),
            memo=zh(ENDING_ZH, kind) + (f" L{n}" if n is not None else ""), actor=actor, rules_version=rules.version,
            trace=trace, fact=not postings,
        ),
        [AccountSpec(chart.budget_available(state.project.budget_year), "memo", chart.year_accounts_open_on(state.project.budget_year))],
        {"project_code": code, "reference": reference} | ({"lane_no": n} if n is not None else {}),
    )


def eliminate_lane_postings(session: Session, state: ProjectState, n: int, misused: list[Misuse] = ()) -> tuple[list[PostingDraft], dict]:
    """What a failed 赛马 stage assessment assesses: the lane's clawback (its unspent balance
    where the rules recover it, and any misuse named on its spending) and deobligation."""
    return _closing_postings(session, state, [n], misused=list(misused), recover_all_rate=None,
                             recover_balance=state.rules.funding.eliminated_racer_recovers_balance)


def failed_acceptance_postings(session: Session, state: ProjectState, misused: list[Misuse] = ()) -> tuple[list[PostingDraft], dict]:
    """What a failed acceptance assesses where the rules treat it as a termination
    (``closure.failed_acceptance = terminate``): every lane still in the race stops as at a
    termination — its clawback (``closure.termination_recovers``: unspent and misused), its
    unreleased obligation deobligated, unpaid subsidy forfeited where the rules say so."""
    lanes = [n for n in sorted(state.lanes) if n not in state.eliminated]
    return _closing_postings(session, state, lanes, misused=list(misused), recover_all_rate=None)


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


@idempotent("remittance")
def remit(session: Session, *, amount_fen: int, date: dt.date, voucher: str | None, actor: str) -> Posted:
    """Record recovered money handed over to the finance bureau.

    Recording the same voucher again returns the first entry, as every other money verb
    does (it used to be refused: the first remittance had used up what was owed)."""
    lock(session)
    owed = -_sum_account(session, chart.DUE_TO_FINANCE)
    checks.enforce(checks.REMITTANCE_CHECKS, checks.RemittanceFacts(amount_fen, owed), None)
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind="remittance",
            postings=(PostingDraft(chart.DUE_TO_FINANCE, amount_fen), PostingDraft(chart.RECOVERIES_BANK, -amount_fen)),
            voucher=_voucher(voucher, f"REMIT-{date.isoformat()}-{amount_fen}"),
            memo="追回款上缴财政（应缴财政款）", actor=actor,
        ),
        [],
        None,
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
        tuple(condition_hint(c, code, 0, date) for c in missing),
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


# --- issue 14 point 8: the balance retained after acceptance, recovered after N years ------


@idempotent("balance_recovery")
def recover_balance(session: Session, *, project: str, date: dt.date, reference: str, voucher: str | None, actor: str) -> Posted:
    """Recover the balance a unit retained after a passed acceptance, where the rules say it
    is retained only ``closure.recover_after_years`` years (``balance_after_acceptance =
    recover_after_years``): on or after that anniversary of the acceptance, each lane's
    balance (advances outstanding; a tracked subsidy not reported spent) is assessed for
    recovery (其他应收款), then collected into 应缴财政款 and remitted like any clawback."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    lanes = [n for n in sorted(state.lanes) if n not in state.eliminated]
    lane_sums = {n: _lane_sums(session, state, n) for n in lanes}
    balance = sum(s.get("advances", 0) + (s.get("subsidy_unreported", 0) if rules.funding.subsidy_use_tracked else 0)
                  for s in lane_sums.values())
    accepted_on = state.met_on.get((None, "acceptance_passed"))
    facts = checks.BalanceRecoveryFacts(event_facts(state, "balance recovery", date), reference or "", accepted_on,
                                        state.balance_recovered_on, balance)
    checks.enforce(checks.BALANCE_RECOVERY_CHECKS, facts, rules)
    postings, trace = _closing_postings(session, state, lanes, misused=[], recover_all_rate=None)
    due_on = checks.balance_recoverable_on(accepted_on, rules)
    trace |= {"reference": reference, "accepted_on": accepted_on.isoformat(), "closed_on": state.closed_on.isoformat(),
              "recoverable_from": due_on.isoformat(), "recover_after_years": rules.closure.recover_after_years,
              "formula": "balance retained after acceptance (advances outstanding) recovered",
              "clause": rules.clause("closure.recover_after_years"),
              "balance_clause": rules.clause("closure.balance_after_acceptance")}
    return _post_event(
        session,
        EntryDraft(value_date=date, kind="balance_recovery", postings=tuple(postings), project_code=code,
                   voucher=_voucher(voucher, f"BALREC-{code}"), memo="验收后结余到期收回", actor=actor,
                   rules_version=rules.version, trace=trace),
        [],
        {"project_code": code, "reference": reference},
    )
