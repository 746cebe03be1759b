"""Whole projects through the command line, as an officer records them, on both backends.

Three stories: a Jiangmen 揭榜挂帅 project paid 60% at contract and 40% after the mid-term
check; a Jiangmen 赛马 project with three lanes, one eliminated at the stage assessment; an
Urumqi project whose subsidy is 40% of the cash bid money alone. Each ends with ``verify``
and a beancount export that ``bean-check`` accepts.
"""

from __future__ import annotations

import json
import re

from programme_fixtures import (
    JM_DEMAND,
    JM_FIRM,
    JM_INSTITUTE,
    JM_UNIVERSITY,
    UR_DEMAND,
    UR_SOLVER,
    assert_verified,
    balances_of,
    cli_balances,
    cli_refused,
    cli_show,
    export_and_bean_check,
    subsidy_fen,
    traces,
    tranche_statuses,
    yuan,
)

from ledger.core.money import format_fen


def jiangmen_parties(cli) -> None:
    cli("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", "600,000,000.00", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_UNIVERSITY, "--name", "五邑某大学", "--kind", "university", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "5000万", "--date", "2025-01-10", "--voucher", "江财预〔2025〕3号")


# --- Jiangmen 揭榜挂帅 ----------------------------------------------------------------------


def test_jiangmen_jbgs_is_paid_60_percent_at_contract_and_40_after_the_midterm(cli, engine, tmp_path):
    jiangmen_parties(cli)
    assert [p["uscc"] for p in json.loads(cli("parties", "--format", "json").stdout)] == [
        JM_UNIVERSITY,
        JM_DEMAND,
    ]
    cli(
        "project", "approve", "--code", "JM2025-003", "--name", "高端装备运动控制器", "--city", "jiangmen",
        "--category", "技术攻关", "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY,
        "--total-investment", "800万", "--grant", "300万", "--start", "2025-10-01", "--end", "2028-09-30",
        "--date", "2025-09-20",
    )
    shown = cli_show(cli, "JM2025-003")
    assert (shown["city"], shown["rules_version"], shown["mode"], shown["category"]) == (
        "jiangmen", "jiangmen-2023-trial", "jbgs", "tech_breakthrough",
    )
    assert [(t["name"], t["amount"], t["conditions"]) for t in shown["tranches"]] == [
        ("contract", "1800000.00", ["contract_signed"]),
        ("midterm", "1200000.00", ["midterm_passed"]),
    ]
    assert tranche_statuses(shown) == {("L1", 1): "planned", ("L1", 2): "planned"}

    cli("pledge", "--project", "JM2025-003", "--amount", "500万", "--date", "2025-09-25", "--voucher", "承诺函-2025-01")
    cli("contribute", "--project", "JM2025-003", "--amount", "120万", "--category", "设备费", "--date", "2025-09-28")

    # Nothing is paid before the 合同书 is signed.
    cli_refused(
        cli, engine, "release", "--project", "JM2025-003", "--date", "2025-09-30",
        says=("tranche 1 (contract)", "contract signing", "record it first"),
    )
    cli("stage", "--project", "JM2025-003", "--stage", "contract_signed", "--passed", "--date", "2025-10-08")
    assert tranche_statuses(cli_show(cli, "JM2025-003")) == {("L1", 1): "eligible", ("L1", 2): "planned"}

    cli("release", "--project", "JM2025-003", "--date", "2025-10-10", "--voucher", "ZF-2025-118")
    after_contract = balances_of(
        self_funding_pledged="5000000.00",
        self_funding_contributed="1200000.00",
        self_funding_outstanding="3800000.00",
        grant_obligated="3000000.00",
        grant_released="1800000.00",
        grant_unreleased="1200000.00",
        advances_outstanding="1800000.00",
    )
    assert cli_balances(cli, "JM2025-003") == after_contract
    assert cli_balances(cli, "JM2025-003", as_of="2025-10-09") == after_contract | {
        "grant_released": "0.00", "grant_unreleased": "3000000.00", "advances_outstanding": "0.00",
    }

    # The 40% waits on the mid-term check.
    cli_refused(
        cli, engine, "release", "--project", "JM2025-003", "--date", "2025-10-11",
        says=("tranche 2 (midterm)", "mid-term check"),
    )
    shown = cli_show(cli, "JM2025-003")
    assert tranche_statuses(shown) == {("L1", 1): "released", ("L1", 2): "planned"}
    assert shown["tranches"][1]["unmet"] == ["midterm_passed"]

    cli("stage", "--project", "JM2025-003", "--stage", "midterm", "--passed", "--date", "2027-03-15")
    assert tranche_statuses(cli_show(cli, "JM2025-003")) == {("L1", 1): "released", ("L1", 2): "eligible"}
    cli("release", "--project", "JM2025-003", "--date", "2027-03-20", "--voucher", "ZF-2027-031")
    assert cli_balances(cli, "JM2025-003") == after_contract | {
        "grant_released": "3000000.00", "grant_unreleased": "0.00", "advances_outstanding": "3000000.00",
    }
    assert tranche_statuses(cli_show(cli, "JM2025-003")) == {("L1", 1): "released", ("L1", 2): "released"}

    # A third release finds nothing due, whether the tranche is named or not.
    cli_refused(cli, engine, "release", "--project", "JM2025-003", "--date", "2027-03-21", says="released already")
    cli_refused(
        cli, engine, "release", "--project", "JM2025-003", "--tranche", "1", "--date", "2027-03-21",
        says="was already released",
    )
    # The voucher already used is a retry of the release, not a new one.
    again = cli("release", "--project", "JM2025-003", "--date", "2027-03-20", "--voucher", "ZF-2027-031")
    assert again.stdout.endswith("（此前已记录，本次未写入）\n")

    assert_verified(cli)
    export_and_bean_check(cli, tmp_path / "export")


# --- Jiangmen 赛马 ------------------------------------------------------------------------


def test_jiangmen_saima_splits_to_the_fen_and_an_eliminated_lane_gets_nothing_more(cli, engine, tmp_path):
    jiangmen_parties(cli)
    cli("party", "add", "--uscc", JM_FIRM, "--name", "江门市某科技有限公司", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_INSTITUTE, "--name", "江门某民办研究院", "--kind", "institute", "--date", "2025-01-02")
    cli(
        "project", "approve", "--code", "JM2025-007", "--name", "储能电池热管理", "--city", "jiangmen",
        "--category", "tech_breakthrough", "--mode", "赛马", "--demand", JM_DEMAND,
        "--solver", JM_UNIVERSITY, "--solver", JM_FIRM, "--solver", JM_INSTITUTE,
        "--total-investment", "600万", "--grant", "1,000,000.01", "--start", "2025-10-01", "--end", "2028-09-30",
        "--date", "2025-09-20",
    )
    # 100000001 fen among three racers: the two odd fen go to the earliest lanes.
    shares = {lane: cli_balances(cli, "JM2025-007", lane=lane)["grant_obligated"] for lane in ("L1", "L2", "L3")}
    assert shares == {"L1": "333333.34", "L2": "333333.34", "L3": "333333.33"}
    assert sum(yuan(v) for v in shares.values()) == yuan("1,000,000.01")
    assert cli_balances(cli, "JM2025-007")["grant_obligated"] == "1000000.01"
    # Each lane's share splits 60/40; its odd fen goes to the earlier tranche.
    amounts = {(t["lane"], t["seq"]): t["amount"] for t in cli_show(cli, "JM2025-007")["tranches"]}
    assert amounts == {
        ("L1", 1): "200000.01", ("L1", 2): "133333.33",
        ("L2", 1): "200000.01", ("L2", 2): "133333.33",
        ("L3", 1): "200000.00", ("L3", 2): "133333.33",
    }

    cli("stage", "--project", "JM2025-007", "--stage", "contract_signed", "--passed", "--date", "2025-10-08")
    # With three lanes the lane must be named.
    cli_refused(cli, engine, "release", "--project", "JM2025-007", "--date", "2025-10-10", says="--lane")
    for lane in ("L1", "L2", JM_INSTITUTE):  # a lane by number or by its solver's USCC
        cli("release", "--project", "JM2025-007", "--lane", lane, "--date", "2025-10-10")
    cli("bid", "contract", "--project", "JM2025-007", "--lane", "L3", "--amount", "50万", "--date", "2025-10-12")
    cli("bid", "pay", "--project", "JM2025-007", "--lane", "L3", "--amount", "10万", "--form", "cash", "--date", "2025-11-01")

    # The 赛马 mid-term tranche waits on each lane's own stage assessment.
    cli_refused(
        cli, engine, "release", "--project", "JM2025-007", "--lane", "L1", "--date", "2026-09-01",
        says=("tranche 2 (midterm)", "stage assessment"),
    )
    cli("stage", "--project", "JM2025-007", "--stage", "stage_assessment", "--lane", "L1", "--passed", "--date", "2026-09-30")
    cli("stage", "--project", "JM2025-007", "--stage", "stage_assessment", "--lane", "L2", "--passed", "--date", "2026-09-30")
    cli("stage", "--project", "JM2025-007", "--stage", "stage_assessment", "--lane", "L3", "--failed", "--date", "2026-09-30")

    shown = cli_show(cli, "JM2025-007")
    assert [(lane["lane"], lane["status"]) for lane in shown["lanes"]] == [
        ("L1", "active"), ("L2", "active"), ("L3", "eliminated"),
    ]
    assert tranche_statuses(shown) == {
        ("L1", 1): "released", ("L1", 2): "eligible",
        ("L2", 1): "released", ("L2", 2): "eligible",
        ("L3", 1): "released", ("L3", 2): "cancelled",
    }

    cli("release", "--project", "JM2025-007", "--lane", "L1", "--date", "2026-10-10")
    cli("release", "--project", "JM2025-007", "--lane", "L2", "--date", "2026-10-10")
    cli_refused(cli, engine, "release", "--project", "JM2025-007", "--lane", "L3", "--date", "2026-10-10", says="eliminated")
    cli_refused(
        cli, engine, "bid", "pay", "--project", "JM2025-007", "--lane", "L3", "--amount", "1万", "--date", "2026-10-11",
        says="eliminated",
    )
    # A later pass does not bring an eliminated racer back.
    cli_refused(
        cli, engine, "stage", "--project", "JM2025-007", "--stage", "stage_assessment", "--lane", "L3", "--passed",
        "--date", "2026-10-12", says="eliminated",
    )

    for lane in ("L1", "L2"):
        assert cli_balances(cli, "JM2025-007", lane=lane) == balances_of(
            grant_obligated="333333.34", grant_released="333333.34", advances_outstanding="333333.34",
        )
    # Elimination assesses the racer's unspent advance for recovery and returns its unreleased
    # share to the budget (rules: eliminated_racer_recovers_balance = true), in the same entry.
    assert cli_balances(cli, "JM2025-007", lane="L3") == balances_of(
        bid_contracted="500000.00",
        bid_paid_cash="100000.00",
        bid_unpaid="400000.00",
        grant_obligated="200000.00",
        grant_released="200000.00",
        clawback_assessed="200000.00",
        clawback_outstanding="200000.00",
    )
    elimination = [t for t in traces(engine, "stage", "JM2025-007") if "elimination" in t]
    assert [(t["lane"], t["elimination"]["clawback"], t["elimination"]["deobligated"]) for t in elimination] == [
        ("L3", "200000.00", "133333.33"),
    ]
    assert cli_balances(cli, "JM2025-007") == balances_of(
        bid_contracted="500000.00",
        bid_paid_cash="100000.00",
        bid_unpaid="400000.00",
        grant_obligated="866666.68",
        grant_released="866666.68",
        advances_outstanding="666666.68",
        clawback_assessed="200000.00",
        clawback_outstanding="200000.00",
    )
    assert_verified(cli)
    export_and_bean_check(cli, tmp_path / "export")


# --- Urumqi ---------------------------------------------------------------------------------


def urumqi_parties(cli) -> None:
    cli("party", "add", "--uscc", UR_DEMAND, "--name", "新疆某光伏有限公司", "--date", "2025-01-02")
    cli("party", "add", "--uscc", UR_SOLVER, "--name", "新疆某大学", "--kind", "university", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "500万", "--date", "2025-01-10")


def approve_urumqi(cli, code: str = "UR2025-011", bid: str = "300万") -> None:
    cli(
        "project", "approve", "--code", code, "--name", "光伏组件智能运维", "--city", "urumqi",
        "--category", "成果转化", "--mode", "jbgs", "--demand", UR_DEMAND, "--solver", UR_SOLVER,
        "--total-investment", "800万", "--bid", bid, "--start", "2025-07-01", "--end", "2027-06-30",
        "--date", "2025-06-20",
    )


def test_urumqi_subsidy_is_40_percent_of_cash_alone_and_released_in_two_tranches(cli, engine, tmp_path):
    urumqi_parties(cli)
    approve_urumqi(cli)
    contract = yuan("3,000,000.00")
    assert cli_balances(cli, "UR2025-011") == balances_of(
        bid_contracted="3000000.00", bid_unpaid="3000000.00",
        grant_obligated="1200000.00", grant_unreleased="1200000.00",  # the ceiling 0.40 × 300万
    )
    assert [(t["name"], t["conditions"]) for t in cli_show(cli, "UR2025-011")["tranches"]] == [
        ("interim", ["contract_signed", "first_bid_payment"]),
        ("final", ["acceptance_passed", "audit_report_received"]),
    ]
    cli_refused(cli, engine, "release", "--project", "UR2025-011", "--date", "2025-06-25", says="contract signing")
    cli("stage", "--project", "UR2025-011", "--stage", "contract_signed", "--date", "2025-07-01")
    cli_refused(cli, engine, "release", "--project", "UR2025-011", "--date", "2025-07-02", says="bid payment")

    paid = {"cash": 0, "equity": 0, "in_kind": 0}
    released = 0

    def pay(amount: str, form: str, day: str, *, release: bool = False) -> dict:
        nonlocal released
        cli("bid", "pay", "--project", "UR2025-011", "--amount", amount, "--form", form, "--date", day)
        paid[form] += yuan(amount)
        if release:
            cli("release", "--project", "UR2025-011", "--date", day)
        earned = subsidy_fen(paid["cash"], contract)
        assert earned <= (4 * contract + 5) // 10
        got = cli_balances(cli, "UR2025-011")
        if release:
            released = yuan(got["subsidy_released"])
        assert got == balances_of(
            bid_contracted=contract,
            bid_paid_cash=paid["cash"],
            bid_paid_equity=paid["equity"],
            bid_paid_in_kind=paid["in_kind"],
            bid_unpaid=contract - sum(paid.values()),
            subsidy_base=paid["cash"],
            subsidy_earned=earned,
            subsidy_released=released,
            subsidy_payable=earned - released,
            grant_obligated=yuan("1,200,000.00"),
            grant_released=released,
            grant_unreleased=yuan("1,200,000.00") - released,
            advances_outstanding=0,
        )
        return got

    # The interim tranche pays what the first cash payment earned.
    assert pay("1,000,000.00", "cash", "2025-07-10", release=True)["subsidy_released"] == "400000.00"
    assert pay("333,333.33", "cash", "2025-08-01")["subsidy_earned"] == "533333.33"  # 533,333.332
    assert pay("500,000.00", "equity", "2025-08-15")["subsidy_earned"] == "533333.33"  # 技术入股: nothing
    assert pay("200,000.00", "in_kind", "2025-08-20")["subsidy_earned"] == "533333.33"  # in kind: nothing
    assert pay("333,333.33", "cash", "2025-09-01")["subsidy_earned"] == "666666.66"  # 666,666.664
    final = pay("633,333.34", "cash", "2025-10-01")  # the contract is now fully paid
    assert (final["bid_unpaid"], final["subsidy_earned"]) == ("0.00", "920000.00")
    cli_refused(
        cli, engine, "bid", "pay", "--project", "UR2025-011", "--amount", "0.01", "--date", "2025-10-02",
        says=("exceeds the contract remainder", "0.00"),
    )

    # Each bid payment's trace shows the base, what was left out of it and the formula.
    subsidy = [t["subsidy"] for t in traces(engine, "bid_payment", "UR2025-011")]
    assert [(s["base"], s["exclusions"], s["earned"], s["result"]) for s in subsidy] == [
        ("1000000.00", {"equity": "0.00", "in_kind": "0.00"}, "400000.00", "400000.00"),
        ("1333333.33", {"equity": "0.00", "in_kind": "0.00"}, "533333.33", "133333.33"),
        ("1333333.33", {"equity": "500000.00", "in_kind": "0.00"}, "533333.33", "0.00"),
        ("1333333.33", {"equity": "500000.00", "in_kind": "200000.00"}, "533333.33", "0.00"),
        ("1666666.66", {"equity": "500000.00", "in_kind": "200000.00"}, "666666.66", "133333.33"),
        ("2300000.00", {"equity": "500000.00", "in_kind": "200000.00"}, "920000.00", "253333.34"),
    ]
    assert subsidy[2]["formula"] == "min(round_half_up(0.40 × 1333333.33), round_half_up(0.40 × 3000000.00)) − 533333.33"
    assert all(s["rate"] == "0.40" and s["rounding"] == "ROUND_HALF_UP" and s["base_forms"] == ["cash"] for s in subsidy)

    # The interim tranche is spent; the final one waits on acceptance and the 专项审计报告.
    cli_refused(cli, engine, "release", "--project", "UR2025-011", "--date", "2025-10-05", says="acceptance")
    cli_refused(cli, engine, "release", "--project", "UR2025-011", "--tranche", "1", "--date", "2025-10-05", says="already released")
    cli("stage", "--project", "UR2025-011", "--stage", "acceptance", "--passed", "--date", "2027-07-15")
    cli_refused(cli, engine, "release", "--project", "UR2025-011", "--date", "2027-07-16", says="专项审计报告")
    cli("stage", "--project", "UR2025-011", "--stage", "audit_report", "--passed", "--date", "2027-08-01", "--reference", "新审专字〔2027〕88号")
    cli("release", "--project", "UR2025-011", "--date", "2027-08-10")
    assert cli_balances(cli, "UR2025-011") == balances_of(
        bid_contracted="3000000.00", bid_paid_cash="2300000.00", bid_paid_equity="500000.00",
        bid_paid_in_kind="200000.00", subsidy_base="2300000.00", subsidy_earned="920000.00",
        subsidy_released="920000.00", grant_obligated="1200000.00", grant_released="920000.00",
        grant_unreleased="280000.00",
    )
    release_traces = traces(engine, "release", "UR2025-011")
    assert [(t["name"], t["payable"], t["amount"]) for t in release_traces] == [
        ("interim", "400000.00", "400000.00"),
        ("final", "520000.00", "520000.00"),
    ]
    cli_refused(cli, engine, "release", "--project", "UR2025-011", "--date", "2027-08-11", says="released already")
    assert_verified(cli)
    export_and_bean_check(cli, tmp_path / "export")


def test_urumqi_cash_up_to_the_contract_earns_exactly_the_ceiling_and_no_more(cli, engine, tmp_path):
    urumqi_parties(cli)
    approve_urumqi(cli, code="UR2025-012", bid="1,234,567.89")
    ceiling = (4 * yuan("1,234,567.89") + 5) // 10  # 493,827.156 -> 493,827.16
    assert cli_balances(cli, "UR2025-012")["grant_obligated"] == format_fen(ceiling) == "493827.16"
    cash = 0
    for amount, day in (("0.01", "2025-07-01"), ("0.01", "2025-07-02"), ("1,000,000.00", "2025-07-03"), ("234,567.87", "2025-07-04")):
        cli("bid", "pay", "--project", "UR2025-012", "--amount", amount, "--date", day)
        cash += yuan(amount)
        got = cli_balances(cli, "UR2025-012")
        assert got["subsidy_earned"] == format_fen(subsidy_fen(cash, yuan("1,234,567.89")))
        assert yuan(got["subsidy_earned"]) <= ceiling
    assert cash == yuan("1,234,567.89")
    assert cli_balances(cli, "UR2025-012")["subsidy_earned"] == "493827.16"  # the ceiling, to the fen
    cli_refused(
        cli, engine, "bid", "pay", "--project", "UR2025-012", "--amount", "0.01", "--date", "2025-07-05",
        says="exceeds the contract remainder",
    )
    # The first fen earned nothing (0.004 rounds down), the second brought it to 0.01 (0.008 rounds up).
    assert [t["subsidy"]["result"] for t in traces(engine, "bid_payment", "UR2025-012")][:2] == ["0.00", "0.01"]
    assert_verified(cli)
    export_and_bean_check(cli, tmp_path / "export")


# --- Recovery from one 赛马 lane, and from an Urumqi subsidy (issue 14) -----------------------


def saima_three_lanes(cli, code: str = "JM2025-017") -> None:
    """A three-lane Jiangmen 赛马 with a 1,500,000.00 grant: 300,000.00 released to each lane."""
    jiangmen_parties(cli)
    cli("party", "add", "--uscc", JM_FIRM, "--name", "江门市某科技有限公司", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_INSTITUTE, "--name", "江门某民办研究院", "--kind", "institute", "--date", "2025-01-02")
    cli(
        "project", "approve", "--code", code, "--name", "储能电池热管理", "--city", "jiangmen",
        "--category", "tech_breakthrough", "--mode", "赛马", "--demand", JM_DEMAND,
        "--solver", JM_UNIVERSITY, "--solver", JM_FIRM, "--solver", JM_INSTITUTE,
        "--total-investment", "600万", "--grant", "1,500,000.00", "--start", "2025-10-01", "--end", "2028-09-30",
        "--date", "2025-09-20",
    )
    cli("stage", "--project", code, "--stage", "contract_signed", "--passed", "--date", "2025-10-08")
    for lane in ("L1", "L2", "L3"):
        cli("release", "--project", code, "--lane", lane, "--date", "2025-10-10")
        cli("spend", "--project", code, "--lane", lane, "--amount", "220,000.00", "--category", "业务费",
            "--date", "2026-01-15", "--voucher", f"PZ-{lane}-01")


def test_a_failed_saima_lane_repays_its_unspent_advance_and_its_named_misuse_alone(cli, engine, tmp_path):
    """The issue's scenario: L3 fails its stage assessment with 80,000.00 unspent and 20,000.00
    named misuse: L3's clawback is 100,000.00; L1 and L2 are untouched."""
    code = "JM2025-017"
    saima_three_lanes(cli, code)
    before = {lane: cli_balances(cli, code, lane=lane) for lane in ("L1", "L2")}
    assert cli_balances(cli, code, lane="L3")["advances_outstanding"] == "80000.00"
    fail = ("stage", "--project", code, "--stage", "stage_assessment", "--lane", "L3", "--failed", "--date", "2026-09-30")
    # Only L3's own spending can be named, at most what that spend was, and only with a failure.
    cli_refused(cli, engine, *fail, "--misused", "PZ-L1-01=20000", says=("spent by lane L1", "not by lane L3"))
    cli_refused(cli, engine, *fail, "--misused", "PZ-L3-01=220,000.01", says="exceeds that spend of 220,000.00")
    cli_refused(cli, engine, "stage", "--project", code, "--stage", "stage_assessment", "--lane", "L3", "--passed",
                "--misused", "PZ-L3-01=20000", "--date", "2026-09-30", says="failed 赛马 stage assessment")

    cli(*fail, "--misused", "PZ-L3-01=20,000.00", "--voucher", "KH-2026-L3")

    assert cli_balances(cli, code, lane="L3") == balances_of(
        grant_obligated="300000.00", grant_released="300000.00", fiscal_spent="200000.00",
        clawback_assessed="100000.00", clawback_outstanding="100000.00",
    )
    assert {lane: cli_balances(cli, code, lane=lane) for lane in ("L1", "L2")} == before
    [elimination] = [t["elimination"] for t in traces(engine, "stage", code) if "elimination" in t]
    assert (elimination["advances_outstanding"], elimination["misused"], elimination["formula"], elimination["clawback"]) == (
        "80000.00", {"PZ-L3-01": "20000.00"}, "advances outstanding + misused", "100000.00",
    )
    assert [(lane["lane"], lane["status"]) for lane in cli_show(cli, code)["lanes"]] == [
        ("L1", "active"), ("L2", "active"), ("L3", "eliminated"),
    ]

    # terminate --lane: L2 alone stops, with its own misuse; L1 goes on and is still paid.
    cli_refused(cli, engine, "terminate", "--project", code, "--lane", "L3", "--reference", "江科〔2026〕5号",
                "--date", "2026-10-01", says="eliminated")
    cli("terminate", "--project", code, "--lane", "L2", "--reference", "江科〔2026〕6号", "--misused", "PZ-L2-01=10,000.00",
        "--date", "2026-10-01")
    assert cli_balances(cli, code, lane="L2") == balances_of(
        grant_obligated="300000.00", grant_released="300000.00", fiscal_spent="210000.00",
        clawback_assessed="90000.00", clawback_outstanding="90000.00",
    )
    assert cli_balances(cli, code, lane="L1") == before["L1"]
    cli("stage", "--project", code, "--stage", "stage_assessment", "--lane", "L1", "--passed", "--date", "2026-10-02")
    cli("release", "--project", code, "--lane", "L1", "--date", "2026-10-10")
    assert cli_balances(cli, code, lane="L1")["grant_released"] == "500000.00"
    cli_refused(cli, engine, "release", "--project", code, "--lane", "L2", "--date", "2026-10-10", says="eliminated")
    assert cli_show(cli, code)["status"] != "terminated"
    assert_verified(cli)
    export_and_bean_check(cli, tmp_path / "export")


def test_an_urumqi_termination_recovers_the_subsidy_unspent_and_misused_with_its_trace(cli, engine, tmp_path):
    """The issue's scenario: 1,000,000.00 of subsidy released, 600,000.00 reported spent, of it
    100,000.00 named misuse: the recovery is 400,000.00 unspent + 100,000.00 misused."""
    urumqi_parties(cli)
    approve_urumqi(cli, bid="300万")
    code = "UR2025-011"
    cli("stage", "--project", code, "--stage", "contract_signed", "--date", "2025-07-01")
    cli("bid", "pay", "--project", code, "--amount", "2,500,000.00", "--form", "cash", "--date", "2025-07-10")
    cli("release", "--project", code, "--date", "2025-07-15")  # 0.40 × 2,500,000.00
    assert cli_balances(cli, code)["subsidy_released"] == "1000000.00"
    # The recipient reports the subsidy spent by category; never more than it holds unreported.
    cli("spend", "--project", code, "--amount", "400,000.00", "--category", "设备费", "--date", "2025-09-01", "--voucher", "UR-PZ-1")
    cli("spend", "--project", code, "--amount", "200,000.00", "--category", "业务费", "--date", "2025-09-02", "--voucher", "UR-PZ-2")
    cli_refused(cli, engine, "spend", "--project", code, "--amount", "400,000.01", "--category", "业务费",
                "--date", "2025-09-03", says="400,000.00")
    cli_refused(cli, engine, "terminate", "--project", code, "--reference", "乌科〔2025〕80号", "--misused", "UR-PZ-2=200,000.01",
                "--date", "2025-10-01", says="exceeds that spend of 200,000.00")

    terminated = cli("terminate", "--project", code, "--reference", "乌科〔2025〕80号", "--misused", "UR-PZ-2=100,000.00",
                     "--date", "2025-10-01", "--voucher", "ZZ-UR-2025-1")

    got = cli_balances(cli, code)
    assert (got["clawback_assessed"], got["clawback_outstanding"], got["subsidy_released"], got["subsidy_earned"]) == (
        "500000.00", "500000.00", "1000000.00", "500000.00",
    )
    entry = int(re.search(r"分录 (\d+)", terminated.stdout).group(1))
    rows = json.loads(cli("journal", "--project", code, "--kind", "termination", "--format", "json").stdout)
    legs = sorted((r["account"], r["amount"]) for r in rows if r["entry"] == entry)
    assert legs == sorted([
        ("Assets:Fiscal:ClawbackReceivable:UR2025-011:L1", "500000.00"),
        ("Expenses:Fiscal:Subsidy:UR2025-011:L1", "-400000.00"),  # unspent
        ("Expenses:Fiscal:Subsidy:UR2025-011:L1", "-100000.00"),  # misused
        ("Assets:Memo:Subsidy:Unreported:UR2025-011:L1", "-400000.00"),
        ("Assets:Memo:Subsidy:Reported:UR2025-011:L1:Business", "-100000.00"),
        ("Equity:Memo:Subsidy:Released:UR2025-011:L1", "400000.00"),
        ("Equity:Memo:Subsidy:Released:UR2025-011:L1", "100000.00"),
        ("Assets:Memo:Grant:Unreleased:UR2025-011:L1", "-200000.00"),
        ("Assets:Memo:Budget:Available:Y2025", "200000.00"),
    ])
    [trace] = traces(engine, "termination", code)
    lane = trace["lanes"]["L1"]
    assert (lane["subsidy_released"], lane["subsidy_reported_spent"], lane["subsidy_unreported"], lane["misused"],
            lane["formula"], lane["clawback"]) == (
        "1000000.00", "600000.00", "400000.00", {"UR-PZ-2": "100000.00"},
        "subsidy released not reported spent + misused", "500000.00",
    )
    assert lane["recovers"] == ["unspent", "misused"] and "列支" in lane["clause"]
    # The audit pack shows the subsidy's use: released = reported spent + unreported + recovered.
    from openpyxl import load_workbook
    from test_audit import audit, fen, sheet_rows

    workbook = load_workbook(audit(cli, tmp_path / "pack", code, "2025-10-01")["xlsx"])
    [use] = sheet_rows(workbook["5 补助使用"])
    assert {k: fen(use[k]) for k in ("已拨付补助", "设备费", "业务费", "劳务费", "已报告支出", "未报告结余", "已核定追回")} == {
        "已拨付补助": yuan("1,000,000.00"), "设备费": yuan("400,000.00"), "业务费": yuan("100,000.00"), "劳务费": 0,
        "已报告支出": yuan("500,000.00"), "未报告结余": 0, "已核定追回": yuan("500,000.00"),
    }
    [misuse] = sheet_rows(workbook["6 违规使用"])[:-1]
    assert (misuse["支出凭证"], fen(misuse["支出金额"]), fen(misuse["违规使用金额"]), misuse["认定文号"]) == (
        "UR-PZ-2", yuan("200,000.00"), yuan("100,000.00"), "乌科〔2025〕80号")
    cli("collect", "--project", code, "--amount", "500,000.00", "--date", "2025-11-01")
    cli("remit", "--amount", "500,000.00", "--date", "2025-11-20")
    assert cli_balances(cli, code)["clawback_outstanding"] == "0.00"
    assert_verified(cli)
    export_and_bean_check(cli, tmp_path / "export")


def test_a_failed_urumqi_acceptance_recovers_the_subsidy_unspent_and_misused_as_a_termination(cli, engine):
    """closure.failed_acceptance (DEFAULT terminate) in Urumqi: the failed acceptance is the
    termination, in one entry — 1,000,000.00 of subsidy released, 600,000.00 reported spent,
    100,000.00 of it named misuse: 400,000.00 unspent + 100,000.00 misused are recovered,
    the subsidy earned and not released is forfeit, and nothing more can be released."""
    urumqi_parties(cli)
    approve_urumqi(cli, bid="300万")
    code = "UR2025-011"
    cli("stage", "--project", code, "--stage", "contract_signed", "--date", "2025-07-01")
    cli("bid", "pay", "--project", code, "--amount", "2,500,000.00", "--form", "cash", "--date", "2025-07-10")
    cli("release", "--project", code, "--date", "2025-07-15")
    cli("spend", "--project", code, "--amount", "400,000.00", "--category", "设备费", "--date", "2025-09-01", "--voucher", "UR-PZ-1")
    cli("spend", "--project", code, "--amount", "200,000.00", "--category", "业务费", "--date", "2025-09-02", "--voucher", "UR-PZ-2")
    # One fen more misuse than the spend holds is refused, nothing written.
    cli_refused(cli, engine, "stage", "--project", code, "--stage", "acceptance", "--failed", "--misused", "UR-PZ-2=200,000.01",
                "--date", "2027-07-10", says="exceeds that spend of 200,000.00")
    failed = cli("stage", "--project", code, "--stage", "acceptance", "--failed", "--misused", "UR-PZ-2=100,000.00",
                 "--date", "2027-07-10", "--voucher", "YS-UR-F")
    assert "追回 500,000.00" in failed.stdout
    got = cli_balances(cli, code)
    assert (got["clawback_assessed"], got["clawback_outstanding"], got["subsidy_released"]) == ("500000.00", "500000.00", "1000000.00")
    # The failed acceptance is the last stage entry, and it carries the termination's trace.
    assert traces(engine, "termination", code) == []
    trace = traces(engine, "stage", code)[-1]
    ended = trace["failed_acceptance"]
    assert (ended["consequence"], ended["recovers"]) == ("terminate", ["unspent", "misused"])
    lane = ended["lanes"]["L1"]
    assert (lane["subsidy_released"], lane["subsidy_reported_spent"], lane["subsidy_unreported"], lane["misused"],
            lane["clawback"], lane["deobligated"]) == (
        "1000000.00", "600000.00", "400000.00", {"UR-PZ-2": "100000.00"}, "500000.00", "200000.00")
    cli_refused(cli, engine, "release", "--project", code, "--date", "2027-07-20", says="terminated")
    assert_verified(cli)
