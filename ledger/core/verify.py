"""Recomputing the hash chain and the per-book balance of every entry, streaming.

``verify`` streams the entries and, beside them, their postings, both in entry id order, and
walks them once, so memory stays flat however long the journal is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import chain, groupby
from operator import itemgetter

from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from ledger.core.journal import chain_hash, content_hash
from ledger.core.models import GENESIS_HASH, ChainHead, JournalEntry, Posting
from ledger.core.money import format_fen

STREAM_BATCH = 10_000

_ENTRIES_SQL = (
    "SELECT id, value_date, kind, project_code, voucher, memo, actor, rules_version, trace, reverses_id,"
    " content_hash, prev_hash, hash, facts FROM journal_entries ORDER BY id"
)
# Leg rows: (entry_id, book, account, amount_fen, budget_category, fund_source, account_book,
# value_date); leg[1:6] is the posting as content_hash takes it. The inner join leaves out a
# posting whose account is gone, which the entry's digest then no longer matches.
_LEGS_SQL = (
    "SELECT p.entry_id, p.book, a.name, p.amount_fen, p.budget_category, p.fund_source, a.book, p.value_date"
    " FROM postings p JOIN accounts a ON a.id = p.account_id ORDER BY p.entry_id, p.id"
)


# Postings outside their account's dates: per account, two probes of the (account, date)
# index, not a pass over every posting (the write path refuses such postings, so only a
# changed account row or a hand-inserted posting can show up here).
_OUTSIDE_DATES_SQL = (
    "SELECT a.name, a.opened_on, a.closed_on FROM accounts a"
    " WHERE EXISTS (SELECT 1 FROM postings p WHERE p.account_id = a.id AND p.value_date < a.opened_on)"
    " OR (a.closed_on IS NOT NULL AND EXISTS"
    " (SELECT 1 FROM postings p WHERE p.account_id = a.id AND p.value_date > a.closed_on))"
    " ORDER BY a.name LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of a verification.

    Attributes:
      ok: True when every check held.
      entries: how many entries were read.
      head_id / head_hash: the last entry id and hash recomputed from the rows.
      first_bad_entry: the id of the first entry that failed, if any.
      problem: one sentence saying what failed.
    """

    ok: bool
    entries: int
    head_id: int
    head_hash: str
    first_bad_entry: int | None = None
    problem: str | None = None


def verify(
    session: Session,
    *,
    progress: Callable[[int], None] | None = None,
    projections: Callable[[Session], str | None] | None = None,
) -> VerifyResult:
    """Recompute the chain, the digests and the per-book balances; name the first bad entry.

    ``projections``, when given, is called once the chain holds; it returns the first way
    the tables derived from the journal differ from it (the programme passes
    ``ledger.programme.projection.differences``), or None.
    """
    connection = session.connection()
    # Entries first: on PostgreSQL each statement sees the rows committed when it starts, so
    # the postings, read second, include those of every entry read (an entry commits with or
    # after its postings); postings of entries committed in between are never paired.
    with _driver_rows(connection, "entries", _ENTRIES_SQL) as entries, _driver_rows(connection, "legs", _LEGS_SQL) as legs:
        result = _walk(session, _with_legs(entries, legs), progress)
    if not result.ok:
        return result
    # NOT EXISTS, not NOT IN: PostgreSQL runs a NOT IN whose subquery outgrows work_mem row by
    # row (not done after ten minutes at 300,000 entries); NOT EXISTS is an anti-join on both.
    has_entry = select(JournalEntry.id).where(JournalEntry.id == Posting.entry_id).exists()
    orphan = session.execute(select(func.min(Posting.entry_id)).where(~has_entry)).scalar()
    if orphan is not None:
        return VerifyResult(
            False, result.entries, result.head_id, result.head_hash, orphan,
            f"postings exist for entry {orphan}, which is missing from the journal",
        )
    outside = session.execute(text(_OUTSIDE_DATES_SQL)).first()
    if outside is not None:
        return VerifyResult(
            False, result.entries, result.head_id, result.head_hash, None,
            f"account {outside[0]} has postings outside its dates ({outside[1]} to {outside[2] or 'open'})",
        )
    if projections is not None:
        problem = projections(session)
        if problem is not None:
            return VerifyResult(False, result.entries, result.head_id, result.head_hash, None, problem)
    return result


@contextmanager
def _driver_rows(connection: Connection, name: str, sql: str) -> Iterator[Iterator[tuple]]:
    """Yield the rows of ``sql`` as the driver's own tuples, fetched a batch at a time.

    The driver's cursor, not SQLAlchemy's result: wrapping each of a million rows in a Row
    (and, with a Date column, parsing SQLite's date text) cost more than the checks. On
    PostgreSQL the cursor is a named (server-side) one, so rows stream instead of arriving
    all at once; dates there come back as ``date`` objects, on SQLite as ISO text, and the
    checks below work with either.
    """
    driver = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        cursor = driver.cursor(name=f"jiebang_verify_{name}")
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(sql)
        yield chain.from_iterable(iter(partial(cursor.fetchmany, STREAM_BATCH), []))
    finally:
        cursor.close()


def _with_legs(entries: Iterator[tuple], legs: Iterator[tuple]) -> Iterator[tuple[tuple, list[tuple]]]:
    """Pair each entry row with its leg rows; both streams are ordered by entry id.

    Legs whose entry is not in the journal are passed over here; ``verify`` names them once
    the chain has held.
    """
    groups = groupby(legs, itemgetter(0))
    group = next(groups, None)
    for entry in entries:
        entry_id = entry[0]
        while group is not None and group[0] < entry_id:
            group = next(groups, None)
        if group is not None and group[0] == entry_id:
            yield entry, list(group[1])
            group = next(groups, None)
        else:
            yield entry, []


def _walk(session, entries, progress, *, after_id: int = 0, after_hash: str = GENESIS_HASH) -> VerifyResult:
    """Check each entry in id order against its predecessor; stop at the first that fails.
    ``after_id`` / ``after_hash``: where the walk starts (the genesis, or a checkpoint)."""
    expected_prev = after_hash
    expected_id = after_id + 1
    count = 0

    def fail(entry_id: int, problem: str) -> VerifyResult:
        return VerifyResult(False, count, expected_id - 1, expected_prev, entry_id, problem)

    for entry, legs in entries:
        (entry_id, value_date, kind, project_code, voucher, memo, actor, rules_version, trace, reverses_id,
         recorded_digest, prev_hash, entry_hash, facts) = entry
        if entry_id != expected_id:
            return fail(
                expected_id,
                f"entry {expected_id} is missing: the journal jumps from entry {expected_id - 1} to entry {entry_id}",
            )
        if prev_hash != expected_prev:
            return fail(entry_id, f"entry {entry_id} does not follow entry {entry_id - 1}: its prev_hash differs from that entry's hash")
        problem = _legs_problem(entry_id, value_date, legs)
        if problem is not None:
            return fail(entry_id, problem)
        digest = content_hash(
            value_date=value_date,
            kind=kind,
            project_code=project_code,
            voucher=voucher,
            memo=memo,
            rules_version=rules_version,
            trace_text=trace,
            reverses_id=reverses_id,
            postings=[leg[1:6] for leg in legs],
            facts_text=facts,
        )
        if digest != recorded_digest:
            shown = f" {voucher}" if voucher else ""
            return fail(entry_id, f"entry {entry_id} ({kind}{shown}) was altered after posting: its content no longer matches its recorded digest")
        if chain_hash(entry_id, digest, actor, expected_prev) != entry_hash:
            return fail(entry_id, f"entry {entry_id} ({kind}) has a hash that does not match its content and predecessor")
        expected_prev = entry_hash
        expected_id += 1
        count += 1
        if progress is not None and count % STREAM_BATCH == 0:
            progress(STREAM_BATCH)
    head = session.execute(select(ChainHead.last_entry_id, ChainHead.last_hash).where(ChainHead.id == 1)).one()
    last = expected_id - 1
    if head.last_entry_id != last or head.last_hash != expected_prev:
        return fail(
            min(head.last_entry_id, last + 1) or 1,
            f"the chain head records entry {head.last_entry_id} as last, but the journal ends at entry {last}",
        )
    return VerifyResult(True, count, last, expected_prev)


def _legs_problem(entry_id: int, value_date: dt.date | str, legs: list[tuple]) -> str | None:
    """What is wrong with an entry's postings, checked leg by leg in posting order, or None.

    Dates are compared as the driver returns them (ISO text on SQLite, ``date`` on
    PostgreSQL); either prints as YYYY-MM-DD.
    """
    sums: dict[str, int] = {}
    for _, book, account, amount, _, _, account_book, posting_date in legs:
        if book != account_book:
            return f"entry {entry_id} posts to {account} in the {book} book, but the account is in the {account_book} book"
        if posting_date != value_date:
            return f"entry {entry_id} has a posting dated {posting_date}, not its date {value_date}"
        sums[book] = sums.get(book, 0) + amount
    if len(legs) == 1:
        return f"entry {entry_id} has a single posting; an entry needs none or at least two"
    for book, amount in sorted(sums.items()):
        if amount != 0:
            return f"entry {entry_id} does not balance in the {book} book: its postings sum to {format_fen(amount)}"
    return None


def entry_count(session: Session) -> int:
    return session.execute(select(func.count()).select_from(JournalEntry)).scalar_one()


# --- checkpoints: verify once, then only what came after -----------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A chain position a full verification found sound: entry id, its chain hash, entries read."""

    entry_id: int
    hash: str
    entries: int


def record_checkpoint(session: Session, result: VerifyResult, *, actor: str) -> Checkpoint:
    """Record the head a full verification that passed ended at (``verify --checkpoint``)."""
    from ledger.core.models import VerifyCheckpoint

    if not result.ok or result.head_id < 1:
        raise ValueError("only a passed verification of a non-empty ledger is a checkpoint")
    session.add(VerifyCheckpoint(entry_id=result.head_id, hash=result.head_hash, entries=result.entries, recorded_by=actor[:80]))
    session.flush()
    return Checkpoint(result.head_id, result.head_hash, result.entries)


def latest_checkpoint(session: Session, *, at_most: int | None = None) -> Checkpoint | None:
    """The latest checkpoint (at or before entry ``at_most``), or None: one index probe."""
    from ledger.core.models import VerifyCheckpoint

    query = select(VerifyCheckpoint.entry_id, VerifyCheckpoint.hash, VerifyCheckpoint.entries)
    if at_most is not None:
        query = query.where(VerifyCheckpoint.entry_id <= at_most)
    row = session.execute(query.order_by(VerifyCheckpoint.entry_id.desc(), VerifyCheckpoint.id.desc()).limit(1)).first()
    return None if row is None else Checkpoint(int(row.entry_id), row.hash, int(row.entries))


def verify_since(session: Session, checkpoint: Checkpoint) -> VerifyResult:
    """Verify only what came after ``checkpoint``: that the journal still holds the
    checkpoint's hash at its entry, then the chain, digests and per-book balances of every
    later entry, the chain head, and that no later posting lacks its entry. Time and memory
    grow with the entries after the checkpoint, not with the ledger. A change before the
    checkpoint that keeps the checkpoint's own hash (a consistent rewrite) is for a full
    ``verify`` with ``--anchor``; any other change before it, for a full ``verify``."""
    n = int(checkpoint.entry_id)
    at = session.execute(select(JournalEntry.hash).where(JournalEntry.id == n)).scalar()
    if at != checkpoint.hash:
        return VerifyResult(False, 0, n, checkpoint.hash, n,
                            f"entry {n} no longer has the hash the checkpoint recorded; run a full verify")
    connection = session.connection()
    entries_sql = _ENTRIES_SQL.replace(" ORDER BY id", f" WHERE id > {n} ORDER BY id")
    legs_sql = _LEGS_SQL.replace(" ORDER BY p.entry_id", f" WHERE p.entry_id > {n} ORDER BY p.entry_id")
    with _driver_rows(connection, "entries", entries_sql) as entries, _driver_rows(connection, "legs", legs_sql) as legs:
        result = _walk(session, _with_legs(entries, legs), None, after_id=n, after_hash=checkpoint.hash)
    if not result.ok:
        return result
    has_entry = select(JournalEntry.id).where(JournalEntry.id == Posting.entry_id).exists()
    orphan = session.execute(select(func.min(Posting.entry_id)).where(Posting.entry_id > n, ~has_entry)).scalar()
    if orphan is not None:
        return VerifyResult(False, result.entries, result.head_id, result.head_hash, orphan,
                            f"postings exist for entry {orphan}, which is missing from the journal")
    return result
