"""The budget exposure forecast (`jiebang report forecast`).

The ledger-reading tests run on SQLite and PostgreSQL: a hand-computable programme of three
projects (a Jiangmen 揭榜挂帅, a Jiangmen 赛马 with two lanes, an Urumqi 揭榜挂帅) is recorded
through the services and the forecast is checked to the fen per year, with every amount
worked out in the comments. The Monte Carlo is checked against the schedule (all
probabilities 0), against a termination at time 0, against an expectation computed by hand,
and for byte-identical output under the same seed. The simulation tests build their plans by
hand and need no database.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from programme_fixtures import (
    ACTOR,
    JM_FIRM,
    JM_UNIVERSITY,
    D,
    approve,
    jiangmen_world,
    jm_approval,
    table_counts,
    ur_approval,
    urumqi_world,
    yuan,
)

from ledger.programme import (
    appropriate,
    bid_pay,
    extend,
    load_project,
    record_stage,
    release,
    terminate,
    tranche_views,
)
from reports.forecast import (
    LanePlan,
    PendingTranche,
    ProjectPlan,
    Scenario,
    Window,
    load_scenario,
    mean_fen,
    nearest_rank,
    read_plans,
    schedule,
    simulate,
)

AS_OF = "2026-01-01"
JM_A, JM_B, UR_C = "JM2025-101", "JM2025-102", "UR2025-103"


# --- the hand-computable ledger ---------------------------------------------------------------


def hand_ledger(session_factory) -> None:
    """Three projects as of 2026-01-01.

    JM2025-101 Jiangmen 揭榜挂帅, grant 3,000,000.00 (60/40: 1,800,000.00 + 1,200,000.00),
      period 2025-10-01..2028-09-30. Contract signed 2025-10-15 and released 2025-10-20, so
      only the mid-term tranche is left: 1,200,000.00 at the half-way day, 2025-10-01 + 1095 // 2
      days = 2027-04-01.
    JM2025-102 Jiangmen 赛马, lanes L1 and L2, grant 2,000,000.01, period 2026-01-01..2028-12-31.
      Lanes 1,000,000.01 and 1,000,000.00 (odd fen to L1); tranches 60/40: L1 600,000.01 +
      400,000.00, L2 600,000.00 + 400,000.00. The contract, expected 30 days after approval on
      2025-12-01, is overdue on 2025-12-31 and so expected on the as-of date: 1,200,000.01 in
      2026. The stage assessment falls on 2026-01-01 + 1095 // 2 = 2027-07-02: 800,000.00 in 2027.
    UR2025-103 Urumqi 揭榜挂帅, bid contract 3,000,000.00, period 2026-01-01..2027-12-31. Contract
      signed, 500,000.00 paid in cash (earns 200,000.00, payable, the interim tranche is
      eligible) and 250,000.00 as equity (earns nothing). Unpaid 2,250,000.00, so the subsidy
      still to come is 0.40 × (500,000.00 + 2,250,000.00) − 200,000.00 = 900,000.00, spread
      over 365 + 365 days: 450,000.00 in 2026 and 450,000.00 in 2027. The 200,000.00 payable
      leaves on the as-of date.
    Appropriations: 50,000,000.00 for 2025 (the obligations) and 2,000,000.00 for 2026.

    Per year: 2026 = 1,200,000.01 + 200,000.00 + 450,000.00 = 1,850,000.01;
              2027 = 1,200,000.00 + 800,000.00 + 450,000.00 = 2,450,000.00; later years 0.
    """
    with session_factory() as s:
        jiangmen_world(s)
        urumqi_world(s)
        appropriate(s, year=2026, amount_fen=yuan("2,000,000.00"), date=D(2025, 12, 20), voucher=None, actor=ACTOR)
        approve(s, jm_approval(code=JM_A))
        approve(s, jm_approval(code=JM_B, mode="saima", solver_usccs=(JM_UNIVERSITY, JM_FIRM), approval_date=D(2025, 12, 1),
                               start_date=D(2026, 1, 1), end_date=D(2028, 12, 31), approved_grant_fen=yuan("2,000,000.01")))
        approve(s, ur_approval(code=UR_C, approval_date=D(2025, 11, 1), start_date=D(2026, 1, 1), end_date=D(2027, 12, 31),
                               bid_contract_fen=(yuan("3,000,000.00"),)))
    with session_factory() as s:
        record_stage(s, project=JM_A, stage="contract_signed", passed=True, date=D(2025, 10, 15), voucher=None, actor=ACTOR)
        release(s, project=JM_A, lane=None, date=D(2025, 10, 20), voucher=None, actor=ACTOR)
        record_stage(s, project=UR_C, stage="contract_signed", passed=True, date=D(2025, 11, 20), voucher=None, actor=ACTOR)
        bid_pay(s, project=UR_C, lane=None, amount_fen=yuan("500,000.00"), form="cash", date=D(2025, 12, 15), voucher=None, actor=ACTOR)
        bid_pay(s, project=UR_C, lane=None, amount_fen=yuan("250,000.00"), form="equity", date=D(2025, 12, 16), voucher=None, actor=ACTOR)


def later_events(session_factory) -> None:
    """What happens after 2026-01-01: JM2025-102's contract and both 60% releases in February,
    an extension of JM2025-101, UR2025-103 terminated, L2 of JM2025-102 eliminated."""
    with session_factory() as s:
        record_stage(s, project=JM_B, stage="contract_signed", passed=True, date=D(2026, 2, 1), voucher=None, actor=ACTOR)
        release(s, project=JM_B, lane="L1", date=D(2026, 2, 10), voucher=None, actor=ACTOR)
        release(s, project=JM_B, lane="L2", date=D(2026, 2, 10), voucher=None, actor=ACTOR)
        extend(s, project=JM_A, months=6, date=D(2026, 3, 1), reference="江科延〔2026〕1号", reason="不可抗力", voucher=None, actor=ACTOR)
        terminate(s, project=UR_C, date=D(2026, 6, 30), reference="乌科终〔2026〕2号", voucher=None, actor=ACTOR)
        record_stage(s, project=JM_B, stage="stage_assessment", passed=True, lane="L1", date=D(2027, 7, 10), voucher=None, actor=ACTOR)
        record_stage(s, project=JM_B, stage="stage_assessment", passed=False, lane="L2", date=D(2027, 7, 10), voucher=None, actor=ACTOR)


def forecast(cli, *args: str) -> dict:
    result = cli("report", "forecast", "--format", "json", *args)
    return json.loads(result.stdout)


def by_period(rows: list[dict], *keys: str) -> dict[str, tuple]:
    return {r["period"]: tuple(r[k] for k in keys) for r in rows}


def project_schedule(data: dict) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for r in data["projects"]:
        if r["schedule"] != "0.00":
            out.setdefault(r["code"], {})[r["period"]] = r["schedule"]
    return out


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- 1. the deterministic schedule, to the fen ---------------------------------------------


def test_schedule_of_the_hand_ledger_is_exact_per_year_and_project(cli, session_factory):
    hand_ledger(session_factory)
    data = forecast(cli, "--as-of", AS_OF, "--years", "4", "--runs", "200")
    assert [r["period"] for r in data["summary"]] == ["2026", "2027", "2028", "2029", "after 2029", "total"]
    assert by_period(data["summary"], "appropriation", "schedule", "headroom", "unreleased_after") == {
        "2026": ("2000000.00", "1850000.01", "149999.99", "2450000.00"),
        "2027": ("0.00", "2450000.00", "-2450000.00", "0.00"),
        "2028": ("0.00", "0.00", "0.00", "0.00"),
        "2029": ("0.00", "0.00", "0.00", "0.00"),
        "after 2029": (None, "0.00", None, "0.00"),
        "total": ("2000000.00", "4300000.01", "-2300000.01", "0.00"),
    }
    assert project_schedule(data) == {
        JM_A: {"2027": "1200000.00"},
        JM_B: {"2026": "1200000.01", "2027": "800000.00"},
        UR_C: {"2026": "650000.00", "2027": "450000.00"},
    }
    assert sorted((r["code"], r["lane"], r["item"], r["from"], r["to"], r["amount"]) for r in data["schedule"]) == [
        (JM_A, "L1", "midterm", "2027-04-01", "2027-04-01", "1200000.00"),
        (JM_B, "L1", "contract", AS_OF, AS_OF, "600000.01"),
        (JM_B, "L1", "midterm", "2027-07-02", "2027-07-02", "400000.00"),
        (JM_B, "L2", "contract", AS_OF, AS_OF, "600000.00"),
        (JM_B, "L2", "midterm", "2027-07-02", "2027-07-02", "400000.00"),
        (UR_C, "L1", "subsidy", "2026-01-01", "2026-12-31", "450000.00"),
        (UR_C, "L1", "subsidy", "2027-01-01", "2027-12-31", "450000.00"),
        (UR_C, "L1", "subsidy payable", AS_OF, AS_OF, "200000.00"),
    ]
    groups = {(r["dimension"], r["key"], r["period"]): r["schedule"] for r in data["groups"] if r["schedule"] != "0.00"}
    assert groups == {
        ("city", "jiangmen", "2026"): "1200000.01", ("city", "jiangmen", "2027"): "2000000.00",
        ("city", "urumqi", "2026"): "650000.00", ("city", "urumqi", "2027"): "450000.00",
        ("category", "tech_breakthrough", "2026"): "1200000.01", ("category", "tech_breakthrough", "2027"): "2000000.00",
        ("category", "commercialization", "2026"): "650000.00", ("category", "commercialization", "2027"): "450000.00",
        ("mode", "jbgs", "2026"): "650000.00", ("mode", "jbgs", "2027"): "1650000.00",
        ("mode", "saima", "2026"): "1200000.01", ("mode", "saima", "2027"): "800000.00",
    }
    # No scenario: nothing fails, so every run is the schedule.
    for row in data["summary"]:
        assert row["expected"] == row["p10"] == row["p50"] == row["p90"] == row["p95"] == row["schedule"], row


def test_city_filter_and_the_at_tranches_release_of_the_urumqi_subsidy(cli, session_factory, tmp_path):
    hand_ledger(session_factory)
    data = forecast(cli, "--as-of", AS_OF, "--years", "4", "--runs", "50", "--city", "urumqi")
    assert project_schedule(data) == {UR_C: {"2026": "650000.00", "2027": "450000.00"}}
    # at_tranches: the interim tranche (eligible now) takes the payable and what is earned by
    # today, 900,000.00 × 1 day // 730 days = 1,232.87; the rest waits for the final tranche at
    # acceptance, 6 months after the period end (2028-06-30): 900,000.00 − 1,232.87.
    scenario = write(tmp_path, "tranches.toml", '[schedule]\nsubsidy_release = "at_tranches"\n')
    data = forecast(cli, "--as-of", AS_OF, "--years", "4", "--runs", "50", "--city", "urumqi", "--scenario", str(scenario))
    assert project_schedule(data) == {UR_C: {"2026": "201232.87", "2028": "898767.13"}}
    refused = cli("report", "forecast", "--as-of", AS_OF, "--city", "shenzhen", expect=1)
    assert "--city 'shenzhen' is not a city" in refused.stderr


def test_read_plans_agrees_with_load_project_at_every_date(session_factory):
    """The forecast folds events in bulk; load_project folds them one project at a time."""
    hand_ledger(session_factory)
    later_events(session_factory)
    for when in (D(2025, 12, 31), D(2026, 1, 1), D(2026, 2, 15), D(2026, 7, 1), D(2027, 12, 31)):
        with session_factory() as s:
            plans = {p.code: p for p in read_plans(s, when)}
            for code, plan in plans.items():
                state = load_project(s, code, as_of=when)
                views = tranche_views(s, state)
                expected = sorted((v.lane_no, v.seq, v.unmet) for v in views if v.status in ("planned", "eligible"))
                got = sorted((lane.lane_no, t.seq, t.unmet) for lane in plan.lanes for t in lane.tranches)
                assert got == expected, (code, when)
                assert plan.end_date == state.end_date and plan.terminated == (state.terminated_on is not None)


# --- 2. the Monte Carlo against the schedule and by hand -------------------------------------

ZERO = """
[scenario]
name = "zero"
[midterm]
failure_rate = 0
[termination]
rate = 0.0
[delay]
days = [0]
probabilities = [1]
[recoveries]
collected_share = 1
"""


def test_all_probabilities_zero_give_the_schedule_in_every_run(cli, session_factory, tmp_path):
    hand_ledger(session_factory)
    data = forecast(cli, "--as-of", AS_OF, "--years", "4", "--runs", "3000", "--seed", "11",
                    "--scenario", str(write(tmp_path, "zero.toml", ZERO)))
    for row in data["summary"]:
        assert row["expected"] == row["p10"] == row["p50"] == row["p90"] == row["p95"] == row["schedule"], row
    for row in data["projects"]:
        assert row["expected"] == row["schedule"], row


def test_termination_rate_one_at_time_zero_leaves_nothing_after_the_first_year(cli, session_factory, tmp_path):
    hand_ledger(session_factory)
    scenario = write(tmp_path, "stop.toml", "[termination]\nrate = 1\ntiming = 0\n")
    data = forecast(cli, "--as-of", AS_OF, "--years", "4", "--runs", "500", "--scenario", str(scenario))
    # Every project stops on the as-of date: what is due that day still leaves (JM2025-102's
    # contract tranches 1,200,000.01 and UR2025-103's payable 200,000.00), plus the subsidy
    # earned on that one day: 450,000.00 × 1/365 = 1,232.876... → 1,232.88.
    first = {k: data["summary"][0][k] for k in ("period", "expected", "p10", "p50", "p90", "p95")}
    assert first == {"period": "2026", **{k: "1401232.89" for k in ("expected", "p10", "p50", "p90", "p95")}}
    for row in data["summary"][1:-1]:
        assert (row["expected"], row["p50"], row["p90"], row["p95"]) == ("0.00",) * 4, row


def test_saima_survivors_keep_exactly_one_stage_tranche(cli, session_factory, tmp_path):
    hand_ledger(session_factory)
    scenario = write(tmp_path, "race.toml", "[saima]\nsurvivors = { 2 = 1 }\n")
    data = forecast(cli, "--as-of", AS_OF, "--years", "4", "--runs", "400", "--scenario", str(scenario))
    # One of JM2025-102's two 400,000.00 stage tranches goes in every run: 2027 is
    # 2,450,000.00 − 400,000.00 whichever lane survives.
    row = data["summary"][1]
    assert (row["period"], row["expected"], row["p10"], row["p95"]) == ("2027", "2050000.00", "2050000.00", "2050000.00")


def _plan(code: str, *, approval: dt.date, start: dt.date, end: dt.date, grant_parts: tuple[int, int]) -> ProjectPlan:
    contract, midterm = grant_parts
    tranches = (PendingTranche(1, "contract", "grant_share", contract, ("contract_signed",)),
                PendingTranche(2, "midterm", "grant_share", midterm, ("midterm_passed",)))
    return ProjectPlan(code=code, name=code, city="jiangmen", category="tech_breakthrough", mode="jbgs", source="pipeline",
                       funding_model="staged_grant", approval_date=approval, start_date=start, end_date=end, acceptance_months=6,
                       lanes=(LanePlan(1, tranches, unreleased_fen=contract + midterm),), racing=False)


def test_expected_value_converges_to_the_analytic_expectation():
    """200 identical projects as of 2026-01-01: the contract tranche (600,000.00, due now) and
    the mid-term tranche (400,000.00 on day 547, 2027-07-02). Scenario: mid-term failure 0.3,
    termination 0.2 uniform over the remaining period [day 0, day 1095], delay 0 or 365 days
    with probability 1/2 each.

    The contract tranche always leaves (a termination is on day 0 or later) and lands in 2026
    or, delayed, in 2027. The mid-term tranche survives with p = 0.7 × (1 − 0.2 × 547/1095)
    and lands in 2027 or 2028. Tolerance: 5 standard errors of the mean, from the runs.
    """
    as_of = D(2026, 1, 1)
    plans = [_plan(f"P{i:03d}", approval=D(2025, 12, 1), start=D(2026, 1, 1), end=D(2028, 12, 31),
                   grant_parts=(60_000_000, 40_000_000)) for i in range(200)]
    scenario = Scenario(midterm_failure_rate=0.3, termination_rate=0.2, termination_timing=(0.0, 1.0),
                        delay_days=(0, 365), delay_probabilities=(0.5, 0.5))
    sched = schedule(plans, Window(as_of, 2026, 3), scenario)
    assert sorted(set(zip(sched.flows["item"], sched.flows["t0"]))) == [("contract", 0), ("midterm", 547)]
    runs = 20_000
    result = simulate(sched.sim, scenario, runs=runs, seed=3)
    per_run = result.releases.sum(axis=1) / 100  # yuan, for the comparison only
    survive = 0.7 * (1 - 0.2 * 547 / 1095)
    analytic = {1: 0.5 * 600_000 * 200, 2: 0.5 * 600_000 * 200 + 0.5 * survive * 400_000 * 200, 3: 0.5 * survive * 400_000 * 200}
    for bucket, value in analytic.items():
        mean, sd = per_run[:, bucket].mean(), per_run[:, bucket].std()
        assert abs(mean - value) <= 5 * sd / np.sqrt(runs), (bucket, mean, value)
    # The flows add up in every run to what survived; nothing is created.
    assert (result.releases.sum(axis=(1, 2)) <= 200 * 100_000_000).all()


def test_percentiles_are_nearest_rank_and_means_round_half_up():
    values = np.array([[5], [1], [4], [2], [3]], dtype=np.int64)
    assert [int(nearest_rank(values, q)[0]) for q in (10, 20, 50, 90, 100)] == [1, 1, 3, 5, 5]
    assert mean_fen(5, 2) == 3 and mean_fen(4, 3) == 1 and mean_fen(5, 3) == 2


# --- 3. same seed, same bytes; the chart -----------------------------------------------------

CAUTIOUS = """
[scenario]
name = "cautious"
description = "one mid-term check in five fails; one of two racers survives"
[midterm]
failure_rate = 0.2
[termination]
rate = 0.05
timing = [0.2, 0.8]
[saima]
survivors = { 2 = 1, 3 = 1 }
[delay]
days = [0, 90, 180]
probabilities = [0.6, 0.3, 0.1]
[recoveries]
collected_share = 0.7
"""


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(cli, session_factory, tmp_path):
    hand_ledger(session_factory)
    scenario = str(write(tmp_path, "cautious.toml", CAUTIOUS))
    args = ("report", "forecast", "--as-of", AS_OF, "--years", "4", "--runs", "2000", "--scenario", scenario)
    for fmt in ("json", "csv", "table"):
        first = cli(*args, "--seed", "7", "--format", fmt).stdout
        assert cli(*args, "--seed", "7", "--format", fmt).stdout == first
    assert cli(*args, "--seed", "8", "--format", "json").stdout != cli(*args, "--seed", "7", "--format", "json").stdout
    written = []
    for name in ("a", "b"):
        out = cli(*args, "--seed", "7", "--out", str(tmp_path / name)).stdout.split()
        written.append({Path(p).name: Path(p).read_bytes() for p in out if p != "wrote"})
    assert set(written[0]) == {"forecast-2026-01-01-2026-4y.xlsx", "forecast-2026-01-01-2026-4y.pdf"}
    assert written[0] == written[1]


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed")
def test_the_chart_page_rasterises_with_band_and_expected_line(cli, session_factory, tmp_path):
    from PIL import Image

    hand_ledger(session_factory)
    scenario = str(write(tmp_path, "cautious.toml", CAUTIOUS))
    cli("report", "forecast", "--as-of", AS_OF, "--years", "4", "--runs", "2000", "--scenario", scenario, "--out", str(tmp_path / "out"))
    pdf = tmp_path / "out" / "forecast-2026-01-01-2026-4y.pdf"
    subprocess.run(["pdftoppm", "-r", "60", "-f", "1", "-l", "1", "-png", str(pdf), str(tmp_path / "page")], check=True,
                   capture_output=True)
    image = Image.open(next(tmp_path.glob("page*.png"))).convert("RGB")
    pixels = np.asarray(image).reshape(-1, 3).astype(int)

    def near(rgb: tuple[int, int, int]) -> int:
        return int((np.abs(pixels - np.array(rgb)).sum(axis=1) <= 24).sum())

    assert near((0xC6, 0xDB, 0xEF)) > 50, "the P10–P90 band is missing"
    assert near((0x08, 0x51, 0x9C)) > 20, "the expected line is missing"
    assert near((0xD9, 0x48, 0x01)) > 20, "the appropriation line is missing"
    text = subprocess.run(["pdftotext", "-layout", "-f", "1", "-l", "1", str(pdf), "-"], check=True, capture_output=True,
                          text=True).stdout
    assert "中期检查未通过的概率" in text and "cautious" in text  # the assumptions are printed beside the chart, in Chinese
    assert "failure_rate" not in text and "/" not in text.split("情景文件")[1].splitlines()[0]  # no key, no path


# --- 4. refusals, one line each --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[midterm]\nfailure_rate = 1.5\n", "midterm.failure_rate: probability 1.5 is outside [0, 1]"),
        ("[termination]\nrate = -0.1\n", "termination.rate: probability -0.1 is outside [0, 1]"),
        ("[termination]\nrate = true\n", "termination.rate: True is not a probability"),
        ("[termination]\ntiming = [0.8, 0.2]\n", "termination.timing: low 0.8 is above high 0.2"),
        ("[delay]\ndays = [0, -30]\nprobabilities = [0.5, 0.5]\n", "delay.days: -30 days is negative"),
        ("[schedule]\ncontract_offset_days = -1\n", "schedule.contract_offset_days: -1 days is negative"),
        ("[delay]\ndays = [0, 30]\nprobabilities = [0.5, 0.6]\n", "delay.probabilities: they add up to 1.1, not 1"),
        ("[delay]\ndays = [0, 30]\n", "delay: give both days and probabilities"),
        ("[saima]\nsurvivors = { 2 = 3 }\n", "saima.survivors.2: 3 surviving lanes is more than the 2 lanes in the race"),
        ("[saima]\nsurvivors = { 1 = 1 }\n", "saima.survivors.1: a race has 2 or more lanes"),
        ("[termination]\nrate = 0.1\nwhen = 0.5\n", "termination.when: unknown key; known keys are rate, timing"),
        ("[weather]\nrain = 1\n", "weather: unknown section"),
        ("[midterm\nfailure_rate = 0.1\n", "is not valid TOML"),
    ],
)
def test_bad_scenario_files_are_refused_in_one_line(cli, tmp_path, text, says):
    path = write(tmp_path, "bad.toml", text)
    result = cli("report", "forecast", "--as-of", AS_OF, "--scenario", str(path), expect=1)
    line = result.stderr.strip()
    assert line.startswith("error: scenario bad.toml") and "\n" not in line, line
    assert says in line, line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--runs", "0"), "--runs 0 is outside 1..100,000"),
        (("--runs", "100001"), "--runs 100001 is outside 1..100,000"),
        (("--years", "0"), "--years 0 is outside 1..30"),
        (("--years", "31"), "--years 31 is outside 1..30"),
        (("--as-of", AS_OF, "--from", "2025"), "--from 2025 is before the as-of year 2026"),
    ],
)
def test_bounds_are_refused_in_one_line(cli, args, says):
    result = cli("report", "forecast", *args, expect=1)
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_past_years_without_as_of_are_refused(cli):
    past = dt.date.today().year - 1
    result = cli("report", "forecast", "--from", str(past), expect=1)
    assert f"--from {past} is in the past" in result.stderr and "give --as-of" in result.stderr


def test_runs_at_the_bound_are_accepted(cli, session_factory):
    hand_ledger(session_factory)
    data = forecast(cli, "--as-of", AS_OF, "--years", "1", "--runs", "100000")
    assert data["runs"] == 100_000 and data["summary"][0]["expected"] == "1850000.01"
    assert forecast(cli, "--as-of", AS_OF, "--years", "1", "--runs", "1")["summary"][0]["p95"] == "1850000.01"


# --- 5. pipeline projects, recoveries and the back-test ---------------------------------------

PIPELINE_TOML = """
[[project]]
code = "JM-P2026-01"
name = "江门赛马储备项目"
city = "jiangmen"
mode = "赛马"
category = "技术攻关"
round = 2026
period_months = 36
grant = "300万"
lanes = 2

[[project]]
code = "UR-P2026-02"
city = "urumqi"
mode = "jbgs"
category = "commercialization"
approval = 2026-06-30
start = 2026-07-01
end = 2027-06-30
bids = ["250万"]
"""

PIPELINE_CSV = """code,name,city,mode,category,round,period_months,grant,lanes,approval,start,end,bids
JM-P2026-01,江门赛马储备项目,jiangmen,赛马,技术攻关,2026,36,300万,2,,,,
UR-P2026-02,,urumqi,jbgs,commercialization,,,,,2026-06-30,2026-07-01,2027-06-30,250万
"""


def test_pipeline_projects_join_the_forecast_without_touching_the_ledger(cli, session_factory, engine, tmp_path):
    """JM-P2026-01: round 2026 → approved 2026-09-30 (J11: 立项 in September); 3,000,000.00 split
    1,500,000.00 per lane, 60/40: contracts 2 × 900,000.00 on 2026-10-30; stage tranches
    2 × 600,000.00 at the half-way day of 2026-09-30..2029-09-29, 2028-03-30.
    UR-P2026-02: 0.40 × 2,500,000.00 = 1,000,000.00 over 2026-07-01..2027-06-30, 184 and 181 of
    365 days: 504,109.58|9 and 495,890.41|09 floor to 504,109.58 and 495,890.41, the odd fen to
    the first year: 504,109.59 and 495,890.41."""
    hand_ledger(session_factory)
    before = table_counts(engine)
    expected = {
        "JM-P2026-01": {"2026": "1800000.00", "2028": "1200000.00"},
        "UR-P2026-02": {"2026": "504109.59", "2027": "495890.41"},
    }
    for name, text in (("pipeline.toml", PIPELINE_TOML), ("pipeline.csv", PIPELINE_CSV)):
        data = forecast(cli, "--as-of", AS_OF, "--years", "4", "--runs", "50", "--pipeline", str(write(tmp_path, name, text)))
        schedules = project_schedule(data)
        assert {code: schedules[code] for code in expected} == expected, name
        assert {r["code"]: r["source"] for r in data["projects"]}["JM-P2026-01"] == "pipeline"
        assert data["summary"][0]["schedule"] == "4154109.60"  # 1,850,000.01 + 1,800,000.00 + 504,109.59
    assert table_counts(engine) == before


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (PIPELINE_TOML.replace("round = 2026", "round = 2026\ncolour = \"red\""), "project 1: colour: unknown key"),
        (PIPELINE_TOML.replace("approval = 2026-06-30", "approval = 2025-06-30"), "project 2: approval: 2025-06-30 is before the as-of date"),
        (PIPELINE_TOML.replace('bids = ["250万"]', 'bids = ["250万", "100万"]'), "project 2: lanes: 揭榜挂帅 has 1 solver"),
        (PIPELINE_TOML.replace('grant = "300万"', 'bids = ["300万"]'), "project 1: grant: jiangmen-2023-trial pays an approved grant"),
        (PIPELINE_TOML.replace('code = "UR-P2026-02"', f'code = "{JM_A}"'), f"project 2: code {JM_A} is already used"),
    ],
)
def test_bad_pipeline_files_are_refused_in_one_line(cli, session_factory, tmp_path, text, says):
    hand_ledger(session_factory)
    result = cli("report", "forecast", "--as-of", AS_OF, "--pipeline", str(write(tmp_path, "pipe.toml", text)), expect=1)
    assert says in result.stderr, result.stderr


def test_clawback_outstanding_is_the_expected_recovery(cli, session_factory, tmp_path):
    """JM2025-101 is terminated on 2026-06-30 with its 1,800,000.00 release unspent: that is its
    clawback; it has no releases left. Collected share 0.5: about half is expected back."""
    hand_ledger(session_factory)
    with session_factory() as s:
        terminate(s, project=JM_A, date=D(2026, 6, 30), reference="江科终〔2026〕3号", voucher=None, actor=ACTOR)
    data = forecast(cli, "--as-of", "2026-07-01", "--years", "3", "--runs", "200")
    assert by_period(data["summary"], "recoveries", "recoveries_expected")["2026"] == ("1800000.00", "1800000.00")
    assert JM_A not in project_schedule(data)
    half = write(tmp_path, "half.toml", "[recoveries]\ncollected_share = 0.5\n")
    data = forecast(cli, "--as-of", "2026-07-01", "--years", "3", "--runs", "10000", "--scenario", str(half))
    collected = float(data["summary"][0]["recoveries_expected"])
    assert abs(collected - 900_000) <= 5 * 900_000 / np.sqrt(10_000)  # sd of 1,800,000 × Bernoulli(0.5) is 900,000


def test_back_test_compares_the_forecast_with_releases_recorded_since(cli, session_factory):
    hand_ledger(session_factory)
    before = forecast(cli, "--as-of", AS_OF, "--years", "2", "--runs", "100")
    later_events(session_factory)
    after = forecast(cli, "--as-of", AS_OF, "--years", "2", "--runs", "100")
    # Events after the as-of date never change the forecast made as of it.
    assert before["summary"] == after["summary"] and before["projects"] == after["projects"]
    rows = by_period(after["back_test"]["rows"], "schedule", "actual_known", "actual_all", "schedule_error")
    # Released since: JM2025-102's two contract tranches in February 2026, 1,200,000.01.
    assert rows["2026"] == ("1850000.01", "1200000.01", "1200000.01", "650000.00")
    assert rows["2027"] == ("2450000.00", "0.00", "0.00", "2450000.00")
    assert after["back_test"]["through"] == "2027-07-10"
    table = cli("report", "forecast", "--as-of", AS_OF, "--years", "2", "--runs", "100").stdout
    assert "back-test: releases recorded after 2026-01-01 (through 2027-07-10)" in table


def test_scenario_loader_reads_every_key(tmp_path):
    scenario = load_scenario(write(tmp_path, "full.toml", CAUTIOUS + '[schedule]\ncontract_offset_days = 45\n'
                                   'acceptance_months_after_end = 3\nsubsidy_release = "at_tranches"\nround_approval = "10-15"\n'))
    assert (scenario.name, scenario.midterm_failure_rate, scenario.termination_timing) == ("cautious", 0.2, (0.2, 0.8))
    assert dict(scenario.saima_survivors) == {2: 1, 3: 1}
    assert (scenario.delay_days, scenario.delay_probabilities) == ((0, 90, 180), (0.6, 0.3, 0.1))
    assert (scenario.contract_offset_days, scenario.acceptance_months_after_end, scenario.subsidy_release,
            scenario.round_approval, scenario.collected_share) == (45, 3, "at_tranches", (10, 15), 0.7)
