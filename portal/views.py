"""What each page and each API answer shows: plain dicts built from the ledger's own read
models (``reports.status``, ``reports.audit``, ``reports.forecast``, ``project_balances``),
every one behind ``portal.scope``. The HTML pages and the JSON API render the same dicts."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.core.models import Account, Posting
from ledger.core.money import format_fen, format_fen_grouped
from ledger.programme import chart
from ledger.programme.balances import project_balances
from ledger.programme.models import Project
from ledger.programme.state import load_project, tranche_views
from ledger.programme.words import CONDITION_ZH
from portal.scope import (
    CHAIN_HEAD,
    NotFound,
    require_project,
    visible_lanes,
    visible_projects,
    whole_ledger,
)
from portal.store import Viewer

STATUS_ZH = {"planned": "待条件", "eligible": "可拨付", "released": "已拨付", "cancelled": "已取消", "active": "执行中",
             "accepted": "已验收", "terminated": "已终止", "eliminated": "已淘汰"}
ROLE_ZH = {"demand": "需求方（发榜方）", "solver": "揭榜方"}
MODE_ZH = {"jbgs": "揭榜挂帅", "saima": "赛马"}
CATEGORY_ZH = {"tech_breakthrough": "技术攻关", "commercialization": "成果转化"}
CITY_ZH = {"jiangmen": "江门", "urumqi": "乌鲁木齐"}
BASIS_ZH = {"grant_share": "资助分期", "subsidy": "后补助"}
DUE_ZH = {"tranche_ready": "可拨付未拨", "pledge_behind": "自筹到位滞后", "clawback_outstanding": "追回未缴清",
          "period_ending": "执行期将满未验收", "extension_ending": "延期将满",
          "acceptance_failed": "验收未通过待处理", "balance_recoverable": "结余留用期满待收回"}
SELF_FUNDING_CATEGORIES = {"equipment": "设备费", "business": "业务费", "labour": "劳务费", "indirect": "间接费用"}


def zh(table: dict, key) -> str:
    return table.get(key, key or "")


def yuan(fen: int) -> str:
    return format_fen_grouped(fen)


def rate(numerator: int, denominator: int) -> str:
    from reports.status import arrival_rate

    value = arrival_rate(numerator, denominator)
    return "—" if value == "n/a" else value


# --- enterprise -----------------------------------------------------------------------------


def _status(session: Session, viewer: Viewer, as_of: dt.date | None):
    from reports.status import status_report

    return status_report(session, viewer.party_uscc, as_of=as_of)


def enterprise_home(session: Session, viewer: Viewer, as_of: dt.date | None) -> dict:
    from reports.status import report_dict

    report = _status(session, viewer, as_of)
    data = report_dict(report)
    visible = set(visible_projects(session, viewer))
    data["projects"] = [p for p in data["projects"] if p["code"] in visible]
    return data


def self_funding_by_category(session: Session, code: str, as_of: dt.date) -> dict[str, int]:
    prefix = chart.self_funding_contributed(code, "equipment").rsplit(":", 1)[0] + ":"
    rows = session.execute(
        select(Account.name, func.coalesce(func.sum(Posting.amount_fen), 0))
        .join(Posting, Posting.account_id == Account.id)
        .where(Account.project_code == code, Account.name.like(prefix + "%"), Posting.value_date <= as_of)
        .group_by(Account.name)
    ).all()
    by_segment = {name.rsplit(":", 1)[1]: int(total) for name, total in rows}
    return {k: by_segment.get(seg, 0) for k, seg in chart.CATEGORY_SEGMENTS.items()}


def _rules_document(version: str) -> str:
    """The Chinese title of the policy a project's rules come from (its version identifier if
    the file cannot be read: the page still renders)."""
    from funding_rules.loader import get_rules
    from ledger.core.errors import Refusal

    try:
        return get_rules(version).document
    except Refusal:  # a missing or changed rules file is verify's to report, not this page's
        return version


def enterprise_project(session: Session, viewer: Viewer, code: str, as_of: dt.date | None, *, lane: str | None = None) -> dict:
    """One project as the enterprise may see it: 404 (NotFound) for any other."""
    from reports.status import report_dict

    require_project(session, viewer, code)
    lanes_allowed = visible_lanes(session, viewer, code)
    if lane is not None and (not lane.startswith("L") or not lane[1:].isdigit() or int(lane[1:]) not in lanes_allowed):
        raise NotFound(lane)
    report = _status(session, viewer, as_of)
    found = [p for p in report_dict(report)["projects"] if p["code"] == code]
    if not found:
        raise NotFound(code)  # not approved by the as-of date
    project = found[0]
    when = report.as_of
    state = load_project(session, code, as_of=when)
    views = tranche_views(session, state)
    shown = [n for n in lanes_allowed if lane is None or f"L{n}" == lane]
    lanes = []
    for n in shown:
        balances = project_balances(session, code, as_of=when, lane=f"L{n}")
        summary = next(x for x in project["lanes"] if x["lane"] == f"L{n}")
        timeline = []
        for v in (v for v in views if v.lane_no == n):
            timeline.append({
                "seq": v.seq, "name": v.name, "basis": zh(BASIS_ZH, v.basis), "amount": format_fen(v.amount_fen),
                "status": v.status, "status_zh": zh(STATUS_ZH, v.status),
                "conditions": [{"condition": c, "zh": zh(CONDITION_ZH, c), "met": c not in v.unmet,
                                "met_on": (state.met_on.get((n, c)) or state.met_on.get((None, c)) or "") and
                                str(state.met_on.get((n, c)) or state.met_on.get((None, c)))}
                               for c in v.conditions],
            })
        nxt = summary["next_tranche"]
        waits = "" if nxt is None else (
            "各项条件均已满足，可申请拨付" if not nxt["waits_on"] else
            "尚待：" + "；".join(zh(CONDITION_ZH, w["condition"]) for w in nxt["waits_on"]))
        lanes.append({**summary, "balances": {k: format_fen(v) for k, v in balances.items()},
                      "status_zh": zh(STATUS_ZH, summary["status"]), "timeline": timeline, "next_waits": waits})
    totals = None
    by_category = None
    if "demand" in project["roles"] and lane is None:
        totals = {k: format_fen(v) for k, v in project_balances(session, code, as_of=when).items()}
        by_category = {k: format_fen(v) for k, v in self_funding_by_category(session, code, when).items()}
    return {
        "as_of": when.isoformat(), "party": {"uscc": report.party_uscc, "name": report.party_name},
        "project": {k: v for k, v in project.items() if k != "lanes"} | {"rules_document": _rules_document(project["rules_version"])},
        "lanes": lanes, "totals": totals,
        "self_funding_by_category": by_category, "period_end": state.end_date.isoformat(),
    }


def status_files(session: Session, viewer: Viewer, as_of: dt.date | None, out_dir) -> dict[str, object]:
    """The files `jiebang report status --party USCC --out DIR` writes, by suffix."""
    from reports.status import write_report_files

    report = _status(session, viewer, as_of)
    return {path.suffix.lstrip("."): path for path in write_report_files(report, out_dir)}


# --- auditor --------------------------------------------------------------------------------


def auditor_home(session: Session, viewer: Viewer) -> dict:
    codes = visible_projects(session, viewer)
    rows = session.execute(select(Project.code, Project.name, Project.city, Project.mode).where(Project.code.in_(codes))
                           .order_by(Project.code)).all()
    return {"projects": [{"code": c, "name": n, "city": zh(CITY_ZH, ci), "mode": zh(MODE_ZH, m)} for c, n, ci, m in rows]}


def _cell(value, column) -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return column.empty
    from reports.audit import _cell_text

    try:
        return _cell_text(value.item() if hasattr(value, "item") else value, column)
    except (TypeError, ValueError):
        return str(value)


def audit_pages(session: Session, viewer: Viewer, code: str, as_of: dt.date | None) -> dict:
    """The audit pack's sections, each table as header and text rows, exactly as the PDF shows them."""
    from reports.audit import audit_pack, resolve_as_of

    require_project(session, viewer, code)
    _project, when, basis = resolve_as_of(session, code, as_of)
    pack = audit_pack(session, code, as_of=when, whole_ledger=lambda: whole_ledger(session))
    sections = []
    for i, section in enumerate(pack.sections, start=1):
        tables = []
        for table in section.tables:
            records = table.frame.to_dict("records")
            tables.append({
                "title": table.title,
                "columns": [{"header": c.header.replace("\n", " "), "kind": c.kind} for c in table.columns],
                "rows": [{"role": r.get("_role") or "item", "cells": [_cell(r.get(c.key), c) for c in table.columns]} for r in records],
                "notes": list(table.notes),
            })
        sections.append({"number": i, "heading": section.heading, "intro": list(section.intro), "tables": tables})
    integ = pack.integrity
    return {
        "code": pack.code, "name": pack.name, "as_of": pack.as_of.isoformat(), "cutoff_basis": basis,
        "stem": pack.stem, "beancount_dir": pack.beancount_dir,
        "balances": {k: format_fen(v) for k, v in pack.balances.items()},
        "integrity": {"anchor_entry": integ.anchor_id, "anchor_hash": integ.anchor_hash,
                      "anchor_date": integ.anchor_date.isoformat() if integ.anchor_date else None,
                      "entries_as_of": integ.entries_as_of, "project_entries": integ.project_entries,
                      "verify_ok": integ.verify_ok, "verify_problem": integ.verify_problem},
        "sections": sections,
    }


def audit_files(session: Session, viewer: Viewer, code: str, as_of: dt.date | None, out_dir) -> dict[str, object]:
    """The files `jiebang report audit --project CODE --out DIR` writes: name -> path (beancount files
    under their folder name)."""
    from reports.audit import resolve_as_of, write_audit_pack

    require_project(session, viewer, code)
    _project, when, _basis = resolve_as_of(session, code, as_of)
    files = {}
    for path in write_audit_pack(session, code, out_dir, as_of=when, whole_ledger=lambda: whole_ledger(session)):
        if path.is_dir():
            for inner in sorted(path.iterdir()):
                files[f"{path.name}/{inner.name}"] = inner
        else:
            files[path.name] = path
    return files


def audit_pack_key(session: Session, viewer: Viewer, code: str, as_of: dt.date | None) -> tuple:
    """What an audit pack's bytes depend on: the project, the cut-off and the chain's head (of
    the request's snapshot, read by ``scoped_session`` before its role was set)."""
    from reports.audit import resolve_as_of

    require_project(session, viewer, code)
    _project, when, _basis = resolve_as_of(session, code, as_of)
    return code, when, session.info[CHAIN_HEAD]


def verification(session: Session, viewer: Viewer) -> dict:
    from ledger.core.journal import chain_head
    from ledger.programme.projection import verify_ledger

    with whole_ledger(session):
        result = verify_ledger(session)
        head_id, head_hash = chain_head(session)
    return {"ok": result.ok, "entries": result.entries, "head_entry": result.head_id, "head_hash": result.head_hash,
            "chain_head_entry": head_id, "chain_head_hash": head_hash,
            "first_bad_entry": result.first_bad_entry, "problem": result.problem}


# --- bureau ---------------------------------------------------------------------------------


def budget_by_year(session: Session) -> list[dict]:
    def sums(prefix: str) -> dict[str, int]:
        rows = session.execute(
            select(Account.name, func.coalesce(func.sum(Posting.amount_fen), 0))
            .join(Posting, Posting.account_id == Account.id).where(Account.name.like(prefix + "%")).group_by(Account.name)
        ).all()
        return {name.rsplit(":", 1)[1]: int(total) for name, total in rows}

    appropriated = sums(chart.budget_appropriated(2000).rsplit(":", 1)[0] + ":")
    available = sums(chart.budget_available(2000).rsplit(":", 1)[0] + ":")
    released_prefix = chart.grant_released("P", 1).split(":P:", 1)[0] + ":"
    released = dict(session.execute(
        select(Project.budget_year, func.coalesce(func.sum(Posting.amount_fen), 0))
        .select_from(Posting).join(Account, Account.id == Posting.account_id)
        .join(Project, Project.code == Account.project_code)
        .where(Account.name.like(released_prefix + "%")).group_by(Project.budget_year)
    ).all())
    rows = []
    for segment in sorted(appropriated):
        year = int(segment.lstrip("Y"))
        a, avail = -appropriated[segment], available.get(segment, 0)
        rows.append({"year": year, "appropriated": format_fen(a), "obligated": format_fen(a - avail),
                     "released": format_fen(int(released.get(year, 0))), "available": format_fen(avail)})
    return rows


def forecast_summary(session: Session, as_of: dt.date, scenario, *, years: int = 4, runs: int = 2_000, seed: int = 1) -> dict:
    """``build_forecast`` as `jiebang report forecast --as-of DATE --years 4 --runs 2000 --seed 1` computes it."""
    from reports.forecast import Window, build_forecast
    from reports.forecast_render import report_dict

    forecast = build_forecast(session, window=Window(as_of, as_of.year, years), scenario=scenario, runs=runs, seed=seed)
    data = report_dict(forecast)
    return {"as_of": data["as_of"], "runs": data["runs"], "seed": data["seed"], "chain_head": data["chain_head"],
            "scenario": scenario.name, "summary": data["summary"]}


def projects_by(session: Session, as_of: dt.date) -> dict:
    from ledger.programme.views import project_list

    rows = project_list(session)
    status = {}
    for row in rows:
        state = load_project(session, row["code"], as_of=as_of)
        accepted = "acceptance_passed" in state.conditions.get(None, set())
        status[row["code"]] = "terminated" if state.terminated_on else "accepted" if accepted else "active"
    count = lambda key: sorted(Counter(key(r) for r in rows).items())
    return {
        "by_city": [{"key": k, "label": zh(CITY_ZH, k), "count": n} for k, n in count(lambda r: r["city"])],
        "by_mode": [{"key": k, "label": zh(MODE_ZH, k), "count": n} for k, n in count(lambda r: r["mode"])],
        "by_status": [{"key": k, "label": zh(STATUS_ZH, k), "count": n} for k, n in count(lambda r: status[r["code"]])],
        "projects": [{**r, "city_zh": zh(CITY_ZH, r["city"]), "mode_zh": zh(MODE_ZH, r["mode"]),
                      "status": status[r["code"]], "status_zh": zh(STATUS_ZH, status[r["code"]])} for r in rows],
    }


def dashboard(session: Session, viewer: Viewer, as_of: dt.date | None, scenario) -> dict:
    """The bureau's dashboard as of ``as_of`` (default: the latest entry's value date, as the status reports)."""
    from reports.status import default_as_of

    if viewer.kind != "bureau":
        raise NotFound("dashboard")
    as_of = as_of or default_as_of(session)
    return {"as_of": as_of.isoformat(), "budget": budget_by_year(session), "forecast": forecast_summary(session, as_of, scenario),
            **projects_by(session, as_of), "due": due_list(session, as_of)}


def due_list(session: Session, as_of: dt.date) -> list[dict]:
    """``ledger.programme.due.due_items`` (the `jiebang due` read model), within 90 days."""
    from ledger.programme.due import due_items

    return [{"kind": d.kind, "kind_zh": zh(DUE_ZH, d.kind), "project": d.project_code, "lane": d.lane,
             "amount": None if d.amount_fen is None else format_fen(d.amount_fen),
             "date": str(d.date) if d.date else "", "description": d.description, "command": d.command}
            for d in due_items(session, as_of)]
