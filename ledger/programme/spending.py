"""Fiscal spending reports by budget category."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from funding_rules import checks
from ledger.core.errors import Refusal
from ledger.core.journal import (
    EntryDraft,
    Posted,
    PostingDraft,
)
from ledger.core.money import format_fen
from ledger.programme import chart
from ledger.programme.common import (
    _category,
    _positive,
    _post_event,
    _voucher,
    _yuan,
    idempotent,
    lock,
)
from ledger.programme.state import _lane_sums, _require_active, _spent_by_category, load_project

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
    _require_active(state, date, "spending", n)
    _positive(amount_fen, "spending report")
    category = _category(category) if category not in rules.spending.legacy_category_map else rules.spending.legacy_category_map[category]
    if date < state.project.start_date or date > state.end_date:
        raise Refusal(
            "spending_must_fall_in_project_period",
            f"spending on {date} is outside {code}'s period {state.project.start_date}..{state.end_date}"
            " (including approved extensions); date it inside the period or record an extension first.",
        )
    sums = _lane_sums(session, state, n)
    outstanding = sums.get("advances", 0)
    if amount_fen > outstanding:
        raise Refusal(
            "spending_must_not_exceed_advances",
            f"spending of {_yuan(amount_fen)} by {code} L{n} exceeds its advances outstanding {_yuan(outstanding)}; "
            "only released fiscal money can be reported spent — record the release first or correct the amount.",
        )
    threshold = rules.spending.equipment_justify_threshold_fen
    if category == "equipment" and amount_fen >= threshold and not (justification or "").strip():
        raise Refusal(
            "equipment_at_threshold_must_be_justified",
            f"equipment of {_yuan(amount_fen)} is at or above {_yuan(threshold)} ({rules.clause('spending.equipment_justify_threshold')}); "
            "give its specifications and need with --justification.",
        )
    trace: dict = {"lane": f"L{n}", "category": category, "advances_before": format_fen(outstanding)}
    if category == "indirect":
        spent_by_category = _spent_by_category(sums)
        direct = sum(v for c, v in spent_by_category.items() if c != "indirect")
        equipment = spent_by_category.get("equipment", 0)
        cap = checks.indirect_cap_fen(direct, equipment, rules)
        indirect_after = spent_by_category.get("indirect", 0) + amount_fen
        trace |= {"direct_spent": format_fen(direct), "equipment_spent": format_fen(equipment),
                  "indirect_cap": format_fen(cap), "indirect_after": format_fen(indirect_after),
                  "formula": "indirect_cap_fen(direct − equipment) by tiers"}
        if indirect_after > cap:
            raise Refusal(
                "indirect_costs_must_not_exceed_cap",
                f"indirect costs would reach {_yuan(indirect_after)}, above the cap {_yuan(cap)} computed on direct "
                f"{_yuan(direct)} less equipment {_yuan(equipment)} ({rules.clause('spending.indirect_tiers')}); reduce the amount.",
            )
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="spend",
            postings=(
                PostingDraft(chart.grant_spent(code, n, category), amount_fen, category, "city_fiscal"),
                PostingDraft(chart.advances(code, n), -amount_fen, category, "city_fiscal"),
            ),
            project_code=code,
            voucher=_voucher(voucher, f"SPEND-{code}-L{n}-{date.isoformat()}-{category}-{amount_fen}"),
            memo=memo or f"{category} spending L{n}" + (f" to {counterparty}" if counterparty else ""),
            actor=actor,
            rules_version=rules.version,
            trace=trace | {"counterparty": counterparty, "justification": justification},
        ),
        [],
        {"project_code": code, "lane_no": n, "stage": category,
         "payload": {"counterparty": counterparty, "justification": justification, "category": category}},
    )
