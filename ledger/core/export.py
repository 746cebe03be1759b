"""Exporting each book as a beancount file: open directives, entries, exact balance assertions.

Each file opens ready for Fava: a title naming the ledger, the book (and the project) and the
cut-off, CNY as the operating currency, and amounts rendered with thousands separators.

The export streams the journal in chain order, so its memory does not grow with the ledger.
Balance assertions carry an explicit zero tolerance (``~ 0.00``) because beancount otherwise
accepts ±0.01 on a two-decimal amount.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from ledger.core.balances import account_balances
from ledger.core.models import BOOKS, Account, JournalEntry, Posting
from ledger.core.money import format_fen
from ledger.core.progress import counted

CURRENCY = "CNY"
BOOK_NAMES = {"fiscal": "财务账 fiscal book", "memo": "备查账 memo book"}


def book_postings(session: Session, book: str, *, as_of: dt.date | None = None, where=None):
    """Stream one book's postings with their entry's fields, in date and chain order.

    Both exports (beancount and ledger-cli) write from this one stream.
    """
    entries = (
        select(
            JournalEntry.id,
            JournalEntry.value_date,
            JournalEntry.kind,
            JournalEntry.voucher,
            JournalEntry.memo,
            JournalEntry.project_code,
            JournalEntry.reverses_id,
            JournalEntry.hash,
            Account.name,
            Posting.amount_fen,
        )
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(Account, Account.id == Posting.account_id)
        .where(Posting.book == book)
        .order_by(JournalEntry.value_date, JournalEntry.id, Posting.id)
    )
    if as_of:
        entries = entries.where(JournalEntry.value_date <= as_of)
    if where is not None:
        entries = entries.where(where)
    return session.execute(entries, execution_options={"yield_per": 10_000})


def _quote(text: str | None) -> str:
    value = (text or "").replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
    return f'"{value}"'


def posting_count(session: Session, *, as_of: dt.date | None = None, project_code: str | None = None) -> int:
    """How many postings an export writes (both books): the total of its progress bar."""
    query = select(func.count()).select_from(Posting).join(JournalEntry, JournalEntry.id == Posting.entry_id)
    if as_of:
        query = query.where(JournalEntry.value_date <= as_of)
    if project_code:
        query = query.where(_project_entries(project_code))
    return int(session.execute(query).scalar_one())


def export_beancount(
    session: Session,
    out_dir: Path,
    *,
    as_of: dt.date | None = None,
    project_code: str | None = None,
    title: str = "jiebang",
    progress=None,
) -> list[Path]:
    """Write ``<book>.beancount`` for each book (of one project if given); return the paths.
    ``progress(n)`` is called as postings are written (``posting_count`` in all)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    suffix = f"-{project_code}" if project_code else ""
    for book in BOOKS:
        path = out_dir / f"{book}{suffix}.beancount"
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            for line in beancount_lines(session, book, as_of=as_of, project_code=project_code, title=title, progress=progress):
                handle.write(line)
                handle.write("\n")
        written.append(path)
    return written


def _project_entries(project_code: str):
    """The entries of a project's extract: its own, and any other entry that posts to one of
    its accounts (a release of another project offset against this project's clawback), so
    that the balance assertions on the project's accounts hold."""
    own_accounts = (
        select(Posting.entry_id)
        .join(Account, Account.id == Posting.account_id)
        .where(Account.project_code == project_code)
    )
    # A UNION of two indexed lookups, not an OR, so the planner can start from the few ids.
    return JournalEntry.id.in_(union(select(JournalEntry.id).where(JournalEntry.project_code == project_code), own_accounts))


def _title(session: Session, book: str, *, title: str, as_of: dt.date | None, in_extract, project_code: str | None) -> str:
    """"jiebang 财务账 fiscal book 项目 project JM2024-001 截至 as of 2027-02-28": the cut-off is
    the as-of date, or without one the date of the book's last entry in the file."""
    parts = [title, BOOK_NAMES.get(book, f"{book} book")]
    if project_code:
        parts.append(f"项目 project {project_code}")
    if as_of is None:
        last = select(func.max(JournalEntry.value_date)).join(Posting, Posting.entry_id == JournalEntry.id).where(Posting.book == book)
        if in_extract is not None:
            last = last.where(in_extract)
        as_of = session.execute(last).scalar()
    parts.append(f"截至 as of {as_of.isoformat()}" if as_of else "无分录 no entries")
    return " ".join(parts)


def beancount_lines(
    session: Session,
    book: str,
    *,
    as_of: dt.date | None = None,
    project_code: str | None = None,
    title: str = "jiebang",
    progress=None,
):
    """Yield the lines of one book's beancount file."""
    in_extract = _project_entries(project_code) if project_code else None
    yield f'option "title" {_quote(_title(session, book, title=title, as_of=as_of, in_extract=in_extract, project_code=project_code))}'
    yield f'option "operating_currency" "{CURRENCY}"'
    yield 'option "render_commas" "TRUE"'
    yield ""

    accounts = select(Account.name, Account.opened_on, Account.closed_on).where(Account.book == book)
    if project_code:
        # A project's extract holds the project's accounts and the shared accounts its
        # entries touch, so every transaction in it still balances.
        touched = (
            select(Posting.account_id)
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .where(in_extract)
        )
        if as_of:
            # Only entries the extract holds: a later entry must not add an open directive
            # (year accounts open a year early, so their opening date alone does not exclude them).
            touched = touched.where(Posting.value_date <= as_of)
        accounts = accounts.where(Account.id.in_(touched))
    if as_of:
        accounts = accounts.where(Account.opened_on <= as_of)
    closed: list[tuple[dt.date, str]] = []
    opened: set[str] = set()
    first_open: dt.date | None = None
    for row in session.execute(accounts.order_by(Account.opened_on, Account.name)):
        yield f"{row.opened_on.isoformat()} open {row.name} {CURRENCY}"
        opened.add(row.name)
        first_open = first_open or row.opened_on
        if row.closed_on is not None and (as_of is None or row.closed_on <= as_of):
            closed.append((row.closed_on, row.name))
    yield ""

    last_date = None
    current = None
    for row in counted(book_postings(session, book, as_of=as_of, where=in_extract if project_code else None), progress):
        if row.id != current:
            if current is not None:
                yield ""
            current = row.id
            last_date = row.value_date
            yield f"{row.value_date.isoformat()} * {_quote(row.kind)} {_quote(row.memo)}"
            yield f"  entry-id: {row.id}"
            yield f"  kind: {_quote(row.kind)}"
            if row.voucher:
                yield f"  voucher: {_quote(row.voucher)}"
            if row.project_code:
                yield f"  project: {_quote(row.project_code)}"
            if row.reverses_id:
                yield f"  reverses: {row.reverses_id}"
            yield f"  hash: {_quote(row.hash)}"
        yield f"  {row.name}  {format_fen(row.amount_fen)} {CURRENCY}"
    yield ""

    for closed_on, name in sorted(closed):
        yield f"{closed_on.isoformat()} close {name}"
    basis = as_of or last_date or first_open
    if basis is None:
        return
    assert_date = basis + dt.timedelta(days=1)
    closed_names = {name for _, name in closed}
    # In a project's extract only the project's own accounts are asserted: shared accounts
    # (the treasury, the appropriation) carry other projects' money too.
    balances = account_balances(session, as_of=as_of, book=book, project_code=project_code, include_zero=True)
    for balance in balances:
        if balance.account in closed_names or balance.account not in opened:
            continue
        yield f"{assert_date.isoformat()} balance {balance.account} {format_fen(balance.balance_fen)} ~ 0.00 {CURRENCY}"
