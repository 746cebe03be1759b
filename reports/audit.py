"""The 专项审计资料包 (audit pack) of one project as of an audit cut-off date: the tables a
CPA firm needs for the 专项审计报告 (domain-facts §5), built as plain data and pandas
DataFrames from SQL aggregates scoped to the project, then rendered to PDF and xlsx by
separate functions, with the project's beancount extract beside them.

Scope and as-of. Every query filters on the project's own accounts or events and on
``value_date <= as_of``; nothing loads the ledger's other postings. An entry dated after the
as-of date never changes the pack, and a reversal counts only when it is itself dated on or
before the as-of date (its postings are, by the same rule, in or out of the balances).

Choices, stated once (they are printed in the pack's notes too):

- Cut-off (默认审计截止日): the project end date including extensions approved by then, or
  the termination/revocation date when that is earlier (domain-facts §5, MOST rule).
- 应到位 (due) of the city's money: for a staged grant (Jiangmen) the tranches whose release
  conditions were all met by the cut-off, released or not (cancelled tranches are not due);
  for a bid subsidy (Urumqi, a post-subsidy) the subsidy earned by the cut-off. The
  obligation is shown beside it as 批复数. Self-funding due = the whole pledge (the 承诺函
  has no schedule); bid money due = the contracted bid of the lane.
- 预算执行 (budget execution): by category, the approved budget the approval carries
  (``project approve --budget``, in its hashed facts) for the city's money and for
  self-funding; without one the city's category rows say 未按科目批复 in words and the
  subtotal gives 预算 = the approved grant, 调整后预算 = the obligation as of the cut-off
  (after deobligation), 到位 = released, 实际支出 = eligible spending reported by category
  (misused amounts named at termination are moved out of spending into the clawback), 执行率 =
  实际支出 / 调整后预算, 结余 = 到位 − 实际支出. Self-funding without an approved budget: 预算 =
  the pledge by the category it names (承诺未列科目 in words when it names none, and the
  uncategorised pledge on its own row, explained in a note), 到位 = 实际支出 = contributions
  evidenced by category, so its 结余 is 0. A post-subsidy is not reported as spent by category.
- Integrity: the pack prints the chain head at the cut-off — the highest entry id whose value
  date is on or before it; its hash covers every entry the pack reads — and the verification
  it relied on: from the latest checkpoint (``verify --checkpoint``), checking only the
  entries after it, or over the whole chain when there is none. The current chain head and
  the time of making are deliberately not printed: they change with every later entry or run
  and would break the byte-identity of an as-of report.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from funding_rules.checks import add_months
from funding_rules.loader import Rules
from ledger.core.errors import Refusal
from ledger.core.models import Account, JournalEntry, Posting
from ledger.core.money import apply_rate, format_fen_grouped
from ledger.programme import (
    BALANCE_KEYS,
    ProjectState,
    chart,
    pinned_rules,
    project_balances,
    project_folds,
    project_state,
    tranche_views,
)
from ledger.programme.fold import RecordedFacts
from ledger.programme.models import Lane, Party, Project, ProjectEvent
from ledger.programme.recorded import project_facts
from ledger.programme.words import BALANCE_ZH, CONDITION_ZH

STREAM_BATCH = 2_000

KIND_ZH = {
    "approval": "立项", "pledge": "自筹承诺", "contribution": "自筹到位", "bid_contract": "揭榜合同",
    "bid_payment": "揭榜金额拨付", "stage": "阶段事项", "release": "财政拨付", "spend": "经费支出",
    "extension": "延期", "termination": "终止", "revocation": "撤销", "elimination": "淘汰",
    "collection": "追回收款", "write_off": "核销", "reversal": "冲销", "remittance": "上缴财政",
    "closure": "结题", "project_change": "项目变更", "balance_recovery": "结余到期收回",
}
CATEGORY_ZH = {"equipment": "设备费", "business": "业务费", "labour": "劳务费", "indirect": "间接费用"}
UNCATEGORISED = "未分类"
SOURCE_ZH = {"city_fiscal": "市财政", "self_funded": "单位自筹", "bid": "揭榜金额"}
FORM_ZH = {"cash": "现金", "equity": "技术入股（股权评估）", "in_kind": "实物"}
BOOK_ZH = {"fiscal": "财务", "memo": "备查"}
MODE_ZH = {"jbgs": "揭榜挂帅", "saima": "赛马"}
PROJECT_CATEGORY_ZH = {"tech_breakthrough": "技术攻关类", "commercialization": "成果转化类"}
PARTY_KIND_ZH = {"enterprise": "企业", "university": "高校", "institute": "科研院所", "other": "其他"}
STAGE_ZH = {"contract_signed": "签订合同", "midterm": "中期检查", "stage_assessment": "赛马阶段考核",
            "acceptance": "验收", "audit_report": "专项审计报告"}
TRANCHE_STATUS_ZH = {"released": "已拨付", "eligible": "可拨付", "planned": "待条件", "cancelled": "已取消"}
TRANCHE_NAME_ZH = {"contract": "签约拨付", "midterm": "中期拨付", "interim": "过程拨付", "final": "结题拨付"}
BASIS_ZH = {"grant_share": "按批复资助比例", "subsidy_earned": "按已计提补助"}
FAMILY_ZH = {
    "self_funding_pledged": "自筹承诺", "self_funding_outstanding": "自筹未到位", "self_funding_contributed": "自筹到位",
    "bid_contracted": "揭榜合同额", "bid_unpaid": "揭榜未付", "bid_paid_cash": "揭榜已付·现金",
    "bid_paid_equity": "揭榜已付·技术入股", "bid_paid_in_kind": "揭榜已付·实物", "grant_unreleased": "批复未拨付",
    "grant_released": "财政已拨付", "advances": "预拨经费结余", "grant_spent": "财政资金支出",
    "subsidy_expense": "补助费用", "subsidy_payable": "应付政府补贴款", "clawback_receivable": "其他应收款·追回",
    "write_offs": "追回核销", "subsidy_use_released": "补助已拨付（备查）", "subsidy_unreported": "补助未报告结余（备查）",
    "subsidy_reported": "补助已报告支出（备查）",
}
CHANGE_RESULT_ZH = {
    "termination": "项目终止：核定追回结余及违规使用资金，未拨付部分核减（见第六部分）",
    "revocation": "项目撤销：按规则比例追回已拨付资金，未拨付部分核减（见第六部分）",
    "elimination": "车道淘汰：停止拨付（见第六部分）",
    "closure": "验收后结题：未拨付部分核减，结余按规则留用",
}
EXCLUSION_REASON = {
    "equity": "技术入股股权评估资金不予补助",
    "in_kind": "实物出资非资金拨付，不计入补助基数",
}


def basis_zh(rules: Rules, key: str) -> str:
    """The policy clause behind a rules parameter, as an auditor reads it: the clause cited in
    the rules file (the city's document and article, with its Chinese words), or, where the
    rules file marks the value as our own default because the policy is silent, a sentence
    saying so. The English commentary of the rules file stays in the rules file."""
    parts = []
    for part in rules.clause(key).split(";"):
        part = part.strip()
        if "DEFAULT" in part:
            parts.append(f"政策文件未作明确规定，采用本专账默认规则（规则版本 {rules.version}）")
            continue
        if not re.match(r"S\d", part):
            continue  # the rules file's own commentary (e.g. "as in Jiangmen S1 ..."), not a clause
        # "S2 乌鲁木齐 工作指引 二(六): 中文条文 (english)" -> "S2 乌鲁木齐 工作指引 二(六)：中文条文"
        head, _, words = part.partition(":")
        words = words.split(" — ")[0].split(" (")[0]
        words = "".join(ch for ch in words if not ch.isascii() or ch in "0123456789%.()（）， ").strip()
        parts.append(f"{head.strip()}：{words}" if words else head.strip())
    return "；".join(dict.fromkeys(parts))


# --- the shape of a pack ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """A table column.

    Attributes:
      key: the DataFrame column.
      header: "中文\\nEnglish", the two lines of the header cell.
      kind: text, long (wrapping text), amount (int fen), rate (Decimal percent), int or date.
      width: relative width in the PDF.
      empty: what the PDF prints for an empty cell of this column.
    """

    key: str
    header: str
    kind: str = "text"
    width: float = 1.0
    empty: str | None = None

    def __post_init__(self):
        if self.empty is None:
            object.__setattr__(self, "empty", "—" if self.kind in ("amount", "rate") else "")


@dataclass(frozen=True)
class ReportTable:
    """One table of the pack: a DataFrame plus how to show it.

    Attributes:
      sheet: the xlsx sheet name (unique, at most 31 characters).
      title: the caption above the table in the PDF.
      frame: one row per table row: the column keys plus ``_role`` (item, subtotal, total)
        and ``_group`` (what a subtotal adds up).
      notes: sentences printed under the table (never amounts: every amount is a cell).
    """

    sheet: str
    title: str
    columns: tuple[Column, ...]
    frame: pd.DataFrame
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    heading: str
    intro: tuple[str, ...]
    tables: tuple[ReportTable, ...]


@dataclass(frozen=True)
class Integrity:
    """What ties the pack to a ledger state.

    Attributes:
      anchor_id / anchor_hash / anchor_date: the highest entry id with value date ≤ as-of.
      entries_as_of: entries in the whole ledger with value date ≤ as-of.
      project_entries / project_postings: the project's entries and postings in the pack.
      verify_ok / verify_problem: the result of the verification.
      checkpoint_id / checkpoint_hash: the verified checkpoint the verification started
        from (``verify --checkpoint``), or None when it went over the whole chain.
      verified_entries: the entries the verification read (after the checkpoint, if any).
    """

    anchor_id: int | None
    anchor_hash: str | None
    anchor_date: dt.date | None
    entries_as_of: int
    project_entries: int
    project_postings: int
    verify_ok: bool
    verify_problem: str | None
    checkpoint_id: int | None = None
    checkpoint_hash: str | None = None
    verified_entries: int = 0


@dataclass(frozen=True)
class AuditPack:
    """The whole pack, ready to render.

    Attributes:
      balances: ``project_balances`` at the as-of date: the numbers every summary must equal.
      cutoff_basis: why the as-of date is what it is, in Chinese.
    """

    code: str
    name: str
    as_of: dt.date
    cutoff_basis: str
    rules: Rules
    balances: dict[str, int]
    sections: tuple[Section, ...]
    integrity: Integrity

    @property
    def stem(self) -> str:
        return f"audit-{self.code}-{self.as_of.isoformat()}"

    @property
    def beancount_dir(self) -> str:
        return f"beancount-{self.code}-{self.as_of.isoformat()}"

    def tables(self) -> list[ReportTable]:
        return [t for s in self.sections for t in s.tables]


# --- scope: which project, which date ------------------------------------------------------


@dataclass
class Scope:
    """The project and everything about it as of the cut-off, read once."""

    project: Project
    rules: Rules
    as_of: dt.date
    cutoff_basis: str
    lanes: dict[int, str]
    parties: dict[str, Party]
    events: list  # rows of _events(), in chain order
    state: ProjectState
    met_on: dict[tuple[int | None, str], dt.date] = field(default_factory=dict)
    recorded: RecordedFacts = field(default_factory=RecordedFacts)  # facts auditors read, to the cut-off

    def party_name(self, uscc: str | None) -> str:
        party = self.parties.get(uscc or "")
        return party.name if party else (uscc or "")

    def lane_label(self, n: int | None) -> str:
        return f"L{n}" if n else ""


def audit_cutoff(session: Session, code: str) -> tuple[Project, dt.date, str]:
    """The project and its default audit cut-off: period end with approved extensions, or
    the termination/revocation date if earlier. Refuses an unknown project."""
    code = code.strip().upper()
    project = session.execute(select(Project).where(Project.code == code)).scalar_one_or_none()
    if project is None:
        raise Refusal("project_must_exist", f"project {code} does not exist; `jiebang projects` lists the codes.")
    folded = project_folds(session, [project])[code]
    months = folded.extension_months
    end = add_months(project.end_date, months)
    if folded.terminated_on is not None and folded.terminated_on < end:
        word = "终止" if folded.ended_by == "termination" else "撤销"
        return project, folded.terminated_on, f"项目{word}日期（早于实施期截止日 {end.isoformat()}）"
    basis = f"项目实施期截止日（含已批准延期 {months} 个月）" if months else "项目实施期截止日"
    return project, end, basis


def resolve_as_of(session: Session, code: str, as_of: dt.date | None) -> tuple[Project, dt.date, str]:
    """The project, the as-of date to use and its basis; refuses a date before approval."""
    project, cutoff, basis = audit_cutoff(session, code)
    if as_of is None or as_of == cutoff:
        return project, cutoff, basis
    if as_of < project.approval_date:
        raise Refusal(
            "as_of_must_follow_approval",
            f"as-of date {as_of} is before project {project.code}'s approval on {project.approval_date}; "
            f"give --as-of on or after it, or omit it for the audit cut-off {cutoff}.",
        )
    return project, as_of, f"指定截止日（默认审计截止日为 {cutoff.isoformat()}：{basis}）"


def _reversed_ids(session: Session, code: str, as_of: dt.date | None) -> set[int]:
    """Entries of the project reversed by a reversal dated on or before ``as_of``."""
    query = select(JournalEntry.reverses_id).where(JournalEntry.project_code == code, JournalEntry.reverses_id.is_not(None))
    if as_of is not None:
        query = query.where(JournalEntry.value_date <= as_of)
    return set(session.scalars(query))


def _events(session: Session, code: str, as_of: dt.date, reversed_ids: set[int]) -> list:
    rows = session.execute(
        select(
            ProjectEvent.entry_id, ProjectEvent.value_date, ProjectEvent.kind, ProjectEvent.lane_no, ProjectEvent.stage,
            ProjectEvent.passed, ProjectEvent.tranche_id, ProjectEvent.reference, ProjectEvent.payload,
            JournalEntry.voucher, JournalEntry.memo, JournalEntry.trace,
        )
        .join(JournalEntry, JournalEntry.id == ProjectEvent.entry_id)
        .where(ProjectEvent.project_code == code, ProjectEvent.value_date <= as_of)
        .order_by(ProjectEvent.entry_id)
    ).all()
    return [r for r in rows if r.entry_id not in reversed_ids]


def load_scope(session: Session, code: str, as_of: dt.date | None = None) -> Scope:
    project, as_of, basis = resolve_as_of(session, code, as_of)
    code = project.code
    rules = pinned_rules(project)
    lanes = dict(session.execute(select(Lane.lane_no, Lane.solver_uscc).where(Lane.project_code == code)).all())
    usccs = {project.demand_uscc, *lanes.values()}
    parties = {p.uscc: p for p in session.scalars(select(Party).where(Party.uscc.in_(usccs)))}
    events = _events(session, code, as_of, _reversed_ids(session, code, as_of))
    state = project_state(project, rules, lanes, project_folds(session, [project], as_of)[code])
    return Scope(project, rules, as_of, basis, lanes, parties, events, state, state.met_on, project_facts(session, code, as_of))


# --- postings: one grouped aggregate and one ordered stream -------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One posting on a project account, with what the tables need of its entry."""

    entry_id: int
    value_date: dt.date
    kind: str
    voucher: str | None
    memo: str
    account: str
    family: str | None
    book: str
    lane_uscc: str | None
    amount_fen: int
    category: str | None
    source: str | None
    event_lane: int | None
    payload: str | None


def _aggregate(session: Session, code: str, as_of: dt.date) -> pd.DataFrame:
    """Debits and credits per project account, entry kind and budget category, in SQL."""
    debit = func.sum(case((Posting.amount_fen > 0, Posting.amount_fen), else_=0))
    credit = func.sum(case((Posting.amount_fen < 0, -Posting.amount_fen), else_=0))
    rows = session.execute(
        select(Account.name, Account.book, Account.lane, JournalEntry.kind, Posting.budget_category,
               debit.label("debit"), credit.label("credit"), func.count().label("n"))
        .select_from(Posting)
        .join(Account, Account.id == Posting.account_id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(Account.project_code == code, Posting.value_date <= as_of)
        .group_by(Account.name, Account.book, Account.lane, JournalEntry.kind, Posting.budget_category)
    ).all()
    frame = pd.DataFrame.from_records(
        [(r.name, r.book, r.lane, r.kind, r.budget_category, int(r.debit), int(r.credit), int(r.n)) for r in rows],
        columns=["account", "book", "lane", "kind", "category", "debit", "credit", "n"],
    )
    frame["family"] = [chart.family_of(a) for a in frame["account"]]
    return frame


def _legs(session: Session, code: str, as_of: dt.date):
    """Stream the project's postings up to the cut-off in date, entry and posting order."""
    rows = session.execute(
        select(
            Posting.entry_id, Posting.value_date, JournalEntry.kind, JournalEntry.voucher, JournalEntry.memo,
            Account.name, Posting.book, Account.lane, Posting.amount_fen, Posting.budget_category, Posting.fund_source,
            ProjectEvent.lane_no, ProjectEvent.payload,
        )
        .select_from(Posting)
        .join(Account, Account.id == Posting.account_id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .outerjoin(ProjectEvent, ProjectEvent.entry_id == Posting.entry_id)
        .where(Account.project_code == code, Posting.value_date <= as_of)
        .order_by(Posting.value_date, Posting.entry_id, Posting.id),
        execution_options={"yield_per": STREAM_BATCH},
    )
    for r in rows:
        yield Leg(r.entry_id, r.value_date, r.kind, r.voucher, r.memo or "", r.name, chart.family_of(r.name), r.book,
                  r.lane, int(r.amount_fen), r.budget_category, r.fund_source, r.lane_no, r.payload)


# --- helpers ------------------------------------------------------------------------------


def rate_percent(numerator_fen: int | None, denominator_fen: int | None) -> Decimal | None:
    """numerator / denominator in percent, two decimals, ROUND_HALF_UP; None when undefined."""
    if numerator_fen is None or not denominator_fen:
        return None
    return (Decimal(numerator_fen) * 100 / Decimal(denominator_fen)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _frame(columns: tuple[Column, ...], rows: list[dict]) -> pd.DataFrame:
    keys = [c.key for c in columns] + ["_role", "_group"]
    records = [[row.get(k, "item" if k == "_role" else None) for k in keys] for row in rows]
    # dtype=object keeps whole fen as Python ints (never floats) and dates as dates.
    return pd.DataFrame(records, columns=keys, dtype=object)


def _table(sheet: str, title: str, columns: tuple[Column, ...], rows: list[dict], notes: tuple[str, ...] = ()) -> ReportTable:
    return ReportTable(sheet, title, columns, _frame(columns, rows), notes)


def _lane_segment(account: str) -> int | None:
    for part in account.split(":"):
        if len(part) > 1 and part[0] == "L" and part[1:].isdigit():
            return int(part[1:])
    return None


def _category_of_account(account: str) -> str | None:
    segments = {v: k for k, v in chart.CATEGORY_SEGMENTS.items()}
    return segments.get(account.rsplit(":", 1)[-1])


def _family(agg: pd.DataFrame, family: str) -> list[dict]:
    """The aggregate rows of one account family, as dicts of Python values."""
    return agg[agg["family"] == family].to_dict("records")


def _sum(rows: list[dict], key: str) -> int:
    return sum(r[key] for r in rows if r.get("_role", "item") == "item" and r.get(key) is not None)


# --- 一、项目基本情况 -------------------------------------------------------------------------


def _profile(scope: Scope) -> Section:
    p, rules, state = scope.project, scope.rules, scope.state
    status = ("已撤销" if any(e.kind == "revocation" for e in scope.events) else "已终止") if state.terminated_on else "执行中"
    if any(e.kind == "stage" and e.stage == "acceptance" and e.passed for e in scope.events):
        status = "已验收"
    if state.closed_on:
        status = f"已结题（{state.closed_on.isoformat()}）"
    columns = (Column("item", "项目\nItem", "long", 1.5), Column("value", "内容\nValue", "long", 3.3), Column("amount", "金额（元）\nAmount (CNY)", "amount", 1.1, ""))
    rows = [
        {"item": "项目编号 Project code", "value": p.code},
        {"item": "项目名称 Name", "value": p.name},
        {"item": "城市 City", "value": rules.city_name},
        {"item": "政策依据 Rules", "value": f"{rules.document}；规则版本 {rules.version}"},
        {"item": "项目类别 Category", "value": PROJECT_CATEGORY_ZH.get(p.category, p.category)},
        {"item": "组织方式 Mode", "value": MODE_ZH.get(p.mode, p.mode)},
        {"item": "立项日期 Approved", "value": p.approval_date.isoformat()},
        {"item": "实施期 Period", "value": f"{p.start_date.isoformat()} 至 {p.end_date.isoformat()}"},
        {"item": "截至截止日的实施期 Period with extensions", "value": f"{p.start_date.isoformat()} 至 {state.end_date.isoformat()}（延期 {state.extensions} 次，共 {state.extension_months} 个月）"},
        {"item": "截止日状态 Status", "value": status + (f"（{state.terminated_on.isoformat()}）" if state.terminated_on else "")},
        {"item": "预算年度 Budget year", "value": str(p.budget_year)},
        {"item": "研发总投入 Total R&D investment", "amount": p.total_investment_fen},
        {"item": "批复财政资助 / 补助上限 Approved grant or subsidy ceiling", "amount": p.approved_grant_fen},
        {"item": "审计截止日 Audit cut-off", "value": f"{scope.as_of.isoformat()}：{scope.cutoff_basis}"},
    ]
    approval = next((json.loads(e.trace or "{}") for e in scope.events if e.kind == "approval"), {})
    used = approval.get("party_facts_used", {})

    def facts_used(uscc: str) -> str:
        fact = used.get(uscc)
        if isinstance(fact, dict):
            return f"{fact['year']} 年度数据（分录 {fact['entry']}）"
        return "登记时数据" if fact else ""

    override = approval.get("registration_override")
    if override:
        rows.append({"item": "注册地例外 Registration override",
                     "value": f"需求方登记机关区划 {override['division']}：{override['reason']}"})
    recorded = scope.recorded
    rows += _recorded_rows(scope, recorded)
    overview = _table("1 基本情况", "（一）项目概况 Project profile", columns, rows)

    party_columns = (
        Column("role", "角色\nRole", "text", 1.0), Column("lane", "车道\nLane", "text", 0.5),
        Column("name", "单位名称\nName", "long", 2.4), Column("uscc", "统一社会信用代码\nUSCC", "text", 1.6),
        Column("kind", "类型\nKind", "text", 0.8), Column("status", "截止日状态\nStatus", "long", 1.4),
        Column("facts", "立项审核所用单位数据\nFacts used at approval", "long", 1.6),
    )
    party_rows = [{"role": "需求方（发榜方）", "lane": "", "name": scope.party_name(p.demand_uscc), "uscc": p.demand_uscc,
                   "kind": PARTY_KIND_ZH.get(getattr(scope.parties.get(p.demand_uscc), "kind", ""), ""), "status": "",
                   "facts": facts_used(p.demand_uscc)}]
    for n, uscc in sorted(scope.lanes.items()):
        if state.terminated_on:
            lane_status = f"项目终止 {state.terminated_on.isoformat()}"
        elif n in state.eliminated:
            lane_status = f"已淘汰 {state.eliminated[n].isoformat()}"
        else:
            lane_status = "执行中"
        party_rows.append({"role": "揭榜方", "lane": f"L{n}", "name": scope.party_name(uscc), "uscc": uscc,
                           "kind": PARTY_KIND_ZH.get(getattr(scope.parties.get(uscc), "kind", ""), ""), "status": lane_status,
                           "facts": facts_used(uscc)})
    parties = _table("1 参与单位", "（二）参与单位 Parties", party_columns, party_rows)

    change_columns = (
        Column("date", "日期\nDate", "date", 0.8), Column("event", "事项\nEvent", "text", 1.3), Column("lane", "车道\nLane", "text", 0.45),
        Column("result", "结果\nResult", "long", 1.8), Column("reference", "文号\nReference", "long", 1.6),
        Column("voucher", "凭证号\nVoucher", "long", 1.5), Column("entry", "分录号\nEntry", "int", 0.55),
    )
    change_rows = []
    for e in scope.events:
        if e.kind == "stage":
            event = STAGE_ZH.get(e.stage, e.stage or "")
            result = "通过" if e.passed else ("未通过（淘汰）" if e.stage == "stage_assessment" else "未通过")
        elif e.kind == "extension":
            months = json.loads(e.payload or "{}").get("months", 0)
            trace = json.loads(e.trace or "{}")
            event, result = "延期", f"延期 {months} 个月，实施期截止日 {trace.get('end_before', '')} → {trace.get('end_after', '')}"
            reason = json.loads(e.payload or "{}").get("reason")
            result += f"；延期理由：{reason}" if reason else ""
        elif e.kind in ("termination", "revocation", "elimination", "closure"):
            event, result = KIND_ZH[e.kind], CHANGE_RESULT_ZH[e.kind]
        else:
            continue
        change_rows.append({"date": e.value_date, "event": event, "lane": scope.lane_label(e.lane_no), "result": result,
                            "reference": e.reference or "", "voucher": e.voucher or "", "entry": e.entry_id})
    changes = _table("1 进程及变更", "（三）实施进程及变更（延期、淘汰、终止） Stages and changes", change_columns, change_rows,
                     () if change_rows else ("截至截止日无阶段事项或变更记录。",))
    return Section("一、项目基本情况", (), (overview, parties, changes, _locked_changes_table(recorded)))


# --- facts auditors read (issue 14 points 7 and 9) ----------------------------------------

PRINCIPLE_EXCEEDED_ZH = {
    "approval.demand_min_revenue": lambda limit, actual: f"立项：发榜方上一年度主营业务收入低于原则上应达到的 {_yuan_text(limit)} 元（见金额栏）",
    "approval.max_period_years": lambda limit, actual: f"立项：实施期 {actual.replace('..', ' 至 ')}，超过原则上不超过的 {limit} 年",
    "approval.saima_max_racers": lambda limit, actual: f"立项：参与赛马的揭榜方 {actual} 家，超过原则上不超过的 {limit} 家",
    "approval.max_extensions": lambda limit, actual: f"延期：第 {actual} 次延期，超过原则上不超过的 {limit} 次",
    "approval.max_extension_years": lambda limit, actual: f"延期：延期 {actual} 个月，超过原则上不超过的 {limit} 个月",
}
LOCKED_FACT_ZH = {"pi": "项目负责人", "indicators": "考核指标", "project_manager": "项目经理人", "owner_letter": "业主责任书"}
NOT_RECORDED = "未记录"


def _yuan_text(text: str) -> str:
    return format_fen_grouped(_fen(text))


def _fact_zh(name: str, value) -> str:
    if not value:
        return NOT_RECORDED
    if name == "indicators":
        return "；".join(f"{i}. {text}" for i, text in enumerate(value, start=1))
    if name == "owner_letter":
        return f"文号 {value['reference']}" + (f"，签订日期 {value['date']}" if value.get("date") else "")
    return str(value)


def _recorded_rows(scope: Scope, recorded: RecordedFacts) -> list[dict]:
    """Profile rows: the PI and indicators (and the Urumqi 业主责任书 and 项目经理人 where the
    project has them), who ran the acceptance, the audit firm and fee, and each exception."""
    rows = []
    urumqi_style = scope.rules.funding.model == "bid_subsidy" or recorded.project_manager or recorded.owner_letter
    names = ("pi", "indicators", "owner_letter", "project_manager") if urumqi_style else ("pi", "indicators")
    for name in names:
        value = _fact_zh(name, getattr(recorded, name))
        changed = sum(1 for c in recorded.changes if c["field"] == name)
        rows.append({"item": f"{LOCKED_FACT_ZH[name]} {name.replace('_', ' ').title() if name != 'pi' else 'PI'}",
                     "value": value + (f"（立项后变更 {changed} 次，见“（四）立项锁定事项变更”）" if changed else "")})
    for a in recorded.acceptances:
        rows.append({"item": "验收组织单位 Acceptance run by",
                     "value": f"{a['date'].isoformat()} 验收{'通过' if a['passed'] else '未通过'}：{a['accepted_by'] or NOT_RECORDED}"})
    for a in recorded.audit_reports:
        rows.append({"item": "专项审计 Audit firm and fee",
                     "value": f"{a['date'].isoformat()} 专项审计报告：会计师事务所 {a['audit_firm'] or NOT_RECORDED}；审计费用见金额栏"
                     if a["audit_fee_fen"] is not None else
                     f"{a['date'].isoformat()} 专项审计报告：会计师事务所 {a['audit_firm'] or NOT_RECORDED}；审计费用{NOT_RECORDED}",
                     "amount": a["audit_fee_fen"]})
    for x in recorded.exceptions:
        describe = PRINCIPLE_EXCEEDED_ZH[x["key"]]  # the loader admits principle = true only on these keys
        rows.append({"item": "例外事项 Exception to a principle (原则上) limit",
                     "value": f"{describe(x['limit'], x['actual'])}。依据：{x['reference']}，理由：{x['reason']}"
                              f"（{basis_zh(scope.rules, x['key'])}；分录 {x['entry']}）",
                     "amount": _fen(x["actual"]) if x["key"] == "approval.demand_min_revenue" else None})
    return rows


def _locked_changes_table(recorded: RecordedFacts) -> ReportTable:
    """（四）: each change of a fact locked at approval, with the approval that allowed it."""
    columns = (
        Column("date", "日期\nDate", "date", 0.8), Column("fact", "事项\nFact", "text", 0.9),
        Column("before", "变更前\nBefore", "long", 1.8), Column("after", "变更后\nAfter", "long", 1.8),
        Column("reference", "批准文号\nApproval", "long", 1.3), Column("reason", "理由\nReason", "long", 1.5),
        Column("entry", "分录号\nEntry", "int", 0.55),
    )
    rows = [{"date": c["date"], "fact": LOCKED_FACT_ZH[c["field"]], "before": _fact_zh(c["field"], c["before"]),
             "after": _fact_zh(c["field"], c["after"]), "reference": c["reference"] or "", "reason": c["reason"] or "",
             "entry": c["entry"]} for c in recorded.changes]
    note = () if rows else ("立项后项目负责人、考核指标等锁定事项无变更。",)
    return _table("1 锁定事项变更", "（四）立项锁定事项变更（项目负责人、考核指标等） Changes to facts locked at approval", columns, rows, note)


# --- 二、资金到位情况 -------------------------------------------------------------------------


def _arrival(scope: Scope, lane_balances: dict[int, dict[str, int]], balances: dict[str, int], due_fiscal: dict[int, int]) -> Section:
    staged = scope.rules.funding.model == "staged_grant"
    columns = (
        Column("source", "资金来源\nSource", "text", 1.3), Column("lane", "车道\nLane", "text", 0.45),
        Column("party", "单位\nParty", "long", 2.0), Column("committed", "批复/承诺数\nCommitted", "amount", 1.1),
        Column("due", "应到位\nDue", "amount", 1.1), Column("arrived", "实际到位\nArrived", "amount", 1.1),
        Column("rate", "到位率%\nArrival rate", "rate", 0.7),
    )
    rows = []
    fiscal_label = "市财政资助" if staged else "市财政补助（后补助）"
    for n in sorted(scope.lanes):
        lb = lane_balances[n]
        arrived = lb["grant_released"]
        due = due_fiscal[n] if staged else lb["subsidy_earned"]
        recipient = scope.lanes[n] if staged or scope.rules.funding.subsidy_recipient != "demand" else scope.project.demand_uscc
        rows.append({"source": fiscal_label, "lane": f"L{n}", "party": scope.party_name(recipient), "committed": lb["grant_obligated"],
                     "due": due, "arrived": arrived, "rate": rate_percent(arrived, due), "_group": "fiscal"})
    if len(scope.lanes) > 1:
        fiscal = [r for r in rows if r["_group"] == "fiscal"]
        due, arrived = _sum(fiscal, "due"), _sum(fiscal, "arrived")
        rows.append({"source": fiscal_label + " 小计", "committed": _sum(fiscal, "committed"), "due": due, "arrived": arrived,
                     "rate": rate_percent(arrived, due), "_role": "subtotal", "_group": "fiscal"})
    pledged, contributed = balances["self_funding_pledged"], balances["self_funding_contributed"]
    rows.append({"source": "单位自筹", "lane": "", "party": scope.party_name(scope.project.demand_uscc), "committed": pledged,
                 "due": pledged, "arrived": contributed, "rate": rate_percent(contributed, pledged), "_group": "self"})
    for n in sorted(scope.lanes):
        lb = lane_balances[n]
        paid = lb["bid_paid_cash"] + lb["bid_paid_equity"] + lb["bid_paid_in_kind"]
        if lb["bid_contracted"] or paid:
            rows.append({"source": "揭榜金额（需求方拨付揭榜方）", "lane": f"L{n}", "party": scope.party_name(scope.lanes[n]),
                         "committed": lb["bid_contracted"], "due": lb["bid_contracted"], "arrived": paid,
                         "rate": rate_percent(paid, lb["bid_contracted"]), "_group": "bid"})
    notes = (
        "到位率 = 实际到位 ÷ 应到位，以百分比列示，四舍五入（ROUND_HALF_UP）保留两位小数；应到位为零时不计算（—）。",
        ("市财政应到位 = 截至截止日拨付条件已全部满足的各期资助额（已拨付或可拨付；已取消的期次不计）；批复数为截至截止日的财政承诺（终止、淘汰后已核减）。"
         if staged else
         "市财政应到位 = 截至截止日按现金拨付的揭榜金额计提的补助（后补助）；批复数为补助上限（合同揭榜金额 × 上限比例）。"),
        "单位自筹应到位 = 承诺总额（自投研发资金承诺函未约定分期）；揭榜金额应到位 = 合同揭榜金额，实际到位含现金、技术入股与实物。",
    )
    table = _table("2 资金到位", "资金到位情况表 Fund arrival by source", columns, rows, notes)
    return Section("二、资金到位情况", (), (table,))


def _with_investment_check(section: Section, scope: Scope, balances: dict[str, int]) -> Section:
    """The arrival section with the actual total investment set against the approval's."""
    return Section(section.heading, section.intro, (*section.tables, _investment_check(scope, balances)))


def _investment_check(scope: Scope, balances: dict[str, int]) -> ReportTable:
    """Issue 14 point 8: at acceptance, the actual total investment against the approved total
    and the rules' floor (``approval.min_total_investment``), with any shortfall flagged.

    What counts follows each text: Jiangmen's 研发总投入 is the project's whole R&D money, so
    self-funding arrived plus the fiscal grant released; Urumqi's 项目总投入 is “项目单位自主投入的
    小试、中试和拨付揭榜单位的研发投入资金总和” (S2 二(一)), so self-funding arrived plus the bid
    money paid to the solvers in cash."""
    p, rules, state = scope.project, scope.rules, scope.state
    staged = rules.funding.model == "staged_grant"
    contributed = balances["self_funding_contributed"]
    other = balances["grant_released"] if staged else balances["bid_paid_cash"]
    actual = contributed + other
    accepted_on = state.met_on.get((None, "acceptance_passed")) or state.acceptance_failed_on
    columns = (Column("item", "项目\nItem", "long", 2.2), Column("amount", "金额（元）\nAmount (CNY)", "amount", 1.1),
               Column("gap", "差额（元）\nShortfall (CNY)", "amount", 1.1), Column("finding", "结论\nFinding", "long", 2.6))

    def compare(label: str, threshold: int) -> dict:
        gap = threshold - actual
        if accepted_on is None:
            finding = "尚未验收，验收时比对"
        elif gap > 0:
            finding = f"不足：验收时实际研发总投入低于{label}"
        else:
            finding = f"已达到{label}"
        # A shortfall is emphasised (bold, shaded) as a row of its own group, so no formula sums it.
        flagged = accepted_on is not None and gap > 0
        return {"item": label, "amount": threshold, "gap": max(0, gap), "finding": finding,
                "_role": "subtotal" if flagged else "item", "_group": f"flag:{label}" if flagged else "threshold"}

    rows = [
        {"item": "单位自筹实际到位", "amount": contributed, "_group": "actual"},
        {"item": "市财政资助已拨付" if staged else "需求方以现金拨付揭榜方的揭榜金额", "amount": other, "_group": "actual"},
        {"item": "实际研发总投入（截至截止日）", "amount": actual, "_role": "subtotal", "_group": "actual"},
        compare("批复研发总投入", p.total_investment_fen),
        compare("政策规定的研发总投入下限", rules.approval.min_total_investment_fen),
    ]
    basis = basis_zh(rules, "approval.min_total_investment")
    notes = (
        ("实际研发总投入 = 单位自筹实际到位 + 市财政资助已拨付（研发总投入为项目全部研发资金）。" if staged else
         "实际项目总投入 = 单位自筹实际到位 + 需求方以现金拨付揭榜方的揭榜金额（项目单位自主投入与拨付揭榜单位的研发投入资金总和；技术入股、实物不计）。"),
        (f"验收日期 {accepted_on.isoformat()}；差额为门槛减实际投入，未达门槛的行加粗列示。" if accepted_on is not None
         else "截至截止日尚未记录验收结果，以上为截止日数据，不作结论。"),
        f"依据：{basis}。",
    )
    return _table("2 总投入比对", "验收时研发总投入与立项门槛比对 Total investment at acceptance against the threshold", columns, rows, notes)


def _due_fiscal(scope: Scope, views) -> dict[int, int]:
    due = {n: 0 for n in scope.lanes}
    for v in views:
        if v.basis == "grant_share" and v.status in ("released", "eligible"):
            due[v.lane_no] += v.amount_fen
    return due


# --- 三、预算执行情况 -------------------------------------------------------------------------


NO_CITY_BUDGET = "未按科目批复"
NO_SELF_BUDGET = "承诺未列科目"


def approved_budget(scope: Scope) -> dict[tuple[str, str], int]:
    """The approved budget by (source, category) recorded with the approval, or {} when the
    approval carries none (it is in the approval's hashed facts, folded into its event)."""
    for e in scope.events:
        if e.kind == "approval":
            return {(s, c): int(f) for s, c, f in json.loads(e.payload or "{}").get("budget", [])}
    return {}


def _budget(scope: Scope, agg: pd.DataFrame, balances: dict[str, int]) -> Section:
    staged = scope.rules.funding.model == "staged_grant"
    columns = (
        Column("source", "资金来源\nSource", "text", 1.2), Column("category", "预算科目\nCategory", "long", 1.0),
        Column("budget", "预算数\nBudget", "amount", 1.1), Column("adjusted", "调整后预算\nAdjusted budget", "amount", 1.1),
        Column("arrived", "到位\nArrived", "amount", 1.1), Column("spent", "实际支出\nSpent", "amount", 1.1),
        Column("rate", "执行率%\nExecution rate", "rate", 0.75), Column("balance", "结余\nBalance", "amount", 1.1),
    )
    approved = approved_budget(scope)
    city_budget = {c: f for (s, c), f in approved.items() if s == "city_fiscal"}
    self_budget = {c: f for (s, c), f in approved.items() if s == "self_funded"}
    rows: list[dict] = []
    notes = ["执行率 = 实际支出 ÷ 调整后预算；结余 = 到位 − 实际支出；百分比四舍五入保留两位小数。"]
    spent_by_cat = {c: 0 for c in CATEGORY_ZH}
    for r in _family(agg, "grant_spent"):
        spent_by_cat[_category_of_account(r["account"])] += r["debit"] - r["credit"]
    adjusted, arrived, total_spent = balances["grant_obligated"], balances["grant_released"], balances["fiscal_spent"]
    if staged:
        unchanged = adjusted == scope.project.approved_grant_fen
        for cat, zh in CATEGORY_ZH.items():
            budget = city_budget.get(cat, 0) if city_budget else NO_CITY_BUDGET
            row_adjusted = budget if city_budget and unchanged else None
            rows.append({"source": "市财政", "category": zh, "budget": budget, "adjusted": row_adjusted,
                         "spent": spent_by_cat[cat], "rate": rate_percent(spent_by_cat[cat], row_adjusted), "_group": "fiscal"})
        rows.append({"source": "市财政 小计", "category": "", "budget": scope.project.approved_grant_fen, "adjusted": adjusted,
                     "arrived": arrived, "spent": total_spent, "rate": rate_percent(total_spent, adjusted),
                     "balance": arrived - total_spent, "_role": "subtotal", "_group": "fiscal"})
        if city_budget:
            notes.append("市财政预算数取立项批复的分科目预算（记入立项分录）；财政资金按期拨付、不分科目到位，故到位与结余只列小计。"
                         + ("" if unchanged else "项目终止或淘汰后财政承诺已核减，核减未按科目分配，故调整后预算与执行率只列小计。"))
        else:
            notes.append("立项批复未列分科目的财政预算，各科目预算数记为“未按科目批复”，执行率只按小计计算（实际支出 ÷ 调整后预算）；"
                         "市财政预算数取批复资助额，调整后预算取截至截止日的财政承诺（终止、淘汰核减后）。")
        notes.append("实际支出为按科目报告的合规支出；终止时认定的违规使用金额已从支出转入追回，见第六部分。")
    else:
        rows.append({"source": "市财政补助（后补助）", "category": "不分科目", "budget": scope.project.approved_grant_fen,
                     "adjusted": adjusted, "arrived": arrived, "_group": "fiscal_subsidy"})
        notes.append("乌鲁木齐市财政补助为后补助，按需求方现金拨付揭榜金额计提，不按预算科目报支，故不计算执行率与结余；"
                     "预算数为补助上限。")

    pledged_by_cat: dict[str | None, int] = defaultdict(int)
    for r in _family(agg, "self_funding_pledged"):
        pledged_by_cat[r["category"] if r["category"] in CATEGORY_ZH else None] += r["credit"] - r["debit"]
    contributed_by_cat: dict[str | None, int] = defaultdict(int)
    for r in _family(agg, "self_funding_contributed"):
        contributed_by_cat[_category_of_account(r["account"])] += r["debit"] - r["credit"]
    pledged_total = sum(pledged_by_cat.values())
    unclassified = pledged_by_cat.get(None, 0)
    by_pledge = any(pledged_by_cat.get(c) for c in CATEGORY_ZH)
    for cat, zh in CATEGORY_ZH.items():
        got = contributed_by_cat.get(cat, 0)
        if self_budget:
            budget = self_budget.get(cat, 0)
        elif by_pledge:
            budget = pledged_by_cat.get(cat, 0)
        else:
            budget = NO_SELF_BUDGET
        numeric = budget if isinstance(budget, int) else None
        rows.append({"source": "单位自筹", "category": zh, "budget": budget, "adjusted": numeric, "arrived": got, "spent": got,
                     "rate": rate_percent(got, numeric), "balance": 0, "_group": "self"})
    if not self_budget and unclassified:
        rows.append({"source": "单位自筹", "category": "承诺函未分科目部分", "budget": unclassified, "adjusted": unclassified,
                     "arrived": None, "spent": None, "_group": "self"})
    self_rows = [r for r in rows if r["_group"] == "self"]
    budget = sum(self_budget.values()) if self_budget else pledged_total
    got = _sum(self_rows, "spent")
    rows.append({"source": "单位自筹 小计", "category": "", "budget": budget, "adjusted": budget, "arrived": got, "spent": got,
                 "rate": rate_percent(got, budget), "balance": 0, "_role": "subtotal", "_group": "self"})
    if self_budget:
        notes.append(f"单位自筹预算数取立项批复的分科目自筹预算（合计 {format_fen_grouped(sum(self_budget.values()))} 元）；"
                     f"自投研发资金承诺函承诺 {format_fen_grouped(pledged_total)} 元。")
    elif unclassified:
        notes.append(f"自投研发资金承诺函中 {format_fen_grouped(unclassified)} 元未列预算科目，单列为“承诺函未分科目部分”；"
                     "自筹到位按到位凭证所列科目计入各科目行，故各科目不计算执行率，小计的执行率 = 全部自筹到位 ÷ 承诺总额。")
    else:
        notes.append("单位自筹预算数取自投研发资金承诺函所列科目。")
    notes.append("单位自筹的到位与实际支出均取按科目提供凭证的自筹到位额，故结余为零。")
    table = _table("3 预算执行", "预算执行情况表 Budget execution by category and source", columns, rows, tuple(notes))
    return Section("三、预算执行情况", (), (table,))


# --- 四、外拨 ---------------------------------------------------------------------------------


def _transfers(scope: Scope, bid_legs: list[Leg], lane_balances: dict[int, dict[str, int]]) -> Section:
    columns = (
        Column("date", "日期\nDate", "date", 0.8), Column("voucher", "凭证号\nVoucher", "long", 1.5),
        Column("kind", "业务\nKind", "text", 0.9), Column("lane", "车道\nLane", "text", 0.45),
        Column("name", "收款单位（揭榜方）\nSolver", "long", 1.9), Column("uscc", "统一社会信用代码\nUSCC", "text", 1.5),
        Column("form", "形式\nForm", "text", 1.2), Column("amount", "金额\nAmount", "amount", 1.1), Column("entry", "分录号\nEntry", "int", 0.55),
    )
    segments = {v: k for k, v in chart.PAYMENT_FORM_SEGMENTS.items()}
    rows = []
    for leg in bid_legs:
        n = _lane_segment(leg.account)
        form = segments[leg.account.split(":")[3]]
        rows.append({"date": leg.value_date, "voucher": leg.voucher or "", "kind": KIND_ZH.get(leg.kind, leg.kind), "lane": f"L{n}",
                     "name": scope.party_name(scope.lanes.get(n)), "uscc": scope.lanes.get(n, ""), "form": FORM_ZH[form],
                     "amount": leg.amount_fen, "entry": leg.entry_id})
    if rows:
        rows.append({"date": None, "voucher": "合计 Total", "amount": _sum(rows, "amount"), "_role": "total"})
    detail = _table("4 外拨明细", "（一）揭榜金额拨付明细 Bid payments to solvers", columns, rows,
                    () if rows else ("截至截止日无揭榜金额拨付记录。",))

    sum_columns = (
        Column("lane", "车道\nLane", "text", 0.45), Column("name", "揭榜方\nSolver", "long", 2.0),
        Column("contracted", "合同金额\nContracted", "amount", 1.1), Column("cash", "现金\nCash", "amount", 1.1),
        Column("equity", "技术入股\nEquity", "amount", 1.1), Column("in_kind", "实物\nIn kind", "amount", 1.1),
        Column("paid", "已付合计\nPaid", "amount", 1.1), Column("unpaid", "未付\nUnpaid", "amount", 1.1),
    )
    sum_rows = []
    for n in sorted(scope.lanes):
        lb = lane_balances[n]
        paid = lb["bid_paid_cash"] + lb["bid_paid_equity"] + lb["bid_paid_in_kind"]
        sum_rows.append({"lane": f"L{n}", "name": scope.party_name(scope.lanes[n]), "contracted": lb["bid_contracted"],
                         "cash": lb["bid_paid_cash"], "equity": lb["bid_paid_equity"], "in_kind": lb["bid_paid_in_kind"],
                         "paid": paid, "unpaid": lb["bid_unpaid"]})
    if len(sum_rows) > 1:
        sum_rows.append({"lane": "合计", **{k: _sum(sum_rows, k) for k in ("contracted", "cash", "equity", "in_kind", "paid", "unpaid")},
                         "_role": "total"})
    summary = _table("4 外拨汇总", "（二）按揭榜方汇总 By solver", sum_columns, sum_rows,
                     ("付款方为需求方；冲销分录以负数列示，合计与各科目余额一致。",))
    return Section("四、外拨资金（揭榜金额拨付）", (), (detail, summary))


# --- 五、补助计算及拨付记录 ------------------------------------------------------------------


def _subsidy_tables(scope: Scope, lane_balances, bid_legs: list[Leg], accrual_legs: list[Leg]) -> list[ReportTable]:
    rules = scope.rules
    f = rules.funding
    rate, cap_rate = f.subsidy_rate, f.subsidy_cap_rate_of_contract
    columns = (
        Column("lane", "车道\nLane", "text", 0.45), Column("name", "揭榜方\nSolver", "long", 1.6),
        Column("contracted", "合同揭榜金额\nContracted", "amount", 1.1), Column("base", "现金累计基数\nCash base", "amount", 1.1),
        Column("excluded", "排除额\nExcluded", "amount", 1.0), Column("rate", "补助比例%\nRate", "rate", 0.8),
        Column("by_rate", "按比例计算\nRate × base", "amount", 1.05), Column("cap", "合同上限\nCap", "amount", 1.05),
        Column("entitled", "应享补助\nEntitled", "amount", 1.05), Column("earned", "已计提\nEarned", "amount", 1.05),
        Column("released", "已拨付\nReleased", "amount", 1.05), Column("payable", "应付未付\nPayable", "amount", 1.05),
    )
    rows = []
    for n in sorted(scope.lanes):
        lb = lane_balances[n]
        by_rate = apply_rate(lb["bid_paid_cash"], rate, rounding=ROUND_HALF_UP)
        cap = apply_rate(lb["bid_contracted"], cap_rate, rounding=ROUND_HALF_UP)
        rows.append({"lane": f"L{n}", "name": scope.party_name(scope.lanes[n]), "contracted": lb["bid_contracted"],
                     "base": lb["bid_paid_cash"], "excluded": lb["bid_paid_equity"] + lb["bid_paid_in_kind"],
                     "rate": (rate * 100).quantize(Decimal("0.01")), "by_rate": by_rate, "cap": cap, "entitled": min(by_rate, cap),
                     "earned": lb["subsidy_earned"], "released": lb["subsidy_released"], "payable": lb["subsidy_payable"]})
    notes = [
        f"应享补助 = min(四舍五入(补助比例 × 现金累计基数), 四舍五入(上限比例 × 合同揭榜金额))，四舍五入为 ROUND_HALF_UP 到分；依据：{basis_zh(rules, 'funding.subsidy_rate')}。",
        "已计提、已拨付、应付未付取自分录；已计提与应享补助不一致时，差额为终止时核销的应付未付补助或冲销。",
    ]
    computation = _table("5 补助计算", "（一）补助计算 Subsidy computation", columns, rows, tuple(notes))

    ex_columns = (
        Column("date", "日期\nDate", "date", 0.8), Column("voucher", "凭证号\nVoucher", "long", 1.6), Column("lane", "车道\nLane", "text", 0.45),
        Column("form", "形式\nForm", "text", 1.3), Column("amount", "金额\nAmount", "amount", 1.1),
        Column("reason", "排除理由\nWhy excluded", "long", 2.6), Column("entry", "分录号\nEntry", "int", 0.55),
    )
    segments = {v: k for k, v in chart.PAYMENT_FORM_SEGMENTS.items()}
    ex_rows = []
    for leg in bid_legs:
        form = segments[leg.account.split(":")[3]]
        if form in f.eligible_payment_forms:
            continue
        ex_rows.append({"date": leg.value_date, "voucher": leg.voucher or "", "lane": f"L{_lane_segment(leg.account)}", "form": FORM_ZH[form],
                        "amount": leg.amount_fen, "reason": EXCLUSION_REASON.get(form, "不属于补助基数的拨付形式"), "entry": leg.entry_id})
    if ex_rows:
        ex_rows.append({"voucher": "合计 Total", "amount": _sum(ex_rows, "amount"), "_role": "total"})
    exclusions = _table("5 补助排除项", "（二）不计入补助基数的拨付（逐笔） Exclusions, one by one", ex_columns, ex_rows,
                        (f"依据：{basis_zh(rules, 'funding.excluded_payment_forms')}。",) if ex_rows else ("截至截止日无不计入补助基数的拨付。",))

    ac_columns = (
        Column("date", "日期\nDate", "date", 0.8), Column("voucher", "凭证号\nVoucher", "long", 1.6), Column("kind", "业务\nKind", "text", 0.9),
        Column("lane", "车道\nLane", "text", 0.45), Column("amount", "计提/冲减\nAccrued", "amount", 1.1),
        Column("memo", "摘要\nMemo", "long", 2.4), Column("entry", "分录号\nEntry", "int", 0.55),
    )
    ac_rows = [{"date": leg.value_date, "voucher": leg.voucher or "", "kind": KIND_ZH.get(leg.kind, leg.kind),
                "lane": f"L{_lane_segment(leg.account)}", "amount": leg.amount_fen, "memo": leg.memo, "entry": leg.entry_id}
               for leg in accrual_legs]
    if ac_rows:
        ac_rows.append({"voucher": "合计 Total", "amount": _sum(ac_rows, "amount"), "_role": "total"})
    accruals = _table("5 补助计提", "（三）补助计提记录 Subsidy accruals (entry by entry)", ac_columns, ac_rows,
                      ("每笔现金拨付按累计基数重算应享补助，差额计提；合计等于已计提补助。",) if ac_rows else ("截至截止日无补助计提。",))
    return [computation, exclusions, accruals]


def _tranche_table(scope: Scope, views, release_legs: dict[int, dict[str, int]]) -> ReportTable:
    columns = (
        Column("lane", "车道\nLane", "text", 0.45), Column("seq", "期次\nNo.", "int", 0.4), Column("name", "名称\nTranche", "text", 0.85),
        Column("basis", "依据\nBasis", "text", 1.0), Column("scheduled", "计划金额/上限\nScheduled", "amount", 1.05),
        Column("conditions", "拨付条件（满足日期）\nConditions (met on)", "long", 2.3), Column("status", "状态\nStatus", "text", 0.6),
        Column("date", "拨付日期\nReleased on", "date", 0.8), Column("voucher", "拨付凭证\nVoucher", "long", 1.3),
        Column("released", "拨付金额(全额)\nPaid (gross)", "amount", 1.05),
        Column("treasury", "国库支付\nFrom treasury", "amount", 1.05),
        Column("offset", "追回款抵扣\nRecovery netted", "amount", 0.95),
        Column("entry", "分录号\nEntry", "int", 0.55),
    )
    releases = {e.tranche_id: e for e in scope.events if e.kind == "release" and e.tranche_id is not None}
    rows = []
    for v in views:
        parts = []
        for c in v.conditions:
            met = scope.met_on.get((v.lane_no, c)) or scope.met_on.get((None, c))
            parts.append(f"{CONDITION_ZH.get(c, c)}（{met.isoformat()}）" if met else f"{CONDITION_ZH.get(c, c)}（未满足）")
        e = releases.get(v.id)
        amounts = release_legs.get(e.entry_id, {}) if e else {}
        rows.append({
            "lane": f"L{v.lane_no}", "seq": v.seq, "name": TRANCHE_NAME_ZH.get(v.name, v.name), "basis": BASIS_ZH.get(v.basis, v.basis),
            "scheduled": v.amount_fen, "conditions": "；".join(parts), "status": TRANCHE_STATUS_ZH.get(v.status, v.status),
            "date": e.value_date if e else None, "voucher": e.voucher if e else "",
            "released": amounts.get("released", 0) if e else None, "offset": amounts.get("offset", 0) if e else None,
            "treasury": amounts.get("released", 0) - amounts.get("offset", 0) if e else None,
            "entry": e.entry_id if e else None,
        })
    staged = scope.rules.funding.model == "staged_grant"
    rows.append({"lane": "合计", "scheduled": _sum(rows, "scheduled") if staged else None,
                 "released": _sum(rows, "released"), "treasury": _sum(rows, "treasury"), "offset": _sum(rows, "offset"), "_role": "total"})
    notes = ["状态：已拨付 / 可拨付（条件已满足、尚未拨付）/ 待条件 / 已取消（终止或淘汰后不再拨付）；均按截止日判断。",
             ("拨付按全额列示；追回款抵扣只在规则允许时、限同一项目同一单位并经批准（批准文号见第六部分追回明细），"
              f"抵扣部分同时列为追回的收回，不作为少拨。依据：{basis_zh(scope.rules, 'funding.clawback_offset_allowed')}。")]
    if not staged:
        notes.append("后补助各期的计划金额为车道补助上限（每期按拨付时应付未付补助与未拨付承诺孰低拨付），不合计。")
    return _table("5 拨付记录", "拨付记录 Tranche history", columns, rows, tuple(notes))


def _subsidy_use_table(scope: Scope, use_legs: list[Leg]) -> ReportTable:
    """The subsidy released to its recipient, what it reported spent by category, what it has
    not, and what was recovered (rules: subsidy_use_tracked), per lane."""
    columns = (
        Column("lane", "车道\nLane", "text", 0.45), Column("released", "已拨付补助\nReleased", "amount", 1.05),
        *(Column(c, f"{CATEGORY_ZH[c]}\n{c.capitalize()}", "amount", 0.95) for c in CATEGORY_ZH),
        Column("reported", "已报告支出\nReported spent", "amount", 1.05), Column("unreported", "未报告结余\nUnreported", "amount", 1.05),
        Column("recovered", "已核定追回\nRecovered", "amount", 1.05),
    )
    by_lane: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for leg in use_legs:
        bucket = by_lane[_lane_segment(leg.account)]
        if leg.family == "subsidy_use_released":
            bucket["released" if leg.amount_fen < 0 else "recovered"] += abs(leg.amount_fen)
        elif leg.family == "subsidy_unreported":
            bucket["unreported"] += leg.amount_fen
        elif leg.family == "subsidy_reported":
            bucket[_category_of_account(leg.account) or "business"] += leg.amount_fen
    rows = []
    for n in sorted(scope.lanes):
        b = by_lane[n]
        rows.append({"lane": f"L{n}", "released": b["released"], **{c: b[c] for c in CATEGORY_ZH},
                     "reported": sum(b[c] for c in CATEGORY_ZH), "unreported": b["unreported"], "recovered": b["recovered"]})
    if len(rows) > 1:
        rows.append({"lane": "合计", **{c.key: _sum(rows, c.key) for c in columns[1:]}, "_role": "total"})
    notes = (f"补助资金使用按预算科目报告（备查登记），已拨付补助 = 已报告支出 + 未报告结余 + 已核定追回；依据：{basis_zh(scope.rules, 'funding.subsidy_use_tracked')}。",
             f"终止时追回未报告结余及认定的违规使用金额（违规使用已从已报告支出中转出，见第六部分）；依据：{basis_zh(scope.rules, 'closure.termination_recovers')}。")
    return _table("5 补助使用", "（四）补助资金使用 Subsidy use by its recipient", columns, rows, notes)


def _subsidy_section(scope, lane_balances, views, bid_legs, accrual_legs, release_legs, use_legs=()) -> Section:
    tables: list[ReportTable] = []
    intro: tuple[str, ...] = ()
    if scope.rules.funding.model == "bid_subsidy":
        tables += _subsidy_tables(scope, lane_balances, bid_legs, accrual_legs)
        if scope.rules.funding.subsidy_use_tracked:
            tables.append(_subsidy_use_table(scope, list(use_legs)))
    else:
        intro = (f"本项目适用{scope.rules.city_name}规则（{scope.rules.version}），财政资金按批复资助额分期拨付，不计算揭榜金额补助；以下为拨付记录。",)
    tables.append(_tranche_table(scope, views, release_legs))
    return Section("五、补助计算及拨付记录", intro, tuple(tables))


# --- 六、结余及追回 ---------------------------------------------------------------------------


def _closure(scope: Scope, lane_balances, receivable_legs: list[Leg], spend_vouchers: dict[str, Leg]) -> Section:
    staged = scope.rules.funding.model == "staged_grant"
    columns = (
        Column("lane", "车道\nLane", "text", 0.45), Column("released", "财政到位\nReleased", "amount", 1.05),
        Column("spent", "合规支出\nEligible spent", "amount", 1.05), Column("balance", "结余\nBalance", "amount", 1.05),
        Column("advances", "预拨结余\nAdvances", "amount", 1.05), Column("assessed", "追回核定\nAssessed", "amount", 1.05),
        Column("collected", "已收回(含抵扣)\nCollected", "amount", 1.05), Column("offset", "其中抵扣\nOffset", "amount", 0.95),
        Column("written_off", "核销\nWritten off", "amount", 0.95), Column("reversed", "冲销净额\nReversed", "amount", 0.95),
        Column("outstanding", "未追回\nOutstanding", "amount", 1.05),
    )
    by_lane: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for leg in receivable_legs:
        n = _lane_segment(leg.account)
        bucket = by_lane[n]
        # Assessed and collected come from the balances contract; these three complete the
        # identity outstanding = assessed − collected − written off + reversed.
        if leg.kind == "reversal":
            bucket["reversed"] += leg.amount_fen
        elif leg.kind == "write_off":
            bucket["written_off"] -= leg.amount_fen
        elif leg.kind == "release":
            bucket["offset"] -= leg.amount_fen
    rows = []
    for n in sorted(scope.lanes):
        lb, b = lane_balances[n], by_lane[n]
        rows.append({
            "lane": f"L{n}", "released": lb["grant_released"], "spent": lb["fiscal_spent"] if staged else None,
            "balance": lb["grant_released"] - lb["fiscal_spent"] if staged else None, "advances": lb["advances_outstanding"],
            "assessed": lb["clawback_assessed"], "collected": lb["clawback_collected"], "offset": b["offset"],
            "written_off": b["written_off"], "reversed": b["reversed"], "outstanding": lb["clawback_outstanding"],
        })
    if len(rows) > 1:
        rows.append({"lane": "合计", **{c.key: _sum(rows, c.key) for c in columns[1:] if not (c.key in ("spent", "balance") and not staged)},
                     "_role": "total"})
    notes = ["结余 = 财政到位 − 合规支出；未追回 = 追回核定 − 已收回 − 核销 + 冲销净额。",
             f"终止时追回：{basis_zh(scope.rules, 'closure.termination_recovers')}。"]
    if not staged:
        notes.append("后补助不形成预拨结余，故不计算结余。")
    notes += _rules_that_act_notes(scope)
    summary = _table("6 结余追回", "（一）结余及追回计算 Balance and clawback", columns, rows, tuple(notes))

    mis_columns = (
        Column("lane", "车道\nLane", "text", 0.45), Column("spend_voucher", "支出凭证\nSpend voucher", "long", 1.5),
        Column("spend_date", "支出日期\nSpent on", "date", 0.8), Column("category", "预算科目\nCategory", "text", 0.8),
        Column("spend_amount", "支出金额\nSpent", "amount", 1.05), Column("misused", "违规使用金额\nMisused", "amount", 1.05),
        Column("decision", "认定文号\nDecision", "long", 1.6), Column("entry", "分录号\nEntry", "int", 0.55),
    )
    mis_rows = []
    for e in scope.events:
        trace = json.loads(e.trace or "{}")
        if e.kind == "stage" and "elimination" in trace:
            lanes = {trace.get("lane") or "": trace["elimination"]}  # a failed 赛马 stage assessment
        elif e.kind in ("termination", "revocation"):
            lanes = trace.get("lanes", {})
        elif e.kind == "stage" and "failed_acceptance" in trace:
            lanes = trace["failed_acceptance"].get("lanes", {})  # a failed acceptance that terminates
        else:
            continue
        for lane_key, lane_trace in sorted(lanes.items()):
            for voucher, amount in sorted(lane_trace.get("misused", {}).items()):
                spend = spend_vouchers.get(voucher)
                mis_rows.append({"lane": lane_key, "spend_voucher": voucher, "spend_date": spend.value_date if spend else None,
                                 "category": CATEGORY_ZH.get(spend.category, "") if spend else "", "spend_amount": spend.amount_fen if spend else None,
                                 "misused": _fen(amount), "decision": e.reference or "", "entry": e.entry_id})
    if mis_rows:
        mis_rows.append({"lane": "合计", "misused": _sum(mis_rows, "misused"), "_role": "total"})
    misused = _table("6 违规使用", "（二）违规使用（逐笔） Misused amounts, one by one", mis_columns, mis_rows,
                     () if mis_rows else ("截至截止日未认定违规使用金额。",))

    rec_columns = (
        Column("date", "日期\nDate", "date", 0.8), Column("voucher", "凭证号\nVoucher", "long", 1.6), Column("kind", "业务\nKind", "text", 0.9),
        Column("lane", "车道\nLane", "text", 0.45), Column("amount", "金额（+核定 −收回）\nAmount", "amount", 1.15),
        Column("memo", "摘要\nMemo", "long", 2.4), Column("entry", "分录号\nEntry", "int", 0.55),
    )
    rec_rows = []
    for leg in receivable_legs:
        kind = "抵扣" if leg.kind == "release" else ("追回核定" if leg.kind in ("termination", "revocation", "stage") else KIND_ZH.get(leg.kind, leg.kind))
        rec_rows.append({"date": leg.value_date, "voucher": leg.voucher or "", "kind": kind, "lane": f"L{_lane_segment(leg.account)}",
                         "amount": leg.amount_fen, "memo": leg.memo, "entry": leg.entry_id})
    if rec_rows:
        rec_rows.append({"voucher": "合计 Total", "amount": _sum(rec_rows, "amount"), "_role": "total"})
    ledger_rows = _table("6 追回明细", "（三）追回、收回、抵扣与核销明细 Clawback postings", rec_columns, rec_rows,
                         ("合计等于未追回余额。",) if rec_rows else ("截至截止日无追回事项。",))
    return Section("六、结余及追回", (), (summary, misused, ledger_rows))


def _rules_that_act_notes(scope: Scope) -> list[str]:
    """Issue 14 point 8: the basis of a failed acceptance's consequence, an audited true-up
    and a retained balance recovered after N years, where the project has one."""
    notes = []
    rules, kinds = scope.rules, set()
    for e in scope.events:
        trace = json.loads(e.trace or "{}")
        if e.kind == "stage" and "failed_acceptance" in trace:
            kinds.add("failed")
        elif e.kind == "stage" and "true_up" in trace:
            kinds.add("true_up")
        elif e.kind == "balance_recovery":
            kinds.add("balance")
    if "failed" in kinds:
        what = "按终止处理，同一分录核定追回结余和违规使用资金" if rules.closure.failed_acceptance == "terminate" else "由主管部门决定是否终止及追回"
        notes.append(f"验收未通过：{what}；依据：{basis_zh(rules, 'closure.failed_acceptance')}。")
    if "true_up" in kinds:
        notes.append(f"专项审计报告确认的现金揭榜金额与专账不一致时，按审计确认数重算补助，已拨付的多拨部分核定追回；"
                     f"依据：{basis_zh(rules, 'tranches.final')}；{basis_zh(rules, 'funding.subsidy_rate')}。")
    if "balance" in kinds:
        notes.append(f"验收后结余留用满 {rules.closure.recover_after_years} 年收回；依据：{basis_zh(rules, 'closure.recover_after_years')}。")
    return notes


def _fen(text: str) -> int:
    from ledger.core.money import parse_fen

    return parse_fen(text, allow_negative=True)


def _release_offsets(session: Session, release_ids: list[int]) -> dict[int, int]:
    """Per release entry of the project, the clawback it settled by offset: the credit it
    posted to a clawback receivable, which may belong to another project of the same unit."""
    if not release_ids:
        return {}
    rows = session.execute(
        select(Posting.entry_id, func.sum(Posting.amount_fen))
        .join(Account, Account.id == Posting.account_id)
        .where(Posting.entry_id.in_(release_ids), Account.name.like("Assets:Fiscal:ClawbackReceivable:%"))
        .group_by(Posting.entry_id)
    ).all()
    return {int(entry_id): -int(amount) for entry_id, amount in rows}


# --- 七、专账明细 ---------------------------------------------------------------------------


def _counterparty(scope: Scope, leg: Leg) -> str:
    if leg.kind == "spend" and leg.payload:
        return json.loads(leg.payload).get("counterparty") or ""
    if leg.kind in ("pledge", "contribution"):
        return scope.party_name(scope.project.demand_uscc)
    # The account's lane first: an offset posts to this project's receivable from another
    # project's release, whose event names that other project's lane.
    n = _lane_segment(leg.account) or leg.event_lane
    if not n:
        return ""
    to_demand = scope.rules.funding.model == "bid_subsidy" and scope.rules.funding.subsidy_recipient == "demand"
    if to_demand and leg.kind in ("release", "collection", "termination", "revocation", "write_off"):
        return scope.party_name(scope.project.demand_uscc)
    return scope.party_name(scope.lanes.get(n))


DETAIL_COLUMNS = (
    Column("date", "日期\nDate", "date", 0.8), Column("voucher", "凭证号\nVoucher", "long", 1.45),
    Column("kind", "业务\nKind", "text", 0.8), Column("account", "科目\nAccount", "long", 1.35),
    Column("book", "账簿\nBook", "text", 0.45), Column("category", "预算科目\nCategory", "text", 0.65),
    Column("source", "资金来源\nSource", "text", 0.65), Column("counterparty", "对方单位\nCounterparty", "long", 1.5),
    Column("debit", "借方\nDebit", "amount", 1.0), Column("credit", "贷方\nCredit", "amount", 1.0),
    Column("entry", "分录号\nEntry", "int", 0.5),
)


def _detail_row(scope: Scope, leg: Leg) -> dict:
    lane = _lane_segment(leg.account)
    name = FAMILY_ZH.get(leg.family or "", leg.account.split(":")[-1])
    if leg.family in ("grant_spent", "self_funding_contributed", "subsidy_reported"):
        name += "·" + CATEGORY_ZH.get(_category_of_account(leg.account) or "", "")
    return {
        "date": leg.value_date, "voucher": leg.voucher or "", "kind": KIND_ZH.get(leg.kind, leg.kind),
        "account": name + (f" L{lane}" if lane else ""), "book": BOOK_ZH.get(leg.book, leg.book),
        "category": CATEGORY_ZH.get(leg.category or "", ""), "source": SOURCE_ZH.get(leg.source or "", ""),
        "counterparty": _counterparty(scope, leg), "debit": leg.amount_fen if leg.amount_fen > 0 else None,
        "credit": -leg.amount_fen if leg.amount_fen < 0 else None, "entry": leg.entry_id,
    }


# --- 八、科目余额表 --------------------------------------------------------------------------


def _trial_balance(scope: Scope, agg: pd.DataFrame, balances: dict[str, int]) -> Section:
    columns = (
        Column("account", "科目\nAccount", "long", 3.0), Column("name", "中文名称\nName", "text", 1.3),
        Column("book", "账簿\nBook", "text", 0.45), Column("lane", "车道\nLane", "text", 0.45),
        Column("debit", "借方发生额\nDebits", "amount", 1.1), Column("credit", "贷方发生额\nCredits", "amount", 1.1),
        Column("balance", "余额\nBalance", "amount", 1.1),
    )
    grouped = agg.groupby(["book", "account"], sort=True)[["debit", "credit"]].sum() if len(agg) else None
    rows = []
    for book in ("fiscal", "memo"):
        book_rows = []
        if grouped is not None:
            for (b, account), values in grouped.iterrows():
                if b != book:
                    continue
                d, c = int(values["debit"]), int(values["credit"])
                lane = _lane_segment(account)
                book_rows.append({"account": account, "name": FAMILY_ZH.get(chart.family_of(account) or "", ""),
                                  "book": BOOK_ZH[book], "lane": f"L{lane}" if lane else "", "debit": d, "credit": c,
                                  "balance": d - c, "_group": book})
        if book_rows:
            rows += book_rows
            rows.append({"account": f"{BOOK_ZH[book]}账簿小计 Subtotal ({book})", "book": BOOK_ZH[book],
                         **{k: _sum(book_rows, k) for k in ("debit", "credit", "balance")}, "_role": "subtotal", "_group": book})
    trial = _table("8 科目余额", "（一）项目科目余额表 Trial balance of the project's accounts", columns, rows,
                   ("余额 = 借方发生额 − 贷方发生额（借方为正），截至截止日（含当日）；仅列本项目科目，对应的共用科目（国库、预算指标）不在本表。",))
    b_columns = (Column("name", "余额项目\nBalance", "text", 2.4), Column("amount", "金额\nAmount", "amount", 1.1))
    b_rows = [{"name": BALANCE_ZH[key], "amount": balances[key]} for key in BALANCE_KEYS]
    summary = _table("8 余额汇总", "（二）余额汇总 Balances", b_columns, b_rows,
                     (f"与专账按同一截止日 {scope.as_of.isoformat()} 查询的项目余额逐项相等（同一余额、同一顺序）。",))
    return Section("八、科目余额表", (), (trial, summary))


# --- 九、完整性 -----------------------------------------------------------------------------


def _integrity(session: Session, scope: Scope, project_postings: int, whole_ledger=contextlib.nullcontext) -> Integrity:
    """What ties the pack to the ledger. The verification starts from the latest verified
    checkpoint when there is one (its time grows with the entries after it, not with the
    ledger), else it goes over the whole chain. ``whole_ledger()`` is entered around these
    reads, which need every entry: a caller whose session sees only some projects' rows (the
    portal's auditors, under row-level security) lets them see the whole ledger there."""
    with whole_ledger():
        return _integrity_reads(session, scope, project_postings)


def _integrity_reads(session: Session, scope: Scope, project_postings: int) -> Integrity:
    from ledger.core.verify import latest_checkpoint
    from ledger.programme.projection import verify_ledger, verify_since_checkpoint

    as_of, code = scope.as_of, scope.project.code
    anchor = session.execute(
        select(JournalEntry.id, JournalEntry.hash, JournalEntry.value_date)
        .where(JournalEntry.value_date <= as_of).order_by(JournalEntry.id.desc()).limit(1)
    ).first()
    entries_as_of = session.execute(select(func.count()).select_from(JournalEntry).where(JournalEntry.value_date <= as_of)).scalar_one()
    project_entries = session.execute(
        select(func.count(func.distinct(Posting.entry_id)))
        .select_from(Posting).join(Account, Account.id == Posting.account_id)
        .where(Account.project_code == code, Posting.value_date <= as_of)
    ).scalar_one()
    fact_entries = session.execute(
        select(func.count()).select_from(JournalEntry)
        .where(and_(JournalEntry.project_code == code, JournalEntry.value_date <= as_of),
               ~select(Posting.id).where(Posting.entry_id == JournalEntry.id).exists())
    ).scalar_one()
    checkpoint = latest_checkpoint(session)
    result = verify_ledger(session) if checkpoint is None else verify_since_checkpoint(session, checkpoint)
    problem = None if result.ok else f"第 {result.first_bad_entry} 笔：{result.problem}" if result.first_bad_entry else result.problem
    return Integrity(
        anchor.id if anchor else None, anchor.hash if anchor else None, anchor.value_date if anchor else None,
        int(entries_as_of), int(project_entries) + int(fact_entries), project_postings, result.ok, problem,
        checkpoint.entry_id if checkpoint else None, checkpoint.hash if checkpoint else None, result.entries,
    )


def _integrity_section(pack_code: str, as_of: dt.date, integrity: Integrity, font_note: str | None, beancount_dir: str) -> Section:
    if integrity.checkpoint_id is None:
        basis = "全账校验：自第 1 笔分录起重算哈希链、每笔分录的内容摘要与分账簿借贷平衡，并与项目表逐行核对"
        verdict = "通过 OK：全账哈希链与每笔分录的分账簿借贷平衡均已重算" if integrity.verify_ok else f"未通过 FAILED：{integrity.verify_problem}"
    else:
        basis = (f"检查点：第 {integrity.checkpoint_id} 笔分录，哈希 {integrity.checkpoint_hash}（由一次通过的完整校验记录）；"
                 f"本次核对该笔哈希未变，并重算其后 {integrity.verified_entries} 笔分录的哈希链、内容摘要与分账簿借贷平衡及其项目表记录")
        verdict = "通过 OK：检查点之后的分录均已重算" if integrity.verify_ok else f"未通过 FAILED：{integrity.verify_problem}"
    pairs = [
        ("审计截止日 As of", as_of.isoformat()),
        ("截止日链头分录 Chain head at cut-off", "" if integrity.anchor_id is None else f"第 {integrity.anchor_id} 笔（记账日期 {integrity.anchor_date.isoformat()}）"),
        ("截止日链头哈希 Chain head hash", integrity.anchor_hash or ""),
        ("截至截止日全账分录数 Entries ≤ as-of", str(integrity.entries_as_of)),
        ("本项目分录数 Project entries", str(integrity.project_entries)),
        ("本项目过账笔数 Project postings", str(integrity.project_postings)),
        ("校验依据 Verified from", basis),
        ("校验结果 verify", verdict),
        ("beancount 导出 Extract", f"{beancount_dir}/fiscal-{pack_code}.beancount，{beancount_dir}/memo-{pack_code}.beancount"),
    ]
    if font_note:
        pairs.append(("字体 Font", font_note))
    columns = (Column("item", "项目\nItem", "text", 1.3), Column("value", "内容\nValue", "long", 4.2))
    table = _table("9 完整性", "完整性 Integrity", columns, [{"item": k, "value": v} for k, v in pairs], (
        "截止日链头为记账日期不晚于截止日的编号最大的分录；哈希链使其哈希覆盖之前的全部分录，即本资料包读取的全部分录。",
        "依据检查点校验时，检查点之前的分录由记录检查点的那次完整校验覆盖；如需重新核对全部分录，由专账管理部门运行完整校验。",
        ("本资料包不列生成时间：同一账簿、同一截止日生成的资料包逐字节一致。截止日之后的新分录不改变本资料包，也不列入；"
        "其后的链头可由专账管理部门重新校验后提供。"),
    ))
    return Section("九、完整性", (), (table,))


# --- the pack -----------------------------------------------------------------------------


def audit_pack(session: Session, code: str, *, as_of: dt.date | None = None, font_note: str | None = None,
               whole_ledger=contextlib.nullcontext) -> AuditPack:
    """Build the audit pack of ``code`` as of ``as_of`` (default: the audit cut-off);
    ``whole_ledger``: see ``_integrity``."""
    scope = load_scope(session, code, as_of)
    code, as_of = scope.project.code, scope.as_of
    balances = project_balances(session, code, as_of=as_of)
    lane_balances = {n: project_balances(session, code, as_of=as_of, lane=f"L{n}") for n in scope.lanes}
    views = tranche_views(session, scope.state)
    agg = _aggregate(session, code, as_of)

    detail_rows: list[dict] = []
    bid_legs: list[Leg] = []
    accrual_legs: list[Leg] = []
    receivable_legs: list[Leg] = []
    spend_vouchers: dict[str, Leg] = {}
    use_legs: list[Leg] = []
    release_legs: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    count = 0
    for leg in _legs(session, code, as_of):
        count += 1
        detail_rows.append(_detail_row(scope, leg))
        if leg.family in ("bid_paid_cash", "bid_paid_equity", "bid_paid_in_kind"):
            bid_legs.append(leg)
        elif leg.family == "subsidy_expense":
            accrual_legs.append(leg)
        elif leg.family == "clawback_receivable":
            receivable_legs.append(leg)
        elif leg.family == "grant_released" and leg.kind == "release":
            release_legs[leg.entry_id]["released"] += leg.amount_fen
        elif leg.family in ("grant_spent", "subsidy_reported") and leg.kind == "spend" and leg.amount_fen > 0 and leg.voucher:
            spend_vouchers[leg.voucher] = leg
        if leg.family in ("subsidy_reported", "subsidy_unreported", "subsidy_use_released"):
            use_legs.append(leg)
    for entry_id, offset in _release_offsets(session, [e.entry_id for e in scope.events if e.kind == "release"]).items():
        release_legs[entry_id]["offset"] = offset
    if detail_rows:
        detail_rows.append({"voucher": "合计 Total", "debit": _sum(detail_rows, "debit"), "credit": _sum(detail_rows, "credit"), "_role": "total"})
    detail = _table("7 专账明细", "专账明细（凭证级） Voucher-level detail", DETAIL_COLUMNS, detail_rows,
                    ("列示本项目全部科目截至截止日（含当日）的过账，按日期、分录号排序；借方为正、贷方为负的分录金额分列借贷两栏。",))

    integrity = _integrity(session, scope, count, whole_ledger)
    bean_dir = f"beancount-{code}-{as_of.isoformat()}"
    sections = (
        _profile(scope),
        _with_investment_check(_arrival(scope, lane_balances, balances, _due_fiscal(scope, views)), scope, balances),
        _budget(scope, agg, balances),
        _transfers(scope, bid_legs, lane_balances),
        _subsidy_section(scope, lane_balances, views, bid_legs, accrual_legs, release_legs, use_legs),
        _closure(scope, lane_balances, receivable_legs, spend_vouchers),
        Section("七、专账明细", (), (detail,)),
        _trial_balance(scope, agg, balances),
        _integrity_section(code, as_of, integrity, font_note, bean_dir),
    )
    return AuditPack(code, scope.project.name, as_of, scope.cutoff_basis, scope.rules, balances, sections, integrity)


# --- rendering ----------------------------------------------------------------------------


def _cell_text(value, column: Column) -> str:
    kind = column.kind
    if value is None:
        return column.empty
    if isinstance(value, str):  # words where there is no number (未按科目批复)
        return value
    if kind == "amount":
        return format_fen_grouped(value)
    if kind == "rate":
        return f"{value}%"
    if kind == "date":
        return value.isoformat()
    return str(value)


def render_pdf(pack: AuditPack, path: Path, font=None) -> None:
    """Write the pack's PDF: cover lines, the nine sections, a table per DataFrame."""
    from reportlab.platypus import Paragraph, Spacer

    from reports import pdf

    font = font or pdf.cjk_font()
    st = pdf.styles(font)
    story = [
        Paragraph("揭榜挂帅项目专项审计资料包", st["title"]),
        Paragraph(pdf.escape(f"项目 {pack.code} {pack.name} · 审计截止日 {pack.as_of.isoformat()}"), st["subtitle"]),
        Paragraph(pdf.escape(
            f"本资料包由项目专账按审计截止日 {pack.as_of.isoformat()}（{pack.cutoff_basis}）生成，供会计师事务所出具专项审计报告使用。"
            "所列金额均取自截止日（含当日）及以前记账的分录，单位为人民币元；截止日之后记录的分录不影响本资料包。"
            f"同一账簿与截止日生成的 PDF 与 xlsx 逐字节一致；xlsx 工作底稿中每张表一页，合计为 SUM 公式。"), st["body"]),
    ]
    for section in pack.sections:
        story.append(pdf.keep_room(48 * pdf.mm))
        story.append(Paragraph(pdf.escape(section.heading), st["h1"]))
        for text in section.intro:
            story.append(Paragraph(pdf.escape(text), st["body"]))
        for table in section.tables:
            story.append(pdf.keep_room())
            story.append(Paragraph(pdf.escape(table.title), st["h2"]))
            story.append(_pdf_table(table, font, st))
            for note in table.notes:
                story.append(Paragraph(pdf.escape("注：" + note), st["note"]))
            story.append(Spacer(1, 2))
    header = f"专项审计资料包 · 项目 {pack.code}"
    pdf.build_pdf(
        path, story, font=font, as_of=pack.as_of,
        title=f"专项审计资料包 {pack.code} {pack.as_of.isoformat()}",
        subject=f"Audit pack of project {pack.code} ({pack.name}) as of {pack.as_of.isoformat()}",
        keywords=["jiebang", "专项审计", pack.code, f"as-of {pack.as_of.isoformat()}"],
        header_left=header, header_right=f"审计截止日 {pack.as_of.isoformat()}", footer_left=f"项目 {pack.code}",
        creator="jiebang report audit",
    )


def _pdf_table(table: ReportTable, font, st):
    from reportlab.platypus import Paragraph

    from reports import pdf

    total_width = sum(c.width for c in table.columns)
    widths = [pdf.usable_width() * c.width / total_width for c in table.columns]
    right = {i for i, c in enumerate(table.columns) if c.kind in ("amount", "rate", "int")}
    rows, emphasis = [], set()
    for index, record in enumerate(table.frame.to_dict("records")):
        if record["_role"] != "item":
            emphasis.add(index)
        cells = []
        for c in table.columns:
            text = _cell_text(record[c.key], c)
            cells.append(Paragraph(pdf.escape(text), st["cell"]) if c.kind == "long" and text else text)
        rows.append(cells)
    if not rows:
        rows = [["（无）", *[""] * (len(table.columns) - 1)]]
    return pdf.data_table([c.header for c in table.columns], rows, widths=widths, right=right, font=font, emphasis=emphasis)


def render_xlsx(pack: AuditPack, path: Path) -> None:
    """Write the pack's workbook: one sheet per table, in the PDF's order."""
    from reports import xlsx

    wb = xlsx.new_workbook()
    for table in pack.tables():
        kinds = [c.kind for c in table.columns]
        rows = [
            xlsx.SheetRow(tuple(record[c.key] for c in table.columns), record["_role"], record["_group"])
            for record in table.frame.to_dict("records")
        ]
        xlsx.add_sheet(wb, table.sheet, [c.header for c in table.columns], kinds, rows, notes=tuple("注：" + n for n in table.notes))
    xlsx.save_workbook(
        wb, path, as_of=pack.as_of, title=f"专项审计资料包 {pack.code} {pack.as_of.isoformat()}",
        subject=f"Audit pack of project {pack.code} as of {pack.as_of.isoformat()}", keywords=f"jiebang; {pack.code}; as-of {pack.as_of.isoformat()}",
    )


AUDIT_STEPS = 4  # the pack read, the PDF, the workbook, the beancount extract


def write_audit_pack(session: Session, code: str, out_dir: Path, *, as_of: dt.date | None = None,
                     font_path: str | Path | None = None, progress=None, whole_ledger=contextlib.nullcontext) -> list[Path]:
    """Write audit-CODE-DATE.pdf, audit-CODE-DATE.xlsx and beancount-CODE-DATE/ into ``out_dir``.
    ``font_path`` is a font file the user named (``--font``), see ``reports.pdf.cjk_font``;
    ``progress(1)`` is called after each of the AUDIT_STEPS.

    Everything is written into a staging directory inside ``out_dir`` first and moved into
    place at the end, so a failure leaves no partial pack behind.
    """
    from ledger.core.export import export_beancount
    from reports import pdf

    font = pdf.cjk_font(font_path)
    step = progress or (lambda n: None)
    pack = audit_pack(session, code, as_of=as_of, font_note=font.note, whole_ledger=whole_ledger)
    step(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{pack.stem}.", dir=out_dir))
    try:
        render_pdf(pack, staging / f"{pack.stem}.pdf", font)
        step(1)
        render_xlsx(pack, staging / f"{pack.stem}.xlsx")
        step(1)
        export_beancount(session, staging / pack.beancount_dir, as_of=pack.as_of, project_code=pack.code,
                         title="jiebang 专项审计 audit extract")
        step(1)
        final = [out_dir / f"{pack.stem}.pdf", out_dir / f"{pack.stem}.xlsx", out_dir / pack.beancount_dir]
        if final[2].exists():
            shutil.rmtree(final[2])
        for target in final:
            os.replace(staging / target.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
