"""Verified checkpoints: a full verification's end recorded, so later checks start there.

A passing ``jiebang verify`` records its chain head (entry id and hash), who ran it and
whether the programme tables were compared (``record_checkpoint``). ``verify_since`` then
checks that the checkpoint entry still holds the recorded hash and recomputes only the
entries after it (``ledger.core.verify.walk_from``: digests, chain links, per-book
balances, the chain head), so its cost follows the entries since the checkpoint, not the
ledger's size. Everything up to the checkpoint is vouched for by the full verification
that recorded it: an entry changed before the checkpoint is caught by the next full
``verify``, not by ``verify_since`` (unless the checkpoint entry's hash itself changed).

Reports never record a checkpoint (they only read); a connection that may not write
(an auditor's login, a read-only transaction or file) simply records none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ledger.core.models import ChainHead, JournalEntry, VerifyCheckpoint
from ledger.core.verify import VerifyResult, walk_from


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A recorded checkpoint (``recorded_at`` is the database's clock, as text)."""

    id: int
    entry_id: int
    hash: str
    recorded_by: str
    recorded_at: str
    projections_checked: bool


@dataclass(frozen=True, slots=True)
class Recording:
    """What ``record_checkpoint`` did: the checkpoint, or why none was recorded (no reason
    for an empty journal, where there is nothing to record)."""

    checkpoint: Checkpoint | None
    reason: str | None = None


def _checkpoint(row) -> Checkpoint:
    return Checkpoint(row.id, int(row.entry_id), row.hash, row.recorded_by, str(row.recorded_at),
                      bool(row.projections_checked))


_COLUMNS = (
    VerifyCheckpoint.id, VerifyCheckpoint.entry_id, VerifyCheckpoint.hash, VerifyCheckpoint.recorded_by,
    VerifyCheckpoint.recorded_at, VerifyCheckpoint.projections_checked,
)


def latest_checkpoint(session: Session, *, at_or_before: int | None = None) -> Checkpoint | None:
    """The newest checkpoint at or before entry ``at_or_before`` (default: the chain head)."""
    if at_or_before is None:
        at_or_before = session.execute(select(ChainHead.last_entry_id).where(ChainHead.id == 1)).scalar() or 0
    row = session.execute(
        select(*_COLUMNS).where(VerifyCheckpoint.entry_id <= at_or_before)
        .order_by(VerifyCheckpoint.entry_id.desc(), VerifyCheckpoint.id.desc()).limit(1)
    ).first()
    return None if row is None else _checkpoint(row)


def record_checkpoint(session: Session, result: VerifyResult, *, actor: str, projections_checked: bool) -> Recording:
    """Record the head of a passing full verification; commit is the caller's.

    Records nothing for a failed verification, an empty journal, or a connection that may
    not write (PostgreSQL: no INSERT privilege on the table, or a read-only transaction;
    SQLite: a read-only file), and says why. On PostgreSQL ``recorded_by`` is the login.
    """
    if not result.ok:
        return Recording(None, "the ledger does not verify")
    if result.head_id == 0:
        return Recording(None)  # nothing to vouch for
    if session.get_bind().dialect.name == "postgresql":
        login, may_insert, read_only = session.execute(text(
            "SELECT current_user, has_table_privilege('verify_checkpoints', 'INSERT'),"
            " current_setting('transaction_read_only') = 'on'"
        )).one()
        if read_only or not may_insert:
            return Recording(None, f"login {login} may not record checkpoints (read-only)")
        actor = login
    values = {"entry_id": result.head_id, "hash": result.head_hash, "recorded_by": actor[:80],
              "projections_checked": projections_checked}
    try:
        with session.begin_nested():
            new_id = session.execute(insert(VerifyCheckpoint).values(values).returning(VerifyCheckpoint.id)).scalar_one()
    except DBAPIError as exc:
        message = str(exc.orig)
        if "readonly" in message or "read-only" in message or "read only" in message:
            return Recording(None, "the database is read-only")
        raise
    row = session.execute(select(*_COLUMNS).where(VerifyCheckpoint.id == new_id)).one()
    return Recording(_checkpoint(row))


def verify_since(
    session: Session,
    checkpoint: Checkpoint,
    *,
    progress: Callable[[int], None] | None = None,
    projections: Callable[[Session], str | None] | None = None,
) -> VerifyResult:
    """Check the ledger from ``checkpoint`` on: that its entry still holds the recorded hash,
    then every later entry, the chain head and (given) the projections, as ``verify`` does.

    ``entries`` in the result counts the entries recomputed (those after the checkpoint).
    """
    held = session.execute(select(JournalEntry.hash).where(JournalEntry.id == checkpoint.entry_id)).scalar()
    if held != checkpoint.hash:
        state = "is missing" if held is None else "no longer has the hash recorded at the checkpoint"
        return VerifyResult(
            False, 0, checkpoint.entry_id, checkpoint.hash, checkpoint.entry_id,
            f"entry {checkpoint.entry_id}, verified at checkpoint {checkpoint.id}, {state}",
        )
    return walk_from(session, checkpoint.entry_id, checkpoint.hash, progress=progress, projections=projections)
