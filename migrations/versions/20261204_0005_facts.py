"""facts: the business facts of each event in the hashed journal entry; accounts immutable

Revision ID: 20261204_0005
Revises: 20261201_0004
Create Date: 2026-12-04 23:30:00.000000

* ``journal_entries.facts`` holds an event's business facts as canonical JSON (a party, an
  approval with its lanes, tranches and pinned rules, a stage result, the accounts the entry
  opens ...). It is part of the entry's hashed content, and the programme tables are folded
  from it (``ledger.programme.projection``), so ``verify`` can rebuild them and compare. Entries
  posted before this revision have no facts and keep their digests; ``jiebang init`` records
  the programme state they left as one hashed snapshot entry right after this upgrade.
* ``projects.rules_fingerprint`` pins each project to the SHA-256 of its rules file's
  canonical content; projects that exist at the upgrade are pinned to their file as it is.
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
    # verify folds the entries that carry facts; most bulk entries carry none.
    op.create_index(
        "ix_journal_entries_with_facts", "journal_entries", ["id"],
        sqlite_where=sa.text("facts IS NOT NULL"), postgresql_where=sa.text("facts IS NOT NULL"),
    )
    op.add_column("projects", sa.Column("rules_fingerprint", sa.String(length=64), nullable=True))
    _pin_existing_projects()
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


def _pin_existing_projects() -> None:
    """Pin each existing project to the content of its rules file as it is at the upgrade
    (the ``jiebang init`` that follows records this in the snapshot entry). A version whose
    file cannot be found stays unpinned (NULL) and is loaded as before."""
    from funding_rules.loader import fingerprints

    bind = op.get_bind()
    versions = [v for (v,) in bind.execute(sa.text("SELECT DISTINCT rules_version FROM projects"))]
    if not versions:
        return
    known = fingerprints()
    sqlite = bind.dialect.name == "sqlite"
    # The projects table is insert-only; its guard is lifted for this one statement per version.
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS projects_no_update")
    else:
        op.execute("ALTER TABLE projects DISABLE TRIGGER projects_append_only")
    for version in versions:
        if version in known:
            bind.execute(
                sa.text("UPDATE projects SET rules_fingerprint = :f WHERE rules_version = :v"),
                {"f": known[version], "v": version},
            )
    if sqlite:
        op.execute(
            "CREATE TRIGGER projects_no_update BEFORE UPDATE ON projects BEGIN SELECT RAISE(ABORT, "
            "'projects is insert-only: UPDATE is refused; record a new event instead'); END"
        )
    else:
        op.execute("ALTER TABLE projects ENABLE TRIGGER projects_append_only")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS accounts_no_update")
        op.execute("DROP TRIGGER IF EXISTS accounts_no_delete")
        # SQLite (3.35+) drops a column in place: no table rebuild, the entries' triggers stay.
        op.execute("DROP INDEX IF EXISTS ix_journal_entries_with_facts")
        op.execute("ALTER TABLE journal_entries DROP COLUMN facts")
        op.execute("DROP TRIGGER IF EXISTS projects_no_update")
        op.execute("ALTER TABLE projects DROP COLUMN rules_fingerprint")
        op.execute(
            "CREATE TRIGGER projects_no_update BEFORE UPDATE ON projects BEGIN SELECT RAISE(ABORT, "
            "'projects is insert-only: UPDATE is refused; record a new event instead'); END"
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS accounts_append_only ON accounts")
        op.execute("DROP TRIGGER IF EXISTS accounts_no_truncate ON accounts")
        op.execute("DROP FUNCTION IF EXISTS jiebang_accounts_guard()")
        op.drop_index("ix_journal_entries_with_facts", table_name="journal_entries")
        op.drop_column("journal_entries", "facts")
        op.drop_column("projects", "rules_fingerprint")
