"""Hostile text in the outputs (issue 13, item 5), thousands separators in the CLI's tables
(issue 15, item 3) and ``--font`` on the commands that write PDFs (issue 15, item 1).

The attacks are names a hostile (or careless) party or import file can give: a DDE payload
``=cmd|' /C calc'!A0`` and a ``=HYPERLINK(...)`` must come out of every workbook as string
cells and out of every CSV with a leading quote; a newline must not forge a row of a table;
ANSI and OSC escape sequences must never reach the terminal raw. They are registered and
approved through the services, then read back as a reader would: openpyxl's cell types for
the workbooks, the raw bytes for CSV, the lines for tables.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from openpyxl import load_workbook
from programme_fixtures import (
    JM_APPROVAL,
    JM_DEMAND,
    JM_FIRM,
    JM_INSTITUTE,
    JM_UNIVERSITY,
    D,
    add_budget,
    add_party,
    approve,
    yuan,
)

from ledger.programme import record_stage, release
from reports.text import csv_cell, grouped_amount, table_text

DDE = "=cmd|' /C calc'!A0"
LINK = '=HYPERLINK("http://evil","click")'
ANSI = "\x1b[31m"
OSC = "\x1b]0;pwned\x07"
SOLVER_NAME = f"+五邑某大学{ANSI}红字{OSC}"
FORGED = "江门市某科技有限公司\n91440700MA51A0009X  伪造单位                enterprise"
INSTITUTE_NAME = "@江门某民办研究院\t制表"
JM = JM_APPROVAL.code
SUM = re.compile(r"=SUM\([A-Z]+\d+(?::[A-Z]+\d+)?(?:,[A-Z]+\d+(?::[A-Z]+\d+)?)*\)")


@pytest.fixture
def hostile(session_factory) -> None:
    """JM2025-003 named like a HYPERLINK formula, its demand side a DDE payload, its solver a
    name with ANSI and OSC sequences; two more parties with a newline and a tab; one release."""
    with session_factory() as s:
        add_party(s, JM_DEMAND, DDE, revenue_fen=yuan("600,000,000.00"))
        add_party(s, JM_UNIVERSITY, SOLVER_NAME, kind="university")
        add_party(s, JM_FIRM, FORGED)
        add_party(s, JM_INSTITUTE, INSTITUTE_NAME, kind="institute")
        add_budget(s)
        approve(s, _named(LINK))
    with session_factory() as s:
        record_stage(s, project=JM, stage="contract_signed", passed=True, date=D(2025, 10, 10), voucher="HT-1",
                     actor="officer-test", reference="江科合〔2025〕003号")
    with session_factory() as s:
        release(s, project=JM, lane=None, date=D(2025, 10, 20), voucher="BK-1", actor="officer-test")


def _named(name: str):
    from dataclasses import replace

    return replace(JM_APPROVAL, name=name)


# --- the helpers, both sides of each rule ---------------------------------------------------


@pytest.mark.parametrize("value", [DDE, LINK, "+1+1", "-1+1", "@SUM(A1)", "\tx", "\rx", "-", "+", "-5.00abc", "-1e5", "--5",
                                   "-1,23.00", "=1"])
def test_csv_prefixes_what_a_spreadsheet_would_read_as_a_formula(value):
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["-1,234.00", "-5.00", "+5", "-5", "1,234,567.89", "5000000.00", "-0.01", "江门", "a=b",
                                   " =1", "x\t", "", "1-2", "'=already"])
def test_csv_leaves_numbers_and_harmless_text_alone(value):
    assert csv_cell(value) == value


def test_csv_leaves_non_text_alone():
    assert csv_cell(None) is None and csv_cell(-5) == -5


@pytest.mark.parametrize(("raw", "shown"), [
    ("a\nb", "a\\nb"), ("a\r\nb", "a\\r\\nb"), ("a\tb", "a\\tb"), (ANSI + "x", "\\x1b[31mx"), (OSC, "\\x1b]0;pwned\\x07"),
    ("\x9b31m", "\\x9b31m"), ("a\u2028b", "a\\u2028b"), ("abc\u202eexe.pdf", "abc\\u202eexe.pdf"), ("\x00", "\\x00"),
    ("\x7f", "\\x7f"),
])
def test_table_text_shows_controls_visibly(raw, shown):
    assert table_text(raw) == shown


@pytest.mark.parametrize("text", ["江门市某智能装备有限公司", "a b", "全角\u3000空格", "=HYPERLINK(x)", "a\\nb", "", "—–·"])
def test_table_text_leaves_printable_text_alone(text):
    assert table_text(text) == text


@pytest.mark.parametrize(("plain", "shown"), [
    ("5000000.00", "5,000,000.00"), ("-5000000.00", "-5,000,000.00"), ("999.99", "999.99"), ("1000.00", "1,000.00"),
    ("-0.01", "-0.01"), ("0.00", "0.00"), ("", ""), ("abc", "abc"), ("1,000.00", "1,000.00"), ("12.5", "12.5"),
])
def test_grouped_amount(plain, shown):
    assert grouped_amount(plain) == shown


# --- workbooks ------------------------------------------------------------------------------


def workbook_cells(path: Path):
    wb = load_workbook(path)
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                yield ws.title, cell


def assert_no_formula_but_sums(path: Path) -> list[str]:
    """No cell of the workbook is a formula but the report's own SUMs; return the SUMs."""
    sums = []
    for sheet, cell in workbook_cells(path):
        if cell.data_type == "f":
            assert SUM.fullmatch(str(cell.value)), f"{path.name} {sheet}!{cell.coordinate} is a formula: {cell.value!r}"
            sums.append(f"{sheet}!{cell.coordinate}")
    return sums


def string_cells(path: Path, value: str) -> list[str]:
    found = []
    for sheet, cell in workbook_cells(path):
        if cell.value == value:
            assert cell.data_type == "s", f"{sheet}!{cell.coordinate} holds {value!r} as {cell.data_type}"
            found.append(f"{sheet}!{cell.coordinate}")
    return found


def test_status_workbooks_hold_hostile_names_as_text(hostile, cli, tmp_path):
    demand = cli("report", "status", "--party", JM_DEMAND, "--out", str(tmp_path / "d"))
    solver = cli("report", "status", "--party", JM_UNIVERSITY, "--out", str(tmp_path / "s"))
    demand_xlsx = next((tmp_path / "d").glob("*.xlsx"))
    solver_xlsx = next((tmp_path / "s").glob("*.xlsx"))
    assert demand.stdout.count("wrote") == 2 and solver.stdout.count("wrote") == 2
    for path in (demand_xlsx, solver_xlsx):
        assert assert_no_formula_but_sums(path) == []  # the status workbook has no totals
        assert "项目 Projects!B2" in string_cells(path, LINK)
    assert "说明 About!B4" in string_cells(demand_xlsx, DDE)
    # A workbook cannot hold ESC or BEL: they are written as visible escapes, and the leading
    # "+" is text, not a formula.
    shown = SOLVER_NAME.replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    assert "说明 About!B4" in string_cells(solver_xlsx, shown)
    assert "赛道 Lanes!D2" in string_cells(demand_xlsx, shown)


def test_audit_workbook_holds_hostile_names_as_text_and_keeps_its_sums(hostile, cli, tmp_path):
    cli("report", "audit", "--project", JM, "--as-of", "2026-12-31", "--out", str(tmp_path / "a"))
    path = next((tmp_path / "a").glob("*.xlsx"))
    sums = assert_no_formula_but_sums(path)
    assert sums, "the audit workbook's totals must stay SUM formulas"
    assert string_cells(path, LINK), "the project name is in the workbook"
    assert string_cells(path, DDE), "the demand side's name is in the workbook"
    shown = SOLVER_NAME.replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    assert string_cells(path, shown), "the solver's name is in the workbook"
    # The sheets the issue named.
    wb = load_workbook(path)
    where = {(ws.title, c.coordinate) for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value in (LINK, DDE)}
    sheets = {sheet for sheet, _ in where}
    assert {"基本情况", "参与单位", "资金到位"} <= {s.split()[-1] for s in sheets}, sheets


def test_add_sheet_writes_text_cells_and_sum_formulas(tmp_path):
    """The shared writer, one cell each side: text that looks like a formula, and a total."""
    import datetime as dt

    from reports.xlsx import SheetRow, add_sheet, new_workbook, save_workbook

    wb = new_workbook()
    add_sheet(wb, "t", ["=名称", "金额"], ["text", "amount"],
              [SheetRow((LINK, 100)), SheetRow(("-2+3", 250)), SheetRow(("合计", 350), role="total")], notes=[DDE])
    path = tmp_path / "t.xlsx"
    save_workbook(wb, path, as_of=dt.date(2026, 1, 1), title="t", subject="t", keywords="t")
    ws = load_workbook(path)["t"]
    assert (ws["A1"].value, ws["A1"].data_type) == ("=名称", "s")
    assert (ws["A2"].value, ws["A2"].data_type) == (LINK, "s")
    assert (ws["A3"].value, ws["A3"].data_type) == ("-2+3", "s")
    assert (ws["B4"].value, ws["B4"].data_type) == ("=SUM(B2:B3)", "f")
    assert (ws["A6"].value, ws["A6"].data_type) == (DDE, "s")


# --- CSV ------------------------------------------------------------------------------------


def csv_rows(raw: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(raw.decode("utf-8"))))


def test_csv_of_parties_and_projects_quotes_formulas(hostile, cli):
    raw = cli("parties", "--format", "csv").stdout_bytes
    assert f"{JM_DEMAND},'{DDE},".encode() in raw
    assert b"'+\xe4\xba\x94" in raw  # '+五...
    assert f"'{INSTITUTE_NAME}".encode() in raw
    names = {row[0]: row[1] for row in csv_rows(raw)[1:]}
    assert names[JM_DEMAND] == "'" + DDE
    assert names[JM_UNIVERSITY] == "'" + SOLVER_NAME
    assert names[JM_FIRM] == FORGED  # no trigger at its start: left as it is (CSV quotes the newline)
    raw = cli("projects", "--format", "csv").stdout_bytes
    assert b'"\'=HYPERLINK(""http://evil"",""click"")"' in raw
    (row,) = csv_rows(raw)[1:]
    assert row[1] == "'" + LINK and row[-1] == "3000000.00"
    for line in csv_rows(cli("parties", "--format", "csv").stdout_bytes) + csv_rows(raw):
        for value in line:
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


def test_csv_keeps_negative_amounts_plain(hostile, cli):
    rows = csv_rows(cli("balances", "--format", "csv").stdout_bytes)
    amounts = [row[4] for row in rows[1:]]
    negative = [a for a in amounts if a.startswith("-")]
    assert negative and all(re.fullmatch(r"-\d+\.\d{2}", a) for a in negative), amounts
    assert all(re.fullmatch(r"-?\d+\.\d{2}", a) for a in amounts), amounts
    journal = csv_rows(cli("journal", "--format", "csv").stdout_bytes)
    column = journal[0].index("amount")
    assert any(r[column].startswith("-") and "," not in r[column] and "'" not in r[column] for r in journal[1:])


# --- tables ---------------------------------------------------------------------------------


def test_parties_table_shows_escapes_and_keeps_one_row_per_party(hostile, cli):
    out = cli("parties").stdout
    assert "\x1b" not in out and "\x07" not in out and "\t" not in out
    lines = out.splitlines()
    assert len(lines) == 2 + 4, out  # header, rule, four parties: the newline forged no row
    assert not any(line.startswith("91440700MA51A0009X") for line in lines)
    (forged,) = [line for line in lines if line.startswith(JM_FIRM)]
    assert "江门市某科技有限公司\\n91440700MA51A0009X" in forged
    (solver,) = [line for line in lines if line.startswith(JM_UNIVERSITY)]
    assert "\\x1b[31m红字\\x1b]0;pwned\\x07" in solver
    assert "@江门某民办研究院\\t制表" in out
    # JSON stays plain: the same names, escaped by JSON itself.
    listed = {p["uscc"]: p["name"] for p in json.loads(cli("parties", "--format", "json").stdout)}
    assert listed[JM_UNIVERSITY] == SOLVER_NAME and listed[JM_FIRM] == FORGED


def test_project_show_and_status_tables_escape_names(hostile, cli, session_factory):
    with session_factory() as s:
        from ledger.programme import contribute, pledge

        pledge(s, project=JM, amount_fen=yuan("100万"), date=D(2025, 11, 1), voucher="CN-1", actor="officer-test")
        contribute(s, project=JM, amount_fen=yuan("1,000.00"), category="equipment", date=D(2025, 11, 2), voucher="ZC-1",
                   actor="officer-test")
    out = cli("report", "status", "--party", JM_UNIVERSITY).stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31m" in out
    shown = cli("project", "show", JM).stdout
    assert LINK in shown and "\x1b" not in shown


# --- thousands separators -------------------------------------------------------------------


def test_tables_group_thousands_and_json_csv_stay_plain(hostile, cli):
    table = cli("balances", "--project", JM).stdout
    assert re.search(r"grant_released\s+1,800,000\.00$", table, re.MULTILINE), table
    assert json.loads(cli("balances", "--project", JM, "--format", "json").stdout)["grant_released"] == "1800000.00"
    assert "grant_released,1800000.00" in cli("balances", "--project", JM, "--format", "csv").stdout
    accounts = cli("balances").stdout
    assert re.search(r"  -50,000,000\.00$", accounts, re.MULTILINE), accounts  # the appropriation, a credit: minus sign
    assert "50000000.00" not in accounts
    projects = cli("projects").stdout
    assert projects.splitlines()[-1].endswith("  3,000,000.00"), projects
    assert cli("projects", "--format", "json").stdout.count('"3000000.00"') == 1
    shown = cli("project", "show", JM).stdout
    assert "1,800,000.00" in shown and "1,200,000.00" in shown and "1800000.00" not in shown
    journal = cli("journal").stdout
    assert "1,800,000.00" in journal and "-1,800,000.00" in journal and "1800000.00" not in journal


# --- fonts ----------------------------------------------------------------------------------

needs_pdffonts = pytest.mark.skipif(shutil.which("pdffonts") is None, reason="pdffonts (poppler-utils) is not installed")


def pdf_fonts(path: Path) -> list[tuple[str, str]]:
    out = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    return [(line.split()[0], line.split()[-5]) for line in out.splitlines()[2:] if line.strip()]


def _packaged_only(path: Path) -> None:
    fonts = pdf_fonts(path)
    assert fonts and all(name.endswith("+NotoSansCJKsc-Regular") and emb == "yes" for name, emb in fonts), fonts


@needs_pdffonts
def test_report_audit_font_option_with_a_bad_path_says_one_line_and_uses_the_packaged_font(hostile, cli, tmp_path, monkeypatch):
    monkeypatch.delenv("JIEBANG_FONT", raising=False)
    monkeypatch.delenv("JIEBANG_PDF_FONT", raising=False)
    bad = tmp_path / "audit-missing.ttf"
    result = cli("report", "audit", "--project", JM, "--as-of", "2026-12-31", "--out", str(tmp_path / "a"), "--font", str(bad))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"jiebang: the font {bad} cannot be used (no such file); the PDF uses the packaged Noto Sans CJK SC instead"]
    _packaged_only(next((tmp_path / "a").glob("*.pdf")))
    # Not a font at all: the same, one line.
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font")
    result = cli("report", "audit", "--project", JM, "--as-of", "2026-12-31", "--out", str(tmp_path / "b"), "--font", str(junk))
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"jiebang: the font {junk} cannot be used (") and line.endswith("instead")
    _packaged_only(next((tmp_path / "b").glob("*.pdf")))


DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@needs_pdffonts
@pytest.mark.skipif(not DEJAVU.exists(), reason="fonts-dejavu-core is not installed (it stands for a font a user names)")
def test_report_audit_font_option_wins_over_the_environment(hostile, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("JIEBANG_FONT", str(tmp_path / "env-font-loses.ttf"))
    result = cli("report", "audit", "--project", JM, "--as-of", "2026-12-31", "--out", str(tmp_path / "a"), "--font", str(DEJAVU))
    assert result.stderr.strip() == ""
    fonts = pdf_fonts(next((tmp_path / "a").glob("*.pdf")))
    assert fonts and all(name.endswith("+DejaVuSans") and emb == "yes" for name, emb in fonts), fonts


@needs_pdffonts
def test_report_forecast_font_option_with_a_bad_path(hostile, cli, tmp_path, monkeypatch):
    monkeypatch.delenv("JIEBANG_FONT", raising=False)
    monkeypatch.delenv("JIEBANG_PDF_FONT", raising=False)
    bad = tmp_path / "forecast-missing.ttf"
    result = cli("report", "forecast", "--as-of", "2025-12-31", "--from", "2025", "--years", "2", "--runs", "20",
                 "--out", str(tmp_path / "f"), "--font", str(bad))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"jiebang: the font {bad} cannot be used (no such file); the PDF uses the packaged Noto Sans CJK SC instead"]
    _packaged_only(next((tmp_path / "f").glob("*.pdf")))
    # The workbook of the forecast holds the hostile project name as text too.
    xlsx = next((tmp_path / "f").glob("*.xlsx"))
    assert assert_no_formula_but_sums(xlsx) == [] and string_cells(xlsx, LINK)


@needs_pdffonts
def test_demo_font_option_with_a_bad_path_says_one_line_and_every_pdf_embeds_the_packaged_font(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cli import main

    monkeypatch.delenv("JIEBANG_FONT", raising=False)
    monkeypatch.delenv("JIEBANG_PDF_FONT", raising=False)
    bad = tmp_path / "demo-missing.ttf"
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--font", str(bad)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"jiebang: the font {bad} cannot be used (no such file); the PDF uses the packaged Noto Sans CJK SC instead"]
    pdfs = sorted((tmp_path / "demo").rglob("*.pdf"))
    assert len(pdfs) >= 4, pdfs  # two audit packs, the forecast and its back-test
    for pdf in pdfs:
        _packaged_only(pdf)


def test_a_refusal_quoting_hostile_input_stays_one_line_without_raw_escapes(hostile, cli):
    result = cli("project", "show", f"JM{OSC}\nerror: forged{ANSI}", expect=1)  # the Cli fixture: one line on stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\\x1b]0;PWNED\\x07\\nERROR: FORGED\\x1b[31M" in result.stderr  # codes are upper-cased
