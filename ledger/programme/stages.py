"""Stage events: contract signed, mid-term, 赛马 stage assessment, acceptance, audit report."""

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
from ledger.programme import chart
from ledger.programme.closing import Misuse, eliminate_lane_postings, misuse_facts
from ledger.programme.common import _post_event, _voucher, event_facts, idempotent, lock
from ledger.programme.fold import STAGES
from ledger.programme.recorded import stage_payload
from ledger.programme.state import load_project
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
) -> Posted:
    """Record a stage result: contract signed, mid-term check, 赛马 stage assessment (per lane;
    a failed lane is eliminated), acceptance, audit report received. A pass moves no money; an
    elimination assesses the lane's clawback and deobligation in the same entry."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    n = state.lane_of(lane) if lane is not None or (stage == "stage_assessment" and state.project.mode == "saima") else None
    facts = checks.StageFacts(event_facts(state, f"{stage} record", date, n), stage, tuple(STAGES), state.project.mode,
                              passed, misuse_facts(session, code, list(misused)))
    checks.enforce(checks.STAGE_CHECKS, facts, state.rules)
    # Facts auditors read (issue 14 point 9): who ran the acceptance; the audit firm and fee.
    recorded = stage_payload(stage, audit_firm=audit_firm, audit_fee_fen=audit_fee_fen, accepted_by=accepted_by)
    postings: list[PostingDraft] = []
    trace: dict = {"stage": stage, "passed": passed, "lane": f"L{n}" if n else None, "reference": reference}
    if stage == "stage_assessment" and not passed:
        # Elimination: the lane stops; its unspent advance is assessed for recovery and its
        # unreleased obligation returns to the year's available budget, in this same entry.
        postings, closing = eliminate_lane_postings(session, state, n, list(misused))
        trace["elimination"] = closing["lanes"][f"L{n}"]
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="stage",
            postings=tuple(postings),
            project_code=code,
            voucher=_voucher(voucher, f"STAGE-{code}-{stage}-{'L' + str(n) if n else 'P'}-{date.isoformat()}"),
            memo=STAGE_RESULT_ZH.get((stage, passed), f"{stage} {'通过' if passed else '未通过'}") + (f" L{n}" if n else ""),
            actor=actor,
            rules_version=state.rules.version,
            trace=trace,
            fact=not postings,
        ),
        [AccountSpec(chart.budget_available(state.project.budget_year), "memo", chart.year_accounts_open_on(state.project.budget_year))] if postings else [],
        {"project_code": code, "lane_no": n, "stage": stage, "passed": passed, "reference": reference}
        | ({"payload": recorded} if recorded else {}),
    )
