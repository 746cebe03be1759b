"""What is due: the read model of what needs an officer's attention at a date.

``due_items`` lists, for the projects asked about (all by default):

* ``tranche_ready``: a tranche whose conditions hold and that is not released (for a
  ``subsidy_earned`` tranche, only while some subsidy is earned and unpaid);
* ``pledge_behind``: self-funding whose 到位率 is behind the schedule. The schedule is
  linear over the project period (start to the end with approved extensions): by a date,
  the pledged amount times the share of the period elapsed, rounded half up to the fen,
  should have arrived. DEFAULT: neither city's text sets a schedule for self-funding; the
  linear one is our proposal, to be reviewed with the bureau;
* ``clawback_outstanding``: a lane's clawback receivable still open ``within_days`` or more
  days after it was first assessed;
* ``period_ending`` / ``extension_ending``: a project still running (not terminated, not
  closed, acceptance not passed) whose period ends within ``within_days`` days, or has
  already ended; ``extension_ending`` when the end is an extended one;
* ``acceptance_failed``: a failed acceptance the rules leave to the bureau
  (``closure.failed_acceptance = officer``), until the project is terminated or closed;
* ``balance_recoverable``: a closed project whose rules retain the balance only
  ``closure.recover_after_years`` years after the acceptance, from that anniversary until
  it is recovered.

Built on the one fold (``state.project_folds`` and ``state.tranche_view``) with the amounts
summed in SQL, one query each for projects, lanes, tranches and postings (per 500
projects). It never writes. The order is deterministic: by date, kind, project, lane, then
the command. Used by ``jiebang due`` and the web portal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from funding_rules.checks import BUDGET_CATEGORY_NAMES, add_months, balance_recoverable_on
from funding_rules.loader import get_rules
from ledger.core.models import Account, Posting
from ledger.core.money import format_fen, format_fen_grouped
from ledger.programme import chart
from ledger.programme.models import Lane, Project, Tranche
from ledger.programme.state import project_folds, tranche_view

KINDS = ("tranche_ready", "pledge_behind", "clawback_outstanding", "period_ending", "extension_ending",
         "acceptance_failed", "balance_recoverable")
DUE_COLUMNS = ("date", "kind", "project", "lane", "amount", "description", "command")

_KIND_ORDER = {kind: i for i, kind in enumerate(KINDS)}
_FAMILIES = ("clawback_receivable", "subsidy_payable", "grant_unreleased", "self_funding_pledged", "self_funding_contributed",
             "advances", "subsidy_unreported")
_SEGMENT_CATEGORIES = {segment: category for category, segment in chart.CATEGORY_SEGMENTS.items()}
_CHUNK = 500


@dataclass(frozen=True)
class DueItem:
    """One thing due.

    Attributes:
      kind: one of KINDS.
      lane: ``L1`` ... or None for the whole project.
      amount_fen: what is at stake (the tranche, the shortfall, the clawback), None if nothing.
      date: the date that makes it due (conditions met, period end, clawback assessed).
      description: one line in Chinese, with no command in it.
      command: the jiebang command that resolves it, as it can be pasted.
    """

    kind: str  # one of KINDS
    project_code: str
    lane: str | None
    amount_fen: int | None
    date: dt.date | None  # the date that makes it due
    description: str  # Chinese, one line, no command in it
    command: str  # the jiebang command that resolves it (pasteable)

    def row(self) -> dict:
        """The item as ``jiebang due`` lists it (amount in yuan, date ISO)."""
        return {
            "date": "" if self.date is None else self.date.isoformat(), "kind": self.kind, "project": self.project_code,
            "lane": self.lane or "", "amount": "" if self.amount_fen is None else format_fen(self.amount_fen),
            "description": self.description, "command": self.command,
        }


def due_items(
    session: Session,
    as_of: dt.date,
    *,
    city: str | None = None,
    within_days: int = 90,
    projects: Collection[str] | None = None,
) -> list[DueItem]:
    """Everything due on ``as_of`` for the projects of ``city`` (or named in ``projects``)."""
    query = select(Project).where(Project.approval_date <= as_of).order_by(Project.code)
    if city is not None:
        query = query.where(Project.city == city.strip().lower())
    chosen = list(session.scalars(query))
    if projects is not None:
        wanted = {code.strip().upper() for code in projects}
        chosen = [p for p in chosen if p.code in wanted]
    items: list[DueItem] = []
    for start in range(0, len(chosen), _CHUNK):
        items.extend(_due_chunk(session, chosen[start : start + _CHUNK], as_of, within_days))
    items.sort(key=lambda i: (i.date or as_of, _KIND_ORDER[i.kind], i.project_code, i.lane or "", i.command))
    return items


def _due_chunk(session: Session, chosen: list[Project], as_of: dt.date, within_days: int) -> list[DueItem]:
    codes = [p.code for p in chosen]
    folds = project_folds(session, chosen, as_of)
    lanes: dict[str, dict[int, str]] = {code: {} for code in codes}
    for code, n, uscc in session.execute(select(Lane.project_code, Lane.lane_no, Lane.solver_uscc).where(Lane.project_code.in_(codes))):
        lanes[code][n] = uscc
    tranches: dict[str, list[Tranche]] = {code: [] for code in codes}
    for t in session.scalars(select(Tranche).where(Tranche.project_code.in_(codes)).order_by(Tranche.project_code, Tranche.lane_no, Tranche.seq)):
        tranches[t.project_code].append(t)
    sums, first_debit, pledge_categories = _sums(session, codes, as_of)
    items: list[DueItem] = []
    for p in chosen:
        f = folds[p.code]
        running = f.terminated_on is None and f.closed_on is None
        items += _tranches_ready(p, f, tranches[p.code], sums, as_of)
        items += _clawbacks(p, lanes[p.code], sums, first_debit, as_of, within_days)
        if running:
            items += _pledge(p, f, sums, pledge_categories, as_of)
            accepted = "acceptance_passed" in f.conditions.get(None, set())
            if not accepted and any(n not in f.eliminated for n in lanes[p.code]):
                items += _period(p, f, as_of, within_days)
        items += _rules_that_act(p, f, lanes[p.code], sums, as_of)
    return items


def _rules_that_act(p: Project, f, lanes: dict[int, str], sums, as_of: dt.date) -> list[DueItem]:
    """Issue 14 point 8: a failed acceptance left to the bureau, and a retained balance whose
    years are up."""
    out = []
    accepted = (None, "acceptance_passed") in f.met_on  # a later acceptance that passed settles it
    if f.acceptance_failed_on is not None and not accepted and f.terminated_on is None and f.closed_on is None:
        rules = get_rules(p.rules_version)
        if rules.closure.failed_acceptance == "officer":
            out.append(DueItem(
                "acceptance_failed", p.code, None, None, f.acceptance_failed_on,
                f"验收未通过（{f.acceptance_failed_on.isoformat()}），按规则由主管部门决定是否终止并收回结余和违规使用的财政资金（录入时附决定文号）",
                # The decision's reference is not known until it is made: the command asks
                # for it (click names the missing --reference) rather than carry a
                # placeholder that would be recorded as typed.
                f"jiebang terminate --project {p.code} --date {as_of.isoformat()}",
            ))
    accepted_on = f.met_on.get((None, "acceptance_passed"))
    if f.closed_on is not None and accepted_on is not None and f.balance_recovered_on is None and f.terminated_on is None:
        rules = get_rules(p.rules_version)
        due_on = balance_recoverable_on(accepted_on, rules)
        tracked = rules.funding.subsidy_use_tracked
        balance = sum(sums.get((p.code, "advances", n), 0) + (sums.get((p.code, "subsidy_unreported", n), 0) if tracked else 0)
                      for n in lanes if n not in f.eliminated)
        if due_on is not None and due_on <= as_of and balance > 0:
            out.append(DueItem(
                "balance_recoverable", p.code, None, balance, due_on,
                f"验收（{accepted_on.isoformat()}）后留用的结余已满 {rules.closure.recover_after_years} 年，"
                f"应收回 {format_fen_grouped(balance)}（录入时附收回决定文号）",
                f"jiebang recover-balance --project {p.code} --date {as_of.isoformat()}",
            ))
    return out


def _sums(session: Session, codes: list[str], as_of: dt.date):
    """Balances by (project, family, lane) as of a date, the first date each clawback
    receivable was debited, and the budget categories pledged, from one grouped query."""
    prefixes = [chart.FAMILIES[f] for f in _FAMILIES]
    rows = session.execute(
        select(
            Account.project_code, Account.name, Posting.budget_category,
            func.sum(Posting.amount_fen),
            func.min(case((Posting.amount_fen > 0, Posting.value_date))),
        )
        .join(Posting, Posting.account_id == Account.id)
        .where(
            Account.project_code.in_(codes), Posting.value_date <= as_of,
            or_(*(Account.name.startswith(prefix, autoescape=True) for prefix in prefixes)),
        )
        .group_by(Account.project_code, Account.name, Posting.budget_category)
    ).all()
    sums: dict[tuple[str, str, int | None], int] = {}
    first_debit: dict[tuple[str, int | None], dt.date] = {}
    pledge_categories: dict[str, dict[str, int]] = {}
    for code, name, category, amount, first in rows:
        family = chart.family_of(name)
        where = chart.project_and_lane(name)
        lane_no = where[1] if where else None
        key = (code, family, lane_no)
        sums[key] = sums.get(key, 0) + int(amount)
        if family == "clawback_receivable" and first is not None:
            first = first if isinstance(first, dt.date) else dt.date.fromisoformat(str(first))
            first_debit[(code, lane_no)] = min(first_debit.get((code, lane_no), first), first)
        if family == "self_funding_pledged" and category:
            pledge_categories.setdefault(code, {})[category] = pledge_categories.get(code, {}).get(category, 0) - int(amount)
        if family == "self_funding_contributed":
            segment = name.rsplit(":", 1)[1]
            contributed = pledge_categories.setdefault(f"contributed:{code}", {})
            contributed[_SEGMENT_CATEGORIES[segment]] = contributed.get(_SEGMENT_CATEGORIES[segment], 0) + int(amount)
    return sums, first_debit, pledge_categories


def _tranches_ready(p: Project, f, rows: list[Tranche], sums, as_of: dt.date) -> list[DueItem]:
    out = []
    for t in rows:
        view = tranche_view(t, f)
        if view.status != "eligible":
            continue
        if view.basis == "grant_share":
            amount = view.amount_fen
        else:
            payable = -sums.get((p.code, "subsidy_payable", view.lane_no), 0)
            unreleased = sums.get((p.code, "grant_unreleased", view.lane_no), 0)
            amount = max(0, min(payable, unreleased, view.amount_fen))
            if amount == 0:
                continue
        met = [f.met_on.get((view.lane_no, c)) or f.met_on.get((None, c)) for c in view.conditions]
        since = max((d for d in met if d is not None), default=p.approval_date)
        out.append(DueItem(
            "tranche_ready", p.code, f"L{view.lane_no}", amount, since,
            f"L{view.lane_no} 第{view.seq}期（{view.name}）拨付条件已满足，待拨付 {format_fen_grouped(amount)}",
            f"jiebang release --project {p.code} --lane L{view.lane_no} --tranche {view.seq} --date {as_of.isoformat()}",
        ))
    return out


def _clawbacks(p: Project, lanes: dict[int, str], sums, first_debit, as_of: dt.date, within_days: int) -> list[DueItem]:
    out = []
    for n in sorted(lanes):
        owed = sums.get((p.code, "clawback_receivable", n), 0)
        since = first_debit.get((p.code, n))
        if owed <= 0 or since is None or (as_of - since).days < within_days:
            continue
        out.append(DueItem(
            "clawback_outstanding", p.code, f"L{n}", owed, since,
            f"L{n} 应追回资金 {format_fen_grouped(owed)} 自 {since.isoformat()} 起未收回，已逾 {(as_of - since).days} 天",
            f"jiebang collect --project {p.code} --lane L{n} --amount {format_fen(owed)} --date {as_of.isoformat()}",
        ))
    return out


def _pledge(p: Project, f, sums, categories, as_of: dt.date) -> list[DueItem]:
    pledged = -sums.get((p.code, "self_funding_pledged", None), 0)
    contributed = sums.get((p.code, "self_funding_contributed", None), 0)
    if pledged <= 0:
        return []
    end = add_months(p.end_date, f.extension_months)
    elapsed = min(max((as_of - p.start_date).days, 0), (end - p.start_date).days)
    expected = int((Decimal(pledged) * elapsed / (end - p.start_date).days).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    shortfall = expected - contributed
    if shortfall <= 0:
        return []
    category = _category_for(categories.get(p.code, {}), categories.get(f"contributed:{p.code}", {}))
    rate = (Decimal(contributed) * 100 / pledged).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    due_rate = (Decimal(expected) * 100 / pledged).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return [DueItem(
        "pledge_behind", p.code, None, shortfall, end,
        f"自筹资金到位率 {rate}%，按期应达 {due_rate}%（承诺 {format_fen_grouped(pledged)}，已到位 "
        f"{format_fen_grouped(contributed)}，应到位 {format_fen_grouped(expected)}），差 {format_fen_grouped(shortfall)}",
        f"jiebang contribute --project {p.code} --amount {format_fen(shortfall)} --category {category} --date {as_of.isoformat()}",
    )]


def _category_for(pledged: dict[str, int], contributed: dict[str, int]) -> str:
    """The budget category to suggest: the largest pledged by category, else the largest
    contributed, else 业务费 (business)."""
    for by in (pledged, contributed):
        known = {c: v for c, v in by.items() if c in BUDGET_CATEGORY_NAMES and v > 0}
        if known:
            return max(sorted(known), key=lambda c: known[c])
    return "business"


def _period(p: Project, f, as_of: dt.date, within_days: int) -> list[DueItem]:
    end = add_months(p.end_date, f.extension_months)
    days = (end - as_of).days
    if days > within_days:
        return []
    extended = f.extensions > 0
    if days >= 0:
        when = f"将于 {end.isoformat()} 到期（还有 {days} 天）"
    else:
        when = f"已于 {end.isoformat()} 到期（已过 {-days} 天）"
    what = f"延期后的实施期{when}" if extended else f"实施期{when}"
    return [DueItem(
        "extension_ending" if extended else "period_ending", p.code, None, None, end,
        f"{what}，尚未通过验收",
        f"jiebang stage --project {p.code} --stage acceptance --passed --date {as_of.isoformat()}",
    )]


__all__ = ["DUE_COLUMNS", "KINDS", "DueItem", "due_items"]
