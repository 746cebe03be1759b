"""Bulk import: `jiebang template` and `jiebang import`, all or nothing, on both backends.

The workbooks are built here with openpyxl from readable row lists; the 1,000-row one is a
small programme (four parties, one appropriation, three projects) with many bid payments
and contributions, as an officer's quarterly catch-up would be.
"""

from __future__ import annotations

import datetime as dt
import time

import openpyxl
from sqlalchemy import text

DEMAND = "91440700MA4UJ00013"
FIRM = "91110000600037341L"
UNIVERSITY = "12440000455858018R"
INSTITUTE = "12100000400010001P"
UR_DEMAND = "91650100MA7B00011L"  # registered in 乌鲁木齐 (650100), as Urumqi's rules require
CATEGORIES = ("设备费", "业务费", "劳务费", "equipment", "business")


def write_workbook(path, sheets: dict[str, list[list]]) -> None:
    """Write a workbook: each sheet's first list is its header row."""
    workbook = openpyxl.Workbook(write_only=True)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    workbook.save(path)


def setup_sheets() -> dict[str, list[list]]:
    """Parties, the 2025 appropriation and three projects (two Urumqi, one Jiangmen)."""
    return {
        "parties": [
            ["uscc", "name", "kind", "revenue", "date"],
            [DEMAND, "江门某家电有限公司", "enterprise", "6亿", "2025-01-02"],
            [FIRM, "某科技公司", "企业", None, "2025-01-02"],
            [UNIVERSITY, "某大学", "高校", None, "2025-01-02"],
            [INSTITUTE, "某研究所", "科研院所", None, dt.datetime(2025, 1, 2)],
            [UR_DEMAND, "新疆某光伏有限公司", "enterprise", None, "2025-01-02"],
        ],
        "appropriations": [["year", "amount", "date", "voucher"], [2025, "5000万", "2025-01-10", "江财预〔2025〕3号"]],
        "projects": [
            ["code", "name", "city", "category", "mode", "demand_uscc", "solver_usccs", "total_investment", "grant", "bids", "start", "end", "date", "voucher"],
            ["UR2025-001", "工业软件", "urumqi", "技术攻关", "揭榜挂帅", UR_DEMAND, FIRM, "2500万", None, "2000万", "2025-03-01", "2027-12-31", "2025-02-01", "乌科〔2025〕1号"],
            ["UR2025-002", "储能材料", "urumqi", "成果转化", "赛马", UR_DEMAND, f"{UNIVERSITY};{INSTITUTE}", "1500万", None, "600万；600万", "2025-03-01", "2027-12-31", "2025-02-01", "乌科〔2025〕2号"],
            ["JM2025-001", "高端装备控制器", "jiangmen", "技术攻关", "jbgs", DEMAND, UNIVERSITY, 8_000_000, 3_000_000, None, "2025-03-01", "2028-02-28", "2025-02-01", "江科〔2025〕88号"],
        ],
    }


def thousand_rows() -> dict[str, list[list]]:
    """Exactly 1,000 valid rows across nine sheets: ten projects, 500 bid payments and the
    rest contributions, spread over the projects as a city's quarterly catch-up would be."""

    def day(n: int) -> dt.date:
        return dt.date(2025, 3, 11) + dt.timedelta(days=n % 290)

    sheets = setup_sheets()
    more = [f"UR2025-1{n:02d}" for n in range(1, 8)]
    sheets["projects"] += [
        [code, "工业软件二期", "urumqi", "技术攻关", "jbgs", UR_DEMAND, FIRM, "500万", None, "300万", "2025-03-01", "2027-12-31", "2025-02-01", f"乌科〔2025〕{code}号"]
        for code in more
    ]
    sheets["pledges"] = [
        ["project", "amount", "category", "date", "voucher"],
        ["JM2025-001", "500万", None, "2025-02-15", "CN-1"],
        ["UR2025-001", "500万", "设备费", "2025-02-15", "CN-2"],
    ]
    sheets["stages"] = [
        ["project", "stage", "passed", "lane", "reference", "date", "voucher"],
        ["JM2025-001", "contract_signed", "yes", None, "合同 2025-17", "2025-03-05", "HT-1"],
        ["UR2025-001", "合同签订", "是", None, None, "2025-03-05", "HT-2"],
    ]
    sheets["releases"] = [["project", "lane", "tranche", "date", "voucher"], ["JM2025-001", None, 1, "2025-03-10", "ZF-1"]]
    sheets["spending"] = [["project", "lane", "amount", "category", "counterparty", "date", "voucher"]] + [
        ["JM2025-001", "L1", "10000.00", "业务费", "某检测中心", day(n), f"PZ-{n:04d}"] for n in range(10)
    ]
    payees = ["UR2025-001"] + more
    sheets["bid_payments"] = [["project", "lane", "amount", "form", "date", "voucher"]] + [
        [payees[n % len(payees)], None, "1万", "cash", day(n), f"PAY-1-{n:04d}"] for n in range(400)
    ] + [
        ["UR2025-002", f"L{1 + n % 2}", 20000, "现金" if n % 3 else "equity", day(n), f"PAY-2-{n:04d}"] for n in range(100)
    ]
    used = sum(len(rows) - 1 for rows in sheets.values())
    contributors = ["JM2025-001", "UR2025-002"] + payees
    sheets["contributions"] = [["project", "amount", "category", "memo", "date", "voucher"]] + [
        [contributors[n % len(contributors)], 12_345.67, CATEGORIES[n % len(CATEGORIES)], None, day(n), f"BK-{n:04d}"]
        for n in range(1000 - used)
    ]
    return sheets


def entry_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM journal_entries")).scalar_one()


def test_template_has_every_sheet_and_imports_as_nothing(cli, engine, tmp_path):
    path = tmp_path / "import.xlsx"
    assert cli("template", str(path)).output.startswith(f"wrote {path}: sheets parties, appropriations, projects,")
    workbook = openpyxl.load_workbook(path)
    assert workbook.sheetnames == [
        "parties", "appropriations", "projects", "pledges", "contributions", "bid_contracts", "bid_payments",
        "stages", "releases", "spending", "extensions", "project_changes", "terminations", "collections", "write_offs",
        "remittances", "closures", "balance_recoveries",
    ]
    projects = workbook["projects"]
    assert [c.value for c in projects[1]][:4] == ["项目编号", "项目名称", "城市规则", "规则版本"]
    assert [c.value for c in projects[2]] == [
        "code", "name", "city", "rules_version", "category", "mode", "demand_uscc", "solver_usccs", "total_investment",
        "grant", "bids", "start", "end", "budget_year", "budget", "pi", "indicators", "project_manager", "owner_letter",
        "owner_letter_date", "exception", "date", "voucher",
    ]
    for sheet in workbook.worksheets:
        headers = [c.value for c in sheet[2]]
        assert headers[-1] == ("date" if sheet.title == "parties" else "voucher")
        assert sheet.freeze_panes == "A3"
        assert all(c.comment is not None and "例 example:" in c.comment.text for c in sheet[1])
        assert all(c.value and not c.value.isascii() for c in sheet[1])  # Chinese titles above the keys
        assert str(sheet.cell(3, 1).value).startswith("#example ")
        assert sheet.max_row == 3
    assert "统一社会信用代码" in workbook["parties"]["A1"].comment.text
    assert cli("template", str(path), expect=1).stderr == f"error: {path} exists; choose another name or add --force to overwrite it.\n"

    assert cli("import", str(path)).output == "0 written, 0 already present.\n"
    assert entry_count(engine) == 0


def test_thousand_rows_with_three_bad_ones_write_nothing_then_once(cli, engine, tmp_path):
    sheets = thousand_rows()
    sheets["pledges"][2][0] = "UR2099-999"  # an unknown project: pledges!3
    sheets["contributions"][10][1] = "12,34x"  # a bad amount: contributions!11
    sheets["bid_payments"][50][4] = "2025-02-30"  # a bad date: bid_payments!51
    bad = tmp_path / "bad.xlsx"
    write_workbook(bad, sheets)

    result = cli("import", str(bad), expect=1)
    assert result.stdout.splitlines() == [
        "pledges!3 project: project UR2099-999 does not exist; `jiebang projects` lists the codes.",
        "contributions!11 amount: amount '12,34x' is not an amount; write e.g. 1,234,567.89 or 1234567.89元 or 300万.",
        "bid_payments!51 date: date '2025-02-30' is not a date; write it as 2026-03-05, 2026/3/5, 20260305 or 2026年3月5日.",
    ]
    assert result.stderr == "error: 3 problems in bad.xlsx (1000 rows read); nothing was written. Fix the rows listed and import the file again.\n"
    assert entry_count(engine) == 0

    good = tmp_path / "good.xlsx"
    write_workbook(good, thousand_rows())
    started = time.perf_counter()
    result = cli("import", str(good))
    seconds = time.perf_counter() - started
    assert result.output.splitlines()[-1] == "1000 written, 0 already present."
    assert "bid_payments: 500 written, 0 already present" in result.output
    assert "projects: 10 written, 0 already present" in result.output
    assert entry_count(engine) == 1000
    print(f"1,000-row import on {engine.dialect.name}: {seconds:.2f} s")
    assert cli("verify").output.startswith("OK: 1000 entries verified")

    result = cli("import", str(good))
    assert result.output.splitlines()[-1] == "0 written, 1000 already present."
    assert entry_count(engine) == 1000
    # The Urumqi subsidy accrued once: 40% of the 50 cash payments of 10,000.00.
    assert '"subsidy_earned": "200000.00"' in cli("balances", "--project", "UR2025-001", "--format", "json").output


def test_dry_run_reports_and_writes_nothing(cli, engine, tmp_path):
    path = tmp_path / "setup.xlsx"
    sheets = setup_sheets()
    sheets["stages"] = [["project", "stage", "passed", "date", "voucher"], ["JM2025-001", "contract_signed", "yes", "2025-03-05", "HT-1"]]
    sheets["releases"] = [["project", "date", "voucher"], ["JM2025-001", "2025-03-10", "ZF-1"]]
    sheets["contributions"] = [
        ["project", "amount", "category", "date", "voucher"],
        ["JM2025-001", "1万", "设备费", "2025-04-01", "C-1"],
        ["JM2025-001", "2,345.67", "业务费", "2025-04-02", "C-2"],
        ["UR2025-001", "100", "设备费", "2025-04-02", "C-3"],
    ]
    write_workbook(path, sheets)
    # By hand: the contributions are 10,000 + 2,345.67 and 100; Jiangmen's first tranche is
    # 60% of the 3,000,000 grant; the Jiangmen approval obligates its grant.
    assert cli("import", str(path), "--dry-run").output.splitlines() == [
        "parties: 5 would be written, 0 already present",
        "appropriations: 1 would be written, 0 already present",
        "projects: 3 would be written, 0 already present",
        "contributions: 3 would be written, 0 already present",
        "stages: 1 would be written, 0 already present",
        "releases: 1 would be written, 0 already present",
        "would be written, by sheet, project and kind (amount: debits in the fiscal book, else the memo book):",
        "  parties - party: 5 entries, 0.00",
        "  parties 合计 total: 5 entries, 0.00",
        "  appropriations - appropriation: 1 entry, 50,000,000.00",
        "  appropriations 合计 total: 1 entry, 50,000,000.00",
        "  projects JM2025-001 approval: 1 entry, 3,000,000.00",
        "  projects UR2025-001 approval: 1 entry, 28,000,000.00",
        "  projects UR2025-002 approval: 1 entry, 16,800,000.00",
        "  projects 合计 total: 3 entries, 47,800,000.00",
        "  contributions JM2025-001 contribution: 2 entries, 12,345.67",
        "  contributions UR2025-001 contribution: 1 entry, 100.00",
        "  contributions 合计 total: 3 entries, 12,445.67",
        "  stages JM2025-001 stage: 1 entry, 0.00",
        "  stages 合计 total: 1 entry, 0.00",
        "  releases JM2025-001 release: 1 entry, 1,800,000.00",
        "  releases 合计 total: 1 entry, 1,800,000.00",
        "14 would be written, 0 already present; dry run, nothing was written.",
    ]
    assert entry_count(engine) == 0
    assert cli("import", str(path)).output.splitlines()[-1] == "14 written, 0 already present."
    # Nothing to write: no totals.
    assert cli("import", str(path), "--dry-run").output.splitlines()[-1] == "0 would be written, 14 already present; dry run, nothing was written."
    assert "合计" not in cli("import", str(path), "--dry-run").output
    assert entry_count(engine) == 14


def test_gbk_csv_of_bid_payments_is_accepted_and_a_reused_voucher_is_refused(cli, engine, tmp_path):
    setup = tmp_path / "setup.xlsx"
    write_workbook(setup, setup_sheets())
    cli("import", str(setup))
    payments = tmp_path / "payments.csv"
    payments.write_bytes(
        "project,lane,amount,form,date,voucher\r\n"
        "UR2025-001,,\"10,000.00\",现金,2025-04-01,付款-0001\r\n"
        "UR2025-002,L2,5万,股权,2025-04-02,付款-0002\r\n".encode("gbk")
    )
    assert cli("import", str(payments), "--kind", "bid_payments").output.splitlines()[-1] == "2 written, 0 already present."
    assert cli("import", str(payments), "--kind", "bid_payments").output.splitlines()[-1] == "0 written, 2 already present."
    assert "付款-0001" in cli("journal", "--kind", "bid_payment").output

    changed = tmp_path / "changed.csv"
    changed.write_text("project,amount,date,voucher\nUR2025-001,20000,2025-04-01,付款-0001\n", encoding="utf-8")
    result = cli("import", str(changed), "--kind", "bid_payments", expect=1)
    assert result.stdout == (
        "bid_payments!2 voucher: 付款-0001 is already recorded as bid_payment entry 10 (UR2025-001, 2025-04-01) "
        "with other content; use a new voucher, or reverse entry 10 first if it was wrong.\n"
    )
    assert entry_count(engine) == 11


def test_a_text_file_named_xlsx_is_refused_in_one_line(cli, tmp_path):
    path = tmp_path / "ledger.xlsx"
    path.write_text("project,amount\nUR2025-001,100\n", encoding="utf-8")
    result = cli("import", str(path), expect=1)
    assert result.output == f"error: {path} is not an Excel workbook; save it as .xlsx (Excel 工作簿), or as CSV and use --kind.\n"


def test_shape_problems_are_all_listed(cli, engine, tmp_path):
    path = tmp_path / "shape.xlsx"
    write_workbook(path, {
        "Sheet1": [["anything"]],
        "lanes": [["project", "lane"]],
        "appropriations": [
            ["year", "amount", "date", "voucher", "note"],
            ["#example 2025", "5000万", "2025-01-10", "EX-1"],
            [2025, "=A2*2", dt.date(2025, 1, 10), "AP-1"],
            [2025, 1234.567, 45678, "AP-2"],
            [None, "100万", "2025-01-11", "AP-3"],
            [2026, "100万", "2025-01-11", "AP-1"],
        ],
        "bid_payments": [["project", "amount", "date"], ["UR2025-001", "1万", "2025-04-01"]],
    })
    result = cli("import", str(path), expect=1)
    assert result.stdout.splitlines() == [
        "Sheet1!1: unknown sheet; sheets are named parties, appropriations, projects, pledges, contributions, bid_contracts, bid_payments, stages, releases, spending, extensions, project_changes, terminations, collections, write_offs, remittances, closures, balance_recoveries.",
        "lanes!1: unknown sheet; lanes are given on the projects sheet (solver_usccs, and bids per lane).",
        "appropriations!1 note: unknown column; the appropriations sheet has year, amount, date, voucher.",
        "appropriations!3 amount: holds a formula; paste the values instead (选择性粘贴 → 数值), formulas are not evaluated.",
        "appropriations!4 amount: amount '1234.567' has more than two decimals (fen); round it to 0.01 yuan and retry.",
        "appropriations!4 date: date 45678 is a number, not a date; format the cell as a date or write YYYY-MM-DD.",
        "appropriations!5 year: is empty but required: Budget year.",
        "bid_payments!1 voucher: required column is missing; add it to row 1 (`jiebang template` shows every column).",
    ]
    assert result.stderr.startswith("error: 8 problems in shape.xlsx")
    assert entry_count(engine) == 0


def test_a_voucher_used_twice_in_one_file_with_other_content_is_a_problem(cli, engine, tmp_path):
    sheets = setup_sheets()
    sheets["appropriations"].append([2025, "100万", "2025-01-11", "江财预〔2025〕3号"])
    sheets["appropriations"].append([2025, "5000万", "2025-01-10", "江财预〔2025〕3号"])
    path = tmp_path / "twice.xlsx"
    write_workbook(path, sheets)
    result = cli("import", str(path), expect=1)
    assert result.stdout == (
        "appropriations!3 voucher: 江财预〔2025〕3号 is also used on appropriations!2 with other content; "
        "give each event its own voucher.\n"
    )
    del sheets["appropriations"][2]
    write_workbook(path, sheets)
    assert cli("import", str(path)).output.splitlines()[-1] == "9 written, 1 already present."
    assert entry_count(engine) == 9


def test_every_kind_goes_through_its_service_and_replays_as_present(cli, engine, tmp_path):
    sheets = setup_sheets()
    sheets |= {
        "bid_contracts": [["project", "lane", "amount", "date", "voucher"], ["UR2025-001", "L1", "100万", "2025-05-01", "HT-3"]],
        "stages": [["project", "stage", "passed", "date", "voucher"], ["JM2025-001", "contract_signed", "yes", "2025-03-05", "HT-1"]],
        "releases": [["project", "date", "voucher"], ["JM2025-001", "2025-03-10", "ZF-1"]],
        "spending": [["project", "amount", "category", "date", "voucher"], ["JM2025-001", "50万", "材料费", "2025-06-01", "PZ-1"]],
        "extensions": [["project", "months", "reference", "reason", "date", "voucher"],
                       ["UR2025-001", 12, "乌科〔2027〕5号", "不可抗力", "2027-06-01", "YQ-1"]],
        "project_changes": [["project", "pi", "reference", "reason", "date", "voucher"],
                            ["UR2025-001", "赵新", "乌科函〔2026〕8号", "原负责人调离", "2026-03-01", "BG-1"]],
        "terminations": [["project", "reference", "misused", "date", "voucher"], ["JM2025-001", "江科〔2026〕9号", "PZ-1=5万", "2026-06-01", "ZZ-1"]],
        "collections": [["project", "amount", "date", "voucher"], ["JM2025-001", "10万", "2026-07-01", "JK-1"]],
    }
    path = tmp_path / "all.xlsx"
    write_workbook(path, sheets)
    assert cli("import", str(path)).output.splitlines()[-1] == "17 written, 0 already present."
    assert cli("import", str(path)).output.splitlines()[-1] == "0 written, 17 already present."
    balances = cli("balances", "--project", "JM2025-001", "--format", "json").output
    # Clawback = advances outstanding (1,800,000 released − 500,000 spent) + 50,000 misused.
    assert '"clawback_assessed": "1350000.00"' in balances
    assert '"clawback_collected": "100000.00"' in balances
    assert '"grant_unreleased": "0.00"' in balances
    assert cli("verify").output.startswith("OK: 17 entries verified")


def test_lane_recovery_columns_move_only_that_lanes_money(cli, engine, tmp_path):
    """The stages sheet takes misused amounts with a failed 赛马 stage assessment, and the
    terminations sheet a lane: each recovers from that lane alone (issue 14)."""
    sheets = setup_sheets()
    sheets["projects"] = [sheets["projects"][0], [
        "JM2025-009", "储能电池热管理", "jiangmen", "技术攻关", "赛马", DEMAND, f"{UNIVERSITY};{FIRM};{INSTITUTE}", 8_000_000,
        1_500_000, None, "2025-03-01", "2028-02-28", "2025-02-01", "江科〔2025〕89号"]]
    sheets["stages"] = [
        ["project", "stage", "passed", "lane", "reference", "misused", "date", "voucher"],
        ["JM2025-009", "contract_signed", "yes", None, None, None, "2025-03-05", "HT-9"],
        ["JM2025-009", "阶段考核", "否", "L3", "江科考〔2026〕3号", "PZ-L3=2万", "2026-06-01", "KH-9-L3"],
    ]
    sheets["releases"] = [["project", "lane", "date", "voucher"]] + [
        ["JM2025-009", lane, "2025-03-10", f"ZF-9-{lane}"] for lane in ("L1", "L2", "L3")
    ]
    sheets["spending"] = [["project", "lane", "amount", "category", "date", "voucher"]] + [
        ["JM2025-009", lane, "220,000.00", "业务费", "2025-06-01", f"PZ-{lane}"] for lane in ("L1", "L2", "L3")
    ]
    sheets["terminations"] = [
        ["project", "reference", "misused", "lane", "date", "voucher"],
        ["JM2025-009", "江科〔2026〕10号", "PZ-L2=1万", "L2", "2026-07-01", "ZZ-9-L2"],
    ]
    path = tmp_path / "lanes.xlsx"
    write_workbook(path, sheets)
    assert cli("import", str(path)).output.splitlines()[-1] == "16 written, 0 already present."

    def lane(n: str) -> dict:
        import json

        return json.loads(cli("balances", "--project", "JM2025-009", "--lane", n, "--format", "json").output)

    assert (lane("L3")["clawback_assessed"], lane("L3")["fiscal_spent"]) == ("100000.00", "200000.00")
    assert (lane("L2")["clawback_assessed"], lane("L2")["fiscal_spent"]) == ("90000.00", "210000.00")
    assert (lane("L1")["clawback_assessed"], lane("L1")["advances_outstanding"], lane("L1")["fiscal_spent"]) == (
        "0.00", "80000.00", "220000.00")
    assert cli("import", str(path)).output.splitlines()[-1] == "0 written, 16 already present."
    # A misuse cell on a passed assessment is a problem of that row, and nothing is written.
    sheets["stages"][2][2] = "是"
    sheets["stages"][2][-1] = "KH-9-L3-bis"
    before = entry_count(engine)
    write_workbook(path, sheets)
    result = cli("import", str(path), expect=1)
    assert "failed 赛马 stage assessment" in result.output + result.stderr
    assert entry_count(engine) == before
    assert cli("verify").output.startswith("OK")


def test_audited_cash_and_a_failed_acceptance_import_as_the_verbs_record_them(cli, engine, tmp_path):
    """Issue 14 point 8: the stages sheet takes the audited cash total with the audit report
    (the Urumqi true-up) and misuse with a failed acceptance that terminates; a bad audited
    cash cell is a problem of its row, naming the column, and nothing is written."""
    sheets = setup_sheets()
    sheets["stages"] = [
        ["project", "stage", "passed", "lane", "reference", "misused", "audited_cash", "date", "voucher"],
        ["UR2025-001", "contract_signed", "yes", None, None, None, None, "2025-03-05", "HT-U1"],
        ["UR2025-001", "acceptance", "yes", None, None, None, None, "2027-12-20", "YS-U1"],
        ["UR2025-001", "专项审计报告", "是", None, "新审〔2027〕1号", None, "2,490,000.00", "2027-12-28", "SJ-U1"],
        ["JM2025-001", "contract_signed", "yes", None, None, None, None, "2025-03-05", "HT-J1"],
        ["JM2025-001", "验收", "否", None, None, "PZ-J1=1万", None, "2028-03-01", "YS-J1"],
    ]
    sheets["bid_payments"] = [["project", "lane", "amount", "form", "date", "voucher"],
                              ["UR2025-001", None, "250万", "cash", "2025-04-01", "PAY-U1"]]
    sheets["releases"] = [["project", "lane", "date", "voucher"],
                          ["UR2025-001", None, "2025-04-10", "ZF-U1"], ["JM2025-001", None, "2025-03-10", "ZF-J1"]]
    sheets["spending"] = [["project", "lane", "amount", "category", "date", "voucher"],
                          ["JM2025-001", None, "10万", "业务费", "2025-06-01", "PZ-J1"]]
    path = tmp_path / "point8.xlsx"
    bad = {**sheets, "stages": [row[:] for row in sheets["stages"]]}
    bad["stages"][3][6] = "L1="
    write_workbook(path, bad)
    before = entry_count(engine)
    result = cli("import", str(path), expect=1)
    assert "stages!4 audited_cash" in result.output + result.stderr and entry_count(engine) == before
    write_workbook(path, sheets)
    cli("import", str(path))

    import json

    def balances(code: str) -> dict:
        return json.loads(cli("balances", "--project", code, "--format", "json").output)

    # 0.40 × 2,490,000.00 = 996,000.00 earned; 1,000,000.00 was released, so 4,000.00 is recovered.
    assert (balances("UR2025-001")["subsidy_earned"], balances("UR2025-001")["clawback_assessed"]) == ("996000.00", "4000.00")
    # The failed acceptance terminated JM2025-001: unspent 1,700,000.00 + misused 10,000.00.
    assert balances("JM2025-001")["clawback_assessed"] == "1710000.00"
    assert cli("verify").output.startswith("OK")
