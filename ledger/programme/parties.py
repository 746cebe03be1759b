"""Parties: registration of enterprises, universities and institutes by USCC."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from funding_rules import checks
from funding_rules.uscc import normalize_uscc, validate_uscc
from ledger.core.errors import Refusal
from ledger.core.journal import (
    EntryDraft,
    Posted,
)
from ledger.core.models import JournalEntry
from ledger.programme.common import _post_event, lock
from ledger.programme.models import Party, PartyRelation

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
    checks.enforce(checks.PARTY_CHECKS, checks.PartyRegistrationFacts(party.kind, party.name), None)
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
        memo=f"登记单位 {facts['name']}",
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
