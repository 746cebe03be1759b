"""Each rule of domain-facts §9 that approval, bids, subsidy and tranches enforce, from both
sides of its boundary (one fen or one day), through the services and the CLI, on both backends.

A refused event is attempted inside a transaction that commits anyway, and every table an
event can write is counted before and after: "nothing written" is the service's doing.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from programme_fixtures import (
    ACTOR,
    DAY,
    JM_DEMAND,
    JM_FIRM,
    JM_INSTITUTE,
    JM_UNIVERSITY,
    LEGACY_FUJIAN,
    UR_DEMAND,
    UR_SOLVER,
    UR_SOLVER_2,
    UR_SOLVER_3,
    UR_SOLVER_4,
    D,
    accepts,
    add_budget,
    add_party,
    approve,
    cli_refused,
    entry_count,
    jiangmen_world,
    jm_approval,
    refuses,
    spare_uscc,
    table_counts,
    ur_approval,
    urumqi_world,
    yuan,
)
from sqlalchemy import select

from ledger.core.journal import EntryDraft, PostingDraft, post, reverse
from ledger.core.models import JournalEntry
from ledger.programme import (
    bid_contract,
    bid_pay,
    chart,
    pledge,
    project_balances,
    record_stage,
    release,
)
from ledger.programme.models import Party


@pytest.fixture
def jm(session_factory):
    """Jiangmen parties and a 5000万 appropriation for 2025."""
    with session_factory() as s:
        jiangmen_world(s)


@pytest.fixture
def ur(session_factory):
    """Urumqi parties and a 5000万 appropriation for 2025."""
    with session_factory() as s:
        urumqi_world(s)


def pay(project: str, amount: str, day, form: str = "cash", lane: str | None = None, voucher: str | None = None):
    return lambda s: bid_pay(s, project=project, lane=lane, amount_fen=yuan(amount), form=form, date=day, voucher=voucher, actor=ACTOR)


def stage(project: str, name: str, day, passed: bool = True, lane: str | None = None, voucher: str | None = None):
    return lambda s: record_stage(s, project=project, stage=name, passed=passed, date=day, voucher=voucher, actor=ACTOR, lane=lane)


def rel(project: str, day, lane: str | None = None, tranche: int | None = None, voucher: str | None = None):
    return lambda s: release(s, project=project, lane=lane, date=day, voucher=voucher, actor=ACTOR, tranche=tranche)


def run(session_factory, *actions):
    for action in actions:
        with session_factory() as s:
            action(s)


def balances(session_factory, code: str, lane: str | None = None) -> dict[str, int]:
    with session_factory() as s:
        return project_balances(s, code, lane=lane)


# --- approval: Jiangmen total R&D investment >= 3,000,000 (§9 rule 13, S1 二(一)) ---------------


def test_jiangmen_total_investment_of_exactly_3_million_is_accepted_one_fen_less_refused(engine, session_factory, jm):
    refusal = refuses(
        engine, session_factory,
        lambda s: approve(s, jm_approval(total_investment_fen=yuan("2,999,999.99"))),
        "total_investment_must_reach_minimum",
    )
    assert "2,999,999.99" in refusal.message and "3,000,000.00" in refusal.message and "二(一)" in refusal.message
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(total_investment_fen=yuan("3,000,000.00"))))


# --- approval: Jiangmen demand-side eligibility, any one of three tests (§9 rule 14) ---------------

ELIGIBILITY = {
    # test name: (details that fail by the smallest step, details that pass exactly at the line)
    "revenue of 5亿": ({"revenue_fen": yuan("499,999,999.99")}, {"revenue_fen": yuan("500,000,000.00")}),
    "R&D intensity of 10%": (
        {"revenue_fen": yuan("100,000,000.00"), "rnd_intensity": Decimal("0.0999"), "above_scale": True},
        {"revenue_fen": yuan("100,000,000.00"), "rnd_intensity": Decimal("0.10"), "above_scale": True},
    ),
    # The R&D route is for a 规模以上 enterprise (S1 二(一)1): the ratio alone is not enough.
    "R&D intensity of 10%, 规模以上": (
        {"revenue_fen": yuan("100,000,000.00"), "rnd_intensity": Decimal("0.10"), "above_scale": False},
        {"revenue_fen": yuan("100,000,000.00"), "rnd_intensity": Decimal("0.10"), "above_scale": True},
    ),
    "创新标兵 high-tech firm": (
        {"revenue_fen": yuan("100,000,000.00"), "innovation_star": False},
        {"revenue_fen": yuan("100,000,000.00"), "innovation_star": True},
    ),
}


@pytest.mark.parametrize("test_name", list(ELIGIBILITY))
def test_jiangmen_demand_side_qualifies_by_any_one_test_exactly_at_its_line(engine, session_factory, jm, test_name):
    failing, passing = ELIGIBILITY[test_name]
    below, at = spare_uscc("440700", 1), spare_uscc("440700", 2)
    with session_factory() as s:
        add_party(s, below, "差一点的需求方", **failing)
        add_party(s, at, "刚好达标的需求方", **passing)
    refusal = refuses(
        engine, session_factory,
        lambda s: approve(s, jm_approval(demand_uscc=below)),
        "demand_side_must_meet_one_eligibility_test",
    )
    assert "500,000,000.00" in refusal.message and "0.10" in refusal.message and "创新标兵" in refusal.message
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(demand_uscc=at)))


def test_jiangmen_demand_side_with_bad_credit_is_refused_whatever_its_revenue(engine, session_factory, jm):
    tainted = spare_uscc("440700", 3)
    with session_factory() as s:
        add_party(s, tainted, "有失信记录的需求方", revenue_fen=yuan("900,000,000.00"), bad_credit=True)
    refusal = refuses(
        engine, session_factory, lambda s: approve(s, jm_approval(demand_uscc=tainted)), "demand_side_must_have_clean_credit"
    )
    assert "3 years" in refusal.message
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(demand_uscc=JM_DEMAND)))


def test_jiangmen_approval_needs_an_approved_grant(engine, session_factory, jm):
    refuses(engine, session_factory, lambda s: approve(s, jm_approval(approved_grant_fen=None)), "approved_grant_must_be_given")


# --- approval: Urumqi total investment >= 5,000,000 (§9 rule 4, S2 二(一)) ------------------------


def test_urumqi_total_investment_of_exactly_5_million_is_accepted_one_fen_less_refused(engine, session_factory, ur):
    refuses(
        engine, session_factory,
        lambda s: approve(s, ur_approval(total_investment_fen=yuan("4,999,999.99"))),
        "total_investment_must_reach_minimum",
    )
    accepts(engine, session_factory, lambda s: approve(s, ur_approval(total_investment_fen=yuan("5,000,000.00"))))


# --- approval: solver counts (§9 rules 7, 15) -------------------------------------------------------


def test_jbgs_takes_exactly_one_solver(engine, session_factory, jm):
    refuses(
        engine, session_factory,
        lambda s: approve(s, jm_approval(solver_usccs=(JM_UNIVERSITY, JM_FIRM))),
        "jbgs_solver_count_must_be_exact",
    )
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(solver_usccs=(JM_UNIVERSITY,))))


def test_saima_needs_at_least_two_racers(engine, session_factory, jm):
    refuses(
        engine, session_factory,
        lambda s: approve(s, jm_approval(mode="saima", solver_usccs=(JM_UNIVERSITY,))),
        "saima_racer_count_must_reach_minimum",
    )
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(mode="saima", solver_usccs=(JM_UNIVERSITY, JM_FIRM))))


def test_urumqi_saima_takes_at_most_three_racers(engine, session_factory, ur):
    four = (UR_SOLVER, UR_SOLVER_2, UR_SOLVER_3, UR_SOLVER_4)
    bid = yuan("1,000,000.00")
    refusal = refuses(
        engine, session_factory,
        lambda s: approve(s, ur_approval(mode="saima", solver_usccs=four, bid_contract_fen=(bid,) * 4)),
        "saima_racer_count_must_not_exceed_maximum",
    )
    assert "不超过3家" in refusal.message
    accepts(
        engine, session_factory,
        lambda s: approve(s, ur_approval(mode="saima", solver_usccs=four[:3], bid_contract_fen=(bid,) * 3)),
    )


def test_jiangmen_saima_has_no_upper_limit_on_racers(engine, session_factory, jm):
    fourth = spare_uscc("440700", 4)
    with session_factory() as s:
        add_party(s, fourth, "第四家揭榜方")
    accepts(
        engine, session_factory,
        lambda s: approve(s, jm_approval(mode="saima", solver_usccs=(JM_UNIVERSITY, JM_FIRM, JM_INSTITUTE, fourth))),
    )


# --- approval: related parties (§9 rule 8, S2 二(三)) ----------------------------------------------


def test_urumqi_refuses_a_solver_related_to_the_demand_side_declared_by_either(engine, session_factory, ur):
    demand_declaring, solver_declaring = spare_uscc("650100", 1), spare_uscc("650100", 2)
    with session_factory() as s:
        add_party(s, demand_declaring, "声明关联的需求方", related=(UR_SOLVER,))
        add_party(s, solver_declaring, "声明关联的揭榜方", related=(UR_DEMAND,))
    for spec in (
        ur_approval(demand_uscc=demand_declaring, solver_usccs=(UR_SOLVER,)),
        ur_approval(demand_uscc=UR_DEMAND, solver_usccs=(solver_declaring,)),
        ur_approval(demand_uscc=UR_DEMAND, solver_usccs=(UR_DEMAND,)),  # the very same unit
    ):
        refusal = refuses(engine, session_factory, lambda s, spec=spec: approve(s, spec), "solver_must_not_be_related_to_demand_side")
        assert "关联关系" in refusal.message
    accepts(engine, session_factory, lambda s: approve(s, ur_approval(demand_uscc=UR_DEMAND, solver_usccs=(UR_SOLVER,))))


def test_jiangmen_has_no_related_party_ban(engine, session_factory, jm):
    related_demand = spare_uscc("440700", 5)
    with session_factory() as s:
        add_party(s, related_demand, "与揭榜方关联的需求方", revenue_fen=yuan("600,000,000.00"), related=(JM_UNIVERSITY,))
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(demand_uscc=related_demand)))


# --- approval: period <= 3 years (§9 rule 16, S1 五(三)) -------------------------------------------


def test_period_may_last_three_years_to_the_day_not_one_day_more(engine, session_factory, jm):
    # End dates are inclusive: 2025-10-01..2028-09-30 is exactly three years; 2028-10-01 is one day more.
    refusal = refuses(
        engine, session_factory,
        lambda s: approve(s, jm_approval(start_date=D(2025, 10, 1), end_date=D(2028, 10, 1))),
        "period_must_not_exceed_maximum_years",
    )
    assert "3-year" in refusal.message and "五(三)" in refusal.message
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(start_date=D(2025, 10, 1), end_date=D(2028, 9, 30))))


# --- approval: within the available appropriation (预算法 第十三条) ---------------------------------


def test_jiangmen_grant_may_use_the_whole_available_appropriation_not_one_fen_more(engine, session_factory, jm):
    with session_factory() as s:
        add_budget(s, "3,000,000.00", year=2026)
    in_2026 = {"approval_date": D(2026, 3, 1), "start_date": D(2026, 4, 1), "end_date": D(2029, 3, 31)}
    refusal = refuses(
        engine, session_factory,
        lambda s: approve(s, jm_approval(approved_grant_fen=yuan("3,000,000.01"), **in_2026)),
        "grant_must_fit_available_appropriation",
    )
    assert "3,000,000.01" in refusal.message and "3,000,000.00" in refusal.message
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(approved_grant_fen=yuan("3,000,000.00"), **in_2026)))
    # Nothing is left for a second project in that year.
    refuses(
        engine, session_factory,
        lambda s: approve(s, jm_approval(code="JM2026-002", approved_grant_fen=yuan("0.01"), **in_2026)),
        "grant_must_fit_available_appropriation",
    )


def test_urumqi_subsidy_ceiling_must_fit_the_appropriation_after_rounding(engine, session_factory, ur):
    with session_factory() as s:
        add_budget(s, "1,200,000.00", year=2026)
    in_2026 = {"approval_date": D(2026, 3, 1), "start_date": D(2026, 4, 1), "end_date": D(2028, 3, 31)}
    # 0.40 × 3,000,000.03 = 1,200,000.012 -> 1,200,000.01: one fen over.
    refuses(
        engine, session_factory,
        lambda s: approve(s, ur_approval(bid_contract_fen=(yuan("3,000,000.03"),), **in_2026)),
        "grant_must_fit_available_appropriation",
    )
    # 0.40 × 3,000,000.01 = 1,200,000.004 -> 1,200,000.00: exactly the appropriation.
    accepts(engine, session_factory, lambda s: approve(s, ur_approval(bid_contract_fen=(yuan("3,000,000.01"),), **in_2026)))
    assert balances(session_factory, "UR2025-011")["grant_obligated"] == yuan("1,200,000.00")


def test_urumqi_needs_one_bid_contract_per_lane(engine, session_factory, ur):
    refuses(
        engine, session_factory,
        lambda s: approve(s, ur_approval(mode="saima", solver_usccs=(UR_SOLVER, UR_SOLVER_2), bid_contract_fen=(yuan("300万"),))),
        "bid_contracts_must_match_lanes",
    )


# --- approval: rules versions ------------------------------------------------------------------


def test_an_unknown_rules_version_is_refused(cli, engine, jm):
    args = [
        "project", "approve", "--code", "JM2025-003", "--name", "控制器", "--city", "jiangmen", "--category", "技术攻关",
        "--mode", "jbgs", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--total-investment", "800万",
        "--grant", "300万", "--start", "2025-10-01", "--end", "2028-09-30", "--date", "2025-09-20",
    ]
    cli_refused(cli, engine, *args, "--rules", "jiangmen-2099", says=("jiangmen-2099", "unknown", "jiangmen-2023-trial"))
    cli_refused(cli, engine, *args, "--rules", "urumqi-2024-33", "--bid", "300万", says="are for urumqi")
    cli(*args, "--rules", "jiangmen-2023-trial")
    assert json.loads(cli("project", "show", "JM2025-003", "--format", "json").stdout)["rules_version"] == "jiangmen-2023-trial"


def test_no_rules_in_force_before_the_first_version(engine, session_factory, jm):
    refuses(
        engine, session_factory,
        lambda s: approve(s, jm_approval(approval_date=D(2022, 12, 31), start_date=D(2023, 1, 1), end_date=D(2025, 12, 31))),
        "rules_version_must_exist",
    )


# --- approval: the solver is locked after 立项 (§9 rule 9, S2 二(七)) ---------------------------------


def test_changing_the_solver_of_an_approved_urumqi_project_is_refused(engine, session_factory, ur):
    accepts(engine, session_factory, lambda s: approve(s, ur_approval()))
    refusal = refuses(
        engine, session_factory, lambda s: approve(s, ur_approval(solver_usccs=(UR_SOLVER_2,))), "project_must_be_approved_once"
    )
    assert "locked" in refusal.message
    # Recording the very same approval again is a retry, not a change.
    posted = accepts(engine, session_factory, lambda s: approve(s, ur_approval()), entries=0)
    assert posted.created is False


# --- parties: USCC (§9 rule 29, GB 32100-2015) ------------------------------------------------------


def test_an_invalid_uscc_is_refused(cli, engine):
    cli_refused(cli, engine, "party", "add", "--uscc", "91440700MA51A00019", "--name", "校验位错", says="91440700MA51A00019")
    cli_refused(cli, engine, "party", "add", "--uscc", "91440700MA51A0001", "--name", "少一位", says="18")
    cli_refused(cli, engine, "party", "add", "--uscc", "91440700MA5IA00018", "--name", "含字母I", says="I")
    cli("party", "add", "--uscc", "91440700MA51A00018", "--name", "正确的代码")


def test_a_legacy_uscc_is_accepted_only_with_a_reason_which_is_kept(cli, engine, session_factory):
    cli_refused(cli, engine, "party", "add", "--uscc", LEGACY_FUJIAN, "--name", "福建早期试点企业", says=LEGACY_FUJIAN)
    cli_refused(
        cli, engine, "party", "add", "--uscc", LEGACY_FUJIAN, "--name", "福建早期试点企业", "--uscc-override-reason", "   ",
        says=LEGACY_FUJIAN,
    )
    reason = "福建早期试点代码，营业执照原件已核对（2025-01-02）"
    cli("party", "add", "--uscc", LEGACY_FUJIAN, "--name", "福建早期试点企业", "--uscc-override-reason", reason, "--date", "2025-01-02")
    listed = json.loads(cli("parties", "--format", "json").stdout)
    assert listed == [{"uscc": LEGACY_FUJIAN, "name": "福建早期试点企业", "kind": "enterprise", "override": reason}]
    with session_factory() as s:
        assert s.scalars(select(Party.uscc_override_reason).where(Party.uscc == LEGACY_FUJIAN)).one() == reason
        trace = json.loads(s.scalars(select(JournalEntry.trace).where(JournalEntry.kind == "party")).one())
    assert trace["party"]["uscc_override_reason"] == reason


# --- dates out of order -----------------------------------------------------------------------------


EVENTS_ON = {
    "bid payment": lambda day: pay("UR2025-011", "10,000.00", day),
    "pledge": lambda day: lambda s: pledge(s, project="UR2025-011", amount_fen=yuan("10,000.00"), date=day, voucher=None, actor=ACTOR),
    "stage": lambda day: stage("UR2025-011", "contract_signed", day),
    "bid contract": lambda day: lambda s: bid_contract(s, project="UR2025-011", lane=None, amount_fen=yuan("10,000.00"), date=day, voucher=None, actor=ACTOR),
}


def test_an_event_dated_the_day_before_approval_is_refused_on_the_day_accepted(engine, session_factory, ur):
    accepts(engine, session_factory, lambda s: approve(s, ur_approval()))
    approved = ur_approval().approval_date
    for event, on in EVENTS_ON.items():
        refusal = refuses(engine, session_factory, on(approved - DAY), "event_must_follow_approval")
        assert str(approved) in refusal.message, event
        accepts(engine, session_factory, on(approved))


# --- bid payments: never above the contract, lane must exist (§9 rule 3) --------------------------


def test_bid_payment_may_reach_the_contract_not_one_fen_more(engine, session_factory, ur):
    accepts(engine, session_factory, lambda s: approve(s, ur_approval()))
    refusal = refuses(engine, session_factory, pay("UR2025-011", "3,000,000.01", D(2025, 7, 1)), "bid_payment_must_not_exceed_contract")
    assert "3,000,000.01" in refusal.message and "3,000,000.00" in refusal.message
    accepts(engine, session_factory, pay("UR2025-011", "2,000,000.00", D(2025, 7, 1), form="equity"))
    # Every form counts against the contract.
    refuses(engine, session_factory, pay("UR2025-011", "1,000,000.01", D(2025, 7, 2)), "bid_payment_must_not_exceed_contract")
    accepts(engine, session_factory, pay("UR2025-011", "1,000,000.00", D(2025, 7, 2)))
    refuses(engine, session_factory, pay("UR2025-011", "0.01", D(2025, 7, 3), form="in_kind"), "bid_payment_must_not_exceed_contract")
    got = balances(session_factory, "UR2025-011")
    assert (got["bid_unpaid"], got["subsidy_base"], got["subsidy_earned"]) == (0, yuan("1,000,000.00"), yuan("400,000.00"))


def test_bid_payment_to_an_unknown_lane_is_refused(engine, session_factory, ur):
    accepts(engine, session_factory, lambda s: approve(s, ur_approval()))
    refuses(engine, session_factory, pay("UR2025-011", "1.00", D(2025, 7, 1), lane="L2"), "lane_must_exist")
    refuses(engine, session_factory, pay("UR2025-011", "1.00", D(2025, 7, 1), lane=UR_SOLVER_2), "lane_must_exist")
    refuses(engine, session_factory, pay("UR2099-001", "1.00", D(2025, 7, 1)), "project_must_exist")
    accepts(engine, session_factory, pay("UR2025-011", "1.00", D(2025, 7, 1), lane=UR_SOLVER))


# --- the subsidy: 40% of cash only (§9 rules 1, 2, 30) ---------------------------------------------


def test_a_cash_payment_earns_40_percent_equity_and_in_kind_earn_nothing(engine, session_factory, ur):
    accepts(engine, session_factory, lambda s: approve(s, ur_approval()))
    steps = [
        # (form, amount, subsidy earned after it: round_half_up(0.40 × cumulative cash))
        ("equity", "1,000,000.00", "0.00"),  # 技术入股股权评估资金不予支持
        ("in_kind", "500,000.00", "0.00"),
        ("cash", "0.01", "0.00"),  # 0.004 rounds down
        ("cash", "0.01", "0.01"),  # 0.008 rounds up
        ("cash", "1,000,000.00", "400,000.01"),  # 400,000.008
        ("equity", "0.01", "400,000.01"),
    ]
    for day, (form, amount, earned) in enumerate(steps, start=1):
        accepts(engine, session_factory, pay("UR2025-011", amount, D(2025, 7, day), form=form))
        got = balances(session_factory, "UR2025-011")
        assert (got["subsidy_earned"], got["subsidy_payable"]) == (yuan(earned), yuan(earned)), (form, amount)
    assert (got["subsidy_base"], got["bid_paid_equity"], got["bid_paid_in_kind"]) == (
        yuan("1,000,000.02"), yuan("1,000,000.01"), yuan("500,000.00"),
    )


# --- tranches: conditions, once, within the obligation (§9 rules 6, 11, 17) ------------------------


def test_a_tranche_is_released_on_the_day_its_condition_is_recorded_not_the_day_before(engine, session_factory, jm):
    run(session_factory, lambda s: approve(s, jm_approval()), stage("JM2025-003", "contract_signed", D(2025, 10, 8)))
    refusal = refuses(engine, session_factory, rel("JM2025-003", D(2025, 10, 7)), "tranche_condition_must_be_met")
    assert "contract signing" in refusal.message and "record it first" in refusal.message
    accepts(engine, session_factory, rel("JM2025-003", D(2025, 10, 8)))
    assert balances(session_factory, "JM2025-003")["grant_released"] == yuan("1,800,000.00")


def test_a_failed_midterm_check_releases_nothing_a_later_pass_does(engine, session_factory, jm):
    run(
        session_factory,
        lambda s: approve(s, jm_approval()),
        stage("JM2025-003", "contract_signed", D(2025, 10, 8)),
        rel("JM2025-003", D(2025, 10, 10)),
        stage("JM2025-003", "midterm", D(2027, 3, 15), passed=False),
    )
    refuses(engine, session_factory, rel("JM2025-003", D(2027, 3, 20)), "tranche_condition_must_be_met")
    run(session_factory, stage("JM2025-003", "midterm", D(2027, 6, 15)))
    accepts(engine, session_factory, rel("JM2025-003", D(2027, 6, 20)))


def test_a_tranche_is_released_once(engine, session_factory, jm):
    run(session_factory, lambda s: approve(s, jm_approval()), stage("JM2025-003", "contract_signed", D(2025, 10, 8)))
    accepts(engine, session_factory, rel("JM2025-003", D(2025, 10, 10), tranche=1))
    refuses(engine, session_factory, rel("JM2025-003", D(2025, 10, 11), tranche=1), "tranche_must_not_be_released_twice")
    refuses(engine, session_factory, rel("JM2025-003", D(2025, 10, 11), tranche=3), "tranche_must_exist")


def test_a_release_beyond_the_unreleased_obligation_is_refused(engine, session_factory, jm):
    run(
        session_factory,
        lambda s: approve(s, jm_approval()),
        stage("JM2025-003", "contract_signed", D(2025, 10, 8)),
        rel("JM2025-003", D(2025, 10, 10)),
        stage("JM2025-003", "midterm", D(2027, 3, 15)),
    )
    # Take one fen off the obligation by hand, as a deobligation would, leaving 1,199,999.99
    # unreleased against a tranche of 1,200,000.00.
    with session_factory() as s:
        cut = post(
            s,
            EntryDraft(
                value_date=D(2027, 3, 16), kind="adjustment", project_code="JM2025-003", voucher="TEST-DEOBLIGATE",
                memo="test: deobligate one fen", actor=ACTOR,
                postings=(
                    PostingDraft(chart.grant_unreleased("JM2025-003", 1), -1),
                    PostingDraft(chart.budget_available(2025), 1),
                ),
            ),
        )
    refusal = refuses(engine, session_factory, rel("JM2025-003", D(2027, 3, 20)), "release_must_fit_obligation")
    assert "1,200,000.00" in refusal.message and "1,199,999.99" in refusal.message
    with session_factory() as s:
        reverse(s, cut.entry_id, reason="test: restore the fen", actor=ACTOR)
    accepts(engine, session_factory, rel("JM2025-003", D(2027, 3, 20)))
    got = balances(session_factory, "JM2025-003")
    assert (got["grant_released"], got["grant_unreleased"]) == (yuan("3,000,000.00"), 0)


def test_urumqi_interim_tranche_needs_contract_and_a_bid_payment_and_something_earned(engine, session_factory, ur):
    run(session_factory, lambda s: approve(s, ur_approval()), stage("UR2025-011", "contract_signed", D(2025, 7, 1)))
    refuses(engine, session_factory, rel("UR2025-011", D(2025, 7, 2)), "tranche_condition_must_be_met")
    run(session_factory, pay("UR2025-011", "500,000.00", D(2025, 7, 3), form="equity"))
    refusal = refuses(engine, session_factory, rel("UR2025-011", D(2025, 7, 4)), "release_must_have_something_due")
    assert "0.00" in refusal.message
    run(session_factory, pay("UR2025-011", "0.03", D(2025, 7, 5)))  # 0.012 -> 0.01
    accepts(engine, session_factory, rel("UR2025-011", D(2025, 7, 6)))
    got = balances(session_factory, "UR2025-011")
    assert (got["subsidy_released"], got["subsidy_payable"], got["grant_released"]) == (1, 0, 1)


def test_urumqi_final_tranche_needs_the_audit_report_after_acceptance(engine, session_factory, ur):
    run(
        session_factory,
        lambda s: approve(s, ur_approval()),
        stage("UR2025-011", "contract_signed", D(2025, 7, 1)),
        pay("UR2025-011", "1,000,000.00", D(2025, 7, 2)),
        rel("UR2025-011", D(2025, 7, 3)),
        pay("UR2025-011", "2,000,000.00", D(2026, 7, 2)),
        stage("UR2025-011", "acceptance", D(2027, 7, 1)),
    )
    refusal = refuses(engine, session_factory, rel("UR2025-011", D(2027, 7, 2)), "tranche_condition_must_be_met")
    assert "专项审计报告" in refusal.message
    run(session_factory, stage("UR2025-011", "audit_report", D(2027, 7, 20)))
    refuses(engine, session_factory, rel("UR2025-011", D(2027, 7, 19)), "tranche_condition_must_be_met")
    accepts(engine, session_factory, rel("UR2025-011", D(2027, 7, 20)))
    got = balances(session_factory, "UR2025-011")
    assert (got["subsidy_earned"], got["subsidy_released"], got["grant_unreleased"]) == (yuan("120万"), yuan("120万"), 0)


# --- 赛马 elimination (§9 rule 18) ------------------------------------------------------------------


def test_an_eliminated_racer_gets_no_tranche_and_no_bid_money_a_passed_one_does(engine, session_factory, jm):
    racers = (JM_UNIVERSITY, JM_FIRM)
    run(
        session_factory,
        lambda s: approve(s, jm_approval(mode="saima", solver_usccs=racers, bid_contract_fen=(yuan("50万"), yuan("50万")))),
        stage("JM2025-003", "contract_signed", D(2025, 10, 8)),
        rel("JM2025-003", D(2025, 10, 10), lane="L1"),
        rel("JM2025-003", D(2025, 10, 10), lane="L2"),
        stage("JM2025-003", "stage_assessment", D(2026, 9, 30), lane="L1"),
        stage("JM2025-003", "stage_assessment", D(2026, 9, 30), passed=False, lane="L2"),
    )
    refuses(engine, session_factory, rel("JM2025-003", D(2026, 10, 1), lane="L2"), "lane_must_not_be_eliminated")
    refuses(engine, session_factory, pay("JM2025-003", "1.00", D(2026, 10, 1), lane="L2"), "lane_must_not_be_eliminated")
    refuses(engine, session_factory, stage("JM2025-003", "stage_assessment", D(2026, 10, 1), lane="L2"), "lane_must_not_be_eliminated")
    accepts(engine, session_factory, pay("JM2025-003", "1.00", D(2026, 10, 1), lane="L1"))
    accepts(engine, session_factory, rel("JM2025-003", D(2026, 10, 1), lane="L1"))
    assert balances(session_factory, "JM2025-003", lane="L1")["grant_released"] == yuan("1,500,000.00")
    eliminated = balances(session_factory, "JM2025-003", lane="L2")
    assert (eliminated["grant_released"], eliminated["grant_unreleased"], eliminated["clawback_assessed"]) == (
        yuan("900,000.00"), 0, yuan("900,000.00"),
    )


# --- retries with the same voucher (DESIGN §5: idempotent) -------------------------------------------


def test_a_retried_stage_or_approval_is_a_no_op(engine, session_factory, ur):
    accepts(engine, session_factory, lambda s: approve(s, ur_approval()))
    first = accepts(engine, session_factory, stage("UR2025-011", "contract_signed", D(2025, 7, 1), voucher="揭榜协议-001"))
    again = accepts(engine, session_factory, stage("UR2025-011", "contract_signed", D(2025, 7, 1), voucher="揭榜协议-001"), entries=0)
    assert (again.entry_id, again.created) == (first.entry_id, False)


@pytest.mark.parametrize("form", ["cash", "equity"])
def test_a_retried_bid_payment_is_a_no_op(engine, session_factory, ur, form):
    accepts(engine, session_factory, lambda s: approve(s, ur_approval()))
    first = accepts(engine, session_factory, pay("UR2025-011", "1,000,000.00", D(2025, 7, 10), form=form, voucher="PAY-1"))
    before = table_counts(engine)
    with session_factory() as s:
        again = pay("UR2025-011", "1,000,000.00", D(2025, 7, 10), form=form, voucher="PAY-1")(s)
    assert (again.entry_id, again.created) == (first.entry_id, False)
    assert table_counts(engine) == before


def test_a_retried_release_is_a_no_op(engine, session_factory, jm):
    run(session_factory, lambda s: approve(s, jm_approval()), stage("JM2025-003", "contract_signed", D(2025, 10, 8)))
    first = accepts(engine, session_factory, rel("JM2025-003", D(2025, 10, 10), voucher="ZF-2025-118"))
    with session_factory() as s:
        again = rel("JM2025-003", D(2025, 10, 10), voucher="ZF-2025-118")(s)
    assert (again.entry_id, again.created) == (first.entry_id, False)
    assert entry_count(engine) == first.entry_id


def test_the_same_voucher_with_other_details_is_refused(engine, session_factory, ur):
    accepts(engine, session_factory, lambda s: approve(s, ur_approval()))
    accepts(engine, session_factory, pay("UR2025-011", "1,000,000.00", D(2025, 7, 10), voucher="PAY-1"))
    refusal = refuses(
        engine, session_factory, pay("UR2025-011", "1,000,000.01", D(2025, 7, 10), voucher="PAY-1"), "voucher_must_match_first_use"
    )
    assert "PAY-1" in refusal.message


# --- issue 14: eligibility gates and party facts over time, through the services ------------------


def test_a_demand_side_registered_outside_the_city_needs_a_recorded_reason(engine, session_factory, jm, cli):
    outside = spare_uscc("650100", 7)
    with session_factory() as s:
        add_party(s, outside, "乌鲁木齐注册的企业", revenue_fen=yuan("900,000,000.00"))
    refusal = refuses(engine, session_factory, lambda s: approve(s, jm_approval(demand_uscc=outside)),
                      "demand_side_must_be_registered_in_the_city")
    assert "division 650100" in refusal.message and "4407" in refusal.message and "--registration-override" in refusal.message
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(demand_uscc=outside, registration_override="总部迁入江门，登记变更中")))
    with engine.connect() as conn:
        trace = json.loads(conn.execute(select(JournalEntry.trace).where(JournalEntry.kind == "approval")).scalar_one())
    assert trace["registration_override"]["division"] == "650100"
    assert trace["registration_override"]["reason"] == "总部迁入江门，登记变更中"


def test_the_demand_side_is_an_enterprise_and_not_its_own_solver(engine, session_factory, jm):
    refuses(engine, session_factory, lambda s: approve(s, jm_approval(demand_uscc=JM_UNIVERSITY, solver_usccs=(JM_FIRM,))),
            "demand_side_kind_must_be_allowed")
    refuses(engine, session_factory, lambda s: approve(s, jm_approval(solver_usccs=(JM_DEMAND,))),
            "demand_side_must_not_be_its_own_solver")
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(solver_usccs=(JM_FIRM,))))


def test_a_grant_above_the_total_investment_and_a_period_long_past_are_refused(engine, session_factory, jm):
    refuses(engine, session_factory,
            lambda s: approve(s, jm_approval(approved_grant_fen=yuan("5,000,000.00"), total_investment_fen=yuan("4,999,999.99"))),
            "grant_must_not_exceed_share_of_total_investment")
    refuses(engine, session_factory,
            lambda s: approve(s, jm_approval(start_date=D(2020, 1, 1), end_date=D(2022, 12, 31))),
            "period_must_not_start_long_before_approval")
    accepts(engine, session_factory,
            lambda s: approve(s, jm_approval(approved_grant_fen=yuan("5,000,000.00"), total_investment_fen=yuan("5,000,000.00"))))


def test_approval_reads_the_party_facts_in_force_for_the_year_before(engine, session_factory, jm, cli, tmp_path):
    """“上一年度”: facts recorded for 2024 decide a 2025 approval; a later record of the year
    supersedes an earlier one; a 2025 record does not count; “近三年” credit counts 2022–2024."""
    firm = spare_uscc("440700", 8)
    cli("party", "add", "--uscc", firm, "--name", "江门某新材料有限公司", "--revenue", "1亿", "--date", "2025-01-02")
    cli("party", "update", firm, "--year", "2025", "--revenue", "6亿", "--date", "2025-09-01")
    refuses(engine, session_factory, lambda s: approve(s, jm_approval(demand_uscc=firm)), "demand_side_must_meet_one_eligibility_test")
    cli("party", "update", firm, "--year", "2024", "--revenue", "499,999,999.99", "--date", "2025-03-01")
    refuses(engine, session_factory, lambda s: approve(s, jm_approval(demand_uscc=firm)), "demand_side_must_meet_one_eligibility_test")
    cli("party", "update", firm, "--year", "2021", "--revenue", "6亿", "--credit", "bad", "--date", "2025-03-01")
    cli("party", "update", firm, "--year", "2024", "--revenue", "5亿", "--date", "2025-03-02")  # supersedes the first 2024 record
    # A bad record of 2021 is outside 2022–2024; one of 2022 is inside.
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(demand_uscc=firm)))
    with engine.connect() as conn:
        trace = json.loads(conn.execute(select(JournalEntry.trace).where(JournalEntry.kind == "approval")).scalar_one())
        used_entry = trace["party_facts_used"][firm]["entry"]
        used = json.loads(conn.execute(select(JournalEntry.facts).where(JournalEntry.id == used_entry)).scalar_one())
    assert trace["party_facts_used"][firm]["year"] == 2024 and used["party_facts"]["revenue_fen"] == yuan("5亿")
    assert trace["party_facts_used"][JM_UNIVERSITY] == "registration"
    # The audit pack shows which facts the approval used.
    from openpyxl import load_workbook
    from test_audit import audit, sheet_rows

    pack = load_workbook(audit(cli, tmp_path / "pack", "JM2025-003", "2025-12-31")["xlsx"])
    used_by = {row["统一社会信用代码"]: row["立项审核所用单位数据"] for row in sheet_rows(pack["1 参与单位"])}
    assert used_by == {firm: f"2024 年度数据（分录 {used_entry}）", JM_UNIVERSITY: "登记时数据"}
    cli("party", "update", firm, "--year", "2022", "--revenue", "6亿", "--credit", "bad", "--date", "2025-10-01")
    refuses(engine, session_factory, lambda s: approve(s, jm_approval(code="JM2025-004", demand_uscc=firm)),
            "demand_side_must_have_clean_credit")
    # The facts are hashed, append-only and verified; a year that has not begun is refused.
    cli_refused(cli, engine, "party", "update", firm, "--year", "2026", "--revenue", "6亿", "--date", "2025-10-02",
                says="fiscal year 2026")
    assert cli("verify").output.startswith("OK")


def test_a_solver_with_a_bad_credit_year_in_the_look_back_is_refused(engine, session_factory, jm, cli):
    cli("party", "update", JM_FIRM, "--year", "2023", "--credit", "bad", "--date", "2025-02-01")
    refusal = refuses(engine, session_factory, lambda s: approve(s, jm_approval(solver_usccs=(JM_FIRM,))), "solver_must_have_clean_credit")
    assert "近三年内无不良信用记录" in refusal.message
    accepts(engine, session_factory, lambda s: approve(s, jm_approval(solver_usccs=(JM_INSTITUTE,))))


def test_xianxiang_counts_the_units_funded_projects_in_progress_in_the_city(engine, session_factory, ur, cli, tmp_path, monkeypatch):
    """限项 (S2 二(一)): with a limit of 1 in a later Urumqi version, a unit with one funded project
    in progress gets no second 立项 until the first one ends; the count is read from the ledger."""
    from funding_rules.loader import RULES_DIR

    text = (RULES_DIR / "urumqi-2024-33.toml").read_text(encoding="utf-8")
    text = text.replace('version = "urumqi-2024-33"', 'version = "urumqi-limit-example"').replace(
        "effective_from = 2024-01-01", "effective_from = 2025-01-01")
    start = text.index("project_limit = {")
    text = text[:start] + 'project_limit = { value = 1, source = "DEFAULT: test rules with a 限项 of one" }' + text[text.index("\n", start):]
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "urumqi-limit-example.toml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("JIEBANG_RULES_PATH", str(folder))

    accepts(engine, session_factory, lambda s: approve(s, ur_approval(code="UR2025-021")))
    refusal = refuses(engine, session_factory, lambda s: approve(s, ur_approval(code="UR2025-022")),
                      "demand_side_must_be_within_project_limit")
    assert "1 funded projects in progress" in refusal.message and "不再给予立项支持" in refusal.message
    # Another unit is not counted against it.
    other = spare_uscc("650100", 9)
    with session_factory() as s:
        add_party(s, other, "另一家需求方")
    accepts(engine, session_factory, lambda s: approve(s, ur_approval(code="UR2025-023", demand_uscc=other)))
    # Once its project ends (terminated), the unit is within the limit again.
    cli("terminate", "--project", "UR2025-021", "--reference", "乌科〔2025〕99号", "--date", "2025-06-25")
    accepts(engine, session_factory, lambda s: approve(s, ur_approval(code="UR2025-022", approval_date=D(2025, 6, 26))))
