"""Parties: registration of enterprises, universities and institutes by USCC."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
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
from ledger.programme import cache as state_cache
from ledger.programme import fold
from ledger.programme.common import _post_event, lock, reversed_entries
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
    cache = state_cache.active(session)
    if cache is not None and not cache.parties_loaded:  # an import reads the parties once
        cache.parties.update((p.uscc, p) for p in session.scalars(select(Party)))
        cache.parties_loaded = True
    row = cache.parties.get(code) if cache is not None else None
    if row is None:
        row = session.execute(select(Party).where(Party.uscc == code)).scalar_one_or_none()
        if row is not None and cache is not None:
            cache.parties[code] = row
    if row is None:
        raise Refusal(
            "party_must_be_registered",
            f"{role} {code} is not registered; register it first (the party add verb, with this USCC and its registered name).",
        )
    return row


@dataclass(frozen=True)
class PartyYearInput:
    """A party's facts for one fiscal year (“上一年度” revenue and R&D ratio, credit record,
    创新标兵, 规模以上), recorded with ``party update``; later records of a year supersede
    earlier ones, nothing is edited."""

    uscc: str
    year: int
    revenue_fen: int | None = None
    rnd_intensity: Decimal | None = None
    bad_credit: bool = False
    innovation_star: bool = False
    above_scale: bool = False
    date: dt.date | None = None
    voucher: str | None = None


def update_party(session: Session, spec: PartyYearInput, *, actor: str) -> Posted:
    """Record a party's facts for a fiscal year: a hashed fact entry, append-only."""
    lock(session)
    row = _load_party(session, spec.uscc, "party")
    checks.enforce(checks.PARTY_YEAR_CHECKS, checks.PartyYearFacts(row.uscc, spec.year, (spec.date or dt.date.today()).year), None)
    facts = {
        "uscc": row.uscc,
        "year": spec.year,
        "revenue_fen": spec.revenue_fen,
        "rnd_intensity": None if spec.rnd_intensity is None else str(spec.rnd_intensity),
        "bad_credit": spec.bad_credit,
        "innovation_star": spec.innovation_star,
        "above_scale": spec.above_scale,
    }
    earlier = len(party_year_records(session, row.uscc))
    voucher = (spec.voucher or f"PF-{row.uscc}-{spec.year}-{earlier + 1}").strip()
    prior = session.execute(
        select(JournalEntry.id, JournalEntry.facts).where(JournalEntry.kind == "party_facts", JournalEntry.voucher == voucher)
    ).one_or_none()
    if prior is not None:
        if json.loads(prior.facts or "{}").get("party_facts") == facts:
            return Posted(prior.id, "", created=False)
        raise Refusal(
            "voucher_must_match_first_use",
            f"voucher {voucher} was already used for party_facts entry {prior.id} with different details; "
            "use a new voucher (a later record of the same year supersedes the earlier one).",
        )
    draft = EntryDraft(
        value_date=spec.date or dt.date.today(),
        kind="party_facts",
        postings=(),
        voucher=voucher,
        memo=f"单位年度数据 {row.uscc} {spec.year}年",
        actor=actor,
        trace={"party_facts": facts, "supersedes_earlier_records_of_the_year": True},
        fact=True,
    )
    return _post_event(session, draft, [], None, {"party_facts": facts})


def party_year_records(session: Session, uscc: str) -> list[fold.PartyYearFacts]:
    """The party's yearly facts in chain order (entries reversed later do not count); during
    an import, read once for every party and kept until a yearly fact or a reversal is posted."""
    cache = state_cache.active(session)
    if cache is None:
        return _year_records(session).get(uscc, [])
    if cache.year_records is None:
        cache.year_records = _year_records(session)
    return list(cache.year_records.get(uscc, ()))


def _year_records(session: Session) -> dict[str, list[fold.PartyYearFacts]]:
    rows = session.execute(
        select(JournalEntry.id, JournalEntry.facts)
        .where(JournalEntry.kind == "party_facts", JournalEntry.id.not_in(reversed_entries()))
        .order_by(JournalEntry.id)
    ).all()
    records: dict[str, list[fold.PartyYearFacts]] = {}
    for entry_id, text in rows:
        f = json.loads(text or "{}").get("party_facts") or {}
        records.setdefault(f.get("uscc"), []).append(fold.PartyYearFacts(
            entry_id, int(f["year"]), f.get("revenue_fen"), f.get("rnd_intensity"), bool(f.get("innovation_star")),
            bool(f.get("above_scale")), bool(f.get("bad_credit"))))
    return records


def _related(session: Session, uscc: str) -> frozenset[str]:
    """The parties related to one, declared by either side (during an import, every relation
    read once and each party registered adding its own)."""
    cache = state_cache.active(session)
    if cache is not None:
        if cache.relations is None:  # an import reads the relations once
            cache.relations = {}
            for party, other in session.execute(select(PartyRelation.party_uscc, PartyRelation.related_uscc)):
                cache.relations.setdefault(party, set()).add(other)
                cache.relations.setdefault(other, set()).add(party)
        return frozenset(cache.relations.get(uscc, ()))
    related = set(session.scalars(select(PartyRelation.related_uscc).where(PartyRelation.party_uscc == uscc)))
    # Relations are declared by either side; a relation declared by the other party counts too.
    related |= set(session.scalars(select(PartyRelation.party_uscc).where(PartyRelation.related_uscc == uscc)))
    return frozenset(related)


def _party_checks_facts(session: Session, row: Party, year: int | None = None, lookback_years: int | None = None) -> checks.PartyFacts:
    """The party as the checks see it; with ``year``, the facts recorded for that fiscal year
    (``party update``) take the place of those given at registration, and a bad credit record
    in any year of the look-back window counts."""
    related = _related(session, row.uscc)
    registered = checks.PartyFacts(
        uscc=row.uscc,
        kind=row.kind,
        name=row.name,
        revenue_fen=row.revenue_fen,
        rnd_intensity=None if row.rnd_intensity is None else Decimal(row.rnd_intensity),
        innovation_star=bool(row.innovation_star),
        bad_credit_within_lookback=bool(row.bad_credit),
        related_usccs=related,
    )
    if year is None:
        return registered
    in_force, bad_years = fold.party_facts_in_force(party_year_records(session, row.uscc), year, lookback_years)
    bad = registered.bad_credit_within_lookback or bool(bad_years)
    if in_force is None:
        return dataclasses.replace(registered, bad_credit_within_lookback=bad)
    return dataclasses.replace(
        registered,
        revenue_fen=in_force.revenue_fen,
        rnd_intensity=None if in_force.rnd_intensity is None else Decimal(in_force.rnd_intensity),
        innovation_star=in_force.innovation_star,
        above_scale=in_force.above_scale,
        bad_credit_within_lookback=bad,
        facts_year=in_force.year,
        facts_entry=in_force.entry_id,
    )
