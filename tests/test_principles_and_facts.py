"""Issue 14 points 7 and 9, through the command line on both backends.

Point 7: a limit the text writes “原则上” (江门 revenue 5亿 and period 3 years; 乌鲁木齐 赛马
at most 3 solvers) is a principle: exceeded only with ``--exception "reference: reason"``,
recorded in the event's hashed facts and listed in the audit pack; hard limits stay hard.
Point 9: the PI and 考核指标 recorded at approval and changed only by ``project change`` with
an approval reference; the 业主责任书 and 项目经理人; the acceptance organiser; the audit firm
and fee; the extension reason. Every boundary is tried one unit either side.
"""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest
from programme_fixtures import (
    JM_DEMAND,
    JM_FIRM,
    JM_UNIVERSITY,
    UR_DEMAND,
    UR_SOLVER,
    UR_SOLVER_2,
    UR_SOLVER_3,
    UR_SOLVER_4,
    assert_verified,
    cli_refused,
)
from sqlalchemy import text

from funding_rules.loader import RULES_DIR, RulesFileError, get_rules, load_rules_file

JM_REVENUE_FLOOR = "500,000,000.00"
EXCEPTION = "江科〔2025〕66号: 关键设备进口周期长，经市科技局审核同意"


# --- helpers ------------------------------------------------------------------------------


def parties(cli, *, jm_revenue: str = "600,000,000.00") -> None:
    cli("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", jm_revenue, "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_UNIVERSITY, "--name", "五邑某大学", "--kind", "university", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_FIRM, "--name", "江门市某科技有限公司", "--date", "2025-01-02")
    cli("party", "add", "--uscc", UR_DEMAND, "--name", "新疆某光伏有限公司", "--date", "2025-01-02")
    for n, uscc in enumerate((UR_SOLVER, UR_SOLVER_2, UR_SOLVER_3, UR_SOLVER_4), start=1):
        cli("party", "add", "--uscc", uscc, "--name", f"乌鲁木齐某科技有限公司{n}", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "50,000,000.00", "--date", "2025-01-10")


def jm_args(code: str, *, end: str = "2028-02-29", total: str = "8,000,000.00", rules: str | None = None) -> list[str]:
    """A Jiangmen 揭榜挂帅 project approved on 2025-02-01 with a period from 2025-03-01."""
    return ["project", "approve", "--code", code, "--name", "江门攻关项目", "--city", "jiangmen", "--category", "技术攻关",
            "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--total-investment", total,
            "--grant", "3,000,000.00", "--start", "2025-03-01", "--end", end, "--date", "2025-02-01",
            *(["--rules", rules] if rules else [])]


def ur_args(code: str, solvers: tuple[str, ...]) -> list[str]:
    """An Urumqi 赛马 project approved on 2025-06-20, one bid of 1,000,000.00 a lane."""
    lanes = [a for s in solvers for a in ("--solver", s)]
    bids = [a for _ in solvers for a in ("--bid", "1,000,000.00")]
    return ["project", "approve", "--code", code, "--name", "乌鲁木齐赛马项目", "--city", "urumqi", "--category", "技术攻关",
            "--mode", "赛马", "--demand", UR_DEMAND, *lanes, "--total-investment", "8,000,000.00", *bids,
            "--start", "2025-07-01", "--end", "2027-06-30", "--date", "2025-06-20"]


def payload(engine, code: str, kind: str) -> list[dict]:
    """The folded payloads of a project's events of one kind (project_events), in chain order."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT payload FROM project_events WHERE project_code = :c AND kind = :k ORDER BY entry_id"),
                            {"c": code, "k": kind}).scalars().all()
    return [json.loads(r) if r else {} for r in rows]


def hashed_facts(engine, code: str, kind: str) -> list[dict]:
    """The hashed facts of a project's entries of one kind (journal_entries.facts)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT facts FROM journal_entries WHERE project_code = :c AND kind = :k ORDER BY id"),
                            {"c": code, "k": kind}).scalars().all()
    return [json.loads(r) for r in rows]


def pack_rows(cli, tmp_path: Path, code: str) -> dict[str, list[list[str]]]:
    """The audit pack's xlsx, sheet -> rows of cell text; the PDF is written beside it."""
    out = tmp_path / f"pack-{code}"
    cli("report", "audit", "--project", code, "--out", str(out))
    [xlsx] = out.glob("*.xlsx")
    assert list(out.glob("*.pdf"))
    book = openpyxl.load_workbook(xlsx, read_only=True)
    return {ws.title: [["" if c is None else str(c) for c in row] for row in ws.iter_rows(values_only=True)] for ws in book.worksheets}


def profile_values(rows: dict[str, list[list[str]]], item_prefix: str) -> list[str]:
    return [" ".join(r[1:]) for r in rows["1 基本情况"] if r and r[0].startswith(item_prefix)]


# --- the rules files ----------------------------------------------------------------------


def test_the_packaged_rules_mark_exactly_the_limits_the_texts_write_yuanzeshang():
    assert get_rules("jiangmen-2023-trial").principles == {"approval.demand_min_revenue", "approval.max_period_years"}
    # Urumqi: 赛马 “原则上…不超过3家” (S2 二(四)); the period is a DEFAULT copied from Jiangmen's 原则上 3 years.
    assert get_rules("urumqi-2024-33").principles == {"approval.saima_max_racers", "approval.max_period_years"}
    for version in ("jiangmen-2023-trial", "urumqi-2024-33"):
        rules = get_rules(version)
        for key in rules.principles:
            assert "原则上" in rules.clause(key)
        assert not rules.is_principle("approval.min_total_investment")


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ('min_total_investment = { value = "3000000.00", ', 'min_total_investment = { value = "3000000.00", principle = true, ',
         "only these limits can be a principle"),
        ('max_grant = { value = "none", ', 'max_grant = { value = "none", principle = true, ', "only these limits"),
        ('max_extensions = { value = 1, ', 'max_extensions = { value = "none", principle = true, ', 'the value is "none"'),
        ("项目实施周期原则上不超过3年 — 原则上: a principle; a longer period needs a recorded exception (reference and reason)",
         "项目实施周期不超过3年", "does not quote"),
        ('principle = true, source = "S1 江门 工作方案 五(三)', 'principle = "yes", source = "S1 江门 工作方案 五(三)', "expected true or false"),
    ],
)
def test_the_loader_refuses_a_principle_flag_that_does_not_fit(tmp_path, old, new, says):
    original = (RULES_DIR / "jiangmen-2023-trial.toml").read_text(encoding="utf-8")
    assert original.count(old) == 1, old
    path = tmp_path / "jiangmen-2023-trial.toml"
    path.write_text(original.replace(old, new), encoding="utf-8")
    with pytest.raises(RulesFileError) as caught:
        load_rules_file(path)
    assert says in caught.value.message and "\n" not in caught.value.message


def test_a_default_may_be_a_principle_and_principle_false_is_no_principle(tmp_path):
    original = (RULES_DIR / "jiangmen-2023-trial.toml").read_text(encoding="utf-8")
    text_ = original.replace('max_extensions = { value = 1, ', 'max_extensions = { value = 1, principle = true, ')
    text_ = text_.replace('max_period_years = { value = 3, principle = true, ', 'max_period_years = { value = 3, principle = false, ')
    path = tmp_path / "jiangmen-2023-trial.toml"
    path.write_text(text_, encoding="utf-8")
    assert load_rules_file(path).principles == {"approval.demand_min_revenue", "approval.max_extensions"}


# --- point 7 through the CLI ---------------------------------------------------------------


def test_the_jiangmen_period_is_a_principle_exceeded_only_with_a_recorded_exception(cli, engine, tmp_path):
    parties(cli)
    # Exactly three years (2025-03-01..2028-02-29) needs no exception, and refuses one.
    cli_refused(cli, engine, *jm_args("JM2025-701"), "--exception", EXCEPTION,
                says=("no principle (原则上) limit is exceeded", "drop --exception"))
    cli(*jm_args("JM2025-701"))
    # One day over: refused, and the fix names the option.
    cli_refused(cli, engine, *jm_args("JM2025-702", end="2028-03-01"),
                says=("past the 3-year limit, whose last day is 2028-02-29", "原则上", '--exception "REFERENCE: REASON"'))
    # A malformed exception is refused, saying what it must read.
    cli_refused(cli, engine, *jm_args("JM2025-702", end="2028-03-01"), "--exception", "江科〔2025〕66号",
                says="must read REFERENCE: REASON")
    # With the exception: approved, and the exception is in the hashed facts and the fold.
    cli(*jm_args("JM2025-702", end="2028-03-01"), "--exception", EXCEPTION)
    [facts] = hashed_facts(engine, "JM2025-702", "approval")
    [record] = facts["event"]["payload"]["exceptions"]
    assert (record["key"], record["limit"], record["actual"], record["reference"], record["reason"]) == (
        "approval.max_period_years", "3", "2025-03-01..2028-03-01", "江科〔2025〕66号", "关键设备进口周期长，经市科技局审核同意")
    assert payload(engine, "JM2025-702", "approval")[0]["exceptions"] == [record]
    assert "exceptions" not in payload(engine, "JM2025-701", "approval")[0]
    # The audit pack's profile lists it, in Chinese, with its basis.
    [listed] = profile_values(pack_rows(cli, tmp_path, "JM2025-702"), "例外事项")
    assert "实施期 2025-03-01 至 2028-03-01，超过原则上不超过的 3 年" in listed
    assert "依据：江科〔2025〕66号，理由：关键设备进口周期长" in listed and "S1 江门 工作方案 五(三)" in listed
    assert_verified(cli)


def test_a_hard_limit_stays_hard_with_an_exception(cli, engine):
    parties(cli)
    # 研发总投入不低于300万 is not written 原则上: one fen below is refused, exception or not.
    cli_refused(cli, engine, *jm_args("JM2025-711", total="2,999,999.99"), "--exception", EXCEPTION,
                says=("below the minimum 3,000,000.00", "--exception does not lift it: this limit is hard"))
    cli(*jm_args("JM2025-711", total="3,000,000.00"))
    # Both at once: the principle is lifted, the hard limit still refuses.
    cli_refused(cli, engine, *jm_args("JM2025-712", total="2,999,999.99", end="2028-03-01"), "--exception", EXCEPTION,
                says="this limit is hard")


def test_the_jiangmen_revenue_floor_is_a_principle(cli, engine, tmp_path):
    parties(cli, jm_revenue="499,999,999.99")
    cli_refused(cli, engine, *jm_args("JM2025-721"), says=("revenue 499,999,999.99 < 500,000,000.00", '--exception "REFERENCE: REASON"'))
    cli(*jm_args("JM2025-721"), "--exception", "江科〔2025〕70号: 龙头骨干企业，上年度受不可抗力停产两月")
    [record] = payload(engine, "JM2025-721", "approval")[0]["exceptions"]
    assert (record["key"], record["limit"], record["actual"]) == ("approval.demand_min_revenue", "500000000.00", "499999999.99")
    [listed] = profile_values(pack_rows(cli, tmp_path, "JM2025-721"), "例外事项")
    # The amount column holds the revenue itself (a number in the xlsx, #,##0.00 in the PDF).
    assert "低于原则上应达到的 500,000,000.00 元" in listed and listed.endswith(" 499999999.99")
    # At the floor exactly no exception is needed.
    cli("party", "update", JM_DEMAND, "--year", "2024", "--revenue", JM_REVENUE_FLOOR, "--date", "2025-01-20")
    cli(*jm_args("JM2025-722"))
    assert_verified(cli)


def test_urumqi_saima_takes_a_fourth_racer_only_with_an_exception(cli, engine):
    parties(cli)
    cli(*ur_args("UR2025-731", (UR_SOLVER, UR_SOLVER_2, UR_SOLVER_3)))
    four = (UR_SOLVER, UR_SOLVER_2, UR_SOLVER_3, UR_SOLVER_4)
    cli_refused(cli, engine, *ur_args("UR2025-732", four), says=("has 4 solvers, more than 3", "原则上"))
    cli(*ur_args("UR2025-732", four), "--exception", "乌科〔2025〕21号: 需求方无法确定唯一合作对象，四家方案各具优势")
    [record] = payload(engine, "UR2025-732", "approval")[0]["exceptions"]
    assert (record["key"], record["limit"], record["actual"]) == ("approval.saima_max_racers", "3", "4")
    assert_verified(cli)


def _rules_with_principle_extension(tmp_path, monkeypatch) -> str:
    """A Jiangmen version whose extension length is a principle (a DEFAULT), on JIEBANG_RULES_PATH."""
    version = "jiangmen-principle-extension"
    text_ = (RULES_DIR / "jiangmen-2023-trial.toml").read_text(encoding="utf-8")
    text_ = text_.replace('version = "jiangmen-2023-trial"', f'version = "{version}"').replace(
        "effective_from = 2023-01-01", "effective_from = 2024-06-01")
    text_ = text_.replace('max_extension_years = { value = 1, ', 'max_extension_years = { value = 1, principle = true, ')
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / f"{version}.toml").write_text(text_, encoding="utf-8")
    monkeypatch.setenv("JIEBANG_RULES_PATH", str(folder))
    return version


def test_an_extension_states_its_reason_and_takes_an_exception_only_where_the_rules_make_it_a_principle(cli, engine, tmp_path, monkeypatch):
    version = _rules_with_principle_extension(tmp_path, monkeypatch)
    parties(cli)
    cli(*jm_args("JM2025-741", end="2027-02-28", rules="jiangmen-2023-trial"))
    cli(*jm_args("JM2025-742", end="2027-02-28", rules=version))
    extend = ["extend", "--months", "13", "--reference", "江科〔2027〕1号", "--date", "2027-01-15"]
    # The reason is required: a missing option is a usage error, a blank one a refusal.
    assert cli(*extend, "--project", "JM2025-741", expect=2).exit_code == 2
    cli_refused(cli, engine, *extend, "--project", "JM2025-741", "--reason", " ", says="gives no reason")
    # Packaged rules: 12 months is hard; 13 is refused even with an exception.
    cli_refused(cli, engine, *extend, "--project", "JM2025-741", "--reason", "不可抗力", "--exception", EXCEPTION,
                says=("13 months, the limit is 12", "this limit is hard"))
    # Rules that make it a principle: refused without, recorded with.
    cli_refused(cli, engine, *extend, "--project", "JM2025-742", "--reason", "不可抗力", says='--exception "REFERENCE: REASON"')
    cli(*extend, "--project", "JM2025-742", "--reason", "主机受不可抗力影响延迟到货", "--exception", EXCEPTION)
    [folded] = payload(engine, "JM2025-742", "extension")
    assert folded["reason"] == "主机受不可抗力影响延迟到货"
    [record] = folded["exceptions"]
    assert (record["key"], record["limit"], record["actual"]) == ("approval.max_extension_years", "12", "13")
    # Twelve months under the packaged rules need no exception.
    cli("extend", "--project", "JM2025-741", "--months", "12", "--reference", "江科〔2027〕2号", "--reason", "不可抗力",
        "--date", "2027-01-15")
    rows = pack_rows(cli, tmp_path, "JM2025-742")
    [listed] = profile_values(rows, "例外事项")
    assert "延期：延期 13 个月，超过原则上不超过的 12 个月" in listed
    assert any("延期理由：主机受不可抗力影响延迟到货" in " ".join(r) for r in rows["1 进程及变更"])
    assert_verified(cli)


# --- point 9 through the CLI ---------------------------------------------------------------


def test_pi_and_indicators_are_locked_at_approval_and_change_only_with_an_approval(cli, engine, tmp_path):
    parties(cli)
    cli(*ur_args("UR2025-751", (UR_SOLVER, UR_SOLVER_2)), "--pi", "王建疆", "--indicator", "样机1套", "--indicator", "发明专利2项",
        "--owner-letter", "TS-YZ-2025-01", "--owner-letter-date", "2025-06-25", "--project-manager", "李天山")
    [approved] = payload(engine, "UR2025-751", "approval")
    assert (approved["pi"], approved["indicators"], approved["owner_letter"], approved["project_manager"]) == (
        "王建疆", ["样机1套", "发明专利2项"], {"reference": "TS-YZ-2025-01", "date": "2025-06-25"}, "李天山")
    change = ["project", "change", "--project", "UR2025-751", "--date", "2026-03-01"]
    # The same PI changes nothing; a change without approval reference is a usage error.
    cli_refused(cli, engine, *change, "--pi", "王建疆", "--reference", "乌科函〔2026〕8号", "--reason", "无", says="changes none of the facts")
    cli_refused(cli, engine, *change, "--pi", "赵四", "--reference", " ", "--reason", "原负责人调离", says="needs the bureau's approval")
    assert cli(*change, "--pi", "赵四", "--reason", "原负责人调离", expect=2).exit_code == 2
    said = cli(*change, "--pi", "赵四", "--reference", "乌科函〔2026〕8号", "--reason", "原负责人调离").stdout
    assert said.startswith("项目变更 UR2025-751：项目负责人（乌科函〔2026〕8号），凭证 CHG-UR2025-751-2026-03-01"), said
    cli(*change, "--indicator", "样机1套", "--indicator", "发明专利1项", "--reference", "乌科函〔2026〕9号", "--reason", "专利合并申请",
        "--date", "2026-04-01")
    # project show gives the facts in force at its date: before the change, then after.
    def shown(as_of):
        return json.loads(cli("project", "show", "UR2025-751", "--as-of", as_of, "--format", "json").stdout)
    before, after = shown("2026-02-28"), shown("2026-04-01")
    assert (before["pi"], before["indicators"], before["project_manager"], before["owner_letter"]) == (
        "王建疆", ["样机1套", "发明专利2项"], "李天山", "TS-YZ-2025-01 2025-06-25")
    assert (after["pi"], after["indicators"]) == ("赵四", ["样机1套", "发明专利1项"])
    assert "pi              赵四" in cli("project", "show", "UR2025-751", "--as-of", "2026-04-01").stdout
    [first, second] = payload(engine, "UR2025-751", "project_change")
    assert first == {"pi": "赵四", "reason": "原负责人调离"}
    assert second == {"indicators": ["样机1套", "发明专利1项"], "reason": "专利合并申请"}
    rows = pack_rows(cli, tmp_path, "UR2025-751")
    [pi] = profile_values(rows, "项目负责人")
    assert pi.startswith("赵四") and "变更 1 次" in pi
    [letter] = profile_values(rows, "业主责任书")
    assert "文号 TS-YZ-2025-01，签订日期 2025-06-25" in letter
    history = [r for r in rows["1 锁定事项变更"] if r and r[0][:4] == "2026"]
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in history] == [
        ("项目负责人", "王建疆", "赵四", "乌科函〔2026〕8号", "原负责人调离"),
        ("考核指标", "1. 样机1套；2. 发明专利2项", "1. 样机1套；2. 发明专利1项", "乌科函〔2026〕9号", "专利合并申请"),
    ]
    assert_verified(cli)


def test_the_acceptance_organiser_and_the_audit_firm_and_fee_ride_on_their_stages(cli, engine, tmp_path):
    parties(cli)
    cli(*jm_args("JM2025-761"), "--pi", "陈江门")
    stage = ["stage", "--project", "JM2025-761", "--passed"]
    cli_refused(cli, engine, *stage, "--stage", "midterm", "--audit-firm", "某会计师事务所", "--date", "2026-06-01",
                says="--audit-firm is recorded with the audit_report stage, not midterm")
    cli_refused(cli, engine, *stage, "--stage", "audit_report", "--accepted-by", "市科技局", "--date", "2026-06-01",
                says="--accepted-by is recorded with the acceptance stage")
    cli(*stage, "--stage", "acceptance", "--accepted-by", "江门市科学技术局（委托第三方）", "--reference", "江科验〔2028〕3号", "--date", "2028-02-10")
    cli(*stage, "--stage", "audit_report", "--audit-firm", "江门某会计师事务所", "--audit-fee", "35,000.00", "--date", "2028-02-20")
    assert payload(engine, "JM2025-761", "stage") == [{"accepted_by": "江门市科学技术局（委托第三方）"},
                                                      {"audit_firm": "江门某会计师事务所", "audit_fee_fen": 3_500_000}]
    rows = pack_rows(cli, tmp_path, "JM2025-761")
    [accepted] = profile_values(rows, "验收组织单位")
    assert "验收通过：江门市科学技术局（委托第三方）" in accepted
    [audit] = [r for r in rows["1 基本情况"] if r and r[0].startswith("专项审计")]
    assert "会计师事务所 江门某会计师事务所" in audit[1] and audit[2] == "35000"
    assert_verified(cli)


def test_an_undeclared_revenue_is_a_missing_fact_that_no_exception_lifts(cli, engine):
    parties(cli)
    args = [a if a != JM_DEMAND else JM_FIRM for a in jm_args("JM2025-771")]  # JM_FIRM declared no revenue
    cli_refused(cli, engine, *args, "--exception", EXCEPTION, says=("revenue undeclared", "this limit is hard"))
    cli_refused(cli, engine, *args, says="revenue undeclared")


def test_a_change_is_refused_once_the_project_has_ended_and_a_reversed_change_leaves_the_history(cli, engine, tmp_path):
    parties(cli)
    cli(*jm_args("JM2025-781"), "--pi", "陈江门")
    change = ["project", "change", "--project", "JM2025-781", "--reference", "江科函〔2026〕1号", "--reason", "调离"]
    entry = cli(*change, "--pi", "林五邑", "--date", "2026-01-10", "--format", "json").stdout
    entry_id = json.loads(entry)["entry"]["id"]
    cli("reverse", str(entry_id), "--reason", "录入错误", "--date", "2026-01-11")
    [pi] = profile_values(pack_rows(cli, tmp_path, "JM2025-781"), "项目负责人")
    assert pi.startswith("陈江门") and "变更" not in pi
    cli("terminate", "--project", "JM2025-781", "--reference", "江科〔2026〕9号", "--date", "2026-02-01")
    cli_refused(cli, engine, *change, "--pi", "林五邑", "--date", "2026-03-01", says="terminated")
    assert_verified(cli)
