"""The journal's tables: accounts, journal entries, postings and the chain head (the core;
the programme's tables are in ``ledger.programme.models``, on the same ``Base.metadata``).

Amounts are whole fen in BigInteger columns (SQLite has no exact decimal). Entry ids are
assigned by the posting service from the chain head under a lock, so they are gapless and
give the hash chain its order on every backend.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The alembic naming convention, so constraint names are stable across backends.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BOOKS = ("fiscal", "memo")
ACCOUNT_TYPES = ("Assets", "Liabilities", "Equity", "Income", "Expenses")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Account(Base):
    """A ledger account in one book.

    Attributes:
      name: a beancount-valid account name, e.g. ``Assets:Fiscal:Advances:JM2025-003``.
      book: ``fiscal`` (where the money is) or ``memo`` (commitments, 备查).
      type: the root of the name: Assets, Liabilities, Equity, Income or Expenses.
      project_code: the project the account belongs to, if any.
      lane: the solver lane (USCC) inside the project, if any.
      opened_on / closed_on: postings must fall inside this window.
    """

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    book: Mapped[str] = mapped_column(String(10))
    type: Mapped[str] = mapped_column(String(12))
    project_code: Mapped[str | None] = mapped_column(String(40), index=True)
    lane: Mapped[str | None] = mapped_column(String(40))
    opened_on: Mapped[dt.date] = mapped_column(Date)
    closed_on: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("book IN ('fiscal', 'memo')", name="book_known"),
        CheckConstraint(
            "type IN ('Assets', 'Liabilities', 'Equity', 'Income', 'Expenses')", name="type_known"
        ),
        CheckConstraint("closed_on IS NULL OR closed_on >= opened_on", name="closes_after_open"),
    )


class JournalEntry(Base):
    """One balanced journal entry: the record of one real-world event.

    Attributes:
      id: position in the hash chain, 1, 2, 3, ... without gaps.
      value_date: the business date the event takes effect (as-of queries use it).
      kind: the event kind, e.g. ``release`` or ``reversal``.
      voucher: the external voucher reference; unique per kind (idempotency key).
      content_hash: digest of the entry's content without chain fields; a retried voucher
        with the same content_hash returns the first entry.
      trace: JSON text of the calculation (inputs, formula, result) for computed amounts.
      reverses_id: the entry this one reverses; unique, so an entry is reversed at most once.
      prev_hash / hash: the chain: ``hash = sha256(canonical content + prev_hash)``.
      facts: the event's business facts as canonical JSON (part of the hashed content).
    """

    __tablename__ = "journal_entries"

    # On SQLite the id is the rowid (INTEGER PRIMARY KEY): one b-tree, not a table and an index.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    value_date: Mapped[dt.date] = mapped_column(Date, index=True)
    kind: Mapped[str] = mapped_column(String(40))
    project_code: Mapped[str | None] = mapped_column(String(40))
    voucher: Mapped[str | None] = mapped_column(String(120))
    memo: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(80))
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    rules_version: Mapped[str | None] = mapped_column(String(60))
    trace: Mapped[str | None] = mapped_column(Text)
    reverses_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("journal_entries.id"))
    content_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    # Not a unique index: each hash covers its id and its predecessor, and verify recomputes
    # them all (migration 20261201_0004 says why the index went).
    hash: Mapped[str] = mapped_column(String(64))
    # The event's business facts (canonical JSON), hashed with the entry; the programme
    # tables are their projection (ledger.programme.projection). NULL for entries that carry none.
    facts: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("kind", "voucher", name="uq_journal_entries_kind_voucher"),
        # Partial indexes: most bulk entries reverse nothing and many name no project.
        Index(
            "uq_journal_entries_reverses_id", "reverses_id", unique=True,
            sqlite_where=text("reverses_id IS NOT NULL"), postgresql_where=text("reverses_id IS NOT NULL"),
        ),
        Index(
            "ix_journal_entries_with_facts", "id",
            sqlite_where=text("facts IS NOT NULL"), postgresql_where=text("facts IS NOT NULL"),
        ),
        Index(
            "ix_journal_entries_project_code", "project_code",
            sqlite_where=text("project_code IS NOT NULL"), postgresql_where=text("project_code IS NOT NULL"),
        ),
        CheckConstraint("id >= 1", name="id_positive"),
        CheckConstraint("reverses_id IS NULL OR reverses_id < id", name="reverses_earlier"),
    )


class Posting(Base):
    """One leg of an entry: an amount in fen to one account in one book.

    Attributes:
      amount_fen: positive is a debit, negative a credit (beancount's sign convention).
      book: copied from the account so the per-book balance check is one GROUP BY.
      budget_category: equipment / business / labour / indirect where it applies.
      fund_source: city_fiscal / self_funded / bid / ... where it applies.
    """

    __tablename__ = "postings"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # Postings are written before their entry row, which seals them (see the migration's
    # triggers), so the reference is checked at commit.
    entry_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("journal_entries.id", deferrable=True, initially="DEFERRED")
    )
    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("accounts.id"))
    # Copied from the entry (the seal trigger checks it) so as-of balances need no join.
    value_date: Mapped[dt.date] = mapped_column(Date)
    book: Mapped[str] = mapped_column(String(10))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    budget_category: Mapped[str | None] = mapped_column(String(20))
    fund_source: Mapped[str | None] = mapped_column(String(20))

    __table_args__ = (
        CheckConstraint("amount_fen <> 0", name="amount_nonzero"),
        CheckConstraint("book IN ('fiscal', 'memo')", name="book_known"),
        Index("ix_postings_entry", "entry_id"),
        Index("ix_postings_account_date", "account_id", "value_date", "amount_fen"),
    )


class VerifyCheckpoint(Base):
    """A chain position a full verification found sound (``jiebang verify --checkpoint``).

    Attributes:
      entry_id / hash: the chain head the verification ended at.
      entries: how many entries it read.
      recorded_by / recorded_at: who asked, and the database's clock (never printed in a
        document, whose bytes must not depend on when it was made).
    """

    __tablename__ = "verify_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(BigInteger, index=True)
    hash: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int] = mapped_column(BigInteger)
    recorded_by: Mapped[str] = mapped_column(String(80))
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint("entry_id >= 1", name="entry_id_positive"),)


class ChainHead(Base):
    """The single row holding the chain's last entry id and hash.

    Writers lock this row (SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE
    serialises writers already), which orders concurrent posts into one chain.
    """

    __tablename__ = "chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_entry_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


GENESIS_HASH = "0" * 64
