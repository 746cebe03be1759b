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
from typing import Any

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
      severity: "error" blocks the operation; "warning" is reported and never blocks.
    """

    code: str
    message: str
    clause: str
    severity: str = "error"


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


@dataclass(frozen=True, slots=True)
class ExtensionFacts:
    """A request to extend a project's period.

    Attributes:
      project_code: for messages.
      extensions_so_far: extensions already approved.
      requested_months: length of this extension.
      request_date: when the request was made.
      current_end_date: the period's end date before this extension (inclusive).
    """

    project_code: str
    extensions_so_far: int
    requested_months: int
    request_date: date
    current_end_date: date


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
    "fixed.extension_timing": (
        "DEFAULT: an extension is requested before the period ends, as in Zhongshan S9 (X8)"
    ),
}


def _violation(
    code: str, what: str, fix: str, rules: Rules, key: str, severity: str = "error"
) -> Violation:
    """A violation citing ``key``: a rules-file "section.key", or one of _FIXED_CLAUSES."""
    clause = _FIXED_CLAUSES.get(key) or rules.clause(key)
    return Violation(code, f"{what} ({clause}); {fix}.", clause, severity)


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
        )
        by_star = a.demand_innovation_star_qualifies and demand.innovation_star
        if not (by_revenue or by_intensity or by_star):
            revenue = "undeclared" if demand.revenue_fen is None else _yuan(demand.revenue_fen)
            intensity = "undeclared" if demand.rnd_intensity is None else str(demand.rnd_intensity)
            tests = []
            if a.demand_min_revenue_fen is not None:
                tests.append(f"revenue {revenue} < {_yuan(a.demand_min_revenue_fen)}")
            if a.demand_min_rnd_intensity is not None:
                tests.append(f"R&D intensity {intensity} < {a.demand_min_rnd_intensity}")
            if a.demand_innovation_star_qualifies:
                tests.append("not a 创新标兵 high-tech firm")
            found.append(
                _violation(
                    "demand_side_must_meet_one_eligibility_test",
                    f"Demand side {demand.label} of {facts.code} passes none of the tests: "
                    f"{'; '.join(tests)}",
                    "record the figure that qualifies it, or choose another demand side",
                    rules,
                    "approval.demand_min_revenue",
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
            f"Demand side {facts.demand.label} already has {facts.demand.projects_in_progress} "
            f"projects, the limit is {limit}",
            "it may publish the need but gets no 立项 funding",
            rules,
            "approval.project_limit",
        )
    ]


APPROVAL_CHECKS: list[Check] = [
    check_rules_apply,
    check_mode_and_category,
    check_demand_eligibility,
    check_total_investment,
    check_solver_count,
    check_related_party,
    check_period,
    check_funding,
    check_project_limit,
]


# ---------------------------------------------------------------------------------------------
# Bid payment and extension checks.


def check_bid_payment(facts: BidPaymentFacts, rules: Rules) -> list[Violation]:
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
    if facts.form not in PAYMENT_FORMS:
        found.append(
            _violation(
                "payment_form_must_be_known",
                f"{where} has form {facts.form!r}",
                f"use one of {', '.join(PAYMENT_FORMS)}",
                rules,
                "funding.eligible_payment_forms",
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


BID_PAYMENT_CHECKS: list[Check] = [check_bid_payment]


def check_extension(facts: ExtensionFacts, rules: Rules) -> list[Violation]:
    a, where, found = rules.approval, f"Extension of {facts.project_code}", []
    if facts.requested_months <= 0:
        found.append(
            _violation(
                "extension_must_be_positive",
                f"{where} asks for {facts.requested_months} months",
                "ask for at least one month",
                rules,
                "approval.max_extension_years",
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


EXTENSION_CHECKS: list[Check] = [check_extension]


def run_checks(registry: Iterable[Check], facts: Any, rules: Rules) -> list[Violation]:
    """Run every check of a registry and collect what they find, errors and warnings alike."""
    return [violation for check in registry for violation in check(facts, rules)]


def errors_only(violations: Iterable[Violation]) -> list[Violation]:
    return [v for v in violations if v.severity == "error"]


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
