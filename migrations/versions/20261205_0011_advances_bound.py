"""advances bound: on PostgreSQL a lane's advances never exceed its releases, whoever writes

Revision ID: 20261205_0011
Revises: 20261205_0007
Create Date: 2026-12-05 02:00:00.000000

``ledger.programme.guards.check_advances_bound`` refuses a file or a service entry that
would raise a lane's advances (``Assets:Fiscal:Advances:P:Ln``) above what was released to
it (``Assets:Memo:Grant:Released:P:Ln``). This revision makes PostgreSQL refuse the same,
whatever inserts the rows: a deferred constraint trigger on each journal entry looks at the
lanes whose advances the entry raises and compares their totals at commit. Only entries
that debit an advances account do more than one index probe, and the sums read only the
two accounts of the lane (no work that grows with the ledger).

SQLite: the Python guard, and ``verify``, which checks every lane at every entry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261205_0011'
down_revision = '20261205_0007'
branch_labels = None
depends_on = None

ADVANCES = "Assets:Fiscal:Advances:"
RELEASED = "Assets:Memo:Grant:Released:"

BODY = f"""
    DECLARE v_lane text; v_advanced bigint; v_released bigint;
    BEGIN
      FOR v_lane IN
        SELECT DISTINCT substr(a.name, {len(ADVANCES) + 1}) FROM {{s}}.postings p JOIN {{s}}.accounts a ON a.id = p.account_id
        WHERE p.entry_id = NEW.id AND p.amount_fen > 0 AND a.name LIKE '{ADVANCES}%'
          AND substr(a.name, {len(ADVANCES) + 1}) ~ '^[^:]+\\:L[1-9][0-9]*$'
      LOOP
        SELECT COALESCE(SUM(p.amount_fen), 0) INTO v_advanced FROM {{s}}.postings p JOIN {{s}}.accounts a ON a.id = p.account_id
          WHERE a.name = '{ADVANCES}' || v_lane;
        SELECT COALESCE(SUM(p.amount_fen), 0) INTO v_released FROM {{s}}.postings p JOIN {{s}}.accounts a ON a.id = p.account_id
          WHERE a.name = '{RELEASED}' || v_lane;
        IF v_advanced > v_released THEN
          RAISE EXCEPTION 'advances_must_not_exceed_released: entry % raises the advances of lane % to % fen but % fen was released to it; a lane''s advances never exceed its releases: release the money first (jiebang release)',
            NEW.id, v_lane, v_advanced, v_released USING ERRCODE = 'integrity_constraint_violation';
        END IF;
      END LOOP;
      RETURN NULL;
    END"""

TRIGGER = (
    "CREATE CONSTRAINT TRIGGER journal_entries_advances_bound AFTER INSERT ON {s}.journal_entries "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {s}.jiebang_advances_bound()"
)


def _schema() -> str:
    schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    return '"' + schema.replace('"', '""') + '"'


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    s = _schema()
    op.execute(
        f"CREATE OR REPLACE FUNCTION {s}.jiebang_advances_bound() RETURNS trigger LANGUAGE plpgsql "
        f"SET search_path = {s}, pg_temp AS $${BODY.replace('{s}', s)}$$"
    )
    op.execute(TRIGGER.format(s=s))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    s = _schema()
    op.execute(f"DROP TRIGGER journal_entries_advances_bound ON {s}.journal_entries")
    op.execute(f"DROP FUNCTION {s}.jiebang_advances_bound()")
