"""The documents the demo hands over, read as their readers read them.

The demo runs once, in a subprocess; where the machine allows a mount namespace (root on
Linux, as in CI) it runs with an empty tmpfs over /usr/share/fonts, so it is a machine
without a single system font and every PDF must carry the font the package ships. Then:

* every font of every PDF is embedded (pdffonts), every page rasterises (pdftoppm), and the
  text (pdftotext) holds no replacement character;
* every amount cell of every workbook is formatted ``#,##0.00``, and no positive amount is
  written in brackets (an accountant reads "(600,000.00)" as negative), in a PDF or a cell;
* every column of every workbook is as wide as its longest value, a CJK character counted as
  two, or wraps that value; the header row stays frozen.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.utils import column_index_from_string

from reports.xlsx import AMOUNT_FORMAT, WIDTH_MAX, display_width, shown_text

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_FONTS = Path("/usr/share/fonts")
# A positive amount in brackets, in ASCII or full-width brackets: "(600,000.00)", "（0.00）".
BRACKETED = re.compile(r"[(（]\s*\+?\d[\d,]*\.\d+\s*[)）]")
# Numeric columns that are not amounts: rates in percent, entry ids, tranche numbers, stages,
# counts. Everything else that holds a number is money.
NOT_AMOUNT = re.compile(r"率|%|[Rr]ate|分录|期次|阶段|延期次数|[Ee]xtensions|seq|[Ee]ntr(y|ies)")


def _without_system_fonts() -> bool:
    """Can this machine run a command with /usr/share/fonts hidden (a mount namespace)?"""
    if sys.platform != "linux" or shutil.which("unshare") is None or not SYSTEM_FONTS.is_dir():
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs none {SYSTEM_FONTS} && test -z \"$(ls -A {SYSTEM_FONTS})\""],
                           check=False, capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(reports directory, whether the system fonts were hidden) of one `jiebang demo` run."""
    out = tmp_path_factory.mktemp("documents") / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("JIEBANG_FONT", "JIEBANG_PDF_FONT")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, "-m", "cli", "demo", "--out", str(out), "--force"]
    hidden = _without_system_fonts()
    if hidden:
        script = f"mount -t tmpfs none {SYSTEM_FONTS} && exec \"$@\""
        command = ["unshare", "-m", "sh", "-c", script, "sh", *command]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # no font notice: the packaged font is used
    return out / "reports", hidden


def pdfs(reports: Path) -> list[Path]:
    found = sorted(reports.glob("*.pdf"))
    assert {p.name.split("-")[0] for p in found} == {"audit", "forecast"}, found
    return found


def workbooks(reports: Path) -> list[Path]:
    found = sorted(reports.glob("*.xlsx"))
    assert {p.name.split("-")[0] for p in found} == {"audit", "forecast", "status"}, found
    return found


def needs(*tools: str):
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} (poppler-utils) not installed: "
                                                     "apt-get install poppler-utils")


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-enc", "UTF-8", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


# --- PDF --------------------------------------------------------------------------------------


@needs("pdffonts", "pdftoppm")
def test_every_pdf_embeds_every_font_and_rasterises_without_system_fonts(demo, tmp_path):
    reports, hidden = demo
    for path in pdfs(reports):
        listing = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
        fonts = [line.split() for line in listing.splitlines()[2:] if line.strip()]
        assert fonts, listing
        for font in fonts:
            name, embedded = font[0], font[-5]
            assert embedded == "yes", f"{path.name}: {name} is not embedded\n{listing}"
            # The packaged font sets Latin text too: no Helvetica, no other font at all.
            assert name.endswith("+NotoSansCJKsc-Regular"), f"{path.name}: {name}\n{listing}"
        subprocess.run(["pdftoppm", "-r", "20", "-png", str(path), str(tmp_path / path.stem)], check=True, timeout=120)
        assert list(tmp_path.glob(f"{path.stem}*.png")), path
    if not hidden:
        pytest.skip("embedding checked, but /usr/share/fonts could not be hidden here (no mount namespace)")


@needs("pdftotext")
def test_policy_citations_in_the_packs_carry_no_english_commentary(demo):
    """Every 依据 a note cites is the clause in Chinese, or the sentence saying the policy is
    silent; the rules file's English commentary stays in the rules file (it once reached the
    Urumqi pack through notes that printed the raw source)."""
    import re

    reports, _ = demo
    for path in pdfs(reports):
        text = pdf_text(path).replace("\n", "")
        for cited in re.findall(r"依据：[^。]*。", text):
            assert not re.search(r"[A-Za-z]{2,} [A-Za-z]{2,}", cited), f"{path.name}: {cited}"


@needs("pdftotext")
def test_no_pdf_text_falls_back_to_the_replacement_character(demo):
    reports, _ = demo
    texts = {path.name: pdf_text(path) for path in pdfs(reports)}
    for name, text in texts.items():
        assert "\ufffd" not in text, f"{name}: " + next(line for line in text.splitlines() if "\ufffd" in line)
    # The characters that used to fall back print as themselves.
    assert any("·" in text for name, text in texts.items() if name.startswith("audit")), "no · in the audit packs"
    assert all("−" in text for name, text in texts.items() if name.startswith("forecast"))


@needs("pdftotext")
def test_no_positive_amount_is_written_in_brackets_in_any_pdf(demo):
    reports, _ = demo
    for path in pdfs(reports):
        found = [line.strip() for line in pdf_text(path).splitlines() if BRACKETED.search(line)]
        assert found == [], f"{path.name}: {found[:3]}"


# --- workbooks ----------------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _table_rows(ws) -> int:
    """The last row of the table at the top of ``ws`` (notes follow a blank row)."""
    last = 1
    for row in ws.iter_rows(min_row=2):
        if all(cell.value is None for cell in row):
            break
        last = row[0].row
    return last


def _label(ws, cell) -> str:
    """What says what a cell holds: its column header, and in a two-column sheet of labelled
    facts (field / value) the label beside it."""
    header = str(ws.cell(row=1, column=cell.column).value or "")
    return f"{header} {ws.cell(row=cell.row, column=1).value}" if ws.max_column == 2 else header


def test_every_amount_cell_of_every_workbook_is_formatted_with_thousands_separators(demo):
    reports, _ = demo
    amounts = 0
    for path in workbooks(reports):
        for ws in load_workbook(path).worksheets:
            for row in ws.iter_rows(min_row=2, max_row=_table_rows(ws)):
                for cell in row:
                    formula = isinstance(cell.value, str) and cell.value.startswith("=SUM(")
                    if not (_is_number(cell.value) or formula) or NOT_AMOUNT.search(_label(ws, cell)):
                        continue
                    assert cell.number_format == AMOUNT_FORMAT, f"{path.name} {ws.title}!{cell.coordinate}: {cell.number_format}"
                    amounts += 1
    assert amounts > 500  # the demo's workbooks hold amounts on every sheet that has money


def test_no_positive_amount_is_written_in_brackets_in_any_cell(demo):
    reports, _ = demo
    for path in workbooks(reports):
        for ws in load_workbook(path).worksheets:
            for row in ws.iter_rows():
                for cell in row:
                    if isinstance(cell.value, str):
                        assert not BRACKETED.search(cell.value), f"{path.name} {ws.title}!{cell.coordinate}: {cell.value}"
                    # A number format that brackets negatives ("#,##0.00;(#,##0.00)") is refused too.
                    assert "(" not in cell.number_format, f"{path.name} {ws.title}!{cell.coordinate}: {cell.number_format}"


def _sum(ws, formula: str) -> Decimal:
    """The value of "=SUM(C2:C4,C7)" over the numbers of ``ws``."""
    total = Decimal(0)
    for part in formula.removeprefix("=SUM(").removesuffix(")").split(","):
        first, _, last = part.partition(":")
        letter, start = re.fullmatch(r"([A-Z]+)(\d+)", first).groups()
        end = int(re.fullmatch(r"[A-Z]+(\d+)", last or first).group(1))
        column = column_index_from_string(letter)
        total += sum(Decimal(str(ws.cell(row=r, column=column).value)) for r in range(int(start), end + 1))
    return total


def test_every_workbook_column_fits_its_longest_value_and_the_header_stays_frozen(demo):
    reports, _ = demo
    for path in workbooks(reports):
        for ws in load_workbook(path).worksheets:
            assert ws.freeze_panes == "A2", f"{path.name} {ws.title}"
            for column in ws.iter_cols(min_row=1, max_row=_table_rows(ws)):
                letter = column[0].column_letter
                width = ws.column_dimensions[letter].width
                for cell in column:
                    value = _sum(ws, cell.value) if isinstance(cell.value, str) and cell.value.startswith("=SUM(") else cell.value
                    needed = display_width(shown_text(value, cell.number_format))
                    where = f"{path.name} {ws.title}!{cell.coordinate} ({needed} wide in a column {width} wide): {value!r}"
                    if needed + 1 <= width:
                        continue
                    # Too long for one line: the column is as wide as allowed and the cell wraps.
                    assert cell.alignment.wrap_text and width == WIDTH_MAX, where


# --- words: Chinese first, no identifiers, no commands -----------------------------------------

SNAKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")  # self_funding_pledged, midterm.failure_rate's tail
# A text that opens with two English words ("bid payment L1", "one mid-term check ..."): what a
# Chinese-first document never does outside a bilingual header, whose Chinese comes first.
ENGLISH_FIRST = re.compile(r"^[A-Za-z][a-z]+(?: [A-Za-z][a-z-]*)+\b")
CJK = re.compile(r"[\u4e00-\u9fff]")


def workbook_texts(path: Path):
    """(where, text, in the header row) of every text cell of a workbook."""
    for ws in load_workbook(path).worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str) and not cell.value.startswith("=SUM("):
                    yield f"{path.name} {ws.title}!{cell.coordinate}", cell.value, cell.row == 1


@needs("pdftotext")
def test_no_document_holds_a_snake_case_identifier_or_a_command(demo):
    reports, _ = demo
    texts = [(path.name, pdf_text(path)) for path in pdfs(reports)]
    texts += [(where, text) for path in workbooks(reports) for where, text, _ in workbook_texts(path)]
    assert len(texts) > 1000
    for where, text in texts:
        assert not SNAKE.search(text), f"{where}: {SNAKE.search(text).group()} in {text[:200]!r}"
        # The enterprise's status report and the auditor's and bureau's documents never tell
        # the reader to run the ledger's commands.
        assert "jiebang" not in text, f"{where}: {text[:200]!r}"
        assert "`" not in text, f"{where}: {text[:200]!r}"


def test_every_workbook_text_is_chinese_first(demo):
    reports, _ = demo
    checked = 0
    for path in workbooks(reports):
        for where, text, header in workbook_texts(path):
            first_line = text.strip().splitlines()[0] if text.strip() else ""
            assert not ENGLISH_FIRST.match(first_line), f"{where}: {text[:200]!r}"
            if header and CJK.search(text):
                assert CJK.match(text), f"{where}: a bilingual header puts its Chinese first: {text!r}"
            checked += 1
    assert checked > 1000


def test_memos_warnings_and_assumptions_are_written_in_chinese(demo):
    reports, _ = demo
    columns = re.compile(r"摘要|提示|事项")
    found = 0
    for path in workbooks(reports):
        for ws in load_workbook(path).worksheets:
            headers = {cell.column: str(cell.value or "") for cell in ws[1]}
            for row in ws.iter_rows(min_row=2, max_row=_table_rows(ws)):
                for cell in row:
                    wanted = columns.search(headers.get(cell.column, "")) or ("假设" in ws.title and cell.column == 2)
                    if not (wanted and isinstance(cell.value, str) and cell.value.strip()):
                        continue
                    found += 1
                    # Words, not numbers or a file's name, are Chinese.
                    if re.search("[A-Za-z]", cell.value) and not cell.value.endswith(".toml"):
                        assert CJK.search(cell.value), f"{path.name} {ws.title}!{cell.coordinate}: {cell.value!r}"
    assert found > 20
    # The memos the services write are Chinese wherever the audit pack lists them.
    memos = [text for path in workbooks(reports) if path.name.startswith("audit")
             for where, text, header in workbook_texts(path) if not header and text.startswith("揭榜金额支付 L")]
    assert memos, "no bid payment memo in the audit packs"


def test_enterprise_warnings_say_what_is_missing_and_by_when(demo):
    reports, _ = demo
    warnings = [(where, text) for path in workbooks(reports) if path.name.startswith("status")
                for where, text, header in workbook_texts(path) if not header and "提示" in where and where.endswith(tuple("0123456789"))]
    messages = [text for where, text in warnings if "：" in text and "请" in text]
    assert len(messages) >= 2, warnings
    for text in messages:
        # What is missing (an amount or a state) and by when (a date, or the notice's deadline).
        assert re.search(r"\d{4}-\d{2}-\d{2}|期限", text), text


# --- PDF tables: no cell is cut -------------------------------------------------------------------


def _overrun(paragraph, room: float) -> float:
    """How far the widest line of ``paragraph``, wrapped in ``room`` points, runs past it (CJK
    text wraps between characters, so a line overruns only on an unbreakable Latin run)."""
    paragraph.wrap(room, 10_000)
    lines = paragraph.blPara.lines
    return max((-(line.extraSpace if hasattr(line, "extraSpace") else line[0]) for line in lines), default=0.0)


def test_no_pdf_table_cell_is_wider_than_its_column(tmp_path, monkeypatch):
    """Every table the demo's PDFs hold, read as reportlab lays it out: a plain cell fits its
    column, and a wrapping cell has no unbreakable run wider than the column; rows split
    across pages whole (the header repeats)."""
    from click.testing import CliRunner
    from reportlab.pdfbase import pdfmetrics
    from reportlab.platypus import Paragraph

    from cli import main
    from reports import pdf

    built = []
    original = pdf.data_table

    def recording(header, rows, **kwargs):
        table = original(header, rows, **kwargs)
        built.append((table, kwargs["font"]))
        return table

    monkeypatch.setattr(pdf, "data_table", recording)
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--force"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(built) > 30
    cells = 0
    for table, font in built:
        assert table.repeatRows == 1 and table.splitByRow
        for row in table._cellvalues[1:]:
            for width, cell in zip(table._colWidths, row):
                room = width - pdf.CELL_PADDING + 0.01
                if isinstance(cell, Paragraph):
                    assert _overrun(cell, room) <= 0, f"{cell.text!r} runs {_overrun(cell, room):.1f} past {room:.1f}"
                elif isinstance(cell, str):
                    assert pdfmetrics.stringWidth(cell, font.name, pdf.TABLE_SIZE) <= room, f"{cell!r} in {width:.1f}"
                cells += 1
    assert cells > 2000


def test_a_long_plain_cell_wraps_instead_of_running_past_its_column():
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph

    from reports import pdf

    font = pdf.cjk_font()
    name = "江门市某某某某精密装备制造与自动化控制系统集成股份有限公司"
    table = pdf.data_table(["单位\nParty", "金额\nAmount"], [[name, "1,200,000.00"]], widths=[30 * mm, 30 * mm], right={1}, font=font)
    wrapped, amount = table._cellvalues[1]
    assert isinstance(wrapped, Paragraph) and _overrun(wrapped, 30 * mm - pdf.CELL_PADDING) <= 0
    assert amount == "1,200,000.00"  # what fits stays a plain string, whole for pdftotext
