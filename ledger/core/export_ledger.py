"""Exporting each book as a plain-text journal that hledger and ledger-cli both read.

One file per book (``fiscal.journal``, ``memo.journal``). The journal is streamed in
(value date, entry id) order, so memory does not grow with the ledger. Each entry becomes

    2025-03-28 * (江科拨〔2024〕21号) release
        ; entry-id: 17
        ; hash: 9f…
        Assets:Fiscal:Advances:JM2024-001      3000000.00 CNY
        Assets:Fiscal:Treasury                -3000000.00 CNY

and the file ends with one balance-assertion transaction dated the day after the last
entry (or after ``as_of``): a zero posting with ``= BALANCE`` per account. That form — an
explicit zero amount followed by ``= amount`` — is an assertion (not an assignment) in both
hledger and ledger-cli, and both check it exactly, so ``hledger -f fiscal.journal check``
and ``ledger -f fiscal.journal bal`` fail loudly if an exported figure is off by one fen.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.core.balances import account_balances
from ledger.core.export import book_postings
from ledger.core.models import BOOKS, Account
from ledger.core.money import format_fen
from ledger.core.progress import counted

CURRENCY = "CNY"


def _clean(text: str | None) -> str:
    """One line of text safe in a description or comment."""
    return " ".join((text or "").replace(";", ",").split())


def _code(voucher: str | None) -> str:
    if not voucher:
        return ""
    return "(" + _clean(voucher).replace("(", "[").replace(")", "]") + ") "


def export_ledger(
    session: Session,
    out_dir: Path,
    *,
    as_of: dt.date | None = None,
    title: str = "jiebang",
    progress=None,
) -> list[Path]:
    """Write ``<book>.journal`` for each book; return the paths. ``progress(n)`` is called as
    postings are written (``ledger.core.export.posting_count`` in all)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for book in BOOKS:
        path = out_dir / f"{book}.journal"
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            buffer: list[str] = []
            for line in ledger_lines(session, book, as_of=as_of, title=title, progress=progress):
                buffer.append(line)
                if len(buffer) >= 4096:
                    handle.write("\n".join(buffer))
                    handle.write("\n")
                    buffer.clear()
            if buffer:
                handle.write("\n".join(buffer))
                handle.write("\n")
        written.append(path)
    return written


def ledger_lines(session: Session, book: str, *, as_of: dt.date | None = None, title: str = "jiebang", progress=None):
    """Yield the lines of one book's hledger/ledger-cli journal."""
    yield f"; {title} {book} book" + (f" as of {as_of.isoformat()}" if as_of else "")
    yield f"; amounts in {CURRENCY} (yuan, two decimals); exported by `jiebang export ledger`"
    yield f"commodity 1,000.00 {CURRENCY}"
    yield ""
    accounts = select(Account.name).where(Account.book == book).order_by(Account.name)
    if as_of:
        accounts = accounts.where(Account.opened_on <= as_of)
    for (name,) in session.execute(accounts):
        yield f"account {name}"
    yield ""

    current = None
    last_date = None
    for row in counted(book_postings(session, book, as_of=as_of), progress):
        if row.id != current:
            if current is not None:
                yield ""
            current = row.id
            last_date = row.value_date
            memo = _clean(row.memo)
            yield f"{row.value_date.isoformat()} * {_code(row.voucher)}{row.kind}" + (f" | {memo}" if memo else "")
            yield f"    ; entry-id: {row.id}"
            if row.project_code:
                yield f"    ; project: {_clean(row.project_code)}"
            yield f"    ; hash: {row.hash}"
        yield f"    {row.name}  {format_fen(row.amount_fen)} {CURRENCY}"
    if current is not None:
        yield ""

    basis = as_of or last_date
    if basis is None:
        return
    balances = account_balances(session, as_of=as_of, book=book, include_zero=True)
    if not balances:
        return
    yield f"{(basis + dt.timedelta(days=1)).isoformat()} * balance assertions"
    yield "    ; every account's balance as recorded by jiebang"
    for balance in balances:
        yield f"    {balance.account}  0.00 {CURRENCY} = {format_fen(balance.balance_fen)} {CURRENCY}"
    yield ""
