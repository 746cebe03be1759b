"""facts: the business facts of each event in the hashed journal entry; accounts immutable

Revision ID: 20261204_0005
Revises: 20261201_0004
Create Date: 2026-12-04 23:30:00.000000

* ``journal_entries.facts`` holds an event's business facts as canonical JSON (a party, an
  approval with its lanes, tranches and pinned rules, a stage result, the accounts the entry
  opens ...). It is part of the entry's hashed content, and the programme tables are folded
  from it (``ledger.projection``), so ``verify`` can rebuild them and compare. Entries
  posted before this revision have no facts and keep their digests; ``jiebang init`` records
  the programme state they left as one hashed snapshot entry right after this upgrade.
* ``accounts`` becomes insert-only like the journal: name, book, type, project, lane and
  opening date are fixed when an account is opened; the one change allowed is closing it,
  once (``closed_on`` from NULL to a date). ``verify`` checks every posting against both dates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261204_0005'
down_revision = '20261201_0004'
branch_labels = None
depends_on = None


_SAME = ("id", "name", "book", "type", "project_code", "lane", "opened_on", "created_at")


def upgrade() -> None:
    op.add_column("journal_entries", sa.Column("facts", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        unchanged = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in _SAME)
        op.execute(
            "CREATE TRIGGER accounts_no_update BEFORE UPDATE ON accounts "
            f"WHEN NOT ({unchanged} AND OLD.closed_on IS NULL AND NEW.closed_on IS NOT NULL) "
            "BEGIN SELECT RAISE(ABORT, 'accounts are insert-only: an account is only ever closed, once; "
            "open a new account instead'); END"
        )
        op.execute(
            "CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts BEGIN SELECT RAISE(ABORT, "
            "'accounts are insert-only: DELETE is refused; open a new account instead'); END"
        )
        return
    unchanged = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in _SAME)
    op.execute(
        "CREATE FUNCTION jiebang_accounts_guard() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        f"  IF TG_OP = 'UPDATE' AND {unchanged} AND OLD.closed_on IS NULL AND NEW.closed_on IS NOT NULL THEN\n"
        "    RETURN NEW;\n"
        "  END IF;\n"
        "  RAISE EXCEPTION 'accounts are insert-only: % of an account is refused (an account is only ever closed, once)',"
        " TG_OP USING ERRCODE = 'integrity_constraint_violation';\n"
        "END $$"
    )
    op.execute(
        "CREATE TRIGGER accounts_append_only BEFORE UPDATE OR DELETE ON accounts "
        "FOR EACH ROW EXECUTE FUNCTION jiebang_accounts_guard()"
    )
    op.execute(
        "CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts "
        "FOR EACH STATEMENT EXECUTE FUNCTION jiebang_refuse_change()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS accounts_no_update")
        op.execute("DROP TRIGGER IF EXISTS accounts_no_delete")
        # SQLite (3.35+) drops a column in place: no table rebuild, the entries' triggers stay.
        op.execute("ALTER TABLE journal_entries DROP COLUMN facts")
    else:
        op.execute("DROP TRIGGER IF EXISTS accounts_append_only ON accounts")
        op.execute("DROP TRIGGER IF EXISTS accounts_no_truncate ON accounts")
        op.execute("DROP FUNCTION IF EXISTS jiebang_accounts_guard()")
        op.drop_column("journal_entries", "facts")
