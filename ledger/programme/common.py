"""What every programme service shares: the writer lock, idempotency by voucher, posting an
event with its facts, and the facts the project-open checks of ``funding_rules.checks`` read."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import functools
import json
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from funding_rules import checks
from ledger.core.errors import Refusal
from ledger.core.journal import (
    AccountSpec,
    EntryDraft,
    Posted,
    open_new_accounts,
    post,
)
from ledger.core.models import ChainHead, JournalEntry
from ledger.core.money import format_fen_grouped
from ledger.programme import cache as state_cache
from ledger.programme import chart, guards, projection

PAYMENT_FORMS = ("cash", "equity", "in_kind")
CATEGORIES = tuple(chart.CATEGORY_SEGMENTS)
# The chart keeps one account per budget category the checks know.
assert set(CATEGORIES) == set(checks.BUDGET_CATEGORY_NAMES)


# --- shared helpers ---------------------------------------------------------------------


def lock(session: Session) -> None:
    """Serialise writers: lock the chain head row before reading what checks depend on
    (once for a whole import, which holds it until it ends)."""
    cache = state_cache.active(session)
    if cache is not None and cache.locked:
        return
    session.execute(select(ChainHead.id).where(ChainHead.id == 1).with_for_update()).all()


def _refuse(violations: list[checks.Violation]) -> None:
    """Refuse with every error found, in one line (see ``funding_rules.checks.RuleRefusal``)."""
    checks.refuse_errors(violations)


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


# A maker–checker approval runs the money-out service again; the decision it makes rides in
# the facts of the one entry the service posts (``ledger.programme.approvals.approve``), so
# that entry is both the money and the record of who approved it.
_decision: contextvars.ContextVar[dict | None] = contextvars.ContextVar("jiebang_decision", default=None)


# While a request is recorded its service runs once in a rolled-back savepoint, to check that
# it would post now; that dry run is not money out (``ledger.programme.guards``).
_requesting: contextvars.ContextVar[bool] = contextvars.ContextVar("jiebang_requesting", default=False)


@contextlib.contextmanager
def requesting():
    """While inside, money-out entries are checked by the rules but not refused for want of approval."""
    token = _requesting.set(True)
    try:
        yield
    finally:
        _requesting.reset(token)


@contextlib.contextmanager
def deciding(kind: str, decision: dict):
    """While inside, the next ``kind`` entry posted through ``_post_event`` carries ``decision``."""
    token = _decision.set({"kind": kind, "decision": decision})
    try:
        yield
    finally:
        _decision.reset(token)


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
    cache = state_cache.active(session)
    if cache is not None and (kind, voucher) in cache.absent:
        return None  # the import looked the file's vouchers up in bulk
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
    deciding_now = _decision.get()
    approved = deciding_now is not None and deciding_now["kind"] == draft.kind
    if not approved and not _requesting.get():
        # Money out is defined by the accounts, whatever the kind: without an approved
        # request it is refused while approval is required (PostgreSQL's trigger agrees).
        guards.check_money_out(session, draft.kind, draft.voucher, [(p.account, p.amount_fen) for p in draft.postings])
    if approved:
        facts["decision"] = deciding_now["decision"]
        _decision.set(None)  # one decision, one entry
    if event is not None:
        facts["event"] = {k: v for k, v in event.items() if k != "project_code"}
    opens = open_new_accounts(session, accounts) if accounts else []
    if opens:
        facts["opens"] = [[a.name, a.book, a.opened_on.isoformat(), a.project_code, a.lane] for a in opens]
    if facts:
        draft = dataclasses.replace(draft, facts=facts)
    posted = post(session, draft)
    projection.record(session, posted, draft)
    state_cache.after_post(session, posted, draft, opens, facts.get("event"))
    return posted


def _voucher(voucher: str | None, default: str) -> str:
    return (voucher or default).strip()


def _category(category: str, legacy_lines: dict[str, str] | None = None) -> str:
    """The category key of a category the checks have accepted."""
    key = checks.category_key(category, legacy_lines)
    assert key is not None, f"unchecked budget category {category!r}"
    return key


def event_facts(state, what: str, when: dt.date, n: int | None = None) -> checks.EventFacts:
    """Where a project stands for an event on ``when`` (lane ``n``), for the project-open checks."""
    return checks.EventFacts(
        project_code=state.project.code,
        what=what,
        date=when,
        approval_date=state.project.approval_date,
        terminated_on=state.terminated_on,
        closed_on=state.closed_on,
        lane=n,
        solver=state.lanes.get(n, "") if n is not None else "",
        eliminated_on=state.eliminated.get(n) if n is not None else None,
    )
