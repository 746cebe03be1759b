"""The import template through Excel's hands: code columns stay text, choices have drop-downs,
Chinese titles sit above the keys, and a code Excel turned into a number is refused saying so.

Excel is simulated the way it stores what an officer types: into a text-formatted (``@``)
cell the text as typed; into a General cell a digit-only entry becomes a double of 15
significant digits (``124407004551000165`` is kept as 124407004551000000 and shown as
1.24407E+17). The workbook is then saved and read back with openpyxl, as Excel would save it.
"""

from __future__ import annotations

import csv
import re

import openpyxl
from openpyxl.utils import get_column_letter

from ledger.programme import importer

DIGIT_USCC = "124407004551000165"  # a valid USCC of digits only (a 事业单位 code)
DEMAND = "91440700MA4UJ00013"
SOLVER = "91110000600037341L"
EXCEL_MESSAGE = "Excel converted the digit-only code into a number"


def excel_types(sheet, row: int, column: int, typed) -> None:
    """Put ``typed`` in a cell as Excel stores what an officer types there."""
    cell = sheet.cell(row=row, column=column)
    text_column = sheet.column_dimensions[get_column_letter(column)].number_format == "@"
    if text_column or not isinstance(typed, str) or not re.fullmatch(r"\d+(\.\d+)?", typed):
        cell.value = typed
        if text_column:
            cell.number_format = "@"
        return
    cell.value = float(f"{float(typed):.15g}")  # a double of 15 significant digits


def fill(sheet, rows: list[dict]) -> None:
    """Type ``rows`` (by column key) under the template's example row, as an officer would."""
    keys = [c.value for c in sheet[2]]
    for offset, values in enumerate(rows):
        for key, typed in values.items():
            excel_types(sheet, 4 + offset, keys.index(key) + 1, typed)


def save_sheets(workbook, path, sheets: dict[str, list[list]]) -> None:
    """Add each sheet's rows (the key row first) to ``workbook`` and save it at ``path``."""
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    workbook.save(path)


def test_template_code_columns_are_text_and_choices_have_drop_downs(cli, tmp_path):
    path = tmp_path / "template.xlsx"
    cli("template", str(path))
    workbook = openpyxl.load_workbook(path)
    for spec in importer.SHEET_LIST:
        sheet = workbook[spec.name]
        assert [c.value for c in sheet[1]] == [c.title for c in spec.columns]
        assert [c.value for c in sheet[2]] == list(spec.names)
        validations = {str(v.sqref): v for v in sheet.data_validations.dataValidation}
        for index, column in enumerate(spec.columns, start=1):
            letter = get_column_letter(index)
            is_text = sheet.column_dimensions[letter].number_format == "@"
            assert is_text == bool(column.code), (spec.name, column.name)
            validation = validations.get(f"{letter}3:{letter}1048576")
            if column.kind in ("choice", "bool") or column.suggest:
                words = validation.formula1.strip('"').split(",")
                # every word offered is one the importer reads
                for word in words:
                    assert importer.READERS[column.kind](word, column) is not None or column.kind == "text"
                if column.kind == "choice":
                    assert set(words) == set(column.choices) and validation.showErrorMessage
            else:
                assert validation is None, (spec.name, column.name)
    codes = {(s.name, c.name) for s in importer.SHEET_LIST for c in s.columns if c.code}
    assert {("parties", "uscc"), ("parties", "related"), ("projects", "code"), ("projects", "demand_uscc"),
            ("projects", "solver_usccs"), ("stages", "reference"), ("spending", "voucher"),
            ("write_offs", "approval"), ("closures", "reference"), ("projects", "owner_letter"), ("projects", "exception"),
            ("extensions", "exception"), ("project_changes", "reference"), ("project_changes", "owner_letter")} <= codes
    titles = {(s.name, c.name): c.title for s in importer.SHEET_LIST for c in s.columns}
    assert (titles["projects", "pi"], titles["projects", "indicators"], titles["projects", "exception"], titles["extensions", "reason"],
            titles["stages", "audit_fee"], titles["project_changes", "reference"]) == (
        "项目负责人", "考核指标", "原则上限制的例外", "延期理由", "审计费用", "变更批复文号")
    stage = dict(zip([c.value for c in workbook["stages"][2]], range(1, 99)))["stage"]
    words = next(v for v in workbook["stages"].data_validations.dataValidation
                 if str(v.sqref).startswith(get_column_letter(stage))).formula1
    assert "验收" in words and "acceptance" in words


def test_template_round_trip_keeps_codes_and_refuses_what_excel_converted(cli, tmp_path):
    template = tmp_path / "template.xlsx"
    cli("template", str(template))

    # Typed into the template: the code columns are text, so the digit-only USCC survives.
    workbook = openpyxl.load_workbook(template)
    fill(workbook["parties"], [
        {"uscc": DEMAND, "name": "江门某家电有限公司", "kind": "企业", "revenue": "600000000", "date": "2025-01-02"},
        {"uscc": DIGIT_USCC, "name": "某事业单位", "kind": "科研院所", "date": "2025-01-02"},
    ])
    fill(workbook["appropriations"], [{"year": "2025", "amount": "5000万", "date": "2025-01-10", "voucher": "0012"}])
    fill(workbook["projects"], [{
        "code": "JM2025-001", "name": "项目", "city": "jiangmen", "category": "技术攻关", "mode": "揭榜挂帅",
        "demand_uscc": DEMAND, "solver_usccs": DIGIT_USCC, "total_investment": "8000000", "grant": "3000000",
        "start": "2025-03-01", "end": "2027-12-31", "date": "2025-02-01", "voucher": "000123456789012345",
    }])
    filled = tmp_path / "filled.xlsx"
    workbook.save(filled)

    reread = openpyxl.load_workbook(filled)
    parties, projects = reread["parties"], reread["projects"]
    assert parties["A5"].value == DIGIT_USCC and parties["A5"].number_format == "@"
    assert parties.column_dimensions["A"].number_format == "@"  # the text format survives a save
    column = {c.value: c.column for c in projects[2]}  # by key: columns are added over time
    assert projects.cell(4, column["solver_usccs"]).value == DIGIT_USCC
    assert projects.cell(4, column["voucher"]).value == "000123456789012345"  # leading zeros kept
    assert reread["appropriations"]["D4"].value == "0012"
    assert parties["D4"].value == 600000000  # an amount column is General: a number, as it should be
    assert len(parties.data_validations.dataValidation) == len(workbook["parties"].data_validations.dataValidation)

    assert cli("import", str(filled)).output.splitlines()[-1] == "4 written, 0 already present."
    assert DIGIT_USCC in cli("parties").output
    assert DIGIT_USCC in cli("project", "show", "JM2025-001").output  # the solver of its lane L1

    # The same code typed into a sheet whose columns are General (a home-made workbook):
    # Excel keeps a double of 15 digits, and the import says what happened and how to fix it.
    home = openpyxl.Workbook()
    home.remove(home.active)
    sheet = home.create_sheet("parties")
    sheet.append(["uscc", "name", "kind", "date"])
    excel_types(sheet, 2, 1, "124407004551000166")
    sheet["B2"], sheet["C2"], sheet["D2"] = "另一事业单位", "institute", "2025-01-02"
    sheet = home.create_sheet("stages")
    sheet.append(["project", "stage", "passed", "reference", "date", "voucher"])
    sheet.append(["JM2025-001", "contract_signed", "是", "ok", "2025-03-05", "HT-1"])
    excel_types(sheet, 2, 6, "123456789012345678")
    home_path = tmp_path / "home.xlsx"
    home.save(home_path)
    assert isinstance(openpyxl.load_workbook(home_path)["parties"]["A2"].value, float)

    result = cli("import", str(home_path), expect=1)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("parties!2 uscc: uscc 1.24407E+17 is a number: " + EXCEL_MESSAGE), lines
    assert lines[1].startswith("stages!2 voucher: voucher 1.23457E+17 is a number: " + EXCEL_MESSAGE), lines
    assert all("apostrophe" in line and "文本" in line for line in lines)
    assert "override" not in result.output
    assert result.stderr.startswith("error: 2 problems in home.xlsx")

    # Saved by Excel as CSV, the number is written as Excel shows it.
    csv_path = tmp_path / "parties.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["uscc", "name", "date"], ["1.24407E+17", "某事业单位", "2025-01-02"]])
    result = cli("import", str(csv_path), "--kind", "parties", expect=1)
    assert result.stdout.startswith("parties!2 uscc: uscc 1.24407E+17 is a number: " + EXCEL_MESSAGE)
    assert "override" not in result.output


def test_old_files_with_keys_in_row_1_still_import(cli, tmp_path):
    path = tmp_path / "old.xlsx"
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    sheet = workbook.create_sheet("parties")
    sheet.append(["uscc", "name", "date"])
    sheet.append([DEMAND, "江门某家电有限公司", "2025-01-02"])
    sheet = workbook.create_sheet("appropriations")
    sheet.append(["预算年度", "预算金额", "日期", "凭证"])  # any title row above the keys
    sheet.append(["year", "amount", "date", "voucher"])
    sheet.append([2025, "100万", "2025-01-10", "AP-1"])
    sheet.append([2025, "bad", "2025-01-10", "AP-2"])
    workbook.save(path)
    result = cli("import", str(path), expect=1)
    assert result.stdout.splitlines() == [
        "appropriations!4 amount: amount 'bad' is not an amount; write e.g. 1,234,567.89 or 1234567.89元 or 300万.",
    ]
    sheet.delete_rows(4)
    workbook.save(path)
    assert cli("import", str(path)).output.splitlines()[-1] == "2 written, 0 already present."


def test_write_offs_remittances_and_closures_import(cli, tmp_path):
    """The sheets that finish a project's life: closure after acceptance; a terminated
    project's clawback collected, written off and remitted."""
    path = tmp_path / "life.xlsx"
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    sheets = {
        "parties": [["uscc", "name", "revenue", "date"], [DEMAND, "发榜企业", "6亿", "2025-01-02"],
                    [SOLVER, "揭榜单位", None, "2025-01-02"], [DIGIT_USCC, "事业单位", None, "2025-01-02"]],
        "appropriations": [["year", "amount", "date", "voucher"], [2025, "5000万", "2025-01-10", "AP-1"]],
        "projects": [
            ["code", "name", "city", "category", "mode", "demand_uscc", "solver_usccs", "total_investment", "grant",
             "start", "end", "date", "voucher"],
            ["JM2025-001", "甲", "jiangmen", "技术攻关", "揭榜挂帅", DEMAND, SOLVER, "800万", "300万", "2025-03-01",
             "2027-12-31", "2025-02-01", "LX-1"],
            ["JM2025-002", "乙", "jiangmen", "技术攻关", "揭榜挂帅", DEMAND, DIGIT_USCC, "800万", "300万", "2025-03-01",
             "2027-12-31", "2025-02-01", "LX-2"],
        ],
        "stages": [["project", "stage", "passed", "date", "voucher"],
                   ["JM2025-001", "合同签订", "是", "2025-03-05", "HT-1"], ["JM2025-002", "合同签订", "是", "2025-03-05", "HT-2"],
                   ["JM2025-002", "验收", "通过", "2027-06-01", "YS-2"], ["JM2025-002", "专项审计报告", "yes", "2027-06-10", "SJ-2"]],
        "releases": [["project", "date", "voucher"], ["JM2025-001", "2025-03-10", "ZF-1"]],
        "terminations": [["project", "reference", "date", "voucher"], ["JM2025-001", "江科〔2026〕9号", "2026-06-01", "ZZ-1"]],
        "collections": [["project", "amount", "date", "voucher"], ["JM2025-001", "100万", "2026-07-01", "JK-1"]],
        "write_offs": [["project", "amount", "reason", "approval", "date", "voucher"],
                       ["JM2025-001", "20万", "企业注销", "江财〔2026〕7号", "2026-09-01", "HX-1"]],
        "remittances": [["amount", "date", "voucher"], ["100万", "2026-08-01", "JC-1"]],
        "closures": [["project", "reference", "date", "voucher"], ["JM2025-002", "江科验〔2027〕3号", "2027-07-01", "JX-2"]],
    }
    save_sheets(workbook, path, sheets)
    output = cli("import", str(path)).output
    assert output.splitlines()[-1] == "16 written, 0 already present.", output
    for line in ("write_offs: 1 written", "remittances: 1 written", "closures: 1 written"):
        assert line in output
    assert cli("import", str(path)).output.splitlines()[-1] == "0 written, 16 already present."
    balances = cli("balances", "--project", "JM2025-001", "--format", "json").output
    assert '"clawback_collected": "1000000.00"' in balances
    assert cli("verify").output.startswith("OK: 16 entries verified")


def test_principle_exceptions_and_the_facts_auditors_read_import(cli, tmp_path):
    """Issue 14 points 7 and 9 from a workbook: the same hashed facts as the verbs record."""
    import json

    from sqlalchemy import create_engine, text

    path = tmp_path / "facts.xlsx"
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    sheets = {
        "parties": [["uscc", "name", "revenue", "date"], [DEMAND, "发榜企业", "6亿", "2025-01-02"], [SOLVER, "揭榜单位", None, "2025-01-02"]],
        "appropriations": [["year", "amount", "date", "voucher"], [2025, "5000万", "2025-01-10", "AP-1"]],
        "projects": [
            ["code", "name", "city", "category", "mode", "demand_uscc", "solver_usccs", "total_investment", "grant", "start", "end",
             "pi", "indicators", "exception", "date", "voucher"],
            ["JM2025-001", "甲", "jiangmen", "技术攻关", "揭榜挂帅", DEMAND, SOLVER, "800万", "300万", "2025-03-01", "2028-03-01",
             "张三", "样机1台;发明专利2项", "江科〔2025〕66号: 设备进口周期长", "2025-02-01", "LX-1"],
        ],
        "stages": [["project", "stage", "passed", "accepted_by", "audit_firm", "audit_fee", "date", "voucher"],
                   ["JM2025-001", "验收", "通过", "江门市科学技术局", None, None, "2027-06-01", "YS-1"],
                   ["JM2025-001", "专项审计报告", "是", None, "江门某会计师事务所", "3.5万", "2027-06-10", "SJ-1"]],
        "extensions": [["project", "months", "reference", "reason", "date", "voucher"],
                       ["JM2025-001", 6, "江科〔2027〕1号", "不可抗力", "2027-05-01", "YQ-1"]],
        "project_changes": [["project", "pi", "reference", "reason", "date", "voucher"],
                            ["JM2025-001", "李四", "江科函〔2026〕8号", "原负责人调离", "2026-03-01", "BG-1"]],
    }
    save_sheets(workbook, path, sheets)
    output = cli("import", str(path)).output
    assert output.splitlines()[-1] == "8 written, 0 already present.", output
    engine = create_engine(cli.db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, payload FROM project_events WHERE project_code = 'JM2025-001' ORDER BY entry_id")).all()
    payloads = {kind: json.loads(p) for kind, p in rows if p and kind != "stage"}
    stages = [json.loads(p) for kind, p in rows if kind == "stage"]
    engine.dispose()
    assert payloads["approval"]["pi"] == "张三" and payloads["approval"]["indicators"] == ["样机1台", "发明专利2项"]
    [exception] = payloads["approval"]["exceptions"]
    assert (exception["key"], exception["reference"], exception["reason"]) == ("approval.max_period_years", "江科〔2025〕66号", "设备进口周期长")
    assert payloads["project_change"] == {"pi": "李四", "reason": "原负责人调离"}
    assert payloads["extension"] == {"months": 6, "reason": "不可抗力"}
    assert stages == [{"accepted_by": "江门市科学技术局"}, {"audit_firm": "江门某会计师事务所", "audit_fee_fen": 3_500_000}]
    assert cli("import", str(path)).output.splitlines()[-1] == "0 written, 8 already present."
    assert cli("verify").output.startswith("OK: ")
    # An extension row without its reason is refused, naming the column.
    sheet = workbook["extensions"]
    sheet.append(["JM2025-001", 1, "江科〔2027〕2号", None, "2027-05-02", "YQ-2"])
    workbook.save(path)
    result = cli("import", str(path), expect=1)
    assert "extensions!3 reason: is empty but required" in result.stdout
