"""Business events on the programme: parties, appropriations, approvals, pledges, bids,
stages and releases. Each service checks the city rules the project is pinned to, writes
one journal entry (both books where the event touches both) and the structured facts of the
event, or refuses with nothing written.

Services take a session and never commit. Each locks the chain head first, so that on
PostgreSQL the balance checks below see every committed entry and two officers can never
both pass the same check (SQLite's BEGIN IMMEDIATE gives the same order).
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from funding_rules import checks
from funding_rules.loader import Rules, RulesChangedError, get_rules, rules_in_force
from funding_rules.uscc import validate_uscc
from ledger import chart, fold, projection, reads
from ledger.errors import Refusal
from ledger.fold import STAGES
from ledger.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    PostingDraft,
    missing_accounts,
    open_accounts,
    post,
)
from ledger.models import (
    Account,
    ChainHead,
    JournalEntry,
    Lane,
    Party,
    PartyRelation,
    Posting,
    Project,
    ProjectEvent,
    Tranche,
)
from ledger.money import format_fen, format_fen_grouped

PAYMENT_FORMS = ("cash", "equity", "in_kind")
CATEGORIES = tuple(chart.CATEGORY_SEGMENTS)


# --- shared helpers ---------------------------------------------------------------------


def lock(session: Session) -> None:
    """Serialise writers: lock the chain head row before reading what checks depend on."""
    session.execute(select(ChainHead.id).where(ChainHead.id == 1).with_for_update()).all()


def _refuse(violations: list[checks.Violation]) -> None:
    errors = checks.errors_only(violations)
    if errors:
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise Refusal(errors[0].code, errors[0].message + more)


def _yuan(fen: int) -> str:
    return format_fen_grouped(fen)


def reversed_entries():
    """Entry ids that a later entry reverses; their events no longer count."""
    return select(JournalEntry.reverses_id).where(JournalEntry.reverses_id.is_not(None))


# Idempotency of business events: an entry's content includes a calculation trace built from
# the balances at the time, so a retried voucher would not reproduce the same content. The
# services therefore compare the *request* (the service's own arguments), recorded in the
# trace of the first entry, and return that entry before any rule is checked again.
_request: contextvars.ContextVar[dict | None] = contextvars.ContextVar("jiebang_request", default=None)


def _canonical_request(kind: str, arguments: dict) -> dict:
    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if dataclasses.is_dataclass(value):
            return plain(dataclasses.asdict(value))
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (dt.date, Decimal)):
            return str(value)
        return value

    return {"kind": kind, **{k: plain(v) for k, v in sorted(arguments.items()) if k not in ("actor", "voucher")}}


def _replayed(session: Session, kind: str, voucher: str, request: dict) -> Posted | None:
    """The entry a voucher already recorded for the same request, or a conflict refusal."""
    row = session.execute(
        select(JournalEntry.id, JournalEntry.hash, JournalEntry.trace).where(
            JournalEntry.kind == kind, JournalEntry.voucher == voucher
        )
    ).one_or_none()
    if row is None:
        return None
    reversal = session.execute(select(JournalEntry.id).where(JournalEntry.reverses_id == row.id)).scalar()
    if reversal is not None:
        raise Refusal(
            "voucher_must_not_belong_to_a_reversed_entry",
            f"voucher {voucher} belongs to {kind} entry {row.id}, which entry {reversal} reversed; "
            "record the event again with a new --voucher.",
        )
    recorded = json.loads(row.trace or "{}").get("request")
    if recorded != request:
        raise Refusal(
            "voucher_must_match_first_use",
            f"voucher {voucher} was already used for {kind} entry {row.id} with different details; "
            f"use a new voucher, or reverse entry {row.id} first if it was wrong.",
        )
    return Posted(row.id, row.hash, created=False)


def idempotent(kind):
    """Make a service return the first entry when called again with the same voucher and arguments.

    ``kind`` is the entry kind, or a function of the arguments that gives it.
    """

    def decorate(service):
        @functools.wraps(service)
        def run(session: Session, **arguments):
            entry_kind = kind(arguments) if callable(kind) else kind
            request = _canonical_request(entry_kind, arguments)
            voucher = (arguments.get("voucher") or "").strip()
            if voucher:
                lock(session)
                prior = _replayed(session, entry_kind, voucher, request)
                if prior is not None:
                    return prior
            token = _request.set(request)
            try:
                return service(session, **arguments)
            finally:
                _request.reset(token)

        return run

    return decorate


def _post_event(
    session: Session,
    draft: EntryDraft,
    accounts: list[AccountSpec],
    event: dict | None,
    facts: dict | None = None,
) -> Posted:
    """Open the accounts, post the entry with the event's facts and write their projection.

    ``event`` holds the project event's facts (lane_no, stage, passed, tranche, reference,
    payload); ``facts`` any others (a party, an approval's project, lanes and tranches). The
    accounts this entry opens are recorded in its facts too, so the chain covers them.
    """
    request = _request.get()
    if request is not None:
        if draft.voucher:
            prior = _replayed(session, draft.kind, draft.voucher, request)
            if prior is not None:
                return prior
        draft = dataclasses.replace(draft, trace={**(draft.trace or {}), "request": request})
    facts = dict(facts or {})
    if event is not None:
        facts["event"] = {k: v for k, v in event.items() if k != "project_code"}
    opens = missing_accounts(session, accounts)
    if opens:
        facts["opens"] = [[a.name, a.book, a.opened_on.isoformat(), a.project_code, a.lane] for a in opens]
    if facts:
        draft = dataclasses.replace(draft, facts=facts)
    if accounts:
        open_accounts(session, accounts)
    posted = post(session, draft)
    projection.record(session, posted, draft)
    return posted


def _voucher(voucher: str | None, default: str) -> str:
    return (voucher or default).strip()


# --- parties ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PartyInput:
    """A party as an officer registers it.

    Attributes:
      uscc: the Unified Social Credit Code; validated (GB 32100-2015).
      override_reason: accept a code failing the check digit (a known legacy code), recorded.
      related: USCCs of declared related parties (关联关系).
    """

    uscc: str
    name: str
    kind: str = "enterprise"
    revenue_fen: int | None = None
    rnd_intensity: Decimal | None = None
    innovation_star: bool = False
    bad_credit: bool = False
    related: tuple[str, ...] = ()
    override_reason: str | None = None
    date: dt.date | None = None


def register_party(session: Session, party: PartyInput, *, actor: str) -> Posted:
    lock(session)
    if party.kind not in checks.PARTY_KINDS:
        raise Refusal("party_kind_must_be_known", f"party kind {party.kind!r} must be one of {', '.join(checks.PARTY_KINDS)}.")
    if not party.name.strip():
        raise Refusal("party_must_have_name", "a party needs a name; give it with --name.")
    result = validate_uscc(party.uscc, override_reason=party.override_reason)
    related = tuple(sorted({validate_uscc(r, override_reason="declared relation").code for r in party.related}))
    facts = {
        "uscc": result.code,
        "name": party.name.strip(),
        "kind": party.kind,
        "revenue_fen": party.revenue_fen,
        "rnd_intensity": None if party.rnd_intensity is None else str(party.rnd_intensity),
        "innovation_star": party.innovation_star,
        "bad_credit": party.bad_credit,
        "related": list(related),
        "uscc_override_reason": party.override_reason.strip() if result.overridden and party.override_reason else None,
    }
    when = party.date or dt.date.today()
    existing = session.execute(select(Party).where(Party.uscc == result.code)).scalar_one_or_none()
    if existing is not None:
        if _party_facts(existing, session) != facts:
            raise Refusal(
                "party_must_be_registered_once",
                f"party {result.code} is already registered as {existing.name} with other details; "
                "parties are insert-only, so record changes as a new party code only if the registry changed it.",
            )
        entry_id = session.execute(
            select(JournalEntry.id).where(JournalEntry.kind == "party", JournalEntry.voucher == result.code)
        ).scalar_one()
        return Posted(entry_id, "", created=False)
    draft = EntryDraft(
        value_date=when,
        kind="party",
        postings=(),
        voucher=result.code,
        memo=f"register {facts['name']}",
        actor=actor,
        trace={"party": facts, "warnings": [w.message for w in result.warnings]},
        fact=True,
    )
    return _post_event(session, draft, [], None, {"party": facts})


def _party_facts(row: Party, session: Session) -> dict:
    related = session.scalars(select(PartyRelation.related_uscc).where(PartyRelation.party_uscc == row.uscc)).all()
    return {
        "uscc": row.uscc,
        "name": row.name,
        "kind": row.kind,
        "revenue_fen": row.revenue_fen,
        "rnd_intensity": row.rnd_intensity,
        "innovation_star": bool(row.innovation_star),
        "bad_credit": bool(row.bad_credit),
        "related": sorted(related),
        "uscc_override_reason": row.uscc_override_reason,
    }


def _load_party(session: Session, uscc: str, role: str) -> Party:
    from funding_rules.uscc import normalize_uscc

    code = normalize_uscc(uscc)
    row = session.execute(select(Party).where(Party.uscc == code)).scalar_one_or_none()
    if row is None:
        raise Refusal(
            "party_must_be_registered",
            f"{role} {code} is not registered; add it first with `jiebang party add --uscc {code} ...`.",
        )
    return row


def _party_checks_facts(session: Session, row: Party) -> checks.PartyFacts:
    related = set(session.scalars(select(PartyRelation.related_uscc).where(PartyRelation.party_uscc == row.uscc)))
    # Relations are declared by either side; a relation declared by the other party counts too.
    related |= set(session.scalars(select(PartyRelation.party_uscc).where(PartyRelation.related_uscc == row.uscc)))
    return checks.PartyFacts(
        uscc=row.uscc,
        kind=row.kind,
        name=row.name,
        revenue_fen=row.revenue_fen,
        rnd_intensity=None if row.rnd_intensity is None else Decimal(row.rnd_intensity),
        innovation_star=bool(row.innovation_star),
        bad_credit_within_lookback=bool(row.bad_credit),
        related_usccs=frozenset(related),
    )


# --- appropriations ---------------------------------------------------------------------


@idempotent("appropriation")
def appropriate(session: Session, *, year: int, amount_fen: int, date: dt.date, voucher: str | None, actor: str) -> Posted:
    """Record budget authority for a year (memo book)."""
    lock(session)
    if not 2000 <= year <= 2100:
        raise Refusal("budget_year_must_be_plausible", f"budget year {year} is outside 2000..2100.")
    if amount_fen <= 0:
        raise Refusal("amount_must_be_positive", "an appropriation must be a positive amount.")
    opened = min(chart.year_accounts_open_on(year), date)
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="appropriation",
            postings=(
                PostingDraft(chart.budget_available(year), amount_fen),
                PostingDraft(chart.budget_appropriated(year), -amount_fen),
            ),
            voucher=_voucher(voucher, f"APPROP-{year}-{date.isoformat()}-{amount_fen}"),
            memo=f"appropriation for budget year {year}",
            actor=actor,
        ),
        [
            AccountSpec(chart.budget_available(year), "memo", opened),
            AccountSpec(chart.budget_appropriated(year), "memo", opened),
        ],
        None,
    )


def available_budget(session: Session, year: int) -> int:
    """Appropriated minus obligated for a year, from postings (every date: a budget is a pool)."""
    return _sum_account(session, chart.budget_available(year))


def _sum_account(session: Session, name: str, as_of: dt.date | None = None) -> int:
    query = select(func.coalesce(func.sum(Posting.amount_fen), 0)).join(Account, Account.id == Posting.account_id).where(
        Account.name == name
    )
    if as_of is not None:
        query = query.where(Posting.value_date <= as_of)
    return int(session.execute(query).scalar_one())


# --- project approval -------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalInput:
    """A project as the bureau approves it (立项).

    Attributes:
      rules_version: None picks the city's version in force on ``approval_date``.
      approved_grant_fen: the approved grant (staged-grant rules, e.g. Jiangmen).
      bid_contract_fen: contracted bid per lane (bid-subsidy rules, e.g. Urumqi).
      budget_year: the appropriation year the obligation draws on (default: approval year).
    """

    code: str
    name: str
    city: str
    category: str
    mode: str
    demand_uscc: str
    solver_usccs: tuple[str, ...]
    total_investment_fen: int
    approval_date: dt.date
    start_date: dt.date
    end_date: dt.date
    approved_grant_fen: int | None = None
    bid_contract_fen: tuple[int, ...] = ()
    rules_version: str | None = None
    budget_year: int | None = None
    voucher: str | None = None


def approve_project(session: Session, spec: ApprovalInput, *, actor: str) -> Posted:
    lock(session)
    code = chart.check_project_code(spec.code)
    rules = get_rules(spec.rules_version) if spec.rules_version else rules_in_force(spec.city, spec.approval_date)
    if rules.city != spec.city:
        raise Refusal(
            "rules_city_must_match_project",
            f"project {code} is in {spec.city} but rules {rules.version} are for {rules.city}; "
            "leave --rules out to use the version in force, or name one of the project's city.",
        )
    _refuse_changed_pin(session, rules)
    existing = session.execute(select(Project).where(Project.code == code)).scalar_one_or_none()
    voucher = _voucher(spec.voucher, f"APPROVE-{code}")
    if existing is not None:
        prior = session.execute(
            select(JournalEntry.id, JournalEntry.voucher).where(JournalEntry.id == existing.entry_id)
        ).one()
        if prior.voucher == voucher and _same_approval(session, existing, spec, rules):
            return Posted(prior.id, "", created=False)
        raise Refusal(
            "project_must_be_approved_once",
            f"project {code} was already approved in entry {prior.id}; approvals are not edited"
            + (" and the solver is locked after approval under these rules" if rules.approval.solver_locked_after_approval else "")
            + "; record an extension or termination, or approve a new project code.",
        )
    demand = _load_party(session, spec.demand_uscc, "demand side")
    solvers = [_load_party(session, s, f"solver of lane {i}") for i, s in enumerate(spec.solver_usccs, start=1)]
    if rules.funding.model == "bid_subsidy" and len(spec.bid_contract_fen) != len(solvers):
        raise Refusal(
            "bid_contracts_must_match_lanes",
            f"project {code} has {len(solvers)} solver lane(s) but {len(spec.bid_contract_fen)} bid contract amount(s); "
            f"rules {rules.version} compute the subsidy from each lane's contracted bid, so give one --bid per solver.",
        )
    if rules.funding.model == "staged_grant" and not spec.approved_grant_fen:
        raise Refusal(
            "approved_grant_must_be_given",
            f"rules {rules.version} fund an approved grant paid in tranches; give it with --grant.",
        )
    budget_year = spec.budget_year or spec.approval_date.year
    facts = checks.ApprovalFacts(
        code=code,
        city=spec.city,
        mode=spec.mode,
        category=spec.category,
        approval_date=spec.approval_date,
        start_date=spec.start_date,
        end_date=spec.end_date,
        total_investment_fen=spec.total_investment_fen,
        demand=_party_checks_facts(session, demand),
        solvers=tuple(_party_checks_facts(session, s) for s in solvers),
        available_appropriation_fen=available_budget(session, budget_year),
        approved_grant_fen=spec.approved_grant_fen if rules.funding.model == "staged_grant" else None,
        bid_contract_fen=tuple(spec.bid_contract_fen),
    )
    violations = checks.run_checks(checks.APPROVAL_CHECKS, facts, rules)
    _refuse(violations)

    lanes = list(range(1, len(solvers) + 1))
    if rules.funding.model == "staged_grant":
        obligation = checks.saima_lane_split(spec.approved_grant_fen, len(lanes)) if spec.mode == "saima" else [spec.approved_grant_fen]
    else:
        obligation = [checks.subsidy_ceiling_fen([bid], rules) for bid in spec.bid_contract_fen]
    total_obligation = sum(obligation)
    if rules.funding.model == "staged_grant":
        for n, amount in zip(lanes, obligation):
            if min(checks.tranche_amounts(amount, rules)) <= 0:
                raise Refusal(
                    "grant_must_fill_every_tranche",
                    f"the grant of {_yuan(amount)} for {code} L{n} is too small to split into "
                    f"{len(rules.tranches)} tranches of at least 0.01; check the amount.",
                )
    opened = spec.approval_date
    accounts = [AccountSpec(chart.budget_available(budget_year), "memo", min(chart.year_accounts_open_on(budget_year), opened))]
    postings: list[PostingDraft] = []
    for n, amount in zip(lanes, obligation):
        solver = solvers[n - 1].uscc
        for name, book in _lane_accounts(code, n, rules):
            accounts.append(AccountSpec(name, book, opened, code, solver))
        if amount:
            postings.append(PostingDraft(chart.grant_unreleased(code, n), amount))
    for name in (chart.self_funding_pledged(code), chart.self_funding_outstanding(code)):
        accounts.append(AccountSpec(name, "memo", opened, code))
    for category in CATEGORIES:
        accounts.append(AccountSpec(chart.self_funding_contributed(code, category), "memo", opened, code))
    if total_obligation:
        postings.append(PostingDraft(chart.budget_available(budget_year), -total_obligation))
    for n, bid in zip(lanes, spec.bid_contract_fen):
        if bid:
            postings.append(PostingDraft(chart.bid_unpaid(code, n), bid))
            postings.append(PostingDraft(chart.bid_contracted(code, n), -bid))
    trace = {
        "rules_version": rules.version,
        "funding_model": rules.funding.model,
        "budget_year": budget_year,
        "available_before": format_fen(facts.available_appropriation_fen),
        "obligation_per_lane": [format_fen(a) for a in obligation],
        "obligation_total": format_fen(total_obligation),
        "obligation_basis": (
            "approved grant, split equally among 赛马 lanes" if rules.funding.model == "staged_grant" and spec.mode == "saima"
            else "approved grant" if rules.funding.model == "staged_grant"
            else f"subsidy ceiling: round_half_up({rules.funding.subsidy_cap_rate_of_contract} × contracted bid) per lane"
        ),
        "checks": [c.__name__ for c in checks.APPROVAL_CHECKS],
        "warnings": [v.message for v in violations if v.severity != "error"],
    }
    project_facts = {
        "code": code,
        "name": spec.name,
        "city": rules.city,
        "rules_version": rules.version,
        "rules_fingerprint": rules.fingerprint,
        "category": spec.category,
        "mode": spec.mode,
        "demand_uscc": demand.uscc,
        "total_investment_fen": spec.total_investment_fen,
        "approved_grant_fen": total_obligation,
        "budget_year": budget_year,
        "approval_date": spec.approval_date.isoformat(),
        "start_date": spec.start_date.isoformat(),
        "end_date": spec.end_date.isoformat(),
    }
    return _post_event(
        session,
        EntryDraft(
            value_date=spec.approval_date,
            kind="approval",
            postings=tuple(postings),
            project_code=code,
            voucher=voucher,
            memo=f"立项 {spec.name}",
            actor=actor,
            rules_version=rules.version,
            trace=trace,
            fact=not postings,
        ),
        accounts,
        {"payload": {"budget_year": budget_year}},
        {
            "project": project_facts,
            "lanes": [[n, solvers[n - 1].uscc] for n in lanes],
            "tranches": _tranche_rows(lanes, obligation, rules, spec.mode),
        },
    )


def _refuse_changed_pin(session: Session, rules: Rules) -> None:
    """Refuse a rules file whose content differs from what an earlier project pinned."""
    pinned = session.execute(
        select(Project.code, Project.approval_date, Project.rules_fingerprint)
        .where(Project.rules_version == rules.version, Project.rules_fingerprint.is_not(None),
               Project.rules_fingerprint != rules.fingerprint)
        .order_by(Project.approval_date, Project.code)
        .limit(1)
    ).first()
    if pinned is not None:
        raise RulesChangedError(rules.path, rules.version, pinned.rules_fingerprint, rules.fingerprint).for_project(
            pinned.code, pinned.approval_date
        )


def _same_approval(session: Session, project: Project, spec: ApprovalInput, rules: Rules) -> bool:
    solvers = session.scalars(select(Lane.solver_uscc).where(Lane.project_code == project.code).order_by(Lane.lane_no)).all()
    from funding_rules.uscc import normalize_uscc

    return (
        project.rules_version == rules.version
        and project.mode == spec.mode
        and project.total_investment_fen == spec.total_investment_fen
        and list(solvers) == [normalize_uscc(s) for s in spec.solver_usccs]
        and project.approval_date == spec.approval_date
        and project.end_date == spec.end_date
    )


def _lane_accounts(code: str, n: int, rules: Rules) -> list[tuple[str, str]]:
    names = [
        (chart.grant_unreleased(code, n), "memo"),
        (chart.grant_released(code, n), "memo"),
        (chart.bid_unpaid(code, n), "memo"),
        (chart.bid_contracted(code, n), "memo"),
        *[(chart.bid_paid(code, n, form), "memo") for form in PAYMENT_FORMS],
        (chart.advances(code, n), "fiscal"),
        (chart.clawback_receivable(code, n), "fiscal"),
        *[(chart.grant_spent(code, n, c), "fiscal") for c in CATEGORIES],
    ]
    if rules.funding.model == "bid_subsidy":
        names += [(chart.subsidy_expense(code, n), "fiscal"), (chart.subsidy_payable(code, n), "fiscal")]
    return names


def _tranche_rows(lanes: list[int], obligation: list[int], rules: Rules, mode: str) -> list[dict]:
    rows = []
    for n, amount in zip(lanes, obligation):
        if rules.funding.model == "staged_grant":
            amounts = checks.tranche_amounts(amount, rules)
        else:
            amounts = [amount] * len(rules.tranches)  # each subsidy tranche is capped by the lane's ceiling
        for seq, (tranche, value) in enumerate(zip(rules.tranches, amounts), start=1):
            rows.append(
                {
                    "lane_no": n,
                    "seq": seq,
                    "name": tranche.name,
                    "basis": tranche.basis,
                    "amount_fen": value,
                    "conditions": list(tranche.conditions_for(mode)),
                    "source": tranche.source,
                }
            )
    return rows


# --- project state, derived from events and postings ------------------------------------


@dataclass
class ProjectState:
    """What the services need to know about a project at a date, folded from its events
    by ``ledger.fold.fold_project`` (see there for each attribute)."""

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


def project_folds(session: Session, projects: list[Project], as_of: dt.date | None = None) -> dict[str, fold.ProjectFold]:
    """The fold of each project's events as of ``as_of`` (None: now), from two queries."""
    codes = [p.code for p in projects]
    events: dict[str, list[fold.ProjectEvent]] = {code: [] for code in codes}
    reversals: dict[int, dt.date] = {}
    for start in range(0, len(codes), 500):
        chunk = codes[start : start + 500]
        query = (
            select(ProjectEvent.project_code, ProjectEvent.entry_id, ProjectEvent.value_date, ProjectEvent.kind,
                   ProjectEvent.lane_no, ProjectEvent.stage, ProjectEvent.passed, ProjectEvent.tranche_id, ProjectEvent.payload)
            .where(ProjectEvent.project_code.in_(chunk))
            .order_by(ProjectEvent.entry_id)
        )
        if as_of is not None:
            query = query.where(ProjectEvent.value_date <= as_of)
        for code, entry_id, value_date, kind, lane_no, stage, passed, tranche_id, payload in session.execute(query):
            events[code].append(fold.ProjectEvent(
                entry_id, value_date, kind, lane_no, stage, None if passed is None else bool(passed), tranche_id,
                json.loads(payload) if payload else {},
            ))
        reversals.update(session.execute(
            select(JournalEntry.reverses_id, JournalEntry.value_date).where(
                JournalEntry.project_code.in_(chunk), JournalEntry.reverses_id.is_not(None)
            )
        ).tuples().all())
    by_code = {p.code: p for p in projects}
    return {code: fold.fold_project(by_code[code].approval_date, events[code], reversals, as_of) for code in codes}


def project_state(project: Project, rules: Rules, lanes: dict[int, str], folded: fold.ProjectFold) -> ProjectState:
    return ProjectState(
        project=project, rules=rules, lanes=dict(lanes), conditions=folded.conditions, eliminated=folded.eliminated,
        terminated_on=folded.terminated_on, released_tranches=folded.released_tranches,
        extension_months=folded.extension_months, extensions=folded.extensions, closed_on=folded.closed_on,
        met_on=folded.met_on, ended_by=folded.ended_by,
    )


def load_project(session: Session, code: str, *, as_of: dt.date | None = None) -> ProjectState:
    code = code.strip().upper()
    project = session.execute(select(Project).where(Project.code == code)).scalar_one_or_none()
    if project is None:
        raise Refusal("project_must_exist", f"project {code} does not exist; `jiebang projects` lists the codes.")
    lanes = dict(session.execute(select(Lane.lane_no, Lane.solver_uscc).where(Lane.project_code == code)).all())
    folded = project_folds(session, [project], as_of)[code]
    return project_state(project, pinned_rules(project), lanes, folded)


def extension_months_by_project(session: Session) -> dict[str, int]:
    """Months of approved extension per project, from the one fold."""
    projects = session.scalars(select(Project)).all()
    return {code: f.extension_months for code, f in project_folds(session, list(projects)).items()}


def _require_active(state: ProjectState, when: dt.date, what: str, n: int | None = None) -> None:
    code = state.project.code
    if when < state.project.approval_date:
        raise Refusal(
            "event_must_follow_approval",
            f"{what} on {when} is dated before project {code}'s approval on {state.project.approval_date}; check the date.",
        )
    if state.terminated_on is not None:
        raise Refusal(
            "project_must_not_be_terminated",
            f"project {code} was terminated on {state.terminated_on}; no {what} is accepted after termination.",
        )
    if state.closed_on is not None:
        raise Refusal(
            "project_must_not_be_closed",
            f"project {code} was closed after acceptance on {state.closed_on}; no {what} is accepted after closure.",
        )
    if n is not None and n in state.eliminated:
        raise Refusal(
            "lane_must_not_be_eliminated",
            f"lane L{n} ({state.lanes[n]}) of {code} was eliminated on {state.eliminated[n]}; it receives no further {what}.",
        )


# --- self-funding -----------------------------------------------------------------------


@idempotent("pledge")
def pledge(session: Session, *, project: str, amount_fen: int, date: dt.date, voucher: str | None, actor: str, category: str | None = None) -> Posted:
    """Record self-funding promised (自投研发资金承诺函), memo book."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    _require_active(state, date, "pledge")
    _positive(amount_fen, "pledge")
    category = _category(category) if category else None
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="pledge",
            postings=(
                PostingDraft(chart.self_funding_outstanding(code), amount_fen, category, "self_funded"),
                PostingDraft(chart.self_funding_pledged(code), -amount_fen, category, "self_funded"),
            ),
            project_code=code,
            voucher=_voucher(voucher, f"PLEDGE-{code}-{date.isoformat()}-{amount_fen}"),
            memo="self-funding pledged (自投研发资金承诺)",
            actor=actor,
            rules_version=state.rules.version,
        ),
        [],
        {"project_code": code},
    )


@idempotent("contribution")
def contribute(session: Session, *, project: str, amount_fen: int, category: str, date: dt.date, voucher: str | None, actor: str, memo: str = "") -> Posted:
    """Record self-funding evidenced as arrived, by budget category, memo book."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    _require_active(state, date, "contribution")
    _positive(amount_fen, "contribution")
    category = _category(category)
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="contribution",
            postings=(
                PostingDraft(chart.self_funding_contributed(code, category), amount_fen, category, "self_funded"),
                PostingDraft(chart.self_funding_outstanding(code), -amount_fen, category, "self_funded"),
            ),
            project_code=code,
            voucher=_voucher(voucher, f"CONTRIB-{code}-{date.isoformat()}-{amount_fen}"),
            memo=memo or f"self-funding contributed ({category})",
            actor=actor,
            rules_version=state.rules.version,
        ),
        [],
        {"project_code": code},
    )


def _positive(amount_fen: int, what: str) -> None:
    if amount_fen <= 0:
        raise Refusal("amount_must_be_positive", f"a {what} must be a positive amount, got {format_fen(amount_fen)}.")


def _category(category: str) -> str:
    key = (category or "").strip().lower()
    if key in chart.CATEGORY_SEGMENTS:
        return key
    names = {"设备费": "equipment", "业务费": "business", "劳务费": "labour", "间接费用": "indirect"}
    if category.strip() in names:
        return names[category.strip()]
    raise Refusal(
        "budget_category_must_be_known",
        f"budget category {category!r} must be one of equipment (设备费), business (业务费), labour (劳务费), indirect (间接费用).",
    )


# --- bids -------------------------------------------------------------------------------


def _lane_sums(session: Session, state: ProjectState, n: int) -> dict[str, int]:
    """Balances of one lane's accounts by family (all dates), one grouped query.

    Grant spending is also kept per budget category, as ``grant_spent:<category>``.
    """
    rows = session.execute(
        select(Account.name, func.coalesce(func.sum(Posting.amount_fen), 0))
        .join(Posting, Posting.account_id == Account.id)
        .where(Account.project_code == state.project.code, Account.lane == state.lanes[n])
        .group_by(Account.name)
    ).all()
    sums: dict[str, int] = {}
    for name, amount in rows:
        family = chart.family_of(name)
        if family is not None:
            sums[family] = sums.get(family, 0) + int(amount)
        if family == "grant_spent":
            sums[f"grant_spent:{_SEGMENT_CATEGORIES[name.rsplit(':', 1)[1]]}"] = int(amount)
    return sums


_SEGMENT_CATEGORIES = {segment: category for category, segment in chart.CATEGORY_SEGMENTS.items()}


def _spent_by_category(sums: dict[str, int]) -> dict[str, int]:
    """Grant spent per budget category, from ``_lane_sums``."""
    return {c: sums[f"grant_spent:{c}"] for c in CATEGORIES if f"grant_spent:{c}" in sums}


@idempotent("bid_contract")
def bid_contract(session: Session, *, project: str, lane: str | None, amount_fen: int, date: dt.date, voucher: str | None, actor: str) -> Posted:
    """Record (more) contracted bid money for a lane; under bid-subsidy rules it obligates the ceiling too."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    n = state.lane_of(lane)
    _require_active(state, date, "bid contract", n)
    _positive(amount_fen, "bid contract")
    postings = [PostingDraft(chart.bid_unpaid(code, n), amount_fen, None, "bid"), PostingDraft(chart.bid_contracted(code, n), -amount_fen, None, "bid")]
    trace: dict = {"lane": f"L{n}", "contracted_added": format_fen(amount_fen)}
    if rules.funding.model == "bid_subsidy":
        sums = _lane_sums(session, state, n)
        contracted_before = -sums.get("bid_contracted", 0)
        ceiling_before = checks.subsidy_ceiling_fen([contracted_before], rules)
        ceiling_after = checks.subsidy_ceiling_fen([contracted_before + amount_fen], rules)
        extra = ceiling_after - ceiling_before
        year = state.project.budget_year
        available = available_budget(session, year)
        if extra > available:
            raise Refusal(
                "obligation_must_fit_available_budget",
                f"the added bid raises {code} L{n}'s subsidy ceiling by {_yuan(extra)}, but budget year {year} has only "
                f"{_yuan(available)} unobligated; appropriate more first with `jiebang appropriate`.",
            )
        if extra:
            postings += [PostingDraft(chart.grant_unreleased(code, n), extra), PostingDraft(chart.budget_available(year), -extra)]
        trace |= {"ceiling_before": format_fen(ceiling_before), "ceiling_after": format_fen(ceiling_after), "obligated": format_fen(extra)}
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="bid_contract",
            postings=tuple(postings),
            project_code=code,
            voucher=_voucher(voucher, f"BIDC-{code}-L{n}-{date.isoformat()}-{amount_fen}"),
            memo=f"bid contract L{n}",
            actor=actor,
            rules_version=rules.version,
            trace=trace,
        ),
        [],
        {"project_code": code, "lane_no": n},
    )


@idempotent("bid_payment")
def bid_pay(
    session: Session,
    *,
    project: str,
    lane: str | None,
    amount_fen: int,
    form: str,
    date: dt.date,
    voucher: str | None,
    actor: str,
) -> Posted:
    """Record bid money paid by the demand side to a lane; accrue the subsidy where the rules pay one."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    n = state.lane_of(lane)
    if form not in PAYMENT_FORMS:
        raise Refusal("payment_form_must_be_known", f"payment form {form!r} must be one of {', '.join(PAYMENT_FORMS)}.")
    sums = _lane_sums(session, state, n)
    contracted = -sums.get("bid_contracted", 0)
    paid = {f: sums.get(f"bid_paid_{f}", 0) for f in PAYMENT_FORMS}
    _require_active(state, date, "bid payment", n)
    if "acceptance_passed" in state.met(n) and rules.funding.model == "bid_subsidy":
        # The final subsidy tranche trues up on the audited total at acceptance; money paid
        # after it would earn a subsidy no tranche could pay.
        raise Refusal(
            "bid_payment_must_precede_acceptance",
            f"{code} passed acceptance; bid payments after it earn no subsidy under {rules.version} "
            f"({rules.clause('funding.subsidy_rate')}); record payments dated before the acceptance.",
        )
    facts = checks.BidPaymentFacts(
        project_code=code,
        lane=f"L{n}",
        contracted_fen=contracted,
        paid_so_far_fen=sum(paid.values()),
        amount_fen=amount_fen,
        form=form,
        lane_status="eliminated" if n in state.eliminated else "active",
        payment_date=date,
        approval_date=state.project.approval_date,
    )
    _refuse(checks.run_checks(checks.BID_PAYMENT_CHECKS, facts, rules))
    postings = [
        PostingDraft(chart.bid_paid(code, n, form), amount_fen, None, "bid"),
        PostingDraft(chart.bid_unpaid(code, n), -amount_fen, None, "bid"),
    ]
    trace: dict = {"lane": f"L{n}", "form": form, "amount": format_fen(amount_fen)}
    if rules.funding.model == "bid_subsidy":
        cash_after = paid["cash"] + (amount_fen if form in rules.funding.eligible_payment_forms else 0)
        excluded = {f: paid[f] + (amount_fen if f == form else 0) for f in PAYMENT_FORMS if f not in rules.funding.eligible_payment_forms}
        earned_before = sums.get("subsidy_expense", 0)
        due, subsidy_trace = checks.subsidy_due(cash_after, contracted, earned_before, rules, excluded_fen=excluded)
        trace["subsidy"] = subsidy_trace
        if due > 0:
            postings += [
                PostingDraft(chart.subsidy_expense(code, n), due, None, "city_fiscal"),
                PostingDraft(chart.subsidy_payable(code, n), -due, None, "city_fiscal"),
            ]
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="bid_payment",
            postings=tuple(postings),
            project_code=code,
            voucher=_voucher(voucher, f"BIDP-{code}-L{n}-{date.isoformat()}-{form}-{amount_fen}"),
            memo=f"bid payment L{n} ({form})",
            actor=actor,
            rules_version=rules.version,
            trace=trace,
        ),
        [],
        {"project_code": code, "lane_no": n, "payload": {"form": form}},
    )


# --- stages -----------------------------------------------------------------------------


@idempotent("stage")
def record_stage(
    session: Session,
    *,
    project: str,
    stage: str,
    passed: bool,
    date: dt.date,
    voucher: str | None,
    actor: str,
    lane: str | None = None,
    reference: str | None = None,
) -> Posted:
    """Record a stage result: contract signed, mid-term check, 赛马 stage assessment (per lane;
    a failed lane is eliminated), acceptance, audit report received. A pass moves no money; an
    elimination assesses the lane's clawback and deobligation in the same entry."""
    lock(session)
    if stage not in STAGES:
        raise Refusal("stage_must_be_known", f"stage {stage!r} must be one of {', '.join(STAGES)}.")
    state = load_project(session, project)
    code = state.project.code
    n = None
    if stage == "stage_assessment":
        if state.project.mode != "saima":
            raise Refusal("stage_assessment_is_for_saima", f"project {code} is 揭榜挂帅; record its mid-term check with --stage midterm.")
        n = state.lane_of(lane)
    elif lane is not None:
        n = state.lane_of(lane)
    _require_active(state, date, f"{stage} record", n)
    postings: list[PostingDraft] = []
    trace: dict = {"stage": stage, "passed": passed, "lane": f"L{n}" if n else None, "reference": reference}
    if stage == "stage_assessment" and not passed:
        # Elimination: the lane stops; its unspent advance is assessed for recovery and its
        # unreleased obligation returns to the year's available budget, in this same entry.
        postings, closing = eliminate_lane_postings(session, state, n)
        trace["elimination"] = closing["lanes"][f"L{n}"]
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="stage",
            postings=tuple(postings),
            project_code=code,
            voucher=_voucher(voucher, f"STAGE-{code}-{stage}-{'L' + str(n) if n else 'P'}-{date.isoformat()}"),
            memo=f"{stage} {'passed' if passed else 'failed'}" + (f" L{n}" if n else ""),
            actor=actor,
            rules_version=state.rules.version,
            trace=trace,
            fact=not postings,
        ),
        [AccountSpec(chart.budget_available(state.project.budget_year), "memo", chart.year_accounts_open_on(state.project.budget_year))] if postings else [],
        {"project_code": code, "lane_no": n, "stage": stage, "passed": passed, "reference": reference},
    )


# --- releases ---------------------------------------------------------------------------


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
    rows = session.scalars(
        select(Tranche).where(Tranche.project_code == state.project.code).order_by(Tranche.lane_no, Tranche.seq)
    ).all()
    views = []
    for t in rows:
        conditions = tuple(json.loads(t.conditions))
        unmet = tuple(c for c in conditions if c not in state.met(t.lane_no))
        if t.id in state.released_tranches:
            status = "released"
        elif state.terminated_on is not None or state.closed_on is not None or t.lane_no in state.eliminated:
            status = "cancelled"  # closure deobligates what was never released, as termination does
        else:
            status = "planned" if unmet else "eligible"
        views.append(TrancheView(t.id, t.lane_no, t.seq, t.name, t.basis, t.amount_fen, conditions, status, unmet, t.source))
    return views


CONDITION_HINTS = {
    "approved": "the approval",
    "contract_signed": "the contract signing (jiebang stage --stage contract_signed --passed)",
    "first_bid_payment": "a bid payment to the lane (jiebang bid pay)",
    "midterm_passed": "a passed mid-term check (jiebang stage --stage midterm --passed)",
    "stage_passed": "a passed 赛马 stage assessment of the lane (jiebang stage --stage stage_assessment --lane ... --passed)",
    "acceptance_passed": "a passed acceptance (jiebang stage --stage acceptance --passed)",
    "audit_report_received": "the 专项审计报告 (jiebang stage --stage audit_report --passed)",
}


@idempotent("release")
def release(
    session: Session,
    *,
    project: str,
    lane: str | None,
    date: dt.date,
    voucher: str | None,
    actor: str,
    tranche: int | None = None,
) -> Posted:
    """Release a tranche to a lane when its conditions hold, within the obligation, once."""
    lock(session)
    state = load_project(session, project, as_of=None)
    code, rules = state.project.code, state.rules
    n = state.lane_of(lane)
    _require_active(state, date, "release", n)
    dated = load_project(session, project, as_of=date)
    views = [v for v in tranche_views(session, dated) if v.lane_no == n]
    if tranche is None:
        pending = [v for v in views if v.id not in state.released_tranches]
        if not pending:
            raise Refusal("tranche_must_not_be_released_twice", f"every tranche of {code} L{n} has been released already.")
        target = pending[0]
    else:
        matches = [v for v in views if v.seq == tranche]
        if not matches:
            raise Refusal("tranche_must_exist", f"{code} L{n} has tranches 1..{len(views)}, not {tranche}.")
        target = matches[0]
    if target.id in state.released_tranches:
        raise Refusal(
            "tranche_must_not_be_released_twice",
            f"tranche {target.seq} ({target.name}) of {code} L{n} was already released; nothing is due.",
        )
    if target.unmet:
        waits = "; ".join(CONDITION_HINTS.get(c, c) for c in target.unmet)
        raise Refusal(
            "tranche_condition_must_be_met",
            f"tranche {target.seq} ({target.name}) of {code} L{n} waits on {waits} by {date} ({target.source.split(';')[0]}); record it first.",
        )
    sums = _lane_sums(session, state, n)
    unreleased = sums.get("grant_unreleased", 0)
    if target.basis == "grant_share":
        amount = target.amount_fen
        if amount <= 0:
            raise Refusal(
                "release_must_have_something_due",
                f"tranche {target.seq} of {code} L{n} is 0.00 (the grant split left nothing for it); nothing to release.",
            )
        trace = {"tranche": target.seq, "name": target.name, "basis": "grant_share", "amount": format_fen(amount)}
        fiscal_debit = chart.advances(code, n)
    else:
        payable = -sums.get("subsidy_payable", 0)
        amount = min(payable, unreleased)
        trace = {"tranche": target.seq, "name": target.name, "basis": "subsidy_earned", "payable": format_fen(payable),
                 "unreleased_obligation": format_fen(unreleased), "amount": format_fen(amount),
                 "formula": "min(subsidy payable, unreleased obligation)"}
        fiscal_debit = chart.subsidy_payable(code, n)
        if amount <= 0:
            raise Refusal(
                "release_must_have_something_due",
                f"tranche {target.seq} of {code} L{n}: no subsidy is earned and unpaid (payable {_yuan(payable)}); record cash bid payments first.",
            )
    if amount > unreleased:
        raise Refusal(
            "release_must_fit_obligation",
            f"tranche {target.seq} of {code} L{n} is {_yuan(amount)} but only {_yuan(unreleased)} of the obligation is unreleased; nothing released.",
        )
    funding = chart.funding(date.year)
    # An offset nets a clawback the recipient owes to this city against money this city pays
    # it. A grant tranche is paid to the lane's unit (the solver); a bid subsidy goes to the
    # demand side, which owes no lane clawback, so subsidy releases are never offset.
    offsets = (
        _offsets(session, state.lanes[n], state.project.city, amount)
        if rules.funding.clawback_offset_allowed and target.basis == "grant_share"
        else []
    )
    paid = amount - sum(value for _, value in offsets)
    postings = [
        PostingDraft(chart.grant_released(code, n), amount, None, "city_fiscal"),
        PostingDraft(chart.grant_unreleased(code, n), -amount, None, "city_fiscal"),
        PostingDraft(fiscal_debit, amount, None, "city_fiscal"),
    ]
    if paid:
        postings.append(PostingDraft(funding, -paid, None, "city_fiscal"))
    for account, value in offsets:
        postings.append(PostingDraft(account, -value, None, "city_fiscal"))
    if offsets:
        trace |= {"offset": {account: format_fen(value) for account, value in offsets}, "paid": format_fen(paid),
                  "offset_clause": rules.clause("funding.clawback_offset_allowed")}
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="release",
            postings=postings,
            project_code=code,
            voucher=_voucher(voucher, f"REL-{code}-L{n}-T{target.seq}"),
            memo=f"release tranche {target.seq} ({target.name}) L{n}" + (" net of clawback offset" if offsets else ""),
            actor=actor,
            rules_version=rules.version,
            trace=trace,
        ),
        [AccountSpec(funding, "fiscal", chart.year_accounts_open_on(date.year))],
        {"project_code": code, "lane_no": n, "tranche": [target.lane_no, target.seq]},
    )


def _offsets(session: Session, party_uscc: str, city: str, amount: int) -> list[tuple[str, int]]:
    """Outstanding clawbacks the same unit owes as a lane's solver in this city's projects,
    oldest account first, up to ``amount``."""
    same_city = select(Project.code).where(Project.city == city)
    rows = session.execute(
        select(Account.name, func.coalesce(func.sum(Posting.amount_fen), 0))
        .join(Posting, Posting.account_id == Account.id)
        .where(
            Account.lane == party_uscc,
            Account.name.like("Assets:Fiscal:ClawbackReceivable:%"),
            Account.project_code.in_(same_city),
        )
        .group_by(Account.name, Account.id)
        .order_by(Account.id)
    ).all()
    offsets, left = [], amount
    for name, outstanding in rows:
        take = min(int(outstanding), left)
        if take > 0:
            offsets.append((name, take))
            left -= take
    return offsets


# --- the balances contract --------------------------------------------------------------

# The keys, the SQL and its reading live in ledger.reads, which the CLI also runs without
# SQLAlchemy; this module keeps the names its callers import.
BALANCE_KEYS = reads.BALANCE_KEYS


def project_balances(session: Session, code: str, *, as_of: dt.date | None = None, lane: str | None = None) -> dict[str, int]:
    """The project's (or one lane's) balances in fen, all from postings, in one grouped query.

    Project-level quantities (self-funding) are the project's; with a lane they are 0.
    """
    return reads.project_balances(reads.session_runner(session), code, as_of=as_of, lane=lane)


# --- money out and back: spending, extension, termination, revocation, recovery ---------


@idempotent("spend")
def spend(
    session: Session,
    *,
    project: str,
    lane: str | None,
    amount_fen: int,
    category: str,
    date: dt.date,
    voucher: str | None,
    actor: str,
    counterparty: str | None = None,
    justification: str | None = None,
    memo: str = "",
) -> Posted:
    """Record fiscal money spent by a lane, by budget category; it draws down the advance."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    n = state.lane_of(lane)
    _require_active(state, date, "spending", n)
    _positive(amount_fen, "spending report")
    category = _category(category) if category not in rules.spending.legacy_category_map else rules.spending.legacy_category_map[category]
    if date < state.project.start_date or date > state.end_date:
        raise Refusal(
            "spending_must_fall_in_project_period",
            f"spending on {date} is outside {code}'s period {state.project.start_date}..{state.end_date}"
            " (including approved extensions); date it inside the period or record an extension first.",
        )
    sums = _lane_sums(session, state, n)
    outstanding = sums.get("advances", 0)
    if amount_fen > outstanding:
        raise Refusal(
            "spending_must_not_exceed_advances",
            f"spending of {_yuan(amount_fen)} by {code} L{n} exceeds its advances outstanding {_yuan(outstanding)}; "
            "only released fiscal money can be reported spent — record the release first or correct the amount.",
        )
    threshold = rules.spending.equipment_justify_threshold_fen
    if category == "equipment" and amount_fen >= threshold and not (justification or "").strip():
        raise Refusal(
            "equipment_at_threshold_must_be_justified",
            f"equipment of {_yuan(amount_fen)} is at or above {_yuan(threshold)} ({rules.clause('spending.equipment_justify_threshold')}); "
            "give its specifications and need with --justification.",
        )
    trace: dict = {"lane": f"L{n}", "category": category, "advances_before": format_fen(outstanding)}
    if category == "indirect":
        spent_by_category = _spent_by_category(sums)
        direct = sum(v for c, v in spent_by_category.items() if c != "indirect")
        equipment = spent_by_category.get("equipment", 0)
        cap = checks.indirect_cap_fen(direct, equipment, rules)
        indirect_after = spent_by_category.get("indirect", 0) + amount_fen
        trace |= {"direct_spent": format_fen(direct), "equipment_spent": format_fen(equipment),
                  "indirect_cap": format_fen(cap), "indirect_after": format_fen(indirect_after),
                  "formula": "indirect_cap_fen(direct − equipment) by tiers"}
        if indirect_after > cap:
            raise Refusal(
                "indirect_costs_must_not_exceed_cap",
                f"indirect costs would reach {_yuan(indirect_after)}, above the cap {_yuan(cap)} computed on direct "
                f"{_yuan(direct)} less equipment {_yuan(equipment)} ({rules.clause('spending.indirect_tiers')}); reduce the amount.",
            )
    return _post_event(
        session,
        EntryDraft(
            value_date=date,
            kind="spend",
            postings=(
                PostingDraft(chart.grant_spent(code, n, category), amount_fen, category, "city_fiscal"),
                PostingDraft(chart.advances(code, n), -amount_fen, category, "city_fiscal"),
            ),
            project_code=code,
            voucher=_voucher(voucher, f"SPEND-{code}-L{n}-{date.isoformat()}-{category}-{amount_fen}"),
            memo=memo or f"{category} spending L{n}" + (f" to {counterparty}" if counterparty else ""),
            actor=actor,
            rules_version=rules.version,
            trace=trace | {"counterparty": counterparty, "justification": justification},
        ),
        [],
        {"project_code": code, "lane_no": n, "stage": category,
         "payload": {"counterparty": counterparty, "justification": justification, "category": category}},
    )


@idempotent("extension")
def extend(session: Session, *, project: str, months: int, date: dt.date, reference: str, voucher: str | None, actor: str) -> Posted:
    """Record an approved extension of the project period (bounded by the rules)."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    _require_active(state, date, "extension")
    if not (reference or "").strip():
        raise Refusal("extension_must_cite_approval", "an extension needs the bureau's approval reference; give it with --reference.")
    facts = checks.ExtensionFacts(code, state.extensions, months, date, state.end_date)
    _refuse(checks.run_checks(checks.EXTENSION_CHECKS, facts, rules))
    new_end = checks.add_months(state.end_date, months)
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind="extension", postings=(), project_code=code,
            voucher=_voucher(voucher, f"EXT-{code}-{state.extensions + 1}"),
            memo=f"extension by {months} month(s) to {new_end}", actor=actor, rules_version=rules.version,
            trace={"months": months, "end_before": state.end_date.isoformat(), "end_after": new_end.isoformat(), "reference": reference},
            fact=True,
        ),
        [],
        {"project_code": code, "reference": reference, "payload": {"months": months}},
    )


@dataclass(frozen=True)
class Misuse:
    """A misused (违规使用) amount named by the officer, tied to an earlier spend voucher."""

    spend_voucher: str
    amount_fen: int


def _closing_postings(
    session: Session, state: ProjectState, lanes: list[int], *, misused: list[Misuse], recover_all_rate: Decimal | None
) -> tuple[list[PostingDraft], dict]:
    """Clawback, deobligation and forfeit postings for lanes that stop, with the computation."""
    code, rules = state.project.code, state.rules
    year = state.project.budget_year
    postings: list[PostingDraft] = []
    trace: dict = {"lanes": {}}
    spends = _spend_entries(session, code)
    for item in misused:
        if item.spend_voucher not in spends:
            raise Refusal(
                "misuse_must_name_a_spend_voucher",
                f"misused amount cites voucher {item.spend_voucher}, which is not a spending report of {code}; "
                "`jiebang journal --project " + code + " --kind spend` lists them.",
            )
        _lane, _category, spent = spends[item.spend_voucher]
        if item.amount_fen <= 0 or item.amount_fen > spent:
            raise Refusal(
                "misuse_must_not_exceed_the_spend",
                f"misused amount {_yuan(item.amount_fen)} on voucher {item.spend_voucher} exceeds that spend of {_yuan(spent)}.",
            )
    # Misuse can be named on any lane's spending, including a lane eliminated earlier whose
    # unspent advance was already assessed: each misused amount is reclassified to that
    # lane's clawback receivable here.
    for n in sorted({spends[m.spend_voucher][0] for m in misused} - set(lanes)):
        lane_misuse = [m for m in misused if spends[m.spend_voucher][0] == n]
        for m in lane_misuse:
            category = spends[m.spend_voucher][1]
            postings.append(PostingDraft(chart.grant_spent(code, n, category), -m.amount_fen, category, "city_fiscal"))
        total_misuse = sum(m.amount_fen for m in lane_misuse)
        postings.append(PostingDraft(chart.clawback_receivable(code, n), total_misuse, None, "city_fiscal"))
        trace["lanes"][f"L{n}"] = {"misused": {m.spend_voucher: format_fen(m.amount_fen) for m in lane_misuse},
                                   "formula": "misused (lane eliminated earlier)", "clawback": format_fen(total_misuse)}
    for n in lanes:
        sums = _lane_sums(session, state, n)
        unspent = sums.get("advances", 0)
        unreleased = sums.get("grant_unreleased", 0)
        payable = -sums.get("subsidy_payable", 0)
        lane_misuse = [m for m in misused if spends[m.spend_voucher][0] == n]
        lane_trace = {"advances_outstanding": format_fen(unspent), "unreleased_obligation": format_fen(unreleased)}
        if recover_all_rate is not None:
            released = sums.get("grant_released", 0)
            target = int((Decimal(released) * recover_all_rate).to_integral_value(rounding="ROUND_HALF_UP"))
            clawback = target
            take_advances = min(unspent, target)
            rest = target - take_advances
            if take_advances:
                postings.append(PostingDraft(chart.advances(code, n), -take_advances, None, "city_fiscal"))
            spent_by_cat = _spent_by_category(sums)
            for cat in CATEGORIES:
                take = min(rest, spent_by_cat.get(cat, 0))
                if take:
                    postings.append(PostingDraft(chart.grant_spent(code, n, cat), -take, cat, "city_fiscal"))
                    rest -= take
            released_subsidy = sums.get("subsidy_expense", 0) - payable
            take = min(rest, released_subsidy)
            if take:
                postings.append(PostingDraft(chart.subsidy_expense(code, n), -take, None, "city_fiscal"))
                rest -= take
            if rest:
                raise Refusal("revocation_must_be_covered", f"cannot source {_yuan(rest)} of the revocation clawback of {code} L{n}.")
            lane_trace |= {"released": format_fen(released), "rate": str(recover_all_rate),
                           "formula": "round_half_up(rate × released)", "clawback": format_fen(clawback)}
        else:
            misuse_total = 0
            for m in lane_misuse:
                _, category, _ = spends[m.spend_voucher]
                postings.append(PostingDraft(chart.grant_spent(code, n, category), -m.amount_fen, category, "city_fiscal"))
                misuse_total += m.amount_fen
            if unspent:
                postings.append(PostingDraft(chart.advances(code, n), -unspent, None, "city_fiscal"))
            clawback = unspent + misuse_total
            lane_trace |= {"misused": {m.spend_voucher: format_fen(m.amount_fen) for m in lane_misuse},
                           "formula": "advances outstanding + misused", "clawback": format_fen(clawback)}
        if clawback:
            postings.append(PostingDraft(chart.clawback_receivable(code, n), clawback, None, "city_fiscal"))
        if unreleased:
            postings.append(PostingDraft(chart.grant_unreleased(code, n), -unreleased, None, "city_fiscal"))
            postings.append(PostingDraft(chart.budget_available(year), unreleased, None, "city_fiscal"))
            lane_trace["deobligated"] = format_fen(unreleased)
        if payable and rules.funding.unpaid_subsidy_on_termination == "forfeit":
            postings.append(PostingDraft(chart.subsidy_payable(code, n), payable, None, "city_fiscal"))
            postings.append(PostingDraft(chart.subsidy_expense(code, n), -payable, None, "city_fiscal"))
            lane_trace["subsidy_forfeited"] = format_fen(payable)
        trace["lanes"][f"L{n}"] = lane_trace
    return postings, trace


def _spend_entries(session: Session, code: str) -> dict[str, tuple[int, str, int]]:
    """Spend vouchers of a project: voucher -> (lane, category, amount), not reversed."""
    rows = session.execute(
        select(JournalEntry.voucher, ProjectEvent.lane_no, ProjectEvent.stage, Posting.amount_fen)
        .join(ProjectEvent, ProjectEvent.entry_id == JournalEntry.id)
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .where(JournalEntry.project_code == code, JournalEntry.kind == "spend", Posting.amount_fen > 0,
               JournalEntry.id.not_in(reversed_entries()))
    ).all()
    return {v: (lane_no, category, int(amount)) for v, lane_no, category, amount in rows}


@idempotent(lambda arguments: "revocation" if arguments.get("revoke") else "termination")
def terminate(
    session: Session,
    *,
    project: str,
    date: dt.date,
    reference: str,
    voucher: str | None,
    actor: str,
    misused: list[Misuse] = (),
    revoke: bool = False,
) -> Posted:
    """Terminate (or revoke) a project: assess the clawback, deobligate, cancel unreleased tranches."""
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    kind = "revocation" if revoke else "termination"
    if state.terminated_on is not None:
        raise Refusal(
            "project_must_be_terminated_once",
            f"project {code} was already terminated or revoked on {state.terminated_on}; its clawback is assessed.",
        )
    _require_active(state, date, kind)
    if not (reference or "").strip():
        raise Refusal(f"{kind}_must_cite_approval", f"a {kind} needs the bureau's decision reference; give it with --reference.")
    lanes = [n for n in sorted(state.lanes) if n not in state.eliminated]
    postings, trace = _closing_postings(
        session, state, lanes, misused=list(misused), recover_all_rate=rules.funding.revocation_recovery_rate if revoke else None
    )
    trace |= {"reference": reference, "rules_version": rules.version,
              "clause": rules.clause("closure.termination_recovers") if not revoke else rules.clause("funding.revocation_recovery_rate")}
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind=kind, postings=tuple(postings), project_code=code,
            voucher=_voucher(voucher, f"{kind.upper()}-{code}"),
            memo=f"{kind} of {code}", actor=actor, rules_version=rules.version, trace=trace, fact=not postings,
        ),
        [AccountSpec(chart.budget_available(state.project.budget_year), "memo", chart.year_accounts_open_on(state.project.budget_year))],
        {"project_code": code, "reference": reference},
    )


def eliminate_lane_postings(session: Session, state: ProjectState, n: int) -> tuple[list[PostingDraft], dict]:
    """What a failed 赛马 stage assessment assesses: the lane's clawback and deobligation."""
    if not state.rules.funding.eliminated_racer_recovers_balance:
        postings, trace = _closing_postings(session, state, [n], misused=[], recover_all_rate=None)
        # The lane keeps its advance; only the unreleased obligation and unpaid subsidy stop.
        keep = {chart.advances(state.project.code, n), chart.clawback_receivable(state.project.code, n)}
        return [p for p in postings if p.account not in keep], trace
    return _closing_postings(session, state, [n], misused=[], recover_all_rate=None)


@idempotent("collection")
def collect(session: Session, *, project: str, lane: str | None, amount_fen: int, date: dt.date, voucher: str | None, actor: str) -> Posted:
    """Record recovered money received; it is owed to the finance bureau (应缴财政款) until remitted."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    n = state.lane_of(lane)
    _positive(amount_fen, "collection")
    outstanding = _lane_sums(session, state, n).get("clawback_receivable", 0)
    if amount_fen > outstanding:
        raise Refusal(
            "collection_must_not_exceed_outstanding",
            f"collection of {_yuan(amount_fen)} exceeds the clawback outstanding on {code} L{n}, {_yuan(outstanding)}; correct the amount.",
        )
    recoveries = chart.recoveries_owed(date.year)
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind="collection",
            postings=(
                PostingDraft(chart.RECOVERIES_BANK, amount_fen, None, "city_fiscal"),
                PostingDraft(chart.clawback_receivable(code, n), -amount_fen, None, "city_fiscal"),
                PostingDraft(recoveries, amount_fen, None, "city_fiscal"),
                PostingDraft(chart.DUE_TO_FINANCE, -amount_fen, None, "city_fiscal"),
            ),
            project_code=code, voucher=_voucher(voucher, f"COLLECT-{code}-L{n}-{date.isoformat()}-{amount_fen}"),
            memo=f"clawback collected L{n}", actor=actor, rules_version=state.rules.version,
            trace={"outstanding_before": format_fen(outstanding), "collected": format_fen(amount_fen)},
        ),
        [AccountSpec(chart.RECOVERIES_BANK, "fiscal", dt.date(2000, 1, 1)),
         AccountSpec(chart.DUE_TO_FINANCE, "fiscal", dt.date(2000, 1, 1)),
         AccountSpec(recoveries, "fiscal", chart.year_accounts_open_on(date.year))],
        {"project_code": code, "lane_no": n},
    )


def remit(session: Session, *, amount_fen: int, date: dt.date, voucher: str | None, actor: str) -> Posted:
    """Record recovered money handed over to the finance bureau."""
    lock(session)
    _positive(amount_fen, "remittance")
    owed = -_sum_account(session, chart.DUE_TO_FINANCE)
    if amount_fen > owed:
        raise Refusal(
            "remittance_must_not_exceed_amount_owed",
            f"remittance of {_yuan(amount_fen)} exceeds the {_yuan(owed)} collected and owed to the finance bureau.",
        )
    return post(
        session,
        EntryDraft(
            value_date=date, kind="remittance",
            postings=(PostingDraft(chart.DUE_TO_FINANCE, amount_fen), PostingDraft(chart.RECOVERIES_BANK, -amount_fen)),
            voucher=_voucher(voucher, f"REMIT-{date.isoformat()}-{amount_fen}"),
            memo="recoveries remitted to the finance bureau (应缴财政款)", actor=actor,
        ),
    )


@idempotent("write_off")
def write_off(
    session: Session, *, project: str, lane: str | None, amount_fen: int, date: dt.date, reason: str, approval: str, voucher: str | None, actor: str
) -> Posted:
    """Write off an uncollectable clawback, with a reason and an approval reference."""
    lock(session)
    state = load_project(session, project)
    code = state.project.code
    n = state.lane_of(lane)
    _positive(amount_fen, "write-off")
    if not (reason or "").strip() or not (approval or "").strip():
        raise Refusal("write_off_must_have_reason_and_approval", "a write-off needs --reason and --approval (the approval reference).")
    outstanding = _lane_sums(session, state, n).get("clawback_receivable", 0)
    if amount_fen > outstanding:
        raise Refusal(
            "write_off_must_not_exceed_outstanding",
            f"write-off of {_yuan(amount_fen)} exceeds the clawback outstanding on {code} L{n}, {_yuan(outstanding)}.",
        )
    return _post_event(
        session,
        EntryDraft(
            value_date=date, kind="write_off",
            postings=(PostingDraft(chart.write_offs(code), amount_fen, None, "city_fiscal"),
                      PostingDraft(chart.clawback_receivable(code, n), -amount_fen, None, "city_fiscal")),
            project_code=code, voucher=_voucher(voucher, f"WRITEOFF-{code}-L{n}-{date.isoformat()}"),
            memo=f"write-off: {reason.strip()}", actor=actor, rules_version=state.rules.version,
            trace={"reason": reason.strip(), "approval": approval.strip(), "outstanding_before": format_fen(outstanding)},
        ),
        [AccountSpec(chart.write_offs(code), "fiscal", state.project.approval_date, code)],
        {"project_code": code, "lane_no": n, "reference": approval.strip()},
    )


def reverse_event(session: Session, entry_id: int, *, reason: str, actor: str, value_date: dt.date | None = None) -> Posted:
    """Reverse a business event, refusing while later events of the project depend on it."""
    from ledger.journal import reverse

    lock(session)
    entry = session.get(JournalEntry, entry_id)
    if entry is not None and entry.project_code and entry.kind in ("approval", "stage", "bid_payment", "release", "extension"):
        dependants_kinds = {
            "approval": None,  # everything after the approval depends on it
            "stage": ("release", "spend", "termination", "revocation"),
            "bid_payment": ("release",),
            "release": ("spend", "termination", "revocation", "collection"),
            "extension": ("spend",),
        }[entry.kind]
        query = select(JournalEntry.id).where(
            JournalEntry.project_code == entry.project_code,
            JournalEntry.id > entry_id,
            JournalEntry.kind != "reversal",
            JournalEntry.id.not_in(reversed_entries()),
        )
        if dependants_kinds is not None:
            query = query.where(JournalEntry.kind.in_(dependants_kinds))
        blocking = session.scalars(query.order_by(JournalEntry.id).limit(5)).all()
        if blocking:
            raise Refusal(
                "dependent_entries_must_be_reversed_first",
                f"entry {entry_id} ({entry.kind}) of {entry.project_code} has later entries that rely on it: "
                + ", ".join(str(b) for b in blocking) + "; reverse those first (latest first).",
            )
    return reverse(session, entry_id, reason=reason, actor=actor, value_date=value_date)


@idempotent("closure")
def close(session: Session, *, project: str, date: dt.date, reference: str, voucher: str | None, actor: str) -> Posted:
    """Close a project after a passed acceptance: what was never released is deobligated.

    The balance left with the unit follows the rules (``closure.balance_after_acceptance``;
    the national 2021 rule retains it), so advances stay as they are. Unpaid subsidy must be
    released before closing, since closing ends every tranche.
    """
    lock(session)
    state = load_project(session, project)
    code, rules = state.project.code, state.rules
    _require_active(state, date, "closure")
    missing = [c for c in ("acceptance_passed",) + (("audit_report_received",) if checks.audit_required(state.project.approved_grant_fen, rules) else ())
               if c not in state.met(0)]
    if missing:
        raise Refusal(
            "closure_must_follow_acceptance",
            f"project {code} cannot close before " + "; ".join(CONDITION_HINTS[c] for c in missing) + ".",
        )
    if not (reference or "").strip():
        raise Refusal("closure_must_cite_approval", "a closure needs the acceptance document reference; give it with --reference.")
    year = state.project.budget_year
    postings: list[PostingDraft] = []
    trace: dict = {"reference": reference, "balance_after_acceptance": rules.closure.balance_after_acceptance, "lanes": {}}
    for n in sorted(state.lanes):
        if n in state.eliminated:
            continue
        sums = _lane_sums(session, state, n)
        payable = -sums.get("subsidy_payable", 0)
        if payable:
            raise Refusal(
                "closure_must_follow_final_release",
                f"{code} L{n} still has {_yuan(payable)} subsidy earned and unpaid; release it (jiebang release) before closing.",
            )
        unreleased = sums.get("grant_unreleased", 0)
        if unreleased:
            postings += [PostingDraft(chart.grant_unreleased(code, n), -unreleased, None, "city_fiscal"),
                         PostingDraft(chart.budget_available(year), unreleased, None, "city_fiscal")]
        trace["lanes"][f"L{n}"] = {"deobligated": format_fen(unreleased), "advances_retained": format_fen(sums.get("advances", 0))}
    return _post_event(
        session,
        EntryDraft(value_date=date, kind="closure", postings=tuple(postings), project_code=code,
                   voucher=_voucher(voucher, f"CLOSE-{code}"), memo=f"closure of {code} after acceptance", actor=actor,
                   rules_version=rules.version, trace=trace, fact=not postings),
        [AccountSpec(chart.budget_available(year), "memo", chart.year_accounts_open_on(year))],
        {"project_code": code, "reference": reference},
    )
