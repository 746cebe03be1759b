"""Issue 14 point 8, rules that do something, through the command line on both backends:

* a failed acceptance has the consequence the rules give it (``closure.failed_acceptance``:
  DEFAULT terminate, with the clawback in the same entry; or officer, with a due item);
* the Urumqi audit report takes the audited cash total and trues the subsidy up on it;
* a lane's first release with no pledge on file warns (Jiangmen DEFAULT) or is refused where
  the rules say so (``funding.pledge_at_first_release``);
* a balance retained after acceptance is recovered N years on where the rules say so
  (``closure.balance_after_acceptance = recover_after_years``);
* the audit pack sets the actual total investment against the approval's and flags a
  shortfall.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from programme_fixtures import (
    JM_DEMAND,
    JM_UNIVERSITY,
    UR_DEMAND,
    UR_SOLVER,
    assert_verified,
    cli_balances,
    cli_refused,
    traces,
)

from funding_rules.loader import RULES_DIR

JIANGMEN = (RULES_DIR / "jiangmen-2023-trial.toml").read_text(encoding="utf-8")


def jiangmen_variant(folder: Path, version: str, *, closure: str = "", funding: str = "", replace: tuple[str, str] = ("", "")) -> None:
    """A Jiangmen rules file with a new version in force from 2025-01-01 (so it governs the
    approvals below), stating the parameters given."""
    text = JIANGMEN.replace('"jiangmen-2023-trial"', f'"{version}"', 1).replace(
        "effective_from = 2023-01-01", "effective_from = 2025-01-01", 1)
    text = text.replace("[closure]\n", "[closure]\n" + closure).replace("[funding]\n", "[funding]\n" + funding)
    if replace[0]:
        assert replace[0] in text
        text = text.replace(*replace)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{version}.toml").write_text(text, encoding="utf-8")


@pytest.fixture
def rules_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    monkeypatch.setenv("JIEBANG_RULES_PATH", str(folder))
    return folder


def jiangmen_project(cli, code: str, *, total: str = "800万", pledge: bool = True, year_setup: bool = True) -> None:
    if year_setup:
        cli("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", "600,000,000.00", "--date", "2025-01-02")
        cli("party", "add", "--uscc", JM_UNIVERSITY, "--name", "五邑某大学", "--kind", "university", "--date", "2025-01-02")
        cli("appropriate", "--year", "2025", "--amount", "5000万", "--date", "2025-01-10", "--voucher", "江财预〔2025〕3号")
    cli("project", "approve", "--code", code, "--name", "高端装备运动控制器", "--city", "jiangmen", "--category", "技术攻关",
        "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--total-investment", total, "--grant", "300万",
        "--start", "2025-10-01", "--end", "2027-09-30", "--date", "2025-09-20")
    if pledge:
        cli("pledge", "--project", code, "--amount", "500万", "--date", "2025-09-25", "--voucher", f"CN-{code}")
    cli("stage", "--project", code, "--stage", "contract_signed", "--date", "2025-10-08")


def stage_trace(engine, code: str, key: str) -> dict:
    """The one stage entry of ``code`` whose trace holds ``key``, that part of its trace."""
    [trace] = [t[key] for t in traces(engine, "stage", code) if key in t]
    return trace


# --- a failed acceptance --------------------------------------------------------------------


def test_a_failed_acceptance_terminates_and_recovers_in_the_same_entry_by_default(cli, engine, tmp_path):
    jiangmen_project(cli, "JM2025-301")
    cli("release", "--project", "JM2025-301", "--date", "2025-10-10")  # 1,800,000.00
    cli("spend", "--project", "JM2025-301", "--amount", "100万", "--category", "业务费", "--date", "2026-01-15", "--voucher", "PZ-1")
    # A passed acceptance moves no money and takes no misuse.
    cli_refused(cli, engine, "stage", "--project", "JM2025-301", "--stage", "acceptance", "--passed", "--misused", "PZ-1=10万",
                "--date", "2027-09-30", says="misused amounts")

    failed = cli("stage", "--project", "JM2025-301", "--stage", "acceptance", "--failed", "--misused", "PZ-1=10万",
                 "--date", "2027-10-10", "--voucher", "YS-301")

    # Unspent 800,000.00 + misused 100,000.00; the unreleased 1,200,000.00 goes back to the budget.
    assert "验收 JM2025-301：未通过，按规则项目终止，追回 900,000.00，核销未拨付 1,200,000.00" in failed.stdout
    got = cli_balances(cli, "JM2025-301")
    assert (got["clawback_outstanding"], got["advances_outstanding"], got["grant_unreleased"]) == ("900000.00", "0.00", "0.00")
    failed_trace = stage_trace(engine, "JM2025-301", "failed_acceptance")
    assert failed_trace["consequence"] == "terminate" and failed_trace["clause"].startswith("DEFAULT:")
    assert failed_trace["lanes"]["L1"]["clawback"] == "900000.00" and failed_trace["recovers"] == ["unspent", "misused"]
    # The project is terminated: nothing more is paid, and it is not terminated twice.
    cli_refused(cli, engine, "release", "--project", "JM2025-301", "--date", "2027-10-11", says="terminated on 2027-10-10")
    cli_refused(cli, engine, "terminate", "--project", "JM2025-301", "--reference", "江科〔2027〕9号", "--date", "2027-10-11",
                says="already terminated")
    # The audit pack lists the misuse named with the failed acceptance and the rule it followed.
    from openpyxl import load_workbook
    from test_audit import audit, fen, sheet_rows

    pack = load_workbook(audit(cli, tmp_path / "pack", "JM2025-301", "2027-10-10")["xlsx"])
    [misuse] = sheet_rows(pack["6 违规使用"])[:-1]
    assert (misuse["支出凭证"], fen(misuse["违规使用金额"])) == ("PZ-1", 10_000_000)
    notes = [c.value for row in pack["6 结余追回"].iter_rows() for c in row if isinstance(c.value, str) and c.value.startswith("注：验收未通过")]
    assert len(notes) == 1 and notes[0].startswith("注：验收未通过：按终止处理，同一分录核定追回结余和违规使用资金；依据：")
    # The consequence is our DEFAULT (the texts are silent), said in Chinese without the rules file's English.
    assert "政策文件未作明确规定，采用本专账默认规则（规则版本 jiangmen-2023-trial）" in notes[0] and "DEFAULT" not in notes[0]
    # The clawback is collected into 应缴财政款 and remitted like any other.
    cli("collect", "--project", "JM2025-301", "--amount", "900,000.00", "--date", "2027-11-01")
    cli("remit", "--amount", "900,000.00", "--date", "2027-11-02")
    assert_verified(cli)


def test_where_the_rules_leave_a_failed_acceptance_to_the_officer_it_is_a_due_item(cli, engine, rules_dir):
    jiangmen_variant(rules_dir, "jiangmen-officer", closure='failed_acceptance = { value = "officer", source = "DEFAULT: test" }\n')
    jiangmen_project(cli, "JM2025-302")
    cli("release", "--project", "JM2025-302", "--date", "2025-10-10")

    failed = cli("stage", "--project", "JM2025-302", "--stage", "acceptance", "--failed", "--date", "2027-10-10")

    assert "验收 JM2025-302：未通过，按规则由主管部门决定是否终止及追回（待办）" in failed.stdout
    got = cli_balances(cli, "JM2025-302")
    assert (got["clawback_assessed"], got["advances_outstanding"]) == ("0.00", "1800000.00")
    due = json.loads(cli("due", "--as-of", "2027-10-11", "--format", "json").stdout)
    [item] = [d for d in due if d["kind"] == "acceptance_failed"]
    assert item["project"] == "JM2025-302" and "terminate --project JM2025-302" in item["command"]
    # A second project passes its acceptance on re-examination: its item is settled.
    jiangmen_project(cli, "JM2025-311", year_setup=False)
    cli("stage", "--project", "JM2025-311", "--stage", "acceptance", "--failed", "--date", "2027-10-10")
    cli("stage", "--project", "JM2025-311", "--stage", "acceptance", "--passed", "--date", "2027-10-11")
    due = json.loads(cli("due", "--as-of", "2027-10-11", "--format", "json").stdout)
    assert [d["project"] for d in due if d["kind"] == "acceptance_failed"] == ["JM2025-302"]
    # The command, pasted as printed, asks for the decision's reference (no placeholder that
    # would be recorded as typed); with it, the officer terminates: the item is gone and the
    # clawback is the unspent advance.
    words = shlex.split(item["command"])
    assert words[:2] == ["jiebang", "--db"] and "--reference" not in words
    assert "Missing option '--reference'" in cli(*words[3:], expect=2).stderr
    cli(*words[3:], "--reference", "江科〔2027〕10号", "--allow-future")
    assert cli_balances(cli, "JM2025-302")["clawback_outstanding"] == "1800000.00"
    due = json.loads(cli("due", "--as-of", "2027-10-21", "--format", "json").stdout)
    assert not [d for d in due if d["kind"] == "acceptance_failed"]


# --- the Urumqi true-up on the audited cash total ----------------------------------------------


def urumqi_project(cli, code: str, cash: str, *, setup: bool = True) -> None:
    if setup:
        cli("party", "add", "--uscc", UR_DEMAND, "--name", "新疆某光伏有限公司", "--date", "2025-01-02")
        cli("party", "add", "--uscc", UR_SOLVER, "--name", "新疆某大学", "--kind", "university", "--date", "2025-01-02")
        cli("appropriate", "--year", "2025", "--amount", "500万", "--date", "2025-01-10")
    cli("project", "approve", "--code", code, "--name", "光伏组件智能运维", "--city", "urumqi", "--category", "成果转化",
        "--mode", "jbgs", "--demand", UR_DEMAND, "--solver", UR_SOLVER, "--total-investment", "800万", "--bid", "300万",
        "--start", "2025-07-01", "--end", "2027-06-30", "--date", "2025-06-20")
    cli("stage", "--project", code, "--stage", "contract_signed", "--date", "2025-07-01")
    cli("bid", "pay", "--project", code, "--amount", cash, "--form", "cash", "--date", "2025-07-10")
    cli("release", "--project", code, "--date", "2025-07-15")
    cli("stage", "--project", code, "--stage", "acceptance", "--passed", "--date", "2027-06-30")


def test_the_audited_cash_total_trues_the_urumqi_subsidy_up_or_down_with_its_trace(cli, engine):
    # Ledger cash 2,500,000.00 earned and released 1,000,000.00 on each project.
    urumqi_project(cli, "UR2025-401", "250万")
    urumqi_project(cli, "UR2025-402", "250万", setup=False)
    urumqi_project(cli, "UR2025-403", "250万", setup=False)
    # Where the audit is not the audit report, or the project pays a staged grant, it is refused.
    cli_refused(cli, engine, "stage", "--project", "UR2025-401", "--stage", "acceptance", "--passed", "--audited-cash", "240万",
                "--date", "2027-07-01", says="专项审计报告")
    assert cli("stage", "--project", "UR2025-401", "--stage", "audit_report", "--audited-cash", "L1=", "--date", "2027-07-01",
               expect=2).exit_code == 2

    # The audit confirms 10,000.00 less cash than the ledger: the subsidy is 4,000.00 less and,
    # as it was released, 4,000.00 is assessed for recovery.
    down = cli("stage", "--project", "UR2025-401", "--stage", "audit_report", "--passed", "--audited-cash", "2,490,000.00",
               "--date", "2027-07-20", "--voucher", "SJ-401")
    assert "L1 审计确认现金 2,490,000.00，补助调减 4,000.00，其中已拨付部分追回 4,000.00" in down.stdout
    got = cli_balances(cli, "UR2025-401")
    assert (got["subsidy_earned"], got["clawback_outstanding"], got["subsidy_payable"]) == ("996000.00", "4000.00", "0.00")
    true_up = stage_trace(engine, "UR2025-401", "true_up")
    lane = true_up["lanes"]["L1"]
    assert (lane["audited_cash"], lane["ledger_cash"], lane["earned_before"], lane["earned_audited"], lane["difference"],
            lane["over_released_recovered"]) == ("2490000.00", "2500000.00", "1000000.00", "996000.00", "-4000.00", "4000.00")
    assert true_up["clause"].startswith("S2 乌鲁木齐 工作指引 二(七)") and "二(六)" in true_up["rate_clause"]

    # The same cash as the ledger: no difference, no money moves.
    same = cli("stage", "--project", "UR2025-402", "--stage", "audit_report", "--passed", "--audited-cash", "250万",
               "--date", "2027-07-20")
    assert "补助无差额" in same.stdout
    assert cli_balances(cli, "UR2025-402")["subsidy_payable"] == "0.00"

    # 10,000.00 more: a top-up of 4,000.00 is owed, and the final tranche pays it.
    up = cli("stage", "--project", "UR2025-403", "--stage", "audit_report", "--passed", "--audited-cash", "2,510,000.00",
             "--date", "2027-07-20")
    assert "补助调增 4,000.00（待拨付）" in up.stdout
    assert cli_balances(cli, "UR2025-403")["subsidy_payable"] == "4000.00"
    final = cli("release", "--project", "UR2025-403", "--date", "2027-07-25")
    assert "第2期：4,000.00" in final.stdout
    assert cli_balances(cli, "UR2025-403")["subsidy_released"] == "1004000.00"
    assert_verified(cli)


def test_audited_cash_is_for_a_bid_subsidy(cli, engine):
    jiangmen_project(cli, "JM2025-303")
    cli_refused(cli, engine, "stage", "--project", "JM2025-303", "--stage", "audit_report", "--passed", "--audited-cash", "100万",
                "--date", "2027-07-20", says="no subsidy is trued up")


# --- the pledge at a lane's first release -----------------------------------------------------


def test_a_first_release_without_a_pledge_warns_in_jiangmen(cli, engine):
    jiangmen_project(cli, "JM2025-304", pledge=False)
    jiangmen_project(cli, "JM2025-305", year_setup=False)

    warned = cli("release", "--project", "JM2025-304", "--date", "2025-10-10")
    clean = cli("release", "--project", "JM2025-305", "--date", "2025-10-10")

    assert "提示：JM2025-304 L1 首次拨付时未登记自筹资金承诺" in warned.stdout
    assert "提示" not in clean.stdout
    [trace] = traces(engine, "release", "JM2025-304")
    assert [w["code"] for w in trace["warnings"]] == ["pledge_must_be_on_file_at_first_release"]
    assert "warnings" not in traces(engine, "release", "JM2025-305")[0]


def test_where_the_rules_say_so_a_first_release_without_a_pledge_is_refused(cli, engine, rules_dir):
    jiangmen_variant(rules_dir, "jiangmen-pledge", funding='pledge_at_first_release = { value = "refuse", source = "DEFAULT: test" }\n')
    jiangmen_project(cli, "JM2025-306", pledge=False)
    # A pledge dated after the release is not on file on the release date.
    cli("pledge", "--project", "JM2025-306", "--amount", "500万", "--date", "2025-10-11", "--voucher", "CN-306")
    cli_refused(cli, engine, "release", "--project", "JM2025-306", "--date", "2025-10-10",
                says=("no self-funding pledge", "jiebang pledge --project JM2025-306"))
    released = cli("release", "--project", "JM2025-306", "--date", "2025-10-11")
    assert "1,800,000.00" in released.stdout and "提示" not in released.stdout


# --- the balance retained after acceptance, recovered N years on -----------------------------


def close_jiangmen(cli, code: str) -> None:
    cli("release", "--project", code, "--date", "2025-10-10")  # 1,800,000.00
    cli("spend", "--project", code, "--amount", "100万", "--category", "业务费", "--date", "2026-01-15", "--voucher", f"PZ-{code}")
    cli("stage", "--project", code, "--stage", "acceptance", "--passed", "--date", "2027-09-30")
    cli("stage", "--project", code, "--stage", "audit_report", "--passed", "--date", "2027-10-05")
    cli("close", "--project", code, "--reference", "江科验〔2027〕3号", "--date", "2027-10-15")


def test_a_retained_balance_is_recovered_n_years_after_acceptance_where_the_rules_say_so(cli, engine, rules_dir, tmp_path):
    jiangmen_variant(rules_dir, "jiangmen-recover", replace=(
        'balance_after_acceptance = { value = "retained"', 'balance_after_acceptance = { value = "recover_after_years"'))
    text = (rules_dir / "jiangmen-recover.toml").read_text(encoding="utf-8")
    (rules_dir / "jiangmen-recover.toml").write_text(
        text.replace('recover_after_years = { value = "none"', "recover_after_years = { value = 2"), encoding="utf-8")
    jiangmen_project(cli, "JM2025-307")
    close_jiangmen(cli, "JM2025-307")
    assert cli_balances(cli, "JM2025-307")["advances_outstanding"] == "800000.00"

    # Two years after the 2027-09-30 acceptance is 2029-09-30: not a day before.
    due = json.loads(cli("due", "--as-of", "2029-09-29", "--format", "json").stdout)
    assert not [d for d in due if d["kind"] == "balance_recoverable"]
    cli_refused(cli, engine, "recover-balance", "--project", "JM2025-307", "--reference", "江科〔2029〕5号", "--date", "2029-09-29",
                says=("until 2029-09-29", "on or after 2029-09-30"))
    due = json.loads(cli("due", "--as-of", "2029-09-30", "--format", "json").stdout)
    [item] = [d for d in due if d["kind"] == "balance_recoverable"]
    assert (item["project"], item["amount"], item["date"]) == ("JM2025-307", "800000.00", "2029-09-30")

    recovered = cli("recover-balance", "--project", "JM2025-307", "--reference", "江科〔2029〕5号", "--date", "2029-09-30",
                    "--voucher", "JY-307")

    assert "验收后结余到期收回 JM2025-307（验收 2027-09-30 后 2 年）：追回 800,000.00" in recovered.stdout
    got = cli_balances(cli, "JM2025-307")
    assert (got["advances_outstanding"], got["clawback_outstanding"]) == ("0.00", "800000.00")
    [trace] = traces(engine, "balance_recovery", "JM2025-307")
    assert (trace["recoverable_from"], trace["recover_after_years"], trace["lanes"]["L1"]["clawback"]) == (
        "2029-09-30", 2, "800000.00")
    cli_refused(cli, engine, "recover-balance", "--project", "JM2025-307", "--reference", "江科〔2029〕6号", "--date", "2029-10-01",
                says="was recovered on 2029-09-30")
    due = json.loads(cli("due", "--as-of", "2029-10-01", "--format", "json").stdout)
    assert not [d for d in due if d["kind"] == "balance_recoverable"]
    # The audit pack shows the recovery in Chinese with its basis.
    from openpyxl import load_workbook
    from test_audit import audit, fen, sheet_rows

    pack = load_workbook(audit(cli, tmp_path / "pack", "JM2025-307", "2029-09-30")["xlsx"])
    [row] = sheet_rows(pack["6 追回明细"])[:-1]
    assert (row["业务"], fen(row["金额（+核定"]), row["摘要"]) == ("结余到期收回", 80_000_000, "验收后结余到期收回")
    notes = [c.value for r in pack["6 结余追回"].iter_rows() for c in r if isinstance(c.value, str) and "留用满 2 年收回" in c.value]
    assert len(notes) == 1
    # It goes back to the treasury: collected into 应缴财政款, then remitted.
    cli("collect", "--project", "JM2025-307", "--amount", "800,000.00", "--date", "2029-10-10")
    cli("remit", "--amount", "800,000.00", "--date", "2029-10-11")
    assert_verified(cli)


def test_under_the_packaged_rules_the_balance_is_retained(cli, engine):
    jiangmen_project(cli, "JM2025-308")
    close_jiangmen(cli, "JM2025-308")
    cli_refused(cli, engine, "recover-balance", "--project", "JM2025-308", "--reference", "江科〔2040〕1号", "--date", "2040-01-01",
                says="keeps its balance after acceptance")
    assert not [d for d in json.loads(cli("due", "--as-of", "2040-01-01", "--format", "json").stdout) if d["kind"] == "balance_recoverable"]


# --- the audit pack: the actual total investment against the threshold ----------------------


def test_the_audit_pack_flags_a_total_investment_short_of_the_approval_at_acceptance(cli, engine, tmp_path):
    from openpyxl import load_workbook
    from test_audit import audit, fen, sheet_rows

    # Approved 3,000,000.00 total, exactly the Jiangmen floor; 1,800,000.00 of grant released.
    jiangmen_project(cli, "JM2025-309", total="300万")
    jiangmen_project(cli, "JM2025-310", total="300万", year_setup=False)
    for code, contributed in (("JM2025-309", "1,200,000.00"), ("JM2025-310", "1,199,999.99")):
        cli("release", "--project", code, "--date", "2025-10-10")
        cli("contribute", "--project", code, "--amount", contributed, "--category", "设备费", "--date", "2026-01-10")
    before = load_workbook(audit(cli, tmp_path / "before", "JM2025-310", "2026-12-31")["xlsx"])
    assert [r["结论"] for r in sheet_rows(before["2 总投入比对"])][3:] == ["尚未验收，验收时比对"] * 2
    for code in ("JM2025-309", "JM2025-310"):
        cli("stage", "--project", code, "--stage", "acceptance", "--passed", "--date", "2027-09-30")

    met = sheet_rows(load_workbook(audit(cli, tmp_path / "met", "JM2025-309", "2027-09-30")["xlsx"])["2 总投入比对"])
    short_files = audit(cli, tmp_path / "short", "JM2025-310", "2027-09-30")
    short = sheet_rows(load_workbook(short_files["xlsx"])["2 总投入比对"])

    assert [(r["项目"], fen(r["金额（元）"])) for r in met[:3]] == [
        ("单位自筹实际到位", 120_000_000), ("市财政资助已拨付", 180_000_000), ("实际研发总投入（截至截止日）", 300_000_000)]
    assert [(r["项目"], fen(r["差额（元）"]), r["结论"]) for r in met[3:]] == [
        ("批复研发总投入", 0, "已达到批复研发总投入"), ("政策规定的研发总投入下限", 0, "已达到政策规定的研发总投入下限")]
    assert fen(short[2]["金额（元）"]) == 299_999_999
    assert [(r["项目"], fen(r["差额（元）"]), r["结论"]) for r in short[3:]] == [
        ("批复研发总投入", 1, "不足：验收时实际研发总投入低于批复研发总投入"),
        ("政策规定的研发总投入下限", 1, "不足：验收时实际研发总投入低于政策规定的研发总投入下限")]
    import subprocess

    text = subprocess.run(["pdftotext", "-layout", str(short_files["pdf"]), "-"], capture_output=True, text=True, check=True).stdout
    assert "验收时研发总投入与立项门槛比对" in text and "不足：验收时实际研发总投入低于批复研发总投入" in text.replace("\n", "").replace(" ", "")


# --- the pure checks, one unit either side ----------------------------------------------------


def test_the_pledge_check_fires_at_a_first_release_with_nothing_pledged_only():
    import dataclasses
    import datetime as dt

    from funding_rules import checks
    from funding_rules.loader import get_rules

    jiangmen, urumqi = get_rules("jiangmen-2023-trial"), get_rules("urumqi-2024-33")
    event = checks.EventFacts("JM2025-001", "release", dt.date(2025, 10, 10), dt.date(2025, 9, 20), lane=1)
    tranche = checks.TrancheFacts(1, "contract", "grant_share", 180_000_000, False, (), "S1")

    def facts(pledged: int | None, first: bool = True) -> checks.ReleaseFacts:
        return checks.ReleaseFacts(event, tranche, 0, 300_000_000, first_release=first, pledged_fen=pledged)

    [warning] = checks.check_pledge_at_first_release(facts(0), jiangmen)
    assert (warning.code, warning.severity) == ("pledge_must_be_on_file_at_first_release", "warning")
    assert checks.check_pledge_at_first_release(facts(1), jiangmen) == []  # one fen pledged is a pledge on file
    assert checks.check_pledge_at_first_release(facts(0, first=False), jiangmen) == []
    assert checks.check_pledge_at_first_release(facts(0), urumqi) == []  # none: a bid subsidy follows cash paid
    refusing = dataclasses.replace(jiangmen, funding=dataclasses.replace(jiangmen.funding, pledge_at_first_release="refuse"))
    [error] = checks.check_pledge_at_first_release(facts(0), refusing)
    assert error.severity == "error" and "before releasing" in error.message


def test_a_retained_balance_falls_due_on_the_anniversary_and_never_under_retaining_rules():
    import dataclasses
    import datetime as dt

    from funding_rules import checks
    from funding_rules.loader import get_rules

    jiangmen = get_rules("jiangmen-2023-trial")
    assert checks.balance_recoverable_on(dt.date(2027, 9, 30), jiangmen) is None
    two = dataclasses.replace(jiangmen, closure=dataclasses.replace(
        jiangmen.closure, balance_after_acceptance="recover_after_years", recover_after_years=2))
    assert checks.balance_recoverable_on(dt.date(2027, 9, 30), two) == dt.date(2029, 9, 30)
    assert checks.balance_recoverable_on(dt.date(2028, 2, 29), two) == dt.date(2030, 2, 28)


def test_audited_cash_reads_one_amount_or_one_per_lane():
    from ledger.core.errors import Refusal
    from ledger.programme.stages import parse_audited_cash

    assert parse_audited_cash(["240万"]) == ((None, 240_000_000),)
    assert parse_audited_cash(["L1=1,000.00; L2=0.01"]) == (("L1", 100_000), ("L2", 1))
    for bad, code in (("L1=", "amount_must_not_be_empty"), ("=5", "audited_cash_must_be_lane_equals_amount"),
                      ("L1=-1", "amount_must_not_be_negative")):
        with pytest.raises(Refusal) as refused:
            parse_audited_cash([bad])
        assert refused.value.code == code
