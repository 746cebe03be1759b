"""import speed: an index on projects.entry_id; PostgreSQL's journal triggers probe indexes

Revision ID: 20261206_0013
Revises: 20261206_0012
Create Date: 2026-12-05 05:00:00.000000

An import writes a file's entries a few at a time (whatever it buffered before the next
statement it needs), and each write cost more the larger the ledger:

* On SQLite, a journal entry is written after its postings, whose deferred foreign key to it
  is outstanding until then; SQLite then looks for the rows of every table whose deferred
  foreign key names the new entry, to settle them. ``projects.entry_id`` had no index, so
  every entry written scanned the projects table (measured on 20,000 synthetic entries:
  0.13 s with 100 projects, 1.13 s with 2,000; 0.08 s with the index, either way). The index
  is made on PostgreSQL too, so that both schemas stay the same.
* On PostgreSQL, the statement-level checks of the postings (sealed entry, book of the
  account) and of the entries (balance, dates) run over each COPY's rows with a plan
  PL/pgSQL caches; a plan that joins by scanning the accounts or the postings costs a scan
  of the table per COPY. Like 0011's trigger, the two functions now run with
  ``enable_seqscan = off``: index probes for the rows of the COPY, whatever its size.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261206_0013'
down_revision = '20261206_0012'
branch_labels = None
depends_on = None

SET_FUNCTIONS = ("jiebang_postings_seal_set", "jiebang_entries_balance")


def upgrade() -> None:
    op.create_index("ix_projects_entry_id", "projects", ["entry_id"])
    if op.get_bind().dialect.name == "postgresql":
        s = _schema()
        for name in SET_FUNCTIONS:
            op.execute(f"ALTER FUNCTION {s}.{name}() SET enable_seqscan = off")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        s = _schema()
        for name in SET_FUNCTIONS:
            op.execute(f"ALTER FUNCTION {s}.{name}() RESET enable_seqscan")
    op.drop_index("ix_projects_entry_id", table_name="projects")


def _schema() -> str:
    schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    return '"' + schema.replace('"', '""') + '"'
