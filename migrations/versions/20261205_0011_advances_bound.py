"""advances bound: on PostgreSQL a lane's advances never exceed its releases, whoever writes

Revision ID: 20261205_0011
Revises: 20261205_0010
Create Date: 2026-12-05 02:00:00.000000

``ledger.programme.guards.check_advances_bound`` refuses a file or a service entry that
would raise a lane's advances (``Assets:Fiscal:Advances:P:Ln``) above what was released to
it (``Assets:Memo:Grant:Released:P:Ln``). This revision makes PostgreSQL refuse the same,
whatever inserts the rows: a deferred constraint trigger on each journal entry looks at the
lanes whose advances the entry raises and compares their totals at commit. Every entry costs
one index probe for its debit postings and a primary-key look-up per debit; only an entry
that raises an advances account (a release) sums the two accounts of its lane, by index
(the lane's own releases and spends, not the ledger). The function runs with
``enable_seqscan = off``: PL/pgSQL caches a generic plan made while the tables were nearly
empty, and a plan that scans a table then costs a scan per entry (measured: a 20,000-entry
load went from 5 s to 15 s with a join that scanned the accounts).

SQLite: the Python guard, and ``verify``, which checks every lane at every entry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261205_0011'
down_revision = '20261205_0010'
branch_labels = None
depends_on = None

ADVANCES = "Assets:Fiscal:Advances:"
RELEASED = "Assets:Memo:Grant:Released:"

BODY = f"""
    DECLARE v_name text; v_lane text; v_advanced bigint; v_released bigint;
    BEGIN
      -- Driven from the entry's own postings, each account found by its primary key (a scalar
      -- subquery is never flattened into a join): a plan that scanned the accounts for the
      -- name pattern, as the planner chose for a join, costs a scan of the chart per entry.
      FOR v_name IN
        SELECT (SELECT a.name FROM {{s}}.accounts a WHERE a.id = p.account_id)
        FROM {{s}}.postings p WHERE p.entry_id = NEW.id AND p.amount_fen > 0
      LOOP
        CONTINUE WHEN v_name NOT LIKE '{ADVANCES}%';
        v_lane := substr(v_name, {len(ADVANCES) + 1});
        CONTINUE WHEN v_lane !~ '^[^:]+\\:L[1-9][0-9]*$';
        SELECT COALESCE(SUM(p.amount_fen), 0) INTO v_advanced FROM {{s}}.postings p
          WHERE p.account_id = (SELECT a.id FROM {{s}}.accounts a WHERE a.name = v_name);
        SELECT COALESCE(SUM(p.amount_fen), 0) INTO v_released FROM {{s}}.postings p
          WHERE p.account_id = (SELECT a.id FROM {{s}}.accounts a WHERE a.name = '{RELEASED}' || v_lane);
        IF v_advanced > v_released THEN
          RAISE EXCEPTION 'advances_must_not_exceed_released: entry % raises the advances of lane % to % fen but % fen was released to it; a lane''s advances never exceed its releases: release the money first (jiebang release)',
            NEW.id, v_lane, v_advanced, v_released USING ERRCODE = 'integrity_constraint_violation';
        END IF;
      END LOOP;
      RETURN NULL;
    END"""

# 0007's money-out guard joined the entry's postings to the accounts; its cached plan scanned
# the chart per entry while approval is on. The same decision, driven from the postings.
MONEY_OUT_BODY = """
    DECLARE r record; v_out boolean := false; v_paid bigint := 0;
    BEGIN
      IF COALESCE((SELECT value FROM {s}.settings WHERE name = 'require_approval' ORDER BY id DESC LIMIT 1), 'off') <> 'on' THEN
        RETURN NULL;
      END IF;
      FOR r IN
        SELECT (SELECT a.name FROM {s}.accounts a WHERE a.id = p.account_id) AS name, p.amount_fen AS amount
        FROM {s}.postings p WHERE p.entry_id = NEW.id
      LOOP
        IF (r.name LIKE 'Income:Fiscal:Funding:%' AND r.amount < 0)
           OR (r.name LIKE 'Assets:Fiscal:Advances:%' AND r.amount > 0)
           OR (r.name LIKE 'Expenses:Fiscal:WriteOffs:%' AND r.amount > 0) THEN
          v_out := true;
          EXIT;
        END IF;
        IF (r.name LIKE 'Liabilities:Fiscal:SubsidyPayable:%' AND r.amount > 0)
           OR (r.name LIKE 'Expenses:Fiscal:Subsidy:%' AND r.amount < 0) THEN
          v_paid := v_paid + r.amount;  -- a subsidy paid beyond a forfeit in the same entry
        END IF;
      END LOOP;
      IF NOT v_out AND v_paid <= 0 THEN
        RETURN NULL;
      END IF;
      IF NOT EXISTS (SELECT 1 FROM {s}.requests WHERE decision_entry_id = NEW.id AND status = 'approved') THEN
        RAISE EXCEPTION 'money_out_must_be_approved: % entry % pays fiscal money out (it credits a funding account or debits an advances, write-off or (beyond a forfeit) subsidy payable account) and no approved request points at it while approval is required; record a request (jiebang release, write-off or terminate) and have an approver approve it',
          NEW.kind, NEW.id USING ERRCODE = 'integrity_constraint_violation';
      END IF;
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
        f"SET search_path = {s}, pg_temp SET enable_seqscan = off AS $${BODY.replace('{s}', s)}$$"
    )
    op.execute(TRIGGER.format(s=s))
    op.execute(
        f"CREATE OR REPLACE FUNCTION {s}.jiebang_money_out_approved() RETURNS trigger LANGUAGE plpgsql "
        f"SET search_path = {s}, pg_temp SET enable_seqscan = off AS $${MONEY_OUT_BODY.replace('{s}', s)}$$"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    s = _schema()
    op.execute(f"DROP TRIGGER journal_entries_advances_bound ON {s}.journal_entries")
    op.execute(f"DROP FUNCTION {s}.jiebang_advances_bound()")
    signature, body = _revision_0007().FUNCTIONS["jiebang_money_out_approved"]
    op.execute(f"ALTER FUNCTION {s}.jiebang_money_out_approved() RESET enable_seqscan")
    _revision_0007()._define(s, "jiebang_money_out_approved", signature, body)


def _revision_0007():
    """0007's module (its money-out function, restored on downgrade)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("20261205_0007_pg_guards.py")
    spec = importlib.util.spec_from_file_location("jiebang_migration_0007", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
