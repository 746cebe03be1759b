"""Answers that state the money, and ``--dry-run`` (SQLite and PostgreSQL).

Every verb that posts is run twice through the CLI: first with ``--dry-run``, which must
print the same line prefixed 试算（未写入） and leave every table and the chain head as they
were, then for real. Each real line is asserted exactly; the amounts in them follow from
the scenario by hand (the comments give the arithmetic).
"""

from __future__ import annotations

import json

from programme_fixtures import (
    JM_DEMAND,
    JM_FIRM,
    JM_INSTITUTE,
    JM_UNIVERSITY,
    UR_DEMAND,
    UR_SOLVER,
    table_counts,
)
from sqlalchemy import text

DRY = "试算（未写入）："


def _state(engine) -> tuple:
    with engine.connect() as conn:
        head = conn.execute(text("SELECT last_entry_id, last_hash FROM chain_head")).one()
    return table_counts(engine), tuple(head)


def said(cli, engine, *args: str) -> str:
    """Run a verb with --dry-run (nothing written, same line) and then for real; its output."""
    before = _state(engine)
    dry = cli(*args, "--dry-run").stdout
    assert _state(engine) == before, f"jiebang {' '.join(args)} --dry-run wrote something"
    real = cli(*args).stdout
    assert _state(engine) != before
    assert dry == DRY + real, (dry, real)
    return real


def test_every_money_verb_states_what_it_posted_and_dry_run_writes_nothing(cli, engine):
    def one(*args: str) -> str:
        out = said(cli, engine, *args)
        assert out.count("\n") == 1, out
        return out.rstrip("\n")

    assert one("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", "6亿", "--date", "2025-01-02") == (
        f"登记单位 {JM_DEMAND} 江门市某智能装备有限公司，凭证 {JM_DEMAND}，分录 1"
    )
    for uscc, name, kind in ((JM_UNIVERSITY, "五邑某大学", "university"), (JM_FIRM, "江门市某科技有限公司", "enterprise"),
                             (JM_INSTITUTE, "江门某研究院", "institute"), (UR_DEMAND, "新疆某光伏有限公司", "enterprise"),
                             (UR_SOLVER, "新疆某大学", "university")):
        cli("party", "add", "--uscc", uscc, "--name", name, "--kind", kind, "--date", "2025-01-02")
    assert one("appropriate", "--year", "2025", "--amount", "5000万", "--date", "2025-01-10", "--voucher", "江财预〔2025〕3号") == (
        "预算指标 2025年度：50,000,000.00，凭证 江财预〔2025〕3号，分录 7"
    )

    # Jiangmen 揭榜挂帅, grant 3,000,000.00: 60% (1,800,000.00) at contract, 40% (1,200,000.00) at mid-term.
    approve = [
        "project", "approve", "--code", "JM2025-003", "--name", "高端装备运动控制器", "--city", "jiangmen",
        "--category", "技术攻关", "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY,
        "--total-investment", "800万", "--grant", "300万", "--start", "2025-10-01", "--end", "2028-09-30",
        "--date", "2025-09-20", "--voucher", "江科〔2025〕31号",
    ]
    assert said(cli, engine, *approve).splitlines() == [
        "立项 JM2025-003：资助 3,000,000.00，凭证 江科〔2025〕31号，分录 8",
        "实施期 2025-10-01 至 2028-09-30，预算年度 2025",
        f"L1 揭榜方 {JM_UNIVERSITY}",
        "  L1 第1期（contract）按资助额 1,800,000.00，条件：合同签订",
        "  L1 第2期（midterm）按资助额 1,200,000.00，条件：中期检查通过",
    ]
    code = ["--project", "JM2025-003"]
    assert one("pledge", *code, "--amount", "500万", "--date", "2025-09-25", "--voucher", "CN-1") == (
        "自筹承诺 JM2025-003：5,000,000.00，凭证 CN-1，分录 9"
    )
    assert one("contribute", *code, "--amount", "120万", "--category", "设备费", "--date", "2025-12-01", "--voucher", "BK-1") == (
        "自筹到位 JM2025-003 设备费：1,200,000.00，凭证 BK-1，分录 10"
    )
    assert one("stage", *code, "--stage", "contract_signed", "--passed", "--date", "2025-10-10", "--voucher", "HT-1") == (
        "合同签订 JM2025-003：通过，凭证 HT-1，分录 11"
    )
    assert one("release", *code, "--date", "2025-11-01", "--voucher", "ZF-2025-118") == (
        "拨付 JM2025-003 L1 第1期：1,800,000.00，凭证 ZF-2025-118，分录 12"
    )
    assert one("spend", *code, "--amount", "45万", "--category", "设备费", "--date", "2026-01-15", "--voucher", "PZ-0012") == (
        "支出 JM2025-003 L1 设备费：450,000.00，凭证 PZ-0012，分录 13"
    )
    assert one("extend", *code, "--months", "6", "--reference", "江科〔2028〕5号", "--reason", "不可抗力", "--date", "2026-02-01", "--voucher", "YQ-1") == (
        "延期 JM2025-003：6 个月，实施期至 2029-03-30，凭证 YQ-1，分录 14"
    )
    # Termination: clawback = advances outstanding (1,800,000.00 - 450,000.00) + misused 50,000.00
    # = 1,400,000.00; the unreleased 1,200,000.00 is deobligated.
    assert one("terminate", *code, "--reference", "江科〔2026〕9号", "--misused", "PZ-0012=5万", "--date", "2026-03-01",
               "--voucher", "ZZ-1") == "终止 JM2025-003：追回 1,400,000.00，核销未拨付 1,200,000.00，凭证 ZZ-1，分录 15"

    # Jiangmen 赛马, grant 2,000,000.00 split equally: 1,000,000.00 a lane, 600,000.00 at contract.
    cli("project", "approve", "--code", "JM2025-007", "--name", "赛马项目", "--city", "jiangmen", "--category", "技术攻关",
        "--mode", "赛马", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--solver", JM_FIRM, "--total-investment", "800万",
        "--grant", "200万", "--start", "2025-10-01", "--end", "2028-09-30", "--date", "2025-09-20")
    race = ["--project", "JM2025-007"]
    cli("stage", *race, "--stage", "contract_signed", "--passed", "--date", "2025-10-10")
    cli("release", *race, "--lane", "L2", "--date", "2025-11-01", "--voucher", "ZF-7-2")
    cli("release", *race, "--lane", "L1", "--date", "2025-11-01", "--voucher", "ZF-7-1")
    cli("spend", *race, "--lane", "L2", "--amount", "10万", "--category", "业务费", "--date", "2026-01-15")
    # L2 fails: clawback = its advances outstanding 600,000.00 - 100,000.00 = 500,000.00;
    # its unreleased 400,000.00 is deobligated.
    assert one("stage", *race, "--stage", "stage_assessment", "--lane", "L2", "--failed", "--date", "2026-06-01",
               "--voucher", "KH-2") == "阶段考核 JM2025-007 L2：未通过，追回 500,000.00，核销未拨付 400,000.00，凭证 KH-2，分录 21"
    assert one("collect", *race, "--lane", "L2", "--amount", "20万", "--date", "2026-07-01", "--voucher", "JK-1") == (
        "收回 JM2025-007 L2：200,000.00，尚欠 300,000.00，凭证 JK-1，分录 22"
    )
    assert one("write-off", *race, "--lane", "L2", "--amount", "10万", "--reason", "单位注销", "--approval", "江财〔2026〕2号",
               "--date", "2026-08-01", "--voucher", "HX-1") == "核销应收 JM2025-007 L2：100,000.00，凭证 HX-1，分录 23"
    assert one("remit", "--amount", "20万", "--date", "2026-08-15", "--voucher", "JC-1") == "上缴财政：200,000.00，凭证 JC-1，分录 24"
    # Revocation recovers what is released to the lanes still running at the rules' rate 1.00:
    # L1's 600,000.00, none spent; L1's unreleased 400,000.00 is deobligated (L2's was, at its
    # elimination).
    assert one("revoke", *race, "--reference", "江科〔2026〕77号", "--date", "2026-09-01", "--voucher", "CX-1") == (
        "撤销 JM2025-007：追回 600,000.00，核销未拨付 400,000.00，凭证 CX-1，分录 25"
    )

    # Closure: a grant of 1,000,000.00, 600,000.00 released; the unreleased 400,000.00 is
    # deobligated and the balance stays with the unit (nothing clawed back).
    cli("project", "approve", "--code", "JM2025-009", "--name", "结项项目", "--city", "jiangmen", "--category", "成果转化",
        "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_INSTITUTE, "--total-investment", "400万",
        "--grant", "100万", "--start", "2025-10-01", "--end", "2027-09-30", "--date", "2025-09-20")
    done = ["--project", "JM2025-009"]
    cli("stage", *done, "--stage", "contract_signed", "--passed", "--date", "2025-10-10")
    cli("release", *done, "--date", "2025-11-01")
    cli("stage", *done, "--stage", "acceptance", "--passed", "--date", "2027-09-01")
    cli("stage", *done, "--stage", "audit_report", "--passed", "--date", "2027-09-10")
    assert one("close", *done, "--reference", "江科验〔2027〕1号", "--date", "2027-09-20", "--voucher", "JX-1") == (
        "结项 JM2025-009：追回 0.00，核销未拨付 400,000.00，凭证 JX-1，分录 31"
    )

    # Urumqi: a bid of 3,000,000.00 gives a subsidy ceiling of 40% = 1,200,000.00; a contract
    # addition of 100,000.00; a cash payment of 1,000,000.00 earns 400,000.00 of subsidy.
    cli("project", "approve", "--code", "UR2025-011", "--name", "光伏组件智能运维", "--city", "urumqi", "--category", "成果转化",
        "--mode", "揭榜挂帅", "--demand", UR_DEMAND, "--solver", UR_SOLVER, "--total-investment", "800万", "--bid", "300万",
        "--start", "2025-07-01", "--end", "2027-06-30", "--date", "2025-06-20")
    ur = ["--project", "UR2025-011"]
    assert one("bid", "contract", *ur, "--amount", "10万", "--date", "2025-07-01", "--voucher", "HT-UR-1") == (
        "揭榜合同 UR2025-011 L1：100,000.00，凭证 HT-UR-1，分录 33"
    )
    assert one("bid", "pay", *ur, "--amount", "100万", "--date", "2025-08-01", "--voucher", "PAY-1") == (
        "揭榜金额支付 UR2025-011 L1（现金）：1,000,000.00，应付补助增加 400,000.00，凭证 PAY-1，分录 34"
    )

    # The voucher already used: the same line, said to be recorded before, nothing written.
    retry = cli("collect", *race, "--lane", "L2", "--amount", "20万", "--date", "2026-07-01", "--voucher", "JK-1").stdout
    assert retry == "收回 JM2025-007 L2：200,000.00，尚欠 300,000.00，凭证 JK-1，分录 22（此前已记录，本次未写入）\n"
    # A remittance retried after it used up what was owed is the first entry again, not a
    # refusal that nothing is left to remit; other details under its voucher are refused.
    retry = cli("remit", "--amount", "20万", "--date", "2026-08-15", "--voucher", "JC-1").stdout
    assert retry == "上缴财政：200,000.00，凭证 JC-1，分录 24（此前已记录，本次未写入）\n"
    assert "voucher JC-1 was already used for remittance entry 24 with different details" in cli(
        "remit", "--amount", "10万", "--date", "2026-08-15", "--voucher", "JC-1", expect=1
    ).stderr


def test_json_gives_the_entry_its_postings_and_its_trace(cli, engine):
    cli("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", "6亿", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_UNIVERSITY, "--name", "五邑某大学", "--kind", "university", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "5000万", "--date", "2025-01-10")
    cli("project", "approve", "--code", "JM2025-003", "--name", "控制器", "--city", "jiangmen", "--category", "技术攻关",
        "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--total-investment", "800万",
        "--grant", "300万", "--start", "2025-10-01", "--end", "2028-09-30", "--date", "2025-09-20")
    cli("stage", "--project", "JM2025-003", "--stage", "contract_signed", "--date", "2025-10-10")
    for dry in (True, False):
        args = ["release", "--project", "JM2025-003", "--date", "2025-11-01", "--voucher", "ZF-1", "--format", "json"]
        data = json.loads(cli(*args, *(["--dry-run"] if dry else [])).stdout)
        assert data["dry_run"] is dry and data["created"] is True
        entry = data["entry"]
        assert (entry["id"], entry["kind"], entry["project"], entry["voucher"], entry["date"]) == (6, "release", "JM2025-003", "ZF-1", "2025-11-01")
        assert {(p["account"], p["amount"]) for p in entry["postings"]} == {
            ("Assets:Memo:Grant:Released:JM2025-003:L1", "1800000.00"),
            ("Assets:Memo:Grant:Unreleased:JM2025-003:L1", "-1800000.00"),
            ("Assets:Fiscal:Advances:JM2025-003:L1", "1800000.00"),
            ("Income:Fiscal:Funding:Y2025", "-1800000.00"),
        }
        assert entry["trace"]["tranche"] == 1 and entry["trace"]["amount"] == "1800000.00"
        assert data["line"] == ("试算（未写入）：" if dry else "") + "拨付 JM2025-003 L1 第1期：1,800,000.00，凭证 ZF-1，分录 6"
    journal = json.loads(cli("journal", "--format", "json").stdout)
    assert sorted({row["entry"] for row in journal if row.get("kind") == "release"}) == [6]


def test_dry_run_of_a_refused_event_is_refused_alike(cli, engine):
    cli("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", "6亿", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_UNIVERSITY, "--name", "五邑某大学", "--kind", "university", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "5000万", "--date", "2025-01-10")
    cli("project", "approve", "--code", "JM2025-003", "--name", "控制器", "--city", "jiangmen", "--category", "技术攻关",
        "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--total-investment", "800万",
        "--grant", "300万", "--start", "2025-10-01", "--end", "2028-09-30", "--date", "2025-09-20")
    before = _state(engine)
    real = cli("release", "--project", "JM2025-003", "--date", "2025-11-01", expect=1).stderr
    dry = cli("release", "--project", "JM2025-003", "--date", "2025-11-01", "--dry-run", expect=1).stderr
    assert dry == real and "contract" in real
    assert _state(engine) == before


def test_dry_run_under_maker_checker_runs_the_rules_and_records_no_request(cli, engine):
    cli("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", "6亿", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_UNIVERSITY, "--name", "五邑某大学", "--kind", "university", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "5000万", "--date", "2025-01-10")
    cli("project", "approve", "--code", "JM2025-003", "--name", "控制器", "--city", "jiangmen", "--category", "技术攻关",
        "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--total-investment", "800万",
        "--grant", "300万", "--start", "2025-10-01", "--end", "2028-09-30", "--date", "2025-09-20")
    cli("stage", "--project", "JM2025-003", "--stage", "contract_signed", "--date", "2025-10-10")
    cli("settings", "--require-approval", "on")
    before = _state(engine)
    out = cli("release", "--project", "JM2025-003", "--date", "2025-11-01", "--dry-run").stdout
    assert out.startswith("试算（未写入）：拨付 JM2025-003 L1 第1期：1,800,000.00，")
    assert _state(engine) == before
    assert json.loads(cli("requests", "--format", "json").stdout) == []
