"""Project approval (立项): every eligibility rule, the obligation, lanes and tranche schedule."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from funding_rules import checks
from funding_rules.loader import (
    Rules,
    RulesChangedError,
    get_rules,
    rules_in_force,
    superseded_rules,
)
from funding_rules.uscc import normalize_uscc
from ledger.core.errors import Refusal
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    PostingDraft,
)
from ledger.core.models import JournalEntry
from ledger.core.money import format_fen
from ledger.programme import cache as state_cache
from ledger.programme import chart
from ledger.programme.budget import available_budget
from ledger.programme.common import (
    CATEGORIES,
    PAYMENT_FORMS,
    _post_event,
    _refuse,
    _voucher,
    lock,
)
from ledger.programme.models import Lane, Project
from ledger.programme.parties import _load_party, _party_checks_facts
from ledger.programme.recorded import approval_payload

# --- project approval -------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalInput:
    """A project as the bureau approves it (立项).

    Attributes:
      rules_version: None picks the city's version in force on ``approval_date``.
      approved_grant_fen: the approved grant (staged-grant rules, e.g. Jiangmen).
      bid_contract_fen: contracted bid per lane (bid-subsidy rules, e.g. Urumqi).
      budget_year: the appropriation year the obligation draws on (default: approval year).
      budget: the approved budget by fund source and category (批复预算), as
        (source, category, fen) with source ``city_fiscal`` or ``self_funded``; optional.
        Under staged-grant rules the city's lines add up to the approved grant; under
        bid-subsidy rules the city's money is a post-subsidy and only self-funded lines are
        given. Recorded in the approval's hashed facts (the event payload) when given.
    """

    code: str
    name: str
    city: str
    category: str
    mode: str
    demand_uscc: str
    solver_usccs: tuple[str, ...]
    total_investment_fen: int
    approval_date: dt.date
    start_date: dt.date
    end_date: dt.date
    approved_grant_fen: int | None = None
    bid_contract_fen: tuple[int, ...] = ()
    rules_version: str | None = None
    budget_year: int | None = None
    voucher: str | None = None
    registration_override: str | None = None
    budget: tuple[tuple[str, str, int], ...] = ()
    # Issue 14 points 7 and 9: an exception to principle (原则上) limits, "reference: reason";
    # and the facts auditors read, recorded in the approval's hashed payload.
    exception: str | None = None
    pi: str | None = None
    indicators: tuple[str, ...] = ()
    owner_letter: str | None = None
    owner_letter_date: dt.date | None = None
    project_manager: str | None = None


BUDGET_SOURCES = {"city_fiscal": "city_fiscal", "市财政": "city_fiscal", "self_funded": "self_funded", "单位自筹": "self_funded",
                  "自筹": "self_funded"}
BUDGET_LINE_EXAMPLE = "市财政:设备费:1,200,000.00 or 单位自筹:劳务费:80万"


def parse_budget_line(text: str) -> tuple[str, str, int]:
    """One approved budget line as an officer types it, SOURCE:CATEGORY:AMOUNT, e.g.
    ``市财政:设备费:1,200,000.00``; the source and category by key or Chinese name."""
    from ledger.core.money import parse_fen

    parts = [p.strip() for p in str(text).replace("：", ":").split(":")]
    if len(parts) != 3 or parts[0] not in BUDGET_SOURCES:
        raise Refusal("approved_budget_line_must_be_well_formed",
                      f"budget line {text!r} must read SOURCE:CATEGORY:AMOUNT with SOURCE 市财政 (city_fiscal) or 单位自筹 "
                      f"(self_funded), e.g. {BUDGET_LINE_EXAMPLE}.")
    category = checks.category_key(parts[1])
    if category is None:
        names = ", ".join(f"{k} ({v})" for k, v in checks.BUDGET_CATEGORY_NAMES.items())
        raise Refusal("budget_category_must_be_known", f"budget line {text!r}: category {parts[1]!r} must be one of {names}.")
    return BUDGET_SOURCES[parts[0]], category, parse_fen(parts[2], field=f"budget line {text!r}")


def _checked_budget(spec: ApprovalInput, rules: Rules, obligation_fen: int) -> list[list]:
    """The approved budget as sorted [source, category, fen] rows, or refuse it in one line."""
    rows: dict[tuple[str, str], int] = {}
    for source, category, fen in spec.budget:
        if source not in ("city_fiscal", "self_funded") or category not in CATEGORIES or fen <= 0 or (source, category) in rows:
            raise Refusal("approved_budget_line_must_be_well_formed",
                          f"budget line {source}:{category}:{format_fen(fen)} of {spec.code}: each line names 市财政 or 单位自筹, "
                          "one of the four categories, a positive amount, and each source and category once.")
        rows[(source, category)] = fen
    city = sum(fen for (source, _), fen in rows.items() if source == "city_fiscal")
    if city and rules.funding.model != "staged_grant":
        raise Refusal("approved_budget_must_add_up",
                      f"{spec.code} is under bid-subsidy rules ({rules.version}): the city's money is a post-subsidy on the bid paid, "
                      "not a budget by category; give only 单位自筹 budget lines.")
    if city and city != obligation_fen:
        raise Refusal("approved_budget_must_add_up",
                      f"the city's budget lines of {spec.code} add up to {format_fen(city)}, not the approved grant "
                      f"{format_fen(obligation_fen)}; correct the lines so that they add up to the grant.")
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return [[s, c, f] for (s, c), f in sorted(rows.items(), key=lambda kv: (kv[0][0], order[kv[0][1]]))]


def approve_project(session: Session, spec: ApprovalInput, *, actor: str) -> Posted:
    lock(session)
    code = chart.check_project_code(spec.code)
    rules = get_rules(spec.rules_version) if spec.rules_version else rules_in_force(spec.city, spec.approval_date)
    request = checks.ApprovalRequestFacts(code, spec.city, len(spec.solver_usccs), len(spec.bid_contract_fen), spec.approved_grant_fen)
    checks.enforce(checks.APPROVAL_REQUEST_CHECKS, request, rules)
    _refuse_changed_pin(session, rules)
    existing = session.execute(select(Project).where(Project.code == code)).scalar_one_or_none()
    voucher = _voucher(spec.voucher, f"APPROVE-{code}")
    if existing is not None:
        prior = session.execute(
            select(JournalEntry.id, JournalEntry.voucher).where(JournalEntry.id == existing.entry_id)
        ).one()
        if prior.voucher == voucher and _same_approval(session, existing, spec, rules):
            return Posted(prior.id, "", created=False)
        raise Refusal(
            "project_must_be_approved_once",
            f"project {code} was already approved in entry {prior.id}; approvals are not edited"
            + (" and the solver is locked after approval under these rules" if rules.approval.solver_locked_after_approval else "")
            + "; record an extension or termination, or approve a new project code.",
        )
    demand = _load_party(session, spec.demand_uscc, "demand side")
    solvers = [_load_party(session, s, f"solver of lane {i}") for i, s in enumerate(spec.solver_usccs, start=1)]
    budget_year = spec.budget_year or spec.approval_date.year
    demand_facts = _party_checks_facts(session, demand, spec.approval_date.year - 1, rules.approval.demand_credit_lookback_years)
    if rules.approval.project_limit is not None:
        demand_facts = dataclasses.replace(demand_facts, projects_in_progress=_funded_in_progress(session, demand.uscc, rules.city, spec.approval_date))
    facts = checks.ApprovalFacts(
        code=code,
        city=spec.city,
        mode=spec.mode,
        category=spec.category,
        approval_date=spec.approval_date,
        start_date=spec.start_date,
        end_date=spec.end_date,
        total_investment_fen=spec.total_investment_fen,
        # “上一年度” and “近三年”: the facts in force for the year before the approval date.
        demand=demand_facts,
        solvers=tuple(_party_checks_facts(session, s, spec.approval_date.year - 1, rules.approval.solver_credit_lookback_years)
                      for s in solvers),
        available_appropriation_fen=available_budget(session, budget_year),
        approved_grant_fen=spec.approved_grant_fen if rules.funding.model == "staged_grant" else None,
        bid_contract_fen=tuple(spec.bid_contract_fen),
        registration_override=(spec.registration_override or "").strip(),
    )
    exception = checks.parse_exception(spec.exception)
    violations = checks.apply_principle_exception(checks.run_checks(checks.APPROVAL_CHECKS, facts, rules), rules, exception,
                                                  f"the approval of {code}")
    _refuse(violations)
    recorded = approval_payload(pi=spec.pi, indicators=spec.indicators, project_manager=spec.project_manager,
                                owner_letter=spec.owner_letter, owner_letter_date=spec.owner_letter_date,
                                exceptions=checks.exception_records(violations, facts, rules, exception))

    lanes = list(range(1, len(solvers) + 1))
    if rules.funding.model == "staged_grant":
        obligation = checks.saima_lane_split(spec.approved_grant_fen, len(lanes)) if spec.mode == "saima" else [spec.approved_grant_fen]
    else:
        obligation = [checks.subsidy_ceiling_fen([bid], rules) for bid in spec.bid_contract_fen]
    total_obligation = sum(obligation)
    budget = _checked_budget(spec, rules, total_obligation)
    opened = spec.approval_date
    accounts = [AccountSpec(chart.budget_available(budget_year), "memo", min(chart.year_accounts_open_on(budget_year), opened))]
    postings: list[PostingDraft] = []
    for n, amount in zip(lanes, obligation):
        solver = solvers[n - 1].uscc
        for name, book in _lane_accounts(code, n, rules):
            accounts.append(AccountSpec(name, book, opened, code, solver))
        if amount:
            postings.append(PostingDraft(chart.grant_unreleased(code, n), amount))
    for name in (chart.self_funding_pledged(code), chart.self_funding_outstanding(code)):
        accounts.append(AccountSpec(name, "memo", opened, code))
    for category in CATEGORIES:
        accounts.append(AccountSpec(chart.self_funding_contributed(code, category), "memo", opened, code))
    if total_obligation:
        postings.append(PostingDraft(chart.budget_available(budget_year), -total_obligation))
    for n, bid in zip(lanes, spec.bid_contract_fen):
        if bid:
            postings.append(PostingDraft(chart.bid_unpaid(code, n), bid))
            postings.append(PostingDraft(chart.bid_contracted(code, n), -bid))
    trace = {
        "rules_version": rules.version,
        "funding_model": rules.funding.model,
        "budget_year": budget_year,
        "available_before": format_fen(facts.available_appropriation_fen),
        "obligation_per_lane": [format_fen(a) for a in obligation],
        "obligation_total": format_fen(total_obligation),
        "obligation_basis": (
            "approved grant, split equally among 赛马 lanes" if rules.funding.model == "staged_grant" and spec.mode == "saima"
            else "approved grant" if rules.funding.model == "staged_grant"
            else f"subsidy ceiling: round_half_up({rules.funding.subsidy_cap_rate_of_contract} × contracted bid) per lane"
        ),
        "checks": [c.__name__ for c in checks.APPROVAL_CHECKS],
        "warnings": [v.message for v in violations if v.severity == "warning"],
    }
    trace["party_facts_used"] = {
        p.uscc: ({"year": p.facts_year, "entry": p.facts_entry} if p.facts_year is not None else "registration")
        for p in (facts.demand, *facts.solvers)
    }
    if facts.registration_override:
        trace["registration_override"] = {"division": demand.uscc[2:8], "reason": facts.registration_override,
                                          "clause": rules.clause("approval.demand_registration_prefixes")}
    project_facts = {
        "code": code,
        "name": spec.name,
        "city": rules.city,
        "rules_version": rules.version,
        "rules_fingerprint": rules.fingerprint,
        "category": spec.category,
        "mode": spec.mode,
        "demand_uscc": demand.uscc,
        "total_investment_fen": spec.total_investment_fen,
        "approved_grant_fen": total_obligation,
        "budget_year": budget_year,
        "approval_date": spec.approval_date.isoformat(),
        "start_date": spec.start_date.isoformat(),
        "end_date": spec.end_date.isoformat(),
    }
    return _post_event(
        session,
        EntryDraft(
            value_date=spec.approval_date,
            kind="approval",
            postings=tuple(postings),
            project_code=code,
            voucher=voucher,
            memo=f"立项 {spec.name}",
            actor=actor,
            rules_version=rules.version,
            trace=trace,
            fact=not postings,
        ),
        accounts,
        {"payload": {"budget_year": budget_year, **({"budget": budget} if budget else {})}
         | ({"registration_override": facts.registration_override} if facts.registration_override else {}) | recorded},
        {
            "project": project_facts,
            "lanes": [[n, solvers[n - 1].uscc] for n in lanes],
            "tranches": _tranche_rows(lanes, obligation, rules, spec.mode),
        },
    )


def _funded_in_progress(session: Session, uscc: str, city: str, on: dt.date) -> int:
    """限项: the unit's funded projects in this city still in progress on ``on`` (approved with
    fiscal money, neither terminated, revoked nor closed), read from the ledger's one fold."""
    from ledger.programme.state import project_folds

    projects = session.scalars(
        select(Project).where(Project.demand_uscc == uscc, Project.city == city, Project.approved_grant_fen > 0,
                              Project.approval_date <= on)
    ).all()
    folded = project_folds(session, list(projects), on)
    return sum(1 for f in folded.values() if f.terminated_on is None and f.closed_on is None)


def _refuse_changed_pin(session: Session, rules: Rules) -> None:
    """Refuse a rules file whose content differs from what an earlier project pinned (during
    an import, looked up once per rules version and fingerprint, until a project contradicts it)."""
    cache = state_cache.active(session)
    if cache is not None and (rules.version, rules.fingerprint) in cache.pins:
        return
    # A project that pinned a superseded packaged copy of this version keeps it; the current
    # file serves new projects (funding_rules.loader.superseded_rules).
    other = session.execute(
        select(Project.rules_fingerprint).distinct()
        .where(Project.rules_version == rules.version, Project.rules_fingerprint.is_not(None),
               Project.rules_fingerprint != rules.fingerprint)
    ).scalars().all()
    changed = [fp for fp in other if superseded_rules(rules.version, fp) is None]
    pinned = session.execute(
        select(Project.code, Project.approval_date, Project.rules_fingerprint)
        .where(Project.rules_version == rules.version, Project.rules_fingerprint.in_(changed))
        .order_by(Project.approval_date, Project.code)
        .limit(1)
    ).first() if changed else None
    if pinned is not None:
        raise RulesChangedError(rules.path, rules.version, pinned.rules_fingerprint, rules.fingerprint).for_project(
            pinned.code, pinned.approval_date
        )
    if cache is not None:
        cache.pins.add((rules.version, rules.fingerprint))


def _same_approval(session: Session, project: Project, spec: ApprovalInput, rules: Rules) -> bool:
    solvers = session.scalars(select(Lane.solver_uscc).where(Lane.project_code == project.code).order_by(Lane.lane_no)).all()

    return (
        project.rules_version == rules.version
        and project.mode == spec.mode
        and project.total_investment_fen == spec.total_investment_fen
        and list(solvers) == [normalize_uscc(s) for s in spec.solver_usccs]
        and project.approval_date == spec.approval_date
        and project.end_date == spec.end_date
    )


def _lane_accounts(code: str, n: int, rules: Rules) -> list[tuple[str, str]]:
    names = [
        (chart.grant_unreleased(code, n), "memo"),
        (chart.grant_released(code, n), "memo"),
        (chart.bid_unpaid(code, n), "memo"),
        (chart.bid_contracted(code, n), "memo"),
        *[(chart.bid_paid(code, n, form), "memo") for form in PAYMENT_FORMS],
        (chart.advances(code, n), "fiscal"),
        (chart.clawback_receivable(code, n), "fiscal"),
        *[(chart.grant_spent(code, n, c), "fiscal") for c in CATEGORIES],
    ]
    if rules.funding.model == "bid_subsidy":
        names += [(chart.subsidy_expense(code, n), "fiscal"), (chart.subsidy_payable(code, n), "fiscal")]
    return names


def _tranche_rows(lanes: list[int], obligation: list[int], rules: Rules, mode: str) -> list[dict]:
    rows = []
    for n, amount in zip(lanes, obligation):
        if rules.funding.model == "staged_grant":
            amounts = checks.tranche_amounts(amount, rules)
        else:
            amounts = [amount] * len(rules.tranches)  # each subsidy tranche is capped by the lane's ceiling
        for seq, (tranche, value) in enumerate(zip(rules.tranches, amounts), start=1):
            rows.append(
                {
                    "lane_no": n,
                    "seq": seq,
                    "name": tranche.name,
                    "basis": tranche.basis,
                    "amount_fen": value,
                    "conditions": list(tranche.conditions_for(mode)),
                    "source": tranche.source,
                }
            )
    return rows
