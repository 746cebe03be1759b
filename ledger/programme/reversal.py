"""Reversal of a programme event, refused while later events rely on it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.core.errors import Refusal
from ledger.core.journal import (
    Posted,
    reverse,
)
from ledger.core.models import JournalEntry
from ledger.programme.common import lock, reversed_entries


def reverse_event(session: Session, entry_id: int, *, reason: str, actor: str, value_date: dt.date | None = None) -> Posted:
    """Reverse a business event, refusing while later events of the project depend on it."""

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
