"""A project's state at a date, folded from its events by ``ledger.programme.fold``, and its tranches."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, aliased

from funding_rules import checks
from funding_rules.loader import Rules, RulesChangedError, get_rules
from ledger.core.errors import Refusal
from ledger.core.models import Account, JournalEntry, Posting
from ledger.programme import cache as state_cache
from ledger.programme import chart, fold, reads
from ledger.programme.common import CATEGORIES
from ledger.programme.models import Lane, Project, ProjectEvent, Tranche

# --- project state, derived from events and postings ------------------------------------


@dataclass
class ProjectState:
    """What the services need to know about a project at a date, folded from its events
    by ``ledger.programme.fold.fold_project`` (see there for each attribute)."""

    project: Project
    rules: Rules
    lanes: dict[int, str]  # lane_no -> solver USCC
    conditions: dict[int | None, set[str]] = field(default_factory=dict)  # lane (None: project) -> met
    eliminated: dict[int, dt.date] = field(default_factory=dict)
    terminated_on: dt.date | None = None
    released_tranches: set[int] = field(default_factory=set)
    extension_months: int = 0
    extensions: int = 0
    closed_on: dt.date | None = None
    met_on: dict[tuple[int | None, str], dt.date] = field(default_factory=dict)
    ended_by: str | None = None
    acceptance_failed_on: dt.date | None = None
    audited_cash: dict[int, int] = field(default_factory=dict)
    balance_recovered_on: dt.date | None = None

    def met(self, n: int) -> set[str]:
        return self.conditions.get(None, set()) | self.conditions.get(n, set())

    @property
    def end_date(self) -> dt.date:
        return checks.add_months(self.project.end_date, self.extension_months)

    def lane_of(self, solver: str | int | None) -> int:
        if solver is None:
            if len(self.lanes) == 1:
                return 1
            raise Refusal(
                "lane_must_be_named",
                f"project {self.project.code} has {len(self.lanes)} lanes; name one with --lane (a solver USCC or L1..L{len(self.lanes)}).",
            )
        return reads.lane_number(self.project.code, self.lanes, solver)


def pinned_rules(project: Project) -> Rules:
    """The rules a project is pinned to: its version, refused in one line if the file's
    content is no longer what the project pinned at approval (a change of policy must be
    published as a new version, never edited into the pinned one)."""
    try:
        return get_rules(project.rules_version, fingerprint=project.rules_fingerprint)
    except RulesChangedError as changed:
        raise changed.for_project(project.code, project.approval_date) from None


def _events_query(dated: bool):
    """Project events with the date of the entry reversing each, if any, for a list of codes."""
    undo = aliased(JournalEntry)
    query = (
        select(ProjectEvent.project_code, ProjectEvent.entry_id, ProjectEvent.value_date, ProjectEvent.kind,
               ProjectEvent.lane_no, ProjectEvent.stage, ProjectEvent.passed, ProjectEvent.tranche_id,
               ProjectEvent.payload, undo.value_date)
        .outerjoin(undo, undo.reverses_id == ProjectEvent.entry_id)
        .where(ProjectEvent.project_code.in_(bindparam("codes", expanding=True)))
        .order_by(ProjectEvent.entry_id)
    )
    return query.where(ProjectEvent.value_date <= bindparam("as_of")) if dated else query


# Built once: the services fold a project on every event, and building the statement cost
# more than running it.
_EVENTS = {dated: _events_query(dated) for dated in (False, True)}


def project_events(
    session: Session, codes: list[str], as_of: dt.date | None = None
) -> tuple[dict[str, list[fold.ProjectEvent]], dict[int, dt.date]]:
    """Each project's events as of ``as_of`` (None: all) in chain order, and the value date
    of the entry reversing each reversed one: one query per 500 projects."""
    events: dict[str, list[fold.ProjectEvent]] = {code: [] for code in codes}
    reversals: dict[int, dt.date] = {}
    for start in range(0, len(codes), 500):
        params = {"codes": codes[start : start + 500]} | ({} if as_of is None else {"as_of": as_of})
        rows = session.execute(_EVENTS[as_of is not None], params)
        for code, entry_id, value_date, kind, lane_no, stage, passed, tranche_id, payload, undone in rows:
            events[code].append(fold.ProjectEvent(
                entry_id, value_date, kind, lane_no, stage, None if passed is None else bool(passed), tranche_id,
                json.loads(payload) if payload else {},
            ))
            if undone is not None:
                reversals[entry_id] = undone
    return events, reversals


def project_folds(session: Session, projects: list[Project], as_of: dt.date | None = None) -> dict[str, fold.ProjectFold]:
    """The fold of each project's events as of ``as_of`` (None: now): one query per 500
    projects, each event with the date of the entry reversing it, if any."""
    codes = [p.code for p in projects]
    events, reversals = project_events(session, codes, as_of)
    by_code = {p.code: p for p in projects}
    return {code: fold.fold_project(by_code[code].approval_date, events[code], reversals, as_of) for code in codes}


def project_state(project: Project, rules: Rules, lanes: dict[int, str], folded: fold.ProjectFold) -> ProjectState:
    return ProjectState(
        project=project, rules=rules, lanes=dict(lanes), conditions=folded.conditions, eliminated=folded.eliminated,
        terminated_on=folded.terminated_on, released_tranches=folded.released_tranches,
        extension_months=folded.extension_months, extensions=folded.extensions, closed_on=folded.closed_on,
        met_on=folded.met_on, ended_by=folded.ended_by, acceptance_failed_on=folded.acceptance_failed_on,
        audited_cash=dict(folded.audited_cash), balance_recovered_on=folded.balance_recovered_on,
    )


def load_project(session: Session, code: str, *, as_of: dt.date | None = None) -> ProjectState:
    code = code.strip().upper()
    cache = state_cache.active(session)
    if cache is not None:
        return _cached_state(session, cache, code, as_of)
    project = _project_row(session, code)
    lanes = dict(session.execute(select(Lane.lane_no, Lane.solver_uscc).where(Lane.project_code == code)).all())
    folded = project_folds(session, [project], as_of)[code]
    return project_state(project, pinned_rules(project), lanes, folded)


def _project_row(session: Session, code: str) -> Project:
    project = session.execute(select(Project).where(Project.code == code)).scalar_one_or_none()
    if project is None:
        raise Refusal("project_must_exist", f"project {code} does not exist; `jiebang projects` lists the codes.")
    return project


def _cached_state(session: Session, cache: state_cache.StateCache, code: str, as_of: dt.date | None) -> ProjectState:
    """``load_project`` from the import's cache: the project's events are read once, and the
    fold of all of them is advanced by each entry posted (``cache.after_post``). A state as
    of a date before some event or reversal is folded again from the cached events."""
    cached = cache.projects.get(code)
    if cached is None:
        project = _project_row(session, code)
        lanes = dict(session.execute(select(Lane.lane_no, Lane.solver_uscc).where(Lane.project_code == code)).all())
        events, reversals = project_events(session, [code])
        tranche_ids = {
            (lane_no, seq): tranche_id for tranche_id, lane_no, seq in session.execute(
                select(Tranche.id, Tranche.lane_no, Tranche.seq).where(Tranche.project_code == code))
        }
        dates = [e.value_date for e in events[code]]
        cached = state_cache.CachedProject(
            project, pinned_rules(project), lanes, events[code], reversals,
            fold.fold_project(project.approval_date, events[code], reversals), tranche_ids, max(dates, default=None),
        )
        cache.projects[code] = cached
        cache.touched.add(code)
    current = as_of is None or (
        (cached.last_date is None or as_of >= cached.last_date) and all(d <= as_of for d in cached.reversals.values())
    )
    if current:
        folded = state_cache.snapshot(cached.now)
    else:
        folded = fold.fold_project(cached.project.approval_date, cached.events, cached.reversals, as_of)
    return project_state(cached.project, cached.rules, cached.lanes, folded)


def extension_months_by_project(session: Session) -> dict[str, int]:
    """Months of approved extension per project, from the one fold."""
    projects = session.scalars(select(Project)).all()
    return {code: f.extension_months for code, f in project_folds(session, list(projects)).items()}


def _lane_sums(session: Session, state: ProjectState, n: int) -> dict[str, int]:
    """Balances of one lane's accounts by family (all dates), one grouped query (or, during
    an import, the balances cached and advanced by each entry posted).

    Grant spending is also kept per budget category, as ``grant_spent:<category>``.
    """
    cache = state_cache.active(session)
    if cache is None:
        rows = session.execute(
            select(Account.name, func.coalesce(func.sum(Posting.amount_fen), 0))
            .join(Posting, Posting.account_id == Account.id)
            .where(Account.project_code == state.project.code, Account.lane == state.lanes[n])
            .group_by(Account.name)
        ).all()
    else:
        key = (state.project.code, state.lanes[n])
        accounts = cache.lane_accounts.get(key)
        if accounts is None:
            accounts = {
                name: [int(amount), int(count)] for name, amount, count in session.execute(
                    select(Account.name, func.coalesce(func.sum(Posting.amount_fen), 0), func.count(Posting.id))
                    .outerjoin(Posting, Posting.account_id == Account.id)
                    .where(Account.project_code == key[0], Account.lane == key[1])
                    .group_by(Account.name)
                )
            }
            cache.loaded_lane(key, accounts)
        rows = [(name, held[0]) for name, held in sorted(accounts.items()) if held[1]]
    sums: dict[str, int] = {}
    for name, amount in rows:
        family = chart.family_of(name)
        if family is not None:
            sums[family] = sums.get(family, 0) + int(amount)
        if family in ("grant_spent", "subsidy_reported"):
            sums[f"{family}:{_SEGMENT_CATEGORIES[name.rsplit(':', 1)[1]]}"] = int(amount)
    return sums


_SEGMENT_CATEGORIES = {segment: category for category, segment in chart.CATEGORY_SEGMENTS.items()}


def _spent_by_category(sums: dict[str, int], family: str = "grant_spent") -> dict[str, int]:
    """Grant spent (or, with ``subsidy_reported``, subsidy reported spent) per budget
    category, from ``_lane_sums``."""
    return {c: sums[f"{family}:{c}"] for c in CATEGORIES if f"{family}:{c}" in sums}


@dataclass(frozen=True)
class TrancheView:
    """A tranche with its status at a date.

    Attributes:
      status: planned (conditions unmet), eligible, released or cancelled.
      unmet: the conditions still missing, in rules order.
    """

    id: int
    lane_no: int
    seq: int
    name: str
    basis: str
    amount_fen: int
    conditions: tuple[str, ...]
    status: str
    unmet: tuple[str, ...]
    source: str


def tranche_views(session: Session, state: ProjectState) -> list[TrancheView]:
    cache = state_cache.active(session)
    cached = cache.projects.get(state.project.code) if cache is not None else None
    rows = cached.tranches if cached is not None else None
    if rows is None:
        rows = session.scalars(
            select(Tranche).where(Tranche.project_code == state.project.code).order_by(Tranche.lane_no, Tranche.seq)
        ).all()
        if cached is not None:  # tranches are written with the approval and never change
            cached.tranches = rows
    return [tranche_view(t, state) for t in rows]


def tranche_view(t: Tranche, state: ProjectState | fold.ProjectFold) -> TrancheView:
    """One tranche's status under a project's fold (a ``ProjectState`` or the bare fold)."""
    conditions = tuple(json.loads(t.conditions))
    unmet = tuple(c for c in conditions if c not in state.met(t.lane_no))
    if t.id in state.released_tranches:
        status = "released"
    elif state.terminated_on is not None or state.closed_on is not None or t.lane_no in state.eliminated:
        status = "cancelled"  # closure deobligates what was never released, as termination does
    else:
        status = "planned" if unmet else "eligible"
    return TrancheView(t.id, t.lane_no, t.seq, t.name, t.basis, t.amount_fen, conditions, status, unmet, t.source)


def condition_hint(condition: str, project: str, lane_no: int, date: dt.date | None) -> str:
    """What records ``condition``, in words and as a command that works when pasted (with
    the project, the lane and the date it is needed by). A bid payment's amount is the
    officer's to give: that hint names the verb in words, never a command that would fail."""
    when = f" --date {date.isoformat()}" if date is not None else ""
    lane = f" --lane L{lane_no}"
    stage = f"jiebang stage --project {project}"
    hints = {
        "approved": "the approval",
        "contract_signed": f"the contract signing (`{stage} --stage contract_signed --passed{when}`)",
        "first_bid_payment": f"a bid payment to the lane (recorded with the bid pay verb for {project} L{lane_no}, with the amount paid)",
        "midterm_passed": f"a passed mid-term check (`{stage} --stage midterm --passed{when}`)",
        "stage_passed": f"a passed 赛马 stage assessment of the lane (`{stage} --stage stage_assessment{lane} --passed{when}`)",
        "acceptance_passed": f"a passed acceptance (`{stage} --stage acceptance --passed{when}`)",
        "audit_report_received": f"the 专项审计报告 (`{stage} --stage audit_report --passed{when}`)",
    }
    return hints.get(condition, condition)
