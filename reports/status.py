"""The matched-investment status of one enterprise: its projects and lanes as of a date, built
as plain data from the ledger's services, with the JSON, table and xlsx renderings kept apart.

A party sees a project where it is the demand side (every lane) or a lane's solver (its own
lane only). Self-funding (pledged vs contributed, 到位率) is the demand side's commitment and is
shown to the demand side only. Nothing here reads the wall clock: the default as-of date is the
latest entry's value date, so the same ledger and as-of date always give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import unicodedata
import zipfile
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from funding_rules.uscc import normalize_uscc
from ledger.core.errors import Refusal
from ledger.core.models import JournalEntry
from ledger.core.money import format_fen, format_fen_grouped
from ledger.programme import load_project, project_balances, tranche_views
from ledger.programme.models import Lane, Party, Project
from ledger.programme.words import (
    CITY_ZH,
    CONDITION_ZH,
    LANE_STATUS_ZH,
    MODE_ZH,
    PROJECT_CATEGORY_ZH,
    PROJECT_STATUS_ZH,
    ROLE_ZH,
    TRANCHE_STATUS_ZH,
    TRANCHE_ZH,
    WARNING_ZH,
    zh,
)
from reports.text import table_text

PERIOD_END_WARNING_DAYS = 90
SUBSIDY_DUE_CONDITION = "subsidy_payable"


# --- plain data -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NextTranche:
    """The next tranche of a lane that is neither released nor cancelled.

    Attributes:
      amount_fen: the tranche's share for a grant; for a subsidy tranche, what a release on the
        as-of date would pay: min(subsidy payable, unreleased obligation).
      status: "eligible" (every condition met) or "planned".
      waits_on: (condition, hint) pairs still missing, in rules order; a subsidy tranche with
        nothing earned and unpaid also waits on ``subsidy_payable``.
    """

    lane: str
    seq: int
    name: str
    basis: str
    amount_fen: int
    status: str
    waits_on: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class LaneStatus:
    """One solver lane as the party may see it; ``balances`` is project_balances for the lane."""

    lane: str
    solver_uscc: str
    solver_name: str
    status: str
    balances: dict[str, int]
    next_tranche: NextTranche | None


@dataclass(frozen=True, slots=True)
class StatusWarning:
    """Something the enterprise should act on, with a predicate code and one sentence."""

    code: str
    project: str
    message: str


@dataclass(frozen=True, slots=True)
class ProjectStatus:
    """One project of the party as of the report date.

    Attributes:
      roles: "demand" and/or "solver".
      status: "active", "accepted" or "terminated".
      end_date: the period end including extensions approved by the as-of date.
      self_funding: pledged / contributed / outstanding in fen for the demand side, else None.
    """

    code: str
    name: str
    city: str
    rules_version: str
    category: str
    mode: str
    roles: tuple[str, ...]
    status: str
    approval_date: dt.date
    start_date: dt.date
    end_date: dt.date
    extensions: int
    self_funding: dict[str, int] | None
    lanes: tuple[LaneStatus, ...]
    warnings: tuple[StatusWarning, ...]


@dataclass(frozen=True, slots=True)
class StatusReport:
    """The whole report, tied to the ledger by the last entry dated on or before ``as_of``."""

    party_uscc: str
    party_name: str
    party_kind: str
    as_of: dt.date
    entries: int
    last_entry_id: int | None
    last_entry_hash: str | None
    projects: tuple[ProjectStatus, ...]

    @property
    def warnings(self) -> list[StatusWarning]:
        return [w for p in self.projects for w in p.warnings]


# --- building ---------------------------------------------------------------------------


def default_as_of(session: Session) -> dt.date:
    """The latest entry's value date; today only for an empty ledger."""
    latest = session.execute(select(func.max(JournalEntry.value_date))).scalar()
    return latest or dt.date.today()


def arrival_rate(contributed_fen: int, pledged_fen: int) -> str:
    """到位率 as a percentage with two decimals (ROUND_HALF_UP), or "n/a" when nothing is pledged."""
    if pledged_fen <= 0:
        return "n/a"
    rate = (Decimal(contributed_fen) * 100 / Decimal(pledged_fen)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{rate}%"


def status_report(session: Session, party: str, *, as_of: dt.date | None = None) -> StatusReport:
    """Build the status of every project the party is in, as of ``as_of`` (default: latest entry)."""
    code = normalize_uscc(party or "")
    row = session.execute(select(Party).where(Party.uscc == code)).scalar_one_or_none()
    if row is None:
        raise Refusal(
            "party_must_be_registered",
            f"no party {code or '(empty)'} is registered; `jiebang parties` lists the registered USCCs.",
        )
    as_of = as_of or default_as_of(session)
    entries, last_id, last_hash = _ledger_position(session, as_of)
    solver_projects = select(Lane.project_code).where(Lane.solver_uscc == code)
    projects = session.scalars(
        select(Project)
        .where(Project.approval_date <= as_of, or_(Project.demand_uscc == code, Project.code.in_(solver_projects)))
        .order_by(Project.code)
    ).all()
    names = _party_names(session, [p.code for p in projects])
    return StatusReport(
        party_uscc=code,
        party_name=row.name,
        party_kind=row.kind,
        as_of=as_of,
        entries=entries,
        last_entry_id=last_id,
        last_entry_hash=last_hash,
        projects=tuple(_project_status(session, p.code, code, as_of, names) for p in projects),
    )


def _ledger_position(session: Session, as_of: dt.date) -> tuple[int, int | None, str | None]:
    count = session.execute(select(func.count()).select_from(JournalEntry).where(JournalEntry.value_date <= as_of)).scalar_one()
    last = session.execute(
        select(JournalEntry.id, JournalEntry.hash).where(JournalEntry.value_date <= as_of).order_by(JournalEntry.id.desc()).limit(1)
    ).first()
    return int(count), (last.id if last else None), (last.hash if last else None)


def _party_names(session: Session, codes: list[str]) -> dict[str, str]:
    if not codes:
        return {}
    solvers = select(Lane.solver_uscc).where(Lane.project_code.in_(codes))
    return dict(session.execute(select(Party.uscc, Party.name).where(Party.uscc.in_(solvers))).all())


def _project_status(session: Session, code: str, party: str, as_of: dt.date, names: dict[str, str]) -> ProjectStatus:
    state = load_project(session, code, as_of=as_of)
    project = state.project
    is_demand = project.demand_uscc == party
    roles = tuple(r for r, on in (("demand", is_demand), ("solver", party in state.lanes.values())) if on)
    visible = sorted(n for n, uscc in state.lanes.items() if is_demand or uscc == party)
    views = tranche_views(session, state)
    accepted = "acceptance_passed" in state.conditions.get(None, set())
    status = "terminated" if state.terminated_on else "accepted" if accepted else "active"
    lanes = []
    for n in visible:
        balances = project_balances(session, code, as_of=as_of, lane=f"L{n}")
        lane_views = [v for v in views if v.lane_no == n]
        lanes.append(
            LaneStatus(
                lane=f"L{n}",
                solver_uscc=state.lanes[n],
                solver_name=names.get(state.lanes[n], ""),
                status="eliminated" if n in state.eliminated else "terminated" if state.terminated_on else "active",
                balances=balances,
                next_tranche=_next_tranche(lane_views, balances),
            )
        )
    self_funding = None
    if is_demand:
        totals = project_balances(session, code, as_of=as_of)
        self_funding = {k: totals[f"self_funding_{k}"] for k in ("pledged", "contributed", "outstanding")}
    shown = {f"L{n}" for n in visible}
    paying = [v for v in views if f"L{v.lane_no}" in shown and v.status in ("eligible", "released")]
    pending = [v for v in views if f"L{v.lane_no}" in shown and v.status in ("eligible", "planned")]
    warnings = _warnings(code, status, state.end_date, as_of, self_funding, paying, lanes, pending)
    return ProjectStatus(
        code=code,
        name=project.name,
        city=project.city,
        rules_version=project.rules_version,
        category=project.category,
        mode=project.mode,
        roles=roles,
        status=status,
        approval_date=project.approval_date,
        start_date=project.start_date,
        end_date=state.end_date,
        extensions=state.extensions,
        self_funding=self_funding,
        lanes=tuple(lanes),
        warnings=tuple(warnings),
    )


def _next_tranche(views, balances: dict[str, int]) -> NextTranche | None:
    pending = [v for v in views if v.status in ("eligible", "planned")]
    if not pending:
        return None
    view = pending[0]
    waits = [(c, zh(CONDITION_ZH, c)) for c in view.unmet]
    if view.basis == "grant_share":
        amount = view.amount_fen
    else:
        amount = max(0, min(balances["subsidy_payable"], balances["grant_unreleased"]))
        if amount == 0:
            waits.append((SUBSIDY_DUE_CONDITION, CONDITION_ZH[SUBSIDY_DUE_CONDITION]))
    return NextTranche(
        lane=f"L{view.lane_no}",
        seq=view.seq,
        name=view.name,
        basis=view.basis,
        amount_fen=amount,
        status="eligible" if not waits else "planned",
        waits_on=tuple(waits),
    )


def _tranche_words(view) -> str:
    """第2期（中期检查通过后）."""
    return f"第{view.seq}期（{zh(TRANCHE_ZH, view.name)}）"


def _warnings(code, status, end_date, as_of, self_funding, paying, lanes, pending=()) -> list[StatusWarning]:
    """What the enterprise should do, in its own words: what is missing and by when; never a
    command (the enterprise does not run the ledger). What is asked depends on the project's
    status: a terminated or accepted project has no next tranche to wait for."""
    found = []
    if self_funding:
        pledged, contributed = self_funding["pledged"], self_funding["contributed"]
        missing = pledged - contributed
        facts = (f"{code}：自筹资金承诺 {format_fen_grouped(pledged)} 元，已到位 {format_fen_grouped(contributed)} 元"
                 f"（到位率 {arrival_rate(contributed, pledged)}），尚缺 {format_fen_grouped(missing)} 元")
        if pledged > 0 and missing > 0 and status == "active" and paying:
            first = paying[0]
            done = "已拨付" if first.status == "released" else "已可拨付"
            nxt = f"下一期（L{pending[0].lane_no} {_tranche_words(pending[0])}）拨付审核前、" if pending else ""
            found.append(StatusWarning(
                "self_funding_should_be_in_place", code,
                f"{facts}；财政资金 L{first.lane_no} {_tranche_words(first)}{done}。请在{nxt}实施期截止日 {end_date} 前"
                "补足自筹资金，并将到位凭证报主管部门登记。",
            ))
        elif pledged > 0 and missing > 0 and status == "terminated":
            found.append(StatusWarning(
                "self_funding_should_be_in_place", code,
                f"{facts}；项目已终止，不再拨付。终止清算时须向主管部门说明未到位部分，并提供已到位部分的凭证。",
            ))
        elif pledged > 0 and missing > 0 and status == "accepted":
            found.append(StatusWarning(
                "self_funding_should_be_in_place", code,
                f"{facts}；项目已结题。专项审计时须说明未到位部分。",
            ))
    # The period concerns a party only while one of its lanes is still in the race.
    if status == "active" and any(lane.status == "active" for lane in lanes):
        days = (end_date - as_of).days
        if 0 <= days <= PERIOD_END_WARNING_DAYS:
            found.append(StatusWarning(
                "period_end_is_near", code,
                f"{code}：实施期于 {end_date} 届满，距 {as_of} 还有 {days} 天。请在届满前向主管部门申请验收，"
                "确需延期的，在届满前提出延期申请。",
            ))
        elif days < 0:
            found.append(StatusWarning(
                "period_has_ended", code,
                f"{code}：实施期已于 {end_date} 届满（至 {as_of} 已过 {-days} 天），尚无验收记录。"
                "请尽快向主管部门申请验收，或书面说明未能验收的原因。",
            ))
    for lane in lanes:
        outstanding = lane.balances["clawback_outstanding"]
        if outstanding > 0:
            found.append(StatusWarning(
                "clawback_is_outstanding", code,
                f"{code} {lane.lane}：核定追回 {format_fen_grouped(lane.balances['clawback_assessed'])} 元，"
                f"已收回 {format_fen_grouped(lane.balances['clawback_collected'])} 元，尚有 {format_fen_grouped(outstanding)} 元"
                "未退回。请在追回通知书规定的期限内退回市财政。",
            ))
    return found


# --- rendering: JSON --------------------------------------------------------------------


def report_dict(report: StatusReport) -> dict:
    """The report as JSON-ready data: amounts as two-decimal strings, dates as ISO strings."""
    return {
        "report": "matched-investment status",
        "party": {"uscc": report.party_uscc, "name": report.party_name, "kind": report.party_kind},
        "as_of": report.as_of.isoformat(),
        "ledger": {
            "entries_as_of": report.entries,
            "last_entry_id": report.last_entry_id,
            "last_entry_hash": report.last_entry_hash,
        },
        "projects": [_project_dict(p) for p in report.projects],
        "warnings": [{"code": w.code, "project": w.project, "message": w.message} for w in report.warnings],
    }


def _project_dict(p: ProjectStatus) -> dict:
    self_funding = None
    if p.self_funding is not None:
        self_funding = {k: format_fen(v) for k, v in p.self_funding.items()}
        self_funding["arrival_rate"] = arrival_rate(p.self_funding["contributed"], p.self_funding["pledged"])
    return {
        "code": p.code,
        "name": p.name,
        "city": p.city,
        "rules_version": p.rules_version,
        "category": p.category,
        "mode": p.mode,
        "roles": list(p.roles),
        "status": p.status,
        "approval_date": p.approval_date.isoformat(),
        "start_date": p.start_date.isoformat(),
        "end_date": p.end_date.isoformat(),
        "extensions": p.extensions,
        "self_funding": self_funding,
        "lanes": [_lane_dict(lane) for lane in p.lanes],
        "warnings": [{"code": w.code, "message": w.message} for w in p.warnings],
    }


def _lane_dict(lane: LaneStatus) -> dict:
    b = {k: format_fen(v) for k, v in lane.balances.items()}
    nxt = lane.next_tranche
    return {
        "lane": lane.lane,
        "solver": {"uscc": lane.solver_uscc, "name": lane.solver_name},
        "status": lane.status,
        "bid": {"contracted": b["bid_contracted"], "paid_cash": b["bid_paid_cash"], "paid_equity": b["bid_paid_equity"],
                "paid_in_kind": b["bid_paid_in_kind"], "unpaid": b["bid_unpaid"]},
        "subsidy": {"base": b["subsidy_base"], "earned": b["subsidy_earned"], "released": b["subsidy_released"],
                    "payable": b["subsidy_payable"]},
        "grant": {"obligated": b["grant_obligated"], "released": b["grant_released"], "unreleased": b["grant_unreleased"]},
        "advances_outstanding": b["advances_outstanding"],
        "fiscal_spent": b["fiscal_spent"],
        "clawback": {"assessed": b["clawback_assessed"], "collected": b["clawback_collected"],
                     "outstanding": b["clawback_outstanding"]},
        "next_tranche": None if nxt is None else {
            "lane": nxt.lane, "seq": nxt.seq, "name": nxt.name, "basis": nxt.basis, "amount": format_fen(nxt.amount_fen),
            "status": nxt.status, "waits_on": [{"condition": c, "hint": h} for c, h in nxt.waits_on],
        },
    }


def render_json(report: StatusReport) -> str:
    return json.dumps(report_dict(report), ensure_ascii=False, indent=2) + "\n"


# --- rendering: terminal table ----------------------------------------------------------

LANE_COLUMNS = (
    ("赛道", None), ("状态", None), ("揭榜合同额", "bid_contracted"), ("已付现金", "bid_paid_cash"),
    ("已付技术入股", "bid_paid_equity"), ("已付实物", "bid_paid_in_kind"), ("应补助", "subsidy_earned"),
    ("已拨补助", "subsidy_released"), ("补助应付", "subsidy_payable"), ("财政已拨付", "grant_released"),
    ("财政未拨付", "grant_unreleased"), ("未收回追回款", "clawback_outstanding"),
)


def render_table(report: StatusReport) -> list[str]:
    """The report as lines for a terminal (CJK-width aware)."""
    lines = [
        f"配套投入情况 {report.party_name}（{report.party_uscc}），截至 {report.as_of}",
        f"专账：截至 {report.as_of} 共 {report.entries} 笔分录，末笔分录 "
        f"{report.last_entry_id} {report.last_entry_hash or ''}".rstrip(),
    ]
    if not report.projects:
        lines += ["", "（截至该日本单位无已立项项目）"]
    for p in report.projects:
        lines += [
            "",
            f"{p.code} {p.name} — {zh(CITY_ZH, p.city)} {zh(MODE_ZH, p.mode)} {zh(PROJECT_CATEGORY_ZH, p.category)}；"
            f"本单位为{'、'.join(zh(ROLE_ZH, r) for r in p.roles)}；{zh(PROJECT_STATUS_ZH, p.status)}；"
            f"实施期 {p.start_date} 至 {p.end_date}" + (f"（延期 {p.extensions} 次）" if p.extensions else ""),
        ]
        if p.self_funding is not None:
            sf = p.self_funding
            lines.append(
                f"  自筹资金：承诺 {format_fen_grouped(sf['pledged'])}，到位 "
                f"{format_fen_grouped(sf['contributed'])}，到位率 {arrival_rate(sf['contributed'], sf['pledged'])}"
            )
        header = [name for name, _ in LANE_COLUMNS]
        rows = [
            [lane.lane, _lane_words(p, lane), *(format_fen_grouped(lane.balances[key]) for _, key in LANE_COLUMNS[2:])]
            for lane in p.lanes
        ]
        lines += ["  " + line for line in _aligned(header, rows, right_from=2)]
        for lane in p.lanes:
            nxt = lane.next_tranche
            if nxt is None:
                continue
            what = f"  下一期：{nxt.lane} 第{nxt.seq}期（{zh(TRANCHE_ZH, nxt.name)}）{format_fen_grouped(nxt.amount_fen)}"
            if nxt.waits_on:
                lines.append(what + "，待满足：" + "；".join(h for _, h in nxt.waits_on))
            else:
                lines.append(what + "，条件已满足，可拨付")
        lines += [f"  提示：{w.message}" for w in p.warnings]
    return lines


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _aligned(header: list[str], rows: list[list[str]], *, right_from: int) -> list[str]:
    rows = [[table_text(v) for v in r] for r in rows]
    widths = [max(_width(header[i]), *(_width(r[i]) for r in rows)) if rows else _width(header[i]) for i in range(len(header))]

    def line(values):
        parts = []
        for i, value in enumerate(values):
            pad = " " * (widths[i] - _width(value))
            parts.append(pad + value if i >= right_from else value + pad)
        return "  ".join(parts).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


# --- rendering: xlsx --------------------------------------------------------------------

PROJECT_SHEET = (
    ("项目编号 Project", "code"), ("项目名称 Name", "name"), ("城市 City", "city"), ("规则版本 Rules", "rules_version"),
    ("项目类别 Category", "category"), ("组织方式 Mode", "mode"), ("本单位角色 Role", "roles"), ("状态 Status", "status"),
    ("开始 Start", "start_date"), ("截止 End", "end_date"), ("延期次数 Extensions", "extensions"),
    ("承诺自筹 Pledged", "pledged"), ("实际到位 Contributed", "contributed"), ("未到位 Outstanding", "outstanding"),
    ("到位率% Arrival rate", "rate"),
)
LANE_SHEET = (
    ("项目编号 Project", None), ("赛道 Lane", None), ("揭榜方信用代码 Solver USCC", None), ("揭榜方 Solver", None),
    ("状态 Status", None),
    ("揭榜合同额 Bid contracted", "bid_contracted"), ("已付·现金 Paid cash", "bid_paid_cash"),
    ("已付·技术入股 Paid equity", "bid_paid_equity"), ("已付·实物 Paid in kind", "bid_paid_in_kind"),
    ("揭榜未付 Bid unpaid", "bid_unpaid"), ("补助基数 Subsidy base", "subsidy_base"),
    ("应补助 Subsidy earned", "subsidy_earned"), ("已拨补助 Subsidy released", "subsidy_released"),
    ("补助应付未付 Subsidy payable", "subsidy_payable"), ("资助额 Grant obligated", "grant_obligated"),
    ("财政已拨付 Grant released", "grant_released"), ("财政未拨付 Grant unreleased", "grant_unreleased"),
    ("预拨经费结余 Advances", "advances_outstanding"), ("财政资金支出 Spent", "fiscal_spent"),
    ("核定追回 Clawback assessed", "clawback_assessed"), ("已收回 Clawback collected", "clawback_collected"),
    ("未收回 Clawback outstanding", "clawback_outstanding"),
    ("下一期 Next tranche", None), ("下一期款项 Next tranche item", None), ("下一期金额 Next tranche amount", None),
    ("下一期状态 Next tranche status", None), ("待满足条件 Waits on", None),
)


def _lane_words(p: ProjectStatus, lane: LaneStatus) -> str:
    """A lane's status as the enterprise says it: a lane still in an accepted project is 已结题."""
    if lane.status == "active" and p.status == "accepted":
        return PROJECT_STATUS_ZH["accepted"]
    return zh(LANE_STATUS_ZH, lane.status)


def _yuan(fen: int) -> Decimal:
    return Decimal(fen).scaleb(-2)


def _rate_number(contributed: int, pledged: int) -> Decimal | str:
    text = arrival_rate(contributed, pledged)
    return "未承诺" if text == "n/a" else Decimal(text.rstrip("%"))


def write_xlsx(report: StatusReport, path: Path) -> Path:
    """Write the report as a workbook: Chinese first (English beside the headers), amounts as
    numbers in #,##0.00, columns fitted to their content with long text wrapped, frozen
    headers, fixed metadata. Codes (status, mode, conditions) are written as their Chinese
    names; the JSON beside it keeps the codes."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from reports.xlsx import AMOUNT_FORMAT, RATE_FORMAT, append_row, fit_columns

    wb = Workbook()
    ws = wb.active
    ws.title = "项目 Projects"
    _sheet_header(ws, [h for h, _ in PROJECT_SHEET], Font)
    for p in report.projects:
        sf = p.self_funding
        values = {
            "code": p.code, "name": p.name, "city": zh(CITY_ZH, p.city), "rules_version": p.rules_version,
            "category": zh(PROJECT_CATEGORY_ZH, p.category), "mode": zh(MODE_ZH, p.mode),
            "roles": "、".join(zh(ROLE_ZH, r) for r in p.roles), "status": zh(PROJECT_STATUS_ZH, p.status),
            "start_date": p.start_date.isoformat(), "end_date": p.end_date.isoformat(), "extensions": p.extensions,
            "pledged": _yuan(sf["pledged"]) if sf else None, "contributed": _yuan(sf["contributed"]) if sf else None,
            "outstanding": _yuan(sf["outstanding"]) if sf else None,
            "rate": _rate_number(sf["contributed"], sf["pledged"]) if sf else None,
        }
        append_row(ws, [values[key] for _, key in PROJECT_SHEET])
        for cell in ws[ws.max_row][11:14]:
            cell.number_format = AMOUNT_FORMAT
        ws[ws.max_row][14].number_format = RATE_FORMAT

    ws = wb.create_sheet("赛道 Lanes")
    _sheet_header(ws, [h for h, _ in LANE_SHEET], Font)
    for p in report.projects:
        for lane in p.lanes:
            nxt = lane.next_tranche
            row = [p.code, lane.lane, lane.solver_uscc, lane.solver_name, _lane_words(p, lane)]
            row += [_yuan(lane.balances[key]) for _, key in LANE_SHEET[5:22]]
            row += ([f"第{nxt.seq}期", zh(TRANCHE_ZH, nxt.name), _yuan(nxt.amount_fen), zh(TRANCHE_STATUS_ZH, nxt.status),
                     "；".join(h for _, h in nxt.waits_on)] if nxt else [None] * 5)
            append_row(ws, row)
            for cell in [*ws[ws.max_row][5:22], ws[ws.max_row][24]]:
                cell.number_format = AMOUNT_FORMAT

    ws = wb.create_sheet("提示 Warnings")
    _sheet_header(ws, ["项目编号 Project", "事项 Matter", "提示 Message"], Font)
    for w in report.warnings:
        append_row(ws, [w.project, zh(WARNING_ZH, w.code), w.message])

    ws = wb.create_sheet("说明 About")
    _sheet_header(ws, ["项目 Item", "内容 Value"], Font)
    for key, value in (
        ("报告 Report", "配套投入情况 Matched-investment status"),
        ("统一社会信用代码 USCC", report.party_uscc),
        ("单位名称 Name", report.party_name),
        ("截止日 As of", report.as_of.isoformat()),
        ("截止日前分录数 Entries to date", report.entries),
        ("末笔分录号 Last entry", report.last_entry_id),
        ("末笔分录哈希 Last entry hash", report.last_entry_hash),
    ):
        append_row(ws, [key, value])
    for sheet in wb.worksheets:
        fit_columns(sheet, last_row=sheet.max_row)
    _save_deterministic(wb, path, report.as_of)
    return path


def _sheet_header(ws, header: list[str], font_cls) -> None:
    from reports.xlsx import append_row

    append_row(ws, header)
    for cell in ws[1]:
        cell.font = font_cls(bold=True)
    ws.freeze_panes = "A2"


def _save_deterministic(wb, path: Path, when: dt.date) -> None:
    """Save with the as-of date as document and zip timestamps, so equal inputs give equal bytes."""
    from openpyxl.writer.excel import ExcelWriter

    stamp = dt.datetime.combine(when, dt.time())
    wb.properties.creator = "jiebang"
    wb.properties.created = stamp
    wb.properties.modified = stamp
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(wb, archive).save()
    fixed = io.BytesIO()
    date_time = (max(when.year, 1980), when.month, when.day, 0, 0, 0)
    with zipfile.ZipFile(raw) as source, zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=date_time)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            target.writestr(entry, source.read(info.filename))
    path.write_bytes(fixed.getvalue())


# --- files ------------------------------------------------------------------------------


def write_report_files(report: StatusReport, out_dir: Path) -> list[Path]:
    """Write status-USCC-DATE.json and .xlsx into ``out_dir``; return the paths."""
    stem = f"status-{report.party_uscc}-{report.as_of.isoformat()}"
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(render_json(report), encoding="utf-8", newline="\n")
    xlsx_path = write_xlsx(report, out_dir / f"{stem}.xlsx")
    return [json_path, xlsx_path]
