"""Programme listings for the command line: parties, projects, and one project's sheet.

A view takes a session and plain arguments and returns plain rows (dicts keyed by the
listing's column names) or a small frozen dataclass of them; it never writes. Values are
what the listing shows and what ``--format json`` prints: dates in ISO form, amounts in
yuan (``format_fen``). ``cli.py`` only renders them.

The requests of maker–checker are listed by ``ledger.programme.approvals.list_requests``;
a project's balances contract is ``ledger.programme.reads.project_balances``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from funding_rules.checks import add_months
from ledger.core.money import format_fen
from ledger.programme.models import Party, Project
from ledger.programme.recorded import project_facts
from ledger.programme.state import (
    condition_hint,
    extension_months_by_project,
    load_project,
    tranche_views,
)

PARTY_COLUMNS = ("uscc", "name", "kind", "override")
PROJECT_COLUMNS = ("code", "name", "city", "mode", "category", "approved", "end", "obligation")
PROJECT_HEADER_KEYS = (
    "code", "name", "city", "rules_version", "category", "mode", "demand", "approval_date", "start_date", "end_date", "status",
    "pi", "indicators", "project_manager", "owner_letter", "exceptions",
)
LANE_COLUMNS = ("lane", "solver", "status")
TRANCHE_COLUMNS = ("lane", "seq", "name", "basis", "amount", "conditions", "status", "unmet")


def party_list(session: Session) -> list[dict]:
    """Registered parties by USCC; ``override`` is why a failing check digit was accepted."""
    return [
        {"uscc": p.uscc, "name": p.name, "kind": p.kind, "override": p.uscc_override_reason or ""}
        for p in session.scalars(select(Party).order_by(Party.uscc))
    ]


def project_list(session: Session) -> list[dict]:
    """Projects by code; ``end`` is the period end with approved extensions."""
    extended = extension_months_by_project(session)
    return [
        {"code": p.code, "name": p.name, "city": p.city, "mode": p.mode, "category": p.category,
         "approved": p.approval_date.isoformat(), "end": add_months(p.end_date, extended.get(p.code, 0)).isoformat(),
         "obligation": format_fen(p.approved_grant_fen)}
        for p in session.scalars(select(Project).order_by(Project.code))
    ]


@dataclass(frozen=True, slots=True)
class NextTranche:
    """The first planned tranche and what it waits on.

    Attributes:
      lane / seq: the tranche, e.g. lane ``L1``, tranche 2.
      waits_on: one sentence per unmet condition, naming the command that records it.
    """

    lane: str
    seq: int
    waits_on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProjectSheet:
    """One project at a date, as ``jiebang project show`` prints it.

    Attributes:
      info: the header keys (PROJECT_HEADER_KEYS), ``lanes`` and ``tranches`` (lists of
        dicts; a tranche's ``conditions`` and ``unmet`` are lists); the JSON output.
      next_tranche: the first tranche still planned, None when none waits.
    """

    info: dict
    next_tranche: NextTranche | None


def project_sheet(session: Session, code: str, *, as_of: dt.date | None = None) -> ProjectSheet:
    """A project, its lanes and its tranche schedule with status, as of a date."""
    state = load_project(session, code, as_of=as_of)
    views = tranche_views(session, state)
    p = state.project
    info = {
        "code": p.code, "name": p.name, "city": p.city, "rules_version": p.rules_version, "category": p.category,
        "mode": p.mode, "demand": p.demand_uscc, "approval_date": p.approval_date.isoformat(),
        "start_date": p.start_date.isoformat(), "end_date": state.end_date.isoformat(),
        "status": _status(state),
        "lanes": [
            {"lane": f"L{n}", "solver": u, "status": "eliminated" if n in state.eliminated else ("terminated" if state.terminated_on else "active")}
            for n, u in sorted(state.lanes.items())
        ],
        "tranches": [
            {"lane": f"L{v.lane_no}", "seq": v.seq, "name": v.name, "basis": v.basis, "amount": format_fen(v.amount_fen),
             "conditions": list(v.conditions), "status": v.status, "unmet": list(v.unmet)}
            for v in views
        ],
    }
    # The facts auditors read, as in force at the date (issue 14 point 9); the audit pack
    # shows their history.
    facts = project_facts(session, p.code, as_of)
    letter = facts.owner_letter or {}
    info.update({
        "pi": facts.pi, "indicators": list(facts.indicators), "project_manager": facts.project_manager,
        "owner_letter": " ".join(filter(None, (letter.get("reference"), letter.get("date")))) or None,
        "exceptions": [f"{x['event']} {x['date']}: {x['key']} {x['reference']}" for x in facts.exceptions],
    })
    waiting = [v for v in views if v.status == "planned"]
    nxt = None
    if waiting:
        first = waiting[0]
        nxt = NextTranche(f"L{first.lane_no}", first.seq, tuple(condition_hint(c, p.code, first.lane_no, as_of) for c in first.unmet))
    return ProjectSheet(info, nxt)


def _status(state) -> str:
    """terminated, closed (after a passed acceptance), accepted (not yet closed) or active."""
    if state.terminated_on is not None:
        return "terminated"
    if state.closed_on is not None:
        return "closed"
    return "accepted" if "acceptance_passed" in state.met(0) else "active"

