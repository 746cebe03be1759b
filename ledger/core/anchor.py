"""Anchors: a small file an auditor keeps, naming the chain head at one moment.

``verify`` proves the chain is consistent with itself. Someone with write access to the
database can still rewrite the whole chain and re-hash every entry consistently; only a copy
of an earlier head, kept outside the database, catches that. ``write_anchor`` exports the
head (entry id and hash), the entry count and the latest value date; ``check_anchor`` says
whether the ledger still holds that exact entry at that exact position. Because every hash
covers its predecessor, a matching head proves every entry up to it is unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.core.errors import Refusal
from ledger.core.models import JournalEntry

ANCHOR_FORMAT = "jiebang-anchor/1"
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
ANCHOR_BYTES_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class Anchor:
    """The chain head at one moment.

    Attributes:
      head_id: the id of the last entry (entries are numbered 1, 2, ... without gaps).
      head_hash: that entry's chain hash.
      entries: how many entries the journal held (equal to ``head_id``).
      latest_value_date: the latest value date among those entries, or None when empty.
      taken_at: when the anchor was written (informational, not checked).
    """

    head_id: int
    head_hash: str
    entries: int
    latest_value_date: dt.date | None
    taken_at: str = ""

    def as_json(self) -> str:
        return json.dumps(
            {
                "format": ANCHOR_FORMAT,
                "head_id": self.head_id,
                "head_hash": self.head_hash,
                "entries": self.entries,
                "latest_value_date": self.latest_value_date.isoformat() if self.latest_value_date else None,
                "taken_at": self.taken_at,
            },
            ensure_ascii=False,
            indent=2,
        ) + "\n"


def take_anchor(session: Session, head_id: int, head_hash: str, entries: int) -> Anchor:
    """The anchor of a ledger ``verify`` has just recomputed up to ``head_id`` / ``head_hash``."""
    latest = session.execute(
        select(func.max(JournalEntry.value_date)).where(JournalEntry.id <= head_id)
    ).scalar()
    taken = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    return Anchor(head_id, head_hash, entries, latest, taken)


def write_anchor(anchor: Anchor, path: Path, *, force: bool = False) -> None:
    if path.exists() and not force:
        raise Refusal("anchor_must_not_overwrite", f"{path} exists; keep earlier anchors, choose another name or add --force.")
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(anchor.as_json(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise Refusal("anchor_must_be_writable", f"cannot write {path}: {exc.strerror or exc}.") from None


def read_anchor(path: Path) -> Anchor:
    """Read an anchor file, or refuse in one line if it is not one."""

    def bad(why: str) -> Refusal:
        return Refusal("anchor_file_must_be_valid", f"{path} is not a jiebang anchor: {why}; use a file written by `jiebang anchor`.")

    try:
        if path.stat().st_size > ANCHOR_BYTES_MAX:
            raise bad("it is far too large")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise Refusal("anchor_file_must_exist", f"anchor file {path} does not exist; check the path.") from None
    except OSError as exc:
        raise Refusal("anchor_file_must_be_readable", f"cannot read {path}: {exc.strerror or exc}.") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("it is not JSON text") from None
    if not isinstance(data, dict) or data.get("format") != ANCHOR_FORMAT:
        raise bad(f"its format is not {ANCHOR_FORMAT}")
    head_id, head_hash, entries, latest = (data.get(k) for k in ("head_id", "head_hash", "entries", "latest_value_date"))
    if isinstance(head_id, bool) or not isinstance(head_id, int) or head_id < 0:
        raise bad("head_id must be a whole number")
    if isinstance(entries, bool) or not isinstance(entries, int) or entries != head_id:
        raise bad("entries must equal head_id")
    if not isinstance(head_hash, str) or not HASH_RE.match(head_hash):
        raise bad("head_hash must be 64 hexadecimal digits")
    if latest is None:
        latest_date = None
    else:
        try:
            latest_date = dt.date.fromisoformat(latest) if isinstance(latest, str) else None
        except ValueError:
            latest_date = None
        if latest_date is None:
            raise bad("latest_value_date must be YYYY-MM-DD")
    taken = data.get("taken_at")
    return Anchor(head_id, head_hash, entries, latest_date, taken if isinstance(taken, str) else "")


def check_anchor(session: Session, anchor: Anchor) -> tuple[int, str] | None:
    """(first entry concerned, problem) when the ledger no longer holds the anchored head; None when it does.

    Call it after ``verify`` passed: the chain is then consistent, so the entry at the
    anchor's position having the anchor's hash proves every entry up to it is unchanged.
    """
    from ledger.core.models import GENESIS_HASH

    if anchor.head_id == 0:
        return None if anchor.head_hash == GENESIS_HASH else (1, "the anchor names an empty journal with a non-genesis hash")
    row = session.execute(
        select(JournalEntry.id, JournalEntry.hash).where(JournalEntry.id == anchor.head_id)
    ).one_or_none()
    if row is None:
        count = session.execute(select(func.count()).select_from(JournalEntry)).scalar_one()
        return (
            count + 1,
            (
                f"the anchor taken {anchor.taken_at or 'earlier'} records {anchor.entries} entries ending in "
                f"{anchor.head_hash[:16]}…, but the journal now ends at entry {count}: entries were removed"
            ),
        )
    if row.hash != anchor.head_hash:
        return (
            anchor.head_id,
            (
                f"entry {anchor.head_id} has hash {row.hash[:16]}…, not the anchored {anchor.head_hash[:16]}… "
                f"(anchor taken {anchor.taken_at or 'earlier'}): the chain up to it was rewritten"
            ),
        )
    latest = session.execute(
        select(func.max(JournalEntry.value_date)).where(JournalEntry.id <= anchor.head_id)
    ).scalar()
    if latest != anchor.latest_value_date:
        return (anchor.head_id, f"the latest value date up to entry {anchor.head_id} is {latest}, not the anchored {anchor.latest_value_date}")
    return None
