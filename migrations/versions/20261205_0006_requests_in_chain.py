"""requests in chain: each maker–checker request is recorded by a fact journal entry

Revision ID: 20261205_0006
Revises: 20261204_0005
Create Date: 2026-12-05 10:00:00.000000

* ``requests.entry_id`` is the fact entry (kind ``request``) whose hashed facts hold the
  request; decisions ride in the facts of the entry they post. The ``requests`` table is
  then a projection of the journal like the other programme tables, and ``verify`` folds
  and compares it (``ledger.programme.projection``). A unique index keeps one request per
  entry.
* Requests that exist at the upgrade have no entry (NULL); ``jiebang init`` records them in
  one hashed snapshot entry right after this upgrade.
* The guard triggers of 20261123_0003 are unchanged: a request is insert-only except its
  one decision. SQLite rebuilds the table to add the foreign key; its triggers are read
  before and created again after, as they were.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261205_0006'
down_revision = '20261204_0005'
branch_labels = None
depends_on = None

_FK = "fk_requests_entry_id_journal_entries"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a named, deferrable foreign key only by rebuilding the table, which
        # drops its triggers: they are read first and created again exactly as they were.
        triggers = _sqlite_triggers()
        with op.batch_alter_table("requests", schema=None) as batch_op:
            batch_op.add_column(sa.Column("entry_id", sa.BigInteger(), nullable=True))
            batch_op.create_foreign_key(_FK, "journal_entries", ["entry_id"], ["id"], deferrable=True, initially="DEFERRED")
            batch_op.create_index("ix_requests_entry_id", ["entry_id"], unique=True)
        _recreate(triggers)
        return
    op.add_column("requests", sa.Column("entry_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(_FK, "requests", "journal_entries", ["entry_id"], ["id"], deferrable=True, initially="DEFERRED")
    op.create_index("ix_requests_entry_id", "requests", ["entry_id"], unique=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        triggers = _sqlite_triggers()
        with op.batch_alter_table("requests", schema=None) as batch_op:
            batch_op.drop_index("ix_requests_entry_id")
            batch_op.drop_constraint(_FK, type_="foreignkey")
            batch_op.drop_column("entry_id")
        _recreate(triggers)
        return
    op.drop_index("ix_requests_entry_id", table_name="requests")
    op.drop_constraint(_FK, "requests", type_="foreignkey")
    op.drop_column("requests", "entry_id")


def _sqlite_triggers() -> list[tuple[str, str]]:
    rows = op.get_bind().execute(
        sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'requests' ORDER BY name")
    )
    return [(name, sql) for name, sql in rows]


def _recreate(triggers: list[tuple[str, str]]) -> None:
    for name, sql in triggers:
        op.execute(f'DROP TRIGGER IF EXISTS "{name}"')
        op.execute(sql)
