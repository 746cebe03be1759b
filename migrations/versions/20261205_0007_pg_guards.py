"""pg guards: functions and triggers nothing can shadow; money out decided by accounts

Revision ID: 20261205_0007
Revises: 20261205_0006
Create Date: 2026-12-05 14:00:00.000000

PostgreSQL looks up an unqualified table name in the session's temporary schema first, so a
login that could ``CREATE TEMP TABLE settings (...)`` made the maker-checker trigger read its
own ``require_approval = off``, and an enterprise that made a temp ``lanes`` table saw every
project through the SECURITY DEFINER row-level-security helpers. This revision recreates
every function the earlier revisions made (CREATE OR REPLACE; same names, same triggers):

* every table reference is qualified with the ledger's schema (resolved here with
  ``SELECT current_schema()``: a ledger is not always in ``public``), catalog references with
  ``pg_catalog``;
* every function sets ``search_path = <schema>, pg_temp`` (pg_temp last), as PostgreSQL's
  "Writing SECURITY DEFINER Functions Safely" prescribes, the two SECURITY DEFINER helpers
  ``jiebang_my_projects()`` / ``jiebang_my_parties()`` and the plain trigger functions alike;
* the deferred constraint trigger ``journal_entries_money_out_approved`` decides by the
  entry's postings, not by its kind label: while ``require_approval`` is on, any entry that
  credits ``Income:Fiscal:Funding:*`` or debits ``Assets:Fiscal:Advances:*``,
  ``Liabilities:Fiscal:SubsidyPayable:*`` or ``Expenses:Fiscal:WriteOffs:*`` needs an
  approved request pointing at it, whatever its kind (``adjustment`` as much as ``release``).

SQLite has no schemas, temporary shadowing of triggers or functions: nothing to do there
(the Python side enforces money out by accounts, ``ledger.programme.guards``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261205_0007'
down_revision = '20261205_0006'
branch_labels = None
depends_on = None

OLD_MONEY_OUT_KINDS = "('release', 'write_off', 'termination', 'revocation')"

# The account families that pay fiscal money out, and the sign of the posting that does
# (amounts are debit-positive): must equal ledger.programme.guards.MONEY_OUT_FAMILIES.
# A subsidy payable debited against the same entry's credit to subsidy expense is a forfeit
# (the accrual undone when a lane stops), not a payment: only the excess counts.
MONEY_OUT_SQL = (
    "(a.name LIKE 'Income:Fiscal:Funding:%' AND p.amount_fen < 0)"
    " OR (a.name LIKE 'Assets:Fiscal:Advances:%' AND p.amount_fen > 0)"
    " OR (a.name LIKE 'Expenses:Fiscal:WriteOffs:%' AND p.amount_fen > 0)"
)
SUBSIDY_PAID_SQL = (
    "SUM(CASE WHEN a.name LIKE 'Liabilities:Fiscal:SubsidyPayable:%' AND p.amount_fen > 0 THEN p.amount_fen ELSE 0 END)"
    " + SUM(CASE WHEN a.name LIKE 'Expenses:Fiscal:Subsidy:%' AND p.amount_fen < 0 THEN p.amount_fen ELSE 0 END)"
)

# name -> (body template with {s} for the quoted schema, options between the signature and AS)
FUNCTIONS = {
    "jiebang_refuse_change": ("RETURNS trigger LANGUAGE plpgsql", """
    BEGIN
      RAISE EXCEPTION 'journal is append-only: % of % is refused; post a reversing entry instead',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END"""),
    "jiebang_posting_seal": ("RETURNS trigger LANGUAGE plpgsql", """
    BEGIN
      IF EXISTS (SELECT 1 FROM {s}.journal_entries WHERE id = NEW.entry_id) THEN
        RAISE EXCEPTION 'entry_must_be_sealed: postings cannot be added to entry % already written', NEW.entry_id
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      IF NEW.book IS DISTINCT FROM (SELECT book FROM {s}.accounts WHERE id = NEW.account_id) THEN
        RAISE EXCEPTION 'posting_book_must_match_account: posting to account % is in book %', NEW.account_id, NEW.book
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NEW;
    END"""),
    # new_entries / new_postings are the triggers' transition tables (ephemeral relations
    # found before any schema, temporary or not).
    "jiebang_entries_balance": ("RETURNS trigger LANGUAGE plpgsql", """
    DECLARE bad bigint;
    BEGIN
      SELECT n.id INTO bad FROM new_entries n
      WHERE EXISTS (SELECT 1 FROM {s}.postings p WHERE p.entry_id = n.id GROUP BY p.book HAVING SUM(p.amount_fen) <> 0)
         OR EXISTS (SELECT 1 FROM {s}.postings p WHERE p.entry_id = n.id AND p.value_date <> n.value_date)
      ORDER BY n.id LIMIT 1;
      IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'entry_must_balance_per_book: entry % does not balance within a book, or has postings dated otherwise', bad
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NULL;
    END"""),
    "jiebang_postings_seal_set": ("RETURNS trigger LANGUAGE plpgsql", """
    DECLARE bad_entry bigint; bad_account integer; bad_book text;
    BEGIN
      SELECT n.entry_id INTO bad_entry FROM new_postings n
      WHERE EXISTS (SELECT 1 FROM {s}.journal_entries e WHERE e.id = n.entry_id) LIMIT 1;
      IF bad_entry IS NOT NULL THEN
        RAISE EXCEPTION 'entry_must_be_sealed: postings cannot be added to entry % already written', bad_entry
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      SELECT n.account_id, n.book INTO bad_account, bad_book FROM new_postings n LEFT JOIN {s}.accounts a ON a.id = n.account_id
      WHERE n.book IS DISTINCT FROM a.book LIMIT 1;
      IF FOUND THEN
        RAISE EXCEPTION 'posting_book_must_match_account: posting to account % is in book %', bad_account, bad_book
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NULL;
    END"""),
    "jiebang_accounts_guard": None,  # no table reference: its body stays, search_path is set
    "jiebang_request_guard": None,  # only pg_catalog.pg_roles: qualified in place below
    "jiebang_money_out_approved": ("RETURNS trigger LANGUAGE plpgsql", f"""
    BEGIN
      IF COALESCE((SELECT value FROM {{s}}.settings WHERE name = 'require_approval' ORDER BY id DESC LIMIT 1), 'off') <> 'on' THEN
        RETURN NULL;
      END IF;
      IF NOT EXISTS (SELECT 1 FROM {{s}}.postings p JOIN {{s}}.accounts a ON a.id = p.account_id
                     WHERE p.entry_id = NEW.id AND ({MONEY_OUT_SQL}))
         AND COALESCE((SELECT {SUBSIDY_PAID_SQL} FROM {{s}}.postings p JOIN {{s}}.accounts a ON a.id = p.account_id
                       WHERE p.entry_id = NEW.id), 0) <= 0 THEN
        RETURN NULL;
      END IF;
      IF NOT EXISTS (SELECT 1 FROM {{s}}.requests WHERE decision_entry_id = NEW.id AND status = 'approved') THEN
        RAISE EXCEPTION 'money_out_must_be_approved: % entry % pays fiscal money out (it credits a funding account or debits an advances, write-off or (beyond a forfeit) subsidy payable account) and no approved request points at it while approval is required; record a request (jiebang release, write-off or terminate) and have an approver approve it',
          NEW.kind, NEW.id USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NULL;
    END"""),
    "jiebang_my_projects": ("RETURNS SETOF varchar LANGUAGE sql STABLE SECURITY DEFINER", """
      SELECT p.code FROM {s}.projects p JOIN {s}.enterprise_logins e ON e.party_uscc = p.demand_uscc WHERE e.login = session_user
      UNION
      SELECT l.project_code FROM {s}.lanes l JOIN {s}.enterprise_logins e ON e.party_uscc = l.solver_uscc WHERE e.login = session_user
    """),
    "jiebang_my_parties": ("RETURNS SETOF varchar LANGUAGE sql STABLE SECURITY DEFINER", """
      SELECT party_uscc FROM {s}.enterprise_logins WHERE login = session_user
      UNION
      SELECT demand_uscc FROM {s}.projects WHERE code IN (SELECT {s}.jiebang_my_projects())
      UNION
      SELECT solver_uscc FROM {s}.lanes WHERE project_code IN (SELECT {s}.jiebang_my_projects())
    """),
}

MONEY_OUT_TRIGGER = (
    "CREATE CONSTRAINT TRIGGER journal_entries_money_out_approved AFTER INSERT ON {s}.journal_entries "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW {when}EXECUTE FUNCTION {s}.jiebang_money_out_approved()"
)


def _schema() -> str:
    schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    return '"' + schema.replace('"', '""') + '"'


def _define(s: str, name: str, signature: str, body: str) -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {s}.{name}() {signature} SET search_path = {s}, pg_temp AS $$"
        f"{body.replace('{s}', s)}$$"
    )


def _request_guard_roles(s: str, *, qualified: bool) -> None:
    """Rewrite jiebang_request_guard's catalog references in place (its body is 0003's)."""
    definition = op.get_bind().execute(
        sa.text("SELECT pg_get_functiondef(to_regprocedure(:f))"), {"f": f"{s}.jiebang_request_guard()"}
    ).scalar_one()
    plain, full = "FROM pg_roles", "FROM pg_catalog.pg_roles"
    op.execute(definition.replace(plain, full) if qualified else definition.replace(full, plain))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    s = _schema()
    for name, spec in FUNCTIONS.items():
        if spec is not None:
            _define(s, name, *spec)
    _request_guard_roles(s, qualified=True)
    for name in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {s}.{name}() SET search_path = {s}, pg_temp")
    # The trigger now fires for every entry; the function decides by the postings.
    op.execute(f"DROP TRIGGER journal_entries_money_out_approved ON {s}.journal_entries")
    op.execute(MONEY_OUT_TRIGGER.format(s=s, when=""))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    s = _schema()
    op.execute(f"DROP TRIGGER journal_entries_money_out_approved ON {s}.journal_entries")
    op.execute(MONEY_OUT_TRIGGER.format(s=s, when=f"WHEN (NEW.kind IN {OLD_MONEY_OUT_KINDS}) "))
    # 0003's kind-based function (settings and requests only), and 0003's search paths.
    _define(s, "jiebang_money_out_approved", "RETURNS trigger LANGUAGE plpgsql", """
    BEGIN
      IF COALESCE((SELECT value FROM {s}.settings WHERE name = 'require_approval' ORDER BY id DESC LIMIT 1), 'off') = 'on'
         AND NOT EXISTS (SELECT 1 FROM {s}.requests WHERE decision_entry_id = NEW.id AND status = 'approved') THEN
        RAISE EXCEPTION 'money_out_must_be_approved: % entry % has no approved request while approval is required; record a request (jiebang %) and have an approver approve it',
          NEW.kind, NEW.id, replace(NEW.kind, '_', '-') USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NULL;
    END""")
    _request_guard_roles(s, qualified=False)
    for name in FUNCTIONS:
        if name in ("jiebang_my_projects", "jiebang_my_parties"):
            op.execute(f"ALTER FUNCTION {s}.{name}() SET search_path = {s}")
        else:
            op.execute(f"ALTER FUNCTION {s}.{name}() RESET search_path")
