"""The one fold from journal facts to programme state: pure functions, no database.

Every business event carries its facts in the hashed content of its journal entry
(``JournalEntry.facts``). Two pure folds read them:

* ``rows_of`` maps one event to the programme rows it adds (parties, relations, projects,
  lanes, tranches, project events, settings, maker–checker requests, the accounts it
  opens), and ``decision_of`` to the decision it makes on an earlier request. The services
  write exactly these rows, and ``verify`` folds the whole journal through the same
  functions and compares the result with the tables (``ledger.programme.projection``).
* ``fold_project`` folds one project's events, in chain order and up to a date, into what
  the rules need to know (conditions met, eliminated lanes, released tranches, extensions,
  termination and closure). The services, the audit pack, the status report and the
  forecast all call it; nothing else folds events.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

# The programme tables, in the order a fold writes them (a row's references come first).
TABLES = ("parties", "party_relations", "projects", "lanes", "tranches", "project_events", "settings", "requests",
          "accounts")

# Each table's natural key: what ``verify`` names when a row differs.
KEYS = {
    "parties": ("uscc",),
    "party_relations": ("party_uscc", "related_uscc"),
    "projects": ("code",),
    "lanes": ("project_code", "lane_no"),
    "tranches": ("project_code", "lane_no", "seq"),
    "project_events": ("entry_id",),
    "settings": ("entry_id",),
    # A request keeps the number officers type (``jiebang approve 3``); it is carried in the
    # request's facts, so the fold derives it, and decisions name the request by it.
    "requests": ("id",),
    "accounts": ("name",),
}

# The columns each table holds, as the fold produces them. ``project_events.tranche`` is the
# released tranche's (lane_no, seq); the table stores its row id.
COLUMNS = {
    "parties": ("uscc", "name", "kind", "revenue_fen", "rnd_intensity", "innovation_star", "bad_credit",
                "uscc_override_reason", "recorded_by"),
    "party_relations": ("party_uscc", "related_uscc"),
    "projects": ("code", "name", "city", "rules_version", "rules_fingerprint", "category", "mode", "demand_uscc", "total_investment_fen",
                 "approved_grant_fen", "budget_year", "approval_date", "start_date", "end_date", "entry_id"),
    "lanes": ("project_code", "lane_no", "solver_uscc"),
    "tranches": ("project_code", "lane_no", "seq", "name", "basis", "amount_fen", "conditions", "source"),
    "project_events": ("entry_id", "project_code", "value_date", "kind", "lane_no", "stage", "passed", "tranche",
                       "reference", "payload"),
    "settings": ("entry_id", "name", "value", "set_by"),
    # requested_at and decided_at are left out: they are the database's wall clock when the
    # row was written, not facts that move money (the entries' own order and value dates are
    # hashed). entry_id is the request's fact entry (None for requests recorded before
    # 20261205_0006, which an upgrade snapshot covers instead).
    "requests": ("id", "entry_id", "kind", "project_code", "arguments", "requested_by", "status", "decided_by",
                 "decision_reason", "decision_entry_id"),
    # closed_on is left out: closing is the one change an account allows (once, by trigger),
    # and verify checks every posting against the account's dates instead.
    "accounts": ("name", "book", "type", "project_code", "lane", "opened_on"),
}

STAGES = {
    # stage name -> the condition a pass satisfies
    "contract_signed": "contract_signed",
    "midterm": "midterm_passed",
    "stage_assessment": "stage_passed",
    "acceptance": "acceptance_passed",
    "audit_report": "audit_report_received",
}


@dataclass(frozen=True, slots=True)
class Event:
    """A journal entry as the fold sees it.

    Attributes:
      entry_id / value_date / kind / project_code / actor: the entry's own fields.
      facts: the decoded ``facts`` of the entry (see ``rows_of`` for their shapes).
    """

    entry_id: int
    value_date: dt.date
    kind: str
    project_code: str | None
    actor: str
    facts: dict


def rows_of(event: Event) -> dict[str, list[dict]]:
    """The programme rows one event adds, by table.

    Fact shapes (any combination, each optional):

    * ``party`` (with ``related``): a party registration;
    * ``project``, ``lanes`` ([lane_no, solver]), ``tranches``: an approval;
    * ``event``: the project event (lane_no, stage, passed, tranche [lane_no, seq],
      reference, payload);
    * ``setting``: a ledger setting (name, value);
    * ``request``: a maker–checker request, pending (id, kind, project_code, arguments,
      requested_by); its decision comes later, see ``decision_of``;
    * ``opens``: accounts the entry opens, as [name, book, opened_on, project_code, lane];
    * ``snapshot``: rows by table, recorded once when a ledger made before facts existed
      was upgraded.
    """
    facts = event.facts
    out: dict[str, list[dict]] = {}
    party = facts.get("party")
    if party is not None:
        row = {k: party[k] for k in COLUMNS["parties"] if k != "recorded_by"}
        out["parties"] = [row | {"recorded_by": event.actor}]
        out["party_relations"] = [{"party_uscc": party["uscc"], "related_uscc": r} for r in party.get("related", [])]
    project = facts.get("project")
    if project is not None:
        out["projects"] = [
            {k: project.get(k) for k in COLUMNS["projects"] if k != "entry_id"} | {"entry_id": event.entry_id}
        ]
        out["lanes"] = [{"project_code": project["code"], "lane_no": n, "solver_uscc": s} for n, s in facts["lanes"]]
        out["tranches"] = [{"project_code": project["code"], **t} for t in facts["tranches"]]
    happened = facts.get("event")
    if happened is not None:
        tranche = happened.get("tranche")
        out["project_events"] = [{
            "entry_id": event.entry_id,
            "project_code": event.project_code,
            "value_date": event.value_date.isoformat(),
            "kind": event.kind,
            "lane_no": happened.get("lane_no"),
            "stage": happened.get("stage"),
            "passed": happened.get("passed"),
            "tranche": None if tranche is None else tuple(tranche),
            "reference": happened.get("reference"),
            "payload": happened.get("payload"),
        }]
    setting = facts.get("setting")
    if setting is not None:
        out["settings"] = [{"entry_id": event.entry_id, "name": setting["name"], "value": setting["value"],
                            "set_by": setting["set_by"]}]
    request = facts.get("request")
    if request is not None:
        out["requests"] = [{
            "id": request["id"], "entry_id": event.entry_id, "kind": request["kind"],
            "project_code": request["project_code"], "arguments": request["arguments"],
            "requested_by": request["requested_by"], "status": "pending", "decided_by": None,
            "decision_reason": None, "decision_entry_id": None,
        }]
    opens = facts.get("opens")
    if opens:
        out["accounts"] = [account_row(*spec) for spec in opens]
    snapshot = facts.get("snapshot")
    if snapshot is not None:
        for table in TABLES:
            rows = [dict(r) for r in snapshot.get(table, [])]
            if table == "project_events":
                for r in rows:
                    r["tranche"] = None if r["tranche"] is None else tuple(r["tranche"])
            out.setdefault(table, []).extend(rows)
    return out


def decision_of(event: Event) -> dict | None:
    """The decision an event makes on an earlier request, as the request's columns, or None.

    Fact shape: ``decision``: {request (its id), status (approved or rejected), decided_by,
    reason}. An approval's decision rides in the money entry it posts, so that entry is the
    decision entry; a rejection's in its own fact entry.
    """
    decision = event.facts.get("decision")
    if decision is None:
        return None
    return {"id": decision["request"], "status": decision["status"], "decided_by": decision["decided_by"],
            "decision_reason": decision.get("reason"), "decision_entry_id": event.entry_id}


def decide(request: dict | None, decision: dict) -> dict | None:
    """The request row with the decision applied, or None when it cannot apply: the request is
    unknown or no longer pending. The services and the database refuse both, so a journal
    that holds one keeps the first state and ``verify`` names the table row that differs."""
    if request is None or request["status"] != "pending":
        return None
    return request | {k: v for k, v in decision.items() if k != "id"}


def account_row(name: str, book: str, opened_on: str, project_code: str | None, lane: str | None) -> dict:
    return {"name": name, "book": book, "type": name.split(":", 1)[0], "project_code": project_code, "lane": lane,
            "opened_on": opened_on}


def fold(events: Iterable[Event]) -> dict[str, dict[tuple, dict]]:
    """Every programme row the events add, by table and natural key, in chain order.

    A key seen twice is a contradiction in the journal itself (the services refuse it), so
    the first row is kept and the second reported by ``verify`` as a difference. A decision
    completes the request an earlier event added (see ``decide``).
    """
    tables: dict[str, dict[tuple, dict]] = {t: {} for t in TABLES}
    for event in events:
        for table, rows in rows_of(event).items():
            keyed = tables[table]
            for row in rows:
                keyed.setdefault(tuple(row[k] for k in KEYS[table]), row)
        decision = decision_of(event)
        if decision is not None:
            key = (decision["id"],)
            decided = decide(tables["requests"].get(key), decision)
            if decided is not None:
                tables["requests"][key] = decided
    return tables


def decode(text: str | None) -> dict | None:
    return None if text is None else json.loads(text)


# --- the project state fold ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProjectEvent:
    """What ``fold_project`` reads of one project event (a ``project_events`` row)."""

    entry_id: int
    value_date: dt.date
    kind: str
    lane_no: int | None
    stage: str | None
    passed: bool | None
    tranche_id: int | None
    payload: dict


@dataclass
class ProjectFold:
    """A project's state at a date, folded from its events.

    Attributes:
      conditions: lane (None: the whole project) -> the tranche conditions met.
      met_on: (lane, condition) -> the date it was first met.
      eliminated: lane -> the date it was eliminated.
      released_tranches: ids of the tranches released.
      extensions / extension_months: approved extensions, counted and summed.
      terminated_on / ended_by: the first termination or revocation, and its kind.
      closed_on: the closure after acceptance.
      acceptance_failed_on: the first failed acceptance (issue 14 point 8; with
        ``closure.failed_acceptance = terminate`` it is also the termination).
      audited_cash: lane -> the cash bid total the 专项审计报告 confirmed (审计确认的现金投入), fen.
      balance_recovered_on: when the balance retained after acceptance was recovered.
    """

    conditions: dict[int | None, set[str]] = field(default_factory=lambda: {None: {"approved"}})
    met_on: dict[tuple[int | None, str], dt.date] = field(default_factory=dict)
    eliminated: dict[int, dt.date] = field(default_factory=dict)
    released_tranches: set[int] = field(default_factory=set)
    extensions: int = 0
    extension_months: int = 0
    terminated_on: dt.date | None = None
    ended_by: str | None = None
    closed_on: dt.date | None = None
    acceptance_failed_on: dt.date | None = None
    audited_cash: dict[int, int] = field(default_factory=dict)
    balance_recovered_on: dt.date | None = None

    def met(self, lane_no: int) -> set[str]:
        return self.conditions.get(None, set()) | self.conditions.get(lane_no, set())


def counts(event_id: int, event_date: dt.date, reversals: dict[int, dt.date], as_of: dt.date | None) -> bool:
    """Whether an event counts as of ``as_of``: dated on or before it and not reversed by
    then. A reversal counts from its own value date, like the postings it makes; with no
    date (the state now) every event and every reversal counts."""
    if as_of is None:
        return event_id not in reversals
    undone = reversals.get(event_id)
    return event_date <= as_of and (undone is None or undone > as_of)


def fold_project(
    approval_date: dt.date,
    events: Iterable[ProjectEvent],
    reversals: dict[int, dt.date],
    as_of: dt.date | None = None,
) -> ProjectFold:
    """Fold one project's events (in chain order) into its state as of ``as_of``.

    ``reversals`` maps a reversed entry id to the value date of the entry reversing it.
    """
    state = ProjectFold()
    state.met_on[(None, "approved")] = approval_date
    for e in events:
        if counts(e.entry_id, e.value_date, reversals, as_of):
            apply_event(state, e)
    return state


def apply_event(state: ProjectFold, e: ProjectEvent) -> None:
    """One step of ``fold_project``: ``state`` advanced in place by one event that counts.

    An import keeps a project's fold and advances it by each event it posts
    (``ledger.programme.cache``), instead of folding every event again.
    """
    if e.kind == "stage" and e.passed:
        state.conditions.setdefault(e.lane_no, set()).add(STAGES[e.stage])
        state.met_on.setdefault((e.lane_no, STAGES[e.stage]), e.value_date)
    elif e.kind == "stage" and e.stage == "stage_assessment" and not e.passed and e.lane_no:
        state.eliminated.setdefault(e.lane_no, e.value_date)
    elif e.kind == "bid_payment":
        state.conditions.setdefault(e.lane_no, set()).add("first_bid_payment")
        state.met_on.setdefault((e.lane_no, "first_bid_payment"), e.value_date)
    elif e.kind == "release" and e.tranche_id is not None:
        state.released_tranches.add(e.tranche_id)
    elif e.kind == "extension":
        state.extensions += 1
        state.extension_months += e.payload.get("months", 0)
    elif e.kind in ("termination", "revocation") and e.lane_no:
        state.eliminated.setdefault(e.lane_no, e.value_date)  # one lane terminated, the race goes on
    elif e.kind in ("termination", "revocation"):
        if state.terminated_on is None:
            state.terminated_on, state.ended_by = e.value_date, e.kind
    elif e.kind == "closure":
        state.closed_on = state.closed_on or e.value_date
    elif e.kind == "elimination" and e.lane_no:
        state.eliminated.setdefault(e.lane_no, e.value_date)
    _apply_rules_that_act(state, e)


def _apply_rules_that_act(state: ProjectFold, e: ProjectEvent) -> None:
    """Issue 14 point 8, from the hashed facts of the event (its payload):

    * a failed acceptance: ``payload.consequence`` is "terminate" (the project ends as a
      termination, in the same entry) or "officer" (left to the bureau);
    * an audit report: ``payload.audited_cash`` maps "L<n>" to the audited cash total;
    * a ``balance_recovery``: the retained balance recovered after N years.
    """
    if e.kind == "stage" and e.stage == "acceptance" and e.passed is False:
        if state.acceptance_failed_on is None:
            state.acceptance_failed_on = e.value_date
        if e.payload.get("consequence") == "terminate" and state.terminated_on is None:
            state.terminated_on, state.ended_by = e.value_date, "termination"
    elif e.kind == "stage" and e.stage == "audit_report" and e.passed:
        for lane, fen in (e.payload.get("audited_cash") or {}).items():
            state.audited_cash[int(lane.lstrip("L"))] = int(fen)
    elif e.kind == "balance_recovery":
        state.balance_recovered_on = state.balance_recovered_on or e.value_date


# --- party facts over time -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartyYearFacts:
    """What the ledger holds of one party for one fiscal year, from ``party update`` events.

    Attributes:
      entry_id: the event that recorded these figures (the latest for the year wins).
      year: the fiscal year.
      revenue_fen, rnd_intensity: the year's main revenue and R&D / revenue (text), or None.
      innovation_star, above_scale: 江门“创新标兵”; 规模以上 enterprise.
      bad_credit: a bad credit record or major violation in that year.
    """

    entry_id: int
    year: int
    revenue_fen: int | None
    rnd_intensity: str | None
    innovation_star: bool
    above_scale: bool
    bad_credit: bool


def party_facts_in_force(
    records: Iterable[PartyYearFacts], year: int, lookback_years: int | None
) -> tuple[PartyYearFacts | None, list[int]]:
    """The facts of ``year`` (the latest record of that year, in chain order), and the years
    within the look-back window ending with ``year`` that hold a bad credit record.

    Approval reads the year before its date: “上一年度” figures, and “近三年” credit, i.e. the
    ``lookback_years`` fiscal years up to and including ``year``.
    """
    in_force: PartyYearFacts | None = None
    latest: dict[int, PartyYearFacts] = {}
    for record in records:
        latest[record.year] = record
        if record.year == year:
            in_force = record
    first = year - (lookback_years or 0) + 1
    bad = sorted(y for y, r in latest.items() if r.bad_credit and lookback_years and first <= y <= year)
    return in_force, bad



# --- facts auditors read (issue 14 points 7 and 9) ------------------------------------------
#
# An approval records the project's PI (项目负责人), assessment indicators (考核指标), the
# Urumqi 业主责任书 and 项目经理人, and any exception to a principle (原则上) limit, in its
# event payload; a ``project_change`` event changes the first four with an approval
# reference; stages carry who ran the acceptance and the audit firm and fee; extensions carry
# their reason and exceptions. All are hashed with their entries; this fold reads them back.

LOCKED_FACTS = ("pi", "indicators", "project_manager", "owner_letter")


@dataclass(frozen=True, slots=True)
class FactEvent:
    """One project event as ``recorded_facts`` reads it."""

    entry_id: int
    value_date: dt.date
    kind: str
    stage: str | None
    passed: bool | None
    reference: str | None
    payload: dict


@dataclass
class RecordedFacts:
    """The auditor-facing facts of a project, folded from its events in chain order.

    Attributes:
      pi / indicators / project_manager / owner_letter: as in force (the latest change wins);
        owner_letter is {"reference", "date"}. None / () when never recorded.
      at_approval: the same four as recorded at approval.
      changes: each change in order: {date, entry, field, before, after, reference, reason}.
      exceptions: each principle limit exceeded under an exception, with the event it rode
        on: {event (approval, extension), date, entry, key, limit, actual, clause, reference,
        reason}.
      extensions: {date, entry, months, reason, reference} per extension.
      acceptances: {date, entry, passed, accepted_by, reference} per acceptance result.
      audit_reports: {date, entry, passed, audit_firm, audit_fee_fen, reference} per report.
    """

    pi: str | None = None
    indicators: tuple[str, ...] = ()
    project_manager: str | None = None
    owner_letter: dict | None = None
    at_approval: dict = field(default_factory=dict)
    changes: list[dict] = field(default_factory=list)
    exceptions: list[dict] = field(default_factory=list)
    extensions: list[dict] = field(default_factory=list)
    acceptances: list[dict] = field(default_factory=list)
    audit_reports: list[dict] = field(default_factory=list)


def recorded_facts(events: Iterable[FactEvent]) -> RecordedFacts:
    """Fold a project's events (chain order, reversed ones left out) into RecordedFacts."""
    out = RecordedFacts()
    for e in events:
        p = e.payload or {}
        where = {"date": e.value_date, "entry": e.entry_id}
        if e.kind == "approval":
            out.pi, out.indicators = p.get("pi"), tuple(p.get("indicators") or ())
            out.project_manager, out.owner_letter = p.get("project_manager"), p.get("owner_letter")
            out.at_approval = {k: getattr(out, k) for k in LOCKED_FACTS}
        elif e.kind == "project_change":
            for name in LOCKED_FACTS:
                if name in p:
                    after = tuple(p[name]) if name == "indicators" else p[name]
                    out.changes.append(where | {"field": name, "before": getattr(out, name), "after": after,
                                                "reference": e.reference, "reason": p.get("reason")})
                    setattr(out, name, after)
        elif e.kind == "extension":
            out.extensions.append(where | {"months": p.get("months"), "reason": p.get("reason"), "reference": e.reference})
        elif e.kind == "stage" and e.stage == "acceptance":
            out.acceptances.append(where | {"passed": e.passed, "accepted_by": p.get("accepted_by"), "reference": e.reference})
        elif e.kind == "stage" and e.stage == "audit_report":
            out.audit_reports.append(where | {"passed": e.passed, "audit_firm": p.get("audit_firm"),
                                              "audit_fee_fen": p.get("audit_fee_fen"), "reference": e.reference})
        for record in p.get("exceptions") or ():
            out.exceptions.append(where | {"event": e.kind} | record)
    return out
