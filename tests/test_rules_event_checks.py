"""The checks of events after approval, one boundary at a time (pure: facts and a rules file in,
violations out), and one service refusal naming two broken rules in one line."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from programme_fixtures import ACTOR, D, accepts, approve, jiangmen_world, jm_approval, refuses

from funding_rules import checks
from funding_rules.checks import (
    AppropriationFacts,
    ApprovalRequestFacts,
    BidContractFacts,
    BidPaymentFacts,
    ClosureFacts,
    CollectionFacts,
    EventFacts,
    ExtensionFacts,
    MisuseFacts,
    PartyRegistrationFacts,
    ReleaseFacts,
    RemittanceFacts,
    RuleRefusal,
    SelfFundingFacts,
    SpendFacts,
    StageFacts,
    TerminationFacts,
    TrancheFacts,
    Violation,
    WriteOffFacts,
    run_checks,
)
from funding_rules.loader import get_rules
from ledger.core.money import parse_fen
from ledger.programme import spend

JM = get_rules("jiangmen-2023-trial")
UR = get_rules("urumqi-2024-33")
yuan = parse_fen
DAY = timedelta(days=1)

EVENT = EventFacts("JM2025-003", "release", date(2026, 3, 1), date(2025, 9, 20), lane=1, solver="12440000455858018R")


def open_(event: EventFacts) -> SelfFundingFacts:
    """Any family's facts carrying ``event``, for the project-open checks."""
    return SelfFundingFacts(event, 1, None)


def codes(registry, facts, rules=JM) -> list[str]:
    return [v.code for v in run_checks(registry, facts, rules)]


def one(check, facts, rules=JM) -> list[str]:
    return [v.code for v in check(facts, rules)]


# --- the project is open ------------------------------------------------------------------------


def test_an_event_on_the_approval_day_is_open_the_day_before_is_not():
    assert codes(checks.PROJECT_OPEN_CHECKS, open_(replace(EVENT, date=EVENT.approval_date))) == []
    assert codes(checks.PROJECT_OPEN_CHECKS, open_(replace(EVENT, date=EVENT.approval_date - DAY))) == [
        "event_must_follow_approval"
    ]


def test_terminated_closed_and_eliminated_each_stop_events_and_all_are_reported():
    assert one(checks.check_project_not_terminated, open_(replace(EVENT, terminated_on=date(2026, 1, 1)))) == [
        "project_must_not_be_terminated"
    ]
    assert one(checks.check_project_not_closed, open_(replace(EVENT, closed_on=date(2026, 1, 1)))) == ["project_must_not_be_closed"]
    assert one(checks.check_lane_not_eliminated, open_(replace(EVENT, eliminated_on=date(2026, 1, 1)))) == [
        "lane_must_not_be_eliminated"
    ]
    # A whole-project event ignores lane elimination.
    assert one(checks.check_lane_not_eliminated, open_(replace(EVENT, lane=None, eliminated_on=date(2026, 1, 1)))) == []
    everything = replace(EVENT, date=date(2025, 9, 1), terminated_on=date(2026, 1, 1), closed_on=date(2026, 2, 1),
                         eliminated_on=date(2026, 1, 1))
    assert codes(checks.PROJECT_OPEN_CHECKS, open_(everything)) == [
        "event_must_follow_approval", "project_must_not_be_terminated", "project_must_not_be_closed",
        "lane_must_not_be_eliminated",
    ]


def test_project_open_checks_are_silent_without_event_facts():
    bare = BidPaymentFacts("UR2025-011", "L1", 100, 0, 1, "cash", "active", date(2025, 6, 1), date(2025, 6, 1))
    assert codes(checks.PROJECT_OPEN_CHECKS, bare, UR) == []


# --- amounts, categories, appropriations, parties -------------------------------------------------


def test_one_fen_is_positive_zero_is_not():
    facts = CollectionFacts("JM2025-003", 1, 1, 10)
    assert one(checks.check_amount_positive, facts) == []
    assert one(checks.check_amount_positive, replace(facts, amount_fen=0)) == ["amount_must_be_positive"]
    assert "a collection must be a positive amount, got 0.00." == checks.check_amount_positive(replace(facts, amount_fen=0), JM)[0].message


@pytest.mark.parametrize("category", ["equipment", " Equipment ", "设备费", "间接费用", "labour"])
def test_a_key_or_its_chinese_name_is_a_category(category):
    facts = SelfFundingFacts(replace(EVENT, what="contribution"), 1, category)
    assert one(checks.check_category_known, facts) == []


def test_an_unknown_category_is_refused_and_a_legacy_line_is_a_category_only_for_spending():
    contribution = SelfFundingFacts(replace(EVENT, what="contribution"), 1, "材料费")
    assert one(checks.check_category_known, contribution) == ["budget_category_must_be_known"]
    assert one(checks.check_category_known, replace(contribution, category=None)) == []  # optional, not given
    spending = SpendFacts(EVENT, 1, "材料费", date(2025, 10, 1), date(2028, 9, 30), 10)
    assert one(checks.check_category_known, spending) == []
    assert one(checks.check_category_known, replace(spending, category="咖啡费")) == ["budget_category_must_be_known"]


def test_budget_years_2000_and_2100_are_plausible_1999_and_2101_are_not():
    for year, found in ((2000, []), (2100, []), (1999, ["budget_year_must_be_plausible"]), (2101, ["budget_year_must_be_plausible"])):
        assert codes(checks.APPROPRIATION_CHECKS, AppropriationFacts(year, 1), None) == found
    assert codes(checks.APPROPRIATION_CHECKS, AppropriationFacts(1999, 0), None) == [
        "budget_year_must_be_plausible", "amount_must_be_positive"
    ]


def test_a_party_needs_a_known_kind_and_a_name():
    assert codes(checks.PARTY_CHECKS, PartyRegistrationFacts("institute", "某研究所"), None) == []
    assert codes(checks.PARTY_CHECKS, PartyRegistrationFacts("ngo", "  "), None) == [
        "party_kind_must_be_known", "party_must_have_name"
    ]


# --- approval request ---------------------------------------------------------------------------


def test_the_request_uses_its_own_citys_rules():
    request = ApprovalRequestFacts("JM2025-003", "jiangmen", 1, 0, yuan("1000000.00"))
    assert codes(checks.APPROVAL_REQUEST_CHECKS, request) == []
    assert codes(checks.APPROVAL_REQUEST_CHECKS, replace(request, city="urumqi")) == ["rules_city_must_match_project"]


def test_the_request_gives_the_grant_or_one_bid_per_lane():
    assert one(checks.check_request_funding_inputs, ApprovalRequestFacts("JM2025-003", "jiangmen", 1, 0, 0)) == [
        "approved_grant_must_be_given"
    ]
    request = ApprovalRequestFacts("UR2025-011", "urumqi", 2, 2, None)
    assert one(checks.check_request_funding_inputs, request, UR) == []
    assert one(checks.check_request_funding_inputs, replace(request, bid_contracts=1), UR) == ["bid_contracts_must_match_lanes"]


def test_a_grant_fills_every_tranche_with_at_least_one_fen():
    from test_rules_checks import JM_PROJECT

    smallest = next(g for g in range(1, 1000) if min(checks.tranche_amounts(g, JM)) > 0)
    assert one(checks.check_grant_fills_tranches, replace(JM_PROJECT, approved_grant_fen=smallest)) == []
    assert one(checks.check_grant_fills_tranches, replace(JM_PROJECT, approved_grant_fen=smallest - 1)) == [
        "grant_must_fill_every_tranche"
    ]
    # 赛马 splits the grant among the racers first: each lane's share must fill its tranches.
    saima = replace(JM_PROJECT, mode="saima", solvers=(JM_PROJECT.solvers[0], JM_PROJECT.demand), approved_grant_fen=2 * smallest)
    assert one(checks.check_grant_fills_tranches, saima) == []
    assert one(checks.check_grant_fills_tranches, replace(saima, approved_grant_fen=2 * smallest - 2)) == [
        "grant_must_fill_every_tranche"
    ]


# --- bids ---------------------------------------------------------------------------------------


def test_added_bid_money_fits_the_unobligated_budget_to_the_fen():
    event = replace(EVENT, project_code="UR2025-011", approval_date=date(2025, 6, 20))
    extra = checks.added_subsidy_ceiling_fen(yuan("3000000.00"), yuan("100000.00"), UR)
    assert extra == yuan("40000.00")
    facts = BidContractFacts(event, yuan("100000.00"), yuan("3000000.00"), extra, 2025)
    assert one(checks.check_bid_contract_obligation, facts, UR) == []
    assert one(checks.check_bid_contract_obligation, replace(facts, available_budget_fen=extra - 1), UR) == [
        "obligation_must_fit_available_budget"
    ]
    # A staged grant obligates at approval; added bid money obligates nothing more.
    assert one(checks.check_bid_contract_obligation, replace(facts, available_budget_fen=0), JM) == []


def test_payment_form_and_payments_after_acceptance():
    payment = BidPaymentFacts("UR2025-011", "L1", 100, 0, 1, "cash", "active", date(2025, 6, 1), date(2025, 6, 1))
    assert one(checks.check_payment_form, payment, UR) == []
    assert one(checks.check_payment_form, replace(payment, form="shares"), UR) == ["payment_form_must_be_known"]
    assert one(checks.check_bid_payment_precedes_acceptance, payment, UR) == []
    accepted = replace(payment, acceptance_passed=True)
    assert one(checks.check_bid_payment_precedes_acceptance, accepted, UR) == ["bid_payment_must_precede_acceptance"]
    assert one(checks.check_bid_payment_precedes_acceptance, accepted, JM) == []  # no subsidy to protect


def test_with_event_facts_an_early_payment_is_reported_once_in_the_words_every_event_uses():
    early = BidPaymentFacts("UR2025-011", "L1", 100, 0, 1, "cash", "eliminated", date(2025, 5, 31), date(2025, 6, 1),
                            event=EventFacts("UR2025-011", "bid payment", date(2025, 5, 31), date(2025, 6, 1), lane=1,
                                             eliminated_on=date(2025, 5, 1)))
    assert codes(checks.BID_PAYMENT_CHECKS, early, UR) == ["event_must_follow_approval", "lane_must_not_be_eliminated"]


# --- stages -------------------------------------------------------------------------------------


def test_stage_must_be_known_and_assessments_are_for_saima():
    facts = StageFacts(replace(EVENT, what="stage"), "midterm", ("contract_signed", "midterm", "stage_assessment"), "jbgs")
    assert codes(checks.STAGE_CHECKS, facts) == []
    assert codes(checks.STAGE_CHECKS, replace(facts, stage="kickoff")) == ["stage_must_be_known"]
    assert codes(checks.STAGE_CHECKS, replace(facts, stage="stage_assessment")) == ["stage_assessment_is_for_saima"]
    assert codes(checks.STAGE_CHECKS, replace(facts, stage="stage_assessment", mode="saima")) == []


# --- releases -----------------------------------------------------------------------------------

TRANCHE = TrancheFacts(2, "中期", "grant_share", yuan("100.00"), False, (), "S1 三(九); more")
RELEASE = ReleaseFacts(EVENT, TRANCHE, 0, yuan("100.00"))


def test_a_release_within_the_obligation_passes_one_fen_over_is_refused():
    assert codes(checks.RELEASE_CHECKS, RELEASE) == []
    assert codes(checks.RELEASE_CHECKS, replace(RELEASE, unreleased_fen=yuan("99.99"))) == ["release_must_fit_obligation"]


def test_a_tranche_is_released_once_and_a_paid_tranche_raises_nothing_else():
    assert codes(checks.RELEASE_CHECKS, replace(RELEASE, tranche=None)) == ["tranche_must_not_be_released_twice"]
    paid = replace(RELEASE, tranche=replace(TRANCHE, released=True, unmet_hints=("x",)), unreleased_fen=0)
    assert codes(checks.RELEASE_CHECKS, paid) == ["tranche_must_not_be_released_twice"]


def test_a_tranche_waits_on_its_conditions_and_names_them_with_the_clause():
    waiting = replace(RELEASE, tranche=replace(TRANCHE, unmet_hints=("a passed mid-term check",)))
    [violation] = run_checks(checks.RELEASE_CHECKS, waiting, JM)
    assert violation.code == "tranche_condition_must_be_met"
    assert "waits on a passed mid-term check by 2026-03-01 (S1 三(九))" in violation.message


def test_a_release_pays_something():
    assert codes(checks.RELEASE_CHECKS, replace(RELEASE, tranche=replace(TRANCHE, amount_fen=0))) == [
        "release_must_have_something_due"
    ]
    subsidy = replace(RELEASE, tranche=replace(TRANCHE, basis="subsidy_earned"), payable_fen=1, unreleased_fen=1)
    assert codes(checks.RELEASE_CHECKS, subsidy, UR) == []
    assert checks.release_amount_fen(subsidy) == 1
    assert codes(checks.RELEASE_CHECKS, replace(subsidy, payable_fen=0), UR) == ["release_must_have_something_due"]


# --- spending -----------------------------------------------------------------------------------

SPEND = SpendFacts(replace(EVENT, what="spending"), yuan("100.00"), "business", date(2025, 10, 1), date(2028, 9, 30),
                   yuan("100.00"))


def test_spending_on_the_first_and_last_day_of_the_period_passes_a_day_outside_does_not():
    for day in (SPEND.period_start, SPEND.period_end):
        assert codes(checks.SPEND_CHECKS, replace(SPEND, event=replace(SPEND.event, date=day))) == []
    for day in (SPEND.period_start - DAY, SPEND.period_end + DAY):
        assert codes(checks.SPEND_CHECKS, replace(SPEND, event=replace(SPEND.event, date=day))) == [
            "spending_must_fall_in_project_period"
        ]


def test_spending_up_to_the_advances_passes_one_fen_more_does_not():
    assert codes(checks.SPEND_CHECKS, replace(SPEND, advances_fen=SPEND.amount_fen - 1)) == ["spending_must_not_exceed_advances"]


def test_equipment_at_the_threshold_needs_a_justification_one_fen_below_does_not():
    threshold = JM.spending.equipment_justify_threshold_fen
    at = replace(SPEND, category="equipment", amount_fen=threshold, advances_fen=threshold)
    assert one(checks.check_equipment_justified, at) == ["equipment_at_threshold_must_be_justified"]
    assert one(checks.check_equipment_justified, replace(at, justification="五轴机床, 规格见附件")) == []
    assert one(checks.check_equipment_justified, replace(at, amount_fen=threshold - 1)) == []
    assert one(checks.check_equipment_justified, replace(at, category="设备费")) == ["equipment_at_threshold_must_be_justified"]


def test_indirect_costs_up_to_the_cap_pass_one_fen_more_does_not():
    direct = replace(SPEND, direct_spent_fen=yuan("1000000.00"), equipment_spent_fen=yuan("200000.00"), category="indirect")
    cap = checks.spend_indirect_cap_fen(direct, JM)
    assert cap == checks.indirect_cap_fen(yuan("1000000.00"), yuan("200000.00"), JM)
    assert one(checks.check_indirect_cap, replace(direct, amount_fen=cap - 10, indirect_spent_fen=10)) == []
    assert one(checks.check_indirect_cap, replace(direct, amount_fen=cap - 9, indirect_spent_fen=10)) == [
        "indirect_costs_must_not_exceed_cap"
    ]
    assert one(checks.check_indirect_cap, replace(direct, amount_fen=cap + 1, category="business")) == []


# --- extension, termination, closure --------------------------------------------------------------


def test_an_extension_cites_the_bureaus_approval():
    facts = ExtensionFacts("JM2025-003", 0, 6, date(2028, 1, 1), date(2028, 9, 30), reference="江科〔2028〕1号")
    assert one(checks.check_extension_reference, facts) == []
    assert one(checks.check_extension_reference, replace(facts, reference=" ")) == ["extension_must_cite_approval"]
    assert one(checks.check_extension_reference, replace(facts, reference=None)) == []  # not part of these facts


TERMINATION = TerminationFacts(replace(EVENT, what="termination", lane=None), "江科〔2026〕9号")


def test_a_termination_happens_once_cites_a_decision_and_ties_misuse_to_a_spend():
    assert codes(checks.TERMINATION_CHECKS, TERMINATION) == []
    terminated = replace(TERMINATION, event=replace(TERMINATION.event, terminated_on=date(2026, 1, 1)))
    assert codes(checks.TERMINATION_CHECKS, terminated) == ["project_must_be_terminated_once"]
    assert codes(checks.TERMINATION_CHECKS, replace(TERMINATION, reference="")) == ["termination_must_cite_approval"]
    revocation = replace(TERMINATION, event=replace(TERMINATION.event, what="revocation"), reference="")
    assert codes(checks.TERMINATION_CHECKS, revocation) == ["revocation_must_cite_approval"]
    at_the_spend = replace(TERMINATION, misused=(MisuseFacts("PZ-1", 500, 500),))
    assert codes(checks.TERMINATION_CHECKS, at_the_spend) == []
    assert codes(checks.TERMINATION_CHECKS, replace(at_the_spend, misused=(MisuseFacts("PZ-1", 501, 500),))) == [
        "misuse_must_not_exceed_the_spend"
    ]
    assert codes(checks.TERMINATION_CHECKS, replace(at_the_spend, misused=(MisuseFacts("PZ-1", 0, 500),))) == [
        "misuse_must_not_exceed_the_spend"
    ]
    assert codes(checks.TERMINATION_CHECKS, replace(at_the_spend, misused=(MisuseFacts("PZ-9", 1, None),))) == [
        "misuse_must_name_a_spend_voucher"
    ]


def test_a_closure_follows_acceptance_and_the_final_release_and_cites_the_acceptance():
    closure = ClosureFacts(replace(EVENT, what="closure", lane=None), (), "验收〔2028〕3号", ((1, 0), (2, 0)))
    assert codes(checks.CLOSURE_CHECKS, closure) == []
    assert codes(checks.CLOSURE_CHECKS, replace(closure, missing_hints=("a passed acceptance",))) == [
        "closure_must_follow_acceptance"
    ]
    assert codes(checks.CLOSURE_CHECKS, replace(closure, reference="")) == ["closure_must_cite_approval"]
    assert codes(checks.CLOSURE_CHECKS, replace(closure, unpaid_subsidy=((1, 1), (2, 1))), UR) == [
        "closure_must_follow_final_release", "closure_must_follow_final_release"
    ]


# --- recovery -----------------------------------------------------------------------------------


def test_collection_and_write_off_up_to_the_outstanding_clawback_pass_one_fen_more_does_not():
    collection = CollectionFacts("JM2025-003", 1, 100, 100)
    assert codes(checks.COLLECTION_CHECKS, collection) == []
    assert codes(checks.COLLECTION_CHECKS, replace(collection, amount_fen=101)) == ["collection_must_not_exceed_outstanding"]
    write_off = WriteOffFacts("JM2025-003", 1, 100, 100, "破产清算", "江财〔2027〕5号")
    assert codes(checks.WRITE_OFF_CHECKS, write_off) == []
    assert codes(checks.WRITE_OFF_CHECKS, replace(write_off, amount_fen=101)) == ["write_off_must_not_exceed_outstanding"]
    assert codes(checks.WRITE_OFF_CHECKS, replace(write_off, approval=" ")) == ["write_off_must_have_reason_and_approval"]


def test_a_remittance_up_to_what_is_owed_passes_one_fen_more_does_not():
    assert codes(checks.REMITTANCE_CHECKS, RemittanceFacts(100, 100), None) == []
    assert codes(checks.REMITTANCE_CHECKS, RemittanceFacts(101, 100), None) == ["remittance_must_not_exceed_amount_owed"]


# --- one refusal, every error ------------------------------------------------------------------


def test_a_refusal_keeps_the_first_code_and_sentence_and_names_the_others_in_one_line():
    first = Violation("a_must_hold", "A is wrong (S1); fix A.", "S1")
    second = Violation("b_must_hold", "B is wrong.", "S2")
    warning = Violation("c_should_hold", "C is high.", "S3", severity="warning")
    assert str(RuleRefusal([first])) == "A is wrong (S1); fix A."
    with pytest.raises(RuleRefusal) as caught:
        checks.refuse_errors([first, warning, second])
    refusal = caught.value
    assert refusal.code == "a_must_hold"
    assert refusal.message == "A is wrong (S1); fix A; also: B is wrong."
    assert [v.code for v in refusal.violations] == ["a_must_hold", "b_must_hold"]
    checks.refuse_errors([warning])  # warnings never block


def test_spending_before_the_period_and_beyond_the_advances_is_refused_naming_both(engine, session_factory):
    with session_factory() as s:
        jiangmen_world(s)
    accepts(engine, session_factory, lambda s: approve(s, jm_approval()))
    refusal = refuses(
        engine, session_factory,
        lambda s: spend(s, project="JM2025-003", lane=None, amount_fen=yuan("1,000.00"), category="business",
                        date=D(2025, 9, 25), voucher=None, actor=ACTOR),
        "spending_must_fall_in_project_period",
    )
    assert refusal.message.startswith("spending on 2025-09-25 is outside JM2025-003's period 2025-10-01..2028-09-30")
    assert "; also: spending of 1,000.00 by JM2025-003 L1 exceeds its advances outstanding 0.00" in refusal.message
    assert [v.code for v in refusal.violations] == ["spending_must_fall_in_project_period", "spending_must_not_exceed_advances"]
