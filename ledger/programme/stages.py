"""Stage events: contract signed, mid-term, 赛马 stage assessment, acceptance, audit report."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from funding_rules import checks
from ledger.core.errors import Refusal
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    PostingDraft,
)
from ledger.core.money import format_fen, parse_fen
from ledger.programme import chart
from ledger.programme.closing import (
    Misuse,
    _use_register_reduced,
    eliminate_lane_postings,
    failed_acceptance_postings,
    misuse_facts,
)
from ledger.programme.common import _post_event, _voucher, event_facts, idempotent, lock
from ledger.programme.fold import STAGES
from ledger.programme.recorded import stage_payload
from ledger.programme.state import ProjectState, _lane_sums, load_project
from ledger.programme.words import STAGE_RESULT_ZH

# --- stages -----------------------------------------------------------------------------


@idempotent("stage")
def record_stage(
    session: Session,
    *,
    project: str,
    stage: str,
    passed: bool,
    date: dt.date,
    voucher: str | None,
    actor: str,
    lane: str | None = None,
    reference: str | None = None,
    misused: list[Misuse] = (),
    audit_firm: str | None = None,
    audit_fee_fen: int | None = None,
    accepted_by: str | None = None,
    audited_cash: tuple[tuple[str | None, int], ...] = (),
) -> Posted:
    """Record a stage result: contract signed, mid-term check, 赛马 stage assessment (per lane;
    a failed lane is eliminated), acceptance, audit report received. A pass moves no money; an
    elimination assesses the lane's clawback and deobligation in the same entry. A failed
    acceptance has the consequence the rules give it (``closure.failed_acceptance``), and an
    audit report with ``audited_cash`` ((lane or None, fen) pairs) trues the bid subsidy up
    on the audited cash total."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    n = state.lane_of(lane) if lane is not None or (stage == "stage_assessment" and state.project.mode == "saima") else None
    audited = _audited_lanes(state, audited_cash)
    facts = checks.StageFacts(event_facts(state, f"{stage} record", date, n), stage, tuple(STAGES), state.project.mode,
                              passed, misuse_facts(session, code, list(misused)),
                              tuple((m, fen, m not in state.eliminated) for m, fen in audited.items()))
    checks.enforce(checks.STAGE_CHECKS, facts, state.rules)
    # Facts auditors read (issue 14 point 9): who ran the acceptance; the audit firm and fee.
    recorded = stage_payload(stage, audit_firm=audit_firm, audit_fee_fen=audit_fee_fen, accepted_by=accepted_by)
    postings: list[PostingDraft] = []
    trace: dict = {"stage": stage, "passed": passed, "lane": f"L{n}" if n else None, "reference": reference}
    payload: dict = {}
    if stage == "stage_assessment" and not passed:
        # Elimination: the lane stops; its unspent advance is assessed for recovery and its
        # unreleased obligation returns to the year's available budget, in this same entry.
        postings, closing = eliminate_lane_postings(session, state, n, list(misused))
        trace["elimination"] = closing["lanes"][f"L{n}"]
    elif stage == "acceptance" and not passed:
        postings, trace["failed_acceptance"], payload = _failed_acceptance(session, state, list(misused))
    elif audited:
        postings, trace["true_up"], payload = _audited_true_up(session, state, audited)
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="stage",
            postings=tuple(postings),
            project_code=code,
            voucher=_voucher(voucher, f"STAGE-{code}-{stage}-{'L' + str(n) if n else 'P'}-{date.isoformat()}"),
            memo=STAGE_RESULT_ZH.get((stage, passed), f"{stage} {'通过' if passed else '未通过'}") + (f" L{n}" if n else "")
            + _memo_suffix(payload),
            actor=actor,
            rules_version=state.rules.version,
            trace=trace,
            fact=not postings,
        ),
        [AccountSpec(chart.budget_available(state.project.budget_year), "memo", chart.year_accounts_open_on(state.project.budget_year))] if postings else [],
        {"project_code": code, "lane_no": n, "stage": stage, "passed": passed, "reference": reference}
        | ({"payload": recorded | payload} if recorded or payload else {}),
    )


# --- issue 14 point 8: a failed acceptance and the audited true-up ------------------------


def _memo_suffix(payload: dict) -> str:
    if payload.get("consequence") == "terminate":
        return "（按规则终止并追回）"
    if payload.get("consequence") == "officer":
        return "（待主管部门决定）"
    if payload.get("audited_cash"):
        return "（按审计确认的现金揭榜金额结算补助）"
    return ""


def parse_audited_cash(values: list[str] | tuple[str, ...]) -> tuple[tuple[str | None, int], ...]:
    """``AMOUNT`` (a project with one lane) or ``Ln=AMOUNT`` per lane, as (lane or None, fen)."""
    out = []
    for value in values:
        for part in (p.strip() for p in str(value).split(";")):
            if not part:
                continue
            lane, sep, amount = part.rpartition("=")
            if sep and not lane.strip():
                raise Refusal("audited_cash_must_be_lane_equals_amount",
                              f"audited cash {part!r} must be AMOUNT (one lane) or Ln=AMOUNT, e.g. L1=300万.")
            out.append((lane.strip() or None, parse_fen(amount, field="audited_cash")))
    return tuple(out)


def _audited_lanes(state: ProjectState, audited_cash) -> dict[int, int]:
    lanes: dict[int, int] = {}
    for lane, fen in audited_cash:
        n = state.lane_of(lane)
        if n in lanes:
            raise Refusal("audited_cash_must_be_lane_equals_amount",
                          f"audited cash names L{n} of {state.project.code} twice; give each lane once.")
        lanes[n] = fen
    return lanes


def _failed_acceptance(session: Session, state: ProjectState, misused: list[Misuse]) -> tuple[list[PostingDraft], dict, dict]:
    """A failed 验收: under ``closure.failed_acceptance = terminate`` the project ends as a
    termination in this entry (clawback of what ``closure.termination_recovers`` names,
    deobligation); under ``officer`` the result is recorded and ``due`` lists the decision."""
    rules = state.rules
    consequence = rules.closure.failed_acceptance
    trace: dict = {"consequence": consequence, "clause": rules.clause("closure.failed_acceptance")}
    if consequence != "terminate":
        return [], trace, {"consequence": consequence}
    postings, closing = failed_acceptance_postings(session, state, misused)
    trace |= {"recovers": list(rules.closure.termination_recovers), "recovers_clause": rules.clause("closure.termination_recovers"),
              "lanes": closing["lanes"]}
    return postings, trace, {"consequence": consequence}


def _audited_true_up(session: Session, state: ProjectState, audited: dict[int, int]) -> tuple[list[PostingDraft], dict, dict]:
    """The final true-up of a bid subsidy on the cash total the 专项审计报告 confirms: the
    subsidy is computed again on it (rate × audited cash, within the contract cap) and the
    difference to what was earned is posted — a top-up made payable (the final tranche pays
    it), or an excess taken back from what is still payable and, for what was already
    released, assessed for recovery (其他应收款, then collected into 应缴财政款)."""
    code, rules = state.project.code, state.rules
    postings: list[PostingDraft] = []
    trace: dict = {"clause": rules.clause("tranches.final") if "tranches.final" in rules.sources else rules.clause("funding.subsidy_rate"),
                   "rate_clause": rules.clause("funding.subsidy_rate"), "lanes": {}}
    for n, cash in sorted(audited.items()):
        sums = _lane_sums(session, state, n)
        earned_before = sums.get("subsidy_expense", 0)
        payable = -sums.get("subsidy_payable", 0)
        due, subsidy = checks.subsidy_due(cash, -sums.get("bid_contracted", 0), earned_before, rules)
        lane = {"audited_cash": format_fen(cash), "ledger_cash": format_fen(sums.get("bid_paid_cash", 0)),
                "earned_before": format_fen(earned_before), "earned_audited": subsidy["earned"], "difference": format_fen(due),
                "formula": subsidy["formula"], "subsidy": subsidy}
        if due > 0:
            postings += [PostingDraft(chart.subsidy_expense(code, n), due, None, "city_fiscal"),
                         PostingDraft(chart.subsidy_payable(code, n), -due, None, "city_fiscal")]
            lane["top_up_payable"] = format_fen(due)
        elif due < 0:
            over = -due
            from_payable = min(over, payable)
            recovered = over - from_payable
            if from_payable:
                postings += [PostingDraft(chart.subsidy_payable(code, n), from_payable, None, "city_fiscal"),
                             PostingDraft(chart.subsidy_expense(code, n), -from_payable, None, "city_fiscal")]
            if recovered:
                postings += [PostingDraft(chart.clawback_receivable(code, n), recovered, None, "city_fiscal"),
                             PostingDraft(chart.subsidy_expense(code, n), -recovered, None, "city_fiscal")]
                if rules.funding.subsidy_use_tracked:
                    postings += _use_register_reduced(code, n, sums, recovered)
            lane |= {"payable_reduced": format_fen(from_payable), "over_released_recovered": format_fen(recovered)}
        trace["lanes"][f"L{n}"] = lane
    return postings, trace, {"audited_cash": {f"L{n}": str(fen) for n, fen in sorted(audited.items())}}
