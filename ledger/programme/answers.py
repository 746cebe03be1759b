"""What a money verb posted, said so an officer can check it against the voucher.

``answer`` reads one journal entry (its postings and its calculation trace) and states it in
one Chinese line: what happened, to which project and lane, the amount, the voucher and the
entry number, e.g. ``拨付 JM2026-101 L1 第2期：1,200,000.00，凭证 ZF-2025-118，分录 9``.
A termination, a revocation, a failed stage or a closure also says what is clawed back and
what obligation was deobligated. ``Answer.entry`` is the entry, its postings and its trace,
for ``--format json``. ``approval_lines`` lists an approved project's lanes and tranche
schedule. Nothing here writes; a dry run calls it inside the transaction it rolls back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from funding_rules.checks import BUDGET_CATEGORY_NAMES
from ledger.core.models import Account, JournalEntry, Posting
from ledger.core.money import format_fen, format_fen_grouped, parse_fen
from ledger.programme import chart
from ledger.programme.models import Lane, Project, Tranche

STAGE_NAMES = {
    "contract_signed": "合同签订", "midterm": "中期检查", "stage_assessment": "阶段考核",
    "acceptance": "验收", "audit_report": "专项审计报告",
}
FORM_NAMES = {"cash": "现金", "equity": "技术入股", "in_kind": "实物"}
CONDITION_NAMES = {
    "approved": "立项", "contract_signed": "合同签订", "first_bid_payment": "首笔揭榜金额支付",
    "midterm_passed": "中期检查通过", "stage_passed": "阶段考核通过", "acceptance_passed": "验收通过",
    "audit_report_received": "专项审计报告",
}
BASIS_NAMES = {"grant_share": "按资助额", "subsidy_earned": "按已得补助"}
DRY_RUN_PREFIX = "试算（未写入）："


@dataclass(frozen=True)
class Answer:
    """What a verb posted (or, in a dry run, would post).

    Attributes:
      line: the one-line confirmation (Chinese, amounts ``#,##0.00``).
      entry: the entry as JSON: id, date, kind, project, voucher, memo, actor, hash, the
        postings (account, book, amount, category, fund source) and the decoded trace.
      created: False when the voucher was already recorded with the same details.
      dry_run: True when nothing was written.
      details: further lines (an approval's lanes and tranche schedule).
    """

    line: str
    entry: dict
    created: bool
    dry_run: bool
    details: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        return [self.line, *self.details]

    def as_json(self) -> dict:
        return {"line": self.line, "dry_run": self.dry_run, "created": self.created, "details": list(self.details),
                "entry": self.entry}


def answer(session: Session, posted, *, dry_run: bool = False) -> Answer:
    """The confirmation of ``posted`` (a ``ledger.core.journal.Posted``), read back from the entry."""
    entry = session.get(JournalEntry, posted.entry_id)
    rows = session.execute(
        select(Account.name, Posting.book, Posting.amount_fen, Posting.budget_category, Posting.fund_source)
        .join(Account, Account.id == Posting.account_id)
        .where(Posting.entry_id == entry.id)
        .order_by(Posting.id)
    ).all()
    trace = json.loads(entry.trace) if entry.trace else {}
    postings = [(name, int(amount)) for name, _b, amount, _c, _f in rows]
    what = _what(entry, trace, postings)
    tail = ([f"凭证 {entry.voucher}"] if entry.voucher else []) + [f"分录 {entry.id}"]
    line = "，".join([what, *tail])
    if not posted.created:
        line += "（此前已记录，本次未写入）"
    if dry_run:
        line = DRY_RUN_PREFIX + line
    details: tuple[str, ...] = ()
    if entry.kind == "approval" and entry.project_code:
        details = tuple(approval_lines(session, entry.project_code))
    details += tuple(_warning_lines(entry, trace))
    data = {
        "id": entry.id, "date": entry.value_date.isoformat(), "kind": entry.kind, "project": entry.project_code,
        "voucher": entry.voucher, "memo": entry.memo, "actor": entry.actor, "hash": entry.hash,
        "reverses": entry.reverses_id,
        "postings": [
            {"account": name, "book": book, "amount": format_fen(int(amount)), "category": category, "fund_source": source}
            for name, book, amount, category, source in rows
        ],
        "trace": trace,
    }
    return Answer(line, data, posted.created, dry_run, details)


def approval_lines(session: Session, code: str) -> list[str]:
    """An approved project's lanes (solver) and tranche schedule, one line each."""
    project = session.execute(select(Project).where(Project.code == code)).scalar_one()
    out = [f"实施期 {project.start_date.isoformat()} 至 {project.end_date.isoformat()}，预算年度 {project.budget_year}"]
    for n, uscc in session.execute(select(Lane.lane_no, Lane.solver_uscc).where(Lane.project_code == code).order_by(Lane.lane_no)):
        out.append(f"L{n} 揭榜方 {uscc}")
    for t in session.scalars(select(Tranche).where(Tranche.project_code == code).order_by(Tranche.lane_no, Tranche.seq)):
        conditions = "、".join(CONDITION_NAMES.get(c, c) for c in json.loads(t.conditions)) or "无"
        ceiling = "上限 " if t.basis == "subsidy_earned" else ""
        out.append(f"  L{t.lane_no} 第{t.seq}期（{t.name}）{BASIS_NAMES.get(t.basis, t.basis)} {ceiling}"
                   f"{format_fen_grouped(t.amount_fen)}，条件：{conditions}")
    return out


def _sum(postings, family: str, sign: int) -> int:
    """What the entry moved on one account family: debits (sign 1) or credits (sign -1)."""
    prefix = chart.FAMILIES[family]
    return sum(a * sign for name, a in postings if name.startswith(prefix) and a * sign > 0)


def _lanes(postings, *families: str) -> str:
    lanes = set()
    for name, _a in postings:
        if any(name.startswith(chart.FAMILIES[f]) for f in families):
            where = chart.project_and_lane(name)
            if where and where[1]:
                lanes.add(where[1])
    return "、".join(f"L{n}" for n in sorted(lanes))


def _recovered(postings) -> str:
    """追回 and 核销 of an ending: clawback assessed, obligation deobligated, subsidy forfeited."""
    parts = [f"追回 {format_fen_grouped(_sum(postings, 'clawback_receivable', 1))}",
             f"核销未拨付 {format_fen_grouped(_sum(postings, 'grant_unreleased', -1))}"]
    forfeited = _sum(postings, "subsidy_payable", 1)
    if forfeited:
        parts.append(f"冲回应付补助 {format_fen_grouped(forfeited)}")
    return "，".join(parts)


# Consequences of the rules of issue 14 point 8 in the answer line. A failed acceptance
# says its clawback (or that the bureau decides); an audit report with the audited cash says
# how the subsidy was trued up on it.
PLEDGE_WARNING_ZH = "提示：{code} L{lane} 首次拨付时未登记自筹资金承诺（自投研发资金承诺函），请补录承诺"


def _rules_that_act(trace: dict, postings) -> str:
    failed = trace.get("failed_acceptance")
    if failed is not None:
        if failed.get("consequence") != "terminate":
            return "，按规则由主管部门决定是否终止及追回（待办）"
        return "，按规则项目终止，" + _recovered(postings)
    parts = []
    for lane, t in sorted(trace["true_up"].get("lanes", {}).items()):
        difference = parse_fen(t["difference"], allow_negative=True)
        what = (f"补助调增 {format_fen_grouped(difference)}（待拨付）" if difference > 0
                else f"补助调减 {format_fen_grouped(-difference)}" if difference < 0 else "补助无差额")
        recovered = parse_fen(t.get("over_released_recovered", "0"))
        if recovered:
            what += f"，其中已拨付部分追回 {format_fen_grouped(recovered)}"
        parts.append(f"{lane} 审计确认现金 {format_fen_grouped(parse_fen(t['audited_cash']))}，{what}")
    return "，" + "；".join(parts)


def _warning_lines(entry: JournalEntry, trace: dict) -> list[str]:
    out = []
    for w in trace.get("warnings", []) if isinstance(trace.get("warnings"), list) else []:
        if isinstance(w, dict) and w.get("code") == "pledge_must_be_on_file_at_first_release":
            lane = json.loads(entry.facts or "{}").get("event", {}).get("lane_no", "")
            out.append(PLEDGE_WARNING_ZH.format(code=entry.project_code, lane=lane))
    return out


def _what(entry: JournalEntry, trace: dict, postings: list[tuple[str, int]]) -> str:
    code = entry.project_code or ""
    lane = trace.get("lane") or _lanes(postings, "advances", "grant_unreleased", "grant_released", "clawback_receivable",
                                       "bid_unpaid", "subsidy_payable")
    at = " ".join(x for x in (code, lane) if x)
    kind = entry.kind
    request = trace.get("request", {})
    if kind == "appropriation":
        return f"预算指标 {request.get('year', '')}年度：{format_fen_grouped(max((a for _n, a in postings), default=0))}"
    if kind == "approval":
        what = "补助上限" if trace.get("funding_model") == "bid_subsidy" else "资助"
        return f"立项 {code}：{what} {format_fen_grouped(_sum(postings, 'grant_unreleased', 1))}"
    if kind == "pledge":
        return f"自筹承诺 {code}：{format_fen_grouped(_sum(postings, 'self_funding_outstanding', 1))}"
    if kind == "contribution":
        category = BUDGET_CATEGORY_NAMES.get(request.get("category", ""), request.get("category", ""))
        return f"自筹到位 {code} {category}：{format_fen_grouped(_sum(postings, 'self_funding_contributed', 1))}".replace("  ", " ")
    if kind == "bid_contract":
        return f"揭榜合同 {at}：{format_fen_grouped(_sum(postings, 'bid_unpaid', 1))}"
    if kind == "bid_payment":
        form = FORM_NAMES.get(trace.get("form", ""), trace.get("form", ""))
        paid = _sum(postings, "bid_unpaid", -1)
        line = f"揭榜金额支付 {at}（{form}）：{format_fen_grouped(paid)}"
        earned = _sum(postings, "subsidy_expense", 1)
        return line + (f"，应付补助增加 {format_fen_grouped(earned)}" if earned else "")
    if kind == "stage":
        stage = STAGE_NAMES.get(trace.get("stage", ""), trace.get("stage", ""))
        line = f"{stage} {at}：{'通过' if trace.get('passed') else '未通过'}"
        if "failed_acceptance" in trace or "true_up" in trace:  # the whole project, whatever lanes moved
            return f"{stage} {code}：{'通过' if trace.get('passed') else '未通过'}" + _rules_that_act(trace, postings)
        if postings:
            line += "，" + _recovered(postings)
        return line
    if kind == "release":
        seq = trace.get("tranche")
        which = f" 第{seq}期" if seq is not None else ""
        return f"拨付 {at}{which}：{format_fen_grouped(_sum(postings, 'grant_released', 1))}"
    if kind == "spend":
        category = BUDGET_CATEGORY_NAMES.get(trace.get("category", ""), trace.get("category", ""))
        return f"支出 {at} {category}：{format_fen_grouped(_sum(postings, 'grant_spent', 1))}"
    if kind == "extension":
        return f"延期 {code}：{trace.get('months')} 个月，实施期至 {trace.get('end_after')}"
    if kind in ("termination", "revocation"):
        return f"{'终止' if kind == 'termination' else '撤销'} {code}：" + _recovered(postings)
    if kind == "project_change":
        from ledger.programme.recorded import CHANGE_ZH

        return f"项目变更 {code}：" + "、".join(CHANGE_ZH.get(k, k) for k in trace.get("changed", [])) + f"（{trace.get('reference', '')}）"
    if kind == "closure":
        return f"结项 {code}：" + _recovered(postings)
    if kind == "balance_recovery":
        return f"验收后结余到期收回 {code}（验收 {trace.get('accepted_on', '')} 后 {trace.get('recover_after_years', '')} 年）：" \
            + f"追回 {format_fen_grouped(_sum(postings, 'clawback_receivable', 1))}"
    if kind == "collection":
        line = f"收回 {at}：{format_fen_grouped(_sum(postings, 'clawback_receivable', -1))}"
        before = trace.get("outstanding_before")
        if before is not None:
            from ledger.core.money import parse_fen

            left = parse_fen(before) - _sum(postings, "clawback_receivable", -1)
            line += f"，尚欠 {format_fen_grouped(left)}"
        return line
    if kind == "write_off":
        return f"核销应收 {at}：{format_fen_grouped(_sum(postings, 'clawback_receivable', -1))}"
    if kind == "remittance":
        return f"上缴财政：{format_fen_grouped(sum(a for n, a in postings if n == chart.DUE_TO_FINANCE and a > 0))}"
    if kind == "reversal":
        moved = sum(a for _n, a in postings if a > 0)
        return f"冲销分录 {entry.reverses_id}" + (f" {code}" if code else "") + f"：{format_fen_grouped(moved)}"
    if kind == "party":
        party = trace.get("party", {})
        return f"登记单位 {party.get('uscc', '')} {party.get('name', '')}".strip()
    if kind == "party_facts":
        facts = trace.get("party_facts", {})
        return f"单位年度数据 {facts.get('uscc', '')} {facts.get('year', '')}年"
    return f"{kind} {code}".strip()
