"""Guards on entries that did not come from a service: money out is defined by accounts.

``post --file`` (and any service) can carry any kind label; what pays fiscal money out is
what the postings do, not the label. An entry pays money out when it credits a funding
account (``Income:Fiscal:Funding:*``) or debits an advances (``Assets:Fiscal:Advances:*``),
subsidy payable (``Liabilities:Fiscal:SubsidyPayable:*``) or write-off
(``Expenses:Fiscal:WriteOffs:*``) account. While the ledger requires approval such an entry
needs an approved request: the services get one through ``jiebang approve``; a file never
carries one, so a file that pays money out is refused whole (PostgreSQL's deferred trigger,
migration 20261205_0007, refuses the same by the same accounts, whoever inserts the rows).

And whatever the path, a lane's advances (``Assets:Fiscal:Advances:P:Ln``) never exceed what
was released to it (``Assets:Memo:Grant:Released:P:Ln``), counting the file's own postings:
``check_advances_bound`` before posting, PostgreSQL's deferred trigger (migration
20261205_0011) at commit, and ``verify`` at every entry of the chain (``advances_problem``).

The core's bulk path does not import the programme: the CLI calls ``check_entries`` here
with the file's entries before posting them, in the same transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.core.errors import Refusal
from ledger.core.models import Account, Posting
from ledger.core.money import format_fen
from ledger.programme import chart

# (account name prefix, sign of the posting that pays out: +1 debit, -1 credit). Must equal
# MONEY_OUT_SQL in migrations/versions/20261205_0007_pg_guards.py.
MONEY_OUT_FAMILIES = (
    ("Income:Fiscal:Funding:", -1),
    ("Assets:Fiscal:Advances:", 1),
    ("Liabilities:Fiscal:SubsidyPayable:", 1),
    ("Expenses:Fiscal:WriteOffs:", 1),
)

ADVANCES = chart.FAMILIES["advances"]
RELEASED = chart.FAMILIES["grant_released"]

# One entry as the guards see it: its kind, voucher and (account name, amount in fen) legs.
Entry = tuple[str, str | None, list[tuple[str, int]]]


SUBSIDY_PAYABLE = chart.FAMILIES["subsidy_payable"]
SUBSIDY_EXPENSE = chart.FAMILIES["subsidy_expense"]


def money_out_leg(postings: Iterable[tuple[str, int]]) -> tuple[str, int] | None:
    """The first leg that pays fiscal money out, or None.

    A subsidy payable debited against the same entry's credit to subsidy expense is a
    forfeit (a stopped lane's accrual undone), not a payment: only the excess counts.
    """
    postings = list(postings)
    paid, forfeited, first_paid = 0, 0, None
    for account, amount in postings:
        if account.startswith(SUBSIDY_PAYABLE) and amount > 0:
            paid += amount
            first_paid = first_paid or (account, amount)
            continue
        if account.startswith(SUBSIDY_EXPENSE) and amount < 0:
            forfeited -= amount
        for prefix, sign in MONEY_OUT_FAMILIES:
            if account.startswith(prefix) and amount * sign > 0:
                return account, amount
    return first_paid if paid > forfeited else None


def check_money_out(session: Session, kind: str, voucher: str | None, postings: Iterable[tuple[str, int]]) -> None:
    """Refuse an entry that pays money out while approval is required (no request stands behind it)."""
    leg = money_out_leg(postings)
    if leg is None:
        return
    from ledger.programme.approvals import requires_approval

    if requires_approval(session):
        account, amount = leg
        side = "credits" if amount < 0 else "debits"
        raise Refusal(
            "money_out_must_be_approved",
            f"{kind} entry {voucher or ''} {side} {account} by {format_fen(abs(amount))}: it pays fiscal money out, "
            "and while approval is required money out is posted only by an approved request; "
            "record it with jiebang release, write-off or terminate and have an approver approve it.",
        )


def check_entries(session: Session, entries: list[Entry]) -> None:
    """Check a file's entries before they are posted: money out, then the advances bound."""
    for kind, voucher, postings in entries:
        check_money_out(session, kind, voucher, postings)
    check_advances_bound(session, [leg for _k, _v, postings in entries for leg in postings])


def _lane_key(account: str, prefix: str) -> str | None:
    """``P:Ln`` of a chart lane account with ``prefix``, or None."""
    if not account.startswith(prefix):
        return None
    rest = account[len(prefix):]
    return rest if rest.count(":") == 1 else None


def check_advances_bound(session: Session, legs: list[tuple[str, int]]) -> None:
    """Refuse when a lane's advances would exceed what was released to it."""
    advances: dict[str, int] = defaultdict(int)
    released: dict[str, int] = defaultdict(int)
    for account, amount in legs:
        if (lane := _lane_key(account, ADVANCES)) is not None:
            advances[lane] += amount
        elif (lane := _lane_key(account, RELEASED)) is not None:
            released[lane] += amount
    raised = sorted(lane for lane, change in advances.items() if change > 0)
    if not raised:
        return
    names = [ADVANCES + lane for lane in raised] + [RELEASED + lane for lane in raised]
    stored = dict(
        session.execute(
            select(Account.name, func.coalesce(func.sum(Posting.amount_fen), 0))
            .select_from(Account).outerjoin(Posting, Posting.account_id == Account.id)
            .where(Account.name.in_(names)).group_by(Account.name)
        ).all()
    )
    for lane in raised:
        after = int(stored.get(ADVANCES + lane, 0)) + advances[lane]
        cap = int(stored.get(RELEASED + lane, 0)) + released[lane]
        if after > cap:
            project, lane_no = lane.split(":")
            raise Refusal(
                "advances_must_not_exceed_released",
                f"advances of {project} lane {lane_no[1:]} would be {format_fen(after)} but {format_fen(cap)} was released "
                f"to it (over by {format_fen(after - cap)}): a lane's advances never exceed its releases; "
                "release the money with jiebang release, or correct the file.",
            )


def check_drafts(session: Session, drafts) -> None:
    """``check_entries`` for ``EntryDraft`` objects (a JSON file)."""
    check_entries(session, [(d.kind, d.voucher, [(p.account, p.amount_fen) for p in d.postings]) for d in drafts])


def check_batch(session: Session, batch) -> None:
    """``check_entries`` for a CSV column batch (``ledger.core.bulk.CsvBatch``), touching in
    Python only the postings to accounts the guards care about."""
    import numpy as np

    watched = [
        i for i, name in enumerate(batch.accounts)
        if name.startswith((ADVANCES, RELEASED, SUBSIDY_EXPENSE)) or any(name.startswith(prefix) for prefix, _sign in MONEY_OUT_FAMILIES)
    ]
    if not watched:
        return
    rows = np.flatnonzero(np.isin(batch.account, np.asarray(watched, dtype=batch.account.dtype)))
    by_entry: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for row in rows.tolist():
        by_entry[int(batch.entry[row])].append((batch.accounts[int(batch.account[row])], int(batch.amount_fen[row])))
    check_entries(session, [(batch.kind[e], batch.voucher[e], legs) for e, legs in sorted(by_entry.items())])


def advances_problem(session: Session) -> str | None:
    """The first entry after which a lane's advances exceeded what was released to it, or None.

    One aggregate query over the postings of the two lane families (releases and spends, not
    the whole ledger), then a running total per lane in chain order.
    """
    rows = session.execute(
        select(Account.name, Posting.entry_id, func.sum(Posting.amount_fen))
        .join(Posting, Posting.account_id == Account.id)
        .where(Account.name.startswith(ADVANCES) | Account.name.startswith(RELEASED))
        .group_by(Account.name, Posting.entry_id)
        .order_by(Posting.entry_id, Account.name)
    )
    advances: dict[str, int] = defaultdict(int)
    released: dict[str, int] = defaultdict(int)
    touched: set[str] = set()
    current = None

    def _over() -> str | None:
        for lane in sorted(touched):
            if advances[lane] > released[lane]:
                project, lane_no = lane.split(":")
                return (f"entry {current} raised the advances of {project} lane {lane_no[1:]} to "
                        f"{format_fen(advances[lane])} but {format_fen(released[lane])} was released to it "
                        "(a lane's advances never exceed its releases)")
        return None

    for name, entry_id, amount in rows:
        if entry_id != current:
            if (problem := _over()) is not None:
                return problem
            touched.clear()
            current = entry_id
        if (lane := _lane_key(name, ADVANCES)) is not None:
            advances[lane] += int(amount)
            touched.add(lane)
        elif (lane := _lane_key(name, RELEASED)) is not None:
            released[lane] += int(amount)
            touched.add(lane)
    return _over()
