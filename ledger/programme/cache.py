"""What a run of many events (an import) keeps between them, so that each event costs the same
however many its project already has.

A verb loads its project's state from the database: every event of the project, folded by
``ledger.programme.fold.fold_project``, and the balances of the lane it touches. Done for
every row of a file, that makes an import quadratic within a project. While a
``StateCache`` is active on a session (``caching``), the first service call on a project
loads it once; every entry posted afterwards through ``common._post_event`` advances the
cached fold by its own event (``fold.apply_event``, the same step the full fold takes) and
the cached lane balances by its own postings. The services read the cache through
``state.load_project`` and ``state._lane_sums`` and check the same rules on the same facts,
so an import and the verbs post the same entries.

The cache is only valid while nobody else writes, which the writer lock held by the import
for its whole transaction guarantees, and while every write goes through ``_post_event``.
A row whose savepoint is rolled back may have advanced the cache before failing: the import
then calls ``forget_row`` and the projects it touched are loaded again when next needed.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from ledger.core import journal, limits
from ledger.programme import fold

SESSION_KEY = "jiebang.state_cache"
# The journal core keeps running absolute totals per account id under this key while it is
# a dict (``ledger.core.limits.check_account_totals``); the cache owns and resets it.
TOTALS_KEY = limits.TOTALS_SESSION_KEY
ABSENT_KEY = journal.ABSENT_VOUCHERS_KEY
# The core keeps the account rows it has read under this key while it is a dict; reset too.
ACCOUNTS_KEY = journal.ACCOUNTS_SESSION_KEY


@dataclass
class CachedProject:
    """One project as loaded once: its row, rules, lanes, events in chain order, the
    reversals of any, the fold of all of them (advanced in place) and its tranche ids."""

    project: Any
    rules: Any
    lanes: dict[int, str]
    events: list[fold.ProjectEvent]
    reversals: dict[int, dt.date]
    now: fold.ProjectFold
    tranche_ids: dict[tuple[int, int], int]
    last_date: dt.date | None = None
    tranches: list | None = None  # its tranche rows in lane and sequence order, once read


@dataclass
class StateCache:
    projects: dict[str, CachedProject] = field(default_factory=dict)
    # (project code, solver USCC) -> account name -> [sum of amounts, number of postings]
    lane_accounts: dict[tuple[str, str], dict[str, list[int]]] = field(default_factory=dict)
    account_lane: dict[str, tuple[str, str]] = field(default_factory=dict)
    lane_keys: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # project code -> its keys above
    # (entry kind, voucher) known not to be recorded: the import looked them up in bulk.
    absent: set[tuple[str, str]] = field(default_factory=set)
    # Parties as the approval checks read them: rows (never changed once written), declared
    # relations by USCC (either side), every party's yearly facts by USCC (None: not loaded),
    # and the (rules version, fingerprint) pairs no approved project contradicts.
    parties: dict[str, Any] = field(default_factory=dict)
    parties_loaded: bool = False  # every party written before the import is in ``parties``
    relations: dict[str, set[str]] | None = None  # every relation, once loaded
    # Balances of single accounts the services sum (a year's available budget), advanced by
    # each entry posted.
    balances: dict[str, int] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)  # ledger settings read (approvals.setting)
    year_records: dict[str, list] | None = None
    pins: set[tuple[str, str]] = field(default_factory=set)
    locked: bool = False
    # Projects loaded or changed by the current row (or run of rows in one savepoint): what
    # it loaded may include what it wrote, so a rollback forgets both.
    touched: set[str] = field(default_factory=set)
    head: Any = None  # the chain head held in memory when the current row began

    def begin_row(self, session: Session) -> None:
        self.head = journal.held_head(session)

    def forget_row(self, session: Session) -> None:
        """Drop what the current row may have changed (it was rolled back)."""
        for code in self.touched:
            self.forget_project(code)
        self.touched.clear()
        self.parties.clear()
        self.parties_loaded = False
        self.relations = None
        self.balances.clear()
        self.settings.clear()
        self.year_records = None
        self.pins.clear()
        for key in (TOTALS_KEY, ACCOUNTS_KEY):
            held = session.info.get(key)
            if held is not None:
                held.clear()
        if self.head is not None:
            journal.restore_held_head(session, self.head)

    def forget_project(self, code: str) -> None:
        self.projects.pop(code, None)
        for key in self.lane_keys.pop(code, ()):
            for name in self.lane_accounts.pop(key, ()):
                self.account_lane.pop(name, None)

    def loaded_lane(self, key: tuple[str, str], accounts: dict[str, list[int]]) -> None:
        """Keep a lane's account balances just read (``state._lane_sums``)."""
        self.lane_accounts[key] = accounts
        self.lane_keys.setdefault(key[0], set()).add(key)
        for name in accounts:
            self.account_lane[name] = key
        self.touched.add(key[0])

    def row_done(self) -> None:
        self.touched.clear()


def active(session: Session) -> StateCache | None:
    return session.info.get(SESSION_KEY)


@contextlib.contextmanager
def caching(session: Session):
    """While inside, project states and lane balances are loaded once and advanced by each
    entry posted; the caller must hold the writer lock (``common.lock``) throughout. The chain
    head is held in memory (``journal.hold_head``) and written once on leaving without an
    error, and the rows of entries and project events are buffered (``journal.buffering``)
    and written in batches; the caller calls ``begin_row`` before each row (or run of rows
    in one savepoint) and ``forget_row`` when it rolls it back."""
    cache = StateCache()
    journal.hold_head(session)
    session.info[SESSION_KEY] = cache
    session.info[TOTALS_KEY] = {}
    session.info[ACCOUNTS_KEY] = {}
    session.info[ABSENT_KEY] = cache.absent  # the core skips its voucher look-up for these
    try:
        with journal.buffering(session):
            yield cache
        journal.write_held_head(session)
    finally:
        for key in (SESSION_KEY, TOTALS_KEY, ACCOUNTS_KEY, ABSENT_KEY, journal.HEAD_SESSION_KEY):
            session.info.pop(key, None)


def snapshot(folded: fold.ProjectFold) -> fold.ProjectFold:
    """A copy a service may keep while the cached fold moves on (its sets and dicts copied;
    dates, ints and strings are immutable)."""
    return fold.ProjectFold(
        conditions={lane: set(met) for lane, met in folded.conditions.items()}, met_on=dict(folded.met_on),
        eliminated=dict(folded.eliminated), released_tranches=set(folded.released_tranches),
        extensions=folded.extensions, extension_months=folded.extension_months, terminated_on=folded.terminated_on,
        ended_by=folded.ended_by, closed_on=folded.closed_on, acceptance_failed_on=folded.acceptance_failed_on,
        audited_cash=dict(folded.audited_cash), balance_recovered_on=folded.balance_recovered_on,
    )


def after_post(session: Session, posted, draft, opens, event_row: dict | None) -> None:
    """Advance the cache by an entry just posted: its accounts, postings and project event."""
    cache = active(session)
    if cache is None:
        return
    if draft.voucher is not None:
        cache.absent.discard((draft.kind, draft.voucher))
    if not posted.created:
        return
    facts = draft.facts or {}
    party = facts.get("party")
    if party is not None and cache.relations is not None:
        for related in party.get("related", ()):
            cache.relations.setdefault(party["uscc"], set()).add(related)
            cache.relations.setdefault(related, set()).add(party["uscc"])
    for p in draft.postings:
        if p.account in cache.balances:
            cache.balances[p.account] += p.amount_fen
    if facts.get("setting") is not None:
        cache.settings.pop(facts["setting"]["name"], None)
    if draft.kind in ("party_facts", "reversal"):
        cache.year_records = None
    project = facts.get("project")
    if project is not None:  # a pin of this version other than this project's is contradicted now
        cache.pins = {pin for pin in cache.pins if pin[0] != project["rules_version"] or pin[1] == project["rules_fingerprint"]}
    for spec in opens:
        key = (spec.project_code, spec.lane)
        if key in cache.lane_accounts:
            cache.lane_accounts[key].setdefault(spec.name, [0, 0])
            cache.account_lane[spec.name] = key
    for p in draft.postings:
        key = cache.account_lane.get(p.account)
        if key is not None:
            cache.touched.add(key[0])
            held = cache.lane_accounts[key][p.account]
            held[0] += p.amount_fen
            held[1] += 1
    code = draft.project_code
    if code is None:
        return
    cached = cache.projects.get(code)
    if cached is None:
        return
    cache.touched.add(code)
    if event_row is None:
        return
    tranche = event_row.get("tranche")
    e = fold.ProjectEvent(
        posted.entry_id, draft.value_date, draft.kind, event_row.get("lane_no"), event_row.get("stage"),
        None if event_row.get("passed") is None else bool(event_row["passed"]),
        None if tranche is None else cached.tranche_ids[tuple(tranche)],
        copy.deepcopy(event_row.get("payload") or {}),
    )
    cached.events.append(e)
    fold.apply_event(cached.now, e)
    if cached.last_date is None or e.value_date > cached.last_date:
        cached.last_date = e.value_date
