"""Bulk import of business events from an Excel workbook (one sheet per event kind) or a CSV
file of one kind, through the same services as the verbs, all or nothing.

Reading and running are separate steps. ``read_file`` checks the shape of every row (known
sheets and columns, amounts, dates, required cells, no formulas) and collects every problem
instead of stopping at the first. ``run_rows`` then sends the well-formed rows to the
services in date order (within a date: sheet order, then row order), ``RUN_ROWS`` of them in
one SAVEPOINT; when a row is refused the run is rolled back and its rows up to that one run
again each in its own SAVEPOINT, so that the refused row is rolled back alone and the next
one still runs: that is how every refusal in a file is found in one pass. The services read
each project's state (and the parties, budgets and settings the checks read) from a cache
the run keeps (``ledger.programme.cache``): loaded once, advanced by every entry posted
through the one fold, forgotten for what a rolled-back row loaded or touched; the rows of
entries, postings and project events are buffered and written in batches
(``journal.buffering``). ``run_rows`` never commits: the caller writes everything only when
no problem was found at all, and rolls everything back otherwise.

Conventions for the files (docs/import.md has the officer's version):

* The template writes Chinese titles in row 1 and the column keys (English) in row 2; data
  starts in row 3. A file with the keys in row 1 (older templates, CSV) is read too: row 1
  is the key row when it names any key of the sheet, otherwise row 2 is.
* Code columns (``Column.code``: USCCs, project codes, lanes, vouchers, references) are
  text-formatted in the template; a number Excel made of a code is refused, saying so.
* A row whose first cell begins with ``#`` is a comment and is skipped. The template's
  example row on each sheet begins with ``#example``, so importing the untouched template
  writes nothing.
* Every row has a ``date``; every row but a party's has a ``voucher``, which is required
  here because it is what makes a second import of the same file write nothing. A party's
  key is its ``uscc``.
* A row whose voucher is already in the ledger is "already present" when its project, date
  and amount agree with the entry recorded under that voucher, and a problem otherwise. The
  vouchers of the whole file are looked up here in one query per 500, before any service
  runs, so a re-import costs no per-row round trip and a conflict is reported with the
  recorded entry's project and date. (The services are idempotent on their own as well:
  they compare the request recorded with the first entry.)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ledger import programme
from ledger.core import journal, limits
from ledger.core.errors import Refusal
from ledger.core.journal import Posted
from ledger.core.models import JournalEntry, Posting
from ledger.core.money import format_fen_grouped, parse_fen, parse_rate
from ledger.programme import cache as state_cache
from ledger.programme.stages import parse_audited_cash

ROWS_MAX = 1_000_000  # a year of a large city's events is far below this; a limit on everything.
CELL_CHARS_MAX = 32_767  # Excel's own limit on a cell; a longer cell is refused without being echoed.
REASON_CHARS_MAX = 400  # a problem quoting a long cell is shortened in the middle
# A workbook is checked as a zip archive before openpyxl parses it, so a small file that
# expands into gigabytes (a huge shared string, millions of cells) is refused within seconds
# and a bounded amount of memory: openpyxl holds every shared string in memory even in
# read-only mode, and materialises every cell of a row.
XLSX_BYTES_MAX = 50 * 1024 * 1024  # the file itself
XLSX_UNCOMPRESSED_BYTES_MAX = 200 * 1024 * 1024  # every member, expanded
SHARED_STRINGS_BYTES_MAX = 32 * 1024 * 1024  # xl/sharedStrings.xml, expanded
CELLS_MAX = 2_000_000  # cells in all sheets: 200,000 rows of ten columns
_CELL_TAGS = (b"<c ", b"<c>", b"<c/")
COMMENT_PREFIX = "#"
EXAMPLE_PREFIX = "#example "
LIST_SEPARATORS = (";", "；")
QUERY_CHUNK = 500
# Rows run together in one SAVEPOINT: a SAVEPOINT and RELEASE per row cost more than the row's
# own statements. When one is refused the run is rolled back and its rows up to that one run
# again one by one; so a file of bad rows costs at most twice its rows.
RUN_ROWS = 200

# Aliases an officer may type for the choice columns; the value is the service's word.
MODE_ALIASES = {"jbgs": "jbgs", "揭榜挂帅": "jbgs", "saima": "saima", "赛马": "saima"}
CATEGORY_ALIASES = {
    "tech_breakthrough": "tech_breakthrough", "技术攻关": "tech_breakthrough",
    "commercialization": "commercialization", "成果转化": "commercialization",
}
PARTY_KIND_ALIASES = {
    "enterprise": "enterprise", "企业": "enterprise", "university": "university", "高校": "university",
    "institute": "institute", "科研院所": "institute", "other": "other", "其他": "other",
}
FORM_ALIASES = {
    "cash": "cash", "现金": "cash", "equity": "equity", "股权": "equity", "技术入股": "equity",
    "in_kind": "in_kind", "实物": "in_kind",
}
STAGE_ALIASES = {
    "contract_signed": "contract_signed", "合同签订": "contract_signed", "midterm": "midterm", "中期检查": "midterm",
    "stage_assessment": "stage_assessment", "阶段考核": "stage_assessment", "acceptance": "acceptance",
    "验收": "acceptance", "audit_report": "audit_report", "专项审计报告": "audit_report",
}
BOOLEAN_WORDS = {
    "yes": True, "y": True, "true": True, "1": True, "是": True, "passed": True, "pass": True, "通过": True,
    "no": False, "n": False, "false": False, "0": False, "否": False, "failed": False, "fail": False,
    "不通过": False, "未通过": False,
}
BOOLEAN_DROPDOWN = ("是", "否", "yes", "no")
BUDGET_CATEGORY_WORDS = ("设备费", "业务费", "劳务费", "间接费用", "equipment", "business", "labour", "indirect")
CITY_WORDS = ("jiangmen", "urumqi")
# Excel turns a long digit-only code into a number of 15 significant digits and shows it in
# scientific notation; CSV saved by Excel then holds that text (1.24407E+17).
SCIENTIFIC = re.compile(r"^\d(\.\d+)?E\+\d{2}$", re.IGNORECASE)
EXCEL_DIGITS = 15
# Sheets an officer might expect, with where their content goes instead.
SHEET_HINTS = {"lanes": "lanes are given on the projects sheet (solver_usccs, and bids per lane)"}


# --- the shape of the files -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a sheet.

    Attributes:
      name: the header key, as the template writes it.
      kind: how a cell is read: text, amount, amounts, date, int, bool, rate, list, misuse, lane_amounts,
        or choice (with ``choices`` mapping what may be typed to the service's word).
      required: an empty cell is a problem.
      zh / en: what the column means, for the header comment.
      example: the value on the template's example row.
      default: the value of an empty optional cell.
      code: "uscc" for a USCC (or a list of them), "id" for another identifier or document
        reference (project code, voucher, lane, 文号). The template formats the column as
        text, so Excel keeps the digits as typed; a number Excel made of a code is refused
        (any number in a USCC column; in another code column one of more than 15 digits or in
        scientific notation, which Excel cannot hold exactly).
      suggest: words offered by the template's drop-down for a text column that accepts
        others too (budget categories, where pre-2021 lines are also accepted).
    """

    name: str
    kind: str
    required: bool
    zh: str
    en: str
    example: str
    choices: dict[str, str] | None = None
    default: Any = None
    code: str | None = None
    suggest: tuple[str, ...] | None = None

    @property
    def title(self) -> str:
        """The short Chinese title the template writes above the key: ``zh`` up to its first
        parenthesis or colon."""
        return re.split("[（(：:，,]", self.zh, maxsplit=1)[0].strip() or self.name

    def dropdown(self) -> tuple[tuple[str, ...], bool] | None:
        """The words of the template's drop-down for this column and whether Excel should
        refuse any other word, or None for a free column."""
        if self.choices:
            return tuple(dict.fromkeys(self.choices)), True
        if self.kind == "bool":
            return BOOLEAN_DROPDOWN, False  # other yes/no words (通过, passed ...) are accepted too
        if self.suggest:
            return self.suggest, False
        return None

    def help_text(self) -> str:
        lines = [f"{self.name}: {self.zh}", self.en, "必填 required" if self.required else "选填 optional"]
        if self.choices:
            lines.append("可填 allowed: " + ", ".join(dict.fromkeys(self.choices)))
        if self.default is not None:
            lines.append(f"默认 default: {self.default}")
        lines.append(f"例 example: {self.example}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Sheet:
    """One event kind: its sheet name, its columns and the entry kind its rows post."""

    name: str
    entry_kind: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _project() -> Column:
    return Column("project", "text", True, "项目编号", "Project code, as approved.", "JM2025-003", code="id")


def _lane() -> Column:
    return Column("lane", "text", False, "揭榜方赛道（统一社会信用代码或 L1、L2…；只有一个揭榜方时可空）",
                  "Solver lane: its USCC or L1, L2 ...; may be empty when the project has one solver.", "L1", code="id")


def _reference(required: bool, zh: str, en: str, example: str, name: str = "reference") -> Column:
    return Column(name, "text", required, zh, en, example, code="id")


def _category(required: bool, zh: str, en: str, example: str) -> Column:
    return Column("category", "text", required, zh, en, example, suggest=BUDGET_CATEGORY_WORDS)


def _amount(zh: str, en: str, example: str) -> Column:
    return Column("amount", "amount", True, zh + "（元，可写 1,234.56、300万、1.5亿）",
                  en + " In yuan: 1,234.56 or 300万 or 1.5亿; at most two decimals.", example)


def _date(zh: str, en: str, example: str) -> Column:
    return Column("date", "date", True, zh + "（YYYY-MM-DD 或 Excel 日期）", en + " YYYY-MM-DD or an Excel date cell.", example)


def _voucher(example: str) -> Column:
    return Column("voucher", "text", True, "凭证号：同一凭证号再次导入不会重复记账",
                  "Voucher reference; importing the same voucher again writes nothing.", example, code="id")


def _exception() -> Column:
    return Column("exception", "text", False, "原则上限制的例外：批准文号: 理由",
                  "Exceed a limit the rules mark as a principle (原则上): REFERENCE: REASON.", "", code="id")


def _recorded_fact_columns() -> tuple[Column, ...]:
    """The facts auditors read that an approval records and a project change alters."""
    return (
        Column("pi", "text", False, "项目负责人（立项后锁定）", "The PI (项目负责人, 首席科学家); locked after approval.", "张三"),
        Column("indicators", "list", False, "考核指标，多个用分号分隔（立项后锁定）", "Assessment indicators (考核指标), separated by semicolons; locked after approval.",
               "样机1台;发明专利2项"),
        Column("project_manager", "text", False, "项目经理人（乌鲁木齐项目经理人制）", "The 项目经理人 (Urumqi).", ""),
        Column("owner_letter", "text", False, "业主责任书文号（乌鲁木齐业主制）", "The 业主责任书 reference (Urumqi).", "", code="id"),
        Column("owner_letter_date", "date", False, "业主责任书签订日期", "The 业主责任书 date, YYYY-MM-DD.", ""),
    )


SHEET_LIST: tuple[Sheet, ...] = (
    Sheet("parties", "party", (
        Column("uscc", "text", True, "统一社会信用代码（18位，GB 32100-2015）", "Unified Social Credit Code, 18 characters; it is the party's key.", "91440700MA4UJ00013", code="uscc"),
        Column("name", "text", True, "单位名称", "Registered name.", "江门某家电有限公司"),
        Column("kind", "choice", False, "单位类型", "Party kind.", "enterprise", PARTY_KIND_ALIASES, "enterprise"),
        Column("revenue", "amount", False, "上年度主营业务收入（元）", "Prior-year main business revenue, in yuan.", "6亿"),
        Column("rnd_ratio", "rate", False, "上年度研发投入占主营业务收入比例", "Prior-year R&D / revenue, 0..1 or a percentage.", "12%"),
        Column("innovation_star", "bool", False, "是否江门“创新标兵”高新技术企业", "A 高新技术企业 named 江门“创新标兵”: yes / no.", "no", default=False),
        Column("bad_credit", "bool", False, "近年是否有不良信用记录或重大违法行为", "Bad credit record or major violation in the look-back period: yes / no.", "no", default=False),
        Column("related", "list", False, "关联方统一社会信用代码，多个用分号分隔", "USCCs of related parties (关联关系), separated by semicolons.", "91110000600037341L", code="uscc"),
        Column("uscc_override_reason", "text", False, "校验位不通过但确属历史代码时的说明", "Reason to accept a code failing the check digit (a known legacy code).", ""),
        _date("登记日期", "Registration date.", "2025-01-02"),
    )),
    Sheet("appropriations", "appropriation", (
        Column("year", "int", True, "预算年度", "Budget year.", "2025"),
        _amount("预算金额", "Amount appropriated for the year.", "5000万"),
        _date("预算下达日期", "Date of the budget document.", "2025-01-10"),
        _voucher("江财预〔2025〕3号"),
    )),
    Sheet("projects", "approval", (
        Column("code", "text", True, "项目编号", "Project code: capital letters, digits, hyphens.", "JM2025-003", code="id"),
        Column("name", "text", True, "项目名称", "Project name.", "高端装备控制器"),
        Column("city", "text", True, "城市规则（jiangmen 或 urumqi）", "City whose rules apply: jiangmen or urumqi.", "jiangmen", suggest=CITY_WORDS),
        Column("rules_version", "text", False, "规则版本（空：立项日有效的版本）", "Rules version; empty picks the one in force on the approval date.", "jiangmen-2023-trial"),
        Column("category", "choice", True, "项目类别", "Category.", "技术攻关", CATEGORY_ALIASES),
        Column("mode", "choice", True, "组织方式", "Mode: 揭榜挂帅 (jbgs) or 赛马 (saima).", "揭榜挂帅", MODE_ALIASES),
        Column("demand_uscc", "text", True, "发榜方统一社会信用代码", "USCC of the demand side (发榜方), registered on the parties sheet.", "91440700MA4UJ00013", code="uscc"),
        Column("solver_usccs", "list", True, "揭榜方统一社会信用代码，赛马多个用分号分隔（顺序即 L1、L2…）", "USCCs of the solvers, separated by semicolons; their order gives lanes L1, L2 ...", "91110000600037341L", code="uscc"),
        Column("total_investment", "amount", True, "研发总投入（元）", "Total R&D investment, in yuan.", "800万"),
        Column("grant", "amount", False, "核定财政资助（江门分期拨付规则必填）", "Approved grant; required under staged-grant rules (Jiangmen).", "300万"),
        Column("bids", "amounts", False, "每个揭榜方的揭榜金额，分号分隔，与 solver_usccs 同序（乌鲁木齐规则必填）", "Contracted bid per lane, semicolon-separated in solver_usccs order; required under bid-subsidy rules (Urumqi).", "200万;150万"),
        Column("start", "date", True, "实施期开始", "Period start, YYYY-MM-DD.", "2025-10-01"),
        Column("end", "date", True, "实施期结束", "Period end, YYYY-MM-DD.", "2028-09-30"),
        Column("budget_year", "int", False, "占用的预算年度（空：立项年度）", "Appropriation year the obligation draws on; empty means the approval year.", "2025"),
        Column("budget", "list", False, "批复预算（来源:科目:金额，分号分隔；市财政各行合计等于核定财政资助）",
               "Approved budget lines SOURCE:CATEGORY:AMOUNT, semicolon-separated; the 市财政 lines add up to the grant.",
               "市财政:设备费:100万;市财政:业务费:200万;单位自筹:劳务费:80万"),
        *_recorded_fact_columns(),
        _exception(),
        _date("立项日期", "Approval date (立项).", "2025-09-20"),
        _voucher("江科〔2025〕88号"),
    )),
    Sheet("pledges", "pledge", (
        _project(),
        _amount("承诺自投金额", "Self-funding pledged by commitment letter.", "500万"),
        _category(False, "预算科目（如承诺函写明）", "Budget category if the letter names one: equipment / business / labour / indirect or 设备费 / 业务费 / 劳务费 / 间接费用.", "设备费"),
        _date("承诺日期", "Date of the commitment letter.", "2025-09-25"),
        _voucher("CN-2025-01"),
    )),
    Sheet("contributions", "contribution", (
        _project(),
        _amount("自投资金到位金额", "Self-funding evidenced as arrived.", "120万"),
        _category(True, "预算科目", "Budget category: equipment / business / labour / indirect or 设备费 / 业务费 / 劳务费 / 间接费用.", "设备费"),
        Column("memo", "text", False, "摘要", "Memo.", "设备款到位"),
        _date("到位日期", "Date the money arrived.", "2025-12-01"),
        _voucher("BK-8812"),
    )),
    Sheet("bid_contracts", "bid_contract", (
        _project(), _lane(),
        _amount("新增合同揭榜金额", "Contracted bid money added for the lane.", "200万"),
        _date("合同日期", "Contract date.", "2025-07-01"),
        _voucher("HT-2025-07"),
    )),
    Sheet("bid_payments", "bid_payment", (
        _project(), _lane(),
        _amount("发榜方拨付揭榜方金额", "Bid money paid by the demand side to the lane.", "100万"),
        Column("form", "choice", False, "支付形式（技术入股股权评估不计补助）", "Payment form; equity (技术入股股权评估) earns no subsidy.", "现金", FORM_ALIASES, "cash"),
        _date("支付日期", "Payment date.", "2025-08-01"),
        _voucher("PAY-1"),
    )),
    Sheet("stages", "stage", (
        _project(),
        Column("stage", "choice", True, "节点", "Stage.", "midterm", STAGE_ALIASES),
        Column("passed", "bool", True, "是否通过", "Result: yes (passed) / no (failed); a 赛马 lane failing its stage assessment is eliminated.", "yes"),
        _lane(),
        _reference(False, "结果文件文号", "Document reference of the result.", "江科函〔2027〕12号"),
        Column("misused", "misuse", False, "阶段考核未通过（或验收未通过且按规则终止）时违规使用金额：支出凭证号=金额，多个用分号分隔", "With a failed 赛马 stage assessment (or a failed acceptance the rules treat as a termination): misused amounts, VOUCHER=AMOUNT, separated by semicolons.", ""),
        Column("accepted_by", "text", False, "验收组织单位（验收时填写）", "With acceptance: the organisation that ran the 验收.", ""),
        Column("audit_firm", "text", False, "会计师事务所（专项审计报告时填写）", "With audit_report: the accounting firm that issued the 专项审计报告.", ""),
        Column("audit_fee", "amount", False, "审计费用（元，专项审计报告时填写）", "With audit_report: the audit fee, in yuan.", ""),
        Column("audited_cash", "lane_amounts", False, "专项审计报告确认的现金揭榜金额（乌鲁木齐后补助按此结算）：单车道填金额，多车道填 L1=金额，分号分隔", "With the audit report of a bid subsidy: the cash bid total the audit confirms, AMOUNT for one lane or L1=AMOUNT;L2=AMOUNT; the subsidy is trued up on it.", ""),
        _date("结果日期", "Date of the result.", "2027-03-15"),
        _voucher("ZQ-2027-01"),
    )),
    Sheet("releases", "release", (
        _project(), _lane(),
        Column("tranche", "int", False, "拨付批次（空：下一批未拨付的）", "Tranche number; empty means the next one not released.", "1"),
        _date("拨付日期", "Release date.", "2025-11-01"),
        _voucher("ZF-2025-118"),
    )),
    Sheet("spending", "spend", (
        _project(), _lane(),
        _amount("财政资金支出金额", "Fiscal money spent.", "45万"),
        _category(True, "支出科目（含2021年前明细科目，如材料费）", "Budget category: equipment / business / labour / indirect, 设备费 / 业务费 / 劳务费 / 间接费用, or a pre-2021 line (材料费 ...).", "设备费"),
        Column("counterparty", "text", False, "收款方", "Who was paid.", "某仪器公司"),
        Column("justification", "text", False, "单价达到阈值的设备须写明理由", "Required for equipment at or above the rules' threshold.", "高精度测试台，现有设备无法满足"),
        Column("memo", "text", False, "摘要", "Memo.", ""),
        _date("支出日期", "Spending date, inside the project period.", "2026-01-15"),
        _voucher("PZ-0012"),
    )),
    Sheet("extensions", "extension", (
        _project(),
        Column("months", "int", True, "延期月数", "Length of the extension in months.", "12"),
        _reference(True, "延期批复文号", "The bureau's approval reference.", "江科〔2028〕45号"),
        Column("reason", "text", True, "延期理由（如不可抗力）", "Why the period is extended (e.g. 不可抗力 and what it held up).", "关键设备受不可抗力影响延迟到货"),
        _exception(),
        _date("批复日期（须在实施期内）", "Approval date, before the period ends.", "2028-08-01"),
        _voucher("YQ-2028-01"),
    )),
    Sheet("project_changes", "project_change", (
        _project(),
        *_recorded_fact_columns(),
        _reference(True, "变更批复文号（项目负责人、考核指标立项后锁定）", "The bureau's approval of the change; the PI and indicators are locked after approval.", "乌科函〔2026〕8号"),
        Column("reason", "text", True, "变更理由", "Why the facts change.", "原负责人调离"),
        _date("变更日期", "Date of the change.", "2026-03-01"),
        _voucher("BG-2026-01"),
    )),
    Sheet("terminations", "termination", (
        _project(),
        _reference(True, "终止（撤销）决定文号", "The bureau's termination (or revocation) decision reference.", "江科〔2027〕9号"),
        Column("misused", "misuse", False, "违规使用金额：支出凭证号=金额，多个用分号分隔", "Misused amounts tied to spend vouchers: VOUCHER=AMOUNT, separated by semicolons.", "PZ-0012=5万"),
        Column("revoke", "bool", False, "是否撤销（弄虚作假等，按规则比例追回已拨付资金）", "Revocation (fraud, serious misuse): yes recovers everything released at the rules' rate.", "no", default=False),
        Column("lane", "text", False, "仅终止一个赛马车道时填写（揭榜方统一社会信用代码或L1、L2…）", "Terminate one 赛马 lane only (USCC or L1, L2 ...); empty terminates the project.", ""),
        _date("决定日期", "Decision date.", "2027-05-01"),
        _voucher("ZZ-2027-01"),
    )),
    Sheet("collections", "collection", (
        _project(), _lane(),
        _amount("收回金额", "Clawback money received.", "120万"),
        _date("收款日期", "Date received.", "2027-06-10"),
        _voucher("JK-2027-31"),
    )),
    Sheet("write_offs", "write_off", (
        _project(), _lane(),
        _amount("核销金额", "Uncollectable clawback written off.", "5万"),
        Column("reason", "text", True, "无法收回的原因", "Why it cannot be collected.", "企业已注销，无财产可供执行"),
        _reference(True, "核销批准文号", "The approval reference of the write-off.", "江财〔2028〕7号", name="approval"),
        _date("核销日期", "Write-off date.", "2028-03-01"),
        _voucher("HX-2028-01"),
    )),
    Sheet("remittances", "remittance", (
        _amount("上缴财政金额", "Recovered money handed over to the finance bureau (应缴财政款).", "120万"),
        _date("上缴日期", "Date handed over.", "2027-06-30"),
        _voucher("JC-2027-05"),
    )),
    Sheet("closures", "closure", (
        _project(),
        _reference(True, "验收结论文号", "The acceptance document reference.", "江科验〔2028〕3号"),
        _date("结项日期（须在验收通过之后）", "Closure date, after a passed acceptance.", "2028-10-15"),
        _voucher("JX-2028-01"),
    )),
    Sheet("balance_recoveries", "balance_recovery", (
        _project(),
        _reference(True, "结余收回决定文号（规则规定验收后留用若干年的）", "The bureau's decision to recover the balance retained after acceptance, where the rules keep it only N years.", "深科〔2029〕5号"),
        _date("收回决定日期（须满留用年限）", "Decision date, on or after the N-year anniversary of the acceptance.", "2029-06-01"),
        _voucher("JY-2029-01"),
    )),
)
SHEETS: dict[str, Sheet] = {s.name: s for s in SHEET_LIST}
SHEET_ORDER = {name: i for i, name in enumerate(SHEETS)}


# --- what reading yields ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem with the file, one shape for all of them.

    Attributes:
      sheet: the sheet (for a CSV file, its kind).
      row: the row number as Excel shows it (the header is row 1).
      column: the column key, or None when the problem is the whole row or sheet.
      reason: one sentence saying what is wrong and how to fix it.
    """

    sheet: str
    row: int
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.sheet}!{self.row}" + (f" {self.column}" if self.column else "")
        reason = self.reason
        if len(reason) > REASON_CHARS_MAX:  # a reason quoting a huge cell: keep its start and its advice
            reason = f"{reason[:200]}…({len(reason):,} characters)…{reason[-100:]}"
        return f"{where}: {reason}"


@dataclass(frozen=True, slots=True)
class Row:
    """A well-formed row, its cells read into the values the service takes."""

    sheet: str
    number: int
    date: dt.date
    values: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        """The idempotency key: (entry kind, voucher); a party's voucher is its USCC."""
        if self.sheet == "parties":
            return ("party", _uscc(self.values["uscc"]))
        if self.sheet == "terminations" and self.values["revoke"]:
            return ("revocation", self.values["voucher"])
        return (SHEETS[self.sheet].entry_kind, self.values["voucher"])


@dataclass
class Batch:
    """What a file holds: how many data rows were read, the well-formed ones, the problems
    found reading it, and the rows that repeat an earlier row of the same file word for word
    (skipped as already present)."""

    source: str
    read: int = 0
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    repeats: list[Row] = field(default_factory=list)


@dataclass
class Report:
    """The outcome of running a batch: counts by sheet, every problem and, when asked for,
    what the rows written amount to (``totals``)."""

    written: Counter = field(default_factory=Counter)
    present: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    # (sheet, project code or "", entry kind) -> [entries written, amount in fen]; the amount
    # of an entry is its debits in the fiscal book, or in the memo book when it has no fiscal
    # posting (a release: what was paid; a contribution: what arrived; a stage: nothing).
    totals: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    entry_sheets: dict[int, str] = field(default_factory=dict)  # entry written -> its row's sheet

    def total_lines(self) -> list[str]:
        """One line per sheet, project and kind (entries and amount, #,##0.00), each sheet's
        lines followed by the sheet's total."""
        lines: list[str] = []
        ordered = sorted(self.totals.items(), key=lambda t: (SHEET_ORDER[t[0][0]], t[0][1:]))
        for index, ((sheet, project, kind), (rows, fen)) in enumerate(ordered):
            lines.append(f"  {sheet} {project or '-'} {kind}: {_entries(rows)}, {format_fen_grouped(fen)}")
            if index + 1 == len(ordered) or ordered[index + 1][0][0] != sheet:
                held = [v for k, v in ordered if k[0] == sheet]
                lines.append(f"  {sheet} 合计 total: {_entries(sum(v[0] for v in held))}, "
                             f"{format_fen_grouped(sum(v[1] for v in held))}")
        return lines

    @property
    def written_total(self) -> int:
        return sum(self.written.values())

    @property
    def present_total(self) -> int:
        return sum(self.present.values())


def _entries(count: int) -> str:
    return f"{count} {'entry' if count == 1 else 'entries'}"


# --- reading cells ----------------------------------------------------------------------


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_text(value: Any, column: Column) -> str:
    return _as_text(value)


def _read_amount(value: Any, column: Column) -> int:
    # Excel keeps numbers as binary floats; their shortest decimal form is what was typed.
    return parse_fen(str(value) if isinstance(value, float) else value, field=column.name)


def _read_amounts(value: Any, column: Column) -> tuple[int, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (_read_amount(value, column),)
    return tuple(parse_fen(part, field=column.name) for part in _split(value))


# A value date (the ``date`` column) more than JIEBANG_FUTURE_DAYS after today is refused, as
# for the verbs, unless ``import --allow-future``; set by ``read_file`` for its own reading.
_ALLOW_FUTURE: ContextVar[bool] = ContextVar("jiebang_import_allow_future", default=False)


def _read_date(value: Any, column: Column) -> dt.date:
    day = limits.check_date(_parse_date(value, column), column.name)
    if column.name == "date" and not _ALLOW_FUTURE.get():
        limits.check_not_future(day, column.name)
    return day


def _parse_date(value: Any, column: Column) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, (int, float)):
        raise Refusal("date_must_be_a_date", f"{column.name} {value!r} is a number, not a date; format the cell as a date or write YYYY-MM-DD.")
    return limits.parse_date(str(value).strip(), column.name)


def _read_int(value: Any, column: Column) -> int:
    if isinstance(value, bool):
        raise Refusal("number_must_be_whole", f"{column.name} {value!r} is not a whole number.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    raise Refusal("number_must_be_whole", f"{column.name} {text!r} is not a whole number.")


def _read_bool(value: Any, column: Column) -> bool:
    if isinstance(value, bool):
        return value
    word = _as_text(value).lower()
    if word in BOOLEAN_WORDS:
        return BOOLEAN_WORDS[word]
    raise Refusal("flag_must_be_yes_or_no", f"{column.name} {word!r} must be yes or no (是 / 否).")


def _read_rate(value: Any, column: Column):
    return parse_rate(str(value), field=column.name)


def _read_list(value: Any, column: Column) -> tuple[str, ...]:
    return tuple(_split(value))


def _read_misuse(value: Any, column: Column) -> tuple[programme.Misuse, ...]:
    items = []
    for part in _split(value):
        voucher, sep, amount = part.rpartition("=")
        if not sep or not voucher.strip():
            raise Refusal("misuse_must_be_voucher_equals_amount", f"{column.name} {part!r} must be SPEND_VOUCHER=AMOUNT, e.g. PZ-0012=5万.")
        items.append(programme.Misuse(voucher.strip(), parse_fen(amount, field=f"{column.name} amount")))
    return tuple(items)


def _read_lane_amounts(value: Any, column: Column) -> tuple[tuple[str | None, int], ...]:
    """``AMOUNT`` or ``L1=AMOUNT;L2=AMOUNT`` (the audited cash total of the audit report)."""
    return parse_audited_cash(_split(value))


def _read_choice(value: Any, column: Column) -> str:
    word = _as_text(value)
    assert column.choices is not None
    found = column.choices.get(word) or column.choices.get(word.lower())
    if found is None:
        raise Refusal("value_must_be_one_of_the_choices", f"{column.name} {word!r} must be one of {', '.join(dict.fromkeys(column.choices))}.")
    return found


def _split(value: Any) -> list[str]:
    text = _as_text(value)
    for separator in LIST_SEPARATORS[1:]:
        text = text.replace(separator, LIST_SEPARATORS[0])
    return [part.strip() for part in text.split(LIST_SEPARATORS[0]) if part.strip()]


READERS: dict[str, Callable[[Any, Column], Any]] = {
    "text": _read_text, "amount": _read_amount, "amounts": _read_amounts, "date": _read_date, "int": _read_int,
    "bool": _read_bool, "rate": _read_rate, "list": _read_list, "misuse": _read_misuse, "lane_amounts": _read_lane_amounts, "choice": _read_choice,
}


def _names_a_key(cells: tuple | list, spec: Sheet) -> bool:
    return any(not _is_blank(c) and _as_text(c).lower() in spec.names for c in cells)


def _check_code(value: Any, column: Column) -> None:
    """Refuse a code Excel has turned into a number: a number in a USCC column, or in another
    code column one of more than 15 digits or written in scientific notation."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        shown = f"{value:.6G}" if isinstance(value, float) and abs(value) >= 10**EXCEL_DIGITS else _as_text(value)
        if column.code == "uscc" or abs(value) >= 10**EXCEL_DIGITS:
            raise _excel_number(column, shown)
        return
    text = str(value).strip()
    parts = _split(text) if column.kind == "list" else [text]
    for part in parts:
        if SCIENTIFIC.match(part):
            raise _excel_number(column, part)


def _excel_number(column: Column, shown: str) -> Refusal:
    return Refusal(
        "code_must_be_text",
        f"{column.name} {shown} is a number: Excel converted the digit-only code into a number, which keeps only "
        f"{EXCEL_DIGITS} digits (124407004551000165 becomes 1.24407E+17), so it is no longer the code typed. "
        "Format the column as text (设置单元格格式 → 文本; the template's code columns are text already) or type an "
        "apostrophe before the code ('124407004551000165), enter it again and import the file again.",
    )


def _is_formula(value: Any) -> bool:
    # With data_only=False openpyxl gives a formula as its text ("=SUM(B2:B9)"), or as an
    # ArrayFormula / DataTableFormula object; we never evaluate them.
    return (isinstance(value, str) and value.startswith("=")) or type(value).__name__ in ("ArrayFormula", "DataTableFormula")


# --- reading a sheet --------------------------------------------------------------------


def read_sheet(batch: Batch, sheet_name: str, lines: Iterable[tuple | list]) -> None:
    """Read one sheet's header and rows into ``batch``: rows that are well formed, problems for the rest."""
    spec = SHEETS[sheet_name]
    problems = batch.problems
    iterator = iter(lines)
    header = next(iterator, None)
    if header is None or all(_is_blank(h) for h in header):
        problems.append(Problem(sheet_name, 1, None, f"the header row is empty; row 1 must name the columns: {', '.join(spec.names)}."))
        return
    key_row = 1
    if not _names_a_key(header, spec):
        # The template writes Chinese titles in row 1 and the keys in row 2; a file with the
        # keys in row 1 (older templates, CSV) is read as before.
        second = next(iterator, None)
        if second is not None and _names_a_key(second, spec):
            header, key_row = second, 2
        elif second is not None:
            iterator = itertools.chain([second], iterator)
    positions: dict[str, int] = {}
    for index, cell in enumerate(header):
        if _is_blank(cell):
            continue
        name = _as_text(cell).lower()
        if name not in spec.names:
            problems.append(Problem(sheet_name, key_row, name, f"unknown column; the {sheet_name} sheet has {', '.join(spec.names)}."))
        elif name in positions:
            problems.append(Problem(sheet_name, key_row, name, "the column appears twice; keep one."))
        else:
            positions[name] = index
    missing = [c.name for c in spec.columns if c.required and c.name not in positions]
    for name in missing:
        problems.append(Problem(sheet_name, key_row, name, f"required column is missing; add it to row {key_row} (`jiebang template` shows every column)."))
    if missing:
        return
    columns = [(c, positions.get(c.name)) for c in spec.columns]
    width = len(header)
    for number, cells in enumerate(iterator, start=key_row + 1):
        if not cells or all(_is_blank(v) for v in cells):
            continue
        first = cells[0]
        if isinstance(first, str) and first.lstrip().startswith(COMMENT_PREFIX):
            continue
        batch.read += 1
        if batch.read > ROWS_MAX:
            raise Refusal("file_must_fit_the_row_limit", f"{batch.source} has more than {ROWS_MAX:,} rows; split it into several files.")
        values: dict[str, Any] = {}
        bad = False
        for column, index in columns:
            raw = cells[index] if index is not None and index < len(cells) else None
            if _is_blank(raw):
                if column.required:
                    problems.append(Problem(sheet_name, number, column.name, f"is empty but required: {column.en}"))
                    bad = True
                values[column.name] = column.default
                continue
            if isinstance(raw, str) and len(raw) > CELL_CHARS_MAX:
                problems.append(Problem(sheet_name, number, column.name, f"holds {len(raw):,} characters; a cell holds at most {CELL_CHARS_MAX:,} (Excel's limit)."))
                bad = True
                continue
            if isinstance(raw, str) and "\x00" in raw:
                problems.append(Problem(sheet_name, number, column.name, limits.nul_refusal("the cell").message))
                bad = True
                continue
            if _is_formula(raw):
                problems.append(Problem(sheet_name, number, column.name, "holds a formula; paste the values instead (选择性粘贴 → 数值), formulas are not evaluated."))
                bad = True
                continue
            try:
                if column.code:
                    _check_code(raw, column)
                values[column.name] = READERS[column.kind](raw, column)
            except Refusal as refusal:
                problems.append(Problem(sheet_name, number, column.name, refusal.message))
                bad = True
        for index in range(width, len(cells)):
            if not _is_blank(cells[index]):
                problems.append(Problem(sheet_name, number, None, f"has a value in column {index + 1}, which has no header; name the column or clear the cell."))
                bad = True
                break
        if not bad:
            batch.rows.append(Row(sheet_name, number, values["date"], values))


def _dedupe(batch: Batch) -> None:
    """Keep the first row of each voucher; a word-for-word repeat is skipped, any other is a problem."""
    first: dict[tuple[str, str], Row] = {}
    kept: list[Row] = []
    for row in batch.rows:
        prior = first.get(row.key)
        if prior is None:
            first[row.key] = row
            kept.append(row)
        elif prior.values == row.values:
            batch.repeats.append(row)
        else:
            column = "uscc" if row.sheet == "parties" else "voucher"
            batch.problems.append(Problem(
                row.sheet, row.number, column,
                f"{row.key[1]} is also used on {prior.sheet}!{prior.number} with other content; give each event its own voucher.",
            ))
    batch.rows = kept


def read_file(path: Path, *, kind: str | None = None, allow_future: bool = False) -> Batch:
    """Read a workbook (.xlsx) or, with ``kind``, a CSV file of that kind; refuse anything else.
    Value dates far in the future are problems unless ``allow_future``."""
    token = _ALLOW_FUTURE.set(allow_future)
    try:
        return _read_file(path, kind)
    finally:
        _ALLOW_FUTURE.reset(token)


def _read_file(path: Path, kind: str | None) -> Batch:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if kind not in SHEETS:
            raise Refusal("kind_must_be_known", f"--kind {kind!r} must be one of {', '.join(SHEETS)}.")
        batch = _read_csv(path, kind)
    elif suffix in (".xlsx", ".xlsm"):
        batch = _read_workbook(path)
    elif suffix == ".xls":
        raise Refusal("file_must_be_xlsx", f"{path} is an old .xls workbook; save it as .xlsx (Excel 工作簿) and import that.")
    else:
        raise Refusal("file_must_be_xlsx_or_csv", f"{path} is neither .xlsx nor .csv; save it as an Excel workbook or as CSV.")
    _dedupe(batch)
    return batch


def _not_a_workbook(path: Path) -> Refusal:
    return Refusal("file_must_be_a_workbook", f"{path} is not an Excel workbook; save it as .xlsx (Excel 工作簿), or as CSV and use --kind.")


def _read_workbook(path: Path) -> Batch:
    from xml.etree.ElementTree import ParseError

    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    unreadable = (zipfile.BadZipFile, InvalidFileException, KeyError, ParseError, EOFError)
    try:
        _check_archive(path)
    except (zipfile.BadZipFile, EOFError, OSError):
        raise _not_a_workbook(path) from None
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except unreadable:
        raise _not_a_workbook(path) from None
    batch = Batch(str(path))
    try:
        for worksheet in workbook.worksheets:
            title = worksheet.title.strip()
            name = title.lower()
            if name not in SHEETS:
                hint = SHEET_HINTS.get(name, f"sheets are named {', '.join(SHEETS)}")
                batch.problems.append(Problem(title, 1, None, f"unknown sheet; {hint}."))
                continue
            # Some writers record wrong sheet dimensions; read every cell instead of trusting them.
            worksheet.reset_dimensions()
            read_sheet(batch, name, worksheet.iter_rows(values_only=True))
    except unreadable:
        raise _not_a_workbook(path) from None
    finally:
        workbook.close()
    return batch


def _check_archive(path: Path) -> None:
    """Refuse a workbook whose archive would expand past the limits, before parsing it.

    Sizes come from the zip directory; the cells are counted by streaming each worksheet's
    XML through zlib in 1 MiB pieces, so neither check holds more than a piece in memory.
    The directory's sizes are not trusted for the count: the stream stops at the limit.
    """
    size = path.stat().st_size
    if size > XLSX_BYTES_MAX:
        raise Refusal("workbook_must_fit_the_size_limit",
                      f"{path} is {size:,} bytes, over the {XLSX_BYTES_MAX:,}-byte limit for an import workbook; "
                      "split it into several files.")
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        expanded = sum(m.file_size for m in members)
        if expanded > XLSX_UNCOMPRESSED_BYTES_MAX:
            raise Refusal("workbook_must_fit_the_size_limit",
                          f"{path} expands to {expanded:,} bytes, over the {XLSX_UNCOMPRESSED_BYTES_MAX:,}-byte limit "
                          "for an import workbook; split it into several files.")
        for member in members:
            if member.filename.lower() == "xl/sharedstrings.xml" and member.file_size > SHARED_STRINGS_BYTES_MAX:
                raise Refusal("workbook_must_fit_the_size_limit",
                              f"{path} holds {member.file_size:,} bytes of text, over the {SHARED_STRINGS_BYTES_MAX:,}-byte "
                              "limit for an import workbook; check the cells for pasted documents, or split the file.")
        cells = 0
        budget = XLSX_UNCOMPRESSED_BYTES_MAX
        for member in members:
            name = member.filename.lower()
            if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                continue
            with archive.open(member) as stream:
                tail = b""
                while piece := stream.read(1 << 20):
                    budget -= len(piece)
                    if budget < 0:  # the directory understated the sizes
                        raise Refusal("workbook_must_fit_the_size_limit",
                                      f"{path} expands past the {XLSX_UNCOMPRESSED_BYTES_MAX:,}-byte limit for an "
                                      "import workbook; split it into several files.")
                    # A tag is three bytes: the last two of the previous piece catch one cut in two,
                    # and hold no whole tag, so nothing is counted twice.
                    window = tail + piece
                    cells += sum(window.count(tag) for tag in _CELL_TAGS)
                    tail = piece[-2:]
                    if cells > CELLS_MAX:
                        raise Refusal("workbook_must_fit_the_cell_limit",
                                      f"{path} has more than {CELLS_MAX:,} cells; split it into several files "
                                      f"(up to about {CELLS_MAX // 10:,} rows of ten columns each).")


def _read_csv(path: Path, kind: str) -> Batch:
    from ledger.core.bulk import decode_text

    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise Refusal("file_must_be_text", f"{path} is not a CSV text file; save the sheet as CSV (UTF-8 or the Chinese default) and retry.")
    text = decode_text(raw, path)
    batch = Batch(str(path))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        read_sheet(batch, kind, reader)
    except csv.Error as exc:  # a NUL byte, or a field beyond the csv module's size limit
        raise Refusal(
            "file_must_be_csv",
            f"{path} line {reader.line_num} cannot be read as CSV ({exc}); save the sheet as CSV again and retry.",
        ) from None
    return batch


# --- running rows through the services --------------------------------------------------


def _uscc(text: str) -> str:
    from funding_rules.uscc import normalize_uscc

    return normalize_uscc(text)


def _party(session: Session, v: dict, actor: str) -> Posted:
    return programme.register_party(session, programme.PartyInput(
        uscc=v["uscc"], name=v["name"], kind=v["kind"], revenue_fen=v["revenue"], rnd_intensity=v["rnd_ratio"],
        innovation_star=v["innovation_star"], bad_credit=v["bad_credit"], related=v["related"] or (),
        override_reason=v["uscc_override_reason"], date=v["date"],
    ), actor=actor)


def _approval(session: Session, v: dict, actor: str) -> Posted:
    return programme.approve_project(session, programme.ApprovalInput(
        code=v["code"], name=v["name"], city=v["city"].lower(), category=v["category"], mode=v["mode"],
        demand_uscc=v["demand_uscc"], solver_usccs=v["solver_usccs"], total_investment_fen=v["total_investment"],
        approval_date=v["date"], start_date=v["start"], end_date=v["end"], approved_grant_fen=v["grant"],
        bid_contract_fen=v["bids"] or (), rules_version=v["rules_version"], budget_year=v["budget_year"], voucher=v["voucher"],
        budget=tuple(programme.parse_budget_line(line) for line in v.get("budget") or ()),
        exception=v.get("exception"), pi=v.get("pi"), indicators=tuple(v.get("indicators") or ()), project_manager=v.get("project_manager"),
        owner_letter=v.get("owner_letter"), owner_letter_date=v.get("owner_letter_date"),
    ), actor=actor)


def _call(service: Callable[..., Posted], *names: str, **renamed: str) -> Callable[[Session, dict, str], Posted]:
    """A row-to-service adapter: pass columns ``names`` as keywords of the same name and
    ``renamed`` as keyword=column, plus the session, the row's voucher and the actor."""

    def apply(session: Session, values: dict, actor: str) -> Posted:
        arguments = {name: values[name] for name in names} | {key: values[column] for key, column in renamed.items()}
        return service(session, voucher=values["voucher"], actor=actor, **arguments)

    return apply


def _terminate(session: Session, v: dict, actor: str) -> Posted:
    return programme.terminate(
        session, project=v["project"], date=v["date"], reference=v["reference"], voucher=v["voucher"], actor=actor,
        misused=list(v["misused"] or ()), revoke=v["revoke"], **({"lane": v["lane"]} if v.get("lane") else {}),
    )


def _stage(session: Session, v: dict, actor: str) -> Posted:
    return programme.record_stage(
        session, project=v["project"], stage=v["stage"], passed=v["passed"], date=v["date"], lane=v["lane"],
        reference=v["reference"], voucher=v["voucher"], actor=actor,
        **({"misused": list(v["misused"])} if v.get("misused") else {}),
        **({"audited_cash": v["audited_cash"]} if v.get("audited_cash") else {}),
        **{k: v[column] for k, column in (("accepted_by", "accepted_by"), ("audit_firm", "audit_firm"), ("audit_fee_fen", "audit_fee"))
           if v.get(column) is not None},
    )


def _extend(session: Session, v: dict, actor: str) -> Posted:
    return programme.extend(
        session, project=v["project"], months=v["months"], date=v["date"], reference=v["reference"], reason=v["reason"],
        voucher=v["voucher"], actor=actor, **({"exception": v["exception"]} if v.get("exception") else {}),
    )


def _change_project(session: Session, v: dict, actor: str) -> Posted:
    named = {k: v[k] for k in ("pi", "project_manager", "owner_letter", "owner_letter_date") if v.get(k)}
    return programme.change_project(
        session, project=v["project"], date=v["date"], reference=v["reference"], reason=v["reason"], voucher=v["voucher"], actor=actor,
        **named, **({"indicators": tuple(v["indicators"])} if v.get("indicators") else {}),
    )


def _contribute(session: Session, v: dict, actor: str) -> Posted:
    return programme.contribute(
        session, project=v["project"], amount_fen=v["amount"], category=v["category"], date=v["date"],
        voucher=v["voucher"], actor=actor, memo=v["memo"] or "",
    )


def _spend(session: Session, v: dict, actor: str) -> Posted:
    return programme.spend(
        session, project=v["project"], lane=v["lane"], amount_fen=v["amount"], category=v["category"], date=v["date"],
        voucher=v["voucher"], actor=actor, counterparty=v["counterparty"], justification=v["justification"],
        memo=v["memo"] or "",
    )


SERVICES: dict[str, Callable[[Session, dict, str], Posted]] = {
    "parties": _party,
    "appropriations": _call(programme.appropriate, "year", "date", amount_fen="amount"),
    "projects": _approval,
    "pledges": _call(programme.pledge, "project", "date", "category", amount_fen="amount"),
    "contributions": _contribute,
    "bid_contracts": _call(programme.bid_contract, "project", "lane", "date", amount_fen="amount"),
    "bid_payments": _call(programme.bid_pay, "project", "lane", "form", "date", amount_fen="amount"),
    "stages": _stage,
    "releases": _call(programme.release, "project", "lane", "date", "tranche"),
    "spending": _spend,
    "extensions": _extend,
    "project_changes": _change_project,
    "terminations": _terminate,
    "collections": _call(programme.collect, "project", "lane", "date", amount_fen="amount"),
    "write_offs": _call(programme.write_off, "project", "lane", "reason", "approval", "date", amount_fen="amount"),
    "remittances": _call(programme.remit, "date", amount_fen="amount"),
    "closures": _call(programme.close, "project", "reference", "date"),
    "balance_recoveries": _call(programme.recover_balance, "project", "reference", "date"),
}
assert tuple(SERVICES) == tuple(SHEETS)

# Parties and approvals compare their own facts on a repeat; every other kind is compared here.
SELF_CHECKING_KINDS = ("party", "approval")

# Which column a refusal is about, where its code does not start with a column key.
REFUSAL_COLUMNS = {
    "event_must_follow_approval": "date", "spending_must_fall_in_project_period": "date",
    "bid_payment_must_not_precede_approval": "date", "extension_must_be_requested_before_period_ends": "date",
    "bid_payment_must_be_positive": "amount", "bid_payment_must_not_exceed_contract": "amount",
    "spending_must_not_exceed_advances": "amount", "collection_must_not_exceed_outstanding": "amount",
    "indirect_costs_must_not_exceed_cap": "amount", "obligation_must_fit_available_budget": "amount",
    "budget_category_must_be_known": "category", "equipment_at_threshold_must_be_justified": "justification",
    "extension_count_must_not_exceed_maximum": "months", "extension_must_not_exceed_maximum_length": "months",
    "extension_must_be_positive": "months", "extension_must_cite_approval": "reference",
    "misuse_must_name_a_spend_voucher": "misused", "misuse_must_not_exceed_the_spend": "misused",
    "misuse_must_be_on_the_lane": "misused", "misuse_needs_a_failed_stage_assessment": "misused",
    "project_code_must_be_well_formed": "code", "project_must_be_approved_once": "code",
    "approved_grant_must_be_given": "grant", "grant_must_fit_available_appropriation": "grant",
    "grant_must_not_exceed_maximum": "grant", "bid_contracts_must_match_lanes": "bids",
    "bid_contracts_must_match_solvers": "bids", "total_investment_must_include_bid_contracts": "total_investment",
    "period_must_end_after_start": "end", "period_must_not_exceed_maximum_years": "end",
    "jbgs_solver_count_must_be_exact": "solver_usccs", "saima_racer_count_must_reach_minimum": "solver_usccs",
    "saima_racer_count_must_not_exceed_maximum": "solver_usccs", "solvers_must_be_distinct": "solver_usccs",
    "solver_must_not_be_related_to_demand_side": "solver_usccs",
    "demand_side_must_meet_one_eligibility_test": "demand_uscc", "demand_side_must_have_clean_credit": "demand_uscc",
    "rules_city_must_match_project": "city", "rules_version_must_be_in_force_on_approval_date": "rules_version",
    "party_must_be_registered_once": "uscc", "party_kind_must_be_known": "kind", "party_must_have_name": "name",
    "payment_form_must_be_known": "form", "stage_assessment_is_for_saima": "stage",
    "budget_year_must_be_plausible": "year",
    "extension_must_give_reason": "reason", "principle_exception_must_name_reference_and_reason": "exception",
    "principle_exception_must_be_needed": "exception", "project_change_must_cite_approval": "reference",
    "project_change_must_give_reason": "reason", "owner_letter_must_have_reference": "owner_letter",
    "stage_fact_must_fit_the_stage": "stage", "audit_fee_must_not_be_negative": "audit_fee",
}


def _column_of(refusal: Refusal, sheet: str) -> str | None:
    if refusal.code in REFUSAL_COLUMNS and REFUSAL_COLUMNS[refusal.code] in SHEETS[sheet].names:
        return REFUSAL_COLUMNS[refusal.code]
    matches = [n for n in SHEETS[sheet].names if refusal.code.startswith(n + "_")]
    return max(matches, key=len) if matches else None


@dataclass(frozen=True, slots=True)
class _Recorded:
    entry_id: int
    project_code: str | None
    value_date: dt.date
    debits: frozenset[int]


def _recorded(session: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], _Recorded]:
    """The entries already recorded under these (kind, voucher) keys, 500 vouchers a query."""
    by_kind: dict[str, list[str]] = {}
    for kind, voucher in keys:
        by_kind.setdefault(kind, []).append(voucher)
    heads: dict[tuple[str, str], tuple[int, str | None, dt.date]] = {}
    for kind, vouchers in by_kind.items():
        unique = sorted(set(vouchers))
        for start in range(0, len(unique), QUERY_CHUNK):
            rows = session.execute(
                select(JournalEntry.id, JournalEntry.voucher, JournalEntry.project_code, JournalEntry.value_date)
                .where(JournalEntry.kind == kind, JournalEntry.voucher.in_(unique[start:start + QUERY_CHUNK]))
            )
            for row in rows:
                heads[(kind, row.voucher)] = (row.id, row.project_code, row.value_date)
    debits: dict[int, set[int]] = {}
    ids = sorted(entry_id for entry_id, _, _ in heads.values())
    for start in range(0, len(ids), QUERY_CHUNK):
        rows = session.execute(
            select(Posting.entry_id, Posting.amount_fen)
            .where(Posting.entry_id.in_(ids[start:start + QUERY_CHUNK]), Posting.amount_fen > 0)
        )
        for entry_id, amount in rows:
            debits.setdefault(entry_id, set()).add(int(amount))
    return {
        key: _Recorded(entry_id, project, when, frozenset(debits.get(entry_id, ())))
        for key, (entry_id, project, when) in heads.items()
    }


def _same_event(row: Row, recorded: _Recorded) -> bool:
    """Whether a row says what the entry under its voucher says: project, date and amount."""
    project = row.values.get("project")
    if (project.strip().upper() if project else None) != recorded.project_code:
        return False
    if row.date != recorded.value_date:
        return False
    amount = row.values.get("amount")
    return amount is None or amount in recorded.debits


def _describe(recorded: _Recorded, kind: str) -> str:
    project = f"{recorded.project_code}, " if recorded.project_code else ""
    return f"{kind} entry {recorded.entry_id} ({project}{recorded.value_date})"


def run_rows(
    session: Session, batch: Batch, *, actor: str, progress: Callable[[int], None] | None = None, totals: bool = False
) -> Report:
    """Send the batch's rows to the services in date order, in runs of ``RUN_ROWS`` rows per
    SAVEPOINT; never commits.

    A refused row is rolled back to its own savepoint (its run is rolled back and run again
    row by row up to it) and recorded as a problem; the rows after it still run, so one pass
    finds every refusal. The caller keeps the transaction only if
    the report (which includes the batch's reading problems) has no problem. With
    ``totals`` the report also sums what the rows written amount to (``Report.totals``).
    """
    report = Report(problems=list(batch.problems))
    for row in batch.repeats:
        report.present[row.sheet] += 1
    rows = sorted(batch.rows, key=lambda r: (r.date, SHEET_ORDER[r.sheet], r.number))
    programme.lock(session)
    recorded = _recorded(session, [r.key for r in rows if r.key[0] not in SELF_CHECKING_KINDS])
    advance = progress or (lambda n: None)
    with state_cache.caching(session) as cache:
        cache.locked = True  # held until the caller commits or rolls back
        cache.absent.update(r.key for r in rows if r.key[0] not in SELF_CHECKING_KINDS and r.key not in recorded)
        # Parties and approvals compare their own facts on a repeat, but the journal need not
        # look their vouchers up one by one either.
        own = [r.key for r in rows if r.key[0] in SELF_CHECKING_KINDS]
        cache.absent.update(set(own) - set(_recorded(session, own)))
        start = 0
        while start < len(rows):
            run = rows[start:start + RUN_ROWS]
            refused = _run_together(session, run, recorded, report, cache, actor, totals)
            if refused is None:
                start += len(run)
                advance(len(run))
                continue
            # Rolled back: the rows up to the refused one again, each in its own savepoint,
            # which records the refusal; the rows after it start a new run.
            for row in run[:refused + 1]:
                _run_row(session, row, recorded, report, cache, actor, totals)
                advance(1)
            start += refused + 1
    if totals:
        _add_totals(session, report)
    report.problems.sort(key=lambda p: (SHEET_ORDER.get(p.sheet, -1), p.row))
    return report


def _run_together(
    session: Session, run: list[Row], recorded: dict, report: Report, cache: state_cache.StateCache, actor: str,
    totals: bool,
) -> int | None:
    """Rows through their services in one SAVEPOINT, as ``_run_row`` would one by one; the
    report is changed only when every row went through. Returns None then, or the index of
    the first row refused (by a rule or the database), the savepoint rolled back and the
    cache as it was before the run."""
    absent = [row.key for row in run if row.key in cache.absent]
    done: list[tuple[Row, Any]] = []
    cache.begin_row(session)
    savepoint = session.begin_nested()
    session.connection()  # SAVEPOINT now: the buffered writes go past SQLAlchemy, which emits it lazily
    try:
        for row in run:
            prior = recorded.get(row.key)
            done.append((row, prior if prior is not None else SERVICES[row.sheet](session, row.values, actor)))
        journal.flush_writes(session)  # a database error here is one of these rows'
    except (Refusal, DBAPIError):
        savepoint.rollback()
        cache.forget_row(session)
        cache.absent.update(absent)
        return min(len(done), len(run) - 1)
    savepoint.commit()
    cache.row_done()
    for row, outcome in done:
        if isinstance(outcome, _Recorded):
            _report_recorded(row, outcome, report)
        else:
            (report.written if outcome.created else report.present)[row.sheet] += 1
            if totals and outcome.created:
                report.entry_sheets[outcome.entry_id] = row.sheet
    return None


def _report_recorded(row: Row, prior: _Recorded, report: Report) -> None:
    """A row whose voucher the ledger held before the import: present, or a conflict."""
    if _same_event(row, prior):
        report.present[row.sheet] += 1
    else:
        report.problems.append(Problem(
            row.sheet, row.number, "voucher",
            f"{row.key[1]} is already recorded as {_describe(prior, row.key[0])} with other content; "
            f"use a new voucher, or reverse entry {prior.entry_id} first if it was wrong.",
        ))


def _run_row(
    session: Session, row: Row, recorded: dict, report: Report, cache: state_cache.StateCache, actor: str, totals: bool
) -> None:
    """One row: already present, a conflict, or through its service in a SAVEPOINT."""
    prior = recorded.get(row.key)
    if prior is not None:
        _report_recorded(row, prior, report)
        return
    cache.begin_row(session)
    try:
        with session.begin_nested():
            session.connection()  # SAVEPOINT now: the buffered writes go past SQLAlchemy, which emits it lazily
            posted = SERVICES[row.sheet](session, row.values, actor)
            journal.flush_writes(session)  # before the RELEASE, so that a database error is this row's
    except Refusal as refusal:
        cache.forget_row(session)
        report.problems.append(Problem(row.sheet, row.number, _column_of(refusal, row.sheet), refusal.message))
    except DBAPIError as exc:
        cache.forget_row(session)
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        report.problems.append(Problem(row.sheet, row.number, None, f"the database refused the row: {detail}"))
    else:
        cache.row_done()
        (report.written if posted.created else report.present)[row.sheet] += 1
        if totals and posted.created:
            report.entry_sheets[posted.entry_id] = row.sheet


def _add_totals(session: Session, report: Report) -> None:
    """Sum the entries the rows wrote by sheet, project and kind: one pass over their postings."""
    if not report.entry_sheets:
        return
    debits: dict[int, dict[str, int]] = {}
    heads: dict[int, tuple[str | None, str]] = {}
    low, high = min(report.entry_sheets), max(report.entry_sheets)
    for entry_id, project, kind in session.execute(
        select(JournalEntry.id, JournalEntry.project_code, JournalEntry.kind).where(JournalEntry.id.between(low, high))
    ):
        heads[entry_id] = (project, kind)
    for entry_id, book, amount in session.execute(
        select(Posting.entry_id, Posting.book, Posting.amount_fen)
        .where(Posting.entry_id.between(low, high), Posting.amount_fen > 0)
    ):
        books = debits.setdefault(entry_id, {})
        books[book] = books.get(book, 0) + int(amount)
    for entry_id, sheet in report.entry_sheets.items():
        project, kind = heads[entry_id]
        books = debits.get(entry_id, {})
        held = report.totals.setdefault((sheet, project or "", kind), [0, 0])
        held[0] += 1
        held[1] += books.get("fiscal", books.get("memo", 0))


# --- the template -----------------------------------------------------------------------


TEMPLATE_TITLE_ROW, TEMPLATE_KEY_ROW, TEMPLATE_FIRST_ROW = 1, 2, 3
TEXT_FORMAT = "@"  # Excel's 文本 format: what is typed stays as typed
SHEET_LAST_ROW = 1_048_576  # Excel's last row: formats and drop-downs cover every data row


def write_template(path: Path) -> None:
    """Write an empty import workbook: every sheet with a row of Chinese titles, the row of
    column keys under it, a comment on each title, both rows frozen, code columns formatted
    as text, a drop-down on every choice column, and one example row whose first cell
    begins ``#example``."""
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    workbook = Workbook()
    workbook.remove(workbook.active)
    bold = Font(bold=True)
    grey = Font(italic=True, color="808080")
    required_fill = PatternFill("solid", fgColor="FFF2CC")
    for spec in SHEET_LIST:
        sheet = workbook.create_sheet(spec.name)
        sheet.append([c.title for c in spec.columns])
        sheet.append(list(spec.names))
        example = [c.example for c in spec.columns]
        example[0] = EXAMPLE_PREFIX + example[0]
        sheet.append(example)
        for index, column in enumerate(spec.columns, start=1):
            letter = get_column_letter(index)
            title = sheet.cell(row=TEMPLATE_TITLE_ROW, column=index)
            key = sheet.cell(row=TEMPLATE_KEY_ROW, column=index)
            for cell in (title, key):
                cell.font = bold
                cell.alignment = Alignment(wrap_text=True, vertical="top")
                if column.required:
                    cell.fill = required_fill
            note = column.help_text()
            if index == 1:
                note += ("\n第1行是中文标题，第2行是列名（导入按列名读取）。以 # 开头的行不导入（如示例行）。"
                         "\nRow 1 holds titles, row 2 the column keys the import reads. A row whose first cell "
                         "begins with # is skipped (the example row).")
            comment = Comment(note, "jiebang")
            comment.width, comment.height = 320, 170
            title.comment = comment
            sheet.cell(row=TEMPLATE_FIRST_ROW, column=index).font = grey
            if column.code:
                # Excel keeps what is typed into a text cell as typed: a digit-only USCC or
                # voucher stays text instead of becoming 1.24407E+17.
                sheet.column_dimensions[letter].number_format = TEXT_FORMAT
                sheet.cell(row=TEMPLATE_FIRST_ROW, column=index).number_format = TEXT_FORMAT
            dropdown = column.dropdown()
            if dropdown is not None:
                words, strict = dropdown
                formula = '"' + ",".join(words) + '"'
                assert len(formula) <= 257 and not any("," in w for w in words), column.name  # Excel's list limit
                validation = DataValidation(type="list", formula1=formula, allow_blank=True, showErrorMessage=strict)
                validation.errorTitle = "不在可选范围 Not a choice"
                validation.error = f"{column.name}: " + " / ".join(words)
                validation.promptTitle = column.title[:32]
                validation.prompt = ("可选 choose: " + " / ".join(words))[:255]
                validation.showInputMessage = True
                validation.add(f"{letter}{TEMPLATE_FIRST_ROW}:{letter}{SHEET_LAST_ROW}")
                sheet.add_data_validation(validation)
            width = max(len(column.name), len(column.title.encode("gbk", "replace")),
                        len(column.example.encode("gbk", "replace"))) + 4
            sheet.column_dimensions[letter].width = min(width, 40)
        sheet.freeze_panes = f"A{TEMPLATE_FIRST_ROW}"
    workbook.save(path)
