"""journal indexes for bulk speed: no unique index on the chain hash, partial indexes, rowid ids on SQLite

Revision ID: 20261201_0004
Revises: 20261123_0003
Create Date: 2026-12-01 06:50:00.000000

Measured on 300,000 entries / 719,486 postings (bench/README.md): every entry row paid for
seven b-tree inserts. This revision keeps every guarantee and drops what bought none:

* ``UNIQUE (hash)``: each hash covers its entry id and its predecessor's hash, ids are the
  primary key, and ``verify`` recomputes every hash, so the index could only catch a
  SHA-256 collision. Its random 64-character keys were the single dearest index to insert
  into (+25% of insert CPU on SQLite).
* ``reverses_id`` stays unique (an entry is reversed at most once), through a partial
  unique index over the rows that reverse something; ``project_code`` is indexed only where
  it is set. Both answer the same queries (``x = ?`` implies ``x IS NOT NULL``).
* On SQLite the entry id becomes the rowid (``INTEGER PRIMARY KEY``): one b-tree instead of
  a table and a primary-key index, and the seal trigger's look-up becomes a rowid search.
  SQLite cannot drop a table constraint, so the table is rebuilt (rows copied in id order;
  triggers that name it are dropped and recreated around the rebuild). ``upgrade_to_head``
  runs SQLite migrations with foreign keys off and checks them before commit, as SQLite's
  documented table-rebuild procedure requires.
"""

from __future__ import annotations

from alembic import op

revision = '20261201_0004'
down_revision = '20261123_0003'
branch_labels = None
depends_on = None

ENTRY_COLUMNS = (
    "id, value_date, kind, project_code, voucher, memo, actor, recorded_at, rules_version, trace, "
    "reverses_id, content_hash, prev_hash, hash"
)


def _entries_table(name: str, *, rowid_id: bool, hash_unique: bool) -> str:
    return f"""CREATE TABLE {name} (
        id {'INTEGER' if rowid_id else 'BIGINT'} NOT NULL,
        value_date DATE NOT NULL,
        kind VARCHAR(40) NOT NULL,
        project_code VARCHAR(40),
        voucher VARCHAR(120),
        memo TEXT NOT NULL,
        actor VARCHAR(80) NOT NULL,
        recorded_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
        rules_version VARCHAR(60),
        trace TEXT,
        reverses_id BIGINT,
        content_hash VARCHAR(64) NOT NULL,
        prev_hash VARCHAR(64) NOT NULL,
        hash VARCHAR(64) NOT NULL,
        CONSTRAINT pk_journal_entries PRIMARY KEY (id),
        CONSTRAINT ck_journal_entries_id_positive CHECK (id >= 1),
        CONSTRAINT ck_journal_entries_reverses_earlier CHECK (reverses_id IS NULL OR reverses_id < id),
        CONSTRAINT fk_journal_entries_reverses_id_journal_entries FOREIGN KEY(reverses_id) REFERENCES journal_entries (id),
        {'CONSTRAINT uq_journal_entries_hash UNIQUE (hash),' if hash_unique else ''}
        CONSTRAINT uq_journal_entries_kind_voucher UNIQUE (kind, voucher)
    )"""


PARTIAL_INDEXES = (
    "CREATE UNIQUE INDEX uq_journal_entries_reverses_id ON journal_entries (reverses_id) WHERE reverses_id IS NOT NULL",
    "CREATE INDEX ix_journal_entries_project_code ON journal_entries (project_code) WHERE project_code IS NOT NULL",
)


def _rebuild_sqlite_entries(*, rowid_id: bool, hash_unique: bool, partial: bool) -> None:
    """SQLite's table-rebuild procedure for journal_entries, keeping every row and trigger."""
    bind = op.get_bind()
    dependent = bind.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%journal_entries%' ORDER BY name"
    ).all()
    for name, _sql in dependent:
        op.execute(f"DROP TRIGGER {name}")
    op.execute(_entries_table("journal_entries_rebuilt", rowid_id=rowid_id, hash_unique=hash_unique))
    op.execute(
        f"INSERT INTO journal_entries_rebuilt ({ENTRY_COLUMNS}) SELECT {ENTRY_COLUMNS} FROM journal_entries ORDER BY id"
    )
    op.execute("DROP TABLE journal_entries")
    op.execute("ALTER TABLE journal_entries_rebuilt RENAME TO journal_entries")
    if partial:
        for statement in PARTIAL_INDEXES:
            op.execute(statement)
    else:
        op.execute("CREATE UNIQUE INDEX uq_journal_entries_reverses_id ON journal_entries (reverses_id)")
        op.execute("CREATE INDEX ix_journal_entries_project_code ON journal_entries (project_code)")
    op.execute("CREATE INDEX ix_journal_entries_value_date ON journal_entries (value_date)")
    for _name, sql in dependent:
        op.execute(sql)


# On PostgreSQL the posting seal (no posting added to an entry already written; each posting
# in its account's book) runs once per statement over the inserted rows, like the entries'
# balance check, instead of once per row: with COPY a chunk of 12,000 postings is one
# statement (a 300,000-entry load 21.3 s -> 17.1 s). Same checks, same messages.
POSTGRES_SEAL_PER_STATEMENT = [
    "DROP TRIGGER postings_seal ON postings",
    """CREATE FUNCTION jiebang_postings_seal_set() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE bad_entry bigint; bad_account integer; bad_book text;
    BEGIN
      SELECT n.entry_id INTO bad_entry FROM new_postings n
      WHERE EXISTS (SELECT 1 FROM journal_entries e WHERE e.id = n.entry_id) LIMIT 1;
      IF bad_entry IS NOT NULL THEN
        RAISE EXCEPTION 'entry_must_be_sealed: postings cannot be added to entry % already written', bad_entry
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      SELECT n.account_id, n.book INTO bad_account, bad_book FROM new_postings n LEFT JOIN accounts a ON a.id = n.account_id
      WHERE n.book IS DISTINCT FROM a.book LIMIT 1;
      IF FOUND THEN
        RAISE EXCEPTION 'posting_book_must_match_account: posting to account % is in book %', bad_account, bad_book
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER postings_seal AFTER INSERT ON postings REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION jiebang_postings_seal_set()""",
]
POSTGRES_SEAL_PER_ROW = [
    "DROP TRIGGER postings_seal ON postings",
    "DROP FUNCTION jiebang_postings_seal_set()",
    "CREATE TRIGGER postings_seal BEFORE INSERT ON postings FOR EACH ROW EXECUTE FUNCTION jiebang_posting_seal()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_entries(rowid_id=True, hash_unique=False, partial=True)
        return
    op.execute("ALTER TABLE journal_entries DROP CONSTRAINT uq_journal_entries_hash")
    op.execute("ALTER TABLE journal_entries DROP CONSTRAINT uq_journal_entries_reverses_id")
    op.execute("DROP INDEX ix_journal_entries_project_code")
    for statement in (*PARTIAL_INDEXES, *POSTGRES_SEAL_PER_STATEMENT):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_entries(rowid_id=False, hash_unique=True, partial=False)
        return
    for statement in POSTGRES_SEAL_PER_ROW:
        op.execute(statement)
    op.execute("DROP INDEX ix_journal_entries_project_code")
    op.execute("DROP INDEX uq_journal_entries_reverses_id")
    op.execute("CREATE INDEX ix_journal_entries_project_code ON journal_entries (project_code)")
    op.execute("ALTER TABLE journal_entries ADD CONSTRAINT uq_journal_entries_reverses_id UNIQUE (reverses_id)")
    op.execute("ALTER TABLE journal_entries ADD CONSTRAINT uq_journal_entries_hash UNIQUE (hash)")
