"""Policy checks and computations: pure functions over plain facts and one city's Rules.

A check is ``(facts, rules) -> list[Violation]`` and never raises for a user-data problem; the
registries below list which checks run for which event, so a service runs one registry and
refuses if any error-severity violation comes back. Every message is one sentence: what is
wrong, the numbers, the clause from the rules file, and the fix. The computations at the end
(subsidy, tranche split, 赛马 split, indirect cap) are the only places policy arithmetic lives.

Facts carry USCCs already normalised by ``funding_rules.uscc.normalize_uscc`` (the party
registration does that once), so comparisons here are plain string equality.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, ClassVar

from funding_rules.loader import PAYMENT_FORMS, Rules, Tranche
from ledger.core.errors import Refusal
from ledger.core.money import apply_rate, format_fen, format_fen_grouped, split_equal, split_fen

MODES = ("jbgs", "saima")  # 揭榜挂帅, 赛马
CATEGORIES = ("tech_breakthrough", "commercialization")  # 技术攻关类, 成果转化类
PARTY_KINDS = ("enterprise", "university", "institute", "other")
LANE_STATUSES = ("active", "eliminated", "terminated")


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule a fact breaks, in the one shape every check returns.

    Attributes:
      code: a predicate naming what must hold, e.g. ``total_investment_must_reach_minimum``.
      message: one sentence with the numbers, the clause and the fix.
      clause: the source of the rule (a clause, or a "DEFAULT: ..." reason).
      severity: "error" blocks the operation; "warning" is reported and never blocks;
        "exception" is a principle limit exceeded under a recorded exception (never blocks).
      key: the rules-file "section.key" the violation cites, or "" (fixed clauses); it is how
        a principle limit (原则上) is told from a hard one.
    """

    code: str
    message: str
    clause: str
    severity: str = "error"
    key: str = ""


@dataclass(frozen=True, slots=True)
class PartyFacts:
    """What the checks need to know about one party (demand side or solver).

    Attributes:
      uscc: normalised Unified Social Credit Code.
      kind: "enterprise", "university", "institute" or "other".
      name: display name for messages (optional).
      revenue_fen: prior-year main business revenue, or None if not declared.
      rnd_intensity: prior-year R&D / revenue (tax 加计扣除 basis), or None.
      innovation_star: whether it is a high-tech firm named 江门“创新标兵”.
      bad_credit_within_lookback: a bad credit record or major violation in the look-back.
      related_usccs: USCCs of parties it is related to (关联关系), as declared or found.
      projects_in_progress: its funded projects still in progress, for 限项.
      above_scale: a 规模以上 enterprise (for the R&D-intensity route).
      facts_year: the fiscal year the figures are for, or None for figures given at
        registration.
      facts_entry: the ``party update`` entry those figures come from, or None.
    """

    uscc: str
    kind: str = "enterprise"
    name: str = ""
    revenue_fen: int | None = None
    rnd_intensity: Decimal | None = None
    innovation_star: bool = False
    bad_credit_within_lookback: bool = False
    related_usccs: frozenset[str] = frozenset()
    projects_in_progress: int = 0
    above_scale: bool = False
    facts_year: int | None = None
    facts_entry: int | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.uscc})" if self.name else self.uscc


@dataclass(frozen=True, slots=True)
class ApprovalFacts:
    """A project as proposed for 立项.

    Attributes:
      code: project code, e.g. "JM2025-003".
      city: city code the project belongs to.
      mode: "jbgs" (揭榜挂帅) or "saima" (赛马).
      category: "tech_breakthrough" (技术攻关) or "commercialization" (成果转化).
      approval_date, start_date, end_date: 立项 date and the period (end date inclusive).
      total_investment_fen: total R&D investment of the project.
      demand: the demand side.
      solvers: the solver of each lane, in lane order.
      available_appropriation_fen: appropriation not yet obligated for the approval year.
      approved_grant_fen: the approved grant (staged_grant rules), else None.
      bid_contract_fen: contracted bid amount per lane, in lane order (bid_subsidy rules).
      registration_override: the recorded reason for approving a demand side registered
        outside the city's divisions ("" when none is given).
    """

    code: str
    city: str
    mode: str
    category: str
    approval_date: date
    start_date: date
    end_date: date
    total_investment_fen: int
    demand: PartyFacts
    solvers: tuple[PartyFacts, ...]
    available_appropriation_fen: int
    approved_grant_fen: int | None = None
    bid_contract_fen: tuple[int, ...] = ()
    registration_override: str = ""


@dataclass(frozen=True, slots=True)
class EventFacts:
    """Where a project stands when an event after approval is recorded.

    Attributes:
      project_code: for messages.
      what: the event in words, e.g. "bid payment", for messages.
      date: the event's value date.
      approval_date: the project's 立项 date.
      terminated_on: when the project was terminated or revoked, else None.
      closed_on: when the project was closed after acceptance, else None.
      lane: the lane number the event is for, or None for the whole project.
      solver: the lane's solver USCC, for messages.
      eliminated_on: when that lane was eliminated from a 赛马 race, else None.
    """

    project_code: str
    what: str
    date: date
    approval_date: date
    terminated_on: date | None = None
    closed_on: date | None = None
    lane: int | None = None
    solver: str = ""
    eliminated_on: date | None = None


@dataclass(frozen=True, slots=True)
class BidPaymentFacts:
    """One payment of bid money (揭榜金额) from the demand side to one solver lane.

    Attributes:
      project_code, lane: which project and lane, for messages.
      contracted_fen: the lane's contracted bid amount.
      paid_so_far_fen: bid paid to the lane before this payment, in every form.
      amount_fen: this payment.
      form: "cash", "equity" (技术入股股权评估) or "in_kind".
      lane_status: "active", "eliminated" or "terminated".
      payment_date: value date of the payment.
      approval_date: the project's 立项 date.
      event: where the project stands, when the service knows it; then lane status and
        approval date are reported by the project-open checks in the words every event uses.
      acceptance_passed: whether the lane has passed acceptance.
    """

    project_code: str
    lane: str
    contracted_fen: int
    paid_so_far_fen: int
    amount_fen: int
    form: str
    lane_status: str
    payment_date: date
    approval_date: date
    event: EventFacts | None = None
    acceptance_passed: bool = False


@dataclass(frozen=True, slots=True)
class ExtensionFacts:
    """A request to extend a project's period.

    Attributes:
      project_code: for messages.
      extensions_so_far: extensions already approved.
      requested_months: length of this extension.
      request_date: when the request was made.
      current_end_date: the period's end date before this extension (inclusive).
      event: where the project stands, when the service knows it.
      reference: the bureau's approval reference as given; None when not part of the facts.
      reason: why the period is extended (S1 五(三): 因不可抗力…无法按期完成) as given; None
        when not part of the facts.
    """

    project_code: str
    extensions_so_far: int
    requested_months: int
    request_date: date
    current_end_date: date
    event: EventFacts | None = None
    reference: str | None = None
    reason: str | None = None


Check = Callable[[Any, Rules], list[Violation]]


# Clauses for checks that follow from the contract, the budget law or the ledger itself rather
# than from a city parameter; city parameters cite their rules-file source instead.
_FIXED_CLAUSES = {
    "fixed.mode": (
        "揭榜挂帅/赛马 modes (S1 三(四), S2 二(四)); 技术攻关/成果转化 categories (S2 一(二))"
    ),
    "fixed.period": "the project period in the 合同书",
    "fixed.appropriation": "预算法 第十三条: 未列入预算的不得支出",
    "fixed.contract": "the bid contract (揭榜协议) on record",
    "fixed.reversal": "ledger rule: corrections are reversing entries, never negative payments",
    "fixed.approval": (
        "DEFAULT: bid payments count from 立项; S2 二(五) lets the 揭榜协议 be signed during "
        "公示 but is silent on payments before approval"
    ),
    "fixed.lane": (
        "赛马 阶段性考核、竞争性淘汰 (S1 一): a lane that left the race takes no more bid money"
    ),
    "fixed.lifecycle": (
        "ledger rule: a project's events follow its 立项 and stop at termination, revocation or "
        "closure"
    ),
    "fixed.documents": "the bureau's written decision on file (档案)",
    "fixed.obligation": "预算法 第十三条: a payment draws on an obligation recorded before it",
    "fixed.recovery": "recovered fiscal money is owed to the finance bureau (应缴财政款) until remitted",
    "fixed.input": "the ledger's closed lists of kinds, categories, forms and stages",
    "fixed.extension_timing": (
        "DEFAULT: an extension is requested before the period ends, as in Zhongshan S9 (X8)"
    ),
}


def _violation(
    code: str, what: str, fix: str, rules: Rules, key: str, severity: str = "error"
) -> Violation:
    """A violation citing ``key``: a rules-file "section.key", or one of _FIXED_CLAUSES."""
    clause = _FIXED_CLAUSES.get(key) or rules.clause(key)
    return Violation(code, f"{what} ({clause}); {fix}.", clause, severity, "" if key in _FIXED_CLAUSES else key)


def _yuan(fen: int) -> str:
    return format_fen_grouped(fen)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def add_years(day: date, years: int) -> date:
    """The same day ``years`` later; 29 Feb becomes 28 Feb in a common year."""
    return add_months(day, 12 * years)


# ---------------------------------------------------------------------------------------------
# Approval (立项) checks.


def check_rules_apply(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    """The rules version must be the project's city's and in force on the approval date."""
    found = []
    if facts.city != rules.city:
        found.append(
            _violation(
                "rules_city_must_match_project",
                f"Project {facts.code} is in {facts.city} but rules {rules.version} are for "
                f"{rules.city}",
                "use the rules in force for the project's city",
                rules,
                "rules.effective_from",
            )
        )
    if not rules.in_force_on(facts.approval_date):
        found.append(
            _violation(
                "rules_version_must_be_in_force_on_approval_date",
                f"Project {facts.code} is approved on {facts.approval_date}, outside rules "
                f"{rules.version} ({rules.effective_from}..{rules.effective_to or ''})",
                "pin the project to the version in force on its approval date",
                rules,
                "rules.effective_from",
            )
        )
    return found


def check_mode_and_category(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    found = []
    if facts.mode not in MODES:
        found.append(
            _violation(
                "mode_must_be_jbgs_or_saima",
                f"Project {facts.code} has mode {facts.mode!r}",
                "use jbgs (揭榜挂帅) or saima (赛马)",
                rules,
                "fixed.mode",
            )
        )
    if facts.category not in CATEGORIES:
        found.append(
            _violation(
                "category_must_be_known",
                f"Project {facts.code} has category {facts.category!r}",
                "use tech_breakthrough (技术攻关) or commercialization (成果转化)",
                rules,
                "fixed.mode",
            )
        )
    return found


def check_demand_eligibility(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    """Any one qualifying test suffices; a bad credit record disqualifies regardless."""
    a, demand, found = rules.approval, facts.demand, []
    if a.demand_eligibility_required:
        by_revenue = (
            a.demand_min_revenue_fen is not None
            and (demand.revenue_fen or 0) >= a.demand_min_revenue_fen
        )
        by_intensity = (
            a.demand_min_rnd_intensity is not None
            and demand.rnd_intensity is not None
            and demand.rnd_intensity >= a.demand_min_rnd_intensity
            and (demand.above_scale or not a.rnd_route_requires_above_scale)
        )
        by_star = a.demand_innovation_star_qualifies and demand.innovation_star
        if not (by_revenue or by_intensity or by_star):
            revenue = "undeclared" if demand.revenue_fen is None else _yuan(demand.revenue_fen)
            intensity = "undeclared" if demand.rnd_intensity is None else str(demand.rnd_intensity)
            tests = []
            if a.demand_min_revenue_fen is not None:
                tests.append(f"revenue {revenue} < {_yuan(a.demand_min_revenue_fen)}")
            if a.demand_min_rnd_intensity is not None:
                short = demand.rnd_intensity is None or demand.rnd_intensity < a.demand_min_rnd_intensity
                tests.append(f"R&D intensity {intensity} < {a.demand_min_rnd_intensity}" if short
                             else f"R&D intensity {intensity} but not recorded as 规模以上")
            if a.demand_innovation_star_qualifies:
                tests.append("not a 创新标兵 high-tech firm")
            found.append(
                _violation(
                    "demand_side_must_meet_one_eligibility_test",
                    f"Demand side {demand.label} of {facts.code} passes none of the tests: "
                    f"{'; '.join(tests)}",
                    "record the figure that qualifies it, or choose another demand side",
                    rules,
                    # Only a declared revenue below the 原则上 floor can be excepted; an
                    # undeclared one is a missing fact, not a principle exceeded.
                    "approval.demand_min_revenue" if demand.revenue_fen is not None else "approval.demand_eligibility_required",
                )
            )
    if a.demand_credit_lookback_years is not None and demand.bad_credit_within_lookback:
        found.append(
            _violation(
                "demand_side_must_have_clean_credit",
                f"Demand side {demand.label} of {facts.code} has a bad credit record or major "
                f"violation within {a.demand_credit_lookback_years} years",
                "choose another demand side",
                rules,
                "approval.demand_credit_lookback_years",
            )
        )
    return found


def check_total_investment(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    """Exactly at the minimum passes; one fen below is refused."""
    minimum = rules.approval.min_total_investment_fen
    found = []
    if facts.total_investment_fen < minimum:
        found.append(
            _violation(
                "total_investment_must_reach_minimum",
                f"Project {facts.code} has total investment {_yuan(facts.total_investment_fen)}, "
                f"below the minimum {_yuan(minimum)}",
                "raise the committed investment or do not approve",
                rules,
                "approval.min_total_investment",
            )
        )
    contracted = sum(facts.bid_contract_fen)
    # The Urumqi total counts the bid money plus the demand side's own spend, so it is never
    # less than the bid contracts.
    if contracted > facts.total_investment_fen:
        found.append(
            _violation(
                "total_investment_must_include_bid_contracts",
                f"Project {facts.code} has total investment {_yuan(facts.total_investment_fen)}, "
                f"less than its bid contracts {_yuan(contracted)}",
                "enter the total including the bid contracts",
                rules,
                "approval.min_total_investment",
            )
        )
    return found


def check_solver_count(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    a, count, found = rules.approval, len(facts.solvers), []
    solvers = _plural(count, "solver")
    if facts.mode == "jbgs" and count != a.jbgs_solvers:
        found.append(
            _violation(
                "jbgs_solver_count_must_be_exact",
                f"揭榜挂帅 project {facts.code} has {solvers}, not {a.jbgs_solvers}",
                "record one solver (a consortium names one lead unit), or use mode saima",
                rules,
                "approval.jbgs_solvers",
            )
        )
    if facts.mode == "saima" and count < a.saima_min_racers:
        found.append(
            _violation(
                "saima_racer_count_must_reach_minimum",
                f"赛马 project {facts.code} has {solvers}, fewer than {a.saima_min_racers}",
                "add racers or use mode jbgs",
                rules,
                "approval.saima_min_racers",
            )
        )
    if facts.mode == "saima" and a.saima_max_racers is not None and count > a.saima_max_racers:
        found.append(
            _violation(
                "saima_racer_count_must_not_exceed_maximum",
                f"赛马 project {facts.code} has {solvers}, more than {a.saima_max_racers}",
                f"keep at most {a.saima_max_racers} racers",
                rules,
                "approval.saima_max_racers",
            )
        )
    usccs = [s.uscc for s in facts.solvers]
    if len(set(usccs)) != len(usccs):
        found.append(
            _violation(
                "solvers_must_be_distinct",
                f"Project {facts.code} lists the same solver in two lanes",
                "record each solver once",
                rules,
                "approval.saima_min_racers",
            )
        )
    return found


def check_related_party(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    """Related either way round, or the very same unit, counts as related."""
    if not rules.approval.related_party_ban:
        return []
    demand, found = facts.demand, []
    for solver in facts.solvers:
        if (
            solver.uscc == demand.uscc
            or solver.uscc in demand.related_usccs
            or demand.uscc in solver.related_usccs
        ):
            found.append(
                _violation(
                    "solver_must_not_be_related_to_demand_side",
                    f"Solver {solver.label} of {facts.code} is related to demand side "
                    f"{demand.label}",
                    "choose an unrelated solver",
                    rules,
                    "approval.related_party_ban",
                )
            )
    return found


def check_period(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    """The end date (inclusive) may be at most the day before start + max years: a period of
    2025-10-01..2028-09-30 is exactly three years (a leap day start maps to 28 Feb)."""
    found = []
    if facts.end_date <= facts.start_date:
        found.append(
            _violation(
                "period_must_end_after_start",
                f"Project {facts.code} ends on {facts.end_date}, not after its start "
                f"{facts.start_date}",
                "correct the dates",
                rules,
                "fixed.period",
            )
        )
    years = rules.approval.max_period_years
    last_day = None if years is None else add_years(facts.start_date, years) - timedelta(days=1)
    if last_day is not None and facts.end_date > last_day:
        found.append(
            _violation(
                "period_must_not_exceed_maximum_years",
                f"Project {facts.code} runs {facts.start_date}..{facts.end_date}, past the "
                f"{years}-year limit, whose last day is {last_day}",
                "shorten the period; extend later by approval if needed",
                rules,
                "approval.max_period_years",
            )
        )
    return found


def subsidy_ceiling_fen(bid_contract_fen: Sequence[int], rules: Rules) -> int:
    """Most subsidy a project can ever earn: per lane, the lower rate × its contract; 0 for grants.

    Cash paid never exceeds the contract, so the subsidy rate times the contract bounds it as
    well as the cap rate does; taking the lower of the two is the tighter bound.
    """
    f = rules.funding
    if f.subsidy_rate is None or f.subsidy_cap_rate_of_contract is None:
        return 0
    rate = min(f.subsidy_rate, f.subsidy_cap_rate_of_contract)
    return sum(apply_rate(c, rate, rounding=ROUND_HALF_UP) for c in bid_contract_fen)


def check_funding(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    """The obligation (approved grant, or the subsidy ceiling) must fit the appropriation."""
    a, found = rules.approval, []
    if rules.funding.model == "staged_grant":
        if facts.approved_grant_fen is None:
            return [
                _violation(
                    "approved_grant_must_be_given",
                    f"Project {facts.code} has no approved grant",
                    "enter the grant approved for it",
                    rules,
                    "funding.model",
                )
            ]
        obligation, what = facts.approved_grant_fen, "approved grant"
    else:
        if len(facts.bid_contract_fen) != len(facts.solvers):
            return [
                _violation(
                    "bid_contracts_must_match_solvers",
                    f"Project {facts.code} has {len(facts.bid_contract_fen)} bid contracts for "
                    f"{len(facts.solvers)} solvers",
                    "enter one contracted bid amount per solver lane",
                    rules,
                    "funding.subsidy_rate",
                )
            ]
        obligation, what = subsidy_ceiling_fen(facts.bid_contract_fen, rules), "subsidy ceiling"
    if a.max_grant_fen is not None and obligation > a.max_grant_fen:
        found.append(
            _violation(
                "grant_must_not_exceed_maximum",
                f"Project {facts.code} has {what} {_yuan(obligation)}, above the maximum "
                f"{_yuan(a.max_grant_fen)}",
                "reduce it to the maximum",
                rules,
                "approval.max_grant",
            )
        )
    if obligation > facts.available_appropriation_fen:
        found.append(
            _violation(
                "grant_must_fit_available_appropriation",
                f"Project {facts.code} needs {what} {_yuan(obligation)} but only "
                f"{_yuan(facts.available_appropriation_fen)} of the appropriation is unobligated",
                "record a larger appropriation first or reduce the amount",
                rules,
                "fixed.appropriation",
            )
        )
    if a.subsidy_warn_above_fen is not None and obligation > a.subsidy_warn_above_fen:
        found.append(
            _violation(
                "subsidy_should_not_exceed_warning_level",
                f"Project {facts.code} has {what} {_yuan(obligation)}, above the review level "
                f"{_yuan(a.subsidy_warn_above_fen)}",
                "have it reviewed before release",
                rules,
                "approval.subsidy_warn_above",
                severity="warning",
            )
        )
    return found


def check_project_limit(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    limit = rules.approval.project_limit
    if limit is None or facts.demand.projects_in_progress < limit:
        return []
    return [
        _violation(
            "demand_side_must_be_within_project_limit",
            f"Demand side {facts.demand.label} of {facts.code} already has {facts.demand.projects_in_progress} "
            f"funded projects in progress in {rules.city_name}, the limit is {limit}",
            "申报单位已超过限项的，可作为需求方申报发榜征集解决方案，但不再给予立项支持: it may publish the "
            "need, but no funded 立项 is recorded until a project ends",
            rules,
            "approval.project_limit",
        )
    ]


def check_demand_registration(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    """The demand side's USCC positions 3–8 (registration division) start with one of the
    city's prefixes, unless an override reason is recorded on the approval."""
    prefixes = rules.approval.demand_registration_prefixes
    division = facts.demand.uscc[2:8]
    if not prefixes or any(division.startswith(p) for p in prefixes) or facts.registration_override.strip():
        return []
    return [
        _violation(
            "demand_side_must_be_registered_in_the_city",
            f"Demand side {facts.demand.label} of {facts.code} is registered in division {division}, "
            f"not under {' / '.join(prefixes)} ({rules.city_name})",
            "choose a demand side registered in the city, or record why with --registration-override",
            rules,
            "approval.demand_registration_prefixes",
        )
    ]


def check_demand_kind(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    kinds = rules.approval.demand_kinds
    if facts.demand.kind in kinds:
        return []
    return [
        _violation(
            "demand_side_kind_must_be_allowed",
            f"Demand side {facts.demand.label} of {facts.code} is a {facts.demand.kind}, not "
            f"{' or '.join(kinds)}",
            "choose a demand side of that kind",
            rules,
            "approval.demand_kinds",
        )
    ]


def check_demand_not_solver(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    if not rules.approval.demand_solver_distinct:
        return []
    return [
        _violation(
            "demand_side_must_not_be_its_own_solver",
            f"Demand side {facts.demand.label} of {facts.code} is also the solver of lane L{n}",
            "choose another solver",
            rules,
            "approval.demand_solver_distinct",
        )
        for n, solver in enumerate(facts.solvers, start=1)
        if solver.uscc == facts.demand.uscc
    ]


def check_solver_credit(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    years = rules.approval.solver_credit_lookback_years
    if years is None:
        return []
    return [
        _violation(
            "solver_must_have_clean_credit",
            f"Solver {solver.label} of lane L{n} of {facts.code} has a bad credit record within {years} years",
            "choose another solver",
            rules,
            "approval.solver_credit_lookback_years",
        )
        for n, solver in enumerate(facts.solvers, start=1)
        if solver.bad_credit_within_lookback
    ]


def check_grant_within_total_investment(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    """The obligation (grant, or subsidy ceiling) is at most the rules' share of the total
    investment: exactly at it passes, one fen over is refused."""
    share = rules.approval.grant_max_share_of_total_investment
    if share is None:
        return []
    if rules.funding.model == "staged_grant":
        obligation, what = facts.approved_grant_fen, "approved grant"
    else:
        obligation, what = subsidy_ceiling_fen(facts.bid_contract_fen, rules), "subsidy ceiling"
    limit = apply_rate(facts.total_investment_fen, share, rounding=ROUND_HALF_UP)
    if obligation is None or obligation <= limit:
        return []
    return [
        _violation(
            "grant_must_not_exceed_share_of_total_investment",
            f"Project {facts.code} has {what} {_yuan(obligation)}, above {share} × its total "
            f"investment {_yuan(facts.total_investment_fen)} = {_yuan(limit)}",
            "correct the total investment or the amount",
            rules,
            "approval.grant_max_share_of_total_investment",
        )
    ]


def check_period_start_window(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    """The period starts no earlier than the approval date minus the rules' window (days)."""
    days = rules.approval.start_before_approval_max_days
    if days is None:
        return []
    earliest = facts.approval_date - timedelta(days=days)
    if facts.start_date >= earliest:
        return []
    return [
        _violation(
            "period_must_not_start_long_before_approval",
            f"Project {facts.code} starts on {facts.start_date}, more than {days} days before its "
            f"approval on {facts.approval_date} (earliest {earliest})",
            "correct the period; a past period is not approved again",
            rules,
            "approval.start_before_approval_max_days",
        )
    ]


APPROVAL_CHECKS: list[Check] = [
    check_rules_apply,
    check_mode_and_category,
    check_demand_registration,
    check_demand_kind,
    check_demand_eligibility,
    check_total_investment,
    check_grant_within_total_investment,
    check_solver_count,
    check_related_party,
    check_demand_not_solver,
    check_solver_credit,
    check_period,
    check_period_start_window,
    check_funding,
    check_project_limit,
]


# ---------------------------------------------------------------------------------------------
# Bid payment and extension checks.


def check_bid_payment(facts: BidPaymentFacts, rules: Rules) -> list[Violation]:
    """Amount, contract remainder, lane status and date of one bid payment."""
    where, found = f"Bid payment to lane {facts.lane} of {facts.project_code}", []
    if facts.amount_fen <= 0:
        found.append(
            _violation(
                "bid_payment_must_be_positive",
                f"{where} is {_yuan(facts.amount_fen)}",
                "record a positive amount; corrections are reversals",
                rules,
                "fixed.reversal",
            )
        )
    remaining = facts.contracted_fen - facts.paid_so_far_fen
    if facts.amount_fen > remaining:
        found.append(
            _violation(
                "bid_payment_must_not_exceed_contract",
                f"{where} of {_yuan(facts.amount_fen)} exceeds the contract remainder "
                f"{_yuan(remaining)} ({_yuan(facts.paid_so_far_fen)} of "
                f"{_yuan(facts.contracted_fen)} already paid)",
                "record the contract change first, or reduce the payment",
                rules,
                "fixed.contract",
            )
        )
    if facts.event is not None:
        # The project-open checks report an eliminated lane and an early date for every event.
        return found
    if facts.lane_status != "active":
        found.append(
            _violation(
                "lane_must_be_active",
                f"{where} is dated {facts.payment_date} but the lane is {facts.lane_status}",
                "payments to an eliminated or terminated lane are not recorded",
                rules,
                "fixed.lane",
            )
        )
    if facts.payment_date < facts.approval_date:
        found.append(
            _violation(
                "bid_payment_must_not_precede_approval",
                f"{where} is dated {facts.payment_date}, before the approval on "
                f"{facts.approval_date}",
                "check the value date, or ask the bureau whether a payment before 立项 counts",
                rules,
                "fixed.approval",
            )
        )
    return found


def check_payment_form(facts: BidPaymentFacts, rules: Rules) -> list[Violation]:
    if facts.form in PAYMENT_FORMS:
        return []
    return [
        Violation(
            "payment_form_must_be_known",
            f"payment form {facts.form!r} must be one of {', '.join(PAYMENT_FORMS)}.",
            rules.clause("funding.eligible_payment_forms"),
        )
    ]


def check_bid_payment_precedes_acceptance(facts: BidPaymentFacts, rules: Rules) -> list[Violation]:
    """The final subsidy tranche trues up on the audited total at acceptance; money paid after
    it would earn a subsidy no tranche could pay."""
    if not facts.acceptance_passed or rules.funding.model != "bid_subsidy":
        return []
    clause = rules.clause("funding.subsidy_rate")
    return [
        Violation(
            "bid_payment_must_precede_acceptance",
            f"{facts.project_code} passed acceptance; bid payments after it earn no subsidy under "
            f"{rules.version} ({clause}); record payments dated before the acceptance.",
            clause,
        )
    ]


BID_PAYMENT_CHECKS: list[Check] = []  # filled below, once the project-open checks exist


def check_extension(facts: ExtensionFacts, rules: Rules) -> list[Violation]:
    a, where, found = rules.approval, f"Extension of {facts.project_code}", []
    if facts.requested_months <= 0:
        found.append(
            _violation(
                "extension_must_be_positive",
                f"{where} asks for {facts.requested_months} months",
                "ask for at least one month",
                rules,
                "fixed.input",
            )
        )
    if a.max_extensions is not None and facts.extensions_so_far >= a.max_extensions:
        found.append(
            _violation(
                "extension_count_must_not_exceed_maximum",
                f"{where} would be number {facts.extensions_so_far + 1}, the limit is "
                f"{a.max_extensions}",
                "terminate or accept the project instead",
                rules,
                "approval.max_extensions",
            )
        )
    if a.max_extension_years is not None and facts.requested_months > 12 * a.max_extension_years:
        found.append(
            _violation(
                "extension_must_not_exceed_maximum_length",
                f"{where} asks for {facts.requested_months} months, the limit is "
                f"{12 * a.max_extension_years}",
                "ask for a shorter extension",
                rules,
                "approval.max_extension_years",
            )
        )
    if facts.request_date > facts.current_end_date:
        found.append(
            _violation(
                "extension_must_be_requested_before_period_ends",
                f"{where} was requested on {facts.request_date}, after the period ended on "
                f"{facts.current_end_date}",
                "terminate the project or proceed to acceptance",
                rules,
                "fixed.extension_timing",
            )
        )
    return found


EXTENSION_CHECKS: list[Check] = []  # filled below, once the project-open checks exist


# ---------------------------------------------------------------------------------------------
# Events after approval: the project must be open, then each family's own rules.
#
# A family's facts carry ``event`` (an EventFacts) when the service knows where the project
# stands; the project-open checks read it and find nothing when it is None. A check whose
# question has no answer once an earlier rule is broken (a release of a tranche that was
# already paid) stays silent rather than repeat the same problem in other words.


def check_event_follows_approval(facts: Any, rules: Rules) -> list[Violation]:
    e = facts.event
    if e is None or e.date >= e.approval_date:
        return []
    return [
        Violation(
            "event_must_follow_approval",
            f"{e.what} on {e.date} is dated before project {e.project_code}'s approval on "
            f"{e.approval_date}; check the date.",
            _FIXED_CLAUSES["fixed.lifecycle"],
        )
    ]


def check_project_not_terminated(facts: Any, rules: Rules) -> list[Violation]:
    e = facts.event
    if e is None or e.terminated_on is None:
        return []
    return [
        Violation(
            "project_must_not_be_terminated",
            f"project {e.project_code} was terminated on {e.terminated_on}; no {e.what} is "
            "accepted after termination.",
            _FIXED_CLAUSES["fixed.lifecycle"],
        )
    ]


def check_project_not_closed(facts: Any, rules: Rules) -> list[Violation]:
    e = facts.event
    if e is None or e.closed_on is None:
        return []
    return [
        Violation(
            "project_must_not_be_closed",
            f"project {e.project_code} was closed after acceptance on {e.closed_on}; no {e.what} "
            "is accepted after closure.",
            _FIXED_CLAUSES["fixed.lifecycle"],
        )
    ]


def check_lane_not_eliminated(facts: Any, rules: Rules) -> list[Violation]:
    e = facts.event
    if e is None or e.lane is None or e.eliminated_on is None:
        return []
    return [
        Violation(
            "lane_must_not_be_eliminated",
            f"lane L{e.lane} ({e.solver}) of {e.project_code} was eliminated on {e.eliminated_on}; "
            f"it receives no further {e.what}.",
            _FIXED_CLAUSES["fixed.lane"],
        )
    ]


PROJECT_OPEN_CHECKS: list[Check] = [
    check_event_follows_approval,
    check_project_not_terminated,
    check_project_not_closed,
    check_lane_not_eliminated,
]


def check_amount_positive(facts: Any, rules: Rules) -> list[Violation]:
    """Corrections are reversing entries, so every recorded amount is positive."""
    if facts.amount_fen > 0:
        return []
    return [
        Violation(
            "amount_must_be_positive",
            f"a {facts.amount_what} must be a positive amount, got {format_fen(facts.amount_fen)}.",
            _FIXED_CLAUSES["fixed.reversal"],
        )
    ]


# The 2021 budget categories (国办发〔2021〕32号): key -> Chinese name.
BUDGET_CATEGORY_NAMES = {"equipment": "设备费", "business": "业务费", "labour": "劳务费", "indirect": "间接费用"}


def category_key(category: str | None, legacy_lines: Mapping[str, str] | None = None) -> str | None:
    """The category key of what an officer typed: a key, its Chinese name, or (where allowed) a
    pre-2021 budget line; None when it is none of these."""
    text = (category or "").strip()
    if legacy_lines and category in legacy_lines:
        return legacy_lines[category]
    if text.lower() in BUDGET_CATEGORY_NAMES:
        return text.lower()
    by_name = {name: key for key, name in BUDGET_CATEGORY_NAMES.items()}
    return by_name.get(text)


def check_category_known(facts: Any, rules: Rules) -> list[Violation]:
    """A category given (or required) must be one of the four; spending may use a legacy line."""
    if facts.category is None:
        return []
    legacy = rules.spending.legacy_category_map if facts.legacy_lines_allowed else None
    if category_key(facts.category, legacy) is not None:
        return []
    names = ", ".join(f"{key} ({name})" for key, name in BUDGET_CATEGORY_NAMES.items())
    return [
        Violation(
            "budget_category_must_be_known",
            f"budget category {facts.category!r} must be one of {names}.",
            "国办发〔2021〕32号 budget categories",
        )
    ]


# --- appropriations and parties


@dataclass(frozen=True, slots=True)
class AppropriationFacts:
    """Budget authority recorded for a year.

    Attributes:
      year: the budget year.
      amount_fen: the amount appropriated.
    """

    year: int
    amount_fen: int


def check_budget_year(facts: AppropriationFacts, rules: Rules | None) -> list[Violation]:
    if 2000 <= facts.year <= 2100:
        return []
    return [
        Violation(
            "budget_year_must_be_plausible",
            f"budget year {facts.year} is outside 2000..2100.",
            "DEFAULT: a limit on everything; budget years are four-digit years of this century",
        )
    ]


def check_appropriation_positive(facts: AppropriationFacts, rules: Rules | None) -> list[Violation]:
    if facts.amount_fen > 0:
        return []
    return [
        Violation(
            "amount_must_be_positive",
            "an appropriation must be a positive amount.",
            _FIXED_CLAUSES["fixed.reversal"],
        )
    ]


# Appropriations belong to no city's rules; their checks take ``rules=None``.
APPROPRIATION_CHECKS: list[Check] = [check_budget_year, check_appropriation_positive]


@dataclass(frozen=True, slots=True)
class PartyRegistrationFacts:
    """A party as an officer registers it, before its USCC is validated.

    Attributes:
      kind: "enterprise", "university", "institute" or "other".
      name: the name as given.
    """

    kind: str
    name: str


def check_party_kind(facts: PartyRegistrationFacts, rules: Rules | None) -> list[Violation]:
    if facts.kind in PARTY_KINDS:
        return []
    return [
        Violation(
            "party_kind_must_be_known",
            f"party kind {facts.kind!r} must be one of {', '.join(PARTY_KINDS)}.",
            _FIXED_CLAUSES["fixed.input"],
        )
    ]


def check_party_name(facts: PartyRegistrationFacts, rules: Rules | None) -> list[Violation]:
    if (facts.name or "").strip():
        return []
    return [
        Violation("party_must_have_name", "a party needs a name; give it with --name.", _FIXED_CLAUSES["fixed.documents"])
    ]


# Parties are registered before any city's rules apply to them; the checks take ``rules=None``.
PARTY_CHECKS: list[Check] = [check_party_kind, check_party_name]


# --- approval: the request's shape, checked before the parties are looked up


@dataclass(frozen=True, slots=True)
class ApprovalRequestFacts:
    """What an approval request says before its parties are looked up.

    Attributes:
      code: project code.
      city: the project's city.
      solvers: how many solver lanes it names.
      bid_contracts: how many contracted bid amounts it gives.
      approved_grant_fen: the grant as given (None or 0: not given).
    """

    code: str
    city: str
    solvers: int
    bid_contracts: int
    approved_grant_fen: int | None


def check_request_rules_city(facts: ApprovalRequestFacts, rules: Rules) -> list[Violation]:
    if facts.city == rules.city:
        return []
    return [
        Violation(
            "rules_city_must_match_project",
            f"project {facts.code} is in {facts.city} but rules {rules.version} are for {rules.city}; "
            "leave --rules out to use the version in force, or name one of the project's city.",
            rules.clause("rules.effective_from"),
        )
    ]


def check_request_funding_inputs(facts: ApprovalRequestFacts, rules: Rules) -> list[Violation]:
    """Bid-subsidy rules need one contract per lane; staged-grant rules need the grant."""
    if rules.funding.model == "bid_subsidy" and facts.bid_contracts != facts.solvers:
        return [
            Violation(
                "bid_contracts_must_match_lanes",
                f"project {facts.code} has {facts.solvers} solver lane(s) but {facts.bid_contracts} bid "
                f"contract amount(s); rules {rules.version} compute the subsidy from each lane's "
                "contracted bid, so give one --bid per solver.",
                rules.clause("funding.subsidy_rate"),
            )
        ]
    if rules.funding.model == "staged_grant" and not facts.approved_grant_fen:
        return [
            Violation(
                "approved_grant_must_be_given",
                f"rules {rules.version} fund an approved grant paid in tranches; give it with --grant.",
                rules.clause("funding.model"),
            )
        ]
    return []


# These run before the parties are looked up: the lane split and the obligation depend on them.
# APPROVAL_CHECKS repeats both questions in its own words for callers that build ApprovalFacts
# directly (the importer's dry run, the unit tests).
APPROVAL_REQUEST_CHECKS: list[Check] = [check_request_rules_city, check_request_funding_inputs]


def check_grant_fills_tranches(facts: ApprovalFacts, rules: Rules) -> list[Violation]:
    """Every tranche of every lane gets at least one fen of a staged grant."""
    grant = facts.approved_grant_fen
    if rules.funding.model != "staged_grant" or not grant or grant < 0 or not facts.solvers:
        return []
    if any(s is None for s in (t.share for t in rules.tranches)):
        return []
    lanes = saima_lane_split(grant, len(facts.solvers)) if facts.mode == "saima" else [grant]
    for n, amount in enumerate(lanes, start=1):
        if min(tranche_amounts(amount, rules)) <= 0:
            return [
                Violation(
                    "grant_must_fill_every_tranche",
                    f"the grant of {_yuan(amount)} for {facts.code} L{n} is too small to split into "
                    f"{len(rules.tranches)} tranches of at least 0.01; check the amount.",
                    rules.tranches[0].source if rules.tranches else "tranches",
                )
            ]
    return []


APPROVAL_CHECKS.append(check_grant_fills_tranches)


# --- bid contracts and payments


@dataclass(frozen=True, slots=True)
class BidContractFacts:
    """More contracted bid money for one lane.

    Attributes:
      event: where the project stands.
      amount_fen: the bid money added.
      contracted_before_fen: the lane's contracted bid before this entry.
      available_budget_fen: the budget year's unobligated appropriation.
      budget_year: the year the project's obligation draws on.
    """

    amount_what: ClassVar[str] = "bid contract"
    event: EventFacts
    amount_fen: int
    contracted_before_fen: int
    available_budget_fen: int
    budget_year: int


def added_subsidy_ceiling_fen(contracted_before_fen: int, amount_fen: int, rules: Rules) -> int:
    """How much a lane's subsidy ceiling (and so its obligation) rises with added bid money."""
    before = subsidy_ceiling_fen([contracted_before_fen], rules)
    return subsidy_ceiling_fen([contracted_before_fen + amount_fen], rules) - before


def check_bid_contract_obligation(facts: BidContractFacts, rules: Rules) -> list[Violation]:
    if rules.funding.model != "bid_subsidy" or facts.amount_fen <= 0:
        return []
    extra = added_subsidy_ceiling_fen(facts.contracted_before_fen, facts.amount_fen, rules)
    if extra <= facts.available_budget_fen:
        return []
    e = facts.event
    return [
        Violation(
            "obligation_must_fit_available_budget",
            f"the added bid raises {e.project_code} L{e.lane}'s subsidy ceiling by {_yuan(extra)}, but "
            f"budget year {facts.budget_year} has only {_yuan(facts.available_budget_fen)} unobligated; "
            "appropriate more first with `jiebang appropriate`.",
            _FIXED_CLAUSES["fixed.appropriation"],
        )
    ]


BID_CONTRACT_CHECKS: list[Check] = [*PROJECT_OPEN_CHECKS, check_amount_positive, check_bid_contract_obligation]

BID_PAYMENT_CHECKS.extend(
    [check_payment_form, *PROJECT_OPEN_CHECKS, check_bid_payment_precedes_acceptance, check_bid_payment]
)


# --- self-funding


@dataclass(frozen=True, slots=True)
class SelfFundingFacts:
    """A pledge (承诺函) or contribution (到位) of self-funding.

    Attributes:
      event: where the project stands; ``event.what`` is "pledge" or "contribution".
      amount_fen: the amount.
      category: the budget category as given; None when optional and not given.
    """

    legacy_lines_allowed: ClassVar[bool] = False
    event: EventFacts
    amount_fen: int
    category: str | None

    @property
    def amount_what(self) -> str:
        return self.event.what


SELF_FUNDING_CHECKS: list[Check] = [*PROJECT_OPEN_CHECKS, check_amount_positive, check_category_known]


# --- stages


@dataclass(frozen=True, slots=True)
class StageFacts:
    """A stage result as recorded.

    Attributes:
      event: where the project stands (lane: the lane assessed, if any).
      stage: the stage named.
      stages: the stages the ledger records.
      mode: the project's mode, "jbgs" or "saima".
      passed: the result.
      misused: misused amounts named with a failed 赛马 stage assessment (recovered from that
        lane alone), or with a failed acceptance the rules treat as a termination.
      audited_cash: (lane, audited cash total, active) given with the audit report: the cash
        bid money the 专项审计报告 confirms each lane was paid (bid-subsidy rules).
      model: the rules' funding model, for the audited-cash checks.
    """

    event: EventFacts
    stage: str
    stages: tuple[str, ...]
    mode: str
    passed: bool = True
    misused: tuple[MisuseFacts, ...] = ()
    audited_cash: tuple[tuple[int, int, bool], ...] = ()


def check_stage_known(facts: StageFacts, rules: Rules) -> list[Violation]:
    if facts.stage in facts.stages:
        return []
    return [
        Violation(
            "stage_must_be_known",
            f"stage {facts.stage!r} must be one of {', '.join(facts.stages)}.",
            _FIXED_CLAUSES["fixed.input"],
        )
    ]


def check_stage_assessment_mode(facts: StageFacts, rules: Rules) -> list[Violation]:
    if facts.stage != "stage_assessment" or facts.mode == "saima":
        return []
    return [
        Violation(
            "stage_assessment_is_for_saima",
            f"project {facts.event.project_code} is 揭榜挂帅; record its mid-term check with --stage midterm.",
            _FIXED_CLAUSES["fixed.lane"],
        )
    ]


def check_stage_misuse(facts: StageFacts, rules: Rules) -> list[Violation]:
    """Misuse is named with a failed 赛马 stage assessment (the lane's recovery), or with a
    failed acceptance that terminates (``failed_acceptance_terminates``), and only then."""
    if not facts.misused or (facts.stage == "stage_assessment" and not facts.passed):
        return []
    if failed_acceptance_terminates(facts, rules):
        return []
    return [
        _violation(
            "misuse_needs_a_failed_stage_assessment",
            f"misused amounts are named with a failed 赛马 stage assessment of a lane, not with "
            f"{facts.stage} {'passed' if facts.passed else 'failed'} of {facts.event.project_code}",
            "drop --misused, or name it with `jiebang terminate` (--lane for one lane)",
            rules,
            "closure.termination_recovers",
        )
    ]


def check_misuse_on_the_lane(facts: Any, rules: Rules) -> list[Violation]:
    """A lane's recovery names misuse on that lane's own spending: only its money moves."""
    e = facts.event
    if e is None or e.lane is None:
        return []
    return [
        _violation(
            "misuse_must_be_on_the_lane",
            f"misused amount {_yuan(m.amount_fen)} cites voucher {m.spend_voucher}, spent by lane L{m.lane}, "
            f"not by lane L{e.lane} of {e.project_code} whose recovery this is",
            f"name only L{e.lane}'s spending vouchers",
            rules,
            "closure.termination_recovers",
        )
        for m in facts.misused
        if m.lane is not None and m.lane != e.lane
    ]


STAGE_CHECKS: list[Check] = [check_stage_known, check_stage_assessment_mode, *PROJECT_OPEN_CHECKS]


# --- releases


@dataclass(frozen=True, slots=True)
class TrancheFacts:
    """One tranche as the release sees it on its date.

    Attributes:
      seq, name: which tranche.
      basis: "grant_share" (a fixed amount) or "subsidy_earned" (what is payable).
      amount_fen: the scheduled amount of a grant share.
      released: whether it was released already.
      unmet_hints: what is still missing, as the officer would record it, in rules order.
      source: the clause(s) of the tranche, ";"-separated.
    """

    seq: int
    name: str
    basis: str
    amount_fen: int
    released: bool
    unmet_hints: tuple[str, ...]
    source: str


@dataclass(frozen=True, slots=True)
class ReleaseFacts:
    """A release of a tranche to a lane.

    Attributes:
      event: where the project stands (lane: the lane paid).
      tranche: the tranche asked for, or None when every tranche has been released.
      payable_fen: subsidy earned and unpaid on the lane.
      unreleased_fen: the lane's obligation not yet released.
      offset_approval: the approval reference for netting a clawback the unit owes on this
        project against this release ("" when none is asked for).
      first_release: whether no tranche of the lane has been released yet.
      pledged_fen: self-funding pledged (承诺函) on file by the release date, or None when
        not looked up.
    """

    event: EventFacts
    tranche: TrancheFacts | None
    payable_fen: int
    unreleased_fen: int
    offset_approval: str = ""
    first_release: bool = False
    pledged_fen: int | None = None


@dataclass(frozen=True, slots=True)
class Receivable:
    """A clawback outstanding: its account, the project and unit owing it, the amount."""

    account: str
    project_code: str
    unit_uscc: str
    outstanding_fen: int


def offset_takes(
    receivables: Sequence[Receivable], project_code: str, unit_uscc: str, amount_fen: int
) -> list[tuple[str, int]]:
    """What a release of ``amount_fen`` to ``unit_uscc`` on ``project_code`` nets, where the
    rules allow netting and an approval is recorded: only clawbacks the same unit owes on the
    same project, in the order given, up to the amount. A clawback on any other project or
    owed by any other unit is never touched: it is collected and remitted (专款专用)."""
    takes, left = [], amount_fen
    for r in receivables:
        if r.project_code != project_code or r.unit_uscc != unit_uscc:
            continue
        take = min(r.outstanding_fen, left)
        if take > 0:
            takes.append((r.account, take))
            left -= take
    return takes


def check_offset_allowed(facts: ReleaseFacts, rules: Rules) -> list[Violation]:
    """An offset approval on a release is refused where the rules do not allow netting."""
    if not (facts.offset_approval or "").strip() or rules.funding.clawback_offset_allowed:
        return []
    e = facts.event
    return [
        _violation(
            "clawback_offset_must_be_allowed",
            f"release to {e.project_code} L{e.lane} asks to net a clawback (approval "
            f"{facts.offset_approval.strip()}), but these rules send recoveries back to the treasury",
            "release without --offset-approval and collect the clawback with `jiebang collect`, then `jiebang remit`",
            rules,
            "funding.clawback_offset_allowed",
        )
    ]


def release_amount_fen(facts: ReleaseFacts) -> int:
    """What the release pays: the grant share, or min(subsidy payable, unreleased obligation)."""
    t = facts.tranche
    if t is None:
        return 0
    if t.basis == "grant_share":
        return t.amount_fen
    return min(facts.payable_fen, facts.unreleased_fen)


def _releasable(facts: ReleaseFacts) -> bool:
    return facts.tranche is not None and not facts.tranche.released


def check_tranche_not_released(facts: ReleaseFacts, rules: Rules) -> list[Violation]:
    e, t = facts.event, facts.tranche
    if t is None:
        message = f"every tranche of {e.project_code} L{e.lane} has been released already."
    elif t.released:
        message = (f"tranche {t.seq} ({t.name}) of {e.project_code} L{e.lane} was already released; "
                   "nothing is due.")
    else:
        return []
    return [Violation("tranche_must_not_be_released_twice", message, _FIXED_CLAUSES["fixed.contract"])]


def check_tranche_conditions(facts: ReleaseFacts, rules: Rules) -> list[Violation]:
    e, t = facts.event, facts.tranche
    if not _releasable(facts) or not t.unmet_hints:
        return []
    clause = t.source.split(";")[0]
    return [
        Violation(
            "tranche_condition_must_be_met",
            f"tranche {t.seq} ({t.name}) of {e.project_code} L{e.lane} waits on "
            f"{'; '.join(t.unmet_hints)} by {e.date} ({clause}); record it first.",
            clause,
        )
    ]


def check_release_due(facts: ReleaseFacts, rules: Rules) -> list[Violation]:
    e, t = facts.event, facts.tranche
    if not _releasable(facts) or release_amount_fen(facts) > 0:
        return []
    if t.basis == "grant_share":
        message = (f"tranche {t.seq} of {e.project_code} L{e.lane} is 0.00 (the grant split left "
                   "nothing for it); nothing to release.")
    else:
        message = (f"tranche {t.seq} of {e.project_code} L{e.lane}: no subsidy is earned and unpaid "
                   f"(payable {_yuan(facts.payable_fen)}); record cash bid payments first.")
    return [Violation("release_must_have_something_due", message, t.source.split(";")[0])]


def check_release_within_obligation(facts: ReleaseFacts, rules: Rules) -> list[Violation]:
    e, t = facts.event, facts.tranche
    amount = release_amount_fen(facts)
    if not _releasable(facts) or amount <= 0 or amount <= facts.unreleased_fen:
        return []
    return [
        Violation(
            "release_must_fit_obligation",
            f"tranche {t.seq} of {e.project_code} L{e.lane} is {_yuan(amount)} but only "
            f"{_yuan(facts.unreleased_fen)} of the obligation is unreleased; nothing released.",
            _FIXED_CLAUSES["fixed.obligation"],
        )
    ]


RELEASE_CHECKS: list[Check] = [
    *PROJECT_OPEN_CHECKS,
    check_offset_allowed,
    check_tranche_not_released,
    check_tranche_conditions,
    check_release_due,
    check_release_within_obligation,
]


# --- spending


@dataclass(frozen=True, slots=True)
class SpendFacts:
    """Fiscal money a lane reports spent.

    Attributes:
      event: where the project stands (lane: the lane spending).
      amount_fen: the amount spent.
      category: the budget category as given (a key, a Chinese name or a legacy line).
      period_start, period_end: the project period, approved extensions included.
      advances_fen: the lane's released money not yet reported spent.
      justification: the equipment justification as given.
      direct_spent_fen: grant spent before this report, every category but indirect.
      equipment_spent_fen: of which equipment.
      indirect_spent_fen: indirect costs spent before this report.
    """

    amount_what: ClassVar[str] = "spending report"
    legacy_lines_allowed: ClassVar[bool] = True
    event: EventFacts
    amount_fen: int
    category: str
    period_start: date
    period_end: date
    advances_fen: int
    justification: str | None = None
    direct_spent_fen: int = 0
    equipment_spent_fen: int = 0
    indirect_spent_fen: int = 0


def check_spend_in_period(facts: SpendFacts, rules: Rules) -> list[Violation]:
    e = facts.event
    if facts.period_start <= e.date <= facts.period_end:
        return []
    return [
        Violation(
            "spending_must_fall_in_project_period",
            f"spending on {e.date} is outside {e.project_code}'s period {facts.period_start}.."
            f"{facts.period_end} (including approved extensions); date it inside the period or record "
            "an extension first.",
            _FIXED_CLAUSES["fixed.period"],
        )
    ]


def check_spend_within_advances(facts: SpendFacts, rules: Rules) -> list[Violation]:
    e = facts.event
    if facts.amount_fen <= facts.advances_fen:
        return []
    return [
        Violation(
            "spending_must_not_exceed_advances",
            f"spending of {_yuan(facts.amount_fen)} by {e.project_code} L{e.lane} exceeds its advances "
            f"outstanding {_yuan(facts.advances_fen)}; only released fiscal money can be reported spent "
            "— record the release first or correct the amount.",
            _FIXED_CLAUSES["fixed.obligation"],
        )
    ]


def check_equipment_justified(facts: SpendFacts, rules: Rules) -> list[Violation]:
    """Exactly at the threshold needs a justification; one fen below does not."""
    threshold = rules.spending.equipment_justify_threshold_fen
    category = category_key(facts.category, rules.spending.legacy_category_map)
    if category != "equipment" or facts.amount_fen < threshold or (facts.justification or "").strip():
        return []
    clause = rules.clause("spending.equipment_justify_threshold")
    return [
        Violation(
            "equipment_at_threshold_must_be_justified",
            f"equipment of {_yuan(facts.amount_fen)} is at or above {_yuan(threshold)} ({clause}); "
            "give its specifications and need with --justification.",
            clause,
        )
    ]


def spend_indirect_cap_fen(facts: SpendFacts, rules: Rules) -> int:
    """The indirect cost cap on the lane's direct spending so far, less equipment purchase."""
    return indirect_cap_fen(facts.direct_spent_fen, facts.equipment_spent_fen, rules)


def check_indirect_cap(facts: SpendFacts, rules: Rules) -> list[Violation]:
    category = category_key(facts.category, rules.spending.legacy_category_map)
    if category != "indirect" or facts.amount_fen <= 0:
        return []
    cap = spend_indirect_cap_fen(facts, rules)
    after = facts.indirect_spent_fen + facts.amount_fen
    if after <= cap:
        return []
    clause = rules.clause("spending.indirect_tiers")
    return [
        Violation(
            "indirect_costs_must_not_exceed_cap",
            f"indirect costs would reach {_yuan(after)}, above the cap {_yuan(cap)} computed on direct "
            f"{_yuan(facts.direct_spent_fen)} less equipment {_yuan(facts.equipment_spent_fen)} ({clause}); "
            "reduce the amount.",
            clause,
        )
    ]


SPEND_CHECKS: list[Check] = [
    *PROJECT_OPEN_CHECKS,
    check_amount_positive,
    check_category_known,
    check_spend_in_period,
    check_spend_within_advances,
    check_equipment_justified,
    check_indirect_cap,
]


# --- extension, termination, closure


def check_extension_reference(facts: ExtensionFacts, rules: Rules) -> list[Violation]:
    if facts.reference is None or facts.reference.strip():
        return []
    return [
        Violation(
            "extension_must_cite_approval",
            "an extension needs the bureau's approval reference; give it with --reference.",
            _FIXED_CLAUSES["fixed.documents"],
        )
    ]


def check_extension_reason(facts: ExtensionFacts, rules: Rules) -> list[Violation]:
    """An extension states why: the Jiangmen text allows one where 不可抗力 keeps the task from
    finishing on time (S1 五(三)), and auditors read the reason."""
    if facts.reason is None or facts.reason.strip():
        return []
    return [
        Violation(
            "extension_must_give_reason",
            f"the extension of {facts.project_code} gives no reason (S1 五(三): 因不可抗力，导致任务无法按期完成的…经市科技局审核同意后，"
            "可以延期); give it with --reason, e.g. --reason \"关键设备受不可抗力影响延迟到货\".",
            _FIXED_CLAUSES["fixed.documents"],
        )
    ]


EXTENSION_CHECKS.extend([*PROJECT_OPEN_CHECKS, check_extension_reference, check_extension_reason, check_extension])


@dataclass(frozen=True, slots=True)
class MisuseFacts:
    """A misused (违规使用) amount named against an earlier spend voucher.

    Attributes:
      spend_voucher: the voucher named.
      amount_fen: the misused amount.
      spent_fen: that spend's amount, or None when the voucher is not a spend of the project.
      lane: the lane that spend was reported on, or None when it is not a spend.
    """

    spend_voucher: str
    amount_fen: int
    spent_fen: int | None
    lane: int | None = None


@dataclass(frozen=True, slots=True)
class TerminationFacts:
    """A termination or revocation of a project.

    Attributes:
      event: where the project stands (``event.what``: "termination" or "revocation").
      reference: the bureau's decision reference as given.
      misused: the misused amounts named.
    """

    event: EventFacts
    reference: str
    misused: tuple[MisuseFacts, ...] = ()


def check_terminated_once(facts: TerminationFacts, rules: Rules) -> list[Violation]:
    e = facts.event
    if e.terminated_on is None:
        return []
    return [
        Violation(
            "project_must_be_terminated_once",
            f"project {e.project_code} was already terminated or revoked on {e.terminated_on}; its "
            "clawback is assessed.",
            _FIXED_CLAUSES["fixed.lifecycle"],
        )
    ]


def check_termination_reference(facts: TerminationFacts, rules: Rules) -> list[Violation]:
    if (facts.reference or "").strip():
        return []
    return [
        Violation(
            "revocation_must_cite_approval" if facts.event.what == "revocation" else "termination_must_cite_approval",
            f"a {facts.event.what} needs the bureau's decision reference; give it with --reference.",
            _FIXED_CLAUSES["fixed.documents"],
        )
    ]


def check_misuse(facts: TerminationFacts, rules: Rules) -> list[Violation]:
    """Each misused amount names a spend of the project and is at most that spend."""
    code, found = facts.event.project_code, []
    clause = rules.clause("closure.termination_recovers")
    for item in facts.misused:
        if item.spent_fen is None:
            found.append(Violation(
                "misuse_must_name_a_spend_voucher",
                f"misused amount cites voucher {item.spend_voucher}, which is not a spending report of "
                f"{code}; `jiebang journal --project {code} --kind spend` lists them.",
                clause,
            ))
        elif item.amount_fen <= 0 or item.amount_fen > item.spent_fen:
            found.append(Violation(
                "misuse_must_not_exceed_the_spend",
                f"misused amount {_yuan(item.amount_fen)} on voucher {item.spend_voucher} exceeds that "
                f"spend of {_yuan(item.spent_fen)}.",
                clause,
            ))
    return found


# Termination asks "already terminated?" in its own words, so the generic terminated check is
# left out; a termination concerns the whole project, so no lane is eliminated from it.
TERMINATION_CHECKS: list[Check] = [
    check_terminated_once,
    check_event_follows_approval,
    check_project_not_closed,
    check_lane_not_eliminated,
    check_termination_reference,
    check_misuse,
    check_misuse_on_the_lane,
]
STAGE_CHECKS.extend([check_stage_misuse, check_misuse, check_misuse_on_the_lane])


@dataclass(frozen=True, slots=True)
class ClosureFacts:
    """A closure after acceptance.

    Attributes:
      event: where the project stands.
      missing_hints: the acceptance (and audit report) not yet recorded, as the officer would
        record them.
      reference: the acceptance document reference as given.
      unpaid_subsidy: (lane, subsidy earned and unpaid) for each active lane.
    """

    event: EventFacts
    missing_hints: tuple[str, ...]
    reference: str
    unpaid_subsidy: tuple[tuple[int, int], ...] = ()


def check_closure_after_acceptance(facts: ClosureFacts, rules: Rules) -> list[Violation]:
    if not facts.missing_hints:
        return []
    return [
        Violation(
            "closure_must_follow_acceptance",
            f"project {facts.event.project_code} cannot close before " + "; ".join(facts.missing_hints) + ".",
            rules.clause("closure.audit_required"),
        )
    ]


def check_closure_reference(facts: ClosureFacts, rules: Rules) -> list[Violation]:
    if (facts.reference or "").strip():
        return []
    return [
        Violation(
            "closure_must_cite_approval",
            "a closure needs the acceptance document reference; give it with --reference.",
            _FIXED_CLAUSES["fixed.documents"],
        )
    ]


def check_closure_after_final_release(facts: ClosureFacts, rules: Rules) -> list[Violation]:
    """Closing ends every tranche, so subsidy earned must be released first."""
    return [
        Violation(
            "closure_must_follow_final_release",
            f"{facts.event.project_code} L{lane} still has {_yuan(payable)} subsidy earned and unpaid; "
            "release it (jiebang release) before closing.",
            rules.clause("funding.subsidy_rate") if rules.funding.subsidy_rate is not None else _FIXED_CLAUSES["fixed.obligation"],
        )
        for lane, payable in facts.unpaid_subsidy
        if payable
    ]


CLOSURE_CHECKS: list[Check] = [
    *PROJECT_OPEN_CHECKS,
    check_closure_after_acceptance,
    check_closure_reference,
    check_closure_after_final_release,
]


# --- recovery: collection, write-off, remittance


@dataclass(frozen=True, slots=True)
class CollectionFacts:
    """Recovered money received on a lane's clawback.

    Attributes:
      project_code, lane: which clawback.
      amount_fen: the amount received.
      outstanding_fen: the clawback still receivable.
    """

    amount_what: ClassVar[str] = "collection"
    project_code: str
    lane: int
    amount_fen: int
    outstanding_fen: int


def check_collection_within_outstanding(facts: CollectionFacts, rules: Rules) -> list[Violation]:
    if facts.amount_fen <= facts.outstanding_fen:
        return []
    return [
        Violation(
            "collection_must_not_exceed_outstanding",
            f"collection of {_yuan(facts.amount_fen)} exceeds the clawback outstanding on "
            f"{facts.project_code} L{facts.lane}, {_yuan(facts.outstanding_fen)}; correct the amount.",
            _FIXED_CLAUSES["fixed.recovery"],
        )
    ]


COLLECTION_CHECKS: list[Check] = [check_amount_positive, check_collection_within_outstanding]


@dataclass(frozen=True, slots=True)
class WriteOffFacts:
    """An uncollectable clawback written off.

    Attributes:
      project_code, lane: which clawback.
      amount_fen: the amount written off.
      outstanding_fen: the clawback still receivable.
      reason, approval: why, and the approval reference, as given.
    """

    amount_what: ClassVar[str] = "write-off"
    project_code: str
    lane: int
    amount_fen: int
    outstanding_fen: int
    reason: str
    approval: str


def check_write_off_documented(facts: WriteOffFacts, rules: Rules) -> list[Violation]:
    if (facts.reason or "").strip() and (facts.approval or "").strip():
        return []
    return [
        Violation(
            "write_off_must_have_reason_and_approval",
            "a write-off needs --reason and --approval (the approval reference).",
            _FIXED_CLAUSES["fixed.documents"],
        )
    ]


def check_write_off_within_outstanding(facts: WriteOffFacts, rules: Rules) -> list[Violation]:
    if facts.amount_fen <= facts.outstanding_fen:
        return []
    return [
        Violation(
            "write_off_must_not_exceed_outstanding",
            f"write-off of {_yuan(facts.amount_fen)} exceeds the clawback outstanding on "
            f"{facts.project_code} L{facts.lane}, {_yuan(facts.outstanding_fen)}.",
            _FIXED_CLAUSES["fixed.recovery"],
        )
    ]


WRITE_OFF_CHECKS: list[Check] = [check_amount_positive, check_write_off_documented, check_write_off_within_outstanding]


@dataclass(frozen=True, slots=True)
class RemittanceFacts:
    """Recovered money handed to the finance bureau.

    Attributes:
      amount_fen: the amount remitted.
      owed_fen: collected and not yet remitted.
    """

    amount_what: ClassVar[str] = "remittance"
    amount_fen: int
    owed_fen: int


def check_remittance_within_owed(facts: RemittanceFacts, rules: Rules | None) -> list[Violation]:
    if facts.amount_fen <= facts.owed_fen:
        return []
    return [
        Violation(
            "remittance_must_not_exceed_amount_owed",
            f"remittance of {_yuan(facts.amount_fen)} exceeds the {_yuan(facts.owed_fen)} collected and "
            "owed to the finance bureau.",
            _FIXED_CLAUSES["fixed.recovery"],
        )
    ]


# Remittances pool every city's recoveries; their checks take ``rules=None``.
REMITTANCE_CHECKS: list[Check] = [check_amount_positive, check_remittance_within_owed]


@dataclass(frozen=True, slots=True)
class PartyYearFacts:
    """A party's facts for a fiscal year, as recorded: its USCC, the year, the recording year."""

    uscc: str
    year: int
    recorded_in: int


def check_party_year(facts: PartyYearFacts, rules: Rules | None) -> list[Violation]:
    """A fiscal year's facts are recorded for a year that has begun: the recording year or earlier."""
    if 2000 <= facts.year <= facts.recorded_in:
        return []
    return [
        Violation(
            "party_facts_year_must_have_begun",
            f"facts of {facts.uscc} for fiscal year {facts.year} are recorded in {facts.recorded_in}; "
            "give a year from 2000 up to the recording date's year.",
            _FIXED_CLAUSES["fixed.input"],
        )
    ]


PARTY_YEAR_CHECKS: list[Check] = [check_party_year]


# ---------------------------------------------------------------------------------------------
# Principle limits (原则上) and their exceptions (issue 14 point 7).
#
# A limit the text writes “原则上” is marked ``principle = true`` in the rules file. Its check
# reports it like any other limit; ``apply_principle_exception`` then lifts it when the
# officer gives ``--exception "reference: reason"`` (the violation becomes severity
# "exception" and is recorded in the event's hashed facts), or says in the refusal how to
# lift it when none is given. A hard limit stays an error, exception or not.

EXCEPTION_OPTION = '--exception "REFERENCE: REASON"'
EXCEPTION_SEPARATORS = (":", "：")


@dataclass(frozen=True, slots=True)
class PrincipleException:
    """An officer's exception to a principle limit: the approving document and why.

    Attributes:
      reference: the bureau's document (文号) that approves exceeding the limit.
      reason: why, in the officer's words.
    """

    reference: str
    reason: str


def parse_exception(text: str | None) -> PrincipleException | None:
    """``"reference: reason"`` (an ASCII or full-width colon) as typed, or None when empty;
    refuses a text without both parts."""
    if text is None or not str(text).strip():
        return None
    raw = str(text).strip()
    cut = min((raw.find(sep) for sep in EXCEPTION_SEPARATORS if sep in raw), default=-1)
    reference, reason = (raw[:cut].strip(), raw[cut + 1:].strip()) if cut >= 0 else ("", "")
    if not reference or not reason:
        raise Refusal(
            "principle_exception_must_name_reference_and_reason",
            f"exception {raw!r} must read REFERENCE: REASON, the bureau's document and why the principle "
            f"(原则上) limit is exceeded, e.g. --exception \"江科〔2025〕12号: 关键设备进口周期长\".",
        )
    return PrincipleException(reference, reason)


def apply_principle_exception(
    violations: Sequence[Violation], rules: Rules, exception: PrincipleException | None, what: str
) -> list[Violation]:
    """The violations with principle limits settled by ``exception`` (for ``what``, e.g.
    "approval of JM2025-003").

    * a principle limit exceeded with an exception: severity "exception" (recorded, not refused);
    * a principle limit exceeded without one: still an error, whose fix names the option;
    * a hard limit with an exception given: still an error, saying the limit is not a principle;
    * an exception given where no principle limit is exceeded: refused, so that nothing is
      recorded as an exception that was not one.
    """
    out: list[Violation] = []
    lifted = False
    for v in violations:
        if v.severity != "error":
            out.append(v)
        elif rules.is_principle(v.key) and exception is not None:
            out.append(Violation(v.code, v.message, v.clause, "exception", v.key))
            lifted = True
        elif rules.is_principle(v.key):
            out.append(Violation(
                v.code,
                v.message.rstrip(".") + f"; or, as the text writes this limit 原则上 (a principle), exceed it with {EXCEPTION_OPTION}.",
                v.clause, v.severity, v.key,
            ))
        elif exception is not None:
            out.append(Violation(
                v.code,
                v.message.rstrip(".") + " (--exception does not lift it: this limit is hard, not a principle written 原则上).",
                v.clause, v.severity, v.key,
            ))
        else:
            out.append(v)
    if exception is not None and not lifted and not errors_only(out):
        out.append(Violation(
            "principle_exception_must_be_needed",
            f"--exception {exception.reference}: {exception.reason} was given for {what}, but no principle (原则上) limit "
            "is exceeded; drop --exception (an exception is recorded only where a principle limit is exceeded).",
            "the rules file's principle = true limits",
        ))
    return out


def excepted(violations: Iterable[Violation]) -> list[Violation]:
    """The principle limits an exception lifted."""
    return [v for v in violations if v.severity == "exception"]


def principle_figures(key: str, facts: Any, rules: Rules) -> tuple[str, str]:
    """(limit, actual) of a principle limit, as plain text for the event's facts: amounts as
    0.00 yuan, periods as dates, counts and months as numbers."""
    a = rules.approval
    if key == "approval.demand_min_revenue":
        return format_fen(a.demand_min_revenue_fen or 0), format_fen(facts.demand.revenue_fen or 0)
    if key == "approval.max_period_years":
        return str(a.max_period_years), f"{facts.start_date.isoformat()}..{facts.end_date.isoformat()}"
    if key == "approval.saima_max_racers":
        return str(a.saima_max_racers), str(len(facts.solvers))
    if key == "approval.max_extensions":
        return str(a.max_extensions), str(facts.extensions_so_far + 1)
    if key == "approval.max_extension_years":
        return str(12 * (a.max_extension_years or 0)), str(facts.requested_months)
    raise ValueError(f"{key} is not a principle limit")


def exception_records(
    violations: Iterable[Violation], facts: Any, rules: Rules, exception: PrincipleException | None
) -> list[dict]:
    """What an event's hashed facts record of the principle limits its exception lifted:
    the limit, its clause, the figures, and the exception's reference and reason."""
    if exception is None:
        return []
    records = []
    for v in excepted(violations):
        limit, actual = principle_figures(v.key, facts, rules)
        records.append({"key": v.key, "code": v.code, "limit": limit, "actual": actual, "clause": v.clause,
                        "reference": exception.reference, "reason": exception.reason})
    return records


# ---------------------------------------------------------------------------------------------
# Changes to the facts locked at approval (issue 14 point 9): S2 二(七) 项目立项后，不得降低项目考核
# 指标…项目负责人（首席科学家）在揭榜攻关期间不得随意更换 — a change needs the bureau's approval.

_LOCKED_CLAUSE = "S2 乌鲁木齐 工作指引 二(七): 不得降低项目考核指标…项目负责人（首席科学家）在揭榜攻关期间不得随意更换"


@dataclass(frozen=True, slots=True)
class ProjectChangeFacts:
    """A change of the facts recorded at approval.

    Attributes:
      event: where the project stands.
      reference: the bureau's approval of the change (文号), as given.
      reason: why, as given.
      changed: the facts that differ from those in force (pi, indicators, project_manager,
        owner_letter).
      given: the facts given, changed or not.
    """

    event: EventFacts
    reference: str
    reason: str
    changed: tuple[str, ...]
    given: tuple[str, ...]


def check_project_change_approved(facts: ProjectChangeFacts, rules: Rules) -> list[Violation]:
    found = []
    if not facts.reference:
        found.append(Violation(
            "project_change_must_cite_approval",
            f"a change of {facts.event.project_code}'s PI, indicators, 项目经理人 or 业主责任书 needs the bureau's approval "
            f"({_LOCKED_CLAUSE}); give its reference with --reference.",
            _LOCKED_CLAUSE,
        ))
    if not facts.reason:
        found.append(Violation(
            "project_change_must_give_reason",
            f"the change of {facts.event.project_code} gives no reason ({_LOCKED_CLAUSE}); give it with --reason.",
            _LOCKED_CLAUSE,
        ))
    return found


def check_project_change_changes_something(facts: ProjectChangeFacts, rules: Rules) -> list[Violation]:
    if facts.changed:
        return []
    said = ", ".join(facts.given) if facts.given else "nothing"
    return [Violation(
        "project_change_must_change_something",
        f"the change of {facts.event.project_code} gives {said}, which changes none of the facts in force; "
        "give --pi, --indicator, --project-manager or --owner-letter with the new value.",
        _FIXED_CLAUSES["fixed.documents"],
    )]


PROJECT_CHANGE_CHECKS: list[Check] = [*PROJECT_OPEN_CHECKS, check_project_change_approved, check_project_change_changes_something]


# Every registry, by event family; tests/test_refusals.py walks them.
REGISTRIES: dict[str, list[Check]] = {
    "appropriation": APPROPRIATION_CHECKS,
    "party": PARTY_CHECKS,
    "party_year": PARTY_YEAR_CHECKS,
    "approval_request": APPROVAL_REQUEST_CHECKS,
    "approval": APPROVAL_CHECKS,
    "bid_contract": BID_CONTRACT_CHECKS,
    "bid_payment": BID_PAYMENT_CHECKS,
    "self_funding": SELF_FUNDING_CHECKS,
    "stage": STAGE_CHECKS,
    "release": RELEASE_CHECKS,
    "spend": SPEND_CHECKS,
    "extension": EXTENSION_CHECKS,
    "termination": TERMINATION_CHECKS,
    "closure": CLOSURE_CHECKS,
    "collection": COLLECTION_CHECKS,
    "write_off": WRITE_OFF_CHECKS,
    "remittance": REMITTANCE_CHECKS,
    "project_change": PROJECT_CHANGE_CHECKS,
}


# ---------------------------------------------------------------------------------------------
# Issue 14 point 8: rules that do something — a failed acceptance, the audited true-up, the
# pledge at a first release, and the recovery of a retained balance after N years.


def failed_acceptance_terminates(facts: StageFacts, rules: Rules) -> bool:
    """Whether this stage result is a failed acceptance the rules treat as a termination."""
    return facts.stage == "acceptance" and not facts.passed and rules.closure.failed_acceptance == "terminate"


def check_audited_cash(facts: StageFacts, rules: Rules) -> list[Violation]:
    """The audited cash total (审计确认的现金投入) comes with a passed audit report of a bid
    subsidy, for lanes still in the race."""
    if not facts.audited_cash:
        return []
    code = facts.event.project_code
    if facts.stage != "audit_report" or not facts.passed:
        return [_violation(
            "audited_cash_needs_the_audit_report",
            f"an audited cash total is recorded with the 专项审计报告 (audit_report passed), not with "
            f"{facts.stage} {'passed' if facts.passed else 'failed'} of {code}",
            "drop --audited-cash, or record it with --stage audit_report --passed",
            rules, "tranches.final" if "tranches.final" in rules.sources else "closure.audit_required",
        )]
    if rules.funding.model != "bid_subsidy":
        return [_violation(
            "audited_cash_needs_a_bid_subsidy",
            f"{code} is paid a {rules.funding.model} under {rules.version}; no subsidy is trued up on audited cash",
            "drop --audited-cash",
            rules, "funding.model",
        )]
    return [
        _violation(
            "audited_cash_lane_must_be_active",
            f"L{lane} of {code} has left the race; its subsidy is not trued up",
            "give the audited cash of the lanes still in the race only",
            rules, "tranches.final" if "tranches.final" in rules.sources else "funding.subsidy_rate",
        )
        for lane, _fen, active in facts.audited_cash
        if not active
    ]


def check_pledge_at_first_release(facts: ReleaseFacts, rules: Rules) -> list[Violation]:
    """A lane's first release with no self-funding pledge (承诺函) on file: a warning, or a
    refusal where the rules say so (``funding.pledge_at_first_release``)."""
    how = rules.funding.pledge_at_first_release
    if how == "none" or not _releasable(facts) or not facts.first_release or facts.pledged_fen is None or facts.pledged_fen > 0:
        return []
    e = facts.event
    return [_violation(
        "pledge_must_be_on_file_at_first_release",
        f"first release to {e.project_code} L{e.lane} on {e.date} with no self-funding pledge (自投研发资金承诺函) on file",
        f"record it with `jiebang pledge --project {e.project_code} --amount ...`"
        + (" before releasing" if how == "refuse" else ""),
        rules, "funding.pledge_at_first_release", "error" if how == "refuse" else "warning",
    )]


@dataclass(frozen=True, slots=True)
class BalanceRecoveryFacts:
    """The recovery of the balance a unit retained after a passed acceptance, N years on.

    Attributes:
      event: where the project stands.
      reference: the bureau's decision reference as given.
      accepted_on: the date the acceptance passed, or None.
      recovered_on: the date the balance was recovered already, or None.
      balance_fen: the balance left with the unit (advances outstanding, subsidy unreported).
    """

    event: EventFacts
    reference: str
    accepted_on: date | None
    recovered_on: date | None
    balance_fen: int


def balance_recoverable_on(accepted_on: date, rules: Rules) -> date | None:
    """The first day a retained balance is recovered: N years after the acceptance, or None
    where the rules retain it (``closure.balance_after_acceptance``)."""
    c = rules.closure
    if c.balance_after_acceptance != "recover_after_years" or c.recover_after_years is None:
        return None
    return add_years(accepted_on, c.recover_after_years)


def _balance_recovery_problem(facts: BalanceRecoveryFacts, rules: Rules) -> Violation | None:
    """The first reason the balance cannot be recovered now, or None."""
    e = facts.event
    if rules.closure.balance_after_acceptance != "recover_after_years":
        return _violation("balance_recovery_must_be_in_the_rules", f"{e.project_code} keeps its balance after acceptance under {rules.version}",
                "nothing to recover; the balance stays with the unit", rules, "closure.balance_after_acceptance")
    if facts.recovered_on is not None:
        return _violation("balance_must_be_recovered_once", f"the retained balance of {e.project_code} was recovered on {facts.recovered_on}",
                "collect it with `jiebang collect`", rules, "closure.recover_after_years")
    if facts.accepted_on is None or e.closed_on is None:
        return _violation("balance_recovery_must_follow_closure",
                f"{e.project_code} has not passed acceptance and closed; its balance is not retained yet",
                "record the acceptance and `jiebang close` first", rules, "closure.balance_after_acceptance")
    due_on = balance_recoverable_on(facts.accepted_on, rules)
    if due_on is not None and e.date < due_on:
        return _violation("balance_recovery_must_wait_for_its_years",
                (f"the balance of {e.project_code} is retained {rules.closure.recover_after_years} years after the "
                 f"acceptance of {facts.accepted_on}, until {due_on - timedelta(days=1)}; {e.date} is too early"),
                f"record the recovery on or after {due_on}", rules, "closure.recover_after_years")
    if facts.balance_fen <= 0:
        return _violation("balance_recovery_must_have_a_balance", f"{e.project_code} has no balance left with the unit (0.00)",
                "nothing to recover", rules, "closure.recover_after_years")
    return None


def check_balance_recovery(facts: BalanceRecoveryFacts, rules: Rules) -> list[Violation]:
    problem = _balance_recovery_problem(facts, rules)
    return [] if problem is None else [problem]


def check_balance_recovery_reference(facts: BalanceRecoveryFacts, rules: Rules) -> list[Violation]:
    if (facts.reference or "").strip():
        return []
    return [Violation(
        "balance_recovery_must_cite_approval",
        "a recovery of the retained balance needs the bureau's decision reference; give it with --reference.",
        _FIXED_CLAUSES["fixed.documents"],
    )]


STAGE_CHECKS.append(check_audited_cash)
RELEASE_CHECKS.append(check_pledge_at_first_release)
BALANCE_RECOVERY_CHECKS: list[Check] = [
    check_event_follows_approval,
    check_project_not_terminated,
    check_balance_recovery_reference,
    check_balance_recovery,
]
REGISTRIES["balance_recovery"] = BALANCE_RECOVERY_CHECKS


def run_checks(registry: Iterable[Check], facts: Any, rules: Rules) -> list[Violation]:
    """Run every check of a registry and collect what they find, errors and warnings alike."""
    return [violation for check in registry for violation in check(facts, rules)]


def errors_only(violations: Iterable[Violation]) -> list[Violation]:
    return [v for v in violations if v.severity == "error"]


class RuleRefusal(Refusal):
    """A refusal naming every error a registry found, in one line.

    The code and the opening sentence are the first violation's; the others follow, each
    introduced by "also:", so an officer fixes everything in one round.

    Attributes:
      violations: the error-severity violations, in registry order.
    """

    def __init__(self, violations: Sequence[Violation]):
        first, rest = violations[0], violations[1:]
        message = first.message
        if rest:
            parts = [first.message.rstrip(".")] + [f"also: {v.message.rstrip('.')}" for v in rest]
            message = "; ".join(parts) + "."
        super().__init__(first.code, " ".join(message.split("\n")))
        self.violations = tuple(violations)


def refuse_errors(violations: Iterable[Violation]) -> None:
    """Raise one RuleRefusal naming every error-severity violation; warnings never block."""
    errors = errors_only(violations)
    if errors:
        raise RuleRefusal(errors)


def enforce(registry: Iterable[Check], facts: Any, rules: Rules | None) -> list[Violation]:
    """Run a registry and refuse with all its errors; return the warnings otherwise."""
    found = run_checks(registry, facts, rules)  # type: ignore[arg-type]
    refuse_errors(found)
    return found


# ---------------------------------------------------------------------------------------------
# Computations.


def subsidy_due(
    cash_paid_cumulative_fen: int,
    contracted_fen: int,
    already_earned_fen: int,
    rules: Rules,
    *,
    excluded_fen: Mapping[str, int] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Subsidy earned now on one lane, computed on the cumulative cash base so it never drifts.

    due = min(round_half_up(rate × cumulative cash), round_half_up(cap rate × contract)) − already
    earned. A negative result means earlier accruals exceed the entitlement (e.g. after a
    reversed payment) and is returned as is for the service to reverse. ``excluded_fen`` lists
    amounts outside the base (equity, in_kind, the demand side's own R&D) only for the trace.
    """
    f = rules.funding
    if f.model != "bid_subsidy" or f.subsidy_rate is None or f.subsidy_cap_rate_of_contract is None:
        raise Refusal(
            "rules_must_define_a_bid_subsidy",
            f"Rules {rules.version} pay a {f.model}, not a subsidy on bid payments; no subsidy is "
            "computed.",
        )
    for name, value in (
        ("cash paid", cash_paid_cumulative_fen),
        ("contract", contracted_fen),
        ("already earned", already_earned_fen),
    ):
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    exclusions = dict(excluded_fen or {})
    if set(exclusions) & set(f.eligible_payment_forms):
        raise ValueError("an eligible payment form cannot be listed as an exclusion")
    earned_uncapped = apply_rate(cash_paid_cumulative_fen, f.subsidy_rate, rounding=ROUND_HALF_UP)
    cap = apply_rate(contracted_fen, f.subsidy_cap_rate_of_contract, rounding=ROUND_HALF_UP)
    earned = min(earned_uncapped, cap)
    due = earned - already_earned_fen
    trace = {
        "rules_version": rules.version,
        "clause": rules.clause("funding.subsidy_rate"),
        "base": format_fen(cash_paid_cumulative_fen),
        "base_forms": list(f.eligible_payment_forms),
        "exclusions": {name: format_fen(value) for name, value in sorted(exclusions.items())},
        "rate": str(f.subsidy_rate),
        "rounding": "ROUND_HALF_UP",
        "earned_uncapped": format_fen(earned_uncapped),
        "contracted": format_fen(contracted_fen),
        "cap_rate": str(f.subsidy_cap_rate_of_contract),
        "cap": format_fen(cap),
        "earned": format_fen(earned),
        "already_earned": format_fen(already_earned_fen),
        "formula": (
            f"min(round_half_up({f.subsidy_rate} × {format_fen(cash_paid_cumulative_fen)}), "
            f"round_half_up({f.subsidy_cap_rate_of_contract} × {format_fen(contracted_fen)})) − "
            f"{format_fen(already_earned_fen)}"
        ),
        "result": format_fen(due),
    }
    return due, trace


def tranche_amounts(grant_fen: int, rules: Rules) -> list[int]:
    """The grant split by tranche shares; the parts add up and odd fen go to the earliest."""
    shares = [t.share for t in rules.tranches]
    if rules.funding.model != "staged_grant" or any(s is None for s in shares):
        raise Refusal(
            "rules_must_define_grant_shares",
            f"Rules {rules.version} pay a {rules.funding.model}; tranche amounts follow the "
            "subsidy earned.",
        )
    return split_fen(grant_fen, shares)  # type: ignore[arg-type]


def saima_lane_split(amount_fen: int, lanes: int) -> list[int]:
    """An equal split among ``lanes`` racers to the fen; odd fen go to the earliest lanes."""
    if lanes < 1:
        raise ValueError("a 赛马 split needs at least one lane")
    return split_equal(amount_fen, lanes)


def indirect_cap_fen(
    direct_fen: int, equipment_purchase_fen: int, rules: Rules, pure_theory: bool = False
) -> int:
    """Most 间接费用 allowed on a budget: marginal bands over (direct − equipment purchase).

    Rounded down (ROUND_FLOOR) because the rule says "不超过": a cap rounded up by half a fen
    would allow more than the rule does.
    """
    base = direct_fen - equipment_purchase_fen
    if min(direct_fen, equipment_purchase_fen, base) < 0:
        raise ValueError(
            "direct and equipment amounts must be >= 0, and equipment must not exceed direct"
        )
    s = rules.spending
    if pure_theory:
        return apply_rate(base, s.pure_theory_cap, rounding=ROUND_FLOOR)
    exact, lower = Decimal(0), 0
    for tier in s.indirect_tiers:
        upper = base if tier.up_to_fen is None else min(base, tier.up_to_fen)
        if upper > lower:
            exact += Decimal(upper - lower) * tier.cap
        lower = max(lower, upper)
    return int(exact.to_integral_value(rounding=ROUND_FLOOR))


def unmet_conditions(tranche: Tranche, mode: str, recorded: Iterable[str]) -> tuple[str, ...]:
    """The tranche's conditions for this mode that have not been recorded, in rules order."""
    done = set(recorded)
    return tuple(c for c in tranche.conditions_for(mode) if c not in done)


def audit_required(fiscal_fen: int, rules: Rules) -> bool:
    """Whether closing a project with this much fiscal funding needs a 专项审计报告."""
    c = rules.closure
    if c.audit_required == "always":
        return True
    if c.audit_required == "never":
        return False
    return fiscal_fen >= c.audit_threshold_fen  # type: ignore[operator]


def budget_category(line: str, rules: Rules) -> str:
    """The 2021 category key of a budget line: a key, a current Chinese name, or a legacy line."""
    s, text = rules.spending, line.strip()
    if text in s.budget_categories:
        return text
    by_name = {name: key for key, name in s.budget_categories.items()}
    if text in by_name:
        return by_name[text]
    if text in s.legacy_category_map:
        return s.legacy_category_map[text]
    raise Refusal(
        "budget_line_must_be_known",
        f"Budget line {line!r} is neither a category ({', '.join(s.budget_categories.values())}) "
        f"nor a mapped pre-2021 line ({rules.clause('spending.legacy_category_map')}); use one of "
        "those names.",
    )
