"""Stage events: contract signed, mid-term, 赛马 stage assessment, acceptance, audit report."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from ledger.core.errors import Refusal
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    PostingDraft,
)
from ledger.programme import chart
from ledger.programme.closing import eliminate_lane_postings
from ledger.programme.common import _post_event, _voucher, idempotent, lock
from ledger.programme.fold import STAGES
from ledger.programme.state import _require_active, load_project

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
) -> Posted:
    """Record a stage result: contract signed, mid-term check, 赛马 stage assessment (per lane;
    a failed lane is eliminated), acceptance, audit report received. A pass moves no money; an
    elimination assesses the lane's clawback and deobligation in the same entry."""
    lock(session)
    if stage not in STAGES:
        raise Refusal("stage_must_be_known", f"stage {stage!r} must be one of {', '.join(STAGES)}.")
    state = load_project(session, project)
    code = state.project.code
    n = None
    if stage == "stage_assessment":
        if state.project.mode != "saima":
            raise Refusal("stage_assessment_is_for_saima", f"project {code} is 揭榜挂帅; record its mid-term check with --stage midterm.")
        n = state.lane_of(lane)
    elif lane is not None:
        n = state.lane_of(lane)
    _require_active(state, date, f"{stage} record", n)
    postings: list[PostingDraft] = []
    trace: dict = {"stage": stage, "passed": passed, "lane": f"L{n}" if n else None, "reference": reference}
    if stage == "stage_assessment" and not passed:
        # Elimination: the lane stops; its unspent advance is assessed for recovery and its
        # unreleased obligation returns to the year's available budget, in this same entry.
        postings, closing = eliminate_lane_postings(session, state, n)
        trace["elimination"] = closing["lanes"][f"L{n}"]
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="stage",
            postings=tuple(postings),
            project_code=code,
            voucher=_voucher(voucher, f"STAGE-{code}-{stage}-{'L' + str(n) if n else 'P'}-{date.isoformat()}"),
            memo=f"{stage} {'passed' if passed else 'failed'}" + (f" L{n}" if n else ""),
            actor=actor,
            rules_version=state.rules.version,
            trace=trace,
            fact=not postings,
        ),
        [AccountSpec(chart.budget_available(state.project.budget_year), "memo", chart.year_accounts_open_on(state.project.budget_year))] if postings else [],
        {"project_code": code, "lane_no": n, "stage": stage, "passed": passed, "reference": reference},
    )
