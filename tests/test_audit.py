"""The 专项审计资料包 (audit pack): `jiebang report audit` on a small ledger built through the
services, on both backends.

Two projects: JM2025-003 (Jiangmen, staged grant) with a release, spending in three
categories, an extension, a termination with a named misuse, a collection and a write-off;
UR2025-011 (Urumqi, bid subsidy) with cash, equity and in-kind bid payments, an interim
release and self-funding. The checks read the files as a reader would: pdftotext for the
PDF's words, pdftoppm for its pages, openpyxl for the workbook, and compare them with
`jiebang balances --format json` and with rates recomputed here from the workbook's cells.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import subprocess
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from programme_fixtures import (
    ACTOR,
    JM_APPROVAL,
    JM_FIRM,
    JM_UNIVERSITY,
    UR_APPROVAL,
    D,
    approve,
    bean_check,
    cli_balances,
    cli_refused,
    jiangmen_world,
    jm_approval,
    urumqi_world,
    yuan,
)

from ledger.core.money import format_fen_grouped
from ledger.programme import (
    Misuse,
    bid_pay,
    close,
    collect,
    contribute,
    extend,
    pledge,
    record_stage,
    release,
    remit,
    spend,
    terminate,
    write_off,
)
from reports.audit import BALANCE_ZH, NO_CITY_BUDGET, NO_SELF_BUDGET

NO_BUDGET = (NO_CITY_BUDGET, NO_SELF_BUDGET)  # the words of an amount cell with no budget to show

JM = "JM2025-003"
UR = "UR2025-011"
JM_AS_OF = "2026-12-31"
UR_AS_OF = "2026-06-30"
HEADINGS = ("一、项目基本情况", "二、资金到位情况", "三、预算执行情况", "四、外拨资金", "五、补助计算及拨付记录",
            "六、结余及追回", "七、专账明细", "八、科目余额表", "九、完整性")
AMOUNT = re.compile(r"(?<![\d,.])-?\d{1,3}(?:,\d{3})*\.\d{2}(?![\d%])")

needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed; apt-get install poppler-utils")
needs_pdftoppm = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed; apt-get install poppler-utils")


# --- the ledger ---------------------------------------------------------------------------


def build_jiangmen(session_factory) -> None:
    """JM2025-003: grant 300万 at 60/40; released 180万, spent 105万, extended, terminated
    with 5万 misused (clawback 75万 advances + 5万), 50万 collected, 2万 written off."""
    with session_factory() as s:
        jiangmen_world(s)
        approve(s, JM_APPROVAL)
    steps = [
        lambda s: pledge(s, project=JM, amount_fen=yuan("300万"), category="business", date=D(2025, 9, 25), voucher="CN-JM-1", actor=ACTOR),
        lambda s: pledge(s, project=JM, amount_fen=yuan("200万"), date=D(2025, 9, 25), voucher="CN-JM-2", actor=ACTOR),
        lambda s: record_stage(s, project=JM, stage="contract_signed", passed=True, date=D(2025, 10, 10), voucher="HT-JM2025-003",
                               actor=ACTOR, reference="江科合〔2025〕003号"),
        lambda s: release(s, project=JM, lane=None, date=D(2025, 10, 20), voucher="BK-2025-101", actor=ACTOR),
        lambda s: contribute(s, project=JM, amount_fen=yuan("1,200,000.00"), category="equipment", date=D(2025, 11, 1), voucher="ZC-001", actor=ACTOR),
        lambda s: spend(s, project=JM, lane=None, amount_fen=yuan("600,000.00"), category="equipment", date=D(2025, 12, 1), voucher="PZ-0001",
                        actor=ACTOR, counterparty="某精密仪器公司", justification="五轴运动控制测试台，指标见论证报告"),
        lambda s: contribute(s, project=JM, amount_fen=yuan("800,000.00"), category="business", date=D(2026, 1, 10), voucher="ZC-002", actor=ACTOR),
        lambda s: spend(s, project=JM, lane=None, amount_fen=yuan("300,000.00"), category="business", date=D(2026, 2, 1), voucher="PZ-0002",
                        actor=ACTOR, counterparty="某材料公司"),
        lambda s: contribute(s, project=JM, amount_fen=yuan("500,000.00"), category="labour", date=D(2026, 3, 1), voucher="ZC-003", actor=ACTOR),
        lambda s: spend(s, project=JM, lane=None, amount_fen=yuan("150,000.00"), category="labour", date=D(2026, 4, 1), voucher="PZ-0003",
                        actor=ACTOR, counterparty="项目组劳务"),
        lambda s: extend(s, project=JM, months=12, date=D(2026, 5, 1), reference="江科〔2026〕12号", reason="关键设备受不可抗力影响延迟到货", voucher="EXT-JM-1", actor=ACTOR),
        lambda s: terminate(s, project=JM, date=D(2026, 9, 1), reference="江科〔2026〕88号", voucher="ZZ-JM-1", actor=ACTOR,
                            misused=[Misuse("PZ-0002", yuan("50,000.00"))]),
        lambda s: collect(s, project=JM, lane=None, amount_fen=yuan("500,000.00"), date=D(2026, 10, 15), voucher="JK-2026-31", actor=ACTOR),
        lambda s: write_off(s, project=JM, lane=None, amount_fen=yuan("20,000.00"), date=D(2026, 12, 1), reason="部分款项无法收回",
                            approval="江财〔2026〕7号", voucher="HX-JM-1", actor=ACTOR),
    ]
    for step in steps:
        with session_factory() as s:
            step(s)


def build_urumqi(session_factory) -> None:
    """UR2025-011: contract 300万 (ceiling 120万); cash 100万 + 80万0.01 + 30万, equity 50万,
    in kind 20万; the interim tranche releases what is payable then."""
    with session_factory() as s:
        urumqi_world(s)
        approve(s, UR_APPROVAL)
    steps = [
        lambda s: pledge(s, project=UR, amount_fen=yuan("200万"), date=D(2025, 6, 25), voucher="CN-UR-1", actor=ACTOR),
        lambda s: contribute(s, project=UR, amount_fen=yuan("1,000,000.00"), category="equipment", date=D(2025, 8, 15), voucher="ZC-UR-1", actor=ACTOR),
        lambda s: record_stage(s, project=UR, stage="contract_signed", passed=True, date=D(2025, 7, 5), voucher="HT-UR2025-011", actor=ACTOR,
                               reference="乌科合〔2025〕011号"),
        lambda s: bid_pay(s, project=UR, lane=None, amount_fen=yuan("1,000,000.00"), form="cash", date=D(2025, 7, 10), voucher="FK-UR-1", actor=ACTOR),
        lambda s: bid_pay(s, project=UR, lane=None, amount_fen=yuan("500,000.00"), form="equity", date=D(2025, 8, 1), voucher="GQ-UR-1", actor=ACTOR),
        lambda s: bid_pay(s, project=UR, lane=None, amount_fen=yuan("200,000.00"), form="in_kind", date=D(2025, 9, 1), voucher="SW-UR-1", actor=ACTOR),
        lambda s: bid_pay(s, project=UR, lane=None, amount_fen=yuan("800,000.01"), form="cash", date=D(2025, 10, 1), voucher="FK-UR-2", actor=ACTOR),
        lambda s: release(s, project=UR, lane=None, date=D(2025, 11, 1), voucher="BK-UR-1", actor=ACTOR),
        lambda s: bid_pay(s, project=UR, lane=None, amount_fen=yuan("300,000.00"), form="cash", date=D(2026, 1, 15), voucher="FK-UR-3", actor=ACTOR),
        # After the 2026-06-30 cut-off most tests use: acceptance, audit report, final release, closure.
        lambda s: record_stage(s, project=UR, stage="acceptance", passed=True, date=D(2027, 5, 10), voucher="YS-UR-1", actor=ACTOR,
                               reference="乌科验〔2027〕11号"),
        lambda s: record_stage(s, project=UR, stage="audit_report", passed=True, date=D(2027, 5, 20), voucher="SJ-UR-1", actor=ACTOR,
                               reference="新天审字〔2027〕第0520号"),
        lambda s: release(s, project=UR, lane=None, date=D(2027, 5, 25), voucher="BK-UR-2", actor=ACTOR),
        lambda s: close(s, project=UR, date=D(2027, 6, 1), reference="乌科结〔2027〕3号", voucher="JT-UR-1", actor=ACTOR),
    ]
    for step in steps:
        with session_factory() as s:
            step(s)


def build_ledger(session_factory) -> None:
    build_jiangmen(session_factory)
    build_urumqi(session_factory)


@pytest.fixture
def ledger(session_factory) -> None:
    build_ledger(session_factory)


# --- reading the files ----------------------------------------------------------------------


def audit(cli, out: Path, code: str, as_of: str | None = None) -> dict[str, Path]:
    """Run `jiebang report audit` and return the files it says it wrote."""
    args = ["report", "audit", "--project", code, "--out", str(out)]
    if as_of:
        args += ["--as-of", as_of]
    result = cli(*args)
    written = [Path(line.removeprefix("wrote ").rstrip("/")) for line in result.stdout.splitlines()]
    stem = written[0].name.removesuffix(".pdf")
    date = re.escape(as_of) if as_of else r"\d{4}-\d{2}-\d{2}"
    assert re.fullmatch(f"audit-{code}-{date}", stem), stem
    assert [p.name for p in written] == [f"{stem}.pdf", f"{stem}.xlsx", stem.replace("audit-", "beancount-", 1)]
    for path in written:
        assert path.exists(), path
    return {"pdf": written[0], "xlsx": written[1], "beancount": written[2]}


def pdf_text(path: Path, *, layout: bool = True) -> str:
    args = ["pdftotext", "-enc", "UTF-8", *(["-layout"] if layout else []), str(path), "-"]
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout


def grouped(text: str) -> str:
    """A balances-JSON amount ("1800000.00") as the PDF prints it ("1,800,000.00")."""
    return format_fen_grouped(yuan(text, allow_negative=True))


def fen(value) -> int:
    """A workbook number (yuan) as whole fen."""
    return int((Decimal(str(value)) * 100).to_integral_value(rounding=ROUND_HALF_UP))


def percent(numerator: int, denominator: int) -> Decimal:
    """numerator / denominator in percent, two decimals, half up: computed here, not borrowed."""
    return (Decimal(numerator) * 100 / Decimal(denominator)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def sheet_rows(ws) -> list[dict]:
    """The table on a sheet as dicts keyed by the Chinese header word, SUM formulas resolved."""
    headers = [cell.value for cell in ws[1]]
    rows = []
    for row in ws.iter_rows(min_row=2):
        if all(cell.value is None for cell in row):
            break
        rows.append({h.split(" ")[0]: resolve(ws, cell.value) for h, cell in zip(headers, row)})
    return rows


def resolve(ws, value):
    """A cell value, with "=SUM(C2:C5,C7)" computed from the cells it names."""
    if not (isinstance(value, str) and value.startswith("=SUM(")):
        return value
    total = Decimal(0)
    for part in value[5:-1].split(","):
        cells = ws[part] if ":" in part else ((ws[part],),)
        for line in cells:
            for cell in line:
                total += Decimal(str(cell.value))
    return total


def xlsx_amounts(path: Path) -> set[str]:
    """Every amount in the workbook (number cells in #,##0.00 format) as the PDF prints it."""
    wb = load_workbook(path)
    found = set()
    for ws in wb.worksheets:
        headers = [cell.value or "" for cell in ws[1]]
        for row in ws.iter_rows(min_row=2):
            for header, cell in zip(headers, row):
                if cell.number_format == "#,##0.00" and cell.value is not None and cell.value not in NO_BUDGET:
                    found.add(format_fen_grouped(fen(resolve(ws, cell.value))))
    return found


# --- the PDF --------------------------------------------------------------------------------


@needs_pdftotext
def test_pdf_has_the_nine_headings_the_key_amounts_and_the_code_on_every_page(ledger, cli, tmp_path):
    files = audit(cli, tmp_path / "out", JM, JM_AS_OF)
    text = pdf_text(files["pdf"])
    for heading in HEADINGS:
        assert heading in text, heading
    balances = cli_balances(cli, JM, as_of=JM_AS_OF)
    for key in ("grant_released", "fiscal_spent", "clawback_assessed", "clawback_collected", "clawback_outstanding",
                "self_funding_pledged", "self_funding_contributed"):
        assert grouped(balances[key]) in text, key
    # Hand-computed: released 180万 (60% of 300万); spent 60万 + 30万 + 15万 less 5万 misused;
    # clawback 75万 advances + 5万 misused; 50万 collected, 2万 written off.
    assert (balances["grant_released"], balances["fiscal_spent"], balances["clawback_assessed"], balances["clawback_outstanding"]) == (
        "1800000.00", "1000000.00", "800000.00", "280000.00")
    for words in ("五邑某大学", "12440700MB2C000120", "91440700MA51A00018", "jiangmen-2023-trial", "江科〔2026〕12号", "江科〔2026〕88号",
                  "PZ-0002", "JK-2026-31", "HX-JM-1", "BK-2025-101"):
        assert words in text, words
    assert "FK-UR-1" not in text, "another project's voucher leaked into the pack"
    pages = [page for page in text.split("\f") if page.strip()]
    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        assert JM in page, f"page {number} lacks the project code"
        assert re.search(rf"第\s*{number}\s*页\s*共\s*{len(pages)}\s*页", page), f"page {number} lacks its number"
    # The voucher-level detail runs over pages; each page it is on repeats its header row.
    detail_pages = [page for page in pages if re.search(r"^\d{4}-\d{2}-\d{2}\s+\S+\s+\S+\s+\S+.*\s(财务|备查)\s", page, re.MULTILINE)]
    assert len(detail_pages) >= 2
    assert all("Counterparty" in page for page in detail_pages)
    info = subprocess.run(["pdfinfo", str(files["pdf"])], capture_output=True, text=True, check=True).stdout if shutil.which("pdfinfo") else ""
    if info:
        assert "CreationDate:" in info and "2026" in info
        assert "Noto Sans CJK SC" in info and "已嵌入子集" in info  # the font note, in the keywords


@needs_pdftotext
def test_urumqi_pack_lists_the_subsidy_base_exclusions_one_by_one_and_the_tranches(ledger, cli, tmp_path):
    files = audit(cli, tmp_path / "out", UR, UR_AS_OF)
    text = pdf_text(files["pdf"])
    balances = cli_balances(cli, UR, as_of=UR_AS_OF)
    # 40% of the cumulative cash base 2,100,000.01 is 840,000.004 -> 840,000.00; the interim
    # tranche paid what was payable then: 40% of 1,800,000.01 = 720,000.00.
    assert (balances["subsidy_base"], balances["subsidy_earned"], balances["subsidy_released"], balances["subsidy_payable"]) == (
        "2100000.01", "840000.00", "720000.00", "120000.00")
    for key in ("subsidy_base", "subsidy_earned", "subsidy_released", "subsidy_payable", "bid_paid_cash", "bid_paid_equity",
                "bid_paid_in_kind", "bid_contracted", "grant_obligated"):
        assert grouped(balances[key]) in text, key
    lines = text.splitlines()
    equity = [line for line in lines if "GQ-UR-1" in line and "500,000.00" in line]
    in_kind = [line for line in lines if "SW-UR-1" in line and "200,000.00" in line]
    assert any("不予补助" in line for line in equity), "the equity payment is not listed as an exclusion"
    assert any("不计入补助基数" in line for line in in_kind), "the in-kind payment is not listed as an exclusion"
    assert any("12650100MB1D000220" in line and "FK-UR-2" in line and "800,000.01" in line for line in lines)
    assert any("BK-UR-1" in line and "720,000.00" in line and "已拨付" in line for line in lines)
    assert any("结题拨付" in line and "待条件" in line for line in lines)
    assert "40.00%" in text


@needs_pdftoppm
def test_first_page_rasterises_with_visible_text(ledger, cli, tmp_path):
    from PIL import Image

    files = audit(cli, tmp_path / "out", JM, JM_AS_OF)
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(files["pdf"]), str(tmp_path / "page")], check=True, timeout=60)
    (png,) = tmp_path.glob("page*.png")
    assert png.stat().st_size > 5_000
    with Image.open(png) as image:
        grey = image.convert("L")
        dark = sum(count for value, count in enumerate(grey.histogram()) if value < 128)
    assert dark > 2_000, "page 1 is (nearly) blank"


# --- the workbook -----------------------------------------------------------------------------


@pytest.mark.parametrize("code, as_of", [(JM, JM_AS_OF), (UR, UR_AS_OF)])
def test_xlsx_summary_equals_balances_json_and_numbers_are_numbers(ledger, cli, tmp_path, code, as_of):
    files = audit(cli, tmp_path / "out", code, as_of)
    balances = cli_balances(cli, code, as_of=as_of)
    wb = load_workbook(files["xlsx"])
    # The balances by their Chinese names, one row per balance of `balances --project`, in its order.
    summary = {row["余额项目"]: row["金额"] for row in sheet_rows(wb["8 余额汇总"])}
    assert list(summary) == [BALANCE_ZH[key] for key in balances]
    assert {key: format_fen_grouped(fen(value)) for key, value in summary.items()} == {BALANCE_ZH[key]: grouped(v) for key, v in balances.items()}
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2", ws.title
        for row in ws.iter_rows(min_row=2):
            for cell in row:
                if cell.number_format in ("#,##0.00", "0.00") and cell.value is not None:
                    assert isinstance(cell.value, (int, float)) or str(cell.value).startswith("=SUM(") or cell.value in NO_BUDGET, (
                        ws.title, cell.coordinate, cell.value)
    detail = sheet_rows(wb["7 专账明细"])
    assert all(isinstance(row["日期"], dt.datetime) for row in detail[:-1])
    assert wb.properties.created == wb.properties.modified == dt.datetime.fromisoformat(as_of)


@needs_pdftotext
@pytest.mark.parametrize("code, as_of", [(JM, JM_AS_OF), (UR, UR_AS_OF)])
def test_every_amount_in_the_pdf_is_in_the_xlsx_and_back(ledger, cli, tmp_path, code, as_of):
    files = audit(cli, tmp_path / "out", code, as_of)
    in_pdf = set(AMOUNT.findall(pdf_text(files["pdf"], layout=False)))
    assert in_pdf == xlsx_amounts(files["xlsx"])


@needs_pdftotext
@pytest.mark.parametrize("code, as_of", [(JM, JM_AS_OF), (UR, UR_AS_OF)])
def test_arrival_and_execution_rates_and_balances_recomputed_from_the_xlsx_match_the_pdf(ledger, cli, tmp_path, code, as_of):
    files = audit(cli, tmp_path / "out", code, as_of)
    lines = pdf_text(files["pdf"]).splitlines()
    wb = load_workbook(files["xlsx"])

    def printed(*words: str) -> bool:
        return any(all(w in line for w in words) for line in lines)

    arrival = sheet_rows(wb["2 资金到位"])
    assert arrival, "no fund-arrival rows"
    for row in arrival:
        due, arrived = fen(row["应到位"]), fen(row["实际到位"])
        words = [row["资金来源"], format_fen_grouped(due), format_fen_grouped(arrived)]
        if due:
            rate = percent(arrived, due)
            assert Decimal(str(row["到位率%"])) == rate, row
            words.append(f"{rate}%")
        assert printed(*words), words

    checked = 0
    for row in sheet_rows(wb["3 预算执行"]):
        adjusted = None if row["调整后预算"] is None else fen(row["调整后预算"])
        spent = None if row["实际支出"] is None else fen(row["实际支出"])
        arrived = None if row["到位"] is None else fen(row["到位"])
        words = [row["资金来源"], *([row["预算科目"]] if row["预算科目"] else [])]
        if spent is not None:
            words.append(format_fen_grouped(spent))
        if adjusted and spent is not None:
            rate = percent(spent, adjusted)
            assert Decimal(str(row["执行率%"])) == rate, row
            words.append(f"{rate}%")
            checked += 1
        if arrived is not None and spent is not None:
            balance = arrived - spent
            assert fen(row["结余"]) == balance, row
            words.append(format_fen_grouped(balance))
        assert printed(*words), words
    # Without an approved budget by category the rates are the subtotals' (the city's has none under a post-subsidy).
    assert checked >= (2 if code == JM else 1)

    balances = cli_balances(cli, code, as_of=as_of)
    if code == JM:
        # 结余 of the city's money = released − eligible spent = the clawback assessed at termination.
        fiscal = next(r for r in sheet_rows(wb["3 预算执行"]) if r["资金来源"] == "市财政 小计")
        assert fen(fiscal["结余"]) == yuan(balances["clawback_assessed"]) == yuan("800,000.00")
        assert fen(fiscal["实际支出"]) == yuan(balances["fiscal_spent"])
        closure = sheet_rows(wb["6 结余追回"])[0]
        assert fen(closure["未追回"]) == fen(closure["追回核定"]) - fen(closure["已收回(含抵扣)"]) - fen(closure["核销"]) + fen(closure["冲销净额"])


# --- determinism and scope --------------------------------------------------------------------


def tree_bytes(files: dict[str, Path]) -> dict[str, str]:
    digests = {"pdf": hashlib.sha256(files["pdf"].read_bytes()).hexdigest(), "xlsx": hashlib.sha256(files["xlsx"].read_bytes()).hexdigest()}
    for path in sorted(files["beancount"].iterdir()):
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def test_two_runs_give_byte_identical_files(ledger, cli, tmp_path):
    first = audit(cli, tmp_path / "one", UR, UR_AS_OF)
    assert sorted(p.name for p in first["beancount"].iterdir()) == [f"fiscal-{UR}.beancount", f"memo-{UR}.beancount"]
    for path in sorted(first["beancount"].iterdir()):
        bean_check(path)
    second = audit(cli, tmp_path / "two", UR, UR_AS_OF)
    assert tree_bytes(first) == tree_bytes(second)
    again = audit(cli, tmp_path / "one", UR, UR_AS_OF)  # overwriting in place gives the same bytes too
    assert tree_bytes(again) == tree_bytes(second)


def test_entries_dated_after_the_as_of_date_leave_the_report_unchanged(ledger, cli, session_factory, tmp_path):
    from sqlalchemy import select

    from ledger.core.models import JournalEntry
    from ledger.programme import reverse_event

    before = {code: tree_bytes(audit(cli, tmp_path / "before", code, as_of)) for code, as_of in ((JM, JM_AS_OF), (UR, UR_AS_OF))}
    # Every later entry is dated after both cut-offs: the packs' integrity block counts the
    # whole ledger's entries up to the cut-off, so an entry of another project dated before
    # the cut-off does (rightly) change it.
    with session_factory() as s:
        # A reversal dated after the cut-off of an event dated before it: not yet undone as of the cut-off.
        contributed = s.execute(select(JournalEntry.id).where(JournalEntry.voucher == "ZC-UR-1")).scalar_one()
        reverse_event(s, contributed, reason="凭证不符", actor=ACTOR, value_date=D(2027, 1, 7))
    with session_factory() as s:
        # The collection opens the 2027 recoveries account, which opens a year early (2026-01-01).
        collect(s, project=JM, lane=None, amount_fen=yuan("100,000.00"), date=D(2027, 1, 10), voucher="JK-2027-01", actor=ACTOR)
    with session_factory() as s:
        remit(s, amount_fen=yuan("100,000.00"), date=D(2027, 1, 12), voucher="JJ-2027-01", actor=ACTOR)
    after = {code: tree_bytes(audit(cli, tmp_path / "after", code, as_of)) for code, as_of in ((JM, JM_AS_OF), (UR, UR_AS_OF))}
    assert after == before
    later = tree_bytes(audit(cli, tmp_path / "later", UR, "2027-01-31"))
    assert later["pdf"] != before[UR]["pdf"], "a later as-of date should see the later entries"


def test_default_as_of_is_the_audit_cut_off(ledger, cli, tmp_path):
    # JM2025-003 ends 2028-09-30, extended 12 months to 2029-09-30, terminated 2026-09-01.
    assert audit(cli, tmp_path / "out", JM)["pdf"].name == "audit-JM2025-003-2026-09-01.pdf"
    # UR2025-011 runs to 2027-06-30 with no extension or termination (closed 2027-06-01).
    files = audit(cli, tmp_path / "out", UR)
    assert files["pdf"].name == "audit-UR2025-011-2027-06-30.pdf"
    wb = load_workbook(files["xlsx"])
    profile = {row["项目"]: row["内容"] for row in sheet_rows(wb["1 基本情况"])}
    assert profile["截止日状态 Status"] == "已结题（2027-06-01）"
    changes = [(row["事项"], row["文号"]) for row in sheet_rows(wb["1 进程及变更"])]
    assert ("验收", "乌科验〔2027〕11号") in changes and ("结题", "乌科结〔2027〕3号") in changes
    tranches = sheet_rows(wb["5 拨付记录"])
    assert [(r["状态"], fen(r["拨付金额(全额)"])) for r in tranches[:-1]] == [("已拨付", yuan("720,000.00")), ("已拨付", yuan("120,000.00"))]
    balances = cli_balances(cli, UR, as_of="2027-06-30")
    # Closure deobligates the 36万 of the 120万 ceiling never earned.
    assert (balances["grant_obligated"], balances["grant_released"], balances["subsidy_payable"]) == ("840000.00", "840000.00", "0.00")
    # Naming the cut-off explicitly gives the same bytes as the default.
    assert tree_bytes(audit(cli, tmp_path / "named", UR, "2027-06-30")) == tree_bytes(audit(cli, tmp_path / "out", UR))


# --- 赛马: lanes, elimination with misuse, and another project's release paid in full ---------


def build_saima(session_factory) -> None:
    """JM2025-201 (赛马, 200万 split 100万 per lane): 60万 released to each lane; L2 spends
    20万 and fails the stage assessment with 5万 of it named misuse (clawback of its 40万
    advance + 5万, 40万 deobligated); L1 passes and gets its 40万; 30万 collected from L2.
    Then JM2025-202, whose solver is L2's, gets its first tranche in full from the treasury:
    the 15万 L2 still owes is collected, never netted."""
    with session_factory() as s:
        jiangmen_world(s)
        approve(s, jm_approval(code="JM2025-201", mode="saima", solver_usccs=(JM_UNIVERSITY, JM_FIRM), approved_grant_fen=yuan("200万")))
        approve(s, jm_approval(code="JM2025-202", solver_usccs=(JM_FIRM,), approved_grant_fen=yuan("100万"), approval_date=D(2025, 9, 21)))
    p = "JM2025-201"
    steps = [
        lambda s: record_stage(s, project=p, stage="contract_signed", passed=True, date=D(2025, 10, 10), voucher="HT-201", actor=ACTOR),
        lambda s: release(s, project=p, lane="L1", date=D(2025, 10, 20), voucher="BK-201-1", actor=ACTOR),
        lambda s: release(s, project=p, lane="L2", date=D(2025, 10, 20), voucher="BK-201-2", actor=ACTOR),
        lambda s: spend(s, project=p, lane="L2", amount_fen=yuan("200,000.00"), category="business", date=D(2026, 1, 5), voucher="PZ-201-1", actor=ACTOR),
        lambda s: record_stage(s, project=p, stage="stage_assessment", passed=True, lane="L1", date=D(2026, 6, 1), voucher="KH-201-L1",
                               actor=ACTOR, reference="江科考〔2026〕1号"),
        lambda s: record_stage(s, project=p, stage="stage_assessment", passed=False, lane="L2", date=D(2026, 6, 1), voucher="KH-201-L2",
                               actor=ACTOR, reference="江科考〔2026〕2号", misused=[Misuse("PZ-201-1", yuan("50,000.00"))]),
        lambda s: release(s, project=p, lane="L1", date=D(2026, 6, 20), voucher="BK-201-3", actor=ACTOR),
        lambda s: collect(s, project=p, lane="L2", amount_fen=yuan("300,000.00"), date=D(2026, 7, 1), voucher="JK-201-1", actor=ACTOR),
        lambda s: record_stage(s, project="JM2025-202", stage="contract_signed", passed=True, date=D(2026, 7, 10), voucher="HT-202", actor=ACTOR),
        lambda s: release(s, project="JM2025-202", lane=None, date=D(2026, 7, 20), voucher="BK-202-1", actor=ACTOR),
    ]
    for step in steps:
        with session_factory() as s:
            step(s)


@needs_pdftotext
def test_saima_pack_shows_lanes_the_elimination_its_misuse_and_no_netting(session_factory, cli, tmp_path):
    build_saima(session_factory)
    files = audit(cli, tmp_path / "out", "JM2025-201", "2026-12-31")
    text = pdf_text(files["pdf"])
    wb = load_workbook(files["xlsx"])
    balances = cli_balances(cli, "JM2025-201", as_of="2026-12-31")
    summary = {row["余额项目"]: format_fen_grouped(fen(row["金额"])) for row in sheet_rows(wb["8 余额汇总"])}
    assert summary == {BALANCE_ZH[key]: grouped(v) for key, v in balances.items()}
    closure = {row["车道"]: row for row in sheet_rows(wb["6 结余追回"])}
    # L2: released 60万, spent 20万 of which 5万 misused, clawback 45万; 30万 collected, 15万 owed.
    l2 = closure["L2"]
    assert [fen(l2[k]) for k in ("财政到位", "合规支出", "结余", "追回核定", "已收回(含抵扣)", "其中抵扣", "未追回")] == [
        yuan(v) for v in ("600,000.00", "150,000.00", "450,000.00", "450,000.00", "300,000.00", "0.00", "150,000.00")]
    [misuse] = sheet_rows(wb["6 违规使用"])[:-1]
    assert (misuse["车道"], misuse["支出凭证"], fen(misuse["违规使用金额"]), misuse["认定文号"]) == (
        "L2", "PZ-201-1", yuan("50,000.00"), "江科考〔2026〕2号")
    assert fen(closure["合计"]["财政到位"]) == yuan(balances["grant_released"]) == yuan("1,600,000.00")
    lines = text.splitlines()
    assert any("赛马阶段考核" in line and "未通过（淘汰）" in line and "L2" in line for line in lines)
    assert not any("抵扣" in line and "BK-202-1" in line for line in lines)
    tranches = sheet_rows(wb["5 拨付记录"])
    assert [(r["车道"], r["状态"]) for r in tranches[:-1]] == [("L1", "已拨付"), ("L1", "已拨付"), ("L2", "已拨付"), ("L2", "已取消")]
    arrival = {(r["资金来源"], r["车道"]): r for r in sheet_rows(wb["2 资金到位"])}
    assert fen(arrival[("市财政资助", "L2")]["应到位"]) == yuan("600,000.00")  # the cancelled 40% is not due
    other = audit(cli, tmp_path / "out", "JM2025-202", "2026-12-31")
    released = sheet_rows(load_workbook(other["xlsx"])["5 拨付记录"])[0]
    # Paid in full from the treasury: shown gross, nothing netted.
    assert (fen(released["拨付金额(全额)"]), fen(released["国库支付"]), fen(released["追回款抵扣"])) == (
        yuan("600,000.00"), yuan("600,000.00"), 0)
    for extract in (files["beancount"], other["beancount"]):
        for path in sorted(extract.glob("*.beancount")):
            bean_check(path)


# --- refusals ---------------------------------------------------------------------------------


def test_bad_input_is_refused_in_one_line_and_nothing_is_written(ledger, cli, engine, tmp_path):
    tmp_path = tmp_path / "area"  # the ledger's SQLite file lives in the test's own tmp_path
    tmp_path.mkdir()
    out = tmp_path / "never"
    line = cli_refused(cli, engine, "report", "audit", "--project", "JM2099-999", "--out", str(out), says="jiebang projects")
    assert "JM2099-999" in line
    cli_refused(cli, engine, "report", "audit", "--project", JM, "--as-of", "2025-09-19", "--out", str(out),
                says=("before project JM2025-003's approval", "2025-09-20"))
    assert not out.exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cli_refused(cli, engine, "report", "audit", "--project", JM, "--out", str(blocker / "pack"), says="cannot create")
    cli_refused(cli, engine, "report", "audit", "--project", JM, "--out", str(blocker), says="cannot create")
    assert blocker.read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    # The approval date itself is a valid cut-off.
    assert audit(cli, tmp_path / "ok", JM, "2025-09-20")["pdf"].exists()


# --- the font -------------------------------------------------------------------------------


def pdf_fonts(path: Path) -> list[tuple[str, str]]:
    """(name, emb) for every font pdffonts lists in ``path``."""
    out = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    return [(line.split()[0], line.split()[-5]) for line in out.splitlines()[2:] if line.strip()]


needs_pdffonts = pytest.mark.skipif(shutil.which("pdffonts") is None or shutil.which("pdfinfo") is None,
                                    reason="pdffonts/pdfinfo (poppler-utils) are not installed")


@needs_pdffonts
def test_without_a_named_font_the_pack_embeds_the_packaged_noto_sans_cjk(ledger, cli, tmp_path, monkeypatch):
    monkeypatch.delenv("JIEBANG_FONT", raising=False)
    monkeypatch.delenv("JIEBANG_PDF_FONT", raising=False)
    result_files = audit(cli, tmp_path / "out", JM, JM_AS_OF)
    fonts = pdf_fonts(result_files["pdf"])
    assert fonts and all(name.endswith("+NotoSansCJKsc-Regular") and emb == "yes" for name, emb in fonts), fonts
    info = subprocess.run(["pdfinfo", str(result_files["pdf"])], capture_output=True, text=True, check=True).stdout
    assert "Noto Sans CJK SC" in info and "已嵌入" in info and "/" not in info.split("Keywords:")[1].splitlines()[0], info


@needs_pdffonts
def test_a_named_font_that_cannot_be_used_is_said_in_one_line_and_the_packaged_font_is_used(ledger, cli, tmp_path, monkeypatch):
    missing = tmp_path / "no-such-font.ttf"
    monkeypatch.setenv("JIEBANG_FONT", str(missing))
    result = cli("report", "audit", "--project", UR, "--as-of", UR_AS_OF, "--out", str(tmp_path / "out"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"jiebang: the font {missing} cannot be used (no such file); the PDF uses the packaged Noto Sans CJK SC instead"]
    pdf = next((tmp_path / "out").glob("*.pdf"))
    assert all(emb == "yes" for _, emb in pdf_fonts(pdf))
    # An OpenType/CFF font (reportlab cannot embed one) is refused the same way.
    cff = tmp_path / "cff.otf"
    cff.write_bytes(b"OTTO" + bytes(64))
    monkeypatch.setenv("JIEBANG_FONT", str(cff))
    result = cli("report", "audit", "--project", UR, "--as-of", UR_AS_OF, "--out", str(tmp_path / "out2"))
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"jiebang: the font {cff} cannot be used (not a TrueType font") and line.endswith("instead")


DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@needs_pdffonts
@pytest.mark.skipif(not DEJAVU.exists(), reason="fonts-dejavu-core is not installed (it stands for a font a user names)")
def test_a_font_the_user_names_wins(ledger, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("JIEBANG_FONT", str(DEJAVU))
    monkeypatch.setenv("JIEBANG_PDF_FONT", str(tmp_path / "the-older-name-loses.ttf"))
    result = cli("report", "audit", "--project", JM, "--as-of", JM_AS_OF, "--out", str(tmp_path / "out"))
    assert result.stderr.strip() == ""
    fonts = pdf_fonts(next((tmp_path / "out").glob("*.pdf")))
    assert fonts and all(name.endswith("+DejaVuSans") and emb == "yes" for name, emb in fonts), fonts


@needs_pdffonts
def test_without_the_packaged_font_a_broken_install_falls_back_to_stsong_and_says_so(ledger, cli, tmp_path, monkeypatch):
    from reports import pdf

    monkeypatch.delenv("JIEBANG_FONT", raising=False)
    monkeypatch.delenv("JIEBANG_PDF_FONT", raising=False)
    monkeypatch.setattr(pdf, "PACKAGED_FONT", tmp_path / "removed.ttf")
    result = cli("report", "audit", "--project", UR, "--as-of", UR_AS_OF, "--out", str(tmp_path / "out"))
    assert "broken install" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    path = next((tmp_path / "out").glob("*.pdf"))
    assert ("STSong-Light", "no") in pdf_fonts(path)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    assert "STSong-Light" in info and "未嵌入" in info, info


def test_one_pack_takes_seconds_not_minutes(ledger, cli, tmp_path):
    started = time.perf_counter()
    audit(cli, tmp_path / "out", JM, JM_AS_OF)
    assert time.perf_counter() - started < 30
