"""Policy checks and computations, read like the policy: both sides of every boundary."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funding_rules.checks import (
    APPROVAL_CHECKS,
    BID_PAYMENT_CHECKS,
    EXTENSION_CHECKS,
    ApprovalFacts,
    BidPaymentFacts,
    ExtensionFacts,
    PartyFacts,
    add_years,
    audit_required,
    budget_category,
    errors_only,
    indirect_cap_fen,
    run_checks,
    saima_lane_split,
    subsidy_ceiling_fen,
    subsidy_due,
    tranche_amounts,
    unmet_conditions,
)
from funding_rules.loader import get_rules, load_rules_file
from ledger.core.errors import Refusal
from ledger.core.money import format_fen_grouped, parse_fen

JM = get_rules("jiangmen-2023-trial")
UR = get_rules("urumqi-2024-33")
SZ = load_rules_file(Path(__file__).parent / "fixtures" / "rules" / "shenzhen-example.toml")

yuan = parse_fen
FEN = 1
DAY = timedelta(days=1)

DEMAND = PartyFacts(uscc="91440700MA4UJ00013", name="江门某家电", revenue_fen=yuan("600000000.00"))
UNIVERSITY = PartyFacts(uscc="12440000455858018R", kind="university", name="某大学")
INSTITUTE = PartyFacts(uscc="12100000400010001P", kind="institute", name="某研究所")
FIRM = PartyFacts(uscc="91110000600037341L", name="某科技公司")
RACER_4 = PartyFacts(uscc="91350100M000100Y43", name="第四家")

JM_PROJECT = ApprovalFacts(
    code="JM2025-003",
    city="jiangmen",
    mode="jbgs",
    category="tech_breakthrough",
    approval_date=date(2025, 9, 20),
    start_date=date(2025, 10, 1),
    end_date=date(2028, 9, 30),
    total_investment_fen=yuan("3000000.00"),
    demand=DEMAND,
    solvers=(UNIVERSITY,),
    available_appropriation_fen=yuan("1000000.00"),
    approved_grant_fen=yuan("1000000.00"),
)
UR_PROJECT = ApprovalFacts(
    code="UR2025-011",
    city="urumqi",
    mode="jbgs",
    category="commercialization",
    approval_date=date(2025, 6, 1),
    start_date=date(2025, 7, 1),
    end_date=date(2027, 6, 30),
    total_investment_fen=yuan("5000000.00"),
    demand=PartyFacts(uscc="91650100MA7B00011L", name="新疆某光伏"),
    solvers=(UNIVERSITY,),
    available_appropriation_fen=yuan("1200000.00"),
    bid_contract_fen=(yuan("3000000.00"),),
)


def codes(facts, rules, registry=APPROVAL_CHECKS) -> list[str]:
    return [v.code for v in run_checks(registry, facts, rules)]


def test_the_baseline_projects_pass_every_check():
    assert run_checks(APPROVAL_CHECKS, JM_PROJECT, JM) == []
    assert run_checks(APPROVAL_CHECKS, UR_PROJECT, UR) == []


# --- which rules apply -----------------------------------------------------------------------


def test_rules_of_another_city_are_refused():
    assert codes(replace(JM_PROJECT, city="urumqi"), JM) == ["rules_city_must_match_project"]


def test_rules_must_be_in_force_on_the_approval_date():
    assert codes(replace(JM_PROJECT, approval_date=date(2023, 1, 1)), JM) == []
    assert codes(replace(JM_PROJECT, approval_date=date(2022, 12, 31)), JM) == [
        "rules_version_must_be_in_force_on_approval_date"
    ]


def test_mode_and_category_come_from_closed_sets():
    assert "mode_must_be_jbgs_or_saima" in codes(replace(JM_PROJECT, mode="race"), JM)
    assert codes(replace(JM_PROJECT, category="basic_research"), JM) == ["category_must_be_known"]


# --- Jiangmen demand-side eligibility (S1 二(一)) -------------------------------------------


@pytest.mark.parametrize(
    "demand,ok",
    [
        (PartyFacts(DEMAND.uscc, revenue_fen=yuan("500000000.00")), True),
        (PartyFacts(DEMAND.uscc, revenue_fen=yuan("499999999.99")), False),
        (PartyFacts(DEMAND.uscc, revenue_fen=yuan("100000000.00"), rnd_intensity=Decimal("0.10"), above_scale=True), True),
        (PartyFacts(DEMAND.uscc, revenue_fen=yuan("100000000.00"), rnd_intensity=Decimal("0.0999"), above_scale=True), False),
        # The R&D-ratio route is for a 规模以上 enterprise (S1 二(一)1), whatever its ratio.
        (PartyFacts(DEMAND.uscc, revenue_fen=yuan("100000000.00"), rnd_intensity=Decimal("0.10")), False),
        (PartyFacts(DEMAND.uscc, innovation_star=True), True),
        (PartyFacts(DEMAND.uscc), False),
    ],
)
def test_demand_side_qualifies_by_any_one_test(demand, ok):
    found = codes(replace(JM_PROJECT, demand=demand), JM)
    assert found == ([] if ok else ["demand_side_must_meet_one_eligibility_test"])


def test_the_eligibility_message_gives_the_numbers_the_clause_and_the_fix():
    [violation] = run_checks(
        APPROVAL_CHECKS, replace(JM_PROJECT, demand=PartyFacts(DEMAND.uscc, revenue_fen=1)), JM
    )
    assert "revenue 0.01 < 500,000,000.00" in violation.message
    assert "R&D intensity undeclared < 0.10" in violation.message
    assert "S1 江门 工作方案 二(一)1" in violation.message and violation.clause.startswith("S1")
    assert violation.message.endswith("choose another demand side.")


def test_bad_credit_disqualifies_even_a_large_firm():
    demand = replace(DEMAND, bad_credit_within_lookback=True)
    assert codes(replace(JM_PROJECT, demand=demand), JM) == ["demand_side_must_have_clean_credit"]


def test_urumqi_has_no_demand_side_tests():
    demand = replace(UR_PROJECT.demand, bad_credit_within_lookback=True)
    assert codes(replace(UR_PROJECT, demand=demand), UR) == []


# --- total investment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "project,rules,minimum", [(JM_PROJECT, JM, "3000000.00"), (UR_PROJECT, UR, "5000000.00")]
)
def test_total_investment_exactly_at_the_minimum_passes_one_fen_below_is_refused(
    project, rules, minimum
):
    assert codes(replace(project, total_investment_fen=yuan(minimum)), rules) == []
    [violation] = run_checks(
        APPROVAL_CHECKS, replace(project, total_investment_fen=yuan(minimum) - FEN), rules
    )
    assert violation.code == "total_investment_must_reach_minimum"
    assert (
        f"total investment {format_fen_grouped(yuan(minimum) - FEN)}, below the minimum"
        in violation.message
    )


def test_total_investment_message_reads_as_one_sentence():
    [violation] = run_checks(
        APPROVAL_CHECKS, replace(JM_PROJECT, total_investment_fen=yuan("2999999.99")), JM
    )
    assert violation.message == (
        "Project JM2025-003 has total investment 2,999,999.99, below the minimum 3,000,000.00 "
        "(S1 江门 工作方案 二(一): 每个发榜项目研发总投入不低于300万元); "
        "raise the committed investment or do not approve."
    )


def test_urumqi_total_must_include_the_bid_contracts():
    project = replace(
        UR_PROJECT,
        bid_contract_fen=(yuan("5000000.01"),),
        available_appropriation_fen=yuan("9000000"),
    )
    assert "total_investment_must_include_bid_contracts" in codes(project, UR)


# --- solvers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "solvers,ok", [((), False), ((UNIVERSITY,), True), ((UNIVERSITY, FIRM), False)]
)
def test_jbgs_has_exactly_one_solver(solvers, ok):
    assert codes(replace(JM_PROJECT, solvers=solvers), JM) == (
        [] if ok else ["jbgs_solver_count_must_be_exact"]
    )


def test_jiangmen_saima_needs_two_racers_and_has_no_maximum():
    saima = replace(JM_PROJECT, mode="saima")
    assert codes(replace(saima, solvers=(UNIVERSITY,)), JM) == [
        "saima_racer_count_must_reach_minimum"
    ]
    assert codes(replace(saima, solvers=(UNIVERSITY, FIRM)), JM) == []
    assert codes(replace(saima, solvers=(UNIVERSITY, FIRM, INSTITUTE, RACER_4)), JM) == []


def test_urumqi_saima_allows_three_racers_not_four():
    saima = replace(
        UR_PROJECT,
        mode="saima",
        total_investment_fen=yuan("20000000.00"),
        available_appropriation_fen=yuan("10000000.00"),
    )
    three = replace(
        saima, solvers=(UNIVERSITY, FIRM, INSTITUTE), bid_contract_fen=(yuan("1000000.00"),) * 3
    )
    four = replace(
        saima,
        solvers=(UNIVERSITY, FIRM, INSTITUTE, RACER_4),
        bid_contract_fen=(yuan("1000000.00"),) * 4,
    )
    assert codes(three, UR) == []
    assert codes(four, UR) == ["saima_racer_count_must_not_exceed_maximum"]


def test_the_same_solver_cannot_race_twice():
    project = replace(JM_PROJECT, mode="saima", solvers=(UNIVERSITY, UNIVERSITY))
    assert codes(project, JM) == ["solvers_must_be_distinct"]


# --- related parties (S2 二(三)) ---------------------------------------------------------------


@pytest.mark.parametrize("case", ["declared-by-demand", "declared-by-solver", "same-unit"])
def test_urumqi_refuses_a_related_solver_and_jiangmen_does_not(case):
    def world(project):
        demand, solver = project.demand, UNIVERSITY
        if case == "declared-by-demand":
            demand = replace(demand, related_usccs=frozenset({UNIVERSITY.uscc}))
        elif case == "declared-by-solver":
            solver = replace(UNIVERSITY, related_usccs=frozenset({demand.uscc}))
        else:
            solver = replace(UNIVERSITY, uscc=demand.uscc)
        return replace(project, demand=demand, solvers=(solver,))

    # The same unit on both sides is also refused by both cities as its own solver.
    own = ["demand_side_must_not_be_its_own_solver"] if case == "same-unit" else []
    assert codes(world(UR_PROJECT), UR) == ["solver_must_not_be_related_to_demand_side"] + own
    assert codes(world(JM_PROJECT), JM) == own


# --- period (S1 五(三)) ---------------------------------------------------------------------


@pytest.mark.parametrize("start", [date(2025, 10, 1), date(2024, 2, 29)])
def test_period_may_last_three_years_to_the_day_not_one_day_more(start):
    # The end date is inclusive: 2025-10-01..2028-09-30 is exactly three years.
    limit = add_years(start, 3) - DAY
    project = replace(JM_PROJECT, approval_date=start)
    assert codes(replace(project, start_date=start, end_date=limit), JM) == []
    assert codes(replace(project, start_date=start, end_date=limit + DAY), JM) == [
        "period_must_not_exceed_maximum_years"
    ]


def test_a_leap_day_start_ends_on_28_february():
    assert add_years(date(2024, 2, 29), 3) == date(2027, 2, 28)


def test_period_must_end_after_start():
    assert codes(replace(JM_PROJECT, end_date=JM_PROJECT.start_date), JM) == [
        "period_must_end_after_start"
    ]
    assert codes(replace(JM_PROJECT, end_date=JM_PROJECT.start_date + DAY), JM) == []


# --- funding within the appropriation -----------------------------------------------------


def test_jiangmen_grant_fits_the_appropriation_to_the_fen():
    project = replace(JM_PROJECT, approved_grant_fen=yuan("1000000.00"))
    assert codes(replace(project, available_appropriation_fen=yuan("1000000.00")), JM) == []
    assert codes(replace(project, available_appropriation_fen=yuan("999999.99")), JM) == [
        "grant_must_fit_available_appropriation"
    ]


def test_jiangmen_grant_must_be_given():
    assert codes(replace(JM_PROJECT, approved_grant_fen=None), JM) == [
        "approved_grant_must_be_given"
    ]


def test_urumqi_ceiling_is_forty_percent_of_the_contracts_and_must_fit():
    project = replace(
        UR_PROJECT,
        mode="saima",
        solvers=(UNIVERSITY, FIRM),
        bid_contract_fen=(yuan("2500000.00"), yuan("500000.00")),
    )
    assert subsidy_ceiling_fen(project.bid_contract_fen, UR) == yuan("1200000.00")
    assert codes(replace(project, available_appropriation_fen=yuan("1200000.00")), UR) == []
    assert codes(replace(project, available_appropriation_fen=yuan("1199999.99")), UR) == [
        "grant_must_fit_available_appropriation"
    ]


def test_urumqi_needs_one_contract_per_lane():
    assert codes(replace(UR_PROJECT, bid_contract_fen=()), UR) == [
        "bid_contracts_must_match_solvers"
    ]


def test_urumqi_warns_above_five_million_but_does_not_refuse():
    at = replace(
        UR_PROJECT,
        total_investment_fen=yuan("20000000.00"),
        available_appropriation_fen=yuan("9000000.00"),
        bid_contract_fen=(yuan("12500000.00"),),
    )
    assert codes(at, UR) == []
    above = replace(
        at, bid_contract_fen=(yuan("12500000.03"),)
    )  # 40% = 5,000,000.012 → 5,000,000.01
    found = run_checks(APPROVAL_CHECKS, above, UR)
    assert [(v.code, v.severity) for v in found] == [
        ("subsidy_should_not_exceed_warning_level", "warning")
    ]
    assert errors_only(found) == []


def test_a_maximum_grant_where_the_rules_set_one():
    project = replace(
        UR_PROJECT,
        city="shenzhen",
        approval_date=date(2025, 6, 1),
        total_investment_fen=yuan("20000000"),
        available_appropriation_fen=yuan("9000000.00"),
        bid_contract_fen=(yuan("10000000.00"),),
    )
    assert codes(project, SZ) == []  # min(50%, cap 30%) of 10,000,000 = 3,000,000.00, the maximum
    assert codes(replace(project, bid_contract_fen=(yuan("10000000.04"),)), SZ) == [
        "grant_must_not_exceed_maximum"
    ]


def test_project_limit_where_the_rules_set_one():
    project = replace(
        UR_PROJECT,
        city="shenzhen",
        total_investment_fen=yuan("10000000.00"),
        bid_contract_fen=(yuan("1000000.00"),),
    )
    assert codes(replace(project, demand=replace(DEMAND, projects_in_progress=1)), SZ) == []
    assert codes(replace(project, demand=replace(DEMAND, projects_in_progress=2)), SZ) == [
        "demand_side_must_be_within_project_limit"
    ]


# --- bid payments ----------------------------------------------------------------------------

PAYMENT = BidPaymentFacts(
    project_code="UR2025-011",
    lane="1",
    contracted_fen=yuan("3000000.00"),
    paid_so_far_fen=yuan("2000000.00"),
    amount_fen=yuan("1000000.00"),
    form="cash",
    lane_status="active",
    payment_date=date(2025, 6, 1),
    approval_date=date(2025, 6, 1),
)


def test_a_bid_payment_may_reach_the_contract_not_one_fen_more():
    assert codes(PAYMENT, UR, BID_PAYMENT_CHECKS) == []
    assert codes(replace(PAYMENT, amount_fen=PAYMENT.amount_fen + FEN), UR, BID_PAYMENT_CHECKS) == [
        "bid_payment_must_not_exceed_contract"
    ]


def test_a_bid_payment_on_the_approval_day_passes_the_day_before_is_refused():
    assert codes(replace(PAYMENT, payment_date=date(2025, 5, 31)), UR, BID_PAYMENT_CHECKS) == [
        "bid_payment_must_not_precede_approval"
    ]


@pytest.mark.parametrize("status", ["eliminated", "terminated"])
def test_no_bid_payment_to_a_lane_that_left_the_race(status):
    assert codes(replace(PAYMENT, lane_status=status), UR, BID_PAYMENT_CHECKS) == [
        "lane_must_be_active"
    ]


def test_bid_payment_amount_and_form():
    assert codes(replace(PAYMENT, amount_fen=0), UR, BID_PAYMENT_CHECKS) == [
        "bid_payment_must_be_positive"
    ]
    assert codes(replace(PAYMENT, form="shares"), UR, BID_PAYMENT_CHECKS) == [
        "payment_form_must_be_known"
    ]
    assert (
        codes(replace(PAYMENT, form="equity"), UR, BID_PAYMENT_CHECKS) == []
    )  # recorded, earns nothing


# --- extensions -------------------------------------------------------------------------------

EXTENSION = ExtensionFacts(
    project_code="JM2025-003",
    extensions_so_far=0,
    requested_months=12,
    request_date=date(2028, 10, 1),
    current_end_date=date(2028, 10, 1),
)


def test_one_extension_of_up_to_a_year_requested_by_the_last_day():
    assert codes(EXTENSION, JM, EXTENSION_CHECKS) == []
    assert codes(replace(EXTENSION, extensions_so_far=1), JM, EXTENSION_CHECKS) == [
        "extension_count_must_not_exceed_maximum"
    ]
    assert codes(replace(EXTENSION, requested_months=13), JM, EXTENSION_CHECKS) == [
        "extension_must_not_exceed_maximum_length"
    ]
    assert codes(replace(EXTENSION, request_date=date(2028, 10, 2)), JM, EXTENSION_CHECKS) == [
        "extension_must_be_requested_before_period_ends"
    ]
    assert codes(replace(EXTENSION, requested_months=0), JM, EXTENSION_CHECKS) == [
        "extension_must_be_positive"
    ]


def test_no_extension_count_limit_where_the_rules_set_none():
    assert (
        codes(replace(EXTENSION, extensions_so_far=5, requested_months=24), SZ, EXTENSION_CHECKS)
        == []
    )


# --- the Urumqi subsidy (S2 二(六)) -----------------------------------------------------------


def test_cash_earns_forty_percent_and_equity_earns_nothing():
    due, trace = subsidy_due(
        yuan("1000000.00"), yuan("3000000.00"), 0, UR, excluded_fen={"equity": yuan("500000.00")}
    )
    assert due == yuan("400000.00")
    assert trace["exclusions"] == {"equity": "500000.00"} and trace["base"] == "1000000.00"
    assert (
        trace["formula"]
        == "min(round_half_up(0.40 × 1000000.00), round_half_up(0.40 × 3000000.00)) − 0.00"
    )
    assert trace["result"] == "400000.00" and trace["clause"].startswith(
        "S2 乌鲁木齐 工作指引 二(六)"
    )
    json.dumps(trace)  # the trace goes into the journal entry as JSON


def test_subsidy_never_passes_forty_percent_of_the_contract():
    due, trace = subsidy_due(yuan("3500000.00"), yuan("3000000.00"), yuan("1000000.00"), UR)
    assert (due, trace["earned_uncapped"], trace["cap"]) == (
        yuan("200000.00"),
        "1400000.00",
        "1200000.00",
    )


def test_subsidy_rounds_half_up_to_the_fen():
    assert subsidy_due(1, yuan("1000.00"), 0, SZ)[0] == 1  # 50% of 1 fen = 0.5 fen → 1 fen
    assert subsidy_due(1, yuan("1000.00"), 0, UR)[0] == 0  # 40% of 1 fen = 0.4 fen → 0


def test_a_negative_due_is_returned_for_the_service_to_reverse():
    assert subsidy_due(yuan("100.00"), yuan("1000.00"), yuan("50.00"), UR)[0] == -yuan("10.00")


def test_no_subsidy_under_staged_grant_rules():
    with pytest.raises(Refusal) as refusal:
        subsidy_due(100, 100, 0, JM)
    assert refusal.value.code == "rules_must_define_a_bid_subsidy"


@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=30), st.integers(0, 3 * 10**10))
def test_subsidy_earned_payment_by_payment_equals_one_shot(payments, headroom):
    contract = sum(payments) + headroom
    cumulative = earned = 0
    for amount in payments:
        cumulative += amount
        due, _ = subsidy_due(cumulative, contract, earned, UR)
        assert due >= 0
        earned += due
    assert (
        earned == subsidy_due(cumulative, contract, 0, UR)[0] <= subsidy_ceiling_fen([contract], UR)
    )


# --- splits --------------------------------------------------------------------------------


def test_jiangmen_grant_splits_sixty_forty():
    assert tranche_amounts(yuan("1000000.00"), JM) == [yuan("600000.00"), yuan("400000.00")]
    assert tranche_amounts(3, JM) == [
        2,
        1,
    ]  # 1.8 + 1.2 fen: the odd fen goes to the earliest tranche


def test_no_grant_shares_under_urumqi_rules():
    with pytest.raises(Refusal):
        tranche_amounts(100, UR)


@given(st.integers(0, 10**15))
def test_tranche_parts_always_add_up(grant):
    parts = tranche_amounts(grant, JM)
    assert sum(parts) == grant and all(p >= 0 for p in parts)
    assert parts[0] >= grant * 6 // 10 and parts[1] <= grant * 4 // 10 + 1


def test_saima_split_is_equal_to_the_fen():
    assert saima_lane_split(yuan("1000000.00"), 3) == [33333334, 33333333, 33333333]
    with pytest.raises(ValueError):
        saima_lane_split(100, 0)


@given(st.integers(0, 10**15), st.integers(1, 10))
def test_saima_parts_add_up_and_differ_by_at_most_one_fen(amount, lanes):
    parts = saima_lane_split(amount, lanes)
    assert (
        sum(parts) == amount
        and max(parts) - min(parts) <= 1
        and parts == sorted(parts, reverse=True)
    )


# --- spending -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "direct,equipment,cap",
    [
        ("5000000.00", "0.00", "1500000.00"),
        ("5000000.01", "0.00", "1500000.00"),  # 0.01 × 25% = 0.0025 fen, rounded down
        ("10000000.00", "0.00", "2750000.00"),
        ("12000000.00", "0.00", "3150000.00"),
        ("12000000.00", "2000000.00", "2750000.00"),  # equipment purchase is outside the base
        ("0.01", "0.00", "0.00"),
    ],
)
def test_indirect_cap_uses_marginal_national_tiers(direct, equipment, cap):
    assert indirect_cap_fen(yuan(direct), yuan(equipment), JM) == yuan(cap)


def test_pure_theory_research_may_take_sixty_percent():
    assert indirect_cap_fen(yuan("12000000.00"), 0, JM, pure_theory=True) == yuan("7200000.00")


def test_equipment_cannot_exceed_direct_costs():
    with pytest.raises(ValueError):
        indirect_cap_fen(100, 101, JM)


@given(st.integers(0, 10**11), st.integers(0, 10**9))
def test_indirect_cap_rises_with_the_base_and_never_exceeds_thirty_percent(base, more):
    low, high = indirect_cap_fen(base, 0, UR), indirect_cap_fen(base + more, 0, UR)
    assert 0 <= low <= high and low * 10 <= base * 3


def test_legacy_budget_lines_map_to_the_2021_categories():
    assert [
        budget_category(line, JM)
        for line in ("材料费", "专家咨询费", "设备费", "间接费用", "业务费", "labour")
    ] == ["business", "labour", "equipment", "indirect", "business", "labour"]
    with pytest.raises(Refusal) as refusal:
        budget_category("招待费", JM)
    assert refusal.value.code == "budget_line_must_be_known"


# --- tranche conditions and closure -------------------------------------------------------


def test_saima_midterm_tranche_waits_on_the_lane_passing_its_stage():
    midterm = JM.tranches[1]
    assert unmet_conditions(midterm, "jbgs", {"contract_signed"}) == ("midterm_passed",)
    assert unmet_conditions(midterm, "saima", {"contract_signed", "midterm_passed"}) == (
        "stage_passed",
    )
    assert unmet_conditions(midterm, "saima", {"stage_passed"}) == ()


def test_urumqi_final_tranche_waits_on_acceptance_and_audit():
    assert unmet_conditions(UR.tranches[1], "jbgs", {"acceptance_passed"}) == (
        "audit_report_received",
    )


def test_audit_always_or_from_a_threshold():
    assert audit_required(0, JM) and audit_required(0, UR)
    assert not audit_required(yuan("999999.99"), SZ)
    assert audit_required(yuan("1000000.00"), SZ)


# --- eligibility gates (issue 14) -------------------------------------------------------------


def test_the_demand_side_is_registered_in_the_city_or_an_override_reason_is_recorded():
    outside = replace(DEMAND, uscc="91650100MA7B00011L")  # registered in 乌鲁木齐 (650100)
    assert codes(replace(JM_PROJECT, demand=outside), JM) == ["demand_side_must_be_registered_in_the_city"]
    assert codes(replace(JM_PROJECT, demand=outside, registration_override="总部迁入江门，登记变更中"), JM) == []
    assert codes(replace(JM_PROJECT, demand=outside, registration_override="  "), JM) == [
        "demand_side_must_be_registered_in_the_city"]
    # The prefix is the division: 4407xx anywhere in 江门 passes, 4406xx (佛山) does not.
    assert codes(replace(JM_PROJECT, demand=replace(DEMAND, uscc="91440703MA4W2B389N")), JM) == []
    assert codes(replace(JM_PROJECT, demand=replace(DEMAND, uscc="91440604MA4W2B389N")), JM) == [
        "demand_side_must_be_registered_in_the_city"]
    assert codes(replace(UR_PROJECT, demand=replace(UR_PROJECT.demand, uscc=DEMAND.uscc)), UR) == [
        "demand_side_must_be_registered_in_the_city"]
    [violation] = run_checks(APPROVAL_CHECKS, replace(JM_PROJECT, demand=outside), JM)
    assert "division 650100" in violation.message and "在我市注册的" in violation.message


def test_the_demand_side_is_an_enterprise_where_the_text_says_so():
    university = replace(DEMAND, kind="university")
    assert codes(replace(JM_PROJECT, demand=university), JM) == ["demand_side_kind_must_be_allowed"]
    assert codes(replace(UR_PROJECT, demand=replace(UR_PROJECT.demand, kind="institute")), UR) == [
        "demand_side_kind_must_be_allowed"]
    assert "demand_side_kind_must_be_allowed" not in codes(replace(JM_PROJECT, demand=university, city="shenzhen"), SZ)


def test_a_solver_with_bad_credit_in_the_look_back_is_refused_in_jiangmen_only():
    bad = replace(UNIVERSITY, bad_credit_within_lookback=True)
    assert codes(replace(JM_PROJECT, solvers=(bad,)), JM) == ["solver_must_have_clean_credit"]
    assert codes(replace(JM_PROJECT, solvers=(UNIVERSITY,)), JM) == []
    assert codes(replace(UR_PROJECT, solvers=(bad,)), UR) == []


def test_the_grant_is_at_most_the_total_investment_one_fen_either_side():
    total = JM_PROJECT.total_investment_fen
    assert codes(replace(JM_PROJECT, approved_grant_fen=total, available_appropriation_fen=total + 1), JM) == []
    assert codes(replace(JM_PROJECT, approved_grant_fen=total + FEN, available_appropriation_fen=total + 1), JM) == [
        "grant_must_not_exceed_share_of_total_investment"]
    # Urumqi: the ceiling 40% × bids is at most 40% of the total, since the bids are within it.
    at_total = replace(UR_PROJECT, bid_contract_fen=(UR_PROJECT.total_investment_fen,), available_appropriation_fen=yuan("9000000.00"))
    assert codes(at_total, UR) == []


def test_the_period_starts_at_most_the_window_before_approval():
    approved = JM_PROJECT.approval_date
    window = JM.approval.start_before_approval_max_days
    earliest = approved - timedelta(days=window)
    assert codes(replace(JM_PROJECT, start_date=earliest, end_date=earliest + timedelta(days=700)), JM) == []
    assert codes(replace(JM_PROJECT, start_date=earliest - DAY, end_date=earliest + timedelta(days=700)), JM) == [
        "period_must_not_start_long_before_approval"]
    # The case: a 2020–2022 period approved in 2025.
    assert "period_must_not_start_long_before_approval" in codes(
        replace(JM_PROJECT, start_date=date(2020, 1, 1), end_date=date(2022, 12, 31)), JM)
